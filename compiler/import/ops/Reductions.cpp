//===- Reductions.cpp - ONNX import: reductions --------------------------===//
//
// Reductions and arg-reductions.
//
//===----------------------------------------------------------------------===//
#include "../Importer.h"

namespace kiln::import {

/// Reductions and arg-reductions. Returns false for other ops.
bool Importer::importReductions(const onnx::NodeProto &n, const std::string &op) {
  OpBuilder &b = builder;
  if (op == "ArgMax" || op == "ArgMin") {
    Value x = input(0);
    auto axis = b.getI64IntegerAttr(normalizeAxis(intAttr("axis", 0), rankOf(x)));
    auto keep = b.getBoolAttr(intAttr("keepdims", 1));
    auto last = b.getBoolAttr(intAttr("select_last_index", 0));
    define(0, op == "ArgMax" ? make<ArgMaxOp>(x, axis, keep, last)
                             : make<ArgMinOp>(x, axis, keep, last));
  } else if (op == "ReduceSum" || op == "ReduceMean" || op == "ReduceMax" || op == "ReduceMin" ||
             op == "ReduceProd" || op == "ReduceL1" || op == "ReduceL2" ||
             op == "ReduceSumSquare" || op == "ReduceLogSum" || op == "ReduceLogSumExp") {
    Value x = input(0);
    // Axes moved from attribute to input in opset 13 (ReduceSum), 18 (others).
    int64_t inputSince = op == "ReduceSum" ? 13 : 18;
    SmallVector<int64_t> axes;
    if (opset >= inputSince) {
      if (hasInput(1))
        axes = constantInts(1, "axes");
    } else if (auto a = intsAttr("axes")) {
      axes = *a;
    }
    if (axes.empty()) {
      if (intAttr("noop_with_empty_axes", 0)) {
        define(0, x);
        return true;
      }
      for (int64_t i = 0; i < rankOf(x); ++i)
        axes.push_back(i);
    }
    axes = normalizeAxes(axes, rankOf(x));
    auto axesAttr = b.getDenseI64ArrayAttr(axes);
    auto keep = b.getBoolAttr(intAttr("keepdims", 1));
    // The other reductions are sums of transformed elements.
    if (op == "ReduceL1")
      define(0, make<ReduceSumOp>(make<AbsOp>(x), axesAttr, keep));
    else if (op == "ReduceL2")
      define(0, make<SqrtOp>(make<ReduceSumOp>(make<MulOp>(x, x), axesAttr, keep)));
    else if (op == "ReduceSumSquare")
      define(0, make<ReduceSumOp>(make<MulOp>(x, x), axesAttr, keep));
    else if (op == "ReduceLogSum")
      define(0, make<LogOp>(make<ReduceSumOp>(x, axesAttr, keep)));
    else if (op == "ReduceLogSumExp") {
      // log(sum(exp(x - max))) + max stays finite for large x.
      Value max = make<ReduceMaxOp>(x, axesAttr, b.getBoolAttr(true));
      Value sum = make<ReduceSumOp>(make<ExpOp>(make<SubOp>(x, max)), axesAttr, keep);
      Value maxKept = intAttr("keepdims", 1) ? max : make<ReduceMaxOp>(x, axesAttr, keep);
      define(0, make<AddOp>(make<LogOp>(sum), maxKept));
    } else if (op == "ReduceSum")
      define(0, make<ReduceSumOp>(x, axesAttr, keep));
    else if (op == "ReduceMean")
      define(0, make<ReduceMeanOp>(x, axesAttr, keep));
    else if (op == "ReduceMax")
      define(0, make<ReduceMaxOp>(x, axesAttr, keep));
    else if (op == "ReduceMin")
      define(0, make<ReduceMinOp>(x, axesAttr, keep));
    else
      define(0, make<ReduceProdOp>(x, axesAttr, keep));
  } else {
    return false;
  }
  return true;
}

} // namespace kiln::import
