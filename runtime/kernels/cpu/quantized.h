// quantized.h - dense layers on int8 and 16-bit weights, and row-wise
// quantised embedding rows. The compiler (kiln-quantize-dense,
// kiln-quantize-tables, kiln-raise-quantized-matmul, kiln-pack-weights) uses
// the quantise and pack functions here, so each layout has one definition.
//
// int8 dense: weights are symmetric per output column, w = scale[n] * q,
// q in [-127, 127] (an imported model's may reach -128); activations are
// quantised per row inside the kernel (or, after calibration, with one
// static range per layer), x = scale_a * (q_a - zp), q_a in [0, 127]. The AVX2 product is
// vpmaddubsw (u8 x s8, adjacent pairs summed into int16) then vpmaddwd by
// ones (pairs of int16 into int32). A pair is at most 2 * 127 * 128 = 32512
// in magnitude, inside int16: activations use 7 bits so that vpmaddubsw
// never saturates, whatever the weights (test/unit: the extreme values).
// With AVX-512 VNNI (kiln compile --cpu avx512-vnni) one vpdpbusd adds four
// u8 x s8 products straight into int32. Both give the same exact int32
// sums, so both builds of a model compute the same outputs.
// The int32 sums are exact; acc - zp * colsum[n] removes the zero point, and
// the float result scale_a * scale[n] * that gets the dense epilogue.
//
// Packed int8 layout ([P, ceil(K/4), 64] bytes): 16-column panels as for
// f32, each k-group of 4 stored as [16 columns][4 k], so one 32-byte load is
// 8 columns x 4 k, the operand vpmaddubsw pairs with 4 broadcast bytes of A.
//
// 16-bit weights (fp16 or bf16) keep the f32 panel layout [P, K, 16] and
// are widened to f32 as they are loaded; the arithmetic is f32.
//
// Row-wise tables (FBGEMM style): each row is its `dim` values quantised to
// 8 or 4 bits (two per byte, low nibble first) followed by an fp16 scale and
// an fp16 bias: value = scale * q + bias.
#ifndef KILN_KERNELS_CPU_QUANTIZED_H
#define KILN_KERNELS_CPU_QUANTIZED_H

#include "scalar.h"
#include "gemm.h"

#include <cmath>
#include <cstring>
#include <type_traits>

namespace kiln::cpu {

constexpr int64_t kInt8ActivationMax = 127;
/// Deepest int8 layer: six quantised rows of A fit the kernel's stack buffer.
constexpr int64_t kMaxInt8Depth = 16384;

inline int64_t int8GroupCount(int64_t k) { return (k + 3) / 4; }

// The 16-bit float conversions (scalar.h), for the packing and quantising
// functions below and their callers.
using scalar::bf16ToFloat;
using scalar::floatToBf16;
using scalar::floatToFp16;
using scalar::fp16ToFloat;

/// fp8 E4M3 (the "FN" variant: no infinities, one NaN pattern, largest
/// finite 448), which the CUDA target's --precision fp8 stores its weights
/// in. Rounds to nearest even and saturates to +-448; NaN stays NaN.
constexpr float kE4m3Max = 448.0f;

inline uint8_t floatToE4m3(float f) {
  const uint8_t sign = std::signbit(f) ? 0x80 : 0;
  const float a = std::fabs(f);
  if (std::isnan(f))
    return uint8_t(sign | 0x7f);
  if (a >= kE4m3Max)
    return uint8_t(sign | 0x7e);
  if (a < 0.015625f) // below 2^-6: subnormals, in units of 2^-9 (8 of them reach 2^-6)
    return uint8_t(sign | uint8_t(std::nearbyint(a * 512.0f)));
  int e = 0;
  const float fraction = std::frexp(a, &e); // a = fraction * 2^e, fraction in [0.5, 1)
  int exponent = e - 1 + 7, mantissa = int(std::nearbyint((fraction * 2 - 1) * 8));
  if (mantissa == 8)
    mantissa = 0, ++exponent;
  return uint8_t(sign | std::min(exponent << 3 | mantissa, 0x7e));
}

inline float e4m3ToFloat(uint8_t q) {
  const int exponent = (q >> 3) & 15, mantissa = q & 7;
  if (exponent == 15 && mantissa == 7)
    return std::numeric_limits<float>::quiet_NaN();
  const float a = exponent == 0 ? std::ldexp(float(mantissa), -9)
                                : std::ldexp(1.0f + float(mantissa) / 8, exponent - 7);
  return q & 0x80 ? -a : a;
}

//===----------------------------------------------------------------------===//
// Row-wise quantised tables
//===----------------------------------------------------------------------===//

/// Bytes of one quantised row of `dim` values at `bits` (8 or 4).
inline int64_t quantizedRowBytes(int64_t dim, int bits) {
  return (bits == 4 ? (dim + 1) / 2 : dim) + 2 * int64_t(sizeof(uint16_t));
}

/// Whether x[0, n) holds no NaN or Inf: what an integer code can stand for.
inline bool allFinite(const float *x, int64_t n) {
  for (int64_t i = 0; i < n; ++i)
    if (!std::isfinite(x[i]))
      return false;
  return true;
}

/// Quantises one row: min/max range, fp16 scale and bias, values rounded
/// with the stored (fp16) scale and bias so that only q carries error.
/// Returns false, writing nothing, for a row holding NaN or Inf.
[[nodiscard]] inline bool quantizeTableRow(const float *x, int64_t dim, int bits, uint8_t *out) {
  if (!allFinite(x, dim))
    return false;
  float lo = dim ? x[0] : 0.0f, hi = lo;
  for (int64_t d = 1; d < dim; ++d) {
    lo = std::min(lo, x[d]);
    hi = std::max(hi, x[d]);
  }
  const float levels = bits == 4 ? 15.0f : 255.0f;
  uint16_t bias16 = floatToFp16(lo);
  // The stored bias may round above the minimum; the range then starts there.
  const float bias = fp16ToFloat(bias16);
  uint16_t scale16 = floatToFp16((hi - std::min(bias, lo)) / levels);
  float scale = fp16ToFloat(scale16);
  if (!(scale > 0.0f) || !std::isfinite(scale)) {
    scale16 = floatToFp16(1.0f);
    scale = 1.0f;
  }
  const int64_t bytes = bits == 4 ? (dim + 1) / 2 : dim;
  std::memset(out, 0, bytes);
  for (int64_t d = 0; d < dim; ++d) {
    float q = std::nearbyint((x[d] - bias) / scale);
    uint8_t v = uint8_t(std::clamp(q, 0.0f, levels));
    if (bits == 4)
      out[d / 2] |= uint8_t(v << (4 * (d & 1)));
    else
      out[d] = v;
  }
  std::memcpy(out + bytes, &scale16, 2);
  std::memcpy(out + bytes + 2, &bias16, 2);
  return true;
}

/// Pools quantised row `row` into y like poolRow: stored on the first row of
/// a bag, then added (mode 0/1) or maxed (mode 2).
inline void poolQuantizedRow(float *y, const uint8_t *row, int64_t dim, int bits, int mode,
                             bool first) {
  const int64_t bytes = bits == 4 ? (dim + 1) / 2 : dim;
  uint16_t s16, b16;
  std::memcpy(&s16, row + bytes, 2);
  std::memcpy(&b16, row + bytes + 2, 2);
  const float scale = fp16ToFloat(s16), bias = fp16ToFloat(b16);
  int64_t d = 0;
#ifdef KILN_AVX2
  if (bits == 8) {
    const __m256 vs = _mm256_set1_ps(scale), vb = _mm256_set1_ps(bias);
    for (; d + 8 <= dim; d += 8) {
      __m128i q8 = _mm_loadl_epi64(reinterpret_cast<const __m128i *>(row + d));
      __m256 v = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(q8)), vs, vb);
      if (!first)
        v = mode == 2 ? _mm256_max_ps(v, _mm256_loadu_ps(y + d))
                      : _mm256_add_ps(v, _mm256_loadu_ps(y + d));
      _mm256_storeu_ps(y + d, v);
    }
  }
