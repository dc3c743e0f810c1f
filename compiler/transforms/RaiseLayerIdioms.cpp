//===- RaiseLayerIdioms.cpp - decomposed GELU / LayerNorm -> one op -------===//
//
// Exporters spell GELU as x * 0.5 * (1 + erf(x / sqrt 2)) and, before opset
// 17, LayerNorm as mean/sub/pow/mean/add/sqrt/div/mul/add. As kiln.gelu and
// kiln.layer_norm they run as one vectorised loop each, and a GELU after a
// dense becomes its epilogue. Matching is on the dataflow and the constants'
// values, in any operand order; intermediate values used elsewhere block it.
//
//===----------------------------------------------------------------------===//

#include "compiler/transforms/Passes.h"

#include "mlir/IR/PatternMatch.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

#include <cmath>

using namespace mlir;

namespace kiln {
#define GEN_PASS_DEF_RAISELAYERIDIOMS
#include "compiler/transforms/Passes.h.inc"

namespace {

bool isScalar(Value v, double expected) {
  auto c = getConstantFloat(v);
  return c && std::abs(*c - expected) <= 1e-6 * std::max(1.0, std::abs(expected));
}

/// `x` if v is x / sqrt(2) or x * (1 / sqrt(2)).
Value unscaledBySqrt2(Value v) {
  if (auto d = v.getDefiningOp<DivOp>(); d && isScalar(d.getRhs(), std::sqrt(2.0)))
    return d.getLhs();
  if (auto m = v.getDefiningOp<MulOp>()) {
    if (isScalar(m.getRhs(), std::sqrt(0.5)))
      return m.getLhs();
    if (isScalar(m.getLhs(), std::sqrt(0.5)))
      return m.getRhs();
  }
  return {};
}

/// The leaves of a tree of multiplies under `root`, descending into
/// operands that are multiplies used only there.
void productLeaves(Value v, bool root, SmallVectorImpl<Value> &leaves) {
  auto m = v.getDefiningOp<MulOp>();
  if (m && (root || v.hasOneUse()) && leaves.size() < 4) {
    productLeaves(m.getLhs(), false, leaves);
    productLeaves(m.getRhs(), false, leaves);
    return;
  }
  leaves.push_back(v);
}

/// x * 0.5 * (1 + erf(x / sqrt 2)), multiplied in any order.
struct RaiseGelu : OpRewritePattern<MulOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(MulOp mul, PatternRewriter &rewriter) const override {
    SmallVector<Value> leaves;
    productLeaves(mul.getResult(), true, leaves);
    if (leaves.size() != 3 || !mul.getType().getElementType().isF32())
      return failure();
    Value half, erfTerm, x;
    for (Value leaf : leaves) {
      if (!half && isScalar(leaf, 0.5))
        half = leaf;
      else if (auto add = leaf.getDefiningOp<AddOp>(); !erfTerm && add && leaf.hasOneUse() &&
                                                       (isScalar(add.getLhs(), 1.0) ||
                                                        isScalar(add.getRhs(), 1.0)))
        erfTerm = leaf;
      else
        x = leaf;
    }
    if (!half || !erfTerm || !x || x.getType() != mul.getType())
      return failure();
    auto add = erfTerm.getDefiningOp<AddOp>();
    auto erf = (isScalar(add.getLhs(), 1.0) ? add.getRhs() : add.getLhs()).getDefiningOp<ErfOp>();
    if (!erf || !erf->hasOneUse() || unscaledBySqrt2(erf.getInput()) != x)
      return failure();
    rewriter.replaceOpWithNewOp<GeluOp>(mul, x, rewriter.getF64FloatAttr(0.0),
                                        rewriter.getF64FloatAttr(0.0));
    return success();
  }
};

/// reduce_mean over the last dim only, keeping it.
bool isLastDimMean(Value v, Value of) {
  auto m = v.getDefiningOp<ReduceMeanOp>();
  auto t = cast<RankedTensorType>(of.getType());
  return m && m.getInput() == of && m.getKeepdims() && m.getAxes().size() == 1 &&
         m.getAxes()[0] == t.getRank() - 1;
}

/// A constant that broadcasts as a vector along the last dim of `like`.
Value lastDimVector(Value v, RankedTensorType like) {
  auto c = v.getDefiningOp<ConstantOp>();
  if (!c)
    return {};
  auto t = c.getType();
  int64_t n = like.getShape().back();
  if (t.getRank() > like.getRank() || t.getNumElements() != n ||
      (t.getRank() && t.getShape().back() != n) || t.getElementType() != like.getElementType())
    return {};
  return v;
}

/// (x - mean(x)) / sqrt(mean((x - mean(x))^2) + eps) [* gamma] [+ beta].
struct RaiseLayerNorm : OpRewritePattern<DivOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(DivOp div, PatternRewriter &rewriter) const override {
    auto type = div.getType();
    auto centered = div.getLhs().getDefiningOp<SubOp>();
    auto sqrt = div.getRhs().getDefiningOp<SqrtOp>();
    if (!type.hasStaticShape() || !type.getElementType().isF32() || !centered || !sqrt ||
        type.getRank() < 1)
      return failure();
    Value x = centered.getLhs(), d = div.getLhs();
    if (x.getType() != type || !isLastDimMean(centered.getRhs(), x))
      return failure();
    auto addEps = sqrt.getInput().getDefiningOp<AddOp>();
    if (!addEps)
      return failure();
    auto eps = getConstantFloat(addEps.getRhs());
    Value variance = addEps.getLhs();
    if (!eps) {
      eps = getConstantFloat(addEps.getLhs());
      variance = addEps.getRhs();
    }
    auto mean = variance.getDefiningOp<ReduceMeanOp>();
    if (!eps || !mean || !isLastDimMean(variance, mean.getInput()))
      return failure();
    Value square = mean.getInput();
    auto pow = square.getDefiningOp<PowOp>();
    auto mul = square.getDefiningOp<MulOp>();
    if (!((pow && pow.getLhs() == d && isScalar(pow.getRhs(), 2.0)) ||
          (mul && mul.getLhs() == d && mul.getRhs() == d)))
      return failure();
    // The uses of the centred value are the square and the division only.
    for (Operation *user : d.getUsers())
      if (user != div && user != square.getDefiningOp())
        return failure();

