// gemm.h - dense layers: f32 GEMM on weights packed at compile time, with
// fused epilogues.
//
// Packed layout (kiln.dense's weight operand, tensor<P x K x 16>): op(B), a
// K x N matrix, cut into P = ceil(N / 16) panels of 16 columns; a panel is
// [K][16] row-major and the columns past N are zero. A micro-kernel reads a
// block of k rows of one panel as one contiguous stream, so weights come in
// at full memory bandwidth whatever N is. The compiler packs with
// packWeights below; int8 or CUDA kernels get their own layouts the same way.
//
// Micro-kernels keep an R x 16 (or, for 1-2 rows, R x 32/64) tile of C in
// registers: each k broadcasts R values of A and issues R x 2 FMAs per panel.
// Large M runs in cache blocks of up to kRowBlock rows and kDepthBlock k (A
// packed into slivers stays in L2, the panel block in L1; with AVX-512 a
// batch of 256 is one or two blocks, so weights larger than L2 come from
// memory at most twice, the next panels prefetched meanwhile); small M (1-16
// rows) streams the weights once, panel by panel in kStreamDepth blocks, the
// next block prefetched while the current one is used when the weights are
// larger than L2. A one-column layer (a logit) is a dot product per row.
// The epilogue (bias, activation, multiplier, residual) is applied before
// the one store of C.
#ifndef KILN_KERNELS_CPU_GEMM_H
#define KILN_KERNELS_CPU_GEMM_H

#include "parallel.h"
#include "vmath.h"

#include <algorithm>
#include <cstdint>
#include <type_traits>

