// kernels.h - reference CPU kernels compiled into every kiln model .so.
//
// Generated code calls these with shapes known at compile time, so each call
// site is specialised by the C++ compiler. They favour clarity and contiguous
// inner loops the compiler vectorises (AVX2/FMA); hand-tuned micro-kernels
// replace them behind the same signatures.
#ifndef KILN_KERNELS_CPU_KERNELS_H
#define KILN_KERNELS_CPU_KERNELS_H

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <type_traits>

#include "gemm.h"
#include "quantized.h"
#include "scalar.h"
#include "vmath.h"

namespace kiln::cpu {

constexpr int kMaxRank = 8;

/// Reports a failure of the model's code through the entry point's buffer.
inline int fail(char *message, size_t size, const char *what) {
  std::snprintf(message, size, "%s", what);
  return 1;
}

/// Row-major strides of `shape`, with 0 where a dim of size 1 is broadcast
/// against a larger `out` dim. `shape` is right-aligned to `rank`.
inline void broadcastStrides(const int64_t *shape, int shapeRank, const int64_t *out, int rank,
                             int64_t *strides) {
  int64_t stride = 1;
  for (int d = rank - 1; d >= 0; --d) {
    int s = d - (rank - shapeRank);
    int64_t size = s >= 0 ? shape[s] : 1;
    strides[d] = (size == 1 && out[d] != 1) ? 0 : stride;
    stride *= size;
  }
}

/// Advances a row-major multi-index over `shape` (its first `rank` dims).
inline void nextIndex(int64_t *index, const int64_t *shape, int rank) {
  for (int d = rank - 1; d >= 0; --d) {
    if (++index[d] < shape[d])
      return;
    index[d] = 0;
  }
}

/// The number of elements of a shape (its first `rank` dims).
inline int64_t elementCount(const int64_t *shape, int rank) {
  int64_t n = 1;
  for (int d = 0; d < rank; ++d)
    n *= shape[d];
  return n;
}

inline void rowMajorStrides(const int64_t *shape, int rank, int64_t *strides) {
  int64_t stride = 1;
  for (int d = rank - 1; d >= 0; --d) {
    strides[d] = stride;
    stride *= shape[d];
  }
}

/// Elementwise work splits over the threads in blocks of at least this many
/// elements: below it a thread's wake-up costs more than the loop.
constexpr int64_t kElementGrain = 16384;

/// fn(begin, end) over blocks of [0, n), on the session's threads when n is large.
template <typename Fn> void inBlocks(int64_t n, const kiln_abi_exec *exec, Fn &&fn) {
  parallelRange(exec, n, kElementGrain, 16, fn);
}

/// out = fn(a, b) with numpy broadcasting. The innermost dim runs contiguous
/// or broadcast, which covers bias rows and per-feature scales. Rows of the
/// last dim land `outStride` elements apart (0: contiguous).
template <typename T, typename R, typename Fn>
void binary(const T *a, const int64_t *aShape, int aRank, const T *b, const int64_t *bShape,
            int bRank, R *out, const int64_t *outShape, int rank, Fn fn, int64_t outStride = 0,
            const kiln_abi_exec *exec = nullptr) {
  const int64_t total = elementCount(outShape, rank);
  if (total == 0)
    return;
  if (rank == 0) {
    out[0] = fn(a[0], b[0]);
    return;
  }
  // Operands that are each the whole output or one element: one flat loop.
  const int64_t aCount = elementCount(aShape, aRank), bCount = elementCount(bShape, bRank);
  if (outStride == 0 && (aCount == total || aCount == 1) && (bCount == total || bCount == 1)) {
    const int64_t aStep = aCount == total ? 1 : 0, bStep = bCount == total ? 1 : 0;
    inBlocks(total, exec, [&](int64_t begin, int64_t end) {
      if (aStep && bStep)
        for (int64_t i = begin; i < end; ++i)
          out[i] = fn(a[i], b[i]);
      else
        for (int64_t i = begin; i < end; ++i)
          out[i] = fn(a[i * aStep], b[i * bStep]);
    });
    return;
  }
  int64_t as[kMaxRank], bs[kMaxRank];
  broadcastStrides(aShape, aRank, outShape, rank, as);
  broadcastStrides(bShape, bRank, outShape, rank, bs);
  const int64_t inner = outShape[rank - 1], ai = as[rank - 1], bi = bs[rank - 1];
  if (inner == 0)
    return;
  // Rows of the last dim, split over the threads.
  parallelRange(exec, total / inner, kElementGrain / inner + 1, 1, [&](int64_t r0, int64_t r1) {
    int64_t index[kMaxRank] = {};
    for (int64_t d = rank - 2, rest = r0; d >= 0; --d) {
      index[d] = rest % outShape[d];
      rest /= outShape[d];
    }
    for (int64_t row = r0; row < r1; ++row) {
      int64_t ao = 0, bo = 0;
      for (int d = 0; d < rank - 1; ++d) {
        ao += index[d] * as[d];
        bo += index[d] * bs[d];
      }
      R *o = out + row * (outStride ? outStride : inner);
      const T *ap = a + ao, *bp = b + bo;
      if (ai == 1 && bi == 1)
        for (int64_t i = 0; i < inner; ++i)
          o[i] = fn(ap[i], bp[i]);
      else if (ai == 1 && bi == 0) // a row and a broadcast scalar: vectorisable
        for (int64_t i = 0; i < inner; ++i)
          o[i] = fn(ap[i], bp[0]);
      else if (ai == 0 && bi == 1)
        for (int64_t i = 0; i < inner; ++i)
          o[i] = fn(ap[0], bp[i]);
      else
        for (int64_t i = 0; i < inner; ++i)
          o[i] = fn(ap[i * ai], bp[i * bi]);
      nextIndex(index, outShape, rank - 1);
    }
  });
}

template <typename T, typename R, typename Fn>
void unary(const T *in, R *out, int64_t n, Fn fn, const kiln_abi_exec *exec) {
  inBlocks(n, exec, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i)
      out[i] = fn(in[i]);
  });
}

/// Copies `bytes` bytes (kiln.copy).
inline void copy(void *out, const void *in, size_t bytes, const kiln_abi_exec * = nullptr) {
  std::memcpy(out, in, bytes);
}