#endif
  for (; d < dim; ++d) {
    const int q = bits == 4 ? (row[d / 2] >> (4 * (d & 1))) & 15 : row[d];
    const float v = scale * float(q) + bias;
    y[d] = first ? v : mode == 2 ? std::max(y[d], v) : y[d] + v;
  }
}

//===----------------------------------------------------------------------===//
// int8 weights
//===----------------------------------------------------------------------===//

/// sums[n] = sum over k of q[k, n], for q [K, N]: the zero-point correction
/// of the int8 kernel.
inline void columnSumsInt8(const int8_t *q, int64_t K, int64_t N, int32_t *sums) {
  std::fill(sums, sums + N, 0);
  for (int64_t k = 0; k < K; ++k)
    for (int64_t n = 0; n < N; ++n)
      sums[n] += q[k * N + n];
}

/// Quantises W [K, N] per column: q[k, n] = round(W / scale[n]) in
/// [-127, 127], scale[n] = max |W[:, n]| / 127; sums[n] = sum over k of q.
/// Returns false, writing nothing, when W holds NaN or Inf.
[[nodiscard]] inline bool quantizeWeightsInt8(const float *W, int64_t K, int64_t N, int8_t *q,
                                              float *scale, int32_t *sums) {
  if (!allFinite(W, K * N))
    return false;
  for (int64_t n = 0; n < N; ++n) {
    float m = 0;
    for (int64_t k = 0; k < K; ++k)
      m = std::max(m, std::fabs(W[k * N + n]));
    scale[n] = m > 0 ? m / 127.0f : 1.0f;
    for (int64_t k = 0; k < K; ++k)
      q[k * N + n] = int8_t(std::clamp(std::nearbyint(W[k * N + n] / scale[n]), -127.0f, 127.0f));
  }
  columnSumsInt8(q, K, N, sums);
  return true;
}

/// out[P][ceil(K/4)][16][4] from q [K, N] (see the header comment).
inline void packWeightsInt8(const int8_t *q, int64_t K, int64_t N, int8_t *out) {
  const int64_t G = int8GroupCount(K);
  for (int64_t p = 0, P = panelCount(N); p < P; ++p)
    for (int64_t g = 0; g < G; ++g)
      for (int64_t c = 0; c < kPanelWidth; ++c)
        for (int64_t j = 0; j < 4; ++j) {
          const int64_t k = g * 4 + j, n = p * kPanelWidth + c;
          out[((p * G + g) * kPanelWidth + c) * 4 + j] = k < K && n < N ? q[k * N + n] : 0;
        }
}

/// round(r) + zp clamped to [0, 127]; NaN counts as 0.
inline uint8_t quantizeActivation(float r, int32_t zp) {
  const float q = r == r ? std::nearbyint(std::clamp(r, -256.0f, 256.0f)) : 0.0f;
  return uint8_t(std::clamp(int32_t(q) + zp, int32_t(0), int32_t(kInt8ActivationMax)));
}

