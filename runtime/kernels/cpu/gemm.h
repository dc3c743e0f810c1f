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
// Large M runs in blocks of kRowBlock rows and kDepthBlock k (A packed into
// 6-row slivers stays in L2, the panel block in L1); small M (1-16 rows)
// streams the weights once, panel by panel in kStreamDepth blocks, the next
// block prefetched while the current one is used when the weights are
// larger than L2. The epilogue (bias,
// activation, multiplier, residual) is applied before the one store of C.
#ifndef KILN_KERNELS_CPU_GEMM_H
#define KILN_KERNELS_CPU_GEMM_H

#include "parallel.h"
#include "vmath.h"

#include <algorithm>
#include <cstdint>

namespace kiln::cpu {

constexpr int64_t kPanelWidth = 16;
constexpr int64_t kRowBlock = 48;   // rows of A per cache block (multiple of 6)
constexpr int64_t kDepthBlock = 512; // depth per cache block
constexpr int64_t kStreamDepth = 256; // depth per block when few rows stream the weights
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
/// `prefetch`, each k also prefetches the panels' rows `depth` further on,
/// the next depth block, so that weights streamed from memory arrive while
/// this block computes.
struct Tile {
  const float *A;
  int64_t rowStride, depthStride;
  const float *W;
  int64_t panelStride, depth;
  float *C;
  int64_t ldc, cols;
  bool accumulate, prefetch;
  const Epilogue *ep;
  int64_t row, col;
};

/// Adds the epilogue to a finished tile (in `out`, as the FMAs left it) and
/// stores it to C.
template <int R, int P> inline void storeTile(const float (&out)[R][2 * P][8], const Tile &t) {
  const Epilogue *ep = t.ep;
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < 2 * P && v * 8 < t.cols; ++v) {
      int64_t n = std::min<int64_t>(8, t.cols - v * 8), c = t.col + v * 8, m = t.row + r;
      float *dst = t.C + r * t.ldc + v * 8;
      __m256i mask = laneMask(n);
      __m256 x = _mm256_load_ps(out[r][v]);
      if (t.accumulate)
        x = _mm256_add_ps(x, _mm256_maskload_ps(dst, mask));
      if (ep) {
        if (ep->bias)
          x = _mm256_add_ps(x, _mm256_maskload_ps(ep->bias + c, mask));
        x = avx2::activate(x, ep->activation);
        if (ep->multiplier)
          x = _mm256_mul_ps(x, _mm256_maskload_ps(ep->multiplier + m * ep->stride + c, mask));
        if (ep->residual)
          x = _mm256_add_ps(x, _mm256_maskload_ps(ep->residual + m * ep->stride + c, mask));
      }
      if (n == 8)
        _mm256_storeu_ps(dst, x);
      else
        _mm256_maskstore_ps(dst, mask, x);
    }
}

template <int R, int P> inline void tile(const Tile &t) {
  __m256 acc[R][2 * P];
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < 2 * P; ++v)
      acc[r][v] = _mm256_setzero_ps();
  const float *A = t.A, *W = t.W;
  for (int64_t k = 0; k < t.depth; ++k) {
    __m256 b[2 * P];
    for (int p = 0; p < P; ++p) {
      const float *w = W + p * t.panelStride + k * kPanelWidth;
      if (t.prefetch)
        _mm_prefetch(reinterpret_cast<const char *>(w + t.depth * kPanelWidth), _MM_HINT_T0);
      b[2 * p] = _mm256_loadu_ps(w);
      b[2 * p + 1] = _mm256_loadu_ps(w + 8);
    }
    for (int r = 0; r < R; ++r) {
      __m256 a = _mm256_broadcast_ss(A + r * t.rowStride + k * t.depthStride);
      for (int v = 0; v < 2 * P; ++v)
        acc[r][v] = _mm256_fmadd_ps(a, b[v], acc[r][v]);
    }
  }
  // The epilogue reads the tile back from the stack, so that acc is never
  // indexed dynamically and stays in registers during the loop above.
  alignas(32) float out[R][2 * P][8];
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < 2 * P; ++v)
      _mm256_store_ps(out[r][v], acc[r][v]);
  storeTile<R, P>(out, t);
}

/// tile<R, 1> on a packed 6-row sliver of A (A[r, k] at A[k * 6 + r]): every
/// broadcast is at a constant offset from one pointer, which is what lets
/// the many-rows path reach ~0.9 of the FMA peak.
template <int R> inline void packedTile(const Tile &t) {
  __m256 acc[R][2];
  for (int r = 0; r < R; ++r)
    acc[r][0] = acc[r][1] = _mm256_setzero_ps();
  const float *a = t.A, *w = t.W;
  for (int64_t k = 0; k < t.depth; ++k, a += 6, w += kPanelWidth) {
    const __m256 b0 = _mm256_loadu_ps(w), b1 = _mm256_loadu_ps(w + 8);
    for (int r = 0; r < R; ++r) {
      const __m256 x = _mm256_broadcast_ss(a + r);
      acc[r][0] = _mm256_fmadd_ps(x, b0, acc[r][0]);
      acc[r][1] = _mm256_fmadd_ps(x, b1, acc[r][1]);
    }
  }
  alignas(32) float out[R][2][8];
  for (int r = 0; r < R; ++r) {
    _mm256_store_ps(out[r][0], acc[r][0]);
    _mm256_store_ps(out[r][1], acc[r][1]);
  }
  storeTile<R, 1>(out, t);
}