template <typename From, typename To>
void cast(const From *in, To *out, int64_t n, const kiln_abi_exec *exec) {
  inBlocks(n, exec, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i)
      out[i] = scalar::convert<To>(in[i]);
  });
}

#ifdef KILN_AVX2
/// Register-blocked AVX2/FMA inner products for f32 (no packing yet): R rows
/// of Y at a time, so each loaded B vector feeds R fused multiply-adds.
namespace avx2 {

inline float horizontalSum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

/// Y[R rows, N] (+ Y with `accumulate`) = alpha * A[R rows, K] * B[K, N],
/// rows lda, ldb and ldy floats apart; register tiles of R rows x 16 columns.
template <int R>
void rowsTimesMatrix(const float *A, int64_t lda, const float *B, int64_t ldb, float *Y,
                     int64_t ldy, int64_t N, int64_t K, float alpha, bool accumulate) {
  int64_t j = 0;
  const __m256 scale = _mm256_set1_ps(alpha);
  for (; j + 16 <= N; j += 16) {
    __m256 acc[R][2];
    for (int r = 0; r < R; ++r)
      acc[r][0] = acc[r][1] = _mm256_setzero_ps();
    for (int64_t k = 0; k < K; ++k) {
      __m256 b0 = _mm256_loadu_ps(B + k * ldb + j), b1 = _mm256_loadu_ps(B + k * ldb + j + 8);
      for (int r = 0; r < R; ++r) {
        __m256 a = _mm256_broadcast_ss(A + r * lda + k);
        acc[r][0] = _mm256_fmadd_ps(a, b0, acc[r][0]);
        acc[r][1] = _mm256_fmadd_ps(a, b1, acc[r][1]);
      }
    }
    for (int r = 0; r < R; ++r)
      for (int h = 0; h < 2; ++h) {
        float *y = Y + r * ldy + j + 8 * h;
        _mm256_storeu_ps(y, accumulate ? _mm256_fmadd_ps(acc[r][h], scale, _mm256_loadu_ps(y))
                                       : _mm256_mul_ps(acc[r][h], scale));
      }
  }
  for (; j < N; ++j)
    for (int r = 0; r < R; ++r) {
      float acc = 0;
      for (int64_t k = 0; k < K; ++k)
        acc += A[r * lda + k] * B[k * ldb + j];
      Y[r * ldy + j] = (accumulate ? Y[r * ldy + j] : 0.0f) + alpha * acc;
    }
}

/// Y[R rows, N] += alpha * A[R rows, K] * B[N, K]^T: dot products, 4 columns at a time.
template <int R>
void rowsTimesTransposed(const float *A, const float *B, float *Y, int64_t N, int64_t K,
                         float alpha) {
  int64_t j = 0;
  for (; j + 4 <= N; j += 4) {
    __m256 acc[R][4];
    for (int r = 0; r < R; ++r)
      for (int c = 0; c < 4; ++c)
        acc[r][c] = _mm256_setzero_ps();
    int64_t k = 0;
    for (; k + 8 <= K; k += 8) {
      __m256 b[4];
      for (int c = 0; c < 4; ++c)
        b[c] = _mm256_loadu_ps(B + (j + c) * K + k);
      for (int r = 0; r < R; ++r) {
        __m256 a = _mm256_loadu_ps(A + r * K + k);
        for (int c = 0; c < 4; ++c)
          acc[r][c] = _mm256_fmadd_ps(a, b[c], acc[r][c]);
      }
    }
    for (int r = 0; r < R; ++r)
      for (int c = 0; c < 4; ++c) {
        float sum = horizontalSum(acc[r][c]);
        for (int64_t kk = k; kk < K; ++kk)
          sum += A[r * K + kk] * B[(j + c) * K + kk];
        Y[r * N + j + c] += alpha * sum;
      }
  }
  for (; j < N; ++j)
    for (int r = 0; r < R; ++r) {
      float sum = 0;
      for (int64_t k = 0; k < K; ++k)
        sum += A[r * K + k] * B[j * K + k];
      Y[r * N + j] += alpha * sum;
    }
}

/// Y[M, N] += alpha * A * op(B), A not transposed.
inline void accumulate(const float *A, const float *B, float *Y, int64_t M, int64_t N, int64_t K,
                       bool transB, float alpha) {
  int64_t i = 0;
  if (transB) {
    for (; i + 2 <= M; i += 2)
      rowsTimesTransposed<2>(A + i * K, B, Y + i * N, N, K, alpha);
    for (; i < M; ++i)
      rowsTimesTransposed<1>(A + i * K, B, Y + i * N, N, K, alpha);
  } else {
    for (; i + 4 <= M; i += 4)
      rowsTimesMatrix<4>(A + i * K, K, B, N, Y + i * N, N, N, K, alpha, true);
    for (; i < M; ++i)
      rowsTimesMatrix<1>(A + i * K, K, B, N, Y + i * N, N, N, K, alpha, true);
  }
}

/// Eight partial sums of row[0, n), n a multiple of 8, reduced.
template <typename Fn> float sumOf(int64_t n, Fn term) {
  __m256 acc = _mm256_setzero_ps();
  for (int64_t i = 0; i < n; i += 8)
    acc = _mm256_add_ps(acc, term(i));
  return horizontalSum(acc);
}

/// Layer norm of `outer` rows of `inner` floats (inner % 8 == 0) with
/// per-element scale and optional bias.
inline void layerNorm(const float *in, const float *scale, const float *bias, float *out,
                      int64_t outer, int64_t inner, float epsilon, bool rms) {
  for (int64_t o = 0; o < outer; ++o) {
    const float *x = in + o * inner;
    float *y = out + o * inner;
    float mean =
        rms ? 0.0f : sumOf(inner, [&](int64_t i) { return _mm256_loadu_ps(x + i); }) / inner;
    __m256 m = _mm256_set1_ps(mean);
    float var = sumOf(inner,
                      [&](int64_t i) {
                        __m256 d = _mm256_sub_ps(_mm256_loadu_ps(x + i), m);
                        return _mm256_mul_ps(d, d);
                      }) /
                inner;
    __m256 inv = _mm256_set1_ps(1.0f / std::sqrt(var + epsilon));
    for (int64_t i = 0; i < inner; i += 8) {
      __m256 v = _mm256_mul_ps(_mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), m), inv),
                               _mm256_loadu_ps(scale + i));
      if (bias)
        v = _mm256_add_ps(v, _mm256_loadu_ps(bias + i));
      _mm256_storeu_ps(y + i, v);
    }
  }
}

