// vmath.h - vectorised f32 transcendental functions for the CPU kernels.
//
// Eight lanes at a time with AVX2/FMA, each within a few float ulp of the
// libm result over the whole float range (inputs beyond exp's range saturate
// to 0 or +inf as libm does; NaN propagates). Activation epilogues of the GEMM
// and the elementwise kernels share them, so a fused and an unfused graph
// compute the same values.
#ifndef KILN_KERNELS_CPU_VMATH_H
#define KILN_KERNELS_CPU_VMATH_H

#include <cmath>
#include <cstdint>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define KILN_AVX2 1
#endif
// kiln compile --cpu avx512: the f32 dense kernels work in zmm (gemm.h);
// with avx512-vnni the int8 dense kernel also multiplies with vpdpbusd
// (quantized.h).
#if defined(KILN_AVX2) && defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__)
#define KILN_AVX512 1
#if defined(__AVX512VNNI__)
#define KILN_AVX512_VNNI 1
#endif
#endif

#include "scalar.h"

namespace kiln::cpu {

using scalar::activate;
using scalar::Activation;
using scalar::gelu;
using scalar::sigmoid;

#ifdef KILN_AVX2
namespace avx2 {

/// e^x: x = n ln2 + r with |r| <= ln2/2, e^r by a degree-6 polynomial,
/// 2^n by building the exponent (split in two so n = 128 stays finite).
inline __m256 exp(__m256 x) {
  const __m256 hi = _mm256_set1_ps(88.7228394f), lo = _mm256_set1_ps(-103.972084f);
  const __m256 input = x;
  __m256 nan = _mm256_cmp_ps(x, x, _CMP_UNORD_Q);
  x = _mm256_max_ps(_mm256_min_ps(x, hi), lo);
  __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                             _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  // 2^n as 2^(n/2) * 2^(n - n/2): each half is a normal float for n in
  // [-150, 128], so results underflow gradually and overflow only past hi.
  __m256i ni = _mm256_cvtps_epi32(n);
  __m256i n1 = _mm256_srai_epi32(ni, 1), n2 = _mm256_sub_epi32(ni, n1);
  const __m256i bias = _mm256_set1_epi32(127);
  __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, bias), 23));
  __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n2, bias), 23));
  __m256 result = _mm256_mul_ps(_mm256_mul_ps(p, s1), s2);
  __m256 inf = _mm256_set1_ps(INFINITY);
  result = _mm256_blendv_ps(result, inf, _mm256_cmp_ps(x, hi, _CMP_GE_OQ));
  return _mm256_blendv_ps(result, input, nan);
}

inline __m256 sigmoid(__m256 x) {
  const __m256 one = _mm256_set1_ps(1.0f);
  __m256 e = exp(_mm256_sub_ps(_mm256_setzero_ps(), x));
  return _mm256_div_ps(one, _mm256_add_ps(one, e));
}

