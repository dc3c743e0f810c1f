//===- FactorBroadcastDense.cpp - a layer's per-sample part, once per sample ===//
//
// DIN's attention unit, and any layer over features such as [query, key,
// query - key, query * key], runs a dense over the concat of per-row values
// and of a per-sample value broadcast along the rows (the candidate ad
// expanded over the user's history). Over a concat, x W is the sum of each
// part times its rows of W; a part that is the sum or difference of a
// broadcast value and a row value splits the same way; and a broadcast
// value's product is the same on every row of its sample:
//
//   act(concat(parts) W + b) = act(R W_R + b + broadcast(Q W_Q))
//
// with R the distinct row values (concatenated) and Q the distinct
// broadcast ones, each with the sum of its parts' rows of W, signed. The
// layer's depth drops by the broadcast parts' (DIN: 256 to 128) and the
// per-sample product runs on B rows instead of B x rows.
//
//===----------------------------------------------------------------------===//

#include "compiler/transforms/Passes.h"

#include "mlir/IR/PatternMatch.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"

using namespace mlir;

namespace kiln {
#define GEN_PASS_DEF_FACTORBROADCASTDENSE
#include "compiler/transforms/Passes.h.inc"

namespace {

/// One distinct value the layer's input is made of, with its weight rows:
/// the signed sum of the rows of W of each part it appears in.
struct Base {
  Value value;
  bool broadcast;
  std::vector<float> weight; // [width, units]
};

struct Factoring {
  SmallVector<Base> bases;
  int64_t rows, units;
  const float *w;

  /// Adds `sign` times W's rows [offset, offset + width) to `v`'s base.
  void add(Value v, bool broadcast, float sign, int64_t offset) {
    Base *base = llvm::find_if(bases, [&](const Base &b) { return b.value == v; });
    const int64_t width = cast<RankedTensorType>(v.getType()).getShape().back();
    if (base == bases.end()) {
      bases.push_back({v, broadcast, std::vector<float>(width * units, 0.0f)});
      base = &bases.back();
    }
    for (int64_t i = 0; i < width * units; ++i)
      base->weight[i] += sign * w[offset * units + i];
  }

  /// The per-sample value `v` ([B, rows, D]) broadcasts, if it does: `v`
  /// itself when [B, 1, D], or the input of an expand of one.
  Value broadcastSource(Value v) {
    auto type = cast<RankedTensorType>(v.getType());
    if (type.getDimSize(1) == 1)
      return v;
    if (auto e = v.getDefiningOp<ExpandOp>()) {
      auto in = cast<RankedTensorType>(e.getInput().getType());
      if (in.getRank() == 3 && in.getDimSize(0) == type.getDimSize(0) && in.getDimSize(1) == 1 &&
          in.getDimSize(2) == type.getDimSize(2))
        return e.getInput();
    }
    return {};
  }

  void addLeaf(Value v, float sign, int64_t offset) {
    if (Value q = broadcastSource(v))
      add(q, true, sign, offset);
    else
      add(v, false, sign, offset);
  }