/// The scale and zero point of activations in [lo, hi] (widened to include
/// 0, so that zero is exact) in 127 steps.
inline void activationQuantization(float lo, float hi, float &scale, int32_t &zeroPoint) {
  lo = std::min(lo, 0.0f);
  hi = std::max(hi, 0.0f);
  scale = (hi - lo) / float(kInt8ActivationMax);
  if (!(scale > 0.0f) || !std::isfinite(scale))
    scale = 1.0f;
  zeroPoint = int32_t(std::clamp(std::nearbyint(-lo / scale), 0.0f, float(kInt8ActivationMax)));
}

/// Quantises n activations to [0, 127] with this scale and zero point
/// (values outside the range saturate, NaN counts as 0).
inline void quantizeActivations(const float *x, int64_t n, uint8_t *q, float scale,
                                int32_t zeroPoint);

/// quantizeActivations for one row of a layer's input. Writes groups * 4
/// bytes, the padding at the zero point (the padded weights are 0).
inline void quantizeActivationRowWith(const float *x, int64_t K, uint8_t *q, float scale,
                                      int32_t zeroPoint) {
  quantizeActivations(x, K, q, scale, zeroPoint);
  std::fill(q + K, q + int8GroupCount(K) * 4, uint8_t(zeroPoint));
}

/// Quantises one row of activations to [0, 127] over the row's own range.
inline void quantizeActivationRow(const float *x, int64_t K, uint8_t *q, float &scale,
                                  int32_t &zeroPoint) {
  float lo = 0, hi = 0;
  int64_t k = 0;
#ifdef KILN_AVX2
  __m256 vlo = _mm256_setzero_ps(), vhi = _mm256_setzero_ps();
  for (; k + 8 <= K; k += 8) {
    const __m256 v = _mm256_loadu_ps(x + k);
    vlo = _mm256_min_ps(vlo, v);
    vhi = _mm256_max_ps(vhi, v);
  }
  alignas(32) float l[8], h[8];
  _mm256_store_ps(l, vlo);
  _mm256_store_ps(h, vhi);
  for (int i = 0; i < 8; ++i) {
    lo = std::min(lo, l[i]);
    hi = std::max(hi, h[i]);
  }
#endif
  for (; k < K; ++k) {
    lo = std::min(lo, x[k]);
    hi = std::max(hi, x[k]);
  }
  activationQuantization(lo, hi, scale, zeroPoint);
  quantizeActivationRowWith(x, K, q, scale, zeroPoint);
}

inline void quantizeActivations(const float *x, int64_t n, uint8_t *q, float scale,
                                int32_t zeroPoint) {
  const float inv = 1.0f / scale;
  int64_t k = 0;
#ifdef KILN_AVX2
  // cvtps rounds to nearest even like nearbyint; NaN lanes are zeroed first,
  // as the scalar path counts NaN as 0.
  const __m256 vinv = _mm256_set1_ps(inv);
  const __m256i vzp = _mm256_set1_epi32(zeroPoint), top = _mm256_set1_epi32(kInt8ActivationMax);
  auto convert = [&](const float *p) {
    __m256 r = _mm256_mul_ps(_mm256_loadu_ps(p), vinv);
    r = _mm256_and_ps(r, _mm256_cmp_ps(r, r, _CMP_ORD_Q));
    r = _mm256_max_ps(_mm256_min_ps(r, _mm256_set1_ps(256.0f)), _mm256_set1_ps(-256.0f));
    __m256i v = _mm256_add_epi32(_mm256_cvtps_epi32(r), vzp);
    return _mm256_min_epi32(_mm256_max_epi32(v, _mm256_setzero_si256()), top);
  };
  for (; k + 32 <= n; k += 32) {
    const __m256i a = _mm256_packs_epi32(convert(x + k), convert(x + k + 8));
    const __m256i b = _mm256_packs_epi32(convert(x + k + 16), convert(x + k + 24));
    // packs interleave the 128-bit lanes: 0-3 16-19 4-7 20-23 | ... ; undo it.
    const __m256i bytes = _mm256_permutevar8x32_epi32(_mm256_packus_epi16(a, b),
                                                      _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256(reinterpret_cast<__m256i *>(q + k), bytes);
  }
#endif
  for (; k < n; ++k)
    q[k] = quantizeActivation(x[k] * inv, zeroPoint);
}

/// What an int8 layer needs besides A and C.
struct Int8Weights {
  const int8_t *packed; // packWeightsInt8's layout
  const float *scale;   // N per-column scales
  const int32_t *sums;  // N column sums of q
  /// A calibrated layer's static activation scale and zero point
  /// (activationQuantization); scale 0: each row's own range.
  float inputScale = 0;
  int32_t inputZeroPoint = 0;
  /// A requantising layer's output scale and zero point (the next layer's
  /// input range), for a uint8_t C.
  float outputScale = 0;
  int32_t outputZeroPoint = 0;
};

namespace detail {

/// Rows per int8 register tile, and their quantised activations.
#ifdef KILN_AVX512_VNNI
constexpr int kInt8Rows = 8;
#else
constexpr int kInt8Rows = 6;
#endif
struct QuantizedRows {
  const uint8_t *q; // row r at q + r * stride
  int64_t stride;
  const float *scale;
  const int32_t *zeroPoint;
};

/// The f32 value of int8 accumulators: (acc - zp * sums) * scale_a * scale.
inline float dequantize(int32_t acc, int32_t zp, int32_t sum, float scaleA, float scaleW) {
  return float(acc - zp * sum) * (scaleA * scaleW);
}

#ifdef KILN_AVX2
#ifdef KILN_AVX512_VNNI
/// Stores R rows of a tile's exact int32 sums (one panel, t.cols columns)
/// to C as epilogue(dequantize(sums)), 16 columns at a time in zmm: the
/// arithmetic and its order are storeTile's (the activation on the two ymm
/// halves), so the AVX2 build computes the same floats.
template <int R>
inline void storeInt8Tile(const __m512i (&acc)[R], const QuantizedRows &a, const Int8Weights &w,
                          const Tile &t) {
  const __mmask16 mask = __mmask16((1u << t.cols) - 1);
  const __m512i sums = _mm512_maskz_loadu_epi32(mask, w.sums + t.col);
  const __m512 scale = _mm512_maskz_loadu_ps(mask, w.scale + t.col);
  const Epilogue *ep = t.ep;
  const __m512 bias =
      ep && ep->bias ? _mm512_maskz_loadu_ps(mask, ep->bias + t.col) : _mm512_setzero_ps();
  for (int r = 0; r < R; ++r) {
    const __m512i exact =
        _mm512_sub_epi32(acc[r], _mm512_mullo_epi32(_mm512_set1_epi32(a.zeroPoint[r]), sums));
    __m512 x =
        _mm512_mul_ps(_mm512_cvtepi32_ps(exact), _mm512_mul_ps(_mm512_set1_ps(a.scale[r]), scale));
    if (ep) {
      const int64_t row = (t.row + r) * ep->stride + t.col;
      if (ep->bias)
        x = _mm512_add_ps(x, bias);
      if (ep->activation != Activation::None) {
        const __m256 lo = avx2::activate(_mm512_castps512_ps256(x), ep->activation);
        const __m256 hi = avx2::activate(
            _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(x), 1)), ep->activation);
        x = _mm512_castpd_ps(_mm512_insertf64x4(_mm512_castps_pd(_mm512_castps256_ps512(lo)),
                                                _mm256_castps_pd(hi), 1));
      }
      if (ep->multiplier)
        x = _mm512_mul_ps(x, _mm512_maskz_loadu_ps(mask, ep->multiplier + row));
      if (ep->residual)
        x = _mm512_add_ps(x, _mm512_maskz_loadu_ps(mask, ep->residual + row));
    }
    _mm512_mask_storeu_ps(t.C + r * t.ldc, mask, x);
  }
}

