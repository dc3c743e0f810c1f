//===- PlanMemory.cpp - static arena offsets from buffer lifetimes -------===//
//
// Every tensor that is not a constant lives in one arena whose size is known
// at compile time. Lifetimes are intervals over program order; placement is
// greedy (as in TFLite Micro's planner), tried in a few orders, keeping the
// smallest arena: close to the liveness lower bound for ads models' graphs.
// Views share their source's buffer: reshapes; contiguous slices (at an
// offset, marked `kiln.alias`: no code runs for them); elementwise ops whose
// operand's buffer is read for the last time by them (in place); and the
// parts of a concat whose producers (dense, embedding bags, interaction, row
// gather, binary arithmetic) write straight into the concat's buffer with its
// row stride, on any concat axis and through reshapes.
//
//===----------------------------------------------------------------------===//

#include "compiler/transforms/Passes.h"
#include "kiln/checked.h"

#include "mlir/IR/Builders.h"

#include <functional>

using namespace mlir;

namespace kiln {
#define GEN_PASS_DEF_PLANMEMORY
#include "compiler/transforms/Passes.h.inc"

namespace {
constexpr int64_t kAlignment = 64;

/// A buffer's bytes, rounded up to the alignment; INT64_MAX where that
/// overflows, which the arena's size check then refuses.
int64_t alignedBytes(RankedTensorType type) {
  std::optional<int64_t> bytes = staticByteSize(type);
  if (!bytes || *bytes > std::numeric_limits<int64_t>::max() - kAlignment)
    return std::numeric_limits<int64_t>::max();
  return llvm::alignTo(std::max<int64_t>(*bytes, 1), kAlignment);
}

struct Buffer {
  Value root;
  int64_t bytes, start, end, offset = -1;
};

/// Concat inputs whose producer writes straight into the concat's buffer:
/// producer result -> (concat result, first element within a concat row).
/// A concat on axis a is [outer, row] with each input a [outer, chunk]
/// column block; a producer that writes rows of `chunk` elements (through
/// single-use reshapes) can write them `row` apart. Marks each such concat
/// with `kiln.in_place` (per input) and each producer with `kiln.row_stride`.
DenseMap<Value, std::pair<Value, int64_t>> concatsInPlace(Block &body) {
  DenseMap<Value, std::pair<Value, int64_t>> inPlace;
  Builder builder(body.getParentOp()->getContext());
  for (auto c : body.getOps<ConcatOp>()) {
    int64_t axis = c.getAxis();
    int64_t row = ShapedType::getNumElements(c.getType().getShape().drop_front(axis));
    SmallVector<bool> flags;
    int64_t column = 0;
    for (Value in : c.getInputs()) {
      int64_t chunk = ShapedType::getNumElements(
          cast<RankedTensorType>(in.getType()).getShape().drop_front(axis));
      Value v = throughSingleUseReshapes(in);
      Operation *def = v.getDefiningOp();
      bool ok = def && v.hasOneUse() && writesStridedRows(def) &&
                cast<RankedTensorType>(v.getType()).getShape().back() == chunk;
      if (ok) {
        inPlace[v] = {c.getResult(), column};
        def->setAttr("kiln.row_stride", builder.getI64IntegerAttr(row));
      }
      flags.push_back(ok);
      column += chunk;
    }
    if (llvm::is_contained(flags, true))
      c->setAttr("kiln.in_place", builder.getDenseBoolArrayAttr(flags));
  }
  return inPlace;
}

struct PlanMemoryPass : impl::PlanMemoryBase<PlanMemoryPass> {
  void runOnOperation() override {
    func::FuncOp func = getOperation();
    Block &body = func.getBody().front();
    if (failed(checkStatic(func)))
      return signalPassFailure();
    separateOutputs(func);

    // Program positions: inputs are written before op 0, outputs read after the last.
    DenseMap<Operation *, int64_t> position;
    for (auto [i, op] : llvm::enumerate(body.getOperations()))
      position[&op] = i;
    int64_t end = body.getOperations().size();

    // Each value lives in its root's buffer, `byteOffset` bytes in.
    DenseMap<Value, Value> rootOf;
    DenseMap<Value, int64_t> byteOffset;
    SmallVector<Buffer> buffers;
    DenseMap<Value, size_t> bufferOf;
    auto addBuffer = [&](Value v, int64_t start) {
      bufferOf[v] = buffers.size();
      buffers.push_back({v, alignedBytes(cast<RankedTensorType>(v.getType())), start, start});
      rootOf[v] = v;
    };
    for (BlockArgument arg : body.getArguments())
      addBuffer(arg, -1);
    auto inPlace = concatsInPlace(body);
    // The last position each value is read at, and each buffer's (over the
    // values placed in it so far): an op may overwrite an operand's buffer
    // only where that buffer is read for the last time.
    DenseMap<Value, int64_t> lastRead, bufferLastRead;
    for (Operation &op : body)
      for (Value operand : op.getOperands())
        lastRead[operand] =
            std::max(lastRead.lookup(operand), isa<func::ReturnOp>(op) ? end : position[&op]);
    auto alias = [&](Value v, Value root, int64_t offset) {
      rootOf[v] = root;
      byteOffset[v] = offset;
      bufferLastRead[root] = std::max(bufferLastRead.lookup(root), lastRead.lookup(v));
    };
    // The operand whose whole buffer `op` may write its result into: an
    // elementwise op (isElementwise) over an operand that fills an
    // intermediate buffer of the result's size, read for the last time here.
    // Every other operand in that buffer must be read at the same positions
    // (the whole buffer from its start): a view of a part of it, such as a
    // slice broadcast over the result, would be read after it is written.
    auto overwritable = [&](Operation &op) -> Value {
      if (!isElementwise(&op) || op.hasAttr("kiln.row_stride"))
        return {};
      auto type = cast<RankedTensorType>(op.getResult(0).getType());
      auto wholeBuffer = [&](Value v) {
        auto in = cast<RankedTensorType>(v.getType());
        return byteOffset.lookup(v) == 0 && in.getNumElements() == type.getNumElements() &&
               elementBytes(in.getElementType()) == elementBytes(type.getElementType());
      };
      for (Value operand : op.getOperands()) {
        auto it = rootOf.find(operand);
        if (it == rootOf.end() || isa<BlockArgument>(it->second) || !wholeBuffer(operand) ||
            bufferLastRead.lookup(it->second) != position[&op] ||
            alignedBytes(type) != buffers[bufferOf[it->second]].bytes)
          continue;
        if (llvm::all_of(op.getOperands(), [&](Value other) {
              return rootOf.lookup(other) != it->second || wholeBuffer(other);
            }))
          return operand;
      }
      return {};
    };
    for (Operation &op : body.without_terminator()) {
      if (isa<ConstantOp>(op))
        continue;
      Value result = op.getResult(0);
      if (isReshapeLike(&op)) {
        auto it = rootOf.find(op.getOperand(0));
        if (it == rootOf.end()) {
          op.emitError("a view of a constant survived folding");
          return signalPassFailure();
        }
        alias(result, it->second, byteOffset.lookup(op.getOperand(0)));
        continue;
      }
      if (auto slice = dyn_cast<SliceOp>(op)) {
        // A contiguous slice of a tensor in the arena is a view at an offset.
        auto offset = contiguousSliceOffset(slice);
        auto it = rootOf.find(slice.getInput());
        if (offset && it != rootOf.end()) {
          alias(result, it->second,
                byteOffset.lookup(slice.getInput()) +
                    *offset * elementBytes(getElementTypeOrSelf(result)));
          op.setAttr("kiln.alias", UnitAttr::get(&getContext()));
          continue;
        }
      }
      if (auto it = inPlace.find(result); it != inPlace.end()) {
        // The concat's buffer starts living with its first in-place part.
        auto [concat, column] = it->second;
        if (!bufferOf.count(concat))
          addBuffer(concat, position[&op]);
        alias(result, concat, column * elementBytes(getElementTypeOrSelf(result)));
        continue;
      }
      if (Value operand = overwritable(op)) {
        alias(result, rootOf[operand], 0);
        continue;
      }
      if (!bufferOf.count(result)) // else a concat whose parts made its buffer
        addBuffer(result, position[&op]);
      bufferLastRead[result] = std::max(bufferLastRead.lookup(result), lastRead.lookup(result));
    }
    for (Operation &op : body)
      for (Value operand : op.getOperands()) {
        auto it = rootOf.find(operand);
        if (it == rootOf.end())
          continue;
        Buffer &b = buffers[bufferOf[it->second]];
        b.end = std::max(b.end, isa<func::ReturnOp>(op) ? end : position[&op]);
      }

    // No offset, end or live sum can pass the sum of all buffers' bytes.
    std::optional<int64_t> total = 0;
    for (const Buffer &b : buffers)
      if (total)
        total = checkedAdd(*total, b.bytes);
    if (!total) {
      const Buffer &largest = *llvm::max_element(
          buffers, [](const Buffer &a, const Buffer &b) { return a.bytes < b.bytes; });
      InFlightDiagnostic diag = emitError(largest.root.getLoc());
      auto batch = func->getAttrOfType<IntegerAttr>("kiln.batch");
      diag << "the arena of bucket " << (batch ? batch.getInt() : 0)
           << " would exceed 2^63 bytes; its largest buffer is ";
      if (auto arg = dyn_cast<BlockArgument>(largest.root))
        if (auto name = func.getArgAttrOfType<StringAttr>(arg.getArgNumber(), "kiln.name"))
          diag << "input '" << name.getValue() << "', ";
      diag << largest.root.getType();
      return signalPassFailure();
    }
    int64_t arena = place(buffers);
    int64_t lowerBound = 0;
    for (int64_t t = -1; t <= end; ++t) {
      int64_t live = 0;
      for (const Buffer &b : buffers)
        if (b.start <= t && t <= b.end)
          live += b.bytes;
      lowerBound = std::max(lowerBound, live);
    }

    Builder builder(&getContext());
    for (auto [value, root] : rootOf) {
      auto offset =
          builder.getI64IntegerAttr(buffers[bufferOf[root]].offset + byteOffset.lookup(value));
      if (auto arg = dyn_cast<BlockArgument>(value))
        func.setArgAttr(arg.getArgNumber(), "kiln.arena_offset", offset);
      else
        value.getDefiningOp()->setAttr("kiln.arena_offset", offset);
    }
    func->setAttr("kiln.arena_bytes", builder.getI64IntegerAttr(arena));
    func->setAttr("kiln.arena_lower_bound", builder.getI64IntegerAttr(lowerBound));
    arenaBytes += arena;
    lowerBoundBytes += lowerBound;
  }

