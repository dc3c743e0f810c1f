//===- FuseElementwise.cpp - elementwise chains -> one loop ---------------===//
//
// What is left of elementwise work after the dense epilogues and the layer
// idioms took theirs (an L2 normalisation's square, sqrt and divide, the
// FM term's square and subtract) would otherwise run as one pass over memory
// per op, each writing an intermediate tensor. A tree of elementwise ops
// whose inner results have no other user becomes one kiln.fused_elementwise
// whose body holds the same ops on single elements: one loop, each input
// element read once, no intermediates.
//
//===----------------------------------------------------------------------===//

#include "compiler/transforms/Passes.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/IRMapping.h"
#include "llvm/ADT/SetVector.h"

using namespace mlir;

namespace kiln {
#define GEN_PASS_DEF_FUSEELEMENTWISE
#include "compiler/transforms/Passes.h.inc"

namespace {

int64_t elementCount(Value v) { return cast<RankedTensorType>(v.getType()).getNumElements(); }

/// An f32 elementwise op whose operands each have its result's element count
/// or one element, so that one flat loop computes it.
bool fusable(Operation *op) {
  if (!isElementwise(op) || isa<FusedElementwiseOp>(op) || op->getNumResults() != 1)
    return false;
  auto type = cast<RankedTensorType>(op->getResult(0).getType());
  if (!type.hasStaticShape() || !type.getElementType().isF32())
    return false;
  return llvm::all_of(op->getOperands(), [&](Value v) {
    auto t = cast<RankedTensorType>(v.getType());
    return t.hasStaticShape() && t.getElementType().isF32() &&
           (t.getNumElements() == type.getNumElements() || t.getNumElements() == 1);
  });
}

/// Replaces `cluster` (in program order, its last op the root) by one
/// fused_elementwise.
void fuse(ArrayRef<Operation *> cluster) {
  Operation *root = cluster.back();
  DenseSet<Operation *> members(cluster.begin(), cluster.end());
  llvm::SetVector<Value> inputs;
  for (Operation *op : cluster)
    for (Value v : op->getOperands())
      if (!members.contains(v.getDefiningOp()))
        inputs.insert(v);

  OpBuilder builder(root);
  auto fused = FusedElementwiseOp::create(builder, root->getLoc(), root->getResult(0).getType(),
                                          inputs.getArrayRef());
  Block *body = builder.createBlock(&fused.getBody());
  IRMapping map;
  auto element = [](Value v) {
    return RankedTensorType::get({}, cast<RankedTensorType>(v.getType()).getElementType());
  };
  for (Value in : inputs)
    map.map(in, body->addArgument(element(in), in.getLoc()));
  for (Operation *op : cluster) {
    OperationState state(op->getLoc(), op->getName());
    for (Value v : op->getOperands())
      state.addOperands(map.lookup(v));
    state.addTypes(element(op->getResult(0)));
    state.addAttributes(op->getAttrs());
    map.map(op->getResult(0), builder.create(state)->getResult(0));
  }
  YieldOp::create(builder, root->getLoc(), map.lookup(root->getResult(0)));
  root->getResult(0).replaceAllUsesWith(fused.getResult());
  for (Operation *op : llvm::reverse(cluster))
    op->erase();
}

struct FuseElementwisePass : impl::FuseElementwiseBase<FuseElementwisePass> {
  void runOnOperation() override {
    SmallVector<Operation *> ops;
    for (Operation &op : getOperation().getBody().front())
      ops.push_back(&op);
    DenseSet<Operation *> fusedAway;
    // From the last op backwards, each unfused elementwise op roots a tree:
    // an elementwise producer of the same element count joins it when its
    // result has no other user.
    for (Operation *root : llvm::reverse(ops)) {
      if (fusedAway.contains(root) || !fusable(root))
        continue;
      llvm::SetVector<Operation *> cluster;
      cluster.insert(root);
      for (size_t i = 0; i < cluster.size(); ++i)
        for (Value v : cluster[i]->getOperands()) {
          Operation *def = v.getDefiningOp();
          if (def && !cluster.contains(def) && v.hasOneUse() && fusable(def) &&
              elementCount(v) == elementCount(root->getResult(0)))
            cluster.insert(def);
        }
      if (cluster.size() < 2)
        continue;
      SmallVector<Operation *> ordered(cluster.begin(), cluster.end());
      llvm::sort(ordered, [](Operation *a, Operation *b) { return a->isBeforeInBlock(b); });
      for (Operation *op : ordered)
        fusedAway.insert(op);
      fuse(ordered);
    }
  }
};
} // namespace
} // namespace kiln