/// C[R rows, one panel] = epilogue(dequantize(qA W)): a k-group of the
/// panel (16 columns x 4 k) is one 64-byte vector, and vpdpbusd adds its
/// products with 4 broadcast bytes of a row into that row's 16 int32 sums.
/// Fewer than 4 rows keep several chains of k-groups in flight, as one
/// chain waits on vpdpbusd's latency.
template <int R>
inline void int8Tile(const QuantizedRows &a, const int8_t *W, int64_t groups, const Int8Weights &w,
                     const Tile &t) {
  constexpr int kChains = R >= 4 ? 1 : R >= 2 ? 2 : 4;
  __m512i acc[kChains][R];
  for (int c = 0; c < kChains; ++c)
    for (int r = 0; r < R; ++r)
      acc[c][r] = _mm512_setzero_si512();
  auto step = [&](int c, int64_t g) {
    const __m512i b = _mm512_loadu_si512(W + g * 64);
    for (int r = 0; r < R; ++r) {
      int32_t four;
      std::memcpy(&four, a.q + r * a.stride + g * 4, 4);
      acc[c][r] = _mm512_dpbusd_epi32(acc[c][r], _mm512_set1_epi32(four), b);
    }
  };
  int64_t g = 0;
  for (; g + kChains <= groups; g += kChains)
    for (int c = 0; c < kChains; ++c)
      step(c, g + c);
  for (; g < groups; ++g)
    step(0, g);
  for (int r = 0; r < R; ++r)
    for (int c = 1; c < kChains; ++c)
      acc[0][r] = _mm512_add_epi32(acc[0][r], acc[c][r]);
  storeInt8Tile<R>(acc[0], a, w, t);
}
#else
/// Stores R rows of a tile's exact int32 sums (one panel, t.cols columns)
/// to C as epilogue(dequantize(sums)).
template <int R>
inline void storeInt8Tile(const int32_t (&acc)[R][kPanelWidth], const QuantizedRows &a,
                          const Int8Weights &w, const Tile &t) {
  alignas(32) float out[R][2][8];
  for (int half = 0; half < 2 && half * 8 < t.cols; ++half) {
    const int64_t c = t.col + half * 8;
    const __m256i mask = laneMask(std::min<int64_t>(8, t.cols - half * 8));
    const __m256i sums = _mm256_maskload_epi32(w.sums + c, mask);
    const __m256 scale = _mm256_maskload_ps(w.scale + c, mask);
    for (int r = 0; r < R; ++r) {
      const __m256i exact =
          _mm256_sub_epi32(_mm256_load_si256(reinterpret_cast<const __m256i *>(acc[r] + half * 8)),
                           _mm256_mullo_epi32(_mm256_set1_epi32(a.zeroPoint[r]), sums));
      _mm256_store_ps(out[r][half],
                      _mm256_mul_ps(_mm256_cvtepi32_ps(exact),
                                    _mm256_mul_ps(_mm256_set1_ps(a.scale[r]), scale)));
    }
  }
  storeTile<R, 1>(out, t);
}