/// tanh(x) = sign(x) (1 - 2 / (e^{2|x|} + 1)); below |x| < 0.0625 an odd
/// polynomial avoids the cancellation.
inline __m256 tanh(__m256 x) {
  const __m256 signMask = _mm256_set1_ps(-0.0f), one = _mm256_set1_ps(1.0f);
  __m256 ax = _mm256_andnot_ps(signMask, x);
  __m256 e = exp(_mm256_add_ps(ax, ax));
  __m256 big = _mm256_sub_ps(one, _mm256_div_ps(_mm256_set1_ps(2.0f), _mm256_add_ps(e, one)));
  __m256 x2 = _mm256_mul_ps(x, x);
  __m256 p = _mm256_set1_ps(0.0539682540f); // 17/315
  p = _mm256_fmsub_ps(p, x2, _mm256_set1_ps(0.1333333333f));
  p = _mm256_fmadd_ps(p, x2, _mm256_set1_ps(0.3333333333f));
  __m256 small = _mm256_fnmadd_ps(_mm256_mul_ps(p, x2), ax, ax);
  __m256 r = _mm256_blendv_ps(big, small, _mm256_cmp_ps(ax, _mm256_set1_ps(0.0625f), _CMP_LT_OQ));
  r = _mm256_or_ps(r, _mm256_and_ps(signMask, x));
  return _mm256_blendv_ps(r, x, _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
}

/// erf(x): below |x| < 0.5 its Taylor polynomial, above it Abramowitz and
/// Stegun 7.1.26, 1 - t P(t) e^{-x^2} (1.5e-7 absolute in exact arithmetic).
/// x^2 is capped at 16 (erf(4) rounds to 1): e^{-x^2} of larger |x| would be
/// subnormal, and subnormal arithmetic made erf twice as slow on such inputs.
inline __m256 erf(__m256 x) {
  const __m256 signMask = _mm256_set1_ps(-0.0f), one = _mm256_set1_ps(1.0f);
  __m256 ax = _mm256_andnot_ps(signMask, x);
  __m256 x2 = _mm256_min_ps(_mm256_mul_ps(x, x), _mm256_set1_ps(16.0f));
  // Small: x * (c0 + c1 x^2 + ... + c6 x^12), the Taylor series of erf(x)/x
  // (truncation error below 1e-9 for |x| < 0.5).
  __m256 ps = _mm256_set1_ps(1.2055332e-4f);
  ps = _mm256_fmadd_ps(ps, x2, _mm256_set1_ps(-8.5483270e-4f));
  ps = _mm256_fmadd_ps(ps, x2, _mm256_set1_ps(5.2239776e-3f));
  ps = _mm256_fmadd_ps(ps, x2, _mm256_set1_ps(-2.6866171e-2f));
  ps = _mm256_fmadd_ps(ps, x2, _mm256_set1_ps(1.1283792e-1f));
  ps = _mm256_fmadd_ps(ps, x2, _mm256_set1_ps(-3.7612639e-1f));
  ps = _mm256_fmadd_ps(ps, x2, _mm256_set1_ps(1.1283792e+0f));
  __m256 small = _mm256_mul_ps(ps, ax);
  __m256 t = _mm256_div_ps(one, _mm256_fmadd_ps(_mm256_set1_ps(0.3275911f), ax, one));
  __m256 pl = _mm256_set1_ps(1.061405429f);
  pl = _mm256_fmadd_ps(pl, t, _mm256_set1_ps(-1.453152027f));
  pl = _mm256_fmadd_ps(pl, t, _mm256_set1_ps(1.421413741f));
  pl = _mm256_fmadd_ps(pl, t, _mm256_set1_ps(-0.284496736f));
  pl = _mm256_fmadd_ps(pl, t, _mm256_set1_ps(0.254829592f));
  __m256 large =
      _mm256_fnmadd_ps(_mm256_mul_ps(pl, t), exp(_mm256_sub_ps(_mm256_setzero_ps(), x2)), one);
  __m256 r = _mm256_blendv_ps(large, small, _mm256_cmp_ps(ax, _mm256_set1_ps(0.5f), _CMP_LT_OQ));
  r = _mm256_min_ps(r, one);
  r = _mm256_or_ps(r, _mm256_and_ps(signMask, x));
  return _mm256_blendv_ps(r, x, _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
}

inline __m256 activate(__m256 x, Activation act) {
  switch (act) {
  case Activation::None:
    return x;
  case Activation::Relu:
    return _mm256_max_ps(x, _mm256_setzero_ps());
  case Activation::Sigmoid:
    return sigmoid(x);
  case Activation::Tanh:
    return tanh(x);
  case Activation::GeluErf: {
    __m256 half = _mm256_mul_ps(x, _mm256_set1_ps(0.5f));
    __m256 e = erf(_mm256_mul_ps(x, _mm256_set1_ps(0.7071067811865476f)));
    return _mm256_fmadd_ps(half, e, half);
  }
  case Activation::GeluTanh: {
    __m256 half = _mm256_mul_ps(x, _mm256_set1_ps(0.5f));
    __m256 x3 = _mm256_mul_ps(_mm256_mul_ps(x, x), x);
    __m256 inner = _mm256_mul_ps(_mm256_fmadd_ps(x3, _mm256_set1_ps(0.044715f), x),
                                 _mm256_set1_ps(0.7978845608028654f));
    return _mm256_fmadd_ps(half, tanh(inner), half);
  }
  }
  return x;
}

} // namespace avx2
#endif

/// out[i] = f(in[i]), eight at a time with `vector` and the tail with
/// `scalar`; in and out may be the same buffer.
template <typename Vector, typename Scalar>
inline void mapFloats(const float *in, float *out, int64_t n, Vector vector, Scalar scalar) {
  int64_t i = 0;
#ifdef KILN_AVX2
  for (const int64_t whole = n / 8 * 8; i < whole; i += 8)
    _mm256_storeu_ps(out + i, vector(_mm256_loadu_ps(in + i)));
#else
  (void)vector;
#endif
  for (; i < n; ++i)
    out[i] = scalar(in[i]);
}

#ifdef KILN_AVX2
#define KILN_VECTOR(expr) [&](__m256 v) { return expr; }
#else
#define KILN_VECTOR(expr) [&](float) { return 0.0f; }
#endif

/// out[i] = act(in[i]).
inline void activate(const float *in, float *out, int64_t n, Activation act) {
  mapFloats(in, out, n, KILN_VECTOR(avx2::activate(v, act)),
            [&](float x) { return activate(x, act); });
}

inline void exp(const float *in, float *out, int64_t n) {
  mapFloats(in, out, n, KILN_VECTOR(avx2::exp(v)), [](float x) { return std::exp(x); });
}

inline void erf(const float *in, float *out, int64_t n) {
  mapFloats(in, out, n, KILN_VECTOR(avx2::erf(v)), [](float x) { return std::erf(x); });
}

} // namespace kiln::cpu

#endif
