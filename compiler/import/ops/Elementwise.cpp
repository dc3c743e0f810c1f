//===- Elementwise.cpp - ONNX import: elementwise ops --------------------===//
//
// Elementwise arithmetic, comparisons, logic, activations and casts.
//
//===----------------------------------------------------------------------===//
#include "../Importer.h"

namespace kiln::import {

/// Elementwise arithmetic, comparisons, logic, activations and casts. Returns false for other ops.
bool Importer::importElementwise(const onnx::NodeProto &n, const std::string &op) {
  OpBuilder &b = builder;
  auto unary = [&](auto tag) {
    using Op = decltype(tag);
    define(0, make<Op>(input(0)));
  };
  auto binary = [&](auto tag) {
    using Op = decltype(tag);
    Value l = input(0), r = input(1);
    if (getElementTypeOrSelf(l) != getElementTypeOrSelf(r))
      fail("operand element types differ");
    define(0, make<Op>(l, r));
  };
  if (op == "Add") {
    binary(AddOp());
  } else if (op == "Sub") {
    binary(SubOp());
  } else if (op == "Mul") {
    binary(MulOp());
  } else if (op == "Div") {
    binary(DivOp());
  } else if (op == "Relu") {
    unary(ReluOp());
  } else if (op == "Sigmoid") {
    unary(SigmoidOp());
  } else if (op == "Tanh") {
    unary(TanhOp());
  } else if (op == "Exp") {
    unary(ExpOp());
  } else if (op == "Log") {
    unary(LogOp());
  } else if (op == "Sqrt") {
    unary(SqrtOp());
  } else if (op == "Erf") {
    unary(ErfOp());
  } else if (op == "Neg") {
    unary(NegOp());
  } else if (op == "Abs") {
    unary(AbsOp());
  } else if (op == "Floor") {
    unary(FloorOp());
  } else if (op == "Ceil") {
    unary(CeilOp());
  } else if (op == "Round") {
    unary(RoundOp());
  } else if (op == "Reciprocal") {
    unary(ReciprocalOp());
  } else if (op == "Sin") {
    unary(SinOp());
  } else if (op == "Cos") {
    unary(CosOp());
  } else if (op == "Tan") {
    unary(TanOp());
  } else if (op == "Asin") {
    unary(AsinOp());
  } else if (op == "Acos") {
    unary(AcosOp());
  } else if (op == "Atan") {
    unary(AtanOp());
  } else if (op == "Sinh") {
    unary(SinhOp());
  } else if (op == "Cosh") {
    unary(CoshOp());
  } else if (op == "Asinh") {
    unary(AsinhOp());
  } else if (op == "Acosh") {
    unary(AcoshOp());
  } else if (op == "Atanh") {
    unary(AtanhOp());
  } else if (op == "IsNaN") {
    unary(IsNaNOp());
  } else if (op == "IsInf") {
    define(0, make<IsInfOp>(input(0), b.getBoolAttr(intAttr("detect_positive", 1)),
                            b.getBoolAttr(intAttr("detect_negative", 1))));
  } else if (op == "BitwiseNot") {
    unary(BitNotOp());
  } else if (op == "BitwiseAnd") {
    binary(BitAndOp());
  } else if (op == "BitwiseOr") {
    binary(BitOrOp());
  } else if (op == "BitwiseXor") {
    binary(BitXorOp());
  } else if (op == "BitShift") {
    const auto *direction = typedAttr("direction", onnx::AttributeProto::STRING);
    if (!direction || (direction->s() != "LEFT" && direction->s() != "RIGHT"))
      fail("BitShift needs direction LEFT or RIGHT");
    if (direction->s() == "LEFT")
      binary(ShiftLeftOp());
    else
      binary(ShiftRightOp());
  } else if (op == "Softplus") {
    unary(SoftplusOp());
  } else if (op == "Softsign") {
    unary(SoftsignOp());
  } else if (op == "Sign") {
    unary(SignOp());
  } else if (op == "Not") {
    unary(NotOp());
  } else if (op == "Pow") {
    // The exponent may have another type than the base.
    Value base = input(0), exponent = input(1);
    if (getElementTypeOrSelf(exponent) != getElementTypeOrSelf(base))
      exponent = make<CastOp>(exponent, TypeAttr::get(getElementTypeOrSelf(base)));
    define(0, make<PowOp>(base, exponent));
  } else if (op == "PRelu") {
    binary(PReluOp());
  } else if (op == "Mod") {
    bool isFloat = isa<FloatType>(getElementTypeOrSelf(input(0)));
    if (isFloat != bool(intAttr("fmod", 0)))
      fail(isFloat ? "floating-point Mod needs fmod=1"
                   : "integer Mod with fmod=1 is not supported");
    binary(ModOp());
  } else if (op == "And") {
    binary(AndOp());
  } else if (op == "Or") {
    binary(OrOp());
  } else if (op == "Xor") {
    binary(XorOp());
  } else if (op == "Equal") {
    binary(EqualOp());
  } else if (op == "Less") {
    binary(LessOp());
  } else if (op == "LessOrEqual") {
    binary(LessEqualOp());
  } else if (op == "Greater") {
    binary(GreaterOp());
  } else if (op == "GreaterOrEqual") {
    binary(GreaterEqualOp());
  } else if (op == "Sum" || op == "Max" || op == "Min") {
    // Variadic forms become chains of binary ops.
    Value acc = input(0);
    for (int i = 1; i < n.input_size(); ++i) {
      if (getElementTypeOrSelf(acc) != getElementTypeOrSelf(input(i)))
        fail("operand element types differ");
      acc = op == "Sum"   ? make<AddOp>(acc, input(i))
            : op == "Max" ? make<MaxOp>(acc, input(i))
                          : make<MinOp>(acc, input(i));
    }
    define(0, acc);
  } else if (op == "Where") {
    define(0, make<WhereOp>(input(0), input(1), input(2)));
  } else if (op == "LeakyRelu" || op == "Elu" || op == "HardSigmoid" || op == "Clip" ||
             op == "Gelu") {
    Value x = input(0);
    if (!isa<FloatType>(getElementTypeOrSelf(x)))
      fail("only floating-point inputs are supported");
    double alpha = 0, beta = 0;
    if (op == "LeakyRelu") {
      alpha = floatAttr("alpha", 0.01f);
    } else if (op == "Elu") {
      alpha = floatAttr("alpha", 1.0f);
    } else if (op == "HardSigmoid") {
      alpha = floatAttr("alpha", 0.2f);
      beta = floatAttr("beta", 0.5f);
    } else if (op == "Gelu") {
      const auto *a = attr("approximate");
      alpha = a && a->s() == "tanh" ? 1.0 : 0.0;
    } else if (opset < 11) {
      alpha = floatAttr("min", -std::numeric_limits<float>::infinity());
      beta = floatAttr("max", std::numeric_limits<float>::infinity());
    } else {
      // Clip's bounds are optional scalar inputs from opset 11.
      auto bound = [&](int i, double fallback) {
        if (!hasInput(i))
          return fallback;
        std::optional<double> value = getConstantFloat(input(i));
        if (!value)
          fail("Clip bounds must be constant scalars");
        return *value;
      };
      alpha = bound(1, -std::numeric_limits<double>::infinity());
      beta = bound(2, std::numeric_limits<double>::infinity());
    }
    auto a = b.getF64FloatAttr(alpha), be = b.getF64FloatAttr(beta);
    if (op == "LeakyRelu")
      define(0, make<LeakyReluOp>(x, a, be));
    else if (op == "Elu")
      define(0, make<EluOp>(x, a, be));
    else if (op == "HardSigmoid")
      define(0, make<HardSigmoidOp>(x, a, be));
    else if (op == "Gelu")
      define(0, make<GeluOp>(x, a, be));
    else
      define(0, make<ClipOp>(x, a, be));
  } else if (op == "CastLike") {
    Type to = getElementTypeOrSelf(input(1));
    define(0, make<CastOp>(input(0), TypeAttr::get(to)));
  } else if (op == "Mean") {
    Value acc = input(0);
    for (int i = 1; i < n.input_size(); ++i)
      acc = make<AddOp>(acc, input(i));
    auto scalar = RankedTensorType::get({}, getElementTypeOrSelf(acc));
    if (!isa<FloatType>(scalar.getElementType()))
      fail("Mean of integers is not supported");
    Value count = ConstantOp::create(
        b, loc,
        DenseElementsAttr::get(scalar, b.getFloatAttr(scalar.getElementType(), n.input_size())));
    define(0, make<DivOp>(acc, count));
  } else if (op == "Cast") {
    Type to = elementType(intAttr("to", 0), "Cast 'to'");
    define(0, make<CastOp>(input(0), TypeAttr::get(to)));
  } else {
    return false;
  }
  return true;
}

} // namespace kiln::import