/// y = e^(x - max x) over n floats, terms below e^-87 (masked positions) as
/// 0: their share of the sum, at least 1, is below FLT_MIN, and computing
/// them subnormal took twice as long. Returns the sum; a NaN anywhere makes
/// it NaN. y may be x.
inline float expShifted(const float *x, float *y, int64_t n) {
  int64_t i = 0;
  __m256 vmax = _mm256_set1_ps(-std::numeric_limits<float>::infinity());
  for (; i + 8 <= n; i += 8)
    vmax = _mm256_max_ps(vmax, _mm256_loadu_ps(x + i));
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, vmax);
  float m = *std::max_element(lanes, lanes + 8);
  for (; i < n; ++i)
    m = std::max(m, x[i]);
  const __m256 mv = _mm256_set1_ps(m), floor = _mm256_set1_ps(-87.0f);
  __m256 acc = _mm256_setzero_ps();
  for (i = 0; i + 8 <= n; i += 8) {
    const __m256 d = _mm256_sub_ps(_mm256_loadu_ps(x + i), mv);
    // max(floor, d) and the ordered compare keep a NaN d.
    const __m256 e = _mm256_andnot_ps(_mm256_cmp_ps(d, floor, _CMP_LT_OQ),
                                      avx2::exp(_mm256_max_ps(floor, d)));
    _mm256_storeu_ps(y + i, e);
    acc = _mm256_add_ps(acc, e);
  }
  float sum = horizontalSum(acc);
  for (; i < n; ++i)
    sum += y[i] = std::exp(x[i] - m);
  return sum;
}

/// Softmax of each of `rows` contiguous rows of `n` floats. A NaN anywhere
/// in a row makes the whole row NaN (through the sum).
inline void softmaxRows(const float *in, float *out, int64_t rows, int64_t n) {
  for (int64_t r = 0; r < rows; ++r) {
    float *y = out + r * n;
    const float inv = 1.0f / expShifted(in + r * n, y, n);
    const __m256 vinv = _mm256_set1_ps(inv);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
      _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_loadu_ps(y + i), vinv));
    for (; i < n; ++i)
      y[i] *= inv;
  }
}

} // namespace avx2
#endif

/// Y[M,N] = alpha * op(A) op(B) + beta * C, C broadcast from [cRows, cCols].
template <typename T>
void gemm(const T *A, const T *B, const T *C, int64_t cRows, int64_t cCols, T *Y, int64_t M,
          int64_t N, int64_t K, bool transA, bool transB, T alpha, T beta,
          const kiln_abi_exec * = nullptr) {
  for (int64_t i = 0; i < M; ++i) {
    T *y = Y + i * N;
    if (C && beta != T(0)) {
      const T *c = C + (cRows == 1 ? 0 : i) * cCols;
      for (int64_t j = 0; j < N; ++j)
        y[j] = beta * c[cCols == 1 ? 0 : j];
    } else {
      std::fill(y, y + N, T(0));
    }
  }
#ifdef KILN_AVX2
  if constexpr (std::is_same_v<T, float>) {
    if (!transA) {
      avx2::accumulate(A, B, Y, M, N, K, transB, alpha);
      return;
    }
  }
#endif
  for (int64_t i = 0; i < M; ++i) {
    T *y = Y + i * N;
    if (transB) {
      for (int64_t j = 0; j < N; ++j) {
        T acc = 0;
        for (int64_t k = 0; k < K; ++k)
          acc += (transA ? A[k * M + i] : A[i * K + k]) * B[j * K + k];
        y[j] += alpha * acc;
      }
    } else {
      for (int64_t k = 0; k < K; ++k) {
        T a = alpha * (transA ? A[k * M + i] : A[i * K + k]);
        const T *b = B + k * N;
        for (int64_t j = 0; j < N; ++j)
          y[j] += a * b[j];
      }
    }
  }
}

/// Batched matmul: out[batch..., M, N] with the batch dims of lhs/rhs
/// broadcast (shapes right-aligned to the output's batch rank).
template <typename T>
void matmul(const T *lhs, const int64_t *lBatch, int lRank, const T *rhs, const int64_t *rBatch,
            int rRank, T *out, const int64_t *oBatch, int batchRank, int64_t M, int64_t N,
            int64_t K, const kiln_abi_exec *exec = nullptr) {
  int64_t ls[kMaxRank], rs[kMaxRank];
  broadcastStrides(lBatch, lRank, oBatch, batchRank, ls);
  broadcastStrides(rBatch, rRank, oBatch, batchRank, rs);
  int64_t total = 1;
  for (int d = 0; d < batchRank; ++d)
    total *= oBatch[d];
  parallelRange(exec, total, 65536 / (M * N * K + 1) + 1, 1, [&](int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; ++n) {
      int64_t lo = 0, ro = 0;
      for (int64_t d = batchRank - 1, rest = n; d >= 0; --d) {
        lo += rest % oBatch[d] * ls[d];
        ro += rest % oBatch[d] * rs[d];
        rest /= oBatch[d];
      }
      gemm<T>(lhs + lo * M * K, rhs + ro * K * N, nullptr, 0, 0, out + n * M * N, M, N, K, false,
              false, T(1), T(0));
    }
  });
}

/// Softmax (or, with `log`, its logarithm) over the middle of [outer, axis, inner].
template <typename T>
void softmax(const T *in, T *out, int64_t outer, int64_t axis, int64_t inner, bool log = false,
             const kiln_abi_exec *exec = nullptr) {
#ifdef KILN_AVX2
  if constexpr (std::is_same_v<T, float>) {
    if (inner == 1 && !log) {
      parallelRange(exec, outer, 4096 / axis + 1, 1, [&](int64_t o0, int64_t o1) {
        avx2::softmaxRows(in + o0 * axis, out + o0 * axis, o1 - o0, axis);
      });
      return;
    }
  }
#endif
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t i = 0; i < inner; ++i) {
      const T *x = in + o * axis * inner + i;
      T *y = out + o * axis * inner + i;
      T m = x[0];
      for (int64_t a = 1; a < axis; ++a)
        m = std::max(m, x[a * inner]);
      T sum = 0;
      for (int64_t a = 0; a < axis; ++a)
        sum += y[a * inner] = std::exp(x[a * inner] - m);
      if (log) {
        T logSum = std::log(sum);
        for (int64_t a = 0; a < axis; ++a)
          y[a * inner] = x[a * inner] - m - logSum;
      } else {
        for (int64_t a = 0; a < axis; ++a)
          y[a * inner] /= sum;
      }
    }
}