namespace kiln::cpu {

constexpr int64_t kPanelWidth = 16;
constexpr int64_t kStreamDepth = 256;       // depth per block when few rows stream the weights
constexpr int64_t kPrefetchAbove = 1 << 20; // weight bytes above which streaming prefetches

inline int64_t panelCount(int64_t n) { return (n + kPanelWidth - 1) / kPanelWidth; }

/// out[P][K][16] = alpha * op(B), B being [K, N] or, with transB, [N, K].
template <typename T>
void packWeights(const T *B, bool transB, int64_t K, int64_t N, T alpha, T *out) {
  for (int64_t p = 0, P = panelCount(N); p < P; ++p)
    for (int64_t k = 0; k < K; ++k)
      for (int64_t c = 0; c < kPanelWidth; ++c) {
        int64_t n = p * kPanelWidth + c;
        out[(p * K + k) * kPanelWidth + c] =
            n < N ? alpha * (transB ? B[n * K + k] : B[k * N + n]) : T(0);
      }
}

using scalar::Epilogue;

namespace detail {

using scalar::applyEpilogue;

#ifdef KILN_AVX2
/// Lanes [0, n) set.
inline __m256i laneMask(int64_t n) {
  alignas(32) static const int32_t table[16] = {-1, -1, -1, -1, -1, -1, -1, -1,
                                                0,  0,  0,  0,  0,  0,  0,  0};
  return _mm256_loadu_si256(reinterpret_cast<const __m256i *>(table + 8 - n));
}

/// One register tile: C[R rows, up to 16 P columns] (+)= A[R, depth] W,
/// A[r, k] being at A[r * rowStride + k * depthStride] and W P panels
/// `panelStride` floats apart. `cols` is how many columns are real; `ep`
/// (set on the last depth block) is applied before the store. With
/// `ahead` > 0, each k also prefetches the panels' rows that many floats
/// further on (the next depth block, or the next panels), so that weights
/// streamed from memory arrive while this block computes.
struct Tile {
  const float *A;
  int64_t rowStride, depthStride;
  const float *W;
  int64_t panelStride, depth;
  float *C;
  int64_t ldc, cols;
  bool accumulate;
  int64_t ahead;
  const Epilogue *ep;
  int64_t row, col;
};

/// The vector the f32 micro-kernels are written in: eight lanes (AVX2), or
/// sixteen (kiln compile --cpu avx512), one panel per zmm. Both compute each
/// output as the same chain of FMAs over k, so both builds give the same
/// floats.
struct Avx2Lanes {
  using V = __m256;
  static constexpr int kLanes = 8;
  static V zero() { return _mm256_setzero_ps(); }
  static V load(const float *p) { return _mm256_loadu_ps(p); }
  static V broadcast(const float *p) { return _mm256_broadcast_ss(p); }
  static V fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  static void store(float *p, V v) { _mm256_store_ps(p, v); }
  // The epilogue's operations on the first n <= kLanes lanes.
  using Mask = __m256i;
  static Mask mask(int64_t n) { return laneMask(n); }
  static V load(const float *p, Mask m) { return _mm256_maskload_ps(p, m); }
  static void store(float *p, Mask m, int64_t n, V v) {
    if (n == kLanes)
      _mm256_storeu_ps(p, v);
    else
      _mm256_maskstore_ps(p, m, v);
  }
  static V add(V a, V b) { return _mm256_add_ps(a, b); }
  static V mul(V a, V b) { return _mm256_mul_ps(a, b); }
  static V activate(V x, Activation act) { return avx2::activate(x, act); }
};

#ifdef KILN_AVX512
struct Avx512Lanes {
  using V = __m512;
  static constexpr int kLanes = 16;
  static V zero() { return _mm512_setzero_ps(); }
  static V load(const float *p) { return _mm512_loadu_ps(p); }
  static V broadcast(const float *p) { return _mm512_set1_ps(*p); }
  static V fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  static void store(float *p, V v) { _mm512_store_ps(p, v); }
  using Mask = __mmask16;
  static Mask mask(int64_t n) { return n >= kLanes ? Mask(0xffff) : Mask((1u << n) - 1); }
  static V load(const float *p, Mask m) { return _mm512_maskz_loadu_ps(m, p); }
  static void store(float *p, Mask m, int64_t, V v) { _mm512_mask_storeu_ps(p, m, v); }
  static V add(V a, V b) { return _mm512_add_ps(a, b); }
  static V mul(V a, V b) { return _mm512_mul_ps(a, b); }
  // ReLU in zmm; the other activations as two AVX2 halves, the same floats.
  static V activate(V x, Activation act) {
    if (act == Activation::None)
      return x;
    if (act == Activation::Relu)
      return _mm512_max_ps(x, _mm512_setzero_ps());
    const __m256 lo = avx2::activate(_mm512_castps512_ps256(x), act),
                 hi = avx2::activate(
                     _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(x), 1)), act);
    return _mm512_castpd_ps(
        _mm512_insertf64x4(_mm512_castps_pd(_mm512_castps256_ps512(lo)), _mm256_castps_pd(hi), 1));
  }
};
using Lanes = Avx512Lanes;
// Many rows: 12-row slivers of A against two panels, 24 zmm accumulators
// (of 32), two weight loads and twelve broadcasts per 24 FMAs.
constexpr int kSliver = 12, kManyPanels = 2;
// A cache block of at most kRowBlock rows x kDepthBlock depth and
// kPackedFloats in all (264 KiB of stack): a batch of 256 at depth 256 in one
// block, fewer rows where the layer is deeper (one pass over C up to 512).
constexpr int64_t kRowBlock = 264, kDepthBlock = 512, kPackedFloats = kRowBlock * 256;
#else
using Lanes = Avx2Lanes;
// Many rows: 6-row slivers against one panel, 12 ymm accumulators (of 16).
constexpr int kSliver = 6, kManyPanels = 1;
// Larger blocks measured slower with AVX2 (96 KiB of stack).
constexpr int64_t kRowBlock = 48, kDepthBlock = 512, kPackedFloats = kRowBlock * kDepthBlock;
#endif
static_assert(kRowBlock % kSliver == 0 && kPackedFloats / kDepthBlock >= kSliver,
              "row blocks hold whole slivers, at least one at the deepest block");
constexpr int kVectorsPerPanel = int(kPanelWidth) / Lanes::kLanes;
constexpr int kFewRows = 6; // rows per tile when few rows stream the weights

