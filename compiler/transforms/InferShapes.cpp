//===- InferShapes.cpp - refine result types after specialisation ---------===//
//
// Types are refined by replacing an op with a re-typed clone, which puts its
// users back on the greedy driver's worklist; the driver's folding of ops with
// constant operands then collapses shape sub-graphs as shapes become known.
//
//===----------------------------------------------------------------------===//

#include "compiler/transforms/Passes.h"

#include "mlir/IR/PatternMatch.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

using namespace mlir;

namespace kiln {
#define GEN_PASS_DEF_INFERSHAPES
#include "compiler/transforms/Passes.h.inc"

namespace {
struct RefineResultTypes : RewritePattern {
  RefineResultTypes(MLIRContext *ctx, bool &failed)
      : RewritePattern(MatchAnyOpTypeTag(), 1, ctx), failed(failed) {}

  LogicalResult matchAndRewrite(Operation *op, PatternRewriter &rewriter) const override {
    if (!isa<KilnDialect>(op->getDialect()))
      return failure();
    FailureOr<SmallVector<Type>> types = inferResultTypes(op);
    if (::mlir::failed(types)) {
      failed = true;
      return failure();
    }
    if (TypeRange(*types) == op->getResultTypes())
      return failure();
    if (!areCompatibleTypes(*types, op->getResultTypes())) {
      op->emitError("inferred result type ")
          << (*types)[0] << " contradicts " << op->getResult(0).getType();
      failed = true;
      return failure();
    }
    Operation *refined = rewriter.clone(*op);
    for (auto [result, type] : llvm::zip(refined->getResults(), *types))
      result.setType(type);
    rewriter.replaceOp(op, refined->getResults());
    return success();
  }

  bool &failed;
};

struct InferShapesPass : impl::InferShapesBase<InferShapesPass> {
  void runOnOperation() override {
    func::FuncOp func = getOperation();
    bool failed = false;
    RewritePatternSet patterns(&getContext());
    patterns.add<RefineResultTypes>(&getContext(), failed);
    GreedyRewriteConfig config;
    config.setUseTopDownTraversal(true);
    config.setMaxIterations(GreedyRewriteConfig::kNoLimit);
    if (::mlir::failed(applyPatternsGreedily(func, std::move(patterns), config)) || failed)
      return signalPassFailure();

    // After specialisation a dim left unknown depends on run-time values.
    for (Operation &op : func.getBody().front().without_terminator())
      for (Value v : op.getResults())
        if (!cast<RankedTensorType>(v.getType()).hasStaticShape()) {
          op.emitError("result shape ")
              << v.getType() << " depends on values known only at run time";
          return signalPassFailure();
        }

    auto ret = cast<func::ReturnOp>(func.getBody().front().getTerminator());
    func.setType(FunctionType::get(&getContext(), func.getArgumentTypes(), ret.getOperandTypes()));
    auto batch = func->getAttrOfType<IntegerAttr>("kiln.batch");
    if (!batch)
      return;
    for (auto [i, type] : llvm::enumerate(ret.getOperandTypes())) {
      if (!func.getResultAttr(i, "kiln.batched"))
        continue;
      auto t = cast<RankedTensorType>(type);
      if (t.getRank() == 0 || t.getDimSize(0) != batch.getInt()) {
        auto name = func.getResultAttrOfType<StringAttr>(i, "kiln.name");
        func.emitError() << "output '" << (name ? name.getValue() : "?")
                         << "' is declared batched but has type " << t << " at batch "
                         << batch.getInt();
        return signalPassFailure();
      }
    }
  }
};
} // namespace
} // namespace kiln