/// C[R rows, one panel] = epilogue(dequantize(qA W)) over all k-groups. Up
/// to 3 rows take all 16 columns in one pass over the weights (each line of
/// the panel read once); more rows take two passes of 8 columns, so that
/// the R accumulators, the weights, a broadcast, a product and the ones stay
/// in registers (GCC spills a 2 x 6 tile).
template <int R>
inline void int8Tile(const QuantizedRows &a, const int8_t *W, int64_t groups, const Int8Weights &w,
                     const Tile &t) {
  constexpr int kPasses = R > 3 ? 2 : 1, kVectors = 2 / kPasses;
  const __m256i ones = _mm256_set1_epi16(1);
  alignas(32) int32_t sums[R][kPanelWidth];
  for (int pass = 0; pass < kPasses && pass * 8 < t.cols; ++pass) {
    __m256i acc[R][kVectors];
    for (int r = 0; r < R; ++r)
      for (int v = 0; v < kVectors; ++v)
        acc[r][v] = _mm256_setzero_si256();
    const int8_t *src = W + pass * 32;
    for (int64_t g = 0; g < groups; ++g, src += 64) {
      __m256i b[kVectors];
      for (int v = 0; v < kVectors; ++v)
        b[v] = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(src + v * 32));
      for (int r = 0; r < R; ++r) {
        int32_t four;
        std::memcpy(&four, a.q + r * a.stride + g * 4, 4);
        const __m256i x = _mm256_set1_epi32(four);
        for (int v = 0; v < kVectors; ++v)
          acc[r][v] =
              _mm256_add_epi32(acc[r][v], _mm256_madd_epi16(_mm256_maddubs_epi16(x, b[v]), ones));
      }
    }
    for (int r = 0; r < R; ++r)
      for (int v = 0; v < kVectors; ++v)
        _mm256_store_si256(reinterpret_cast<__m256i *>(sums[r] + (pass + v) * 8), acc[r][v]);
  }
  storeInt8Tile<R>(sums, a, w, t);
}
#endif

/// int8Tile<rows> for 1 <= rows <= kInt8Rows.
template <int R = 1>
inline void int8TileRows(int64_t rows, const QuantizedRows &a, const int8_t *W, int64_t groups,
                         const Int8Weights &w, const Tile &t) {
  if constexpr (R < kInt8Rows)
    if (rows > R)
      return int8TileRows<R + 1>(rows, a, W, groups, w, t);
  int8Tile<R>(a, W, groups, w, t);
}
#endif

/// Rows [m0, m1) and panels [p0, p1) of an int8 layer: blocks of rows are
/// quantised once into a stack buffer (unless A is uint8_t: rows a
/// requantising layer already quantised with w's input range), then every
/// panel runs over them. A uint8_t C is quantised with w's output range
/// after the epilogue, from a tile staged on the stack.
template <typename In, typename Out>
inline void denseInt8Block(const In *A, int64_t lda, const Int8Weights &w, int64_t K, int64_t N,
                           Out *C, int64_t ldc, int64_t m0, int64_t m1, int64_t p0, int64_t p1,
                           const Epilogue &ep) {
  constexpr bool kQuantizedInput = std::is_same_v<In, uint8_t>;
  constexpr bool kRequantize = std::is_same_v<Out, uint8_t>;
  constexpr int64_t kBufferBytes = kQuantizedInput ? 64 : kInt8Rows * kMaxInt8Depth;
  constexpr int64_t kMaxBlockRows = 48;
  alignas(32) uint8_t buffer[kBufferBytes];
  float scale[kMaxBlockRows];
  int32_t zeroPoint[kMaxBlockRows];
  const int64_t groups = int8GroupCount(K), panelStride = groups * 64;
  const int64_t stride = kQuantizedInput ? lda : groups * 4;
  const int64_t blockRows = kQuantizedInput
                                ? kMaxBlockRows
                                : std::clamp<int64_t>(kBufferBytes / stride / kInt8Rows * kInt8Rows,
                                                      kInt8Rows, kMaxBlockRows);
  for (int64_t mb = m0; mb < m1; mb += blockRows) {
    const int64_t me = std::min(mb + blockRows, m1);
    const uint8_t *rows = buffer;
    if constexpr (kQuantizedInput)
      rows = A + mb * lda;
    for (int64_t m = mb; m < me; ++m) {
      float &s = scale[m - mb];
      int32_t &z = zeroPoint[m - mb];
      if constexpr (kQuantizedInput) {
        s = w.inputScale;
        z = w.inputZeroPoint;
      } else if (w.inputScale > 0) {
        s = w.inputScale;
        z = w.inputZeroPoint;
        quantizeActivationRowWith(A + m * lda, K, buffer + (m - mb) * stride, s, z);
      } else {
        quantizeActivationRow(A + m * lda, K, buffer + (m - mb) * stride, s, z);
      }
    }
    for (int64_t p = p0; p < p1; ++p) {
      const int64_t col = p * kPanelWidth, cols = std::min(N - col, kPanelWidth);
      const int8_t *W = w.packed + p * panelStride;
      for (int64_t i = mb; i < me; i += kInt8Rows) {
        const int64_t n = std::min<int64_t>(kInt8Rows, me - i);
        QuantizedRows a{rows + (i - mb) * stride, stride, scale + (i - mb), zeroPoint + (i - mb)};
        alignas(64) float staged[kRequantize ? kInt8Rows : 1][kPanelWidth];
        float *out;
        int64_t ldo;
        if constexpr (kRequantize) {
          out = staged[0];
          ldo = kPanelWidth;
        } else {
          out = C + i * ldc + col;
          ldo = ldc;
        }
#ifdef KILN_AVX2
        int8TileRows(n, a, W, groups, w,
                     Tile{nullptr, 0, 0, nullptr, 0, 0, out, ldo, cols, false, 0, &ep, i, col});
#else
        for (int64_t r = 0; r < n; ++r)
          for (int64_t c = 0; c < cols; ++c) {
            int32_t acc = 0;
            for (int64_t k = 0; k < groups * 4; ++k)
              acc += int32_t(a.q[r * stride + k]) * W[(k / 4) * 64 + c * 4 + k % 4];
            out[r * ldo + c] = applyEpilogue(
                dequantize(acc, a.zeroPoint[r], w.sums[col + c], a.scale[r], w.scale[col + c]), ep,
                i + r, col + c);
          }
#endif
        if constexpr (kRequantize)
          for (int64_t r = 0; r < n; ++r)
            quantizeActivations(staged[r], cols, C + (i + r) * ldc + col, w.outputScale,
                                w.outputZeroPoint);
      }
    }
  }
}

} // namespace detail