/// Adds the epilogue to a finished tile (in `out`, as the FMAs left it) and
/// stores it to C, a vector of Lanes at a time (with AVX-512 the tile never
/// goes through 8-lane registers: that cost 8-16% of 16-256 rows of 256x256).
template <int R, int P> inline void storeTile(const float (&out)[R][2 * P][8], const Tile &t) {
  constexpr int L = Lanes::kLanes;
  const Epilogue *ep = t.ep;
  for (int r = 0; r < R; ++r)
    for (int v = 0; v * L < int(kPanelWidth) * P && v * L < t.cols; ++v) {
      const int64_t n = std::min<int64_t>(L, t.cols - v * L), c = t.col + v * L, m = t.row + r;
      float *dst = t.C + r * t.ldc + v * L;
      const Lanes::Mask mask = Lanes::mask(n);
      Lanes::V x = Lanes::load(&out[r][0][0] + v * L);
      if (t.accumulate)
        x = Lanes::add(x, Lanes::load(dst, mask));
      if (ep) {
        if (ep->bias)
          x = Lanes::add(x, Lanes::load(ep->bias + c, mask));
        x = Lanes::activate(x, ep->activation);
        if (ep->multiplier)
          x = Lanes::mul(x, Lanes::load(ep->multiplier + m * ep->stride + c, mask));
        if (ep->residual)
          x = Lanes::add(x, Lanes::load(ep->residual + m * ep->stride + c, mask));
      }
      Lanes::store(dst, mask, n, x);
    }
}

/// C[R rows, P panels] (+)= A W over t.depth. A[r, k] is at A[k * Sliver + r]
/// when Sliver > 0 (a packed sliver: every broadcast at a constant offset
/// from one pointer, which is what lets the many-rows path reach ~0.9 of the
/// FMA peak), else at A[r * rowStride + k * depthStride].
template <int R, int P, int Sliver = 0> inline void tile(const Tile &t) {
  using V = Lanes::V;
  constexpr int kV = P * kVectorsPerPanel;
  V acc[R][kV];
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < kV; ++v)
      acc[r][v] = Lanes::zero();
  const float *A = t.A, *W = t.W;
  for (int64_t k = 0; k < t.depth; ++k) {
    V b[kV];
    for (int p = 0; p < P; ++p) {
      const float *w = W + p * t.panelStride + k * kPanelWidth;
      if (t.ahead)
        _mm_prefetch(reinterpret_cast<const char *>(w + t.ahead), _MM_HINT_T0);
      for (int v = 0; v < kVectorsPerPanel; ++v)
        b[p * kVectorsPerPanel + v] = Lanes::load(w + v * Lanes::kLanes);
    }
    for (int r = 0; r < R; ++r) {
      const V a =
          Lanes::broadcast(Sliver ? A + k * Sliver + r : A + r * t.rowStride + k * t.depthStride);
      for (int v = 0; v < kV; ++v)
        acc[r][v] = Lanes::fma(a, b[v], acc[r][v]);
    }
  }
  // The epilogue reads the tile back from the stack, so that acc is never
  // indexed dynamically and stays in registers during the loop above.
  alignas(64) float out[R][2 * P][8];
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < kV; ++v)
      Lanes::store(&out[r][0][0] + v * Lanes::kLanes, acc[r][v]);
  storeTile<R, P>(out, t);
}

/// fn(std::integral_constant<int, rows>) for rows in [R, MaxRows]: a row
/// count known only at run time picks its compile-time tile.
template <int MaxRows, int R = 1, typename Fn> inline void withRows(int64_t rows, Fn &&fn) {
  if constexpr (R < MaxRows)
    if (rows > R)
      return withRows<MaxRows, R + 1>(rows, fn);
  fn(std::integral_constant<int, R>());
}

/// tile<rows, P, Sliver> for rows in [1, MaxRows].
template <int P, int Sliver, int MaxRows> inline void tileRows(int64_t rows, const Tile &t) {
  withRows<MaxRows>(rows, [&](auto r) { tile<decltype(r)::value, P, Sliver>(t); });
}

/// Whether a K x N layer's weights are large enough to be prefetched.
inline bool weightsPastL2(int64_t K, int64_t N) {
  return K * N * int64_t(sizeof(float)) > kPrefetchAbove;
}

