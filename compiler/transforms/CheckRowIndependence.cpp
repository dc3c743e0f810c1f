//===- CheckRowIndependence.cpp - prove rows do not mix across the batch --===//
//
// A request of n rows runs in the smallest bucket B >= n, its rows past n
// zero-padded. That gives the right answer only when every output row depends
// on the same row of the inputs and nothing else. This pass proves it, op by
// op, in each bucket function with B > 1 (a one-row bucket is never padded).
// It runs after raise-idioms, so it judges what kiln computes: onnxruntime's
// per-tensor dynamic quantisation, for one, has become an int8 dense layer
// that quantises each row by itself.
//
// Each value gets one of three states:
//   uniform  it depends on no batched input (weights, shapes, constants);
//   rows     it depends on batched inputs row by row: its elements, in flat
//            order, are [outer][B][inner] and element (o, b, i) depends only
//            on row b of the batched inputs (and on uniform values);
//   mixed    no proof: the op that made it is kept for the message.
// Tracking the batch as (outer, inner) of the flat order, not as an axis,
// makes reshapes exact: a reshape keeps the flat order, so it keeps the
// state, and the batch is an axis k of a shape exactly when the dims before k
// multiply to `outer` and dim k is B.
//
// Every batched output must then be rows with the batch as its dim 0, every
// other output uniform. What the pass cannot see: a batch size used as a
// value (x.size(0) in arithmetic) has been folded into a constant by shape
// inference, and is taken for a weight.
//
//===----------------------------------------------------------------------===//

#include "compiler/transforms/Passes.h"

#include "llvm/ADT/DenseMap.h"

using namespace mlir;

namespace kiln {
#define GEN_PASS_DEF_CHECKROWINDEPENDENCE
#include "compiler/transforms/Passes.h.inc"

namespace {

struct State {
  enum Kind { Uniform, Rows, Mixed } kind = Uniform;
  int64_t outer = 0, inner = 0; // Rows
  Operation *culprit = nullptr; // Mixed: the op that mixes rows
  std::string why;              // Mixed: how

  static State rows(int64_t outer, int64_t inner) { return {Rows, outer, inner, nullptr, {}}; }
  bool operator==(const State &o) const {
    return kind == o.kind && (kind != Rows || (outer == o.outer && inner == o.inner));
  }
};

RankedTensorType tensorType(Value v) { return dyn_cast<RankedTensorType>(v.getType()); }

class Prover {
public:
  explicit Prover(int64_t batch) : batch(batch) {}

  /// The state of every value of `func`, in program order.
  void run(func::FuncOp func) {
    for (BlockArgument arg : func.getArguments()) {
      auto t = tensorType(arg);
      if (func.getArgAttr(arg.getArgNumber(), "kiln.batched") && t && t.hasStaticShape())
        states[arg] = State::rows(1, t.getNumElements() / batch);
    }
    func.walk([&](Operation *op) {
      if (op->getParentOp() != func || isa<func::ReturnOp>(op))
        return;
      State s = visit(op);
      for (Value r : op->getResults())
        states[r] = s;
    });
  }

  const State &of(Value v) { return states[v]; }

  /// The batch axis of a value in state `s`, if its shape has one.
  std::optional<int64_t> axisOf(const State &s, RankedTensorType t) const {
    if (s.kind != State::Rows || !t)
      return std::nullopt;
    int64_t before = 1;
    for (int64_t k = 0; k < t.getRank(); ++k) {
      if (before == s.outer && t.getDimSize(k) == batch)
        return k;
      before *= t.getDimSize(k);
    }
    return std::nullopt;
  }

  /// The state of a value of type `t` whose batch axis is `k`.
  State atAxis(RankedTensorType t, int64_t k) const {
    auto shape = t.getShape();
    return State::rows(ShapedType::getNumElements(shape.take_front(k)),
                       ShapedType::getNumElements(shape.drop_front(k + 1)));
  }

private:
  State mixed(Operation *op, const Twine &why) {
    State s;
    s.kind = State::Mixed;
    s.culprit = op;
    s.why = why.str();
    return s;
  }

