//===- FuseAttention.cpp - the exporters' attention block -> one op -------===//
//
// Exporters write multi-head attention as head transposes of the
// projections, matmul(q, k^T), a scale (div or mul by a constant), an
// optional additive mask, softmax over the keys, matmul with v and a
// transpose back. As kiln.attention on the [batch, seq, heads, dim] views of
// the projections, the four transposes and the [B, H, S, S] scores are
// never materialised. Every intermediate must have no other user.
//
//===----------------------------------------------------------------------===//

#include "compiler/transforms/Passes.h"

#include "mlir/IR/PatternMatch.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

using namespace mlir;

namespace kiln {
#define GEN_PASS_DEF_FUSEATTENTION
#include "compiler/transforms/Passes.h.inc"

namespace {

/// The input of a single-use transpose of rank 4 with permutation `perm`.
Value transposedFrom(Value v, ArrayRef<int64_t> perm) {
  auto t = v.getDefiningOp<TransposeOp>();
  if (!t || !v.hasOneUse() || t.getPerm() != perm)
    return {};
  return t.getInput();
}

template <typename Op> Op soleDef(Value v) {
  return v.hasOneUse() ? v.getDefiningOp<Op>() : Op();
}

struct FuseAttention : OpRewritePattern<TransposeOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(TransposeOp out, PatternRewriter &rewriter) const override {
    static constexpr int64_t kHeads[] = {0, 2, 1, 3}, kKeys[] = {0, 2, 3, 1};
    if (out.getPerm() != ArrayRef(kHeads) || !out.getType().getElementType().isF32())
      return failure();
    auto pv = soleDef<MatMulOp>(out.getInput());
    if (!pv)
      return failure();
    Value v = transposedFrom(pv.getRhs(), kHeads);
    auto softmax = soleDef<SoftmaxOp>(pv.getLhs());
    if (!v || !softmax || softmax.getAxis() != 3)
      return failure();

    // logits = scale(q k^T) [+ mask]
    Value logits = softmax.getInput(), mask;
    if (auto add = soleDef<AddOp>(logits)) {
      auto isScores = [](Value x) {
        Operation *def = x.getDefiningOp();
        return def && isa<MatMulOp, DivOp, MulOp>(def);
      };
      bool lhs = isScores(add.getLhs());
      logits = lhs ? add.getLhs() : add.getRhs();
      mask = lhs ? add.getRhs() : add.getLhs();
      auto mt = cast<RankedTensorType>(mask.getType());
      if (mt.getRank() > 4 || !mt.getElementType().isF32())
        return failure();
    }
    double scale = 1.0;
    if (auto div = soleDef<DivOp>(logits)) {
      auto c = getConstantFloat(div.getRhs());
      if (!c || *c == 0)
        return failure();
      scale = 1.0 / *c;
      logits = div.getLhs();
    } else if (auto mul = soleDef<MulOp>(logits)) {
      auto c = getConstantFloat(mul.getRhs());
      if (!c)
        return failure();
      scale = *c;
      logits = mul.getLhs();
    }
    auto qk = soleDef<MatMulOp>(logits);
    if (!qk)
      return failure();
    Value q = transposedFrom(qk.getLhs(), kHeads), k = transposedFrom(qk.getRhs(), kKeys);
    if (!q || !k)
      return failure();
    // The kernel keeps one head's keys and a row of scores on the stack.
    auto kt = cast<RankedTensorType>(k.getType());
    if (kt.getDimSize(1) * kt.getDimSize(3) > 16384 || kt.getDimSize(1) > 4096)
      return failure();
    auto fused = AttentionOp::create(rewriter, out.getLoc(), out.getType(), q, k, v, mask,
                                     rewriter.getF64FloatAttr(scale));
    if (failed(fused.verify())) { // e.g. a mask that does not broadcast
      rewriter.eraseOp(fused);
      return failure();
    }
    rewriter.replaceOp(out, fused.getResult());
    return success();
  }
};

struct FuseAttentionPass : impl::FuseAttentionBase<FuseAttentionPass> {
  void runOnOperation() override {
    RewritePatternSet patterns(&getContext());
    patterns.add<FuseAttention>(&getContext());
    if (failed(applyPatternsGreedily(getOperation(), std::move(patterns))))
      return signalPassFailure();
  }
};
} // namespace
} // namespace kiln