namespace detail {
/// out[r * ldo + x] = scale * sum_k a[r * lda + k] b[k * ldb + x] for
/// r < rows (<= 4) and x < width: a few rows times a small matrix.
inline void rowsTimesMatrix(const float *a, int64_t lda, int64_t rows, const float *b, int64_t ldb,
                            int64_t depth, int64_t width, float scale, float *out, int64_t ldo) {
#ifdef KILN_AVX2
  switch (rows) {
  case 1:
    return avx2::rowsTimesMatrix<1>(a, lda, b, ldb, out, ldo, width, depth, scale, false);
  case 2:
    return avx2::rowsTimesMatrix<2>(a, lda, b, ldb, out, ldo, width, depth, scale, false);
  case 3:
    return avx2::rowsTimesMatrix<3>(a, lda, b, ldb, out, ldo, width, depth, scale, false);
  default:
    return avx2::rowsTimesMatrix<4>(a, lda, b, ldb, out, ldo, width, depth, scale, false);
  }
#else
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t x = 0; x < width; ++x) {
      float acc = 0;
      for (int64_t k = 0; k < depth; ++k)
        acc += a[r * lda + k] * b[k * ldb + x];
      out[r * ldo + x] = scale * acc;
    }
#endif
}
/// a . b over n floats.
inline float dot(const float *a, const float *b, int64_t n) {
  int64_t i = 0;
  float sum = 0;
#ifdef KILN_AVX2
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  for (; i + 16 <= n; i += 16) {
    acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
    acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), acc1);
  }
  for (; i + 8 <= n; i += 8)
    acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
  sum = avx2::horizontalSum(_mm256_add_ps(acc0, acc1));
#endif
  for (; i < n; ++i)
    sum += a[i] * b[i];
  return sum;
}
} // namespace detail

/// DLRM's dot interaction: out[b * outStride + p] = x[b, pairs[2p]] .
/// x[b, pairs[2p + 1]] for x [batch, features, dim], count pairs. A sample's
/// features stay in L1 while its dots are taken; samples split over threads.
inline void interaction(const float *x, int64_t batch, int64_t features, int64_t dim,
                        const int64_t *pairs, int64_t count, float *out, int64_t outStride,
                        const kiln_abi_exec *exec) {
  parallelRange(exec, batch, 4, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const float *z = x + b * features * dim;
      float *y = out + b * outStride;
      for (int64_t p = 0; p < count; ++p)
        y[p] = detail::dot(z + pairs[2 * p] * dim, z + pairs[2 * p + 1] * dim, dim);
    }
  });
}

namespace detail {
/// x = e^(x - max x) in place over n floats; returns the sum (softmax
/// without its division).
inline float expShifted(float *x, int64_t n) {
#ifdef KILN_AVX2
  return avx2::expShifted(x, x, n);
#else
  float m = x[0], sum = 0;
  for (int64_t j = 1; j < n; ++j)
    m = std::max(m, x[j]);
  for (int64_t j = 0; j < n; ++j)
    sum += x[j] = std::exp(x[j] - m);
  return sum;
#endif
}
} // namespace detail

/// Scaled dot-product attention in [batch, seq, heads, dim] layout:
/// out[b, i, h, :] = sum_j p_j v[b, j, h, :] with
/// p = softmax_j(scale * q[b, i, h, :] . k[b, j, h, :] + mask[b, h, i, j]).
/// `maskStrides` (4, for b, h, i, j; 0 where broadcast) index `mask` (null
/// for none). Batches and heads are split over the threads; one head's keys
/// (sk * d <= 16384) and the scores of up to 4 queries (sk <= 4096) stay on
/// the stack, and each step takes those queries at once.
inline void attention(const float *q, const float *k, const float *v, const float *mask,
                      const int64_t *maskStrides, float *out, int64_t batch, int64_t sq, int64_t sk,
                      int64_t heads, int64_t d, int64_t dv, float scale,
                      const kiln_abi_exec *exec) {
  constexpr int64_t kMaxKeys = 16384, kMaxScores = 4096;
  const int64_t block = std::clamp<int64_t>(kMaxScores / std::max<int64_t>(sk, 1), 1, 4);
  parallelRange(exec, batch * heads, 1, 1, [&](int64_t t0, int64_t t1) {
    float keys[kMaxKeys], p[kMaxScores];
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t b = t / heads, h = t % heads;
      // keys[c][j] = k[b, j, h, c]: scores are then the queries times [d][sk].
      for (int64_t j = 0; j < sk; ++j)
        for (int64_t c = 0; c < d; ++c)
          keys[c * sk + j] = k[((b * sk + j) * heads + h) * d + c];
      for (int64_t i = 0; i < sq; i += block) {
        const int64_t rows = std::min(block, sq - i);
        detail::rowsTimesMatrix(q + ((b * sq + i) * heads + h) * d, heads * d, rows, keys, sk, d,
                                sk, scale, p, sk);
        float sums[4];
        for (int64_t r = 0; r < rows; ++r) {
          float *pr = p + r * sk;
          if (mask) {
            const float *m =
                mask + b * maskStrides[0] + h * maskStrides[1] + (i + r) * maskStrides[2];
            if (maskStrides[3] == 1) // a contiguous row of the mask: vectorised
              for (int64_t j = 0; j < sk; ++j)
                pr[j] += m[j];
            else
              for (int64_t j = 0; j < sk; ++j)
                pr[j] += m[j * maskStrides[3]];
          }
          sums[r] = detail::expShifted(pr, sk);
        }
        // Output: the unnormalised probabilities times the head's value
        // rows, then each row divided by its sum (dv values, not sk).
        float *o = out + ((b * sq + i) * heads + h) * dv;
        detail::rowsTimesMatrix(p, sk, rows, v + (b * sk * heads + h) * dv, heads * dv, sk, dv,
                                1.0f, o, heads * dv);
        for (int64_t r = 0; r < rows; ++r) {
          const float inv = 1.0f / sums[r];
          for (int64_t c = 0; c < dv; ++c)
            o[r * heads * dv + c] *= inv;
        }
      }
    }
  });
}