/// C[M, N] = epilogue(A[M, K] * W) for int8 weights (K <= kMaxInt8Depth),
/// A quantised per row on the fly (with the layer's static range if it has
/// one). A uint8_t A holds rows already quantised with w's input range (K a
/// multiple of 4); a uint8_t C receives the results quantised with w's
/// output range (requantisation: the next layer's input).
template <typename In, typename Out>
inline void denseInt8(const In *A, int64_t lda, const Int8Weights &w, int64_t K, int64_t N, Out *C,
                      int64_t ldc, int64_t M, const Epilogue &ep, const kiln_abi_exec *exec) {
  splitDense(exec, M, N, K, detail::kInt8Rows, [&](int64_t m0, int64_t m1, int64_t p0, int64_t p1) {
    detail::denseInt8Block(A, lda, w, K, N, C, ldc, m0, m1, p0, p1, ep);
  });
}

//===----------------------------------------------------------------------===//
// 16-bit weights
//===----------------------------------------------------------------------===//

/// How 16-bit weights widen to f32: fp16 or bf16 weights times f32 inputs;
/// or, for --precision bf16 on the CPU (Bf16Dot), bf16 weights times the
/// inputs rounded to bf16, the exact products summed in f32 (vdpbf16ps with
/// AVX-512 BF16, the same arithmetic in scalar code elsewhere).
enum class HalfFormat { Fp16, Bf16, Bf16Dot };

namespace detail {

#ifdef KILN_AVX2
template <HalfFormat F> inline __m256 loadHalf8(const uint16_t *p) {
  const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i *>(p));
  if constexpr (F == HalfFormat::Fp16)
    return _mm256_cvtph_ps(h);
  else
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

/// tile<R, P> of gemm.h on 16-bit weights.
template <HalfFormat F, int R, int P>
inline void halfTile(const Tile &t, const uint16_t *W, int64_t panelStride) {
  __m256 acc[R][2 * P];
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < 2 * P; ++v)
      acc[r][v] = _mm256_setzero_ps();
  for (int64_t k = 0; k < t.depth; ++k) {
    __m256 b[2 * P];
    for (int p = 0; p < P; ++p) {
      const uint16_t *w = W + p * panelStride + k * kPanelWidth;
      b[2 * p] = loadHalf8<F>(w);
      b[2 * p + 1] = loadHalf8<F>(w + 8);
    }
    for (int r = 0; r < R; ++r) {
      const __m256 x = _mm256_broadcast_ss(t.A + r * t.rowStride + k);
      for (int v = 0; v < 2 * P; ++v)
        acc[r][v] = _mm256_fmadd_ps(x, b[v], acc[r][v]);
    }
  }
  alignas(32) float out[R][2 * P][8];
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < 2 * P; ++v)
      _mm256_store_ps(out[r][v], acc[r][v]);
  storeTile<R, P>(out, t);
}
#endif

/// Panels of 16-bit weights, 4 rows at a time; one or two rows read 4 or 2
/// panels at once so that enough FMAs are in flight.
template <HalfFormat F>
inline void denseHalfBlock(const float *A, int64_t lda, const uint16_t *W, int64_t K, int64_t N,
                           float *C, int64_t ldc, int64_t m0, int64_t m1, int64_t p0, int64_t p1,
                           const Epilogue &ep) {
  const int64_t panelStride = K * kPanelWidth, rows = m1 - m0;
  const int64_t group = rows == 1 ? 4 : rows == 2 ? 2 : 1;
  for (int64_t p = p0; p < p1;) {
    const int64_t panels = p + group <= p1 ? group : 1, col = p * kPanelWidth;
    const int64_t cols = std::min(N - col, panels * kPanelWidth);
    const uint16_t *w = W + p * panelStride;
    for (int64_t i = m0; i < m1; i += 4) {
      const int64_t r = std::min<int64_t>(4, m1 - i);
#ifdef KILN_AVX2
      Tile t{A + i * lda, lda,  1,     nullptr, 0,   K, C + i * ldc + col,
             ldc,         cols, false, 0,       &ep, i, col};
      if (panels == 4)
        halfTile<F, 1, 4>(t, w, panelStride);
      else if (panels == 2)
        halfTile<F, 2, 2>(t, w, panelStride);
      else if (r == 1)
        halfTile<F, 1, 1>(t, w, panelStride);
      else if (r == 2)
        halfTile<F, 2, 1>(t, w, panelStride);
      else if (r == 3)
        halfTile<F, 3, 1>(t, w, panelStride);
      else
        halfTile<F, 4, 1>(t, w, panelStride);
#else
      for (int64_t rr = 0; rr < r; ++rr)
        for (int64_t c = 0; c < cols; ++c) {
          const uint16_t *wc = w + (c / kPanelWidth) * panelStride + c % kPanelWidth;
          float acc = 0;
          for (int64_t k = 0; k < K; ++k) {
            uint16_t h = wc[k * kPanelWidth];
            acc +=
                A[(i + rr) * lda + k] * (F == HalfFormat::Fp16 ? fp16ToFloat(h) : bf16ToFloat(h));
          }
          C[(i + rr) * ldc + col + c] = applyEpilogue(acc, ep, i + rr, col + c);
        }
#endif
    }
    p += panels;
  }
}

