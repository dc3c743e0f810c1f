//===- CheckBucketRows.cpp - rows independent of the batch size ------------===//
//
// A request runs in the smallest bucket that holds it, its rows padded to
// the bucket's batch; the runtime copies each output's rows with the row
// shape of the descriptor, taken from the first bucket. An output whose row
// shape differs between buckets mixes rows across the batch, and would come
// back as bytes of another layout: refuse it, naming it and both shapes.
//
//===----------------------------------------------------------------------===//

#include "compiler/transforms/Passes.h"

using namespace mlir;

namespace kiln {
#define GEN_PASS_DEF_CHECKBUCKETROWS
#include "compiler/transforms/Passes.h.inc"

namespace {

struct CheckBucketRowsPass : impl::CheckBucketRowsBase<CheckBucketRowsPass> {
  void runOnOperation() override {
    func::FuncOp first;
    for (auto f : getOperation().getOps<func::FuncOp>()) {
      if (!f->hasAttr("kiln.batch"))
        continue;
      if (!first) {
        first = f;
        continue;
      }
      for (unsigned i = 0; i < f.getNumResults(); ++i) {
        auto a = cast<RankedTensorType>(first.getResultTypes()[i]);
        auto b = cast<RankedTensorType>(f.getResultTypes()[i]);
        const unsigned skip = f.getResultAttr(i, "kiln.batched") ? 1 : 0;
        if (a.getRank() == b.getRank() &&
            a.getShape().drop_front(skip) == b.getShape().drop_front(skip))
          continue;
        auto name = f.getResultAttrOfType<StringAttr>(i, "kiln.name");
        f.emitError() << "output '" << (name ? name.getValue() : "?") << "' has type " << a
                      << " at batch " << first->getAttrOfType<IntegerAttr>("kiln.batch").getInt()
                      << " but " << b << " at batch "
                      << f->getAttrOfType<IntegerAttr>("kiln.batch").getInt()
                      << ": its rows depend on the batch size (they mix rows across the batch), "
                         "which a bucketed model cannot serve";
        return signalPassFailure();
      }
    }
  }
};
} // namespace
} // namespace kiln