/// out[i] = data[i with i[axis] = indices[i]] (ONNX GatherElements); false
/// on an index outside [-size, size) of the axis.
template <typename T, typename I>
bool gatherElements(const T *data, const int64_t *dataShape, const I *indices,
                    const int64_t *indexShape, int rank, int axisDim, T *out,
                    const kiln_abi_exec * = nullptr) {
  int64_t dataStrides[kMaxRank], index[kMaxRank] = {}, total = 1;
  const int64_t axis = dataShape[axisDim];
  rowMajorStrides(dataShape, rank, dataStrides);
  for (int d = 0; d < rank; ++d)
    total *= indexShape[d];
  for (int64_t n = 0; n < total; ++n) {
    I k = indices[n];
    if (k < -axis || k >= axis)
      return false;
    int64_t src = 0;
    for (int d = 0; d < rank; ++d)
      src += (d == axisDim ? (k < 0 ? k + axis : k) : index[d]) * dataStrides[d];
    out[n] = data[src];
    nextIndex(index, indexShape, rank);
  }
  return true;
}

/// ONNX GatherND: for each of `batch` (the product of the batch_dims) and
/// each of its `tuples` index tuples of `k` components, copies the slice of
/// `slice` elements the tuple selects in dims `dims[0..k)` of that batch's
/// data. False on an index outside [-size, size) of its dim.
template <typename T, typename I>
bool gatherND(const T *data, const int64_t *dims, int k, int64_t slice, const I *indices,
              int64_t batch, int64_t tuples, T *out, const kiln_abi_exec * = nullptr) {
  int64_t perBatch = slice;
  for (int c = 0; c < k; ++c)
    perBatch *= dims[c];
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t t = 0; t < tuples; ++t, indices += k, out += slice) {
      int64_t offset = 0;
      for (int c = 0; c < k; ++c) {
        I i = indices[c];
        if (i < -dims[c] || i >= dims[c])
          return false;
        offset = offset * dims[c] + (i < 0 ? i + dims[c] : i);
      }
      const T *src = data + b * perBatch + offset * slice;
      std::copy(src, src + slice, out);
    }
  return true;
}

/// Zeroes what is outside the upper (j - i >= k) or lower (j - i <= k)
/// triangle of each of `batch` [rows, cols] matrices.
template <typename T>
void trilu(const T *in, T *out, int64_t batch, int64_t rows, int64_t cols, bool upper, int64_t k,
           const kiln_abi_exec * = nullptr) {
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t j = 0; j < cols; ++j) {
        int64_t n = (b * rows + i) * cols + j;
        bool keep = upper ? j - i >= k : j - i <= k;
        out[n] = keep ? in[n] : T(0);
      }
}

/// The index of the largest (`max`) or smallest element along the middle of
/// [outer, axis, inner]; ties go to the first, or with `last` the last.
template <typename T>
void argExtreme(const T *in, int64_t *out, int64_t outer, int64_t axis, int64_t inner, bool max,
                bool last, const kiln_abi_exec * = nullptr) {
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t i = 0; i < inner; ++i) {
      const T *x = in + o * axis * inner + i;
      int64_t best = 0;
      for (int64_t a = 1; a < axis; ++a) {
        T v = x[a * inner], b = x[best * inner];
        bool better = max ? (last ? v >= b : v > b) : (last ? v <= b : v < b);
        if (better)
          best = a;
      }
      out[o * inner + i] = best;
    }
}

/// Running sums along the middle of [outer, axis, inner].
template <typename T>
void cumsum(const T *in, T *out, int64_t outer, int64_t axis, int64_t inner, bool exclusive,
            bool reverse, const kiln_abi_exec * = nullptr) {
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t i = 0; i < inner; ++i) {
      T sum = 0;
      for (int64_t s = 0; s < axis; ++s) {
        int64_t a = reverse ? axis - 1 - s : s;
        int64_t n = (o * axis + a) * inner + i;
        if (exclusive) {
          out[n] = sum;
          sum += in[n];
        } else {
          sum += in[n];
          out[n] = sum;
        }
      }
    }
}

/// Constant padding: out has in's elements at offset `begin` per dim.
template <typename T>
void pad(const T *in, const int64_t *inShape, const int64_t *begin, const int64_t *outShape,
         int rank, T value, T *out, const kiln_abi_exec * = nullptr) {
  int64_t inStrides[kMaxRank], index[kMaxRank] = {}, total = 1;
  rowMajorStrides(inShape, rank, inStrides);
  for (int d = 0; d < rank; ++d)
    total *= outShape[d];
  for (int64_t n = 0; n < total; ++n) {
    int64_t src = 0;
    bool inside = true;
    for (int d = 0; d < rank && inside; ++d) {
      int64_t i = index[d] - begin[d];
      inside = i >= 0 && i < inShape[d];
      src += i * inStrides[d];
    }
    out[n] = inside ? in[src] : value;
    nextIndex(index, outShape, rank);
  }
}

/// out[i...] = in[offset + sum_d i_d * strides[d]]: the strided read that
/// transposes and slices are.
template <typename T>
void stridedCopy(const T *in, int64_t offset, const int64_t *strides, const int64_t *outShape,
                 int rank, T *out, const kiln_abi_exec *exec = nullptr) {
  if (rank == 0) {
    out[0] = in[offset];
    return;
  }
  int64_t outer = 1;
  for (int d = 0; d + 1 < rank; ++d)
    outer *= outShape[d];
  const int64_t inner = outShape[rank - 1], step = strides[rank - 1];
  if (inner == 0)
    return;
  // Rows of the innermost dim, split over the threads.
  parallelRange(exec, outer, kElementGrain / inner + 1, 1, [&](int64_t o0, int64_t o1) {
    int64_t index[kMaxRank] = {};
    for (int64_t d = rank - 2, rest = o0; d >= 0; --d) {
      index[d] = rest % outShape[d];
      rest /= outShape[d];
    }
    for (int64_t o = o0; o < o1; ++o) {
      int64_t src = offset;
      for (int d = 0; d + 1 < rank; ++d)
        src += index[d] * strides[d];
      T *dst = out + o * inner;
      if (step == 1)
        std::memcpy(dst, in + src, inner * sizeof(T));
      else
        for (int64_t i = 0; i < inner; ++i)
          dst[i] = in[src + i * step];
      nextIndex(index, outShape, rank - 1);
    }
  });
}