    // Fold a following scale and shift.
    Operation *last = div;
    Value scale, bias;
    if (div->hasOneUse())
      if (auto m = dyn_cast<MulOp>(*div->user_begin()); m && m.getType() == type)
        if ((scale = lastDimVector(m.getLhs() == div ? m.getRhs() : m.getLhs(), type)))
          last = m;
    if (last->hasOneUse())
      if (auto a = dyn_cast<AddOp>(*last->user_begin()); a && a.getType() == type)
        if ((bias = lastDimVector(a.getLhs() == last->getResult(0) ? a.getRhs() : a.getLhs(),
                                  type)))
          last = a;
    int64_t n = type.getShape().back();
    auto vectorType = RankedTensorType::get({n}, type.getElementType());
    auto asVector = [&](Value v) -> Value {
      auto c = v.getDefiningOp<ConstantOp>();
      return ConstantOp::create(rewriter, c.getLoc(),
                                makeConstant(vectorType, constantBytes(c.getValue()), "ln_param"));
    };
    rewriter.setInsertionPoint(last);
    if (scale)
      scale = asVector(scale);
    else
      scale = ConstantOp::create(rewriter, div.getLoc(),
                                 DenseElementsAttr::get(vectorType, rewriter.getF32FloatAttr(1.0f)));
    if (bias)
      bias = asVector(bias);
    rewriter.replaceOpWithNewOp<LayerNormOp>(last, type, x, scale, bias,
                                             rewriter.getI64IntegerAttr(type.getRank() - 1),
                                             rewriter.getF64FloatAttr(*eps), UnitAttr());
    return success();
  }
};

struct RaiseLayerIdiomsPass : impl::RaiseLayerIdiomsBase<RaiseLayerIdiomsPass> {
  void runOnOperation() override {
    RewritePatternSet patterns(&getContext());
    patterns.add<RaiseGelu, RaiseLayerNorm>(&getContext());
    if (failed(applyPatternsGreedily(getOperation(), std::move(patterns))))
      return signalPassFailure();
  }
};
} // namespace
} // namespace kiln