/// Few rows (the small-batch path): the weights are streamed once, panel
/// after panel in depth blocks that stay in L1 while every kFewRows-row tile
/// uses them, the next block prefetched meanwhile. One or two rows read
/// several panels at once so that enough FMAs are in flight (8 vectors).
inline void denseFewRows(const float *A, int64_t lda, const float *W, int64_t K, int64_t N,
                         float *C, int64_t ldc, int64_t m0, int64_t m1, int64_t p0, int64_t p1,
                         const Epilogue &ep) {
  const int64_t panelStride = K * kPanelWidth, rows = m1 - m0;
  constexpr int kWide = 8 / kVectorsPerPanel; // panels one row reads at once
  const int64_t group = rows == 1 ? kWide : rows == 2 ? kWide / 2 : kWide / 4;
  // Weights that fit in L2 are read from cache after the first request;
  // there the prefetches only compete with the loads.
  const bool prefetch = weightsPastL2(K, N);
  for (int64_t p = p0; p < p1;) {
    const int64_t panels = p + group <= p1 ? group : 1, col = p * kPanelWidth;
    for (int64_t k0 = 0; k0 < K || k0 == 0; k0 += kStreamDepth) {
      const int64_t kc = std::min(kStreamDepth, K - k0);
      for (int64_t i = m0; i < m1; i += kFewRows) {
        Tile t{A + i * lda + k0,
               lda,
               1,
               W + p * panelStride + k0 * kPanelWidth,
               panelStride,
               kc,
               C + i * ldc + col,
               ldc,
               std::min(N - col, panels * kPanelWidth),
               k0 > 0,
               prefetch ? kc * kPanelWidth : 0,
               k0 + kc >= K ? &ep : nullptr,
               i,
               col};
        const int64_t r = std::min<int64_t>(kFewRows, m1 - i);
        if (panels == kWide)
          tileRows<kWide, 0, kFewRows>(r, t);
        else if (panels == kWide / 2)
          tileRows<kWide / 2, 0, kFewRows>(r, t);
        else if (panels == kWide / 4)
          tileRows<kWide / 4, 0, kFewRows>(r, t);
        else
          tileRows<1, 0, kFewRows>(r, t);
      }
    }
    p += panels;
  }
}

/// Many rows: blocks of up to kRowBlock rows x kDepthBlock depth, A packed as
/// kSliver-row slivers [k][kSliver] (so the broadcasts read one contiguous
/// stream whatever lda is) and reused from L2 by every panel, each block of
/// kManyPanels panels reused from L1 by every row tile.
inline void denseManyRows(const float *A, int64_t lda, const float *W, int64_t K, int64_t N,
                          float *C, int64_t ldc, int64_t m0, int64_t m1, int64_t p0, int64_t p1,
                          const Epilogue &ep) {
  const int64_t panelStride = K * kPanelWidth;
  // Weights beyond L2 come from memory: the first row tile of each panel
  // pair prefetches the next pair, which the hardware prefetchers, stopping at
  // every page, do not fetch in time.
  const bool prefetch = weightsPastL2(K, N);
  // Depth blocks of equal size (a short last block would cost a pass over
  // C), and as many rows as the packed buffer then holds.
  const int64_t depthBlocks = std::max<int64_t>(1, (K + kDepthBlock - 1) / kDepthBlock),
                depthBlock = std::max<int64_t>(1, (K + depthBlocks - 1) / depthBlocks),
                rowBlock = std::min(kRowBlock, kPackedFloats / depthBlock / kSliver * kSliver);
  alignas(64) float packedA[kPackedFloats];
  for (int64_t mb = m0; mb < m1; mb += rowBlock) {
    const int64_t me = std::min(mb + rowBlock, m1);
    for (int64_t k0 = 0; k0 < K || k0 == 0; k0 += depthBlock) {
      const int64_t kc = std::min(depthBlock, K - k0);
      for (int64_t i = mb; i < me; i += kSliver)
        for (int64_t k = 0; k < kc; ++k)
          for (int64_t r = 0; r < kSliver; ++r)
            packedA[(i - mb) * kc + k * kSliver + r] =
                i + r < me ? A[(i + r) * lda + k0 + k] : 0.0f;
      for (int64_t p = p0; p < p1;) {
        const int64_t panels = p + kManyPanels <= p1 ? kManyPanels : 1, col = p * kPanelWidth;
        for (int64_t i = mb; i < me; i += kSliver) {
          const Tile t{packedA + (i - mb) * kc,
                       0,
                       0,
                       W + p * panelStride + k0 * kPanelWidth,
                       panelStride,
                       kc,
                       C + i * ldc + col,
                       ldc,
                       std::min(N - col, panels * kPanelWidth),
                       k0 > 0,
                       prefetch && i == mb && p + 2 * kManyPanels <= p1 ? kManyPanels * panelStride
                                                                        : 0,
                       k0 + kc >= K ? &ep : nullptr,
                       i,
                       col};
          const int64_t rows = std::min<int64_t>(kSliver, me - i);
          if (panels == kManyPanels)
            tileRows<kManyPanels, kSliver, kSliver>(rows, t);
          else
            tileRows<1, kSliver, kSliver>(rows, t);
        }
        p += panels;
      }
    }
  }
}

