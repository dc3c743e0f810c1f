//===- PlaceHostTables.cpp - embedding tables kept in host memory ---------===//
//
// Hybrid placement for the CUDA target (kiln compile --host-tables-over):
// a constant f32 table larger than `bytes` whose every reader is a
// kiln.embedding_bags gets `kiln.on_host`. The emitter stores it apart from
// the weights uploaded to the device, and the bag kernel pools its lookups on
// the CPU. Row gathers from a large table are rewritten as unpooled bags
// first (rowGatherAsEmbeddingBags); a large table still read by another op
// stays on the device, with a warning at that op.
//
//===----------------------------------------------------------------------===//

#include "compiler/transforms/Passes.h"

#include "mlir/IR/PatternMatch.h"

using namespace mlir;

namespace kiln {
#define GEN_PASS_DEF_PLACEHOSTTABLES
#include "compiler/transforms/Passes.h.inc"

namespace {

/// Whether `user` reads `table` as one of its f32 lookup tables.
bool poolsFrom(Operation *user, Value table) {
  auto bags = dyn_cast<EmbeddingBagsOp>(user);
  return bags && bags.getBits() == 32 && llvm::is_contained(bags.getTables(), table);
}

struct PlaceHostTablesPass : impl::PlaceHostTablesBase<PlaceHostTablesPass> {
  using PlaceHostTablesBase::PlaceHostTablesBase;

  void runOnOperation() override {
    if (bytes < 0) {
      getOperation().emitError("kiln-place-host-tables: bytes must be >= 0, got ")
          << int64_t(bytes);
      return signalPassFailure();
    }
    IRRewriter rewriter(&getContext());
    DenseSet<Location> warned; // each bucket's copy of an op warns once
    SmallVector<ConstantOp> large;
    getOperation().walk([&](ConstantOp c) {
      auto type = dyn_cast<RankedTensorType>(c.getType());
      if (type && type.getRank() == 2 && type.getElementType().isF32() &&
          type.getNumElements() * int64_t(sizeof(float)) > bytes)
        large.push_back(c);
    });
    for (ConstantOp c : large) {
      for (Operation *user : llvm::make_early_inc_range(c->getUsers()))
        if (auto gather = dyn_cast<GatherOp>(user); gather && gather.getData() == c.getResult())
          (void)rowGatherAsEmbeddingBags(gather, rewriter);
      Operation *reader = nullptr;
      bool looksUp = false;
      for (Operation *user : c->getUsers()) {
        bool pools = poolsFrom(user, c.getResult());
        looksUp |= pools || isa<GatherOp, EmbeddingBagOp, EmbeddingBagsOp>(user);
        if (!pools && !reader)
          reader = user;
      }
      if (!reader)
        c->setAttr("kiln.on_host", rewriter.getUnitAttr());
      else if (looksUp && warned.insert(reader->getLoc()).second) // a table: say why it stays
        reader->emitWarning() << "an embedding table of "
                              << cast<RankedTensorType>(c.getType()).getNumElements() * 4
                              << " bytes stays in device memory: this "
                              << reader->getName().getStringRef()
                              << " reads it there (only embedding_bags and row gathers pool "
                                 "from host memory)";
    }
  }
};
} // namespace
} // namespace kiln