  /// Static shapes are what make a compile-time plan possible.
  LogicalResult checkStatic(func::FuncOp func) {
    auto result = func.walk([](Operation *op) {
      for (Value v : op->getResults())
        if (auto t = dyn_cast<RankedTensorType>(v.getType()); !t || !t.hasStaticShape()) {
          op->emitError("result has no static shape after specialisation: ") << v.getType();
          return WalkResult::interrupt();
        }
      return WalkResult::advance();
    });
    return failure(result.wasInterrupted());
  }

  /// The runtime copies each output out of its own arena slot, so an output
  /// may not be a constant, an input, or the same bytes as another output.
  void separateOutputs(func::FuncOp func) {
    auto ret = cast<func::ReturnOp>(func.getBody().front().getTerminator());
    OpBuilder builder(ret);
    DenseSet<Value> roots;
    for (OpOperand &operand : ret->getOpOperands()) {
      Value root = operand.get();
      while (Operation *def = root.getDefiningOp()) {
        auto slice = dyn_cast<SliceOp>(def);
        if (!isReshapeLike(def) && !(slice && contiguousSliceOffset(slice)))
          break;
        root = def->getOperand(0);
      }
      bool shared = !roots.insert(root).second;
      if (shared || isa<BlockArgument>(root) || root.getDefiningOp<ConstantOp>()) {
        Value copy = CopyOp::create(builder, ret.getLoc(), operand.get());
        operand.set(copy);
        roots.insert(copy);
      }
    }
  }

