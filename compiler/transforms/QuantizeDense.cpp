//===- QuantizeDense.cpp - int8 / fp16 / bf16 dense weights ---------------===//
//
// Rewrites every kiln.dense's [K, N] f32 constant weight at the requested
// precision with quantized.h's functions, so the compiler and the kernels
// share one definition of each format. int8 adds the per-column scale and
// the column sums the kernel's zero-point correction needs.
//
//===----------------------------------------------------------------------===//

#include "compiler/transforms/Passes.h"

#include "runtime/kernels/cpu/quantized.h"

#include "mlir/IR/PatternMatch.h"

#include <array>

using namespace mlir;

namespace kiln {
#define GEN_PASS_DEF_QUANTIZEDENSE
#include "compiler/transforms/Passes.h.inc"

namespace {

/// A weight at the new precision: the weight, and for int8 its scale and sums.
struct Quantized {
  ElementsAttr weight, scale, sums;
};

Quantized quantize(ElementsAttr attr, int64_t k, int64_t n, StringRef precision, Builder &b) {
  std::vector<char> bytes = constantBytes(attr);
  const float *w = reinterpret_cast<const float *>(bytes.data());
  if (precision == "int8") {
    std::vector<int8_t> q(k * n);
    std::vector<float> scale(n);
    std::vector<int32_t> sums(n);
    if (!cpu::quantizeWeightsInt8(w, k, n, q.data(), scale.data(), sums.data()))
      return {}; // NaN or Inf: quantizable() keeps such layers in f32
    return {makeConstant(RankedTensorType::get({k, n}, b.getI8Type()), q, "int8_weight"),
            makeConstant(RankedTensorType::get({n}, b.getF32Type()), scale, "weight_scale"),
            makeConstant(RankedTensorType::get({n}, b.getI32Type()), sums, "weight_sum")};
  }
  const bool fp16 = precision == "fp16";
  std::vector<uint16_t> half(k * n);
  for (int64_t i = 0; i < k * n; ++i)
    half[i] = fp16 ? cpu::floatToFp16(w[i]) : cpu::floatToBf16(w[i]);
  Type element = fp16 ? Type(b.getF16Type()) : Type(b.getBF16Type());
  return {makeConstant(RankedTensorType::get({k, n}, element), half, precision), {}, {}};
}

/// An unpacked layer of constant f32 weights, none of them NaN or Inf (which
/// an int8 code cannot stand for; such a layer stays f32 at every precision),
/// with more than one column: a one-column layer (a model's logit) has K
/// weights, it is the layer whose error reaches the output whole, and on the
/// CPU the f32 dot-product kernel runs it 7-20x faster than the 8- and 16-bit
/// panels (the rule holds for every target, CUDA's fp16 and fp8 included).
bool quantizable(DenseOp d) {
  auto w = d.getWeight().getDefiningOp<ConstantOp>();
  if (d.isPacked() || !w || !d.getWeight().getType().getElementType().isF32() ||
      d.getUnits() == 1)
    return false;
  std::vector<char> storage;
  ArrayRef<char> bytes = constantData(w.getValue(), storage);
  return cpu::allFinite(reinterpret_cast<const float *>(bytes.data()),
                        int64_t(bytes.size() / sizeof(float)));
}

/// Calls `fn(layer, lo, hi)` for each calibrated layer (isInt8Candidate,
/// in order) of each function with its range from `ranges` (lo, hi pairs
/// in layer order); fails if the counts differ.
LogicalResult forEachCalibratedLayer(ModuleOp module, ArrayRef<double> ranges,
                                     function_ref<void(DenseOp, double, double)> fn) {
  for (func::FuncOp f : module.getOps<func::FuncOp>()) {
    SmallVector<DenseOp> layers = quantizableLayers(f, "int8");
    if (2 * layers.size() != ranges.size())
      return f.emitError("kiln-quantize-dense: input-ranges has ")
             << ranges.size() / 2 << " layers' ranges; this function has " << layers.size()
             << " calibrated layers";
    for (auto [i, d] : llvm::enumerate(layers))
      fn(d, ranges[2 * i], ranges[2 * i + 1]);
  }
  return success();
}

/// Sets each int8 layer's static input range.
LogicalResult setInputRanges(ModuleOp module, ArrayRef<double> ranges) {
  return forEachCalibratedLayer(module, ranges, [](DenseOp d, double lo, double hi) {
    float scale;
    int32_t zeroPoint;
    cpu::activationQuantization(float(lo), float(hi), scale, zeroPoint);
    Builder b(d);
    d.setInputScaleAttr(b.getF32FloatAttr(scale));
    d.setInputZeroPointAttr(b.getI32IntegerAttr(zeroPoint));
  });
}

/// --precision fp8: each calibrated layer cuBLASLt's fp8 kernels take gets
/// its weight as E4M3, transposed, with one scale, and its input's scale.
LogicalResult quantizeFp8(ModuleOp module, ArrayRef<double> ranges) {
  IRRewriter rewriter(module.getContext());
  DenseMap<Attribute, std::pair<ElementsAttr, ElementsAttr>> done; // weight -> (q, scale)
  return forEachCalibratedLayer(module, ranges, [&](DenseOp d, double lo, double hi) {
    const int64_t k = d.getDepth(), n = d.getUnits();
    const double absMax = std::max(std::fabs(lo), std::fabs(hi));
    if (k % 16 || n % 16 || !(absMax > 0) || !std::isfinite(absMax))
      return;
    auto w = d.getWeight().getDefiningOp<ConstantOp>();
    auto &[q, scale] = done[w.getValue()];
    if (!q) {
      std::vector<char> bytes = constantBytes(w.getValue());
      const float *f = reinterpret_cast<const float *>(bytes.data());
      float wMax = 0;
      for (int64_t i = 0; i < k * n; ++i)
        wMax = std::max(wMax, std::fabs(f[i]));
      const float s = wMax > 0 ? wMax / cpu::kE4m3Max : 1.0f;
      std::vector<uint8_t> t(k * n);
      for (int64_t r = 0; r < k; ++r)
        for (int64_t c = 0; c < n; ++c)
          t[c * k + r] = cpu::floatToE4m3(f[r * n + c] / s);
      q = makeConstant(RankedTensorType::get({n, k}, rewriter.getType<Float8E4M3FNType>()), t,
                       "fp8_weight");
      scale = makeConstant(RankedTensorType::get({1}, rewriter.getF32Type()), std::vector<float>{s},
                           "weight_scale");
    }
    rewriter.setInsertionPoint(d);
    Value weight = ConstantOp::create(rewriter, w.getLoc(), q),
          weightScale = ConstantOp::create(rewriter, w.getLoc(), scale);
    rewriter.modifyOpInPlace(d, [&] {
      d.getWeightMutable().assign(weight);
      d.getWeightScaleMutable().assign(weightScale);
      d.setInputScaleAttr(rewriter.getF32FloatAttr(float(absMax / cpu::kE4m3Max)));
    });
    if (w->use_empty())
      rewriter.eraseOp(w);
  });
}

struct QuantizeDensePass : impl::QuantizeDenseBase<QuantizeDensePass> {
  using QuantizeDenseBase::QuantizeDenseBase;

