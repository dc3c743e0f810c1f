// scalar.h - the scalar semantics both targets share: ONNX's integer Div and
// Mod, GELU and sigmoid (the generated expressions call them as
// kernels::divide, ...), and the activations and epilogue of dense layers.
// kiln::cpu (kernels.h) and kiln::cuda (kernels.cuh) both bring them in.
#ifndef KILN_KERNELS_SCALAR_H
#define KILN_KERNELS_SCALAR_H

#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>

#ifdef __CUDACC__
#define KILN_HOST_DEVICE __host__ __device__
#else
#define KILN_HOST_DEVICE
#endif

namespace kiln::scalar {

/// Integer division truncating toward zero, as ONNX Div; x / 0 and the one
/// overflowing quotient are 0 instead of a trap (padded rows are zeros).
template <typename T> KILN_HOST_DEVICE T divide(T x, T y) {
  if (y == 0 || (y == T(-1) && x == std::numeric_limits<T>::min()))
    return y == 0 ? T(0) : x;
  return x / y;
}

/// ONNX Mod: integers take the divisor's sign (x mod 0 is 0), floats fmod.
template <typename T> KILN_HOST_DEVICE T mod(T x, T y) {
  if constexpr (std::is_floating_point_v<T>) {
    return std::fmod(x, y);
  } else {
    if (y == 0)
      return 0;
    T r = T(x - divide(x, y) * y);
    return (r != 0 && ((r < 0) != (y < 0))) ? T(r + y) : r;
  }
}

KILN_HOST_DEVICE inline double gelu(double x, bool tanhApproximation) {
  if (tanhApproximation)
    return 0.5 * x * (1.0 + std::tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)));
  return 0.5 * x * (1.0 + std::erf(x * 0.7071067811865476));
}

KILN_HOST_DEVICE inline double sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }

KILN_HOST_DEVICE inline float gelu(float x, bool tanhApproximation) {
  if (tanhApproximation)
    return 0.5f * x * (1.0f + std::tanh(0.7978845608028654f * (x + 0.044715f * x * x * x)));
  return 0.5f * x * (1.0f + std::erf(x * 0.7071067811865476f));
}

KILN_HOST_DEVICE inline float sigmoid(float x) { return 1.0f / (1.0f + std::exp(-x)); }

/// The activations a GEMM epilogue or an elementwise kernel applies.
/// The values are part of the kiln dialect (kiln.dense's `activation`).
enum class Activation : int32_t {
  None = 0,
  Relu = 1,
  Sigmoid = 2,
  Tanh = 3,
  GeluErf = 4,  // 0.5 x (1 + erf(x / sqrt 2))
  GeluTanh = 5, // 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))
};

KILN_HOST_DEVICE inline float activate(float x, Activation act) {
  switch (act) {
  case Activation::None:
    return x;
  case Activation::Relu:
    return x > 0 ? x : 0;
  case Activation::Sigmoid:
    return sigmoid(x);
  case Activation::Tanh:
    return std::tanh(x);
  case Activation::GeluErf:
    return gelu(x, false);
  case Activation::GeluTanh:
    return gelu(x, true);
  }
  return x;
}

/// What a dense layer applies to each result before storing it:
/// act(acc + bias[n]) * multiplier[m, n] + residual[m, n].
struct Epilogue {
  const float *bias = nullptr;       // N values, or null
  const float *multiplier = nullptr; // rows of `stride` values, or null
  const float *residual = nullptr;   // rows of `stride` values, or null
  int64_t stride = 0;
  Activation activation = Activation::None;
};

KILN_HOST_DEVICE inline float applyEpilogue(float x, const Epilogue &ep, int64_t m, int64_t n) {
  if (ep.bias)
    x += ep.bias[n];
  x = activate(x, ep.activation);
  if (ep.multiplier)
    x *= ep.multiplier[m * ep.stride + n];
  if (ep.residual)
    x += ep.residual[m * ep.stride + n];
  return x;
}

} // namespace kiln::scalar

#endif