/// Deepest one-column layer taken as dot products (its column is copied to
/// 16 KiB of stack); deeper ones go through the panel paths.
constexpr int64_t kColumnDepth = 4096;
constexpr int kColumnRows = 8 / kVectorsPerPanel; // rows at once: 8 FMA chains

/// sums[r] = A[r, 0:K] . w for R rows lda floats apart, w zero-padded to a
/// multiple of 16. Lane j of the 16 sums k = j mod 16 as one FMA chain and
/// the 16 partial sums are then added pairwise in a fixed order, so both
/// widths give the same floats.
template <int R>
inline void dotRows(const float *A, int64_t lda, const float *w, int64_t K, float *sums) {
  using V = Lanes::V;
  constexpr int L = Lanes::kLanes, kV = kVectorsPerPanel;
  V acc[R][kV];
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < kV; ++v)
      acc[r][v] = Lanes::zero();
  int64_t k = 0;
  for (; k + kPanelWidth <= K; k += kPanelWidth)
    for (int v = 0; v < kV; ++v) {
      const V b = Lanes::load(w + k + v * L);
      for (int r = 0; r < R; ++r)
        acc[r][v] = Lanes::fma(Lanes::load(A + r * lda + k + v * L), b, acc[r][v]);
    }
  if (k < K) // the tail, A's lanes past K masked to zero
    for (int v = 0; v < kV; ++v) {
      const V b = Lanes::load(w + k + v * L);
      const Lanes::Mask m = Lanes::mask(std::clamp<int64_t>(K - k - v * L, 0, L));
      for (int r = 0; r < R; ++r)
        acc[r][v] = Lanes::fma(Lanes::load(A + r * lda + k + v * L, m), b, acc[r][v]);
    }
  for (int r = 0; r < R; ++r) {
    alignas(64) float part[kPanelWidth];
    for (int v = 0; v < kV; ++v)
      Lanes::store(part + v * L, acc[r][v]);
    for (int h = int(kPanelWidth) / 2; h >= 1; h /= 2)
      for (int j = 0; j < h; ++j)
        part[j] += part[j + h];
    sums[r] = part[0];
  }
}