  /// Splits the concat's part `p` at W's row `offset`: a sum or difference
  /// with a broadcast operand into its operands, anything else whole.
  void addPart(Value p, int64_t offset) {
    auto type = cast<RankedTensorType>(p.getType());
    Operation *op = p.getDefiningOp();
    if (op && isa<AddOp, SubOp>(op)) {
      Value lhs = op->getOperand(0), rhs = op->getOperand(1);
      auto fits = [&](Value v) {
        auto t = cast<RankedTensorType>(v.getType());
        return t == type || (t.getRank() == 3 && t.getDimSize(0) == type.getDimSize(0) &&
                             t.getDimSize(1) == 1 && t.getDimSize(2) == type.getDimSize(2) &&
                             t.getElementType() == type.getElementType());
      };
      if (fits(lhs) && fits(rhs) && (broadcastSource(lhs) || broadcastSource(rhs))) {
        addLeaf(lhs, 1.0f, offset);
        addLeaf(rhs, isa<SubOp>(op) ? -1.0f : 1.0f, offset);
        return;
      }
    }
    addLeaf(p, 1.0f, offset);
  }
};

/// The concat of `values` along the last axis ([B, r, sum of widths]), or
/// the one value.
Value concatLast(ArrayRef<Value> values, Location loc, RewriterBase &rewriter) {
  if (values.size() == 1)
    return values[0];
  auto first = cast<RankedTensorType>(values[0].getType());
  SmallVector<int64_t> shape(first.getShape());
  shape.back() = 0;
  for (Value v : values)
    shape.back() += cast<RankedTensorType>(v.getType()).getShape().back();
  return ConcatOp::create(rewriter, loc, RankedTensorType::get(shape, first.getElementType()),
                          values, rewriter.getI64IntegerAttr(2));
}

/// A dense of `input` against the stacked weights of `bases`.
Value denseOf(ArrayRef<const Base *> bases, Value bias, int64_t units, Location loc,
              RewriterBase &rewriter) {
  SmallVector<Value> inputs;
  std::vector<float> weight;
  for (const Base *b : bases) {
    inputs.push_back(b->value);
    weight.insert(weight.end(), b->weight.begin(), b->weight.end());
  }
  Value input = concatLast(inputs, loc, rewriter);
  const int64_t depth = int64_t(weight.size()) / units;
  auto weightType = RankedTensorType::get({depth, units}, rewriter.getF32Type());
  Value w = ConstantOp::create(rewriter, loc, makeConstant(weightType, weight, "factored_weight"));
  auto inType = cast<RankedTensorType>(input.getType());
  auto type = RankedTensorType::get({inType.getDimSize(0), inType.getDimSize(1), units},
                                    rewriter.getF32Type());
  return DenseOp::create(rewriter, loc, type, input, w, bias, Value(), Value(), Value(), Value(),
                         rewriter.getI64IntegerAttr(units), rewriter.getStringAttr("none"),
                         FloatAttr(), IntegerAttr(), FloatAttr(), IntegerAttr());
}

/// `x` through the dense activation `name` (none, relu, sigmoid, tanh).
Value activate(StringRef name, Value x, Location loc, RewriterBase &rewriter) {
  if (name == "relu")
    return ReluOp::create(rewriter, loc, x.getType(), x);
  if (name == "sigmoid")
    return SigmoidOp::create(rewriter, loc, x.getType(), x);
  if (name == "tanh")
    return TanhOp::create(rewriter, loc, x.getType(), x);
  return x;
}

LogicalResult factor(DenseOp d, IRRewriter &rewriter) {
  auto concat = d.getInput().getDefiningOp<ConcatOp>();
  auto w = d.getWeight().getDefiningOp<ConstantOp>();
  auto type = cast<RankedTensorType>(d.getInput().getType());
  StringRef activation = d.getActivation();
  if (!concat || !w || d.isPacked() || d.getMultiplier() || d.getResidual() || d.getWeightScale() ||
      !type.getElementType().isF32() || type.getRank() != 3 || !type.hasStaticShape() ||
      type.getDimSize(1) < 2 || concat.getAxis() != 2 || !w.getType().getElementType().isF32() ||
      !llvm::is_contained({"none", "relu", "sigmoid", "tanh"}, activation))
    return failure();
  std::vector<char> storage;
  ArrayRef<char> bytes = constantData(w.getValue(), storage);
  Factoring f{{},
              type.getDimSize(1),
              static_cast<int64_t>(d.getUnits()),
              reinterpret_cast<const float *>(bytes.data())};
  int64_t offset = 0;
  for (Value part : concat.getInputs()) {
    f.addPart(part, offset);
    offset += cast<RankedTensorType>(part.getType()).getShape().back();
  }
  SmallVector<const Base *> rows, broadcast;
  for (const Base &b : f.bases)
    (b.broadcast ? broadcast : rows).push_back(&b);
  if (broadcast.empty() || rows.empty())
    return failure();

  rewriter.setInsertionPoint(d);
  Location loc = d.getLoc();
  Value perRow = denseOf(rows, d.getBias(), f.units, loc, rewriter);
  Value perSample = denseOf(broadcast, Value(), f.units, loc, rewriter);
  Value sum = AddOp::create(rewriter, loc, d.getType(), perRow, perSample);
  rewriter.replaceOp(d, activate(activation, sum, loc, rewriter));
  // The concat and what only it read (differences, expands) go too.
  SmallVector<Operation *> dead{concat, w};
  while (!dead.empty()) {
    Operation *op = dead.pop_back_val();
    if (!op->use_empty() || !isPure(op))
      continue;
    for (Value v : op->getOperands())
      if (Operation *producer = v.getDefiningOp())
        dead.push_back(producer);
    rewriter.eraseOp(op);
  }
  return success();
}

struct FactorBroadcastDensePass : impl::FactorBroadcastDenseBase<FactorBroadcastDensePass> {
  void runOnOperation() override {
    SmallVector<DenseOp> layers;
    getOperation().walk([&](DenseOp d) { layers.push_back(d); });
    IRRewriter rewriter(&getContext());
    for (DenseOp d : layers)
      (void)factor(d, rewriter);
  }
};
} // namespace
} // namespace kiln
