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
  if (isAliasOp(user) || isa<TransposeOp, ConcatOp, CopyOp>(user))
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
      std::optional<int64_t> size;
      SmallVector<Value> worklist{arg};
      while (!worklist.empty()) {
        Value v = worklist.pop_back_val();
        for (OpOperand &use : v.getUses()) {
          Operation *user = use.getOwner();
          if (auto gather = dyn_cast<GatherOp>(user); gather && use.getOperandNumber() == 1) {
            int64_t n = gather.getData().getType().getDimSize(gather.getAxis());
            if (!ShapedType::isDynamic(n))
              size = size ? std::min(*size, n) : n;
          } else if (preservesValues(use)) {
            worklist.push_back(user->getResult(0));
          }
        }
      }
      if (size)
        func.setArgAttr(arg.getArgNumber(), "kiln.index_range",
                        builder.getDenseI64ArrayAttr({-*size, *size - 1}));
    }
  }
};
} // namespace
} // namespace kiln