  /// A result whose batch axis is `k`, when the result has the batch there.
  State resultAt(Operation *op, int64_t k) {
    auto t = tensorType(op->getResult(0));
    if (k < 0 || k >= t.getRank() || t.getDimSize(k) != batch)
      return mixed(op, "moves the batch axis out of its result's shape");
    return atAxis(t, k);
  }

  /// The batch axis of operand `v`, or nothing after setting `failure`.
  std::optional<int64_t> axisOfOperand(Operation *op, Value v, State &failure) {
    if (auto k = axisOf(of(v), tensorType(v)))
      return k;
    failure = mixed(op, "reads its batched operand with the batch merged into other dims");
    return std::nullopt;
  }

  State visit(Operation *op) {
    State s = byRule(op);
    if (s.kind != State::Mixed || of(op->getOperand(0)).kind != State::Rows)
      return s;
    std::optional<State> exact = byElements(op);
    return exact ? *exact : s;
  }

  /// For data movement with constant parameters (a gather with constant
  /// ids, say): the element each result element takes, checked to be in the
  /// same row, for some axis of the result.
  std::optional<State> byElements(Operation *op) {
    for (Value v : op->getOperands().drop_front())
      if (of(v).kind != State::Uniform)
        return std::nullopt;
    auto sources = getSourceIndices(op);
    if (!sources)
      return std::nullopt;
    const State &in = of(op->getOperand(0));
    auto t = tensorType(op->getResult(0));
    for (int64_t k = 0; k < t.getRank(); ++k) {
      if (t.getDimSize(k) != batch)
        continue;
      State out = atAxis(t, k);
      bool same = true;
      for (auto [e, source] : llvm::enumerate(*sources))
        if (source >= 0 && (int64_t(e) / out.inner) % batch != (source / in.inner) % batch) {
          same = false;
          break;
        }
      if (same)
        return out;
    }
    return std::nullopt;
  }

