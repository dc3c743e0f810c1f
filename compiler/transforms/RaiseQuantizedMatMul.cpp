//===- RaiseQuantizedMatMul.cpp - pre-quantised products to int8 dense ----===//
//
// onnxruntime's quantisation tool writes int8 products that the importer
// turns into f32 arithmetic (OnnxImporter.cpp, importQuantization):
//
//   dynamic (MatMulInteger):  q = quantize(x, s, zp)   (DynamicQuantizeLinear)
//     y = cast_f32(cast_i32(round(matmul(cast_f32(q) - zp, cast_f32(W) [- 0])))) * (s * w_scale)
//   QDQ (QuantizeLinear/DequantizeLinear, QLinearMatMul):
//     y = matmul((cast_f32(quantize(x, s, zp)) - zp) * s, (cast_f32(W) [- 0]) * w_scale)
//     (a small weight's dequantisation folds into an f32 constant, which is
//     quantised again per column)
//
// with W an int8 constant [K, N] and w_scale a constant scalar or [N]. Both
// are x W_dequantised with x quantised on the way; each becomes one
// kiln.dense on x with W as its int8 weight and w_scale per column. The
// kernel quantises x itself (per row, 7 bits: runtime/kernels/cpu/
// quantized.h), so results differ from the model's own activation rounding
// by the quantisation step. Other forms (uint8 weights, weight zero points,
// non-constant weights) keep the f32 arithmetic.
//
//===----------------------------------------------------------------------===//

#include "compiler/transforms/Passes.h"

#include "runtime/kernels/cpu/quantized.h"

#include "mlir/IR/PatternMatch.h"
#include "mlir/Transforms/RegionUtils.h"

#include <cmath>

using namespace mlir;

