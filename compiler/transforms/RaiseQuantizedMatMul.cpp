//===- RaiseQuantizedMatMul.cpp - pre-quantised products to int8 dense ----===//
//
// onnxruntime's quantisation tool writes int8 products that the importer
// turns into f32 arithmetic (OnnxImporter.cpp, importQuantization):
//
//   dynamic (MatMulInteger):  q = quantize(x, s, zp)   (DynamicQuantizeLinear)
//     y = cast_f32(cast_i32(round(matmul(cast_f32(q) - zp, cast_f32(W) [- 0])))) * (s * w_scale)
//   QDQ (QuantizeLinear/DequantizeLinear, QLinearMatMul):
//     y = matmul((cast_f32(quantize(x, s, zp)) - zp) * s, (cast_f32(W) [- 0]) * w_scale)
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

/// What a quantised activation q = cast(clip(round(x / s) [+ zp])) came from.
struct Quantized {
  Value x, scale;
};

std::optional<Quantized> quantizedFrom(Value q) {
  auto cast = producer<CastOp>(q);
  auto clip = cast ? producer<ClipOp>(cast.getInput()) : ClipOp();
  if (!clip || !getElementTypeOrSelf(q).isInteger(8))
    return std::nullopt;
  Value rounded = clip.getInput();
  if (auto add = producer<AddOp>(rounded))
    rounded = add.getLhs();
  auto round = producer<RoundOp>(rounded);
  auto div = round ? producer<DivOp>(round.getInput()) : DivOp();
  if (!div)
    return std::nullopt;
  return Quantized{div.getLhs(), div.getRhs()};
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
  std::vector<int32_t> sums(n, 0);
  for (int64_t i = 0; i < k; ++i)
    for (int64_t j = 0; j < n; ++j)
      sums[j] += int8_t(bytes[i * n + j]);
  Location loc = root->getLoc();
  auto asBytes = [](const auto &v) {
    return ArrayRef(reinterpret_cast<const char *>(v.data()), v.size() * sizeof(v[0]));
  };
  Value scale = ConstantOp::create(
      b, loc, makeConstant(RankedTensorType::get({n}, b.getF32Type()), asBytes(scales),
                           "weight_scale"));
  Value sum = ConstantOp::create(
      b, loc, makeConstant(RankedTensorType::get({n}, b.getI32Type()), asBytes(sums), "weight_sum"));
  Value weight = ConstantOp::create(b, loc, w);
  return DenseOp::create(b, loc, root->getResult(0).getType(), x, weight, Value(), Value(), Value(),
                         scale, sum, b.getI64IntegerAttr(n), b.getStringAttr("none"));
}

struct RaiseQuantizedMatMulPass : impl::RaiseQuantizedMatMulBase<RaiseQuantizedMatMulPass> {
  void runOnOperation() override {
    IRRewriter rewriter(&getContext());
    SmallVector<MatMulOp> products;
    getOperation().walk([&](MatMulOp mm) { products.push_back(mm); });
    bool changed = false;
    for (MatMulOp mm : products)
      changed |= raiseDynamic(rewriter, mm) || raiseQdq(rewriter, mm);
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
    auto toFloat =
        toInt && toInt->hasOneUse() ? dyn_cast<CastOp>(*toInt->user_begin()) : CastOp();
    auto scaled =
        toFloat && toFloat->hasOneUse() ? dyn_cast<MulOp>(*toFloat->user_begin()) : MulOp();
    if (!scaled || !getElementTypeOrSelf(toFloat.getType()).isF32())
      return false;
    Value combined = scaled.getLhs() == toFloat.getResult() ? scaled.getRhs() : scaled.getLhs();
    auto product = producer<MulOp>(combined);
    if (!product || scaled.getType() != mm.getType())
      return false;
    Value wScale = product.getLhs() == from->scale    ? product.getRhs()
                   : product.getRhs() == from->scale ? product.getLhs()
                                                      : Value();
    auto scales = columnScales(wScale, cast<RankedTensorType>(w.getType()).getDimSize(1));
    if (!scales)
      return false;
    rewriter.setInsertionPoint(scaled);
    rewriter.replaceOp(scaled, createDense(rewriter, scaled, from->x, w, *scales));
    return true;
  }

  /// matmul((cast(quantize(x, s)) - zp) * s, (cast(W) - 0) * w_scale).
  bool raiseQdq(IRRewriter &rewriter, MatMulOp mm) {
    auto lhs = producer<MulOp>(mm.getLhs()), rhs = producer<MulOp>(mm.getRhs());
    if (!lhs || !rhs)
      return false;
    ElementsAttr w = int8Weight(rhs.getLhs());
    auto from = quantizedFrom(quantizedOperand(lhs.getLhs()));
    if (!w || !from || !sameConstant(from->scale, lhs.getRhs()))
      return false;
    auto scales = columnScales(rhs.getRhs(), cast<RankedTensorType>(w.getType()).getDimSize(1));
    if (!scales)
      return false;
    rewriter.setInsertionPoint(mm);
    rewriter.replaceOp(mm, createDense(rewriter, mm, from->x, w, *scales));
    return true;
  }
};
} // namespace
} // namespace kiln