  /// Places buffers in several greedy orders (by size, by lifetime length,
  /// by start), first-fit and best-fit, and keeps the smallest arena.
  static int64_t place(MutableArrayRef<Buffer> buffers) {
    using Order = std::function<bool(const Buffer *, const Buffer *)>;
    const Order orders[] = {
        [](const Buffer *a, const Buffer *b) { return a->bytes > b->bytes; },
        [](const Buffer *a, const Buffer *b) {
          return std::make_pair(a->end - a->start, a->bytes) >
                 std::make_pair(b->end - b->start, b->bytes);
        },
        [](const Buffer *a, const Buffer *b) {
          return std::make_pair(a->start, -a->bytes) < std::make_pair(b->start, -b->bytes);
        },
    };
    int64_t best = std::numeric_limits<int64_t>::max();
    SmallVector<int64_t> bestOffsets;
    for (const Order &order : orders)
      for (bool bestFit : {false, true}) {
        int64_t arena = placeInOrder(buffers, order, bestFit);
        if (arena < best) {
          best = arena;
          bestOffsets.clear();
          for (const Buffer &b : buffers)
            bestOffsets.push_back(b.offset);
        }
      }
    for (auto [b, offset] : llvm::zip(buffers, bestOffsets))
      b.offset = offset;
    return best;
  }

  /// Each buffer, in the given order, goes to a gap free for its whole
  /// lifetime: the lowest one, or with `bestFit` the tightest (else the
  /// end). Returns the arena size.
  static int64_t placeInOrder(MutableArrayRef<Buffer> buffers,
                              function_ref<bool(const Buffer *, const Buffer *)> before,
                              bool bestFit) {
    SmallVector<Buffer *> order;
    for (Buffer &b : buffers)
      order.push_back(&b);
    llvm::stable_sort(order, before);
    SmallVector<Buffer *> placed;
    int64_t arena = 0;
    for (Buffer *b : order) {
      SmallVector<std::pair<int64_t, int64_t>> busy;
      for (Buffer *p : placed)
        if (p->start <= b->end && b->start <= p->end)
          busy.push_back({p->offset, p->offset + p->bytes});
      llvm::sort(busy);
      int64_t offset = 0, chosen = -1, chosenGap = std::numeric_limits<int64_t>::max();
      for (auto [lo, hi] : busy) {
        if (offset + b->bytes <= lo && lo - offset < chosenGap) {
          chosen = offset;
          chosenGap = lo - offset;
          if (!bestFit)
            break;
        }
        offset = std::max(offset, hi);
      }
      b->offset = chosen >= 0 ? chosen : offset;
      arena = std::max(arena, offset + b->bytes);
      placed.push_back(b);
    }
    return arena;
  }
};
} // namespace
} // namespace kiln