  State byRule(Operation *op) {
    bool anyRows = false;
    for (Value v : op->getOperands()) {
      const State &s = of(v);
      if (s.kind == State::Mixed)
        return s; // the first op that mixed rows stays the culprit
      anyRows |= s.kind == State::Rows;
    }
    if (!anyRows || op->getNumResults() == 0)
      return {};
    auto result = tensorType(op->getResult(0));
    if (!result || !result.hasStaticShape())
      return mixed(op, "has a result of unknown shape");

    if (isa<ReshapeOp, FlattenOp, SqueezeOp, UnsqueezeOp, CopyOp>(op))
      return of(op->getOperand(0)); // the flat order is unchanged
    if (isElementwise(op) || isa<CastOp, WhereOp, PReluOp, EqualOp, LessOp, LessEqualOp, GreaterOp,
                                 GreaterEqualOp, AndOp, OrOp, XorOp, ModOp, BitAndOp, BitOrOp,
                                 BitXorOp, ShiftLeftOp, ShiftRightOp, IsNaNOp, IsInfOp>(op))
      return elementwise(op, result);
    if (auto t = dyn_cast<TransposeOp>(op)) {
      State failure;
      auto k = axisOfOperand(op, t.getInput(), failure);
      if (!k)
        return failure;
      return resultAt(op, llvm::find(t.getPerm(), *k) - t.getPerm().begin());
    }
    if (isa<SoftmaxOp, LogSoftmaxOp>(op))
      return alongAxes(op, {op->getAttrOfType<IntegerAttr>("axis").getInt()}, false, "normalises");
    if (auto c = dyn_cast<CumSumOp>(op))
      return alongAxes(op, {int64_t(c.getAxis())}, false, "accumulates");
    if (auto t = dyn_cast<TriluOp>(op)) {
      int64_t r = t.getType().getRank();
      return alongAxes(op, {r - 2, r - 1}, false, "masks a triangle");
    }
    if (auto l = dyn_cast<LayerNormOp>(op)) {
      if (of(l.getScale()).kind != State::Uniform ||
          (l.getBias() && of(l.getBias()).kind != State::Uniform))
        return mixed(op, "takes its scale or bias from the batch");
      SmallVector<int64_t> axes;
      for (int64_t a = l.getAxis(); a < l.getType().getRank(); ++a)
        axes.push_back(a);
      return alongAxes(op, axes, false, "normalises");
    }
    if (isa<ReduceSumOp, ReduceMeanOp, ReduceMaxOp, ReduceMinOp, ReduceProdOp>(op)) {
      return alongAxes(op, op->getAttrOfType<DenseI64ArrayAttr>("axes").asArrayRef(),
                       !op->getAttrOfType<BoolAttr>("keepdims").getValue(), "reduces");
    }
    if (isa<ArgMaxOp, ArgMinOp>(op))
      return alongAxes(op, {op->getAttrOfType<IntegerAttr>("axis").getInt()},
                       !op->getAttrOfType<BoolAttr>("keepdims").getValue(), "reduces");
    if (auto c = dyn_cast<ConcatOp>(op))
      return concat(c);
    if (auto s = dyn_cast<SliceOp>(op))
      return slice(s);
    if (auto g = dyn_cast<GatherOp>(op))
      return gather(g);
    if (auto g = dyn_cast<GatherElementsOp>(op))
      return gatherElements(g);
    if (auto g = dyn_cast<GatherNDOp>(op))
      return gatherND(g);
    if (auto e = dyn_cast<ExpandOp>(op)) {
      if (of(e.getShape()).kind != State::Uniform)
        return mixed(op, "takes its shape from the batch's values");
      State failure;
      auto k = axisOfOperand(op, e.getInput(), failure);
      if (!k)
        return failure;
      return resultAt(op, *k + result.getRank() - e.getInput().getType().getRank());
    }
    if (auto p = dyn_cast<PadOp>(op)) {
      State failure;
      auto k = axisOfOperand(op, p.getInput(), failure);
      if (!k)
        return failure;
      int64_t r = p.getInput().getType().getRank();
      if (p.getPads()[*k] != 0 || p.getPads()[r + *k] != 0)
        return mixed(op, "pads the batch axis");
      return resultAt(op, *k);
    }
    if (auto m = dyn_cast<MatMulOp>(op))
      return matmul(m);
    if (auto g = dyn_cast<GemmOp>(op))
      return gemm(g);
    if (auto d = dyn_cast<DenseOp>(op))
      return dense(d);
    if (auto a = dyn_cast<AttentionOp>(op))
      return leadingOnly(op, {a.getQuery(), a.getKey(), a.getValue()}, a.getMask(), "attends");
    if (auto i = dyn_cast<InteractionOp>(op))
      return leadingOnly(op, {i.getInput()}, Value(), "interacts");
    if (auto e = dyn_cast<EmbeddingBagsOp>(op))
      return leadingOnly(op, {e.getIds()}, Value(), "pools");
    if (auto e = dyn_cast<EmbeddingBagOp>(op))
      return embeddingBag(e);
    return mixed(op, "is an op whose rows kiln cannot follow through it");
  }

  /// Numpy broadcasting: every batched operand's axis lands on one result axis.
  State elementwise(Operation *op, RankedTensorType result) {
    std::optional<State> out;
    for (Value v : op->getOperands()) {
      const State &s = of(v);
      if (s.kind != State::Rows)
        continue;
      auto t = tensorType(v);
      State here;
      if (auto k = axisOf(s, t)) {
        here = resultAt(op, *k + result.getRank() - t.getRank());
        if (here.kind == State::Mixed)
          return here;
      } else if (t.getShape() == result.getShape()) {
        here = s; // same shape: element for element
      } else {
        return mixed(op, "broadcasts an operand whose batch is merged into other dims");
      }
      if (out && !(*out == here))
        return mixed(op, "combines operands whose batch axes do not line up (an in-batch product)");
      out = here;
    }
    return *out;
  }

  /// An op that combines elements along `axes` of operand 0 (dropping them
  /// when `drop`): fine as long as the batch axis is not one of them.
  State alongAxes(Operation *op, ArrayRef<int64_t> axes, bool drop, StringRef verb) {
    Value in = op->getOperand(0);
    for (Value v : op->getOperands().drop_front())
      if (of(v).kind != State::Uniform)
        return mixed(op, "takes a parameter from the batch's values");
    State failure;
    auto k = axisOfOperand(op, in, failure);
    if (!k)
      return failure;
    int64_t rank = tensorType(in).getRank(), dropped = 0;
    for (int64_t a : axes) {
      int64_t axis = a < 0 ? a + rank : a;
      if (axis == *k)
        return mixed(op, Twine(verb) + " along the batch axis (dim " + Twine(*k) + ")");
      dropped += drop && axis < *k;
    }
    return resultAt(op, *k - dropped);
  }