/// tile<rows, P> for rows in [1, 6].
template <int P> inline void tileRows(int64_t rows, const Tile &t) {
  switch (rows) {
  case 1:
    return tile<1, P>(t);
  case 2:
    return tile<2, P>(t);
  case 3:
    return tile<3, P>(t);
  case 4:
    return tile<4, P>(t);
  case 5:
    return tile<5, P>(t);
  case 6:
    return tile<6, P>(t);
  }
}

/// packedTile<rows> for rows in [1, 6].
inline void packedTileRows(int64_t rows, const Tile &t) {
  switch (rows) {
  case 1:
    return packedTile<1>(t);
  case 2:
    return packedTile<2>(t);
  case 3:
    return packedTile<3>(t);
  case 4:
    return packedTile<4>(t);
  case 5:
    return packedTile<5>(t);
  case 6:
    return packedTile<6>(t);
  }
}

/// Few rows (the small-batch path): the weights are streamed once, panel
/// after panel in depth blocks that stay in L1 while every 6-row tile uses
/// them, the next block prefetched meanwhile. One or two rows read 4 or 2
/// panels at once so that enough FMAs are in flight.
inline void denseFewRows(const float *A, int64_t lda, const float *W, int64_t K, int64_t N,
                         float *C, int64_t ldc, int64_t m0, int64_t m1, int64_t p0, int64_t p1,
                         const Epilogue &ep) {
  const int64_t panelStride = K * kPanelWidth, rows = m1 - m0;
  const int64_t group = rows == 1 ? 4 : rows == 2 ? 2 : 1;
  // Weights that fit in L2 are read from cache after the first request;
  // there the prefetches only compete with the loads.
  const bool prefetch = K * N * int64_t(sizeof(float)) > kPrefetchAbove;
  for (int64_t p = p0; p < p1;) {
    const int64_t panels = p + group <= p1 ? group : 1, col = p * kPanelWidth;
    for (int64_t k0 = 0; k0 < K || k0 == 0; k0 += kStreamDepth) {
      const int64_t kc = std::min(kStreamDepth, K - k0);
      for (int64_t i = m0; i < m1; i += 6) {
        Tile t{A + i * lda + k0, lda, 1, W + p * panelStride + k0 * kPanelWidth, panelStride, kc,
               C + i * ldc + col, ldc, std::min(N - col, panels * kPanelWidth), k0 > 0, prefetch,
               k0 + kc >= K ? &ep : nullptr, i, col};
        int64_t r = std::min<int64_t>(6, m1 - i);
        if (panels == 4)
          tileRows<4>(r, t);
        else if (panels == 2)
          tileRows<2>(r, t);
        else
          tileRows<1>(r, t);
      }
    }
    p += panels;
  }
}

/// Many rows: blocks of kRowBlock rows x kDepthBlock depth, A packed as
/// 6-row slivers [k][6] (so the broadcasts read one contiguous stream
/// whatever lda is) and reused from L2 by every panel, each panel block
/// reused from L1 by every row tile.
inline void denseManyRows(const float *A, int64_t lda, const float *W, int64_t K, int64_t N,
                          float *C, int64_t ldc, int64_t m0, int64_t m1, int64_t p0, int64_t p1,
                          const Epilogue &ep) {
  const int64_t panelStride = K * kPanelWidth;
  alignas(32) float packedA[kRowBlock * kDepthBlock];
  for (int64_t mb = m0; mb < m1; mb += kRowBlock) {
    const int64_t me = std::min(mb + kRowBlock, m1);
    for (int64_t k0 = 0; k0 < K || k0 == 0; k0 += kDepthBlock) {
      const int64_t kc = std::min(kDepthBlock, K - k0);
      for (int64_t i = mb; i < me; i += 6)
        for (int64_t k = 0; k < kc; ++k)
          for (int64_t r = 0; r < 6; ++r)
            packedA[(i - mb) * kc + k * 6 + r] = i + r < me ? A[(i + r) * lda + k0 + k] : 0.0f;
      for (int64_t p = p0; p < p1; ++p) {
        const int64_t col = p * kPanelWidth;
        for (int64_t i = mb; i < me; i += 6)
          packedTileRows(std::min<int64_t>(6, me - i),
                         Tile{packedA + (i - mb) * kc, 1, 6, W + p * panelStride + k0 * kPanelWidth,
                              panelStride, kc, C + i * ldc + col, ldc,
                              std::min(N - col, kPanelWidth), k0 > 0, false,
                              k0 + kc >= K ? &ep : nullptr, i, col});
      }
    }
  }
}
#endif

/// Rows [m0, m1) and panels [p0, p1) of C = epilogue(A W).
inline void denseBlock(const float *A, int64_t lda, const float *W, int64_t K, int64_t N,
                       float *C, int64_t ldc, int64_t m0, int64_t m1, int64_t p0, int64_t p1,
                       const Epilogue &ep) {
#ifdef KILN_AVX2
  if (m1 - m0 <= 16)
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
