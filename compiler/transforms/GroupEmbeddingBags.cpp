//===- GroupEmbeddingBags.cpp - many tables' lookups -> one op ------------===//
//
// Ads models look up one or more ids per sample in each of many tables and
// concatenate the pooled rows. Exported, that is one lookup per table (a
// fixed-hotness embedding_bag, or a row gather for one id), each fed by data
// movement that picks the table's columns out of a per-sample id row. Runs
// of such lookups that sit side by side in a concat and read the same id
// rows become one kiln.embedding_bags: one kernel pass over all tables that
// prefetches the next table's rows while it pools the current one, with no
// per-table index copies. Where each id comes from is followed element by
// element (getSourceIndices), so slices, gathers of columns and reshapes in
// any exporter's order are all recognised.
//
//===----------------------------------------------------------------------===//

#include "compiler/transforms/Passes.h"

#include "mlir/IR/Builders.h"

using namespace mlir;

namespace kiln {
#define GEN_PASS_DEF_GROUPEMBEDDINGBAGS
#include "compiler/transforms/Passes.h.inc"

namespace {

/// A lookup of `columns.size()` ids per sample in `table`; sample b's ids
/// are source[b, columns[l]] with source viewed as [batch, row].
struct FixedBag {
  Value table, source;
  SmallVector<int64_t> columns;
  int64_t mode;
  bool wrapNegative;
};

/// The top of `v`'s data-movement chain and, per element of `v`, the flat
/// index of the element of it that `v` copies.
std::pair<Value, SmallVector<int64_t>> traceSource(Value v) {
  SmallVector<int64_t> sources(cast<RankedTensorType>(v.getType()).getNumElements());
  std::iota(sources.begin(), sources.end(), 0);
  while (Operation *def = v.getDefiningOp()) {
    if (isa<CastOp>(def))
      break;
    auto step = getSourceIndices(def);
    if (!step)
      break;
    for (int64_t &s : sources)
      s = (*step)[s];
    v = def->getOperand(0);
  }
  return {v, std::move(sources)};
}

/// `ids` ([batch * hotness] flat) as columns of a [batch, row] id source,
/// the same columns for every sample, if they are that.
std::optional<FixedBag> fromIds(Value table, Value ids, int64_t batch, int64_t mode,
                                bool wrapNegative) {
  auto idsType = cast<RankedTensorType>(ids.getType());
  if (batch <= 0 || !idsType.hasStaticShape() || idsType.getNumElements() % batch ||
      idsType.getNumElements() > kMaxTrackedElements)
    return std::nullopt;
  int64_t hotness = idsType.getNumElements() / batch;
  auto [source, sources] = traceSource(ids);
  auto type = cast<RankedTensorType>(source.getType());
  if (!type.hasStaticShape() || type.getRank() == 0 || type.getDimSize(0) != batch)
    return std::nullopt;
  int64_t row = type.getNumElements() / batch;
  FixedBag bag{table, source, {}, mode, wrapNegative};
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t l = 0; l < hotness; ++l) {
      int64_t s = sources[b * hotness + l];
      if (s / row != b)
        return std::nullopt;
      if (b == 0)
        bag.columns.push_back(s % row);
      else if (bag.columns[l] != s % row)
        return std::nullopt;
    }
  return bag;
}

/// `op` as a fixed-hotness lookup, if it is one: an unweighted
/// embedding_bag whose bags are consecutive runs of one length, or a gather
/// of one table row per sample.
std::optional<FixedBag> asFixedBag(Operation *op) {
  auto result = cast<RankedTensorType>(op->getResult(0).getType());
  if (result.getRank() != 2 || !result.hasStaticShape() || !result.getElementType().isF32())
    return std::nullopt;
  int64_t batch = result.getDimSize(0);
  if (auto e = dyn_cast<EmbeddingBagOp>(op)) {
    auto begin = getConstantInts(e.getBegin()), end = getConstantInts(e.getEnd());
    int64_t count = e.getIndices().getType().getNumElements();
    if (e.getWeights() || !begin || !end || batch <= 0 || count % batch)
      return std::nullopt;
    int64_t hotness = count / batch;
    for (int64_t b = 0; b < batch; ++b)
      if ((*begin)[b] != b * hotness || (*end)[b] != (b + 1) * hotness)
        return std::nullopt;
    return fromIds(e.getTable(), e.getIndices(), batch, e.getMode(), e.getWrapNegative());
  }
  if (auto g = dyn_cast<GatherOp>(op)) {
    if (g.getAxis() != 0 || g.getData().getType().getRank() != 2 ||
        g.getIndices().getType().getRank() != 1)
      return std::nullopt;
    return fromIds(g.getData(), g.getIndices(), batch, /*mode=*/0, /*wrapNegative=*/true);
  }
  return std::nullopt;
}

/// The lookup behind a concat input (through single-use reshapes), if its
/// rows are the input's rows: [outer, dim] against the input's outer dims.
std::optional<FixedBag> lookupBehind(Value input, int64_t outer) {
  Value v = throughSingleUseReshapes(input);
  Operation *def = v.getDefiningOp();
  auto type = cast<RankedTensorType>(v.getType());
  if (!def || !v.hasOneUse() || type.getRank() == 0 || type.getDimSize(0) != outer)
    return std::nullopt;
  return asFixedBag(def);
}

bool sameKind(const FixedBag &a, const FixedBag &b) {
  return a.source == b.source && a.mode == b.mode && a.wrapNegative == b.wrapNegative;
}

/// Replaces each run of two or more compatible lookups among the concat's
/// inputs by one embedding_bags; true if any was.
bool groupConcat(ConcatOp concat) {
  auto type = concat.getType();
  if (!type.hasStaticShape())
    return false;
  int64_t axis = concat.getAxis();
  int64_t outer = ShapedType::getNumElements(type.getShape().take_front(axis));
  SmallVector<Value> inputs(concat.getInputs());
  SmallVector<std::optional<FixedBag>> lookups;
  for (Value in : inputs)
    lookups.push_back(lookupBehind(in, outer));

  OpBuilder builder(concat);
  Location loc = concat.getLoc();
  SmallVector<Value> grouped;
  bool changed = false;
  for (size_t i = 0; i < inputs.size();) {
    size_t j = i + 1;
    while (lookups[i] && j < inputs.size() && lookups[j] && sameKind(*lookups[i], *lookups[j]))
      ++j;
    if (j - i < 2) {
      grouped.push_back(inputs[i++]);
      continue;
    }
    SmallVector<Value> tables;
    SmallVector<int64_t> columns, hotness;
    int64_t width = 0, axisDim = 0;
    for (size_t k = i; k < j; ++k) {
      tables.push_back(lookups[k]->table);
      llvm::append_range(columns, lookups[k]->columns);
      hotness.push_back(lookups[k]->columns.size());
      width += cast<RankedTensorType>(lookups[k]->table.getType()).getDimSize(1);
      axisDim += cast<RankedTensorType>(inputs[k].getType()).getDimSize(axis);
    }
    const FixedBag &first = *lookups[i];
    Value bags = EmbeddingBagsOp::create(
        builder, loc, RankedTensorType::get({outer, width}, type.getElementType()), first.source,
        tables, builder.getDenseI64ArrayAttr(columns), builder.getDenseI64ArrayAttr(hotness),
        builder.getI64IntegerAttr(first.mode), first.wrapNegative ? builder.getUnitAttr() : nullptr,
        nullptr);
    SmallVector<int64_t> shape(cast<RankedTensorType>(inputs[i].getType()).getShape());
    shape[axis] = axisDim;
    auto partType = RankedTensorType::get(shape, type.getElementType());
    if (partType != bags.getType()) {
      auto shapeType = RankedTensorType::get({int64_t(shape.size())}, builder.getI64Type());
      Value dims = ConstantOp::create(builder, loc, DenseIntElementsAttr::get(shapeType, shape));
      bags = ReshapeOp::create(builder, loc, partType, bags, dims);
    }
    grouped.push_back(bags);
    changed = true;
    i = j;
  }
  if (!changed)
    return false;
  if (grouped.size() == 1)
    concat.replaceAllUsesWith(grouped.front());
  else
    concat.getInputsMutable().assign(grouped);
  return true;
}

struct GroupEmbeddingBagsPass : impl::GroupEmbeddingBagsBase<GroupEmbeddingBagsPass> {
  void runOnOperation() override {
    SmallVector<ConcatOp> concats;
    getOperation().walk([&](ConcatOp c) { concats.push_back(c); });
    bool changed = false;
    for (ConcatOp c : concats)
      changed |= groupConcat(c);
    if (!changed)
      return;
    // The replaced lookups and their id copies are dead now; users come
    // after their operands, so one backward sweep removes whole chains.
    SmallVector<Operation *> ops;
    for (Operation &op : getOperation().getBody().front().without_terminator())
      ops.push_back(&op);
    for (Operation *op : llvm::reverse(ops))
      if (op->use_empty())
        op->erase();
  }
};
} // namespace
} // namespace kiln