  State concat(ConcatOp c) {
    int64_t rank = c.getType().getRank(), axis = c.getAxis() < 0 ? c.getAxis() + rank : c.getAxis();
    std::optional<int64_t> k;
    for (Value v : c.getInputs()) {
      if (of(v).kind != State::Rows)
        continue;
      State failure;
      auto here = axisOfOperand(c, v, failure);
      if (!here)
        return failure;
      if (*here == axis)
        return mixed(c, "concatenates along the batch axis");
      if (k && *k != *here)
        return mixed(c, "concatenates operands whose batch axes differ");
      k = here;
    }
    return resultAt(c, *k);
  }

  State slice(SliceOp s) {
    for (Value v : {s.getStarts(), s.getEnds(), s.getSteps()})
      if (of(v).kind != State::Uniform)
        return mixed(s, "takes its bounds from the batch's values");
    State failure;
    auto k = axisOfOperand(s, s.getInput(), failure);
    if (!k)
      return failure;
    auto ranges = getSliceRanges(s);
    if (!ranges)
      return mixed(s, "has bounds known only at run time");
    const SliceRange &r = (*ranges)[*k];
    if (r.start != 0 || r.step != 1 || r.count != batch)
      return mixed(s, "selects rows of the batch");
    return resultAt(s, *k);
  }

  State gather(GatherOp g) {
    const State &data = of(g.getData()), &ids = of(g.getIndices());
    int64_t rank = g.getData().getType().getRank();
    int64_t axis = g.getAxis() < 0 ? g.getAxis() + rank : g.getAxis();
    int64_t idsRank = g.getIndices().getType().getRank();
    if (data.kind == State::Rows && ids.kind == State::Rows)
      return mixed(g, "looks up rows of the batch with ids of the batch");
    State failure;
    if (ids.kind == State::Rows) { // per-row ids into uniform data: a lookup
      auto k = axisOfOperand(g, g.getIndices(), failure);
      return k ? resultAt(g, axis + *k) : failure;
    }
    auto k = axisOfOperand(g, g.getData(), failure);
    if (!k)
      return failure;
    if (*k == axis)
      return mixed(g, "selects rows of the batch");
    return resultAt(g, *k < axis ? *k : *k - 1 + idsRank);
  }

  /// The batch axis the batched ones of `operands` share (one at least is
  /// batched), or nothing after setting `failure`.
  std::optional<int64_t> sharedBatchAxis(Operation *op, std::initializer_list<Value> operands,
                                         State &failure) {
    std::optional<int64_t> k;
    for (Value v : operands) {
      if (of(v).kind != State::Rows)
        continue;
      auto here = axisOfOperand(op, v, failure);
      if (!here)
        return std::nullopt;
      if (k && *k != *here) {
        failure = mixed(op, "reads operands whose batch axes differ");
        return std::nullopt;
      }
      k = here;
    }
    return k;
  }

  State gatherElements(GatherElementsOp g) {
    int64_t rank = g.getType().getRank();
    int64_t axis = g.getAxis() < 0 ? g.getAxis() + rank : g.getAxis();
    State failure;
    auto k = sharedBatchAxis(g, {g.getData(), g.getIndices()}, failure);
    if (!k)
      return failure;
    if (*k == axis)
      return mixed(g, "selects along the batch axis");
    // data's other dims follow the indices: data and indices must line up.
    if (of(g.getData()).kind == State::Rows && of(g.getIndices()).kind != State::Rows)
      return mixed(g, "broadcasts uniform indices over the batch's rows");
    return resultAt(g, *k);
  }

  /// Row by row when the batch is a shared batch_dim, or when ids of the
  /// batch look up uniform data. Constant index tuples that pick each row's
  /// own data (mask[arange(B), pos]) are proved element by element instead.
  State gatherND(GatherNDOp g) {
    State failure;
    auto k = sharedBatchAxis(g, {g.getData(), g.getIndices()}, failure);
    if (!k)
      return failure;
    if (*k < g.getBatchDims())
      return resultAt(g, *k);
    if (of(g.getData()).kind == State::Rows)
      return mixed(g, "selects along the batch axis");
    if (*k == g.getIndices().getType().getRank() - 1)
      return mixed(g, "takes index tuples across the batch");
    return resultAt(g, *k);
  }

