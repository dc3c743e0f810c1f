//===- OrderForMemory.cpp - an op order with a lower memory peak ----------===//
//
// The arena must hold every tensor that is live at once, so the order ops
// run in bounds its size. Exporters emit ops in the order the model's code
// built them, which can keep a finished branch's outputs waiting while
// another branch runs. This pass schedules the ops greedily: of the ops
// whose operands are ready, the one that adds the fewest live bytes (its
// result, less the operands it is the last user of) runs next, ties going
// to program order. The new order replaces the old one only if its live
// peak is lower, so the pass never makes a plan worse.
//
//===----------------------------------------------------------------------===//

#include "compiler/transforms/Passes.h"
#include "kiln/checked.h"

#include <set>

using namespace mlir;

namespace kiln {
#define GEN_PASS_DEF_ORDERFORMEMORY
#include "compiler/transforms/Passes.h.inc"

namespace {

int64_t bytesOf(Value v) {
  auto type = cast<RankedTensorType>(v.getType());
  return type.getNumElements() * elementBytes(type.getElementType());
}

/// The buffer a value lives in: reshapes are views of their input.
Value rootOf(Value v) {
  while (Operation *def = v.getDefiningOp()) {
    if (!isReshapeLike(def))
      break;
    v = def->getOperand(0);
  }
  return v;
}

/// Tensors that take arena bytes: not constants (nor views of them).
bool inArena(Value root) { return !root.getDefiningOp<ConstantOp>(); }

/// The most bytes live at once when `ops` run in this order; inputs are
/// live from the start, outputs to the end. Saturates at INT64_MAX (the
/// planner refuses such an arena, naming its largest buffer).
int64_t livePeak(ArrayRef<Operation *> ops, func::ReturnOp ret, Block &body) {
  DenseMap<Value, int64_t> last;
  for (auto [i, op] : llvm::enumerate(ops))
    for (Value operand : op->getOperands())
      last[rootOf(operand)] = i;
  for (Value v : ret.getOperands())
    last[rootOf(v)] = ops.size();
  int64_t live = 0, peak = 0;
  for (BlockArgument arg : body.getArguments())
    live = saturatingAdd(live, bytesOf(arg));
  peak = live;
  SmallVector<SmallVector<Value>> freedAt(ops.size() + 1);
  for (auto [root, at] : last)
    if (inArena(root))
      freedAt[at].push_back(root);
  for (auto [i, op] : llvm::enumerate(ops)) {
    for (Value r : op->getResults())
      if (!isReshapeLike(op) && inArena(r))
        live = saturatingAdd(live, bytesOf(r));
    if (live == INT64_MAX)
      return live; // saturated: no order makes it smaller
    peak = std::max(peak, live);
    for (Value root : freedAt[i])
      live -= bytesOf(root);
  }
  return peak;
}

struct OrderForMemoryPass : impl::OrderForMemoryBase<OrderForMemoryPass> {
  void runOnOperation() override {
    Block &body = getOperation().getBody().front();
    auto ret = cast<func::ReturnOp>(body.getTerminator());
    SmallVector<Operation *> program;
    for (Operation &op : body.without_terminator())
      if (!isa<ConstantOp>(op))
        program.push_back(&op);
    SmallVector<Operation *> greedy = schedule(program, ret);
    int64_t before = livePeak(program, ret, body), after = livePeak(greedy, ret, body);
    programPeakBytes += before;
    chosenPeakBytes += std::min(before, after);
    if (after >= before)
      return;
    for (Operation *op : greedy)
      op->moveBefore(ret);
  }

  /// The greedy order described above.
  static SmallVector<Operation *> schedule(ArrayRef<Operation *> program, func::ReturnOp ret) {
    DenseMap<Operation *, size_t> index;
    for (auto [i, op] : llvm::enumerate(program))
      index[op] = i;
    // Uses still to run of each buffer (returned buffers never free), and
    // operands still to be computed of each op.
    DenseMap<Value, int64_t> pendingUses;
    SmallVector<int64_t> pendingOperands(program.size(), 0);
    for (auto [i, op] : llvm::enumerate(program))
      for (Value operand : op->getOperands()) {
        ++pendingUses[rootOf(operand)];
        if (Operation *def = operand.getDefiningOp(); def && index.count(def))
          ++pendingOperands[i];
      }
    for (Value v : ret.getOperands())
      ++pendingUses[rootOf(v)];

    std::set<size_t> ready;
    for (size_t i = 0; i < program.size(); ++i)
      if (pendingOperands[i] == 0)
        ready.insert(i);
    SmallVector<Operation *> order;
    while (!ready.empty()) {
      size_t best = *ready.begin();
      int64_t bestDelta = std::numeric_limits<int64_t>::max();
      for (size_t i : ready) {
        Operation *op = program[i];
        int64_t delta = isReshapeLike(op) ? 0 : bytesOf(op->getResult(0));
        DenseMap<Value, int64_t> uses;
        for (Value operand : op->getOperands())
          ++uses[rootOf(operand)];
        for (auto [root, n] : uses)
          if (inArena(root) && pendingUses[root] == n)
            delta -= bytesOf(root);
        if (delta < bestDelta) {
          best = i;
          bestDelta = delta;
        }
      }
      ready.erase(best);
      Operation *op = program[best];
      order.push_back(op);
      for (Value operand : op->getOperands())
        --pendingUses[rootOf(operand)];
      for (OpOperand &use : op->getUses())
        if (auto it = index.find(use.getOwner());
            it != index.end() && --pendingOperands[it->second] == 0)
          ready.insert(it->second);
    }
    return order;
  }
};
} // namespace
} // namespace kiln
