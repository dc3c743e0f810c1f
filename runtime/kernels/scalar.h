// scalar.h - element functions whose ONNX semantics both targets share: the
// generated expressions call them as kernels::divide, kernels::mod,
// kernels::gelu and kernels::sigmoid, through kiln::cpu (kernels.h) or
// kiln::cuda (kernels.cuh), which both bring them in.
#ifndef KILN_KERNELS_SCALAR_H
#define KILN_KERNELS_SCALAR_H

#include <cmath>
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

} // namespace kiln::scalar

#endif
