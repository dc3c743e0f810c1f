//===- ConstantsAndShapes.cpp - ONNX import: constants and shapes --------===//
//
// Constants, identities and the shape computations exporters emit (Shape, Range, ConstantOfShape, ...).
//
//===----------------------------------------------------------------------===//
#include "../Importer.h"

namespace kiln::import {

/// Constants, identities and the shape computations exporters emit. Returns false for other ops.
bool Importer::importConstantsAndShapes(const onnx::NodeProto &n, const std::string &op) {
  OpBuilder &b = builder;
  if (op == "Constant") {
    ElementsAttr value;
    if (const auto *a = attr("value")) {
      value = tensorAttr(a->t());
    } else if (const auto *a = attr("value_float")) {
      value = DenseElementsAttr::get(RankedTensorType::get({}, b.getF32Type()), a->f());
    } else if (const auto *a = attr("value_int")) {
      value = DenseElementsAttr::get(RankedTensorType::get({}, b.getI64Type()), int64_t(a->i()));
    } else if (const auto *a = attr("value_ints")) {
      SmallVector<int64_t> v(a->ints().begin(), a->ints().end());
      value =
          DenseIntElementsAttr::get(RankedTensorType::get({int64_t(v.size())}, b.getI64Type()), v);
    } else if (const auto *a = attr("value_floats")) {
      SmallVector<float> v(a->floats().begin(), a->floats().end());
      value = DenseElementsAttr::get(RankedTensorType::get({int64_t(v.size())}, b.getF32Type()),
                                     ArrayRef<float>(v));
    } else {
      fail("Constant without a supported value attribute");
    }
    define(0, ConstantOp::create(b, loc, value));
  } else if (op == "Identity" || op == "Dropout") {
    if (op == "Dropout") {
      if (n.output_size() > 1 && !n.output(1).empty() && isUsed(n.output(1)))
        fail("the Dropout mask output is not supported");
      // Inference is the identity; training mode drops at random.
      auto training = hasInput(2) ? getConstantInts(input(2))
                                  : std::optional<SmallVector<int64_t>>(SmallVector<int64_t>{0});
      auto ratio = hasInput(1) ? getConstantFloat(input(1)) : std::optional<double>(0.5);
      if (!training || ((*training)[0] != 0 && (!ratio || *ratio != 0)))
        fail("Dropout in training mode is not supported");
    }
    define(0, input(0));
  } else if (op == "Size") {
    Value x = input(0);
    Value shape = make<ShapeOp>(x, b.getI64IntegerAttr(0), b.getI64IntegerAttr(rankOf(x)));
    define(0, make<ReduceProdOp>(shape, b.getDenseI64ArrayAttr({0}), b.getBoolAttr(false)));
  } else if (op == "Shape") {
    Value x = input(0);
    int64_t rank = rankOf(x);
    auto clampDim = [&](int64_t v) {
      if (v < 0)
        v += rank;
      return std::min(std::max<int64_t>(v, 0), rank);
    };
    int64_t start = clampDim(intAttr("start", 0)), end = clampDim(intAttr("end", rank));
    end = std::max(start, end);
    define(0, make<ShapeOp>(x, b.getI64IntegerAttr(start), b.getI64IntegerAttr(end)));
  } else if (op == "Range") {
    define(0, make<RangeOp>(input(0), input(1), input(2)));
  } else if (op == "ConstantOfShape") {
    TypedAttr value = b.getF32FloatAttr(0.0f);
    if (const auto *a = attr("value")) {
      auto elements = cast<DenseElementsAttr>(tensorAttr(a->t()));
      if (elements.getNumElements() != 1)
        fail("ConstantOfShape value must hold one element");
      value = cast<TypedAttr>(elements.getValues<Attribute>()[0]);
    }
    define(0, make<ConstantOfShapeOp>(input(0), value));
  } else {
    return false;
  }
  return true;
}

} // namespace kiln::import
