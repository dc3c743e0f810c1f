//===- Quantization.cpp - ONNX import: quantisation ----------------------===//
//
// QuantizeLinear, DequantizeLinear, DynamicQuantizeLinear, MatMulInteger and QLinearMatMul.
//
//===----------------------------------------------------------------------===//
#include "../Importer.h"

namespace kiln::import {

/// A per-axis scale or zero point (1-D, one value per index of `axis`)
/// reshaped to broadcast along that axis of a rank-`rank` tensor; scalars
/// and one-element tensors as they are.
Value Importer::alongAxis(Value v, int64_t axis, int64_t rank) {
  auto type = cast<RankedTensorType>(v.getType());
  if (type.getRank() == 0 || type.getNumElements() == 1 || axis == rank - 1)
    return v;
  if (type.getRank() != 1)
    fail("a per-axis scale or zero point must be 1-D");
  SmallVector<int64_t> shape(rank - axis, 1);
  shape[0] = type.getDimSize(0);
  return make<ReshapeOp>(v, constI64(shape), UnitAttr());
}

/// ONNX DequantizeLinear: (x - zero point) * scale, in f32, returned at the
/// scale's type.
Value Importer::dequantize(Value x, Value scale, Value zeroPoint, int64_t axis) {
  auto f32 = TypeAttr::get(builder.getF32Type());
  const int64_t rank = rankOf(x);
  Value y = make<CastOp>(x, f32);
  if (zeroPoint)
    y = make<SubOp>(y, alongAxis(make<CastOp>(zeroPoint, f32), axis, rank));
  Type scaleType = getElementTypeOrSelf(scale);
  if (!scaleType.isF32())
    scale = make<CastOp>(scale, f32);
  y = make<MulOp>(y, alongAxis(scale, axis, rank));
  return scaleType.isF32() ? y : make<CastOp>(y, TypeAttr::get(scaleType));
}

/// ONNX QuantizeLinear: round(x / scale) + zero point (ties to even) in f32,
/// saturated to `to` (int8 or uint8). `zeroPoint` is f32 or null.
Value Importer::quantize(Value x, Value scale, Value zeroPoint, Type to, int64_t axis) {
  const int64_t rank = rankOf(x);
  auto f32 = TypeAttr::get(builder.getF32Type());
  if (!getElementTypeOrSelf(x).isF32())
    x = make<CastOp>(x, f32);
  if (!getElementTypeOrSelf(scale).isF32())
    scale = make<CastOp>(scale, f32);
  Value y = make<RoundOp>(make<DivOp>(x, alongAxis(scale, axis, rank)));
  if (zeroPoint)
    y = make<AddOp>(y, alongAxis(zeroPoint, axis, rank));
  const unsigned bits = to.getIntOrFloatBitWidth();
  const bool isSigned = !to.isUnsignedInteger();
  const double lo = isSigned ? -std::ldexp(1.0, bits - 1) : 0.0;
  const double hi = isSigned ? std::ldexp(1.0, bits - 1) - 1 : std::ldexp(1.0, bits) - 1;
  y = make<ClipOp>(y, builder.getF64FloatAttr(lo), builder.getF64FloatAttr(hi));
  return make<CastOp>(y, TypeAttr::get(to));
}

/// QuantizeLinear, DequantizeLinear, DynamicQuantizeLinear, MatMulInteger
/// and QLinearMatMul (what onnxruntime's quantisation tool writes) as f32
/// arithmetic; kiln-raise-quantized-matmul folds the products into int8
/// dense layers. Returns false for other ops.
bool Importer::importQuantization(const onnx::NodeProto &n, const std::string &op) {
  OpBuilder &b = builder;
  auto f32 = TypeAttr::get(b.getF32Type());
  auto u8 = IntegerType::get(&ctx, 8, IntegerType::Unsigned);
  // 8- and 16-bit integers; DequantizeLinear also takes int32 (biases).
  auto checkInteger = [&](Value v, const char *what) {
    Type t = getElementTypeOrSelf(v);
    if (!t.isInteger(8) && !t.isInteger(16) && !(op == "DequantizeLinear" && t.isInteger(32))) {
      std::string name;
      llvm::raw_string_ostream(name) << t;
      fail(std::string(what) + ": element type " + name + " is not supported");
    }
  };
  if ((op == "QuantizeLinear" || op == "DequantizeLinear") && intAttr("block_size", 0) != 0)
    fail("blocked quantisation (block_size) is not supported");
  // The axis of a per-axis scale; a per-tensor one ignores it.
  auto quantAxis = [&](Value x) {
    auto scale = cast<RankedTensorType>(input(1).getType());
    return scale.getRank() == 0 || scale.getNumElements() == 1
               ? 0
               : normalizeAxis(intAttr("axis", 1), rankOf(x));
  };
  if (op == "DequantizeLinear") {
    Value x = input(0);
    checkInteger(x, "the quantised input");
    define(0, dequantize(x, input(1), hasInput(2) ? input(2) : Value(), quantAxis(x)));
  } else if (op == "QuantizeLinear") {
    Value x = input(0), zp = hasInput(2) ? input(2) : Value();
    if (zp)
      checkInteger(zp, "the zero point");
    Type to = zp ? getElementTypeOrSelf(zp) : Type(u8);
    if (int64_t dtype = intAttr("output_dtype", 0); dtype && !zp)
      to = elementType(int32_t(dtype), "QuantizeLinear output_dtype");
    if (!to.isInteger(8) && !to.isInteger(16))
      fail("QuantizeLinear output element type is not supported (8- or 16-bit integers)");
    define(0, quantize(x, input(1), zp ? make<CastOp>(zp, f32) : Value(), to, quantAxis(x)));
  } else if (op == "DynamicQuantizeLinear") {
    // uint8 over the tensor's range widened to include 0.
    Value x = input(0);
    SmallVector<int64_t> all;
    for (int64_t i = 0; i < rankOf(x); ++i)
      all.push_back(i);
    auto axes = b.getDenseI64ArrayAttr(all);
    auto scalar = [&](float v) {
      return ConstantOp::create(
          b, loc, DenseElementsAttr::get(RankedTensorType::get({}, b.getF32Type()), v));
    };
    Value zero = scalar(0.0f);
    Value lo = make<MinOp>(make<ReduceMinOp>(x, axes, b.getBoolAttr(false)), zero);
    Value hi = make<MaxOp>(make<ReduceMaxOp>(x, axes, b.getBoolAttr(false)), zero);
    Value scale = make<DivOp>(make<SubOp>(hi, lo), scalar(255.0f));
    Value zp = make<ClipOp>(make<RoundOp>(make<SubOp>(zero, make<DivOp>(lo, scale))),
                            b.getF64FloatAttr(0), b.getF64FloatAttr(255));
    define(0, quantize(x, scale, zp, u8, 0));
    define(1, scale);
    define(2, make<CastOp>(zp, TypeAttr::get(u8)));
  } else if (op == "MatMulInteger") {
    // In f32: exact while the sums stay below 2^24, rounded like an f32
    // product's beyond.
    Value a = input(0), w = input(1);
    checkInteger(a, "A");
    checkInteger(w, "B");
    Value af = make<CastOp>(a, f32), wf = make<CastOp>(w, f32);
    if (hasInput(2))
      af = make<SubOp>(af, make<CastOp>(input(2), f32));
    if (hasInput(3))
      wf = make<SubOp>(wf, make<CastOp>(input(3), f32));
    Value y = make<MatMulOp>(af, wf);
    define(0, make<CastOp>(make<RoundOp>(y), TypeAttr::get(b.getI32Type())));
  } else if (op == "QLinearMatMul") {
    Value a = input(0), w = input(3);
    checkInteger(a, "a");
    checkInteger(w, "b");
    Value af = dequantize(a, input(1), input(2), std::max<int64_t>(rankOf(a) - 2, 0));
    Value wf = dequantize(w, input(4), input(5), rankOf(w) - 1);
    Value yzp = input(7);
    define(0, quantize(make<MatMulOp>(af, wf), input(6), make<CastOp>(yzp, f32),
                       getElementTypeOrSelf(yzp), 0));
  } else {
    return false;
  }
  return true;
}

} // namespace kiln::import
