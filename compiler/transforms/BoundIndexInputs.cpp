//===- BoundIndexInputs.cpp - valid ranges of id inputs -------------------===//
//
// The runtime validates every input before it touches the arena; for ids that
// feed embedding lookups that needs the table sizes, which only the compiler
// knows. One input often holds the ids of many tables (DLRM's [batch, tables,
// hotness]), so bounds are per position within a batch row: each element of
// a value derived from the input by data movement remembers which input
// element it copies, and each gather or embedding bag bounds those elements.
// Gathers still check their indices when they run.
//
//===----------------------------------------------------------------------===//

#include "compiler/transforms/Passes.h"

#include "mlir/IR/Builders.h"

using namespace mlir;

namespace kiln {
#define GEN_PASS_DEF_BOUNDINDEXINPUTS
#include "compiler/transforms/Passes.h.inc"

namespace {
/// For each element of a value, the flat index of the input element it
/// copies, or -1.
using Provenance = SmallVector<int64_t>;

struct BoundIndexInputsPass : impl::BoundIndexInputsBase<BoundIndexInputsPass> {
  void runOnOperation() override {
    func::FuncOp func = getOperation();
    Builder builder(&getContext());
    for (BlockArgument arg : func.getArguments()) {
      auto type = cast<RankedTensorType>(arg.getType());
      if (!isa<IntegerType>(type.getElementType()) || !type.hasStaticShape() ||
          type.getNumElements() > kMaxTrackedElements)
        continue;
      bool batched = func.getArgAttr(arg.getArgNumber(), "kiln.batched") != nullptr;
      int64_t row = batched ? type.getNumElements() / std::max<int64_t>(type.getDimSize(0), 1)
                            : type.getNumElements();
      SmallVector<int64_t> lo(row, std::numeric_limits<int64_t>::min()),
          hi(row, std::numeric_limits<int64_t>::max());
      bool bounded = false;
      auto bound = [&](const Provenance &p, int64_t min, int64_t max) {
        for (int64_t source : p) {
          if (source < 0 || row == 0)
            continue;
          lo[source % row] = std::max(lo[source % row], min);
          hi[source % row] = std::min(hi[source % row], max);
          bounded = true;
        }
      };

      Provenance identity(type.getNumElements());
      for (int64_t i = 0; i < int64_t(identity.size()); ++i)
        identity[i] = i;
      SmallVector<std::pair<Value, Provenance>> worklist{{arg, identity}};
      while (!worklist.empty()) {
        auto [value, provenance] = worklist.pop_back_val();
        for (OpOperand &use : value.getUses()) {
          Operation *user = use.getOwner();
          if (auto gather = dyn_cast<GatherOp>(user); gather && use.getOperandNumber() == 1) {
            // ONNX Gather accepts negative indices.
            int64_t n = gather.getData().getType().getDimSize(gather.getAxis());
            if (!ShapedType::isDynamic(n))
              bound(provenance, -n, n - 1);
          } else if (auto bag = dyn_cast<EmbeddingBagOp>(user);
                     bag && use.get() == bag.getIndices()) {
            int64_t rows = bag.getTable().getType().getDimSize(0);
            if (!ShapedType::isDynamic(rows))
              bound(provenance, bag.getWrapNegative() ? -rows : 0, rows - 1);
          } else if (auto bags = dyn_cast<EmbeddingBagsOp>(user)) {
            // Table t bounds its columns of every sample's id row.
            int64_t samples = std::max<int64_t>(bags.getIds().getType().getDimSize(0), 1);
            int64_t idsRow = int64_t(provenance.size()) / samples, k = 0;
            for (auto [table, hotness] : llvm::zip(bags.getTables(), bags.getHotness())) {
              int64_t rows = cast<RankedTensorType>(table.getType()).getDimSize(0);
              Provenance p;
              for (int64_t b = 0; b < samples; ++b)
                for (int64_t l = 0; l < hotness; ++l)
                  p.push_back(provenance[b * idsRow + bags.getColumns()[k + l]]);
              k += hotness;
              if (!ShapedType::isDynamic(rows))
                bound(p, bags.getWrapNegative() ? -rows : 0, rows - 1);
            }
          } else if (auto next = propagate(use, provenance)) {
            worklist.push_back({user->getResult(0), std::move(*next)});
          }
        }
      }
      if (!bounded)
        continue;
      SmallVector<int64_t> bounds;
      for (int64_t i = 0; i < row; ++i) {
        bounds.push_back(lo[i]);
        bounds.push_back(hi[i]);
      }
      func.setArgAttr(arg.getArgNumber(), "kiln.index_bounds",
                      builder.getDenseI64ArrayAttr(bounds));
    }
  }

  /// The provenance of the user's result, when it only moves values of this
  /// operand (other operands' elements of a concat get -1).
  static std::optional<Provenance> propagate(OpOperand &use, const Provenance &in) {
    Operation *user = use.getOwner();
    if (auto concat = dyn_cast<ConcatOp>(user)) {
      auto type = concat.getType();
      if (!type.hasStaticShape())
        return std::nullopt;
      int64_t axis = concat.getAxis(), offset = 0;
      for (unsigned i = 0; i < use.getOperandNumber(); ++i)
        offset += cast<RankedTensorType>(user->getOperand(i).getType()).getDimSize(axis);
      auto shape = type.getShape();
      int64_t inner = 1, outer = 1;
      for (int64_t d = axis + 1; d < type.getRank(); ++d)
        inner *= shape[d];
      for (int64_t d = 0; d < axis; ++d)
        outer *= shape[d];
      int64_t part = cast<RankedTensorType>(use.get().getType()).getDimSize(axis);
      Provenance out(type.getNumElements(), -1);
      for (int64_t o = 0; o < outer; ++o)
        for (int64_t k = 0; k < part * inner; ++k)
          out[(o * shape[axis] + offset) * inner + k] = in[o * part * inner + k];
      return out;
    }
    if (use.getOperandNumber() != 0)
      return std::nullopt;
    if (auto cast = dyn_cast<CastOp>(user);
        cast && !isa<IntegerType>(cast.getType().getElementType()))
      return std::nullopt;
    auto sources = getSourceIndices(user);
    if (!sources)
      return std::nullopt;
    Provenance out;
    for (int64_t s : *sources)
      out.push_back(in[s]);
    return out;
  }
};
} // namespace
} // namespace kiln
