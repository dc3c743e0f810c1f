//===- RaiseEmbeddingBags.cpp - Gather + Reduce -> embedding_bag ----------===//
//
// Exporters write a fixed-hotness embedding bag as Gather(table, ids[B, H])
// -> [B, H, dim] followed by ReduceSum/Mean over H. As one embedding_bag the
// rows are pooled as they are read, and the Loop form of the exporters ends
// in the same op, so later passes and kernels see one idiom.
//
//===----------------------------------------------------------------------===//

#include "compiler/transforms/Passes.h"

#include "mlir/IR/PatternMatch.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

using namespace mlir;

namespace kiln {
#define GEN_PASS_DEF_RAISEEMBEDDINGBAGS
#include "compiler/transforms/Passes.h.inc"

namespace {
template <typename ReduceOp, int64_t Mode> struct RaiseGatherReduce : OpRewritePattern<ReduceOp> {
  using OpRewritePattern<ReduceOp>::OpRewritePattern;

  LogicalResult matchAndRewrite(ReduceOp reduce, PatternRewriter &rewriter) const override {
    // A gather with other users stays: its rows are read anyway, and a bag
    // would read the same random rows a second time.
    auto gather = reduce.getInput().template getDefiningOp<GatherOp>();
    if (!gather || !gather->hasOneUse() || gather.getAxis() != 0 ||
        gather.getData().getType().getRank() != 2)
      return failure();
    auto ids = gather.getIndices().getType();
    int64_t hotAxis = ids.getRank() - 1;
    if (ids.getRank() == 0 || !ids.hasStaticShape() || reduce.getAxes().size() != 1 ||
        reduce.getAxes()[0] != hotAxis || !reduce.getType().hasStaticShape())
      return failure();
    int64_t hotness = ids.getDimSize(hotAxis), count = ids.getNumElements();
    int64_t bags = hotness ? count / hotness : 0;
    Location loc = reduce.getLoc();
    auto i64 = rewriter.getI64Type();
    auto vector = [&](ArrayRef<int64_t> v) {
      auto type = RankedTensorType::get({int64_t(v.size())}, i64);
      return ConstantOp::create(rewriter, loc, DenseIntElementsAttr::get(type, v)).getResult();
    };
    SmallVector<int64_t> begin, end;
    for (int64_t b = 0; b < bags; ++b) {
      begin.push_back(b * hotness);
      end.push_back((b + 1) * hotness);
    }
    Value flat =
        ReshapeOp::create(rewriter, loc, RankedTensorType::get({count}, ids.getElementType()),
                          gather.getIndices(), vector({count}));
    auto table = gather.getData().getType();
    auto pooledType = RankedTensorType::get({bags, table.getDimSize(1)}, table.getElementType());
    Value pooled = EmbeddingBagOp::create(rewriter, loc, pooledType, gather.getData(), flat,
                                          vector(begin), vector(end), Value(),
                                          rewriter.getI64IntegerAttr(Mode), rewriter.getUnitAttr());
    auto shape = reduce.getType().getShape();
    rewriter.replaceOpWithNewOp<ReshapeOp>(reduce, reduce.getType(), pooled, vector(shape));
    return success();
  }
};

struct RaiseEmbeddingBagsPass : impl::RaiseEmbeddingBagsBase<RaiseEmbeddingBagsPass> {
  void runOnOperation() override {
    RewritePatternSet patterns(&getContext());
    patterns.add<RaiseGatherReduce<ReduceSumOp, 0>, RaiseGatherReduce<ReduceMeanOp, 1>>(
        &getContext());
    if (failed(applyPatternsGreedily(getOperation(), std::move(patterns))))
      return signalPassFailure();
  }
};
} // namespace
} // namespace kiln