/// out = in with dims permuted: out dim d is in dim perm[d].
template <typename T>
void transpose(const T *in, const int64_t *inShape, const int64_t *perm, int rank, T *out,
               const kiln_abi_exec *exec = nullptr) {
  int64_t inStrides[kMaxRank], strides[kMaxRank], outShape[kMaxRank];
  rowMajorStrides(inShape, rank, inStrides);
  for (int d = 0; d < rank; ++d) {
    outShape[d] = inShape[perm[d]];
    strides[d] = inStrides[perm[d]];
  }
  stridedCopy(in, 0, strides, outShape, rank, out, exec);
}

/// Copies one concat input: `outer` chunks of `chunk` elements, placed at
/// `offset` within output rows of `rowSize` elements.
template <typename T>
void concatPart(const T *in, T *out, int64_t outer, int64_t chunk, int64_t rowSize, int64_t offset,
                const kiln_abi_exec *exec) {
  parallelRange(exec, outer, kElementGrain / std::max<int64_t>(chunk, 1), 1,
                [&](int64_t begin, int64_t end) {
                  for (int64_t o = begin; o < end; ++o)
                    std::memcpy(out + o * rowSize + offset, in + o * chunk, chunk * sizeof(T));
                });
}

/// Random rows of a large table are read a few lookups ahead of their use.
constexpr int64_t kRowPrefetchDistance = 8;

/// Asks for the `bytes` bytes at `p` to be brought into cache.
inline void prefetchBytes(const void *p, int64_t bytes) {
  for (int64_t off = 0; off < bytes; off += 64)
    __builtin_prefetch(static_cast<const char *>(p) + off);
}

/// memcpy for the short rows of embedding tables: up to 64 bytes in one
/// masked move with AVX-512 (a call per row cost more than the copy).
inline void copyRow(void *dst, const void *src, int64_t bytes) {
#ifdef KILN_AVX512
  if (bytes <= 64) {
    const __mmask64 mask = bytes == 64 ? ~__mmask64(0) : (__mmask64(1) << bytes) - 1;
    _mm512_mask_storeu_epi8(dst, mask, _mm512_maskz_loadu_epi8(mask, src));
    return;
  }
#endif
  std::memcpy(dst, src, size_t(bytes));
}

/// Pools one table row into a bag's output row y: the bag's first row
/// (times w) is stored, later ones are maxed in (mode 2) or added times w.
template <typename T> void poolRow(T *y, const T *row, int64_t dim, int mode, bool first, T w) {
  if (first && mode == 2)
    std::copy(row, row + dim, y);
  else if (first)
    for (int64_t d = 0; d < dim; ++d)
      y[d] = w * row[d];
  else if (mode == 2)
    for (int64_t d = 0; d < dim; ++d)
      y[d] = std::max(y[d], row[d]);
  else
    for (int64_t d = 0; d < dim; ++d)
      y[d] += w * row[d];
}

/// out[o, i, n] = data[o, idx[i], n]; false on an index outside [-axis, axis).
/// Rows of `inner` elements land `outStride` elements apart (inner: dense).
template <typename T, typename I>
bool gather(const T *data, const I *indices, T *out, int64_t outer, int64_t axis,
            int64_t numIndices, int64_t inner, int64_t outStride, const kiln_abi_exec *exec) {
  for (int64_t i = 0; i < numIndices; ++i)
    if (indices[i] < -axis || indices[i] >= axis)
      return false;
  auto source = [&](int64_t o, int64_t i) {
    return data + (o * axis + (indices[i] < 0 ? indices[i] + axis : indices[i])) * inner;
  };
  const int64_t bytes = inner * int64_t(sizeof(T));
  // Rows of a large table are random reads: the row a few ahead is
  // prefetched while the current one is copied.
  const bool prefetch = outer * axis * bytes > (int64_t(1) << 20);
  parallelRange(exec, outer * numIndices, kElementGrain / std::max<int64_t>(inner, 1), 1,
                [&](int64_t begin, int64_t end) {
                  // Row r is (o, i), stepped along rather than divided out per row.
                  for (int64_t r = begin, o = r / numIndices, i = r % numIndices; r < end; ++r) {
                    if (prefetch && r + kRowPrefetchDistance < end) {
                      const int64_t a = r + kRowPrefetchDistance;
                      prefetchBytes(i + kRowPrefetchDistance < numIndices
                                        ? source(o, i + kRowPrefetchDistance)
                                        : source(a / numIndices, a % numIndices),
                                    bytes);
                    }
                    copyRow(out + r * outStride, source(o, i), bytes);
                    if (++i == numIndices)
                      i = 0, ++o;
                  }
                });
  return true;
}

/// out[i...] = in[start + i * step ...] per dim.
template <typename T>
void slice(const T *in, const int64_t *inShape, const int64_t *starts, const int64_t *steps,
           const int64_t *outShape, int rank, T *out, const kiln_abi_exec *exec = nullptr) {
  int64_t inStrides[kMaxRank], strides[kMaxRank], offset = 0;
  rowMajorStrides(inShape, rank, inStrides);
  for (int d = 0; d < rank; ++d) {
    offset += starts[d] * inStrides[d];
    strides[d] = steps[d] * inStrides[d];
  }
  stridedCopy(in, offset, strides, outShape, rank, out, exec);
}