/// Rows [m0, m1) of a one-column layer (every ads model's logit), C[m, 0] =
/// epilogue(A[m, :] . w), w being the first column of the one panel: as a
/// 16-wide panel it would leave 15 of 16 lanes idle. The epilogue's bias and
/// activation run over 16 rows at once.
inline void denseColumn(const float *A, int64_t lda, const float *W, int64_t K, float *C,
                        int64_t ldc, int64_t m0, int64_t m1, const Epilogue &ep) {
  constexpr int L = Lanes::kLanes;
  alignas(64) float w[kColumnDepth];
  const int64_t padded = (K + kPanelWidth - 1) / kPanelWidth * kPanelWidth;
  for (int64_t k = 0; k < padded; ++k)
    w[k] = k < K ? W[k * kPanelWidth] : 0.0f;
  for (int64_t i = m0; i < m1; i += kPanelWidth) {
    const int64_t rows = std::min(kPanelWidth, m1 - i);
    alignas(64) float out[kPanelWidth] = {};
    for (int64_t r = 0; r < rows; r += kColumnRows)
      withRows<kColumnRows>(std::min<int64_t>(kColumnRows, rows - r), [&](auto n) {
        dotRows<decltype(n)::value>(A + (i + r) * lda, lda, w, K, out + r);
      });
    for (int v = 0; v < kVectorsPerPanel; ++v) {
      Lanes::V x = Lanes::load(out + v * L);
      if (ep.bias)
        x = Lanes::add(x, Lanes::broadcast(ep.bias));
      Lanes::store(out + v * L, Lanes::activate(x, ep.activation));
    }
    for (int64_t r = 0; r < rows; ++r) {
      float x = out[r];
      if (ep.multiplier)
        x *= ep.multiplier[(i + r) * ep.stride];
      if (ep.residual)
        x += ep.residual[(i + r) * ep.stride];
      C[(i + r) * ldc] = x;
    }
  }
}
#endif

/// Rows [m0, m1) and panels [p0, p1) of C = epilogue(A W).
inline void denseBlock(const float *A, int64_t lda, const float *W, int64_t K, int64_t N, float *C,
                       int64_t ldc, int64_t m0, int64_t m1, int64_t p0, int64_t p1,
                       const Epilogue &ep) {
#ifdef KILN_AVX2
  if (N == 1 && K <= kColumnDepth)
    denseColumn(A, lda, W, K, C, ldc, m0, m1, ep);
  else if (m1 - m0 <= 16)
    denseFewRows(A, lda, W, K, N, C, ldc, m0, m1, p0, p1, ep);
  else
    denseManyRows(A, lda, W, K, N, C, ldc, m0, m1, p0, p1, ep);
#else
  const int64_t panelStride = K * kPanelWidth;
  for (int64_t m = m0; m < m1; ++m)
    for (int64_t n = p0 * kPanelWidth; n < std::min(p1 * kPanelWidth, N); ++n) {
      const float *w = W + (n / kPanelWidth) * panelStride + n % kPanelWidth;
      float acc = 0;
      for (int64_t k = 0; k < K; ++k)
        acc += A[m * lda + k] * w[k * kPanelWidth];
      C[m * ldc + n] = applyEpilogue(acc, ep, m, n);
    }
#endif
}

} // namespace detail

/// Splits a dense layer over the session's threads: fn(m0, m1, p0, p1) on
/// row ranges (bounds multiples of rowAlign) when M is large, on panel
/// ranges when it is small, on everything when the layer is too small to
/// split.
template <typename Fn>
void splitDense(const kiln_abi_exec *exec, int64_t M, int64_t N, int64_t K, int64_t rowAlign,
                Fn &&fn) {
  const int64_t P = panelCount(N), threads = threadCount(exec);
  // Below ~64k multiply-adds per thread a split costs more than it saves.
  if (threads > 1 && M * N * K >= threads * 65536) {
    if (M >= 16 * threads)
      return parallelRange(exec, M, 16, rowAlign,
                           [&](int64_t m0, int64_t m1) { fn(m0, m1, int64_t(0), P); });
    if (P >= 2)
      return parallelRange(exec, P, 1, 1,
                           [&](int64_t p0, int64_t p1) { fn(int64_t(0), M, p0, p1); });
  }
  fn(int64_t(0), M, int64_t(0), P);
}

/// C[M, N] = epilogue(A[M, K] * W) for W packed by packWeights. Rows of A
/// and C are lda and ldc floats apart; C may not overlap A.
inline void dense(const float *A, int64_t lda, const float *W, int64_t K, int64_t N, float *C,
                  int64_t ldc, int64_t M, const Epilogue &ep, const kiln_abi_exec *exec) {
  splitDense(exec, M, N, K, 6, [&](int64_t m0, int64_t m1, int64_t p0, int64_t p1) {
    detail::denseBlock(A, lda, W, K, N, C, ldc, m0, m1, p0, p1, ep);
  });
}

} // namespace kiln::cpu

#endif
