//===- Losses.cpp - ONNX import: NegativeLogLikelihoodLoss, SoftmaxCrossEntropyLoss ===//
//
// The losses a model evaluates (for a calibration or a logged metric), as
// the gathers, masks and reductions of their definitions.
//
//===----------------------------------------------------------------------===//
#include "../Importer.h"

namespace kiln::import {

/// NegativeLogLikelihoodLoss of log-probabilities [N, C, d...] at the
/// classes `target` [N, d...], weighted per class by `weight` [C] (if any),
/// targets equal to `ignoreIndex` contributing nothing.
Value Importer::negativeLogLikelihood(Value logProb, Value target, Value weight,
                                      std::optional<int64_t> ignoreIndex) {
  OpBuilder &b = builder;
  if (rankOf(logProb) < 2 || rankOf(target) != rankOf(logProb) - 1)
    fail("the input must be [N, C, d...] and the target [N, d...]");
  const auto *reductionAttr = typedAttr("reduction", onnx::AttributeProto::STRING);
  std::string reduction = reductionAttr ? reductionAttr->s() : "mean";
  if (reduction != "none" && reduction != "sum" && reduction != "mean")
    fail("reduction must be none, sum or mean, not '" + reduction + "'");
  // An ignored target may lie outside [0, C): it reads class 0, then masked.
  // An ignore_index outside the target's type matches no target.
  Value kept, safeTarget = target;
  std::optional<Value> ignoredClass =
      ignoreIndex ? integerLike(target, *ignoreIndex) : std::nullopt;
  if (ignoredClass) {
    Value ignored = make<EqualOp>(target, *ignoredClass);
    kept = make<NotOp>(ignored);
    safeTarget = make<WhereOp>(kept, target, scalarLike(target, 0));
  }
  Value index = make<UnsqueezeOp>(safeTarget, b.getDenseI64ArrayAttr({1}));
  Value picked = make<GatherElementsOp>(logProb, index, b.getI64IntegerAttr(1));
  Value loss = make<NegOp>(make<SqueezeOp>(picked, b.getDenseI64ArrayAttr({1})));
  Value weights; // per element, where weighted or masked
  if (weight) {
    weights = make<GatherOp>(weight, safeTarget, b.getI64IntegerAttr(0));
    loss = make<MulOp>(loss, weights);
  }
  if (kept) {
    Value zero = scalarLike(loss, 0);
    loss = make<WhereOp>(kept, loss, zero);
    weights = weights ? make<WhereOp>(kept, weights, zero)
                      : make<CastOp>(kept, TypeAttr::get(getElementTypeOrSelf(loss)));
  }
  if (reduction == "none")
    return loss;
  SmallVector<int64_t> all;
  for (int64_t d = 0; d < rankOf(loss); ++d)
    all.push_back(d);
  auto sum = [&](Value v) {
    return make<ReduceSumOp>(v, b.getDenseI64ArrayAttr(all), b.getBoolAttr(false));
  };
  Value total = sum(loss);
  if (reduction == "sum")
    return total;
  if (!weights)
    return make<ReduceMeanOp>(loss, b.getDenseI64ArrayAttr(all), b.getBoolAttr(false));
  Value weightTotal = sum(weights);
  return make<DivOp>(total, weightTotal);
}

bool Importer::importLosses(const onnx::NodeProto &, const std::string &op) {
  if (op != "NegativeLogLikelihoodLoss" && op != "SoftmaxCrossEntropyLoss")
    return false;
  std::optional<int64_t> ignoreIndex;
  if (typedAttr("ignore_index", onnx::AttributeProto::INT))
    ignoreIndex = intAttr("ignore_index", 0);
  Value weight = hasInput(2) ? input(2) : Value();
  if (op == "NegativeLogLikelihoodLoss") {
    define(0, negativeLogLikelihood(input(0), input(1), weight, ignoreIndex));
    return true;
  }
  Value logProb = make<LogSoftmaxOp>(input(0), builder.getI64IntegerAttr(1));
  define(0, negativeLogLikelihood(logProb, input(1), weight, ignoreIndex));
  define(1, logProb);
  return true;
}

} // namespace kiln::import