/// Reduces over the dims flagged in `reduced` with `combine`, starting from
/// `init`; out has the kept dims in order. `mean` divides by the count.
template <typename T, typename Combine>
void reduce(const T *in, const int64_t *inShape, const bool *reduced, int rank, T *out, T init,
            Combine combine, bool mean, const kiln_abi_exec *exec) {
  int64_t outStrides[kMaxRank], index[kMaxRank] = {}, total = 1, outTotal = 1, count = 1;
  for (int d = rank - 1; d >= 0; --d) {
    outStrides[d] = reduced[d] ? 0 : outTotal;
    outTotal *= reduced[d] ? 1 : inShape[d];
    count *= reduced[d] ? inShape[d] : 1;
    total *= inShape[d];
  }
  std::fill(out, out + outTotal, init);
  // Reduced dims that form one block: [outer, count, inner], the inner loop
  // contiguous (and vectorisable) in both.
  int first = 0, last = rank;
  while (first < rank && !reduced[first])
    ++first;
  while (last > first && !reduced[last - 1])
    --last;
  if (std::all_of(reduced + first, reduced + last, [](bool r) { return r; })) {
    int64_t inner = 1;
    for (int d = last; d < rank; ++d)
      inner *= inShape[d];
    if (inner == 0)
      return;
    if (inner == 1) {
      // Each output reduces one contiguous run: eight independent lanes
      // (which the compiler vectorises), then the lanes and the tail.
      parallelRange(exec, outTotal, kElementGrain / std::max<int64_t>(count, 1), 1,
                    [&](int64_t begin, int64_t end) {
                      for (int64_t o = begin; o < end; ++o) {
                        const T *x = in + o * count;
                        T lanes[8];
                        std::fill(lanes, lanes + 8, init);
                        int64_t r = 0;
                        for (; r + 8 <= count; r += 8)
                          for (int j = 0; j < 8; ++j)
                            lanes[j] = combine(lanes[j], x[r + j]);
                        T y = init;
                        for (int j = 0; j < 8; ++j)
                          y = combine(y, lanes[j]);
                        for (; r < count; ++r)
                          y = combine(y, x[r]);
                        out[o] = mean && count > 0 ? y / T(count) : y;
                      }
                    });
      return;
    }
    // Outputs are independent: threads split them, as [outer, inner] flat.
    const int64_t outer = outTotal / inner;
    parallelRange(exec, outTotal, kElementGrain / std::max<int64_t>(count, 1), 16,
                  [&](int64_t begin, int64_t end) {
                    for (int64_t o = begin / inner; o * inner < end && o < outer; ++o) {
                      const int64_t i0 = std::max(begin - o * inner, int64_t(0));
                      const int64_t i1 = std::min(end - o * inner, inner);
                      T *y = out + o * inner;
                      for (int64_t r = 0; r < count; ++r) {
                        const T *x = in + (o * count + r) * inner;
                        for (int64_t i = i0; i < i1; ++i)
                          y[i] = combine(y[i], x[i]);
                      }
                      if (mean && count > 0)
                        for (int64_t i = i0; i < i1; ++i)
                          y[i] /= T(count);
                    }
                  });
    return;
  }
  for (int64_t n = 0; n < total; ++n) {
    int64_t dst = 0;
    for (int d = 0; d < rank; ++d)
      dst += index[d] * outStrides[d];
    out[dst] = combine(out[dst], in[n]);
    nextIndex(index, inShape, rank);
  }
  if (mean && count > 0)
    for (int64_t i = 0; i < outTotal; ++i)
      out[i] /= T(count);
}

/// out = in broadcast to outShape (ONNX Expand); `in` is right-aligned.
template <typename T>
void broadcastTo(const T *in, const int64_t *inShape, int inRank, const int64_t *outShape, int rank,
                 T *out, const kiln_abi_exec *exec = nullptr) {
  int64_t strides[kMaxRank];
  broadcastStrides(inShape, inRank, outShape, rank, strides);
  stridedCopy(in, 0, strides, outShape, rank, out, exec);
}

/// out = cond ? x : y with all three broadcast to outShape.
template <typename T>
void select(const bool *cond, const int64_t *cShape, int cRank, const T *x, const int64_t *xShape,
            int xRank, const T *y, const int64_t *yShape, int yRank, T *out,
            const int64_t *outShape, int rank, const kiln_abi_exec * = nullptr) {
  int64_t cs[kMaxRank], xs[kMaxRank], ys[kMaxRank], index[kMaxRank] = {}, total = 1;
  broadcastStrides(cShape, cRank, outShape, rank, cs);
  broadcastStrides(xShape, xRank, outShape, rank, xs);
  broadcastStrides(yShape, yRank, outShape, rank, ys);
  for (int d = 0; d < rank; ++d)
    total *= outShape[d];
  for (int64_t n = 0; n < total; ++n) {
    int64_t c = 0, xo = 0, yo = 0;
    for (int d = 0; d < rank; ++d) {
      c += index[d] * cs[d];
      xo += index[d] * xs[d];
      yo += index[d] * ys[d];
    }
    out[n] = cond[c] ? x[xo] : y[yo];
    nextIndex(index, outShape, rank);
  }
}

/// Normalises each of `outer` rows of `inner` elements, then applies scale
/// and bias (each `inner` long, or 1 to broadcast; bias may be null).
template <typename T>
void layerNorm(const T *in, const T *scale, int64_t scaleSize, const T *bias, int64_t biasSize,
               T *out, int64_t outer, int64_t inner, double epsilon, bool rms = false,
               const kiln_abi_exec *exec = nullptr) {
#ifdef KILN_AVX2
  if constexpr (std::is_same_v<T, float>) {
    if (scaleSize == inner && (!bias || biasSize == inner) && inner % 8 == 0) {
      parallelRange(exec, outer, 4096 / inner + 1, 1, [&](int64_t o0, int64_t o1) {
        avx2::layerNorm(in + o0 * inner, scale, bias, out + o0 * inner, o1 - o0, inner,
                        float(epsilon), rms);
      });
      return;
    }
  }
#endif
  for (int64_t o = 0; o < outer; ++o) {
    const T *x = in + o * inner;
    T *y = out + o * inner;
    double mean = 0, var = 0;
    for (int64_t i = 0; i < inner && !rms; ++i)
      mean += x[i];
    mean /= double(inner);
    for (int64_t i = 0; i < inner; ++i)
      var += (x[i] - mean) * (x[i] - mean);
    var /= double(inner);
    T inv = T(1.0 / std::sqrt(var + epsilon));
    for (int64_t i = 0; i < inner; ++i) {
      T v = (x[i] - T(mean)) * inv * scale[scaleSize == 1 ? 0 : i];
      y[i] = bias ? v + bias[biasSize == 1 ? 0 : i] : v;
    }
  }
}

