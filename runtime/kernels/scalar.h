// scalar.h - the scalar semantics both targets share: ONNX's integer Div and
// Mod, GELU and sigmoid (the generated expressions call them as
// kernels::divide, ...), the activations and epilogue of dense layers, and
// the 16-bit float storage types with their conversions.
// kiln::cpu (kernels.h) and kiln::cuda (kernels.cuh) both bring them in.
#ifndef KILN_KERNELS_SCALAR_H
#define KILN_KERNELS_SCALAR_H

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>

#ifdef __CUDACC__
#define KILN_HOST_DEVICE __host__ __device__
#else
#define KILN_HOST_DEVICE
#endif

namespace kiln::scalar {

//===----------------------------------------------------------------------===//
// 16-bit floats: conversions (round to nearest even; NaN stays a quiet NaN)
//===----------------------------------------------------------------------===//

KILN_HOST_DEVICE inline uint32_t floatBits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

KILN_HOST_DEVICE inline float bitsFloat(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

KILN_HOST_DEVICE inline uint16_t floatToBf16(float f) {
  const uint32_t u = floatBits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u)
    return uint16_t((u >> 16) | 0x40);
  return uint16_t((u + 0x7fffu + ((u >> 16) & 1)) >> 16);
}

KILN_HOST_DEVICE inline float bf16ToFloat(uint16_t h) { return bitsFloat(uint32_t(h) << 16); }

KILN_HOST_DEVICE inline uint16_t floatToFp16(float f) {
  const uint32_t u = floatBits(f);
  const uint32_t sign = (u >> 16) & 0x8000u, absu = u & 0x7fffffffu;
  if (absu >= 0x7f800000u) // inf or NaN
    return uint16_t(sign | 0x7c00u | (absu > 0x7f800000u ? 0x200u : 0));
  if (absu >= 0x477ff000u) // rounds past the largest half: inf
    return uint16_t(sign | 0x7c00u);
  if (absu < 0x38800000u) {
    // A subnormal half (or zero): adding 0.5 leaves the value in units of
    // 2^-24, the half's subnormal step, rounded to nearest even by the FPU.
    const float half = bitsFloat(0x3f000000u);
    return uint16_t(sign | (floatBits(bitsFloat(absu) + half) - 0x3f000000u));
  }
  uint32_t h = (absu - 0x38000000u) >> 13;
  const uint32_t rest = absu & 0x1fffu;
  h += rest > 0x1000u || (rest == 0x1000u && (h & 1));
  return uint16_t(sign | h);
}

KILN_HOST_DEVICE inline float fp16ToFloat(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16, e = (h >> 10) & 0x1f, m = h & 0x3ff;
  if (e == 0) { // zero or subnormal: m units of 2^-24, exact in f32
    const float f = float(m) * 5.9604644775390625e-8f;
    return sign ? -f : f;
  }
  return bitsFloat(sign | (e == 31 ? 0x7f800000u | (m << 13) : ((e + 112) << 23) | (m << 13)));
}

/// The element types of f16 and bf16 tensors in generated code: storage
/// with explicit conversions to and from float and no arithmetic, so that
/// nothing computes at 16 bits by accident (kiln-widen-half leaves them
/// only to data movement and casts; the arithmetic is f32).
struct Half {
  uint16_t bits;
  Half() = default;
  KILN_HOST_DEVICE explicit Half(float f) : bits(floatToFp16(f)) {}
  KILN_HOST_DEVICE explicit operator float() const { return fp16ToFloat(bits); }
};

struct BFloat16 {
  uint16_t bits;
  BFloat16() = default;
  KILN_HOST_DEVICE explicit BFloat16(float f) : bits(floatToBf16(f)) {}
  KILN_HOST_DEVICE explicit operator float() const { return bf16ToFloat(bits); }
};

template <typename T>
constexpr bool isHalfFloat = std::is_same_v<T, Half> || std::is_same_v<T, BFloat16>;

/// ONNX Cast of one element: C++'s conversion, through f32 for 16-bit
/// floats (an f64 value is rounded to f32 first on its way to 16 bits).
template <typename To, typename From> KILN_HOST_DEVICE To convert(From x) {
  if constexpr (isHalfFloat<From> && !std::is_same_v<To, From>)
    return convert<To>(float(x));
  else if constexpr (isHalfFloat<To> && !std::is_same_v<To, From>)
    return To(float(x));
  else
    return static_cast<To>(x);
}

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

/// ONNX BitShift: a shift by the bit width or more (or a negative count)
/// leaves 0 instead of C++'s undefined behaviour.
template <typename T> KILN_HOST_DEVICE T shiftLeft(T x, T y) {
  using U = std::make_unsigned_t<T>;
  return y < 0 || uint64_t(y) >= sizeof(T) * 8 ? T(0) : T(U(x) << U(y));
}

template <typename T> KILN_HOST_DEVICE T shiftRight(T x, T y) {
  using U = std::make_unsigned_t<T>;
  return y < 0 || uint64_t(y) >= sizeof(T) * 8 ? T(0) : T(U(x) >> U(y));
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