namespace kiln {
#define GEN_PASS_DEF_RAISEQUANTIZEDMATMUL
#include "compiler/transforms/Passes.h.inc"

namespace {

template <typename Op> Op producer(Value v) { return v ? v.getDefiningOp<Op>() : Op(); }

bool isZero(Value v) {
  auto c = producer<ConstantOp>(v);
  auto dense = c ? denseElements(c.getValue()) : DenseElementsAttr();
  if (!dense || !dense.isSplat())
    return false;
  Attribute a = dense.getSplatValue<Attribute>();
  if (auto f = dyn_cast<FloatAttr>(a))
    return f.getValueAsDouble() == 0;
  return cast<IntegerAttr>(a).getValue().isZero();
}

/// v, or the lhs of `v - 0`.
Value withoutZeroSub(Value v) {
  auto sub = producer<SubOp>(v);
  return sub && isZero(sub.getRhs()) ? sub.getLhs() : v;
}

/// The int8 weight W [K, N] of cast_f32(W) [- 0], or of the f32 constant a
/// small one folded into (integers in [-128, 127]).
ElementsAttr int8Weight(Value v) {
  v = withoutZeroSub(v);
  if (auto cast = producer<CastOp>(v))
    v = cast.getInput();
  auto w = producer<ConstantOp>(v);
  auto type = w ? cast<RankedTensorType>(v.getType()) : RankedTensorType();
  if (!type || type.getRank() != 2 || type.getDimSize(0) > cpu::kMaxInt8Depth)
    return {};
  if (type.getElementType().isSignlessInteger(8))
    return w.getValue();
  auto dense = denseElements(w.getValue());
  if (!dense || !type.getElementType().isF32())
    return {};
  std::vector<char> q;
  for (float f : dense.getValues<float>()) {
    if (f != std::nearbyint(f) || f < -128 || f > 127)
      return {};
    q.push_back(char(int8_t(f)));
  }
  return makeConstant(RankedTensorType::get(type.getShape(), IntegerType::get(w.getContext(), 8)),
                      q, "int8_weight");
}

/// A constant scalar, [1] or [n] f32 scale as n per-column values.
std::optional<std::vector<float>> columnScales(Value v, int64_t n) {
  auto c = producer<ConstantOp>(v);
  auto dense = c ? denseElements(c.getValue()) : DenseElementsAttr();
  if (!dense || !dense.getElementType().isF32())
    return std::nullopt;
  auto values = llvm::to_vector(dense.getValues<float>());
  if (values.size() == 1)
    return std::vector<float>(n, values[0]);
  if (int64_t(values.size()) != n)
    return std::nullopt;
  return std::vector<float>(values.begin(), values.end());
}

/// What a quantised activation q = cast(clip(round(x / s) [+ zp], qmin,
/// qmax)) came from: x, s, and with a constant s and zp the range of x the
/// clip keeps, [(qmin - zp) s, (qmax - zp) s].
struct Quantized {
  Value x, scale;
  std::optional<std::pair<double, double>> range;
};

std::optional<Quantized> quantizedFrom(Value q) {
  auto cast = producer<CastOp>(q);
  auto clip = cast ? producer<ClipOp>(cast.getInput()) : ClipOp();
  if (!clip || !getElementTypeOrSelf(q).isInteger(8))
    return std::nullopt;
  Value rounded = clip.getInput();
  std::optional<double> zp = 0.0;
  if (auto add = producer<AddOp>(rounded)) {
    rounded = add.getLhs();
    zp = getConstantFloat(add.getRhs());
  }
  auto round = producer<RoundOp>(rounded);
  auto div = round ? producer<DivOp>(round.getInput()) : DivOp();
  if (!div)
    return std::nullopt;
  Quantized out{div.getLhs(), div.getRhs(), std::nullopt};
  if (auto s = getConstantFloat(div.getRhs()); s && zp)
    out.range = {(clip.getAlpha().convertToDouble() - *zp) * *s,
                 (clip.getBeta().convertToDouble() - *zp) * *s};
  return out;
}

/// q of cast_f32(q) [- zp].
Value quantizedOperand(Value v) {
  if (auto sub = producer<SubOp>(v))
    v = sub.getLhs();
  auto cast = producer<CastOp>(v);
  return cast ? cast.getInput() : Value();
}

bool sameConstant(Value a, Value b) {
  if (a == b)
    return true;
  auto ca = producer<ConstantOp>(a), cb = producer<ConstantOp>(b);
  return ca && cb && ca.getValue() == cb.getValue();
}

/// The int8 dense replacing `root`, computing x W with W = q * scales.
DenseOp createDense(OpBuilder &b, Operation *root, Value x, ElementsAttr w,
                    const std::vector<float> &scales) {
  auto type = cast<RankedTensorType>(w.getType());
  const int64_t k = type.getDimSize(0), n = type.getDimSize(1);
  std::vector<char> bytes = constantBytes(w);
  std::vector<int32_t> sums(n);
  cpu::columnSumsInt8(reinterpret_cast<const int8_t *>(bytes.data()), k, n, sums.data());
  Location loc = root->getLoc();
  Value scale = ConstantOp::create(
      b, loc, makeConstant(RankedTensorType::get({n}, b.getF32Type()), scales, "weight_scale"));
  Value sum = ConstantOp::create(
      b, loc, makeConstant(RankedTensorType::get({n}, b.getI32Type()), sums, "weight_sum"));
  Value weight = ConstantOp::create(b, loc, w);
  return DenseOp::create(b, loc, root->getResult(0).getType(), x, weight, Value(), Value(), Value(),
                         scale, sum, b.getI64IntegerAttr(n), b.getStringAttr("none"), FloatAttr(),
                         IntegerAttr(), FloatAttr(), IntegerAttr());
}

struct RaiseQuantizedMatMulPass : impl::RaiseQuantizedMatMulBase<RaiseQuantizedMatMulPass> {
  void runOnOperation() override {
    IRRewriter rewriter(&getContext());
    SmallVector<Operation *> products;
    getOperation().walk([&](Operation *op) {
      if (isa<MatMulOp, GemmOp>(op))
        products.push_back(op);
    });
    bool changed = false;
    for (Operation *op : products) {
      auto mm = dyn_cast<MatMulOp>(op);
      changed |= (mm && raiseDynamic(rewriter, mm)) || raiseQdq(rewriter, op);
    }
    if (changed) // the quantisation arithmetic the dense layers replaced
      (void)runRegionDCE(rewriter, getOperation()->getRegions());
  }

  /// round -> cast i32 -> cast f32 -> * (s * w_scale) after the product.
  bool raiseDynamic(IRRewriter &rewriter, MatMulOp mm) {
    ElementsAttr w = int8Weight(mm.getRhs());
    Value q = quantizedOperand(mm.getLhs());
    auto from = quantizedFrom(q);
    if (!w || !from || !mm->hasOneUse())
      return false;
    auto round = dyn_cast<RoundOp>(*mm->user_begin());
    auto toInt = round && round->hasOneUse() ? dyn_cast<CastOp>(*round->user_begin()) : CastOp();
    auto toFloat = toInt && toInt->hasOneUse() ? dyn_cast<CastOp>(*toInt->user_begin()) : CastOp();
    auto scaled =
        toFloat && toFloat->hasOneUse() ? dyn_cast<MulOp>(*toFloat->user_begin()) : MulOp();
    if (!scaled || !getElementTypeOrSelf(toFloat.getType()).isF32())
      return false;
    Value combined = scaled.getLhs() == toFloat.getResult() ? scaled.getRhs() : scaled.getLhs();
    auto product = producer<MulOp>(combined);
    if (!product || scaled.getType() != mm.getType())
      return false;
    Value wScale = product.getLhs() == from->scale   ? product.getRhs()
                   : product.getRhs() == from->scale ? product.getLhs()
                                                     : Value();
    auto scales = columnScales(wScale, cast<RankedTensorType>(w.getType()).getDimSize(1));
    if (!scales)
      return false;
    rewriter.setInsertionPoint(scaled);
    rewriter.replaceOp(scaled, createDense(rewriter, scaled, from->x, w, *scales));
    return true;
  }