/// out[b] = reduce(weights[j] * table[indices[j]] for j in [begin[b], end[b])),
/// mode 0 sum, 1 mean, 2 max; an empty bag is zeros. With `wrapNegative` ids
/// in [-rows, 0) count from the end. Bag b is written at out + b * outStride.
/// False on an index or offset out of range.
template <typename T, typename I>
bool embeddingBag(const T *table, int64_t rows, int64_t dim, const I *indices, int64_t numIndices,
                  const I *begin, const I *end, int64_t bags, const T *weights, int mode,
                  bool wrapNegative, T *out, int64_t outStride, const kiln_abi_exec *exec) {
  for (int64_t b = 0; b < bags; ++b) {
    if (begin[b] < 0 || end[b] < begin[b] || end[b] > numIndices)
      return false;
    for (I j = begin[b]; j < end[b]; ++j)
      if (indices[j] < (wrapNegative ? -rows : 0) || indices[j] >= rows)
        return false;
  }
  auto rowOf = [&](I j) {
    return table + (indices[j] < 0 ? indices[j] + rows : int64_t(indices[j])) * dim;
  };
  // Bags are independent; each thread pools a contiguous range of them,
  // prefetching the row a few ids ahead while it adds the current one, so
  // that several random row reads are in flight.
  parallelRange(exec, bags, 64, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      T *y = out + b * outStride;
      if (end[b] == begin[b])
        std::fill(y, y + dim, T(0));
      for (I j = begin[b]; j < end[b]; ++j) {
        if (j + kRowPrefetchDistance < numIndices)
          prefetchBytes(rowOf(j + kRowPrefetchDistance), dim * sizeof(T));
        poolRow(y, rowOf(j), dim, mode, j == begin[b], weights ? weights[j] : T(1));
      }
      if (mode == 1 && end[b] > begin[b])
        for (int64_t d = 0; d < dim; ++d)
          y[d] /= T(end[b] - begin[b]);
    }
  });
  return true;
}

/// One table of embeddingBags: `rows` x `dim` values, `hotness` ids per
/// sample; with `bits` 8 or 4, `rowwise` holds the rows in quantized.h's
/// row-wise format instead of `data`. `host` marks, for the CUDA target, a
/// table in host memory (kiln compile --host-tables-over); every table here
/// is.
template <typename T> struct BagTable {
  const T *data;
  int64_t rows, dim, hotness;
  const uint8_t *rowwise = nullptr;
  int bits = 0;
  bool host = false;
};

/// Fixed-hotness bags of `count` tables side by side in one pass. Sample b's
/// ids are ids[b * idsRow + columns[k]]: the first tables[0].hotness of
/// `columns` for table 0, the next for table 1, and so on; table t's pooled
/// row (mode 0 sum, 1 mean, 2 max) lands after the dims of tables < t in
/// out[b * outStride]. Mode 3 writes each looked-up row, unpooled. The row a fixed number of
/// lookups ahead (across tables and samples) is prefetched while the current one is added, so that
/// several random reads are in flight whatever the hotness. False on an id out of range (nothing
/// written).
template <typename T, typename I>
bool embeddingBags(const I *ids, int64_t batch, int64_t idsRow, const BagTable<T> *tables,
                   int64_t count, const int64_t *columns, int mode, bool wrapNegative, T *out,
                   int64_t outStride, const kiln_abi_exec *exec) {
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t t = 0, k = 0; t < count; ++t)
      for (int64_t l = 0; l < tables[t].hotness; ++l, ++k) {
        I id = ids[b * idsRow + columns[k]];
        if (id < (wrapNegative ? -tables[t].rows : 0) || id >= tables[t].rows)
          return false;
      }
  auto rowIndex = [&](int64_t b, int64_t t, int64_t k) {
    I id = ids[b * idsRow + columns[k]];
    return id < 0 ? id + tables[t].rows : int64_t(id);
  };
  auto rowBytes = [&](int64_t t) {
    return tables[t].rowwise ? quantizedRowBytes(tables[t].dim, tables[t].bits)
                             : tables[t].dim * int64_t(sizeof(T));
  };
  auto rowOf = [&](int64_t b, int64_t t, int64_t k) {
    const char *base = tables[t].rowwise ? reinterpret_cast<const char *>(tables[t].rowwise)
                                         : reinterpret_cast<const char *>(tables[t].data);
    return base + rowIndex(b, t, k) * rowBytes(t);
  };
  // A position in the lookup sequence: sample b, table t, lookup k of the
  // sample (l of the table).
  struct Cursor {
    int64_t b = 0, t = 0, l = 0, k = 0;
  };
  auto settle = [&](Cursor &c) { // onto a real lookup (skipping empty tables), or past the end
    while (c.t < count && c.l >= tables[c.t].hotness) {
      ++c.t;
      c.l = 0;
    }
    if (c.t == count) {
      c = Cursor{c.b + 1, 0, 0, 0};
      while (c.t < count && tables[c.t].hotness == 0)
        ++c.t;
    }
  };
  parallelRange(exec, batch, 4, 1, [&](int64_t b0, int64_t b1) {
    Cursor ahead{b0, 0, 0, 0};
    settle(ahead);
    auto prefetchNext = [&] {
      if (ahead.b >= b1)
        return;
      prefetchBytes(rowOf(ahead.b, ahead.t, ahead.k), rowBytes(ahead.t));
      ++ahead.l;
      ++ahead.k;
      settle(ahead);
    };
    for (int64_t i = 0; i < kRowPrefetchDistance; ++i)
      prefetchNext();
    for (int64_t b = b0; b < b1; ++b) {
      T *y = out + b * outStride;
      for (int64_t t = 0, k = 0; t < count; ++t) {
        const int64_t dim = tables[t].dim, hotness = tables[t].hotness;
        const bool rows = mode == 3;
        if (hotness == 0 && !rows)
          std::fill(y, y + dim, T(0));
        for (int64_t l = 0; l < hotness; ++l) {
          prefetchNext();
          T *dst = rows ? y + l * dim : y;
          if (tables[t].rowwise)
            poolQuantizedRow(dst, reinterpret_cast<const uint8_t *>(rowOf(b, t, k + l)), dim,
                             tables[t].bits, rows ? 0 : mode, rows || l == 0);
          else
            poolRow(dst, reinterpret_cast<const T *>(rowOf(b, t, k + l)), dim, rows ? 0 : mode,
                    rows || l == 0, T(1));
        }
        if (mode == 1 && hotness > 1)
          for (int64_t d = 0; d < dim; ++d)
            y[d] /= T(hotness);
        y += rows ? dim * hotness : dim;
        k += hotness;
      }
    }
  });
  return true;
}

using scalar::BFloat16;
using scalar::divide;
using scalar::Half;
using scalar::mod;
using scalar::shiftLeft;
using scalar::shiftRight;

} // namespace kiln::cpu

#endif
