//===- EmbeddingBagLoops.cpp - ONNX import: embedding-bag loops ----------===//
//
// Loops that are embedding bags (LoopIdioms.cpp), and the sequences they stack into.
//
//===----------------------------------------------------------------------===//
#include "../Importer.h"

#include "../LoopIdioms.h"

#include "mlir/IR/Matchers.h"

namespace kiln::import {

/// Loops that are embedding bags, and the sequences they stack into. Returns false for other ops.
/// Whether `v` is a constant whose every element is `value`, through the
/// reshapes, expands and casts an exporter builds a broadcast constant with.
static bool isSplatOf(Value v, double value) {
  while (Operation *def = v.getDefiningOp()) {
    if (!isReshapeLike(def) && !isa<ExpandOp, CastOp>(def))
      break;
    v = def->getOperand(0);
  }
  DenseElementsAttr c;
  if (!matchPattern(v, m_Constant(&c)) || !c.isSplat())
    return false;
  Type t = c.getElementType();
  if (isa<FloatType>(t))
    return c.getSplatValue<APFloat>().convertToDouble() == value;
  return isa<IntegerType>(t) && double(c.getSplatValue<APInt>().getSExtValue()) == value;
}

/// Loops that are embedding bags, and the sequences they stack into. Returns false for other ops.
bool Importer::importEmbeddingBagLoops(const onnx::NodeProto &n, const std::string &op) {
  OpBuilder &b = builder;
  if (op == "Loop") {
    std::string why;
    auto outerValue = [&](const std::string &name) -> std::optional<Value> {
      auto it = values.find(name);
      return it == values.end() ? std::nullopt : std::optional<Value>(it->second);
    };
    auto outerInts = [&](const std::string &name) -> std::optional<std::vector<int64_t>> {
      auto v = outerValue(name);
      auto ints = v ? getConstantInts(*v) : std::nullopt;
      if (!ints)
        return std::nullopt;
      return std::vector<int64_t>(ints->begin(), ints->end());
    };
    auto outerZeros = [&](const std::string &name) {
      auto v = outerValue(name);
      return v && isSplatOf(*v, 0.0);
    };
    std::optional<EmbeddingBagLoop> bag = matchEmbeddingBagLoop(n, outerInts, outerZeros, why);
    if (!bag)
      fail("this Loop is not a recognised idiom: " + why);
    auto outer = [&](const std::string &name) {
      auto v = outerValue(name);
      if (!v)
        fail("the Loop body uses '" + name + "', which is not defined before the Loop");
      return *v;
    };
    auto toI64 = [&](Value v) {
      if (getElementTypeOrSelf(v).isInteger(64))
        return v;
      return make<CastOp>(v, TypeAttr::get(b.getI64Type()));
    };
    auto isConstant = [&](Value v, int64_t want) {
      auto c = getConstantInts(v);
      return c && c->size() == 1 && (*c)[0] == want;
    };
    auto isTrue = [&](Value v) { // an i1 true reads as -1
      auto c = getConstantInts(v);
      return c && c->size() == 1 && (*c)[0] != 0;
    };
    Value count;
    if (bag->counter >= 0) {
      // The while form: from counter 0 while counter < count, so count trips.
      if (hasInput(0))
        fail("a while-style embedding-bag Loop with a trip count as well is not supported");
      if (outerInts(bag->counterStart) != std::vector<int64_t>{0})
        fail("a while-style embedding-bag Loop must start its counter at a constant 0");
      count = toI64(outer(bag->count));
      auto less = input(1).getDefiningOp<LessOp>();
      if (!isTrue(input(1)) &&
          !(less && less.getRhs() == outer(bag->count) && isConstant(less.getLhs(), 0)))
        fail("a while-style embedding-bag Loop must start with the condition 0 < its limit");
    } else {
      if (!hasInput(0))
        fail("an embedding-bag Loop needs a trip count");
      if (hasInput(1) && !isTrue(input(1)))
        fail("an embedding-bag Loop must start with a constant true condition");
      count = toI64(input(0));
    }
    if (rankOf(count) == 0)
      count = make<UnsqueezeOp>(count, b.getDenseI64ArrayAttr({0}));
    // Iteration i reads element i + shift: M entries from `shift`.
    auto window = [&](Value v, int64_t shift) {
      Value from = constI64({shift});
      Value to = shift ? make<AddOp>(count, from) : count;
      return make<SliceOp>(toI64(v), from, to, constI64({1}), b.getDenseI64ArrayAttr({0}));
    };
    if (bag->sequence && !emptySequences.count(n.input(2 + (bag->counter == 0))))
      fail("the sequence an embedding-bag Loop appends to must start empty (SequenceEmpty)");
    Value table, indices, weights;
    if (bag->rows.empty()) {
      table = outer(bag->table);
      indices = outer(bag->indices);
      if (!bag->weights.empty())
        weights = outer(bag->weights);
    } else {
      // Rows gathered before the loop: table[indices], maybe scaled by
      // per-sample weights as a column (ones when the model has none).
      Value rows = outer(bag->rows);
      Type widened; // fp16 rows widened before the loop: the bags are of the wide type
      if (auto cast = rows.getDefiningOp<CastOp>()) {
        widened = getElementTypeOrSelf(cast.getType());
        rows = cast.getInput();
      }
      if (auto mul = rows.getDefiningOp<MulOp>()) {
        for (int k = 0; k < 2 && !weights; ++k)
          if (mul->getOperand(k).getDefiningOp<GatherOp>()) {
            rows = mul->getOperand(k);
            weights = mul->getOperand(1 - k);
          }
        if (!weights)
          fail("the rows this embedding-bag Loop reduces are scaled by something other than "
               "per-sample weights");
        if (isSplatOf(weights, 1.0))
          weights = Value();
        else
          weights = make<ReshapeOp>(weights, constI64({-1}));
      }
      auto gather = rows.getDefiningOp<GatherOp>();
      if (!gather || gather.getAxis() != 0 || rankOf(gather.getData()) != 2 ||
          rankOf(gather.getIndices()) != 1)
        fail("the rows this embedding-bag Loop reduces are not looked up in a table by a 1-D "
             "Gather");
      table = gather.getData();
      indices = gather.getIndices();
      if (weights && bag->mode != 0)
        fail("per-sample weights are only supported with mode 'sum'");
      if (widened) {
        table = make<CastOp>(table, TypeAttr::get(widened));
        if (weights)
          weights = make<CastOp>(weights, TypeAttr::get(widened));
      }
    }
    Value bags = make<EmbeddingBagOp>(table, indices, window(outer(bag->begin), bag->beginShift),
                                      window(outer(bag->end), bag->endShift), weights,
                                      b.getI64IntegerAttr(bag->mode), UnitAttr());
    if (bag->keepdims) // each bag [1, dim]
      bags = make<UnsqueezeOp>(bags, b.getDenseI64ArrayAttr({1}));
    if (bag->sequence)
      bagSequences[n.output(bag->counter == 0)] = bags;
    else
      define(0, bags);
    if (bag->counter >= 0)
      define(bag->counter, make<SqueezeOp>(count, b.getDenseI64ArrayAttr({0})));
  } else if (op == "SequenceEmpty") {
    // Only the start of an embedding-bag Loop's sequence (checked there).
    emptySequences.insert(n.output(0));
  } else if (op == "ConcatFromSequence") {
    auto it = bagSequences.find(n.input(0));
    if (it == bagSequences.end())
      fail("only the sequence of an embedding-bag Loop can be concatenated");
    Value bags = it->second; // [bags, ...each bag's shape]: stacked on a new axis 0
    int64_t axis = intAttr("axis", 0), newAxis = intAttr("new_axis", 0);
    if (axis != 0)
      fail("only axis 0 is supported for a sequence of embedding bags");
    if (newAxis) {
      define(0, bags);
    } else { // joined along each bag's dim 0
      SmallVector<int64_t> shape{-1};
      llvm::append_range(shape, cast<RankedTensorType>(bags.getType()).getShape().drop_front(2));
      define(0, make<ReshapeOp>(bags, constI64(shape)));
    }
  } else {
    return false;
  }
  return true;
}

} // namespace kiln::import
