//===- EmbeddingBagLoops.cpp - ONNX import: embedding-bag loops ----------===//
//
// Loops that are embedding bags (LoopIdioms.cpp), and the sequences they stack into.
//
//===----------------------------------------------------------------------===//
#include "../Importer.h"

#include "../LoopIdioms.h"

namespace kiln::import {

/// Loops that are embedding bags, and the sequences they stack into. Returns false for other ops.
bool Importer::importEmbeddingBagLoops(const onnx::NodeProto &n, const std::string &op) {
  OpBuilder &b = builder;
  if (op == "Loop") {
    std::string why;
    auto outerInts = [&](const std::string &name) -> std::optional<std::vector<int64_t>> {
      auto it = values.find(name);
      if (it == values.end())
        return std::nullopt;
      auto ints = getConstantInts(it->second);
      if (!ints)
        return std::nullopt;
      return std::vector<int64_t>(ints->begin(), ints->end());
    };
    std::optional<EmbeddingBagLoop> bag = matchEmbeddingBagLoop(n, outerInts, why);
    if (!bag)
      fail("this Loop is not a recognised idiom: " + why);
    if (!hasInput(0))
      fail("an embedding-bag Loop needs a trip count");
    if (hasInput(1)) {
      auto cond = getConstantInts(input(1));
      if (!cond || cond->size() != 1 || (*cond)[0] == 0)
        fail("an embedding-bag Loop must start with a constant true condition");
    }
    auto outer = [&](const std::string &name) {
      auto it = values.find(name);
      if (it == values.end())
        fail("the Loop body uses '" + name + "', which is not defined before the Loop");
      return it->second;
    };
    auto toI64 = [&](Value v) {
      if (getElementTypeOrSelf(v).isInteger(64))
        return v;
      return make<CastOp>(v, TypeAttr::get(b.getI64Type()));
    };
    // Iterations 0..M-1 read begin/end from the first M entries.
    Value count = toI64(input(0));
    if (rankOf(count) == 0)
      count = make<UnsqueezeOp>(count, b.getDenseI64ArrayAttr({0}));
    auto firstM = [&](Value v) {
      return make<SliceOp>(toI64(v), constI64({0}), count, constI64({1}),
                           b.getDenseI64ArrayAttr({0}));
    };
    if (bag->sequence && !emptySequences.count(n.input(2)))
      fail("the sequence an embedding-bag Loop appends to must start empty (SequenceEmpty)");
    Value weights = bag->weights.empty() ? Value() : outer(bag->weights);
    Value bags = make<EmbeddingBagOp>(outer(bag->table), outer(bag->indices),
                                      firstM(outer(bag->begin)), firstM(outer(bag->end)), weights,
                                      b.getI64IntegerAttr(bag->mode), UnitAttr());
    if (bag->sequence)
      bagSequences[n.output(0)] = bags;
    else
      define(0, bags);
  } else if (op == "SequenceEmpty") {
    // Only the start of an embedding-bag Loop's sequence (checked there).
    emptySequences.insert(n.output(0));
  } else if (op == "ConcatFromSequence") {
    auto it = bagSequences.find(n.input(0));
    if (it == bagSequences.end())
      fail("only the sequence of an embedding-bag Loop can be concatenated");
    Value bags = it->second; // [bags, dim]: the sequence stacked on a new axis 0
    int64_t axis = intAttr("axis", 0), newAxis = intAttr("new_axis", 0);
    if (axis != 0)
      fail("only axis 0 is supported for a sequence of embedding bags");
    if (newAxis)
      define(0, bags);
    else
      define(0, make<ReshapeOp>(bags, constI64({-1})));
  } else {
    return false;
  }
  return true;
}

} // namespace kiln::import