  /// A matrix product: the batch may be a broadcast batch dim of both, the
  /// rows of the left operand or the columns of the right one; in the
  /// contracted dim it sums over the batch.
  State matmul(MatMulOp m) {
    auto lt = m.getLhs().getType(), rt = m.getRhs().getType();
    int64_t r = m.getType().getRank();
    if (lt.getRank() < 2 || rt.getRank() < 2)
      return mixed(m, "is a vector product over batched operands");
    std::optional<int64_t> out;
    for (auto [v, t, isLhs] :
         {std::tuple{m.getLhs(), lt, true}, std::tuple{m.getRhs(), rt, false}}) {
      if (of(v).kind != State::Rows)
        continue;
      State failure;
      auto k = axisOfOperand(m, v, failure);
      if (!k)
        return failure;
      int64_t rank = t.getRank();
      int64_t here;
      if (*k < rank - 2)
        here = *k + r - rank;
      else if (isLhs && *k == rank - 2)
        here = r - 2;
      else if (!isLhs && *k == rank - 1)
        here = r - 1;
      else
        return mixed(m, "sums over the batch axis (its contracted dim)");
      if (out && *out != here)
        return mixed(m, "multiplies rows of the batch by other rows of the batch");
      out = here;
    }
    return resultAt(m, *out);
  }

  State gemm(GemmOp g) {
    std::optional<int64_t> out;
    auto consider = [&](Value v, int64_t keep, int64_t resultAxis) -> std::optional<State> {
      if (!v || of(v).kind != State::Rows)
        return std::nullopt;
      State failure;
      auto k = axisOfOperand(g, v, failure);
      if (!k)
        return failure;
      if (*k != keep)
        return mixed(g, "sums over the batch axis (its contracted dim)");
      if (out && *out != resultAxis)
        return mixed(g, "multiplies rows of the batch by other rows of the batch");
      out = resultAxis;
      return std::nullopt;
    };
    if (auto s = consider(g.getA(), g.getTransA() ? 1 : 0, 0))
      return *s;
    if (auto s = consider(g.getB(), g.getTransB() ? 0 : 1, 1))
      return *s;
    if (g.getC() && of(g.getC()).kind == State::Rows) {
      auto ct = g.getC().getType();
      auto k = axisOf(of(g.getC()), ct);
      if (!k)
        return mixed(g, "adds a bias whose batch is merged into other dims");
      int64_t here = *k + 2 - ct.getRank();
      if (out && *out != here)
        return mixed(g, "adds a bias whose batch axis does not line up with the product's");
      out = here;
    }
    return resultAt(g, *out);
  }

  State dense(DenseOp d) {
    if (of(d.getWeight()).kind != State::Uniform ||
        (d.getBias() && of(d.getBias()).kind != State::Uniform))
      return mixed(d, "takes its weights from the batch's values");
    State failure;
    auto k = axisOfOperand(d, d.getInput(), failure);
    if (!k)
      return failure;
    if (*k == d.getInput().getType().getRank() - 1)
      return mixed(d, "sums over the batch axis (its contracted dim)");
    State out = resultAt(d, *k);
    for (Value v : {d.getMultiplier(), d.getResidual()})
      if (v && of(v).kind != State::Uniform && !(of(v) == out))
        return mixed(d, "adds rows that do not line up with its own");
    return out;
  }

  /// Ops that work per sample of dim 0 (attention, DLRM's interaction,
  /// embedding lookups): the batch must be dim 0 of every batched operand.
  State leadingOnly(Operation *op, ArrayRef<Value> operands, Value broadcast, StringRef verb) {
    for (Value v : op->getOperands()) {
      if (of(v).kind == State::Uniform || v == broadcast)
        continue;
      if (!llvm::is_contained(operands, v))
        return mixed(op, "takes a parameter from the batch's values");
      auto k = axisOf(of(v), tensorType(v));
      if (!k || *k != 0)
        return mixed(op, Twine(verb) + " across the batch (its batch is not the leading dim)");
    }
    if (broadcast && of(broadcast).kind == State::Rows) {
      auto t = tensorType(broadcast);
      auto k = axisOf(of(broadcast), t);
      if (!k || *k + 4 - t.getRank() != 0)
        return mixed(op, Twine(verb) + " with a mask whose batch is not the leading dim");
    }
    return resultAt(op, 0);
  }