  /// matmul((cast(quantize(x, s)) - zp) * s, (cast(W) - 0) * w_scale), or
  /// gemm(the same, W^T, bias) as onnxruntime's QDQ form writes a MatMul +
  /// Add. A small weight's dequantisation folds into an f32 constant, which
  /// is then quantised again per column as kiln-quantize-dense would.
  bool raiseQdq(IRRewriter &rewriter, Operation *root) {
    Value a, b, bias;
    bool transposed = false;
    if (auto mm = dyn_cast<MatMulOp>(root)) {
      a = mm.getLhs();
      b = mm.getRhs();
    } else if (auto g = dyn_cast<GemmOp>(root)) {
      auto c = g.getC() ? cast<RankedTensorType>(g.getC().getType()) : RankedTensorType();
      if (g.getTransA() || g.getAlpha().convertToDouble() != 1.0 ||
          (c && (g.getBeta().convertToDouble() != 1.0 || c.getRank() != 1 ||
                 c.getDimSize(0) != g.getType().getDimSize(1))))
        return false;
      a = g.getA();
      b = g.getB();
      bias = g.getC();
      transposed = g.getTransB();
    } else {
      return false;
    }
    auto lhs = producer<MulOp>(a);
    auto from = lhs ? quantizedFrom(quantizedOperand(lhs.getLhs())) : std::nullopt;
    if (!from || !sameConstant(from->scale, lhs.getRhs()))
      return false;
    std::vector<char> q;
    std::vector<float> scales;
    int64_t k = 0, n = 0;
    if (auto rhs = producer<MulOp>(b); ElementsAttr w = rhs ? int8Weight(rhs.getLhs()) : nullptr) {
      auto type = cast<RankedTensorType>(w.getType());
      k = type.getDimSize(transposed ? 1 : 0);
      n = type.getDimSize(transposed ? 0 : 1);
      auto s = columnScales(rhs.getRhs(), n);
      if (!s)
        return false;
      scales = *s;
      q = constantBytes(w);
      if (transposed) { // W^T, [K, N]
        std::vector<char> t(q.size());
        for (int64_t i = 0; i < k; ++i)
          for (int64_t j = 0; j < n; ++j)
            t[i * n + j] = q[j * k + i];
        q = std::move(t);
      }
    } else if (auto c = producer<ConstantOp>(b)) {
      auto type = cast<RankedTensorType>(c.getType());
      if (type.getRank() != 2 || !type.getElementType().isF32())
        return false;
      k = type.getDimSize(transposed ? 1 : 0);
      n = type.getDimSize(transposed ? 0 : 1);
      std::vector<char> bytes = constantBytes(c.getValue());
      std::vector<float> w(k * n);
      for (int64_t i = 0; i < k; ++i)
        for (int64_t j = 0; j < n; ++j)
          w[i * n + j] =
              reinterpret_cast<const float *>(bytes.data())[transposed ? j * k + i : i * n + j];
      std::vector<int32_t> sums(n);
      q.resize(k * n);
      scales.resize(n);
      if (!cpu::quantizeWeightsInt8(w.data(), k, n, reinterpret_cast<int8_t *>(q.data()),
                                    scales.data(), sums.data()))
        return false; // NaN or Inf weights stay f32 arithmetic
    }
    if (q.empty() || k > cpu::kMaxInt8Depth)
      return false;
    rewriter.setInsertionPoint(root);
    // The calibrated range saturates x (with a zero point at the bottom of
    // the range it is the ReLU the exporter folded into it): keep that.
    Value x = from->x;
    if (from->range)
      x = ClipOp::create(rewriter, root->getLoc(), x.getType(), x,
                         rewriter.getF64FloatAttr(from->range->first),
                         rewriter.getF64FloatAttr(from->range->second));
    auto w = makeConstant(RankedTensorType::get({k, n}, rewriter.getI8Type()), q, "int8_weight");
    DenseOp dense = createDense(rewriter, root, x, w, scales);
    if (bias)
      rewriter.modifyOpInPlace(dense, [&] { dense.getBiasMutable().assign(bias); });
    rewriter.replaceOp(root, dense);
    return true;
  }
};
} // namespace
} // namespace kiln
