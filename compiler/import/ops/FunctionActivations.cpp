//===- FunctionActivations.cpp - ONNX import: activations defined as functions ===//
//
// Activations the ONNX spec defines as functions of other ops (Selu, Celu,
// ThresholdedRelu, HardSwish, Mish, Swish, Shrink), imported as those ops so
// that the passes and kernels see the arithmetic they know.
//
//===----------------------------------------------------------------------===//
#include "../Importer.h"

namespace kiln::import {

bool Importer::importFunctionActivations(const onnx::NodeProto &, const std::string &op) {
  static const char *const kOps[] = {"Selu", "Celu",  "ThresholdedRelu", "HardSwish",
                                     "Mish", "Swish", "Shrink"};
  if (!llvm::is_contained(kOps, op))
    return false;
  Value x = input(0);
  if (op != "Shrink" && !isa<FloatType>(getElementTypeOrSelf(x)))
    fail("only floating-point inputs are supported");
  auto k = [&](double v) { return scalarLike(x, v); };
  auto params = [&](double alpha, double beta = 0) {
    return std::pair(builder.getF64FloatAttr(alpha), builder.getF64FloatAttr(beta));
  };
  // Each value is made in its own statement: the order of the ops in the
  // IR must not depend on the compiler's order of evaluating arguments.
  if (op == "Selu") { // gamma * elu(x, alpha)
    auto [alpha, beta] = params(floatAttr("alpha", 1.67326319217681884765625f));
    Value elu = make<EluOp>(x, alpha, beta);
    define(0, make<MulOp>(elu, k(floatAttr("gamma", 1.05070102214813232421875f))));
  } else if (op == "Celu") { // alpha * elu(x / alpha, 1)
    Value alpha = k(floatAttr("alpha", 1.0f));
    auto [one, zero] = params(1.0);
    Value scaled = make<DivOp>(x, alpha);
    define(0, make<MulOp>(make<EluOp>(scaled, one, zero), alpha));
  } else if (op == "ThresholdedRelu") { // x > alpha ? x : 0
    Value above = make<GreaterOp>(x, k(floatAttr("alpha", 1.0f)));
    define(0, make<WhereOp>(above, x, k(0)));
  } else if (op == "HardSwish") { // x * hard_sigmoid(x, 1/6, 1/2)
    auto [alpha, beta] = params(1.0 / 6, 0.5);
    define(0, make<MulOp>(x, make<HardSigmoidOp>(x, alpha, beta)));
  } else if (op == "Mish") { // x * tanh(softplus(x))
    Value softplus = make<SoftplusOp>(x);
    define(0, make<MulOp>(x, make<TanhOp>(softplus)));
  } else if (op == "Swish") { // x * sigmoid(alpha * x)
    Value scaled = make<MulOp>(x, k(floatAttr("alpha", 1.0f)));
    define(0, make<MulOp>(x, make<SigmoidOp>(scaled)));
  } else { // Shrink: x < -lambd ? x + bias : x > lambd ? x - bias : 0
    const double lambd = floatAttr("lambd", 0.5f), bias = floatAttr("bias", 0.0f);
    Value zero = k(0), b = k(bias);
    Value isAbove = make<GreaterOp>(x, k(lambd));
    Value above = make<WhereOp>(isAbove, make<SubOp>(x, b), zero);
    Value isBelow = make<LessOp>(x, k(-lambd));
    define(0, make<WhereOp>(isBelow, make<AddOp>(x, b), above));
  }
  return true;
}

} // namespace kiln::import