  void runOnOperation() override {
    if (precision != "int8" && precision != "fp16" && precision != "bf16" && precision != "fp8") {
      getOperation().emitError("kiln-quantize-dense: unknown precision '")
          << precision << "' (int8, fp16, bf16 or fp8)";
      return signalPassFailure();
    }
    const bool ranged = precision == "int8" || precision == "fp8";
    if ((!inputRanges.empty() && (!ranged || inputRanges.size() % 2)) ||
        (precision == "fp8" && inputRanges.empty())) {
      getOperation().emitError("kiln-quantize-dense: input-ranges takes lo, hi pairs, for int8 "
                               "(optional) and fp8 (required)");
      return signalPassFailure();
    }
    if (precision == "fp8") {
      if (failed(quantizeFp8(getOperation(), inputRanges)))
        signalPassFailure();
      return;
    }
    // The ranges are matched to the layers before any of them changes.
    if (!inputRanges.empty() && failed(setInputRanges(getOperation(), inputRanges)))
      return signalPassFailure();
    SmallVector<DenseOp> layers;
    for (func::FuncOp f : getOperation().getOps<func::FuncOp>())
      for (auto [i, d] : llvm::enumerate(quantizableLayers(f, precision)))
        if (!llvm::is_contained(keepLayers, int64_t(i)))
          layers.push_back(d);
    DenseMap<Attribute, Quantized> done;
    DenseMap<Operation *, std::array<Value, 3>> values; // per original constant op
    IRRewriter rewriter(&getContext());
    for (DenseOp d : layers) {
      auto w = d.getWeight().getDefiningOp<ConstantOp>();
      int64_t k = d.getDepth(), n = d.getUnits();
      Quantized &q = done[w.getValue()];
      if (!q.weight)
        q = quantize(w.getValue(), k, n, precision, rewriter);
      auto &[weight, scale, sums] = values[w];
      if (!weight) {
        rewriter.setInsertionPoint(w);
        auto constant = [&](ElementsAttr a) {
          return a ? ConstantOp::create(rewriter, w.getLoc(), a).getResult() : Value();
        };
        weight = constant(q.weight);
        scale = constant(q.scale);
        sums = constant(q.sums);
      }
      rewriter.modifyOpInPlace(d, [&] {
        d.getWeightMutable().assign(weight);
        if (scale) {
          d.getWeightScaleMutable().assign(scale);
          d.getWeightSumMutable().assign(sums);
        }
      });
    }
    for (auto &[w, v] : values)
      if (w->use_empty())
        rewriter.eraseOp(w);
  }
};
} // namespace

bool isInt8Candidate(DenseOp d) { return quantizable(d) && d.getDepth() <= cpu::kMaxInt8Depth; }

SmallVector<DenseOp> quantizableLayers(func::FuncOp f, StringRef precision) {
  SmallVector<DenseOp> layers;
  f.walk([&](DenseOp d) {
    if (precision == "int8" ? isInt8Candidate(d) : quantizable(d))
      layers.push_back(d);
  });
  return layers;
}

} // namespace kiln