/// Rows per bf16-dot tile, and the depth whose bf16 input pairs one tile
/// converts at a time (on the stack).
constexpr int64_t kBf16DotRows = 8, kBf16DotDepth = 512;

#if defined(KILN_AVX512) && defined(__AVX512BF16__)
/// floatToBf16 of 16 floats: the same bits, NaN included (the scalar
/// conversion of a tile's inputs took a third of a 256 x 256 x 256 layer).
inline __m256i floatsToBf16(__m512 x) {
  const __m512i u = _mm512_castps_si512(x), high = _mm512_srli_epi32(u, 16);
  const __m512i rounded =
      _mm512_srli_epi32(_mm512_add_epi32(_mm512_add_epi32(u, _mm512_set1_epi32(0x7fff)),
                                         _mm512_and_si512(high, _mm512_set1_epi32(1))),
                        16);
  const __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff)),
                                                _mm512_set1_epi32(0x7f800000));
  return _mm512_cvtepi32_epi16(
      _mm512_mask_blend_epi32(nan, rounded, _mm512_or_si512(high, _mm512_set1_epi32(0x40))));
}

/// C[R rows, P panels] (+)= A W over the t.depth (even) k of `pairs`: row
/// r's inputs as bf16 pairs (k, k+1) in one 32-bit word each. Rows k and
/// k+1 of a panel are one 64-byte line of the f32 panel layout; one vpermw
/// interleaves them into the 16 column pairs vdpbf16ps multiplies.
template <int R, int P>
inline void bf16DotTile(const uint32_t (*pairs)[kBf16DotDepth / 2], const uint16_t *W,
                        int64_t panelStride, const Tile &t) {
  alignas(64) static constexpr uint16_t kInterleave[32] = {
      0, 16, 1, 17, 2,  18, 3,  19, 4,  20, 5,  21, 6,  22, 7,  23,
      8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31};
  const __m512i interleave = _mm512_load_si512(kInterleave);
  __m512 acc[R][P];
  for (int r = 0; r < R; ++r)
    for (int p = 0; p < P; ++p)
      acc[r][p] = _mm512_setzero_ps();
  for (int64_t k2 = 0; k2 < t.depth / 2; ++k2) {
    __m512bh b[P];
    for (int p = 0; p < P; ++p)
      b[p] = (__m512bh)_mm512_permutexvar_epi16(
          interleave, _mm512_loadu_si512(W + p * panelStride + k2 * 2 * kPanelWidth));
    for (int r = 0; r < R; ++r) {
      const __m512bh a = (__m512bh)_mm512_set1_epi32(int32_t(pairs[r][k2]));
      for (int p = 0; p < P; ++p)
        acc[r][p] = _mm512_dpbf16_ps(acc[r][p], a, b[p]);
    }
  }
  alignas(64) float out[R][2 * P][8];
  for (int r = 0; r < R; ++r)
    for (int p = 0; p < P; ++p)
      _mm512_store_ps(out[r][2 * p], acc[r][p]);
  storeTile<R, P>(out, t);
}

#endif

