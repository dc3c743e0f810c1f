//===- FuseEpilogues.cpp - bias, activation and residual into dense -------===//
//
// The elementwise ops that follow a layer run in its epilogue, on values
// still in registers: add of a constant row vector (bias), then relu,
// sigmoid, tanh or gelu, then add of a same-shaped tensor (residual). Only a
// dense whose sole user is the op is fused, in that order; anything else
// stays a separate op.
//
//===----------------------------------------------------------------------===//

#include "compiler/transforms/Passes.h"

#include "mlir/IR/PatternMatch.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

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

DenseOp replaceWithDense(PatternRewriter &rewriter, Operation *op, DenseOp d, Value bias,
                         Value residual, StringRef activation) {
  return rewriter.replaceOpWithNewOp<DenseOp>(op, d.getType(), d.getInput(), d.getWeight(), bias,
                                              residual, d.getUnitsAttr(),
                                              rewriter.getStringAttr(activation));
}

/// dense + constant broadcast along the last dim -> bias.
struct FuseBias : OpRewritePattern<AddOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(AddOp add, PatternRewriter &rewriter) const override {
    for (auto [x, y] : {std::pair(add.getLhs(), add.getRhs()), {add.getRhs(), add.getLhs()}}) {
      DenseOp d = soleDense(x);
      auto c = y.getDefiningOp<ConstantOp>();
      if (!d || !c || d.getBias() || d.getResidual() || d.getActivation() != "none" ||
          add.getType() != d.getType())
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
      replaceWithDense(rewriter, add, d, bias, Value(), "none");
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
    if (!d || d.getResidual() || d.getActivation() != "none")
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
    replaceWithDense(rewriter, act, d, d.getBias(), Value(), name);
    return success();
  }
};

/// dense + tensor of the same type -> residual.
struct FuseResidual : OpRewritePattern<AddOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(AddOp add, PatternRewriter &rewriter) const override {
    for (auto [x, y] : {std::pair(add.getLhs(), add.getRhs()), {add.getRhs(), add.getLhs()}}) {
      DenseOp d = soleDense(x);
      if (!d || d.getResidual() || x == y || y.getType() != d.getType() ||
          add.getType() != d.getType())
        continue;
      replaceWithDense(rewriter, add, d, d.getBias(), y, d.getActivation());
      return success();
    }
    return failure();
  }
};

struct FuseEpiloguesPass : impl::FuseEpiloguesBase<FuseEpiloguesPass> {
  void runOnOperation() override {
    RewritePatternSet patterns(&getContext());
    patterns.add<FuseBias>(&getContext(), /*benefit=*/2);
    patterns.add<FuseResidual, FuseActivation<ReluOp>, FuseActivation<SigmoidOp>,
                 FuseActivation<TanhOp>, FuseActivation<GeluOp>>(&getContext());
    if (failed(applyPatternsGreedily(getOperation(), std::move(patterns))))
      return signalPassFailure();
  }
};
} // namespace
} // namespace kiln
