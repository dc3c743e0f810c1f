//===- FuseInteraction.cpp - DLRM's dot interaction -> one op -------------===//
//
// DLRM exports its feature interaction as the Gram matrix of each sample's
// feature vectors, matmul(Z, transpose(Z)), followed by data movement that
// picks the lower triangle (reshape + gather with constant indices, or
// transposes, flatten and gather). Where that data movement ends in [batch,
// P] rows that take, for every sample, the same P Gram entries of that
// sample, the whole chain is one kiln.interaction computing just those P
// dot products: half the multiplies, no [B, F, F] tensor, no transposes.
// The chain is followed element by element (getSourceIndices), so the
// exporter's particular sequence of ops does not matter.
//
//===----------------------------------------------------------------------===//

#include "compiler/transforms/Passes.h"

#include "mlir/IR/Builders.h"

using namespace mlir;

namespace kiln {
#define GEN_PASS_DEF_FUSEINTERACTION
#include "compiler/transforms/Passes.h.inc"

namespace {

/// The (i, j) feature pairs if `type` is [batch, P] and element (b, p) is
/// the Gram entry (b, i_p, j_p) for every b; `sources` are flat indices into
/// the [batch, features, features] Gram matrix.
std::optional<SmallVector<int64_t>>
samePairsPerRow(RankedTensorType type, ArrayRef<int64_t> sources, int64_t batch, int64_t features) {
  if (type.getRank() != 2 || type.getDimSize(0) != batch)
    return std::nullopt;
  int64_t count = type.getDimSize(1), square = features * features;
  SmallVector<int64_t> pairs;
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t p = 0; p < count; ++p) {
      int64_t s = sources[b * count + p], entry = s % square;
      if (s / square != b)
        return std::nullopt;
      if (b == 0) {
        pairs.push_back(entry / features);
        pairs.push_back(entry % features);
      } else if (pairs[2 * p] != entry / features || pairs[2 * p + 1] != entry % features) {
        return std::nullopt;
      }
    }
  return pairs;
}

/// Replaces the longest data-movement chain from `gram` = Z Z^T that ends
/// in per-sample pair rows; true if it did.
bool fuse(MatMulOp gram) {
  auto z = dyn_cast<RankedTensorType>(gram.getLhs().getType());
  auto zt = gram.getRhs().getDefiningOp<TransposeOp>();
  if (!z || z.getRank() != 3 || !z.hasStaticShape() || !z.getElementType().isF32() || !zt ||
      zt.getInput() != gram.getLhs() || zt.getPerm() != ArrayRef<int64_t>{0, 2, 1})
    return false;
  int64_t batch = z.getDimSize(0), features = z.getDimSize(1);
  if (int64_t(batch * features * features) > kMaxTrackedElements)
    return false;
  SmallVector<int64_t> sources(batch * features * features);
  std::iota(sources.begin(), sources.end(), 0);
  Value value = gram.getResult(), end;
  SmallVector<int64_t> pairs;
  while (value.hasOneUse()) {
    Operation *user = *value.getUsers().begin();
    if (user->getNumResults() != 1 || user->getOperand(0) != value || isa<CastOp>(user))
      break;
    auto step = getSourceIndices(user);
    if (!step)
      break;
    SmallVector<int64_t> next;
    next.reserve(step->size());
    for (int64_t s : *step)
      next.push_back(sources[s]);
    sources = std::move(next);
    value = user->getResult(0);
    if (auto p =
            samePairsPerRow(cast<RankedTensorType>(value.getType()), sources, batch, features)) {
      end = value;
      pairs = std::move(*p);
    }
  }
  if (!end)
    return false;
  OpBuilder builder(end.getDefiningOp());
  Value fused = InteractionOp::create(builder, gram.getLoc(), end.getType(), gram.getLhs(),
                                      builder.getDenseI64ArrayAttr(pairs));
  end.replaceAllUsesWith(fused);
  // The chain now has no users; erase it back to the Gram matrix.
  for (Operation *op = end.getDefiningOp(); op;) {
    Operation *next = op == gram ? nullptr : op->getOperand(0).getDefiningOp();
    SmallVector<Value> parameters(op->getOperands().drop_front());
    op->erase();
    for (Value p : parameters)
      if (Operation *def = p.getDefiningOp(); def && isa<ConstantOp>(def) && def->use_empty())
        def->erase();
    op = next;
  }
  if (zt->use_empty())
    zt->erase();
  return true;
}

struct FuseInteractionPass : impl::FuseInteractionBase<FuseInteractionPass> {
  void runOnOperation() override {
    SmallVector<MatMulOp> grams;
    getOperation().walk([&](MatMulOp m) { grams.push_back(m); });
    for (MatMulOp m : grams)
      fuse(m);
  }
};
} // namespace
} // namespace kiln