/// Rows [m0, m1) and panels [p0, p1) of the Bf16Dot dense layer: tiles of
/// kBf16DotRows rows, their inputs converted to bf16 pairs kBf16DotDepth at
/// a time (an odd K pads the last pair with a zero input), then every panel
/// pair of that depth block.
inline void denseBf16DotBlock(const float *A, int64_t lda, const uint16_t *W, int64_t K, int64_t N,
                              float *C, int64_t ldc, int64_t m0, int64_t m1, int64_t p0, int64_t p1,
                              const Epilogue &ep) {
  const int64_t panelStride = K * kPanelWidth;
  alignas(64) uint32_t pairs[kBf16DotRows][kBf16DotDepth / 2];
  for (int64_t i = m0; i < m1; i += kBf16DotRows) {
    const int64_t rows = std::min(kBf16DotRows, m1 - i);
    for (int64_t k0 = 0; k0 < K || k0 == 0; k0 += kBf16DotDepth) {
      const int64_t kc = std::min(kBf16DotDepth, K - k0), even = kc / 2 * 2;
      for (int64_t r = 0; r < rows; ++r) {
        const float *a = A + (i + r) * lda + k0;
        int64_t k = 0;
#if defined(KILN_AVX512) && defined(__AVX512BF16__)
        for (; k + 16 <= kc; k += 16) // 16 inputs, 8 pairs, at a time
          _mm256_store_si256(reinterpret_cast<__m256i *>(&pairs[r][k / 2]),
                             floatsToBf16(_mm512_loadu_ps(a + k)));
#endif
        for (; k < kc; k += 2)
          pairs[r][k / 2] =
              uint32_t(floatToBf16(a[k])) | uint32_t(k + 1 < kc ? floatToBf16(a[k + 1]) : 0) << 16;
      }
      for (int64_t p = p0; p < p1;) {
        const int64_t panels = p + 2 <= p1 ? 2 : 1, col = p * kPanelWidth;
        const int64_t cols = std::min(N - col, panels * kPanelWidth);
        const uint16_t *w = W + p * panelStride + k0 * kPanelWidth;
        const bool last = k0 + kc >= K;
#if defined(KILN_AVX512) && defined(__AVX512BF16__)
        // The even part of the block with vdpbf16ps; an odd last k (its pair
        // has no k + 1 row in the panel) is added by the scalar loop below.
        const Tile t{nullptr,
                     0,
                     0,
                     nullptr,
                     0,
                     even,
                     C + i * ldc + col,
                     ldc,
                     cols,
                     k0 > 0,
                     0,
                     last && even == kc ? &ep : nullptr,
                     i,
                     col};
        withRows<kBf16DotRows>(rows, [&](auto r) {
          if (panels == 2)
            bf16DotTile<decltype(r)::value, 2>(pairs, w, panelStride, t);
          else
            bf16DotTile<decltype(r)::value, 1>(pairs, w, panelStride, t);
        });
        const int64_t from = even;
        const bool fresh = false;
#else
        const int64_t from = 0;
        const bool fresh = k0 == 0;
#endif
        for (int64_t r = 0; r < rows && from < kc; ++r)
          for (int64_t c = 0; c < cols; ++c) {
            const uint16_t *wc = w + (c / kPanelWidth) * panelStride + c % kPanelWidth;
            float *y = C + (i + r) * ldc + col + c;
            float acc = fresh ? 0.0f : *y;
            for (int64_t k = from; k < kc; ++k) {
              const uint32_t pair = pairs[r][k / 2];
              acc += bf16ToFloat(uint16_t(k % 2 ? pair >> 16 : pair)) *
                     bf16ToFloat(wc[k * kPanelWidth]);
            }
            *y = last ? applyEpilogue(acc, ep, i + r, col + c) : acc;
          }
        p += panels;
      }
    }
  }
}

} // namespace detail

/// C[M, N] = epilogue(A[M, K] * W) for 16-bit weights in the f32 panel
/// layout, accumulated in f32.
template <HalfFormat F>
void denseHalf(const float *A, int64_t lda, const uint16_t *W, int64_t K, int64_t N, float *C,
               int64_t ldc, int64_t M, const Epilogue &ep, const kiln_abi_exec *exec) {
  splitDense(exec, M, N, K, F == HalfFormat::Bf16Dot ? detail::kBf16DotRows : 4,
             [&](int64_t m0, int64_t m1, int64_t p0, int64_t p1) {
               if constexpr (F == HalfFormat::Bf16Dot)
                 detail::denseBf16DotBlock(A, lda, W, K, N, C, ldc, m0, m1, p0, p1, ep);
               else
                 detail::denseHalfBlock<F>(A, lda, W, K, N, C, ldc, m0, m1, p0, p1, ep);
             });
}

/// C[M, N] = epilogue(A[M, K] * W) as the CUDA target computes a layer of
/// --precision fp8 (kernels.cuh's denseFp8): W is E4M3, transposed ([N, K]),
/// with the one scale wScale[0]; each input value is quantised to E4M3 with
/// `inputScale` (saturating); the exact products are summed in f32 and
/// scaled by both scales. An emulation for checking an fp8 model's accuracy
/// on a machine without a GPU, not a fast kernel.
inline void denseFp8(const float *A, int64_t lda, const uint8_t *W, const float *wScale, int64_t K,
                     int64_t N, float *C, int64_t ldc, int64_t M, float inputScale,
                     const Epilogue &ep, const kiln_abi_exec *exec) {
  float decode[256];
  for (int q = 0; q < 256; ++q)
    decode[q] = e4m3ToFloat(uint8_t(q));
  const float inverse = 1.0f / inputScale, scale = wScale[0] * inputScale;
  constexpr int64_t kChunk = 256;
  parallelRange(exec, M, 1, 1, [&](int64_t m0, int64_t m1) {
    float x[kChunk];
    for (int64_t m = m0; m < m1; ++m) {
      float *y = C + m * ldc;
      std::fill(y, y + N, 0.0f);
      for (int64_t k0 = 0; k0 < K; k0 += kChunk) { // C's row holds the sums meanwhile
        const int64_t k1 = std::min(K, k0 + kChunk);
        for (int64_t k = k0; k < k1; ++k)
          x[k - k0] = decode[floatToE4m3(A[m * lda + k] * inverse)];
        for (int64_t n = 0; n < N; ++n) {
          const uint8_t *w = W + n * K;
          float sum = 0;
          for (int64_t k = k0; k < k1; ++k)
            sum += x[k - k0] * decode[w[k]];
          y[n] += sum;
        }
      }
      for (int64_t n = 0; n < N; ++n)
        y[n] = applyEpilogue(y[n] * scale, ep, m, n);
    }
  });
}

} // namespace kiln::cpu

#endif