  /// Bag b pools table[indices[begin[b]:end[b]]]: per row when the bounds
  /// are per row (a bag's ids are then the request's), else only when the
  /// bounds are constant and keep each bag inside its own row's ids.
  State embeddingBag(EmbeddingBagOp e) {
    if (of(e.getTable()).kind != State::Uniform)
      return mixed(e, "pools a table computed from the batch");
    const State &begin = of(e.getBegin()), &end = of(e.getEnd());
    if (begin.kind == State::Rows || end.kind == State::Rows) {
      for (Value v : {e.getBegin(), e.getEnd()}) {
        auto k = axisOf(of(v), tensorType(v));
        if (!k || *k != 0)
          return mixed(e, "takes bag bounds that are not one per row of the batch");
      }
      return resultAt(e, 0);
    }
    auto ids = e.getIndices().getType();
    auto b = getConstantInts(e.getBegin()), en = getConstantInts(e.getEnd());
    if (!b || !en || ids.getRank() != 1 || ids.getDimSize(0) % batch != 0 ||
        int64_t(b->size()) % batch != 0)
      return mixed(e, "pools bags whose bounds kiln cannot tie to rows of the batch");
    int64_t idsPerRow = ids.getDimSize(0) / batch, bagsPerRow = b->size() / batch;
    for (size_t i = 0; i < b->size(); ++i) {
      int64_t row = i / bagsPerRow;
      if ((*b)[i] < row * idsPerRow || (*en)[i] > (row + 1) * idsPerRow)
        return mixed(e, "pools a bag that reaches into another row's ids");
    }
    if (e.getWeights() && !(of(e.getWeights()) == of(e.getIndices())))
      return mixed(e, "weights its ids with values that do not line up with them");
    return resultAt(e, 0);
  }

  int64_t batch;
  llvm::DenseMap<Value, State> states;
};

struct CheckRowIndependencePass : impl::CheckRowIndependenceBase<CheckRowIndependencePass> {
  using CheckRowIndependenceBase::CheckRowIndependenceBase;

  void runOnOperation() override {
    ModuleOp module = getOperation();
    for (auto func : module.getOps<func::FuncOp>()) {
      auto batch = func->getAttrOfType<IntegerAttr>("kiln.batch");
      if (!batch || batch.getInt() < 2)
        continue;
      Prover prover(batch.getInt());
      prover.run(func);
      auto ret = cast<func::ReturnOp>(func.getBody().front().getTerminator());
      for (auto [i, v] : llvm::enumerate(ret.getOperands())) {
        State s = prover.of(v);
        auto t = tensorType(v);
        bool batched = func.getResultAttr(i, "kiln.batched") != nullptr;
        std::optional<int64_t> k = prover.axisOf(s, t);
        if (batched ? (k && *k == 0) : s.kind == State::Uniform)
          continue;
        auto name = func.getResultAttrOfType<StringAttr>(i, "kiln.name");
        std::string output = "output '" + (name ? name.getValue() : StringRef("?")).str() + "'";
        Location loc = s.culprit ? s.culprit->getLoc() : func.getLoc();
        InFlightDiagnostic diag = exactBuckets ? emitWarning(loc) : emitError(loc);
        if (s.kind == State::Mixed)
          diag << output << " mixes rows of the batch: '" << s.culprit->getName() << "' " << s.why;
        else if (batched)
          diag << output << " does not have its rows along dim 0";
        else
          diag << output << " has no batch dim but depends on the batch's rows";
        if (exactBuckets) {
          diag << "; the model runs only at its bucket sizes (--row-mixing=exact-buckets)";
          module->setAttr("kiln.exact_buckets", UnitAttr::get(&getContext()));
          return;
        }
        diag << "; padding a request to a bucket would change its answer. Compile with "
                "--row-mixing=exact-buckets to run it only at batch sizes that are buckets";
        return signalPassFailure();
      }
    }
  }
};
} // namespace
} // namespace kiln
