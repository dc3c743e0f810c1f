//===- BoundIndexInputs.cpp - valid ranges of index inputs ----------------===//
//
// The runtime validates every input before it touches the arena; for ids that
// feed embedding gathers that needs the table sizes, which only the compiler
// knows. Gathers still check their indices when they run.
//
//===----------------------------------------------------------------------===//

#include "compiler/transforms/Passes.h"

#include "mlir/IR/Builders.h"

using namespace mlir;

namespace kiln {
#define GEN_PASS_DEF_BOUNDINDEXINPUTS
#include "compiler/transforms/Passes.h.inc"

namespace {
/// True when the user's result holds only values taken from this operand.
bool preservesValues(OpOperand &use) {
  Operation *user = use.getOwner();
  if (isAliasOp(user) || isa<TransposeOp, ConcatOp, CopyOp, ExpandOp>(user))
    return true;
  if (isa<GatherOp, SliceOp>(user))
    return use.getOperandNumber() == 0;
  return false;
}

struct BoundIndexInputsPass : impl::BoundIndexInputsBase<BoundIndexInputsPass> {
  void runOnOperation() override {
    func::FuncOp func = getOperation();
    Builder builder(&getContext());
    for (BlockArgument arg : func.getArguments()) {
      if (!isa<IntegerType>(getElementTypeOrSelf(arg)))
        continue;
      // The intersection of the ranges every consumer accepts.
      std::optional<std::pair<int64_t, int64_t>> range;
      auto accept = [&](int64_t lo, int64_t hi) {
        range = range ? std::make_pair(std::max(range->first, lo), std::min(range->second, hi))
                      : std::make_pair(lo, hi);
      };
      SmallVector<Value> worklist{arg};
      while (!worklist.empty()) {
        Value v = worklist.pop_back_val();
        for (OpOperand &use : v.getUses()) {
          Operation *user = use.getOwner();
          if (auto gather = dyn_cast<GatherOp>(user); gather && use.getOperandNumber() == 1) {
            // ONNX Gather accepts negative indices.
            int64_t n = gather.getData().getType().getDimSize(gather.getAxis());
            if (!ShapedType::isDynamic(n))
              accept(-n, n - 1);
          } else if (auto bag = dyn_cast<EmbeddingBagOp>(user);
                     bag && use.get() == bag.getIndices()) {
            int64_t rows = bag.getTable().getType().getDimSize(0);
            if (!ShapedType::isDynamic(rows))
              accept(0, rows - 1);
          } else if (preservesValues(use)) {
            worklist.push_back(user->getResult(0));
          }
        }
      }
      if (range)
        func.setArgAttr(arg.getArgNumber(), "kiln.index_range",
                        builder.getDenseI64ArrayAttr({range->first, range->second}));
    }
  }
};
} // namespace
} // namespace kiln
