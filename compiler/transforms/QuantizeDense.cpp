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
    cpu::quantizeWeightsInt8(w, k, n, q.data(), scale.data(), sums.data());
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

bool quantizable(DenseOp d) {
  auto w = d.getWeight().getDefiningOp<ConstantOp>();
  return !d.isPacked() && w && d.getWeight().getType().getElementType().isF32();
}

/// Sets each int8 layer's static input range from `ranges` (lo, hi pairs in
/// layer order, for each function).
LogicalResult setInputRanges(ModuleOp module, ArrayRef<double> ranges) {
  for (func::FuncOp f : module.getOps<func::FuncOp>()) {
    size_t layer = 0;
    WalkResult walk = f.walk([&](DenseOp d) {
      if (!isInt8Candidate(d))
        return WalkResult::advance();
      if (2 * layer + 1 >= ranges.size()) {
        d.emitError("kiln-quantize-dense: input-ranges has ")
            << ranges.size() / 2 << " layers' ranges; this function has more int8 layers";
        return WalkResult::interrupt();
      }
      float scale;
      int32_t zeroPoint;
      cpu::activationQuantization(float(ranges[2 * layer]), float(ranges[2 * layer + 1]), scale,
                                  zeroPoint);
      Builder b(d);
      d.setInputScaleAttr(b.getF32FloatAttr(scale));
      d.setInputZeroPointAttr(b.getI32IntegerAttr(zeroPoint));
      ++layer;
      return WalkResult::advance();
    });
    if (walk.wasInterrupted())
      return failure();
    if (2 * layer != ranges.size())
      return f.emitError("kiln-quantize-dense: input-ranges has ")
             << ranges.size() / 2 << " layers' ranges; this function has " << layer
             << " int8 layers";
  }
  return success();
}

struct QuantizeDensePass : impl::QuantizeDenseBase<QuantizeDensePass> {
  using QuantizeDenseBase::QuantizeDenseBase;

  void runOnOperation() override {
    if (precision != "int8" && precision != "fp16" && precision != "bf16") {
      getOperation().emitError("kiln-quantize-dense: unknown precision '")
          << precision << "' (int8, fp16 or bf16)";
      return signalPassFailure();
    }
    if (!inputRanges.empty() && (precision != "int8" || inputRanges.size() % 2)) {
      getOperation().emitError("kiln-quantize-dense: input-ranges takes lo, hi pairs, for int8");
      return signalPassFailure();
    }
    // The ranges are matched to the layers before any of them changes.
    if (!inputRanges.empty() && failed(setInputRanges(getOperation(), inputRanges)))
      return signalPassFailure();
    DenseMap<Attribute, Quantized> done;
    DenseMap<Operation *, std::array<Value, 3>> values; // per original constant op
    IRRewriter rewriter(&getContext());
    getOperation().walk([&](DenseOp d) {
      if (precision == "int8" ? !isInt8Candidate(d) : !quantizable(d))
        return;
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
    });
    for (auto &[w, v] : values)
      if (w->use_empty())
        rewriter.eraseOp(w);
  }
};
} // namespace

bool isInt8Candidate(DenseOp d) { return quantizable(d) && d.getDepth() <= cpu::kMaxInt8Depth; }

} // namespace kiln
