//===- LinearAlgebra.cpp - ONNX import: linear algebra -------------------===//
//
// Matrix products, normalisations and softmax.
//
//===----------------------------------------------------------------------===//
#include "../Importer.h"

namespace kiln::import {

/// Matrix products, normalisations and softmax. Returns false for other ops.
bool Importer::importLinearAlgebra(const onnx::NodeProto &n, const std::string &op) {
  OpBuilder &b = builder;
  if (op == "Gemm") {
    Value c = hasInput(2) ? input(2) : Value();
    define(0,
           make<GemmOp>(input(0), input(1), c, b.getF32FloatAttr(floatAttr("alpha", 1.0f)),
                        b.getF32FloatAttr(floatAttr("beta", 1.0f)),
                        b.getBoolAttr(intAttr("transA", 0)), b.getBoolAttr(intAttr("transB", 0))));
  } else if (op == "MatMul") {
    // ONNX promotes 1-D operands to matrices and drops the added dim after.
    Value l = input(0), r = input(1);
    bool vecL = rankOf(l) == 1, vecR = rankOf(r) == 1;
    if (vecL)
      l = make<UnsqueezeOp>(l, b.getDenseI64ArrayAttr({0}));
    if (vecR)
      r = make<UnsqueezeOp>(r, b.getDenseI64ArrayAttr({1}));
    Value y = make<MatMulOp>(l, r);
    int64_t rank = rankOf(y);
    SmallVector<int64_t> drop;
    if (vecL)
      drop.push_back(rank - 2);
    if (vecR)
      drop.push_back(rank - 1);
    if (!drop.empty())
      y = make<SqueezeOp>(y, b.getDenseI64ArrayAttr(drop));
    define(0, y);
  } else if (op == "LayerNormalization") {
    Value x = input(0);
    int64_t axis = normalizeAxis(intAttr("axis", -1), rankOf(x));
    double epsilon = floatAttr("epsilon", 1e-5f);
    Value bias = hasInput(2) ? input(2) : Value();
    define(0, make<LayerNormOp>(x, input(1), bias, b.getI64IntegerAttr(axis),
                                b.getF64FloatAttr(epsilon), UnitAttr()));
    if (n.output_size() > 1) {
      // The optional Mean and InvStdDev outputs, over the normalised dims.
      SmallVector<int64_t> dims;
      for (int64_t d = axis; d < rankOf(x); ++d)
        dims.push_back(d);
      auto axes = b.getDenseI64ArrayAttr(dims);
      auto keep = b.getBoolAttr(true);
      Value mean = make<ReduceMeanOp>(x, axes, keep);
      Value centred = make<SubOp>(x, mean);
      auto scalar = RankedTensorType::get({}, getElementTypeOrSelf(x));
      Value eps = ConstantOp::create(
          b, loc, DenseElementsAttr::get(scalar, b.getFloatAttr(scalar.getElementType(), epsilon)));
      Value var = make<ReduceMeanOp>(make<MulOp>(centred, centred), axes, keep);
      define(1, mean);
      define(2, make<ReciprocalOp>(make<SqrtOp>(make<AddOp>(var, eps))));
    }
  } else if (op == "LpNormalization") {
    Value x = input(0);
    int64_t p = intAttr("p", 2);
    auto axes = b.getDenseI64ArrayAttr({normalizeAxis(intAttr("axis", -1), rankOf(x))});
    auto keep = b.getBoolAttr(true);
    if (p != 1 && p != 2)
      fail("p must be 1 or 2");
    Value norm = p == 1 ? make<ReduceSumOp>(make<AbsOp>(x), axes, keep)
                        : make<SqrtOp>(make<ReduceSumOp>(make<MulOp>(x, x), axes, keep));
    define(0, make<DivOp>(x, norm));
  } else if (op == "RMSNormalization") {
    Value x = input(0);
    int64_t axis = normalizeAxis(intAttr("axis", -1), rankOf(x));
    define(0, make<LayerNormOp>(x, input(1), Value(), b.getI64IntegerAttr(axis),
                                b.getF64FloatAttr(floatAttr("epsilon", 1e-5f)), b.getUnitAttr()));
  } else if (op == "Softmax" || op == "LogSoftmax") {
    Value x = input(0);
    int64_t rank = rankOf(x);
    int64_t axis = normalizeAxis(intAttr("axis", opset < 13 ? 1 : -1), rank);
    auto softmax = [&](Value v, int64_t a) {
      return op == "Softmax" ? make<SoftmaxOp>(v, b.getI64IntegerAttr(a))
                             : make<LogSoftmaxOp>(v, b.getI64IntegerAttr(a));
    };
    if (opset >= 13 || axis == rank - 1) {
      define(0, softmax(x, axis));
    } else {
      // Before opset 13, softmax normalises over all dims from `axis` on.
      Value flat = make<FlattenOp>(x, b.getI64IntegerAttr(axis));
      Value shape = make<ShapeOp>(x, b.getI64IntegerAttr(0), b.getI64IntegerAttr(rank));
      define(0, make<ReshapeOp>(softmax(flat, 1), shape));
    }
  } else {
    return false;
  }
  return true;
}

} // namespace kiln::import
