//===- FuseEpilogues.cpp - bias, activation and residual into dense -------===//
//
// The elementwise ops that follow a layer run in its epilogue, on values
// still in registers: add of a constant row vector (bias), then relu,
// sigmoid, tanh or gelu, then multiplication by a same-shaped tensor (a DCN
// cross layer's x0 *), then add of a same-shaped tensor (residual). Only a
// dense whose sole user is the op is fused, in that order; anything else
// stays a separate op.
//
//===----------------------------------------------------------------------===//

#include "compiler/transforms/Passes.h"

#include "mlir/IR/PatternMatch.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

#include <optional>

using namespace mlir;

namespace kiln {
#define GEN_PASS_DEF_FUSEEPILOGUES
#include "compiler/transforms/Passes.h.inc"

namespace {

/// The dense producing `v` if `v` is its only use.
DenseOp soleDense(Value v) {
  auto d = v.getDefiningOp<DenseOp>();
  return d && d->hasOneUse() ? d : DenseOp();
}

/// `op` replaced by a copy of `d` with the given epilogue.
DenseOp replaceWithDense(PatternRewriter &rewriter, Operation *op, DenseOp d, Value bias,
                         StringRef activation, Value multiplier, Value residual) {
  return rewriter.replaceOpWithNewOp<DenseOp>(
      op, d.getType(), d.getInput(), d.getWeight(), bias, multiplier, residual, d.getWeightScale(),
      d.getWeightSum(), d.getUnitsAttr(), rewriter.getStringAttr(activation), d.getInputScaleAttr(),
      d.getInputZeroPointAttr(), d.getOutputScaleAttr(), d.getOutputZeroPointAttr());
}

/// For a binary op with a sole-use dense operand (of the op's type) that
/// `accepts`, and another operand of the same type: that dense and the
/// other operand. Either operand order.
std::optional<std::pair<DenseOp, Value>>
denseAndSameShapedOperand(Operation *op, function_ref<bool(DenseOp)> accepts) {
  Value lhs = op->getOperand(0), rhs = op->getOperand(1);
  for (auto [x, y] : {std::pair(lhs, rhs), {rhs, lhs}}) {
    DenseOp d = soleDense(x);
    if (d && accepts(d) && x != y && y.getType() == d.getType() &&
        op->getResult(0).getType() == d.getType())
      return std::pair(d, y);
  }
  return std::nullopt;
}

/// True when nothing has been fused after the bias yet.
bool onlyBias(DenseOp d) {
  return d.getActivation() == "none" && !d.getMultiplier() && !d.getResidual();
}

/// dense + constant broadcast along the last dim -> bias.
struct FuseBias : OpRewritePattern<AddOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(AddOp add, PatternRewriter &rewriter) const override {
    for (auto [x, y] : {std::pair(add.getLhs(), add.getRhs()), {add.getRhs(), add.getLhs()}}) {
      DenseOp d = soleDense(x);
      auto c = y.getDefiningOp<ConstantOp>();
      if (!d || !c || d.getBias() || !onlyBias(d) || add.getType() != d.getType())
        continue;
      auto ct = c.getType();
      int64_t n = d.getUnits();
      if (ct.getRank() > d.getType().getRank() || ct.getNumElements() != n ||
          (ct.getRank() > 0 && ct.getShape().back() != n))
        continue;
      auto biasType = RankedTensorType::get({n}, ct.getElementType());
      Value bias = ConstantOp::create(rewriter, c.getLoc(),
                                      makeConstant(biasType, constantBytes(c.getValue()),
                                                   "dense_bias"));
      replaceWithDense(rewriter, add, d, bias, "none", Value(), Value());
      return success();
    }
    return failure();
  }
};

/// act(dense) with no residual yet -> activation.
template <typename Act> struct FuseActivation : OpRewritePattern<Act> {
  using OpRewritePattern<Act>::OpRewritePattern;
  LogicalResult matchAndRewrite(Act act, PatternRewriter &rewriter) const override {
    DenseOp d = soleDense(act.getInput());
    if (!d || !onlyBias(d))
      return failure();
    StringRef name;
    if constexpr (std::is_same_v<Act, ReluOp>)
      name = "relu";
    else if constexpr (std::is_same_v<Act, SigmoidOp>)
      name = "sigmoid";
    else if constexpr (std::is_same_v<Act, TanhOp>)
      name = "tanh";
    else
      name = act.getAlpha().convertToDouble() != 0 ? "gelu_tanh" : "gelu";
    replaceWithDense(rewriter, act, d, d.getBias(), name, Value(), Value());
    return success();
  }
};

/// dense + tensor of the same type -> residual.
struct FuseResidual : OpRewritePattern<AddOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(AddOp add, PatternRewriter &rewriter) const override {
    auto match = denseAndSameShapedOperand(add, [](DenseOp d) { return !d.getResidual(); });
    if (!match)
      return failure();
    auto [d, y] = *match;
    replaceWithDense(rewriter, add, d, d.getBias(), d.getActivation(), d.getMultiplier(), y);
    return success();
  }
};

/// dense * tensor of the same type, before any residual -> multiplier.
struct FuseMultiplier : OpRewritePattern<MulOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(MulOp mul, PatternRewriter &rewriter) const override {
    auto match = denseAndSameShapedOperand(
        mul, [](DenseOp d) { return !d.getMultiplier() && !d.getResidual(); });
    if (!match)
      return failure();
    auto [d, y] = *match;
    replaceWithDense(rewriter, mul, d, d.getBias(), d.getActivation(), y, Value());
    return success();
  }
};

struct FuseEpiloguesPass : impl::FuseEpiloguesBase<FuseEpiloguesPass> {
  void runOnOperation() override {
    RewritePatternSet patterns(&getContext());
    patterns.add<FuseBias>(&getContext(), /*benefit=*/2);
    patterns.add<FuseResidual, FuseMultiplier, FuseActivation<ReluOp>, FuseActivation<SigmoidOp>,
                 FuseActivation<TanhOp>, FuseActivation<GeluOp>>(&getContext());
    if (failed(applyPatternsGreedily(getOperation(), std::move(patterns))))
      return signalPassFailure();
  }
};
} // namespace
} // namespace kiln
