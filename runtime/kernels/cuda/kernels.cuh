// kernels.cuh - the CUDA kernels generated models call.
//
// The generated entry point of a batch bucket calls these with the same
// arguments as the CPU kernels of runtime/kernels/cpu/kernels.h (so that one
// emitter spells both), `exec` being the session's Exec. Each call launches
// its kernel on the session's stream; the entry point runs once eagerly and
// once under CUDA graph capture when a session is created, and afterwards
// only the captured graph is replayed. Nothing here is called per request.
//
// Kernels that check ids (gathers, embedding bags) never read out of bounds:
// an id out of range reads row 0 (or nothing) and records the op's site in
// the session's device error word, which the session turns into the op's
// message after the replay.
#ifndef KILN_KERNELS_CUDA_KERNELS_CUH
#define KILN_KERNELS_CUDA_KERNELS_CUH

#include "host_tables.h"
#include "scalar.h"

#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>
#include <vector>

namespace kiln::cuda {

constexpr int kMaxRank = 8;
constexpr int kMaxSites = 256;
constexpr int kThreads = 256;

/// A shape or strides passed to a kernel by value.
struct Dims {
  int64_t v[kMaxRank];
};

using scalar::activate;
using scalar::Activation;
using scalar::applyEpilogue;
using scalar::BFloat16;
using scalar::divide;
using scalar::Epilogue;
using scalar::gelu;
using scalar::Half;
using scalar::mod;
using scalar::shiftLeft;
using scalar::shiftRight;
using scalar::sigmoid;

/// The arithmetic of dense layers (kiln compile --precision): f32, or TF32
/// tensor cores on f32 operands; with bf16/fp16 the weights are stored at 16
/// bits (denseHalf), with fp8 at 8 bits (denseFp8), and the activations
/// converted; all accumulate at f32. Layers left at f32 weights compute at
/// f32 under bf16, fp16 and fp8.
enum class Precision : int32_t { Fp32 = 0, Tf32, Bf16, Fp16, Fp8 };
using cpu::HalfFormat;

/// Work a graph hands to the CPU (a host node, cudaLaunchHostFunc): made by
/// a bucket's eager run, reused by its capture, freed with the session.
struct HostWork {
  virtual ~HostWork() = default;
  virtual void run() = 0;
  static void CUDART_CB call(void *work) { static_cast<HostWork *>(work)->run(); }
};

/// A session's device context as the generated code sees it.
struct Exec {
  cudaStream_t stream = nullptr;
  cublasLtHandle_t lt = nullptr;
  void *workspace = nullptr;
  size_t workspaceBytes = 0;
  /// The input of a denseHalf or denseFp8 at its operands' width
  /// (ModelConfig::operandScratchBytes).
  uint8_t *operandScratch = nullptr;
  size_t operandScratchBytes = 0;
  int *error = nullptr;     // mapped host word: the site of a failed check, 0 if none
  int *hostError = nullptr; // the same word at its host address, for host work
  const kiln_abi_exec *hostThreads = nullptr; // the session's CPU threads, for host work
  /// The tables kept in host memory (the last weights: embedded, or mapped
  /// from the weights file).
  const uint8_t *hostWeights = nullptr;
  Precision precision = Precision::Fp32;
  int maxBlocks = 65535;
  /// The message of the op being emitted (set by the generated code before a
  /// checked op); sites[i - 1] is the message of site i.
  const char *reason = nullptr;
  const char *sites[kMaxSites] = {};
  int numSites = 0;
  /// The first failed CUDA or cuBLASLt call while the entry point ran.
  const char *failedCall = nullptr;
  int failedCode = 0;
  /// Device copies of the kernels' small tables (embedding tables' layout,
  /// interaction pairs): made in the eager run, reused by the capture.
  std::vector<void *> persisted;
  size_t persistCursor = 0;
  /// The same for host work.
  std::vector<std::unique_ptr<HostWork>> hostWork;
  size_t hostWorkCursor = 0;
  bool capturing = false;
};

inline void check(Exec *e, cudaError_t status, const char *what) {
  if (status != cudaSuccess && !e->failedCall) {
    e->failedCall = what;
    e->failedCode = int(status);
  }
}

inline void checkLt(Exec *e, cublasStatus_t status, const char *what) {
  if (status != CUBLAS_STATUS_SUCCESS && !e->failedCall) {
    e->failedCall = what;
    e->failedCode = 100000 + int(status);
  }
}

/// The site number of the op being run (its message registered once).
inline int site(Exec *e) {
  const char *reason = e->reason ? e->reason : "a kernel: index out of range";
  for (int i = 0; i < e->numSites; ++i)
    if (e->sites[i] == reason)
      return i + 1;
  if (e->numSites == kMaxSites)
    return kMaxSites;
  e->sites[e->numSites++] = reason;
  return e->numSites;
}

/// A device copy of `n` host values that lives as long as the session.
template <typename T> const T *persist(Exec *e, const T *host, int64_t n) {
  if (e->capturing)
    return e->persistCursor < e->persisted.size()
               ? static_cast<const T *>(e->persisted[e->persistCursor++])
               : nullptr;
  void *device = nullptr;
  check(e, cudaMalloc(&device, std::max<int64_t>(n, 1) * sizeof(T)), "cudaMalloc");
  if (!device)
    return nullptr;
  e->persisted.push_back(device);
  check(e, cudaMemcpy(device, host, n * sizeof(T), cudaMemcpyHostToDevice), "cudaMemcpy");
  return static_cast<const T *>(device);
}

/// Generated code's failure path (the CPU kernels' signature); device
/// kernels report through the error word instead, so this is not reached.
inline int fail(char *message, size_t size, const char *what) {
  std::snprintf(message, size, "%s", what);
  return 1;
}

/// Records a failed check: the error word is mapped host memory, read by the
/// session after the replay (any one failing site is reported).
inline __device__ void flag(int *error, int site) {
  *reinterpret_cast<volatile int *>(error) = site;
}

template <typename F> __global__ void forEachKernel(int64_t n, F f) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    f(i);
}

/// f(i) for every i in [0, n), on a grid-stride loop.
template <typename F> void forEach(int64_t n, Exec *e, F f) {
  if (n <= 0)
    return;
  int64_t blocks = std::min<int64_t>((n + kThreads - 1) / kThreads, e->maxBlocks);
  forEachKernel<<<unsigned(blocks), kThreads, 0, e->stream>>>(n, f);
  check(e, cudaGetLastError(), "kernel launch");
}

inline Dims dims(const int64_t *values, int rank) {
  Dims d{};
  for (int i = 0; i < rank && i < kMaxRank; ++i)
    d.v[i] = values[i];
  return d;
}

/// Row-major strides of `shape` right-aligned to `out`'s rank, 0 where a
/// dim of size 1 is broadcast.
inline Dims broadcastStrides(const int64_t *shape, int shapeRank, const int64_t *out, int rank) {
  Dims s{};
  int64_t stride = 1;
  for (int d = rank - 1; d >= 0; --d) {
    int i = d - (rank - shapeRank);
    int64_t size = i >= 0 ? shape[i] : 1;
    s.v[d] = (size == 1 && out[d] != 1) ? 0 : stride;
    stride *= size;
  }
  return s;
}

inline Dims rowMajorStrides(const int64_t *shape, int rank) {
  Dims s{};
  int64_t stride = 1;
  for (int d = rank - 1; d >= 0; --d) {
    s.v[d] = stride;
    stride *= shape[d];
  }
  return s;
}

inline int64_t elementCount(const int64_t *shape, int rank) {
  int64_t n = 1;
  for (int d = 0; d < rank; ++d)
    n *= shape[d];
  return n;
}

/// The offset of flat output element i under `strides` (shape `shape`).
__host__ __device__ inline int64_t offsetOf(int64_t i, const Dims &shape, const Dims &strides,
                                            int rank) {
  int64_t offset = 0;
  for (int d = rank - 1; d >= 0; --d) {
    offset += i % shape.v[d] * strides.v[d];
    i /= shape.v[d];
  }
  return offset;
}

// ---- elementwise ----------------------------------------------------------

template <typename T, typename R, typename Fn>
void binary(const T *a, const int64_t *aShape, int aRank, const T *b, const int64_t *bShape,
            int bRank, R *out, const int64_t *outShape, int rank, Fn fn, int64_t outStride,
            Exec *e) {
  const int64_t total = elementCount(outShape, rank);
  const int64_t aCount = elementCount(aShape, aRank), bCount = elementCount(bShape, bRank);
  if (outStride == 0 && (aCount == total || aCount == 1) && (bCount == total || bCount == 1)) {
    const int64_t as = aCount == total ? 1 : 0, bs = bCount == total ? 1 : 0;
    forEach(total, e, [=] __device__(int64_t i) { out[i] = fn(a[i * as], b[i * bs]); });
    return;
  }
  const Dims shape = dims(outShape, rank), sa = broadcastStrides(aShape, aRank, outShape, rank),
             sb = broadcastStrides(bShape, bRank, outShape, rank);
  const int64_t inner = rank ? outShape[rank - 1] : 1, row = outStride ? outStride : inner;
  forEach(total, e, [=] __device__(int64_t i) {
    out[i / inner * row + i % inner] =
        fn(a[offsetOf(i, shape, sa, rank)], b[offsetOf(i, shape, sb, rank)]);
  });
}

template <typename T, typename R, typename Fn>
void unary(const T *in, R *out, int64_t n, Fn fn, Exec *e) {
  forEach(n, e, [=] __device__(int64_t i) { out[i] = fn(in[i]); });
}

template <typename From, typename To> void cast(const From *in, To *out, int64_t n, Exec *e) {
  forEach(n, e, [=] __device__(int64_t i) { out[i] = scalar::convert<To>(in[i]); });
}

inline void copy(void *out, const void *in, size_t bytes, Exec *e) {
  if (bytes && out != in)
    check(e, cudaMemcpyAsync(out, in, bytes, cudaMemcpyDeviceToDevice, e->stream),
          "cudaMemcpyAsync");
}

template <typename T>
void select(const bool *cond, const int64_t *cShape, int cRank, const T *x, const int64_t *xShape,
            int xRank, const T *y, const int64_t *yShape, int yRank, T *out,
            const int64_t *outShape, int rank, Exec *e) {
  const Dims shape = dims(outShape, rank), sc = broadcastStrides(cShape, cRank, outShape, rank),
             sx = broadcastStrides(xShape, xRank, outShape, rank),
             sy = broadcastStrides(yShape, yRank, outShape, rank);
  forEach(elementCount(outShape, rank), e, [=] __device__(int64_t i) {
    out[i] = cond[offsetOf(i, shape, sc, rank)] ? x[offsetOf(i, shape, sx, rank)]
                                                : y[offsetOf(i, shape, sy, rank)];
  });
}

/// out[i...] = in[offset + sum_d i_d * strides[d]].
template <typename T>
void stridedCopy(const T *in, int64_t offset, const Dims &strides, const int64_t *outShape,
                 int rank, T *out, Exec *e) {
  const Dims shape = dims(outShape, rank);
  forEach(elementCount(outShape, rank), e,
          [=] __device__(int64_t i) { out[i] = in[offset + offsetOf(i, shape, strides, rank)]; });
}

template <typename T>
void broadcastTo(const T *in, const int64_t *inShape, int inRank, const int64_t *outShape, int rank,
                 T *out, Exec *e) {
  stridedCopy(in, 0, broadcastStrides(inShape, inRank, outShape, rank), outShape, rank, out, e);
}

template <typename T>
void transpose(const T *in, const int64_t *inShape, const int64_t *perm, int rank, T *out,
               Exec *e) {
  const Dims inStrides = rowMajorStrides(inShape, rank);
  Dims strides{};
  int64_t outShape[kMaxRank];
  for (int d = 0; d < rank; ++d) {
    outShape[d] = inShape[perm[d]];
    strides.v[d] = inStrides.v[perm[d]];
  }
  stridedCopy(in, 0, strides, outShape, rank, out, e);
}

template <typename T>
void slice(const T *in, const int64_t *inShape, const int64_t *starts, const int64_t *steps,
           const int64_t *outShape, int rank, T *out, Exec *e) {
  const Dims inStrides = rowMajorStrides(inShape, rank);
  Dims strides{};
  int64_t offset = 0;
  for (int d = 0; d < rank; ++d) {
    offset += starts[d] * inStrides.v[d];
    strides.v[d] = steps[d] * inStrides.v[d];
  }
  stridedCopy(in, offset, strides, outShape, rank, out, e);
}

template <typename T>
void pad(const T *in, const int64_t *inShape, const int64_t *begin, const int64_t *outShape,
         int rank, T value, T *out, Exec *e) {
  const Dims shape = dims(outShape, rank), inDims = dims(inShape, rank), from = dims(begin, rank),
             inStrides = rowMajorStrides(inShape, rank);
  forEach(elementCount(outShape, rank), e, [=] __device__(int64_t n) {
    int64_t src = 0, i = n;
    bool inside = true;
    for (int d = rank - 1; d >= 0; --d) {
      int64_t at = i % shape.v[d] - from.v[d];
      i /= shape.v[d];
      inside = inside && at >= 0 && at < inDims.v[d];
      src += at * inStrides.v[d];
    }
    out[n] = inside ? in[src] : value;
  });
}

template <typename T>
void concatPart(const T *in, T *out, int64_t outer, int64_t chunk, int64_t rowSize, int64_t offset,
                Exec *e) {
  forEach(outer * chunk, e,
          [=] __device__(int64_t i) { out[i / chunk * rowSize + offset + i % chunk] = in[i]; });
}

template <typename T>
void trilu(const T *in, T *out, int64_t batch, int64_t rows, int64_t cols, bool upper, int64_t k,
           Exec *e) {
  forEach(batch * rows * cols, e, [=] __device__(int64_t n) {
    int64_t j = n % cols, i = n / cols % rows;
    out[n] = (upper ? j - i >= k : j - i <= k) ? in[n] : T(0);
  });
}

template <typename T>
void cumsum(const T *in, T *out, int64_t outer, int64_t axis, int64_t inner, bool exclusive,
            bool reverse, Exec *e) {
  forEach(outer * inner, e, [=] __device__(int64_t r) {
    const int64_t base = r / inner * axis * inner + r % inner;
    T sum = 0;
    for (int64_t s = 0; s < axis; ++s) {
      int64_t at = base + (reverse ? axis - 1 - s : s) * inner;
      T x = in[at];
      out[at] = exclusive ? sum : sum + x;
      sum += x;
    }
  });
}

template <typename T>
void argExtreme(const T *in, int64_t *out, int64_t outer, int64_t axis, int64_t inner, bool max,
                bool last, Exec *e) {
  forEach(outer * inner, e, [=] __device__(int64_t r) {
    const T *x = in + r / inner * axis * inner + r % inner;
    int64_t best = 0;
    for (int64_t a = 1; a < axis; ++a) {
      T v = x[a * inner], b = x[best * inner];
      if (max ? (v > b || (last && v == b)) : (v < b || (last && v == b)))
        best = a;
    }
    out[r] = best;
  });
}

template <typename T, typename I>
bool gatherElements(const T *data, const int64_t *dataShape, const I *indices,
                    const int64_t *indexShape, int rank, int axisDim, T *out, Exec *e) {
  const Dims shape = dims(indexShape, rank), strides = rowMajorStrides(dataShape, rank);
  const int64_t axis = dataShape[axisDim];
  int *error = e->error;
  const int where = site(e);
  forEach(elementCount(indexShape, rank), e, [=] __device__(int64_t n) {
    I k = indices[n];
    if (k < -axis || k >= axis) {
      flag(error, where);
      k = 0;
    }
    int64_t src = 0, i = n;
    for (int d = rank - 1; d >= 0; --d) {
      int64_t at = i % shape.v[d];
      i /= shape.v[d];
      src += (d == axisDim ? (k < 0 ? k + axis : int64_t(k)) : at) * strides.v[d];
    }
    out[n] = data[src];
  });
  return true;
}

template <typename T, typename I>
bool gather(const T *data, const I *indices, T *out, int64_t outer, int64_t axis,
            int64_t numIndices, int64_t inner, int64_t outStride, Exec *e) {
  int *error = e->error;
  const int where = site(e);
  forEach(outer * numIndices * inner, e, [=] __device__(int64_t n) {
    const int64_t r = n / inner, c = n % inner, o = r / numIndices;
    I k = indices[r % numIndices];
    if (k < -axis || k >= axis) {
      flag(error, where);
      k = 0;
    }
    out[r * outStride + c] = data[(o * axis + (k < 0 ? k + axis : int64_t(k))) * inner + c];
  });
  return true;
}

// ---- reductions -----------------------------------------------------------

__device__ inline float warpSum(float v) {
  for (int o = 16; o > 0; o >>= 1)
    v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ inline float warpMax(float v) {
  for (int o = 16; o > 0; o >>= 1)
    v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

/// Reduces the dims flagged in `reduced`: one thread per output, walking
/// the reduced elements.
template <typename T, typename Combine>
void reduce(const T *in, const int64_t *inShape, const bool *reduced, int rank, T *out, T init,
            Combine combine, bool mean, Exec *e) {
  const Dims strides = rowMajorStrides(inShape, rank);
  Dims keptShape{}, keptStrides{}, redShape{}, redStrides{};
  int kept = 0, red = 0;
  int64_t outTotal = 1, count = 1;
  for (int d = 0; d < rank; ++d) {
    if (reduced[d]) {
      redShape.v[red] = inShape[d];
      redStrides.v[red++] = strides.v[d];
      count *= inShape[d];
    } else {
      keptShape.v[kept] = inShape[d];
      keptStrides.v[kept++] = strides.v[d];
      outTotal *= inShape[d];
    }
  }
  if constexpr (sizeof(T) >= 4) {
    if (count >= 32) { // a warp per output, lanes splitting the reduced elements
      forEach(outTotal * 32, e, [=] __device__(int64_t i) {
        const int64_t o = i / 32;
        const T *x = in + offsetOf(o, keptShape, keptStrides, kept);
        T y = init;
        for (int64_t r = i % 32; r < count; r += 32)
          y = combine(y, x[offsetOf(r, redShape, redStrides, red)]);
        for (int offset = 16; offset > 0; offset >>= 1)
          y = combine(y, __shfl_xor_sync(0xffffffffu, y, offset));
        if (i % 32 == 0)
          out[o] = mean ? T(y / T(count)) : y;
      });
      return;
    }
  }
  forEach(outTotal, e, [=] __device__(int64_t o) {
    const T *x = in + offsetOf(o, keptShape, keptStrides, kept);
    T y = init;
    for (int64_t r = 0; r < count; ++r)
      y = combine(y, x[offsetOf(r, redShape, redStrides, red)]);
    out[o] = mean && count > 0 ? T(y / T(count)) : y;
  });
}

/// One warp per row of `n` elements `stride` apart: softmax or log-softmax.
template <typename T>
__global__ void softmaxKernel(const T *in, T *out, int64_t rows, int64_t n, int64_t inner,
                              bool log) {
  const int64_t row = blockIdx.x * int64_t(blockDim.x / 32) + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (row >= rows)
    return;
  const int64_t base = row / inner * n * inner + row % inner;
  float m = -INFINITY;
  for (int64_t a = lane; a < n; a += 32)
    m = fmaxf(m, float(in[base + a * inner]));
  m = warpMax(m);
  float sum = 0;
  for (int64_t a = lane; a < n; a += 32)
    sum += expf(float(in[base + a * inner]) - m);
  sum = warpSum(sum);
  const float logSum = logf(sum);
  for (int64_t a = lane; a < n; a += 32) {
    float x = float(in[base + a * inner]) - m;
    out[base + a * inner] = T(log ? x - logSum : expf(x) / sum);
  }
}

template <typename T>
void softmax(const T *in, T *out, int64_t outer, int64_t axis, int64_t inner, bool log, Exec *e) {
  const int64_t rows = outer * inner;
  if (rows <= 0)
    return;
  softmaxKernel<<<unsigned((rows + 7) / 8), 256, 0, e->stream>>>(in, out, rows, axis, inner, log);
  check(e, cudaGetLastError(), "softmax launch");
}

/// One warp per row: mean and variance in two passes over the row.
template <typename T>
__global__ void layerNormKernel(const T *in, const T *scale, int64_t scaleSize, const T *bias,
                                int64_t biasSize, T *out, int64_t outer, int64_t inner,
                                float epsilon, bool rms) {
  const int64_t row = blockIdx.x * int64_t(blockDim.x / 32) + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (row >= outer)
    return;
  const T *x = in + row * inner;
  T *y = out + row * inner;
  float mean = 0;
  if (!rms) {
    for (int64_t i = lane; i < inner; i += 32)
      mean += float(x[i]);
    mean = warpSum(mean) / float(inner);
  }
  float var = 0;
  for (int64_t i = lane; i < inner; i += 32) {
    float d = float(x[i]) - mean;
    var += d * d;
  }
  const float inv = rsqrtf(warpSum(var) / float(inner) + epsilon);
  for (int64_t i = lane; i < inner; i += 32) {
    float v = (float(x[i]) - mean) * inv * float(scale[scaleSize == 1 ? 0 : i]);
    y[i] = T(bias ? v + float(bias[biasSize == 1 ? 0 : i]) : v);
  }
}

template <typename T>
void layerNorm(const T *in, const T *scale, int64_t scaleSize, const T *bias, int64_t biasSize,
               T *out, int64_t outer, int64_t inner, double epsilon, bool rms, Exec *e) {
  if (outer <= 0)
    return;
  layerNormKernel<<<unsigned((outer + 7) / 8), 256, 0, e->stream>>>(
      in, scale, scaleSize, bias, biasSize, out, outer, inner, float(epsilon), rms);
  check(e, cudaGetLastError(), "layer_norm launch");
}

// ---- products -------------------------------------------------------------

/// The largest power of two up to 16 that divides every byte address and
/// byte stride of an operand: cuBLASLt picks kernels for that alignment.
inline uint32_t alignmentOf(const void *p, int64_t ld, size_t element) {
  uint64_t bits = reinterpret_cast<uintptr_t>(p) | uint64_t(ld * element) | 16u;
  return uint32_t(bits & (~bits + 1));
}

/// A dense layer of at most kFewRows rows and kFewRowsWeightBytes of weights in one
/// kernel: a block takes kFewColumns columns, its 256 threads split the
/// depth 32 ways (each warp reading 32-byte runs of 4 weight rows), the
/// partial sums meet in shared memory and the epilogue is applied before the
/// single store. For such layers cuBLASLt's GEMV, split-K reduction and
/// epilogue kernels are three launches of a few microseconds each; larger
/// weights stream faster through cuBLASLt (measured on an H100: 20 us
/// against 7 us for 7 MB).
constexpr int kFewRows = 8, kFewColumns = 8, kDepthGroups = 32;
constexpr int64_t kFewRowsWeightBytes = int64_t(1) << 20;

/// A weight as f32: an f32 as it is, a 16-bit one from its bit pattern.
inline __device__ float weightValue(float w) { return w; }
template <HalfFormat F> __device__ float weightValue(uint16_t w) {
  if constexpr (F == HalfFormat::Bf16)
    return __uint_as_float(uint32_t(w) << 16);
  else
    return __half2float(__ushort_as_half(w));
}

template <typename W, HalfFormat F = HalfFormat::Bf16>
__global__ void denseFewRowsKernel(const float *x, int64_t ldx, const W *w, int64_t depth,
                                   int64_t units, float *y, int64_t ldy, int rows, Epilogue ep) {
  __shared__ float part[kDepthGroups][kFewRows][kFewColumns];
  const int column = threadIdx.x % kFewColumns, group = threadIdx.x / kFewColumns;
  const int64_t n = blockIdx.x * int64_t(kFewColumns) + column;
  float acc[kFewRows] = {};
  if (n < units) {
#pragma unroll 4
    for (int64_t k = group; k < depth; k += kDepthGroups) {
      float wk;
      if constexpr (std::is_same_v<W, float>)
        wk = weightValue(w[k * units + n]);
      else
        wk = weightValue<F>(w[k * units + n]);
#pragma unroll
      for (int m = 0; m < kFewRows; ++m)
        if (m < rows)
          acc[m] += x[m * ldx + k] * wk;
    }
  }
#pragma unroll
  for (int m = 0; m < kFewRows; ++m)
    part[group][m][column] = acc[m];
  __syncthreads();
  if (threadIdx.x < rows * kFewColumns) {
    const int m = threadIdx.x / kFewColumns, c = threadIdx.x % kFewColumns;
    const int64_t out = blockIdx.x * int64_t(kFewColumns) + c;
    if (out < units) {
      float v = 0;
      for (int g = 0; g < kDepthGroups; ++g)
        v += part[g][m][c];
      y[m * ldy + out] = applyEpilogue(v, ep, m, out);
    }
  }
}

/// How denseLt's operands are stored and multiplied.
struct LtOperands {
  cudaDataType_t type; // of x and w
  size_t elementBytes;
  cublasComputeType_t compute;
  /// fp8: w is [units, depth] (cuBLASLt's "TN" layout), and x and w carry
  /// device scales.
  bool transposedWeights = false;
  const float *wScale = nullptr, *xScale = nullptr;
};

/// Runs the layer in denseFewRowsKernel when it is few rows over at most
/// kFewRowsWeightBytes of weights; false otherwise (cuBLASLt's then).
template <typename W, HalfFormat F = HalfFormat::Bf16>
bool denseFewRows(const float *x, int64_t ldx, const W *w, int64_t depth, int64_t units, float *y,
                  int64_t ldy, int64_t rows, const Epilogue &ep, Exec *e) {
  if (rows > kFewRows || depth * units * int64_t(sizeof(W)) > kFewRowsWeightBytes)
    return false;
  denseFewRowsKernel<W, F>
      <<<unsigned((units + kFewColumns - 1) / kFewColumns), kFewColumns * kDepthGroups, 0,
         e->stream>>>(x, ldx, w, depth, units, y, ldy, int(rows), ep);
  check(e, cudaGetLastError(), "dense launch");
  return true;
}

/// One cuBLASLt product y = epilogue(x w) in the layout of dense() below.
inline void denseLt(const void *x, int64_t ldx, const void *w, int64_t depth, int64_t units,
                    float *y, int64_t ldy, int64_t rows, const Epilogue &ep, Exec *e,
                    const LtOperands &o) {
  const bool ltActivation =
      ep.activation == Activation::Relu || ep.activation == Activation::GeluTanh;
  const bool ltResidual = ep.residual && ep.activation == Activation::None && !ep.multiplier;
  cublasLtEpilogue_t epilogue = CUBLASLT_EPILOGUE_DEFAULT;
  if (ep.activation == Activation::Relu)
    epilogue = ep.bias ? CUBLASLT_EPILOGUE_RELU_BIAS : CUBLASLT_EPILOGUE_RELU;
  else if (ep.activation == Activation::GeluTanh)
    epilogue = ep.bias ? CUBLASLT_EPILOGUE_GELU_BIAS : CUBLASLT_EPILOGUE_GELU;
  else if (ep.bias)
    epilogue = CUBLASLT_EPILOGUE_BIAS;

  // Column-major: y^T [units, rows] = w^T [units, depth] x^T [depth, rows];
  // transposed weights are op(A) = T of A [depth, units].
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr, d = nullptr;
  cublasLtMatmulPreference_t pref = nullptr;
  checkLt(e, cublasLtMatmulDescCreate(&op, o.compute, CUDA_R_32F), "cublasLtMatmulDescCreate");
  auto set = [&](cublasLtMatmulDescAttributes_t attribute, const void *value, size_t bytes) {
    checkLt(e, cublasLtMatmulDescSetAttribute(op, attribute, value, bytes),
            "cublasLtMatmulDescSetAttribute");
  };
  set(CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue, sizeof epilogue);
  if (ep.bias) // f32, as D
    set(CUBLASLT_MATMUL_DESC_BIAS_POINTER, &ep.bias, sizeof ep.bias);
  if (o.transposedWeights) {
    const cublasOperation_t transposed = CUBLAS_OP_T;
    set(CUBLASLT_MATMUL_DESC_TRANSA, &transposed, sizeof transposed);
  }
  if (o.wScale)
    set(CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &o.wScale, sizeof o.wScale);
  if (o.xScale)
    set(CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &o.xScale, sizeof o.xScale);
  const float *cPtr = ltResidual ? ep.residual : y;
  const int64_t ldc = ltResidual ? ep.stride : ldy;
  const int64_t lda = o.transposedWeights ? depth : units;
  checkLt(e,
          o.transposedWeights ? cublasLtMatrixLayoutCreate(&a, o.type, depth, units, depth)
                              : cublasLtMatrixLayoutCreate(&a, o.type, units, depth, units),
          "cublasLtMatrixLayoutCreate");
  checkLt(e, cublasLtMatrixLayoutCreate(&b, o.type, depth, rows, ldx),
          "cublasLtMatrixLayoutCreate");
  checkLt(e, cublasLtMatrixLayoutCreate(&c, CUDA_R_32F, units, rows, ldc),
          "cublasLtMatrixLayoutCreate");
  checkLt(e, cublasLtMatrixLayoutCreate(&d, CUDA_R_32F, units, rows, ldy),
          "cublasLtMatrixLayoutCreate");
  checkLt(e, cublasLtMatmulPreferenceCreate(&pref), "cublasLtMatmulPreferenceCreate");
  const uint64_t workspace = e->workspaceBytes;
  const uint32_t alignA = alignmentOf(w, lda, o.elementBytes),
                 alignB = alignmentOf(x, ldx, o.elementBytes), alignC = alignmentOf(cPtr, ldc, 4),
                 alignD = alignmentOf(y, ldy, 4);
  cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &workspace,
                                       sizeof workspace);
  cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &alignA,
                                       sizeof alignA);
  cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &alignB,
                                       sizeof alignB);
  cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &alignC,
                                       sizeof alignC);
  cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &alignD,
                                       sizeof alignD);
  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  checkLt(e, cublasLtMatmulAlgoGetHeuristic(e->lt, op, a, b, c, d, pref, 1, &result, &found),
          "cublasLtMatmulAlgoGetHeuristic");
  if (found == 0)
    checkLt(e, CUBLAS_STATUS_NOT_SUPPORTED, "cublasLtMatmulAlgoGetHeuristic (no algorithm)");
  const float alpha = 1, beta = ltResidual ? 1 : 0;
  if (found > 0)
    checkLt(e,
            cublasLtMatmul(e->lt, op, &alpha, w, a, x, b, &beta, cPtr, c, y, d, &result.algo,
                           e->workspace, e->workspaceBytes, e->stream),
            "cublasLtMatmul");
  cublasLtMatmulPreferenceDestroy(pref);
  cublasLtMatrixLayoutDestroy(a);
  cublasLtMatrixLayoutDestroy(b);
  cublasLtMatrixLayoutDestroy(c);
  cublasLtMatrixLayoutDestroy(d);
  cublasLtMatmulDescDestroy(op);

  const Activation rest = ltActivation ? Activation::None : ep.activation;
  const float *mult = ep.multiplier, *res = ltResidual ? nullptr : ep.residual;
  if (rest == Activation::None && !mult && !res)
    return;
  const Epilogue tail{nullptr, mult, res, ep.stride, rest};
  forEach(rows * units, e, [=] __device__(int64_t i) {
    const int64_t m = i / units, n = i % units;
    y[m * ldy + n] = applyEpilogue(y[m * ldy + n], tail, m, n);
  });
}

/// y[rows, units] (rows `ldy` apart) = epilogue(x[rows, depth] (rows `ldx`
/// apart) times w[depth, units]): few rows in denseFewRowsKernel, more
/// through cuBLASLt. The bias, ReLU and tanh
/// GELU run in cuBLASLt's epilogue, a residual as its C operand when
/// nothing comes between; what remains runs as one elementwise pass.
inline void dense(const float *x, int64_t ldx, const float *w, int64_t depth, int64_t units,
                  float *y, int64_t ldy, int64_t rows, const Epilogue &ep, Exec *e) {
  if (rows <= 0 || denseFewRows(x, ldx, w, depth, units, y, ldy, rows, ep, e))
    return;
  denseLt(x, ldx, w, depth, units, y, ldy, rows, ep, e,
          {CUDA_R_32F, sizeof(float),
           e->precision == Precision::Tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F});
}

/// dense() with 16-bit weights (kiln compile --precision bf16|fp16), f32
/// accumulation: few rows read the weights in denseFewRowsKernel; more
/// rows are converted to the weights' format in the session's operand
/// scratch and multiplied by cuBLASLt on 16-bit operands.
template <HalfFormat F>
void denseHalf(const float *x, int64_t ldx, const uint16_t *w, int64_t depth, int64_t units,
               float *y, int64_t ldy, int64_t rows, const Epilogue &ep, Exec *e) {
  if (rows <= 0 || denseFewRows<uint16_t, F>(x, ldx, w, depth, units, y, ldy, rows, ep, e))
    return;
  if (size_t(rows * depth) * sizeof(uint16_t) > e->operandScratchBytes) {
    check(e, cudaErrorInvalidValue, "denseHalf: the input exceeds the operand scratch");
    return;
  }
  uint16_t *half = reinterpret_cast<uint16_t *>(e->operandScratch);
  forEach(rows * depth, e, [=] __device__(int64_t i) {
    const float v = x[i / depth * ldx + i % depth];
    uint16_t *to = half + i;
    if constexpr (F == HalfFormat::Bf16)
      *to = __bfloat16_as_ushort(__float2bfloat16_rn(v));
    else
      *to = __half_as_ushort(__float2half_rn(v));
  });
  denseLt(half, depth, w, depth, units, y, ldy, rows, ep, e,
          {F == HalfFormat::Bf16 ? CUDA_R_16BF : CUDA_R_16F, sizeof(uint16_t), CUBLAS_COMPUTE_32F});
}

/// The rows denseFp8 multiplies: a multiple of 16, as cuBLASLt's fp8
/// kernels want every dimension (the added rows are zeros).
inline int64_t fp8Rows(int64_t rows) { return (rows + 15) / 16 * 16; }

/// The operand scratch denseFp8 uses: the E4M3 input [fp8Rows, depth], then
/// (256-byte aligned) the f32 product [fp8Rows, units].
inline size_t fp8ScratchBytes(int64_t rows, int64_t depth, int64_t units) {
  return (size_t(fp8Rows(rows) * depth) + 255) / 256 * 256 +
         size_t(fp8Rows(rows) * units) * sizeof(float);
}

/// dense() with fp8 E4M3 weights (kiln compile --precision fp8, Hopper and
/// Ada), stored transposed ([units, depth]) with one scale `wScale` (device
/// memory). The input is quantised to E4M3 with the calibrated `inputScale`
/// into the operand scratch; cuBLASLt multiplies the two in the "TN" layout
/// its fp8 kernels need, accumulating in f32 and applying both scales, into
/// an aligned product in the scratch (y may be rows of a concat's buffer);
/// one elementwise pass applies the epilogue and stores y.
inline void denseFp8(const float *x, int64_t ldx, const uint8_t *w, const float *wScale,
                     int64_t depth, int64_t units, float *y, int64_t ldy, int64_t rows,
                     float inputScale, const Epilogue &ep, Exec *e) {
  const float *xScale = persist(e, &inputScale, 1);
  if (rows <= 0 || !xScale)
    return;
  if (fp8ScratchBytes(rows, depth, units) > e->operandScratchBytes) {
    check(e, cudaErrorInvalidValue, "denseFp8: the layer exceeds the operand scratch");
    return;
  }
  const int64_t padded = fp8Rows(rows);
  uint8_t *q = e->operandScratch;
  float *product = reinterpret_cast<float *>(q + (size_t(padded * depth) + 255) / 256 * 256);
  const float inverse = 1.0f / inputScale;
  forEach(padded * depth, e, [=] __device__(int64_t i) {
    const int64_t m = i / depth;
    q[i] = m < rows
               ? __nv_cvt_float_to_fp8(x[m * ldx + i % depth] * inverse, __NV_SATFINITE, __NV_E4M3)
               : __nv_fp8_storage_t(0);
  });
  denseLt(q, depth, w, depth, units, product, units, padded, Epilogue{}, e,
          {CUDA_R_8F_E4M3, 1, CUBLAS_COMPUTE_32F, /*transposedWeights=*/true, wScale, xScale});
  const Epilogue epilogue = ep;
  forEach(rows * units, e, [=] __device__(int64_t i) {
    const int64_t m = i / units, n = i % units;
    y[m * ldy + n] = applyEpilogue(product[i], epilogue, m, n);
  });
}

/// Y = alpha op(A) op(B) + beta C (ONNX Gemm with a computed B): one thread
/// per output. Layers against constant weights are kiln.dense instead.
template <typename T>
void gemm(const T *A, const T *B, const T *C, int64_t cRows, int64_t cCols, T *Y, int64_t M,
          int64_t N, int64_t K, bool transA, bool transB, T alpha, T beta, Exec *e) {
  forEach(M * N, e, [=] __device__(int64_t i) {
    const int64_t m = i / N, n = i % N;
    T acc = 0;
    for (int64_t k = 0; k < K; ++k)
      acc += A[transA ? k * M + m : m * K + k] * B[transB ? n * K + k : k * N + n];
    // As on the CPU, C is not read when beta is 0 (ONNX: C may then hold anything).
    T c = C && beta != T(0) ? C[(cRows == 1 ? 0 : m) * cCols + (cCols == 1 ? 0 : n)] : T(0);
    Y[i] = alpha * acc + beta * c;
  });
}

/// Batched matmul with broadcast batch dims: one thread per output.
template <typename T>
void matmul(const T *lhs, const int64_t *lBatch, int lRank, const T *rhs, const int64_t *rBatch,
            int rRank, T *out, const int64_t *oBatch, int batchRank, int64_t M, int64_t N,
            int64_t K, Exec *e) {
  const Dims shape = dims(oBatch, batchRank),
             ls = broadcastStrides(lBatch, lRank, oBatch, batchRank),
             rs = broadcastStrides(rBatch, rRank, oBatch, batchRank);
  forEach(elementCount(oBatch, batchRank) * M * N, e, [=] __device__(int64_t i) {
    const int64_t mat = i / (M * N), m = i / N % M, n = i % N;
    const T *l = lhs + offsetOf(mat, shape, ls, batchRank) * M * K + m * K;
    const T *r = rhs + offsetOf(mat, shape, rs, batchRank) * K * N + n;
    T acc = 0;
    for (int64_t k = 0; k < K; ++k)
      acc += l[k] * r[k * N];
    out[i] = acc;
  });
}

/// DLRM's dot interaction: one block per sample, its features in shared
/// memory (rows padded by one float against bank conflicts).
__global__ inline void interactionKernel(const float *x, int64_t features, int64_t dim,
                                         const int64_t *pairs, int64_t count, float *out,
                                         int64_t outStride, bool shared) {
  extern __shared__ float z[];
  const int64_t b = blockIdx.x, pitch = shared ? dim + 1 : dim;
  const float *src = x + b * features * dim;
  if (shared) {
    for (int64_t i = threadIdx.x; i < features * dim; i += blockDim.x)
      z[i / dim * pitch + i % dim] = src[i];
    __syncthreads();
  }
  const float *rows = shared ? z : src;
  for (int64_t p = threadIdx.x; p < count; p += blockDim.x) {
    const float *u = rows + pairs[2 * p] * pitch, *v = rows + pairs[2 * p + 1] * pitch;
    float acc = 0;
    for (int64_t c = 0; c < dim; ++c)
      acc += u[c] * v[c];
    out[b * outStride + p] = acc;
  }
}

inline void interaction(const float *x, int64_t batch, int64_t features, int64_t dim,
                        const int64_t *pairs, int64_t count, float *out, int64_t outStride,
                        Exec *e) {
  const int64_t *devicePairs = persist(e, pairs, 2 * count);
  const size_t bytes = size_t(features) * (dim + 1) * sizeof(float);
  const bool shared = bytes <= 48 * 1024;
  if (batch <= 0 || !devicePairs)
    return;
  interactionKernel<<<unsigned(batch), 128, shared ? bytes : 0, e->stream>>>(
      x, features, dim, devicePairs, count, out, outStride, shared);
  check(e, cudaGetLastError(), "interaction launch");
}

/// Scaled dot-product attention in [batch, seq, heads, dim] layout (as the
/// CPU kernel): one block per (batch, head, chunk of kAttentionQueries
/// queries) with the head's keys and values in shared memory, each warp
/// taking one query at a time; a lane scores every 32nd key and sums
/// every 32nd output column, four independent sums at a time.
constexpr int kAttentionWarps = 8;
constexpr int kAttentionQueries = 16;

__global__ inline void attentionKernel(const float *q, const float *k, const float *v,
                                       const float *mask, Dims ms, float *out, int64_t sq,
                                       int64_t sk, int64_t heads, int64_t d, int64_t dv,
                                       float scale) {
  extern __shared__ float sh[];
  const int64_t chunks = (sq + kAttentionQueries - 1) / kAttentionQueries;
  const int64_t bh = blockIdx.x / chunks, b = bh / heads, h = bh % heads;
  const int64_t first = blockIdx.x % chunks * kAttentionQueries;
  const int64_t kp = d + 1; // key rows padded against bank conflicts
  float *keys = sh, *values = keys + sk * kp, *scores = values + sk * dv;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  float *p = scores + warp * (sk + d), *qi = p + sk;
  for (int64_t i = threadIdx.x; i < sk * d; i += blockDim.x)
    keys[i / d * kp + i % d] = k[((b * sk + i / d) * heads + h) * d + i % d];
  for (int64_t i = threadIdx.x; i < sk * dv; i += blockDim.x)
    values[i] = v[((b * sk + i / dv) * heads + h) * dv + i % dv];
  __syncthreads();
  const int64_t last = min(first + kAttentionQueries, sq);
  for (int64_t i = first + warp; i < last; i += kAttentionWarps) {
    for (int64_t c = lane; c < d; c += 32)
      qi[c] = q[((b * sq + i) * heads + h) * d + c];
    __syncwarp();
    const float *m = mask ? mask + b * ms.v[0] + h * ms.v[1] + i * ms.v[2] : nullptr;
    float best = -INFINITY;
    for (int64_t j0 = lane; j0 < sk; j0 += 4 * 32) {
      float s[4] = {0, 0, 0, 0};
      for (int64_t c = 0; c < d; ++c) {
        const float x = qi[c];
#pragma unroll
        for (int u = 0; u < 4; ++u)
          if (j0 + 32 * u < sk)
            s[u] += x * keys[(j0 + 32 * u) * kp + c];
      }
#pragma unroll
      for (int u = 0; u < 4; ++u) {
        const int64_t j = j0 + 32 * u;
        if (j < sk) {
          float score = s[u] * scale + (m ? m[j * ms.v[3]] : 0.0f);
          p[j] = score;
          best = fmaxf(best, score);
        }
      }
    }
    best = warpMax(best);
    float sum = 0;
    for (int64_t j = lane; j < sk; j += 32) {
      float e = expf(p[j] - best);
      p[j] = e;
      sum += e;
    }
    sum = warpSum(sum);
    __syncwarp();
    const float inv = 1 / sum;
    for (int64_t c = lane; c < dv; c += 32) {
      float acc[4] = {0, 0, 0, 0};
      int64_t j = 0;
      for (; j + 4 <= sk; j += 4)
#pragma unroll
        for (int u = 0; u < 4; ++u)
          acc[u] += p[j + u] * values[(j + u) * dv + c];
      for (; j < sk; ++j)
        acc[0] += p[j] * values[j * dv + c];
      out[((b * sq + i) * heads + h) * dv + c] = (acc[0] + acc[1] + acc[2] + acc[3]) * inv;
    }
    __syncwarp();
  }
}

inline void attention(const float *q, const float *k, const float *v, const float *mask,
                      const int64_t *maskStrides, float *out, int64_t batch, int64_t sq, int64_t sk,
                      int64_t heads, int64_t d, int64_t dv, float scale, Exec *e) {
  const size_t bytes = (size_t(sk) * (d + 1) + size_t(sk) * dv + kAttentionWarps * (sk + d)) * 4;
  if (bytes > 200 * 1024) {
    check(e, cudaErrorInvalidValue, "attention: one head's keys and values exceed shared memory");
    return;
  }
  if (!e->capturing)
    check(e,
          cudaFuncSetAttribute(attentionKernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                               int(bytes)),
          "cudaFuncSetAttribute");
  const int64_t blocks = batch * heads * ((sq + kAttentionQueries - 1) / kAttentionQueries);
  if (blocks <= 0)
    return;
  attentionKernel<<<unsigned(blocks), 32 * kAttentionWarps, bytes, e->stream>>>(
      q, k, v, mask, maskStrides ? dims(maskStrides, 4) : Dims{}, out, sq, sk, heads, d, dv, scale);
  check(e, cudaGetLastError(), "attention launch");
}

// ---- embeddings -----------------------------------------------------------

/// One table of embeddingBags (row-wise quantised tables are not supported
/// on this target; `host` ones are pooled on the CPU).
using cpu::BagTable;

/// A table as the kernel reads it: where its ids and its output start.
template <typename T> struct DeviceBagTable {
  const T *data;
  int64_t rows, dim, hotness, firstId, outOffset;
};

/// One warp per (sample, table). A row is read in chunks of V floats (16
/// bytes when the dims allow); a narrow row leaves lanes over, so the warp
/// splits into `slots` groups of lanes that each take every slots-th lookup,
/// four at a time (several rows in flight), and the groups' sums are added.
template <int V> struct Chunk { float v[V]; };

template <int V> __device__ inline Chunk<V> loadChunk(const float *p) {
  Chunk<V> c;
  if constexpr (V == 4) {
    float4 x = *reinterpret_cast<const float4 *>(p);
    c.v[0] = x.x, c.v[1] = x.y, c.v[2] = x.z, c.v[3] = x.w;
  } else {
    c.v[0] = *p;
  }
  return c;
}

template <int V, typename I>
__global__ void embeddingBagsKernel(const I *ids, int64_t batch, int64_t idsRow,
                                    const DeviceBagTable<float> *tables, int64_t count,
                                    const int64_t *columns, int mode, bool wrapNegative, float *out,
                                    int64_t outStride, int *error, int where) {
  const int64_t w = blockIdx.x * int64_t(blockDim.x / 32) + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (w >= batch * count)
    return;
  const int64_t b = w / count;
  const DeviceBagTable<float> t = tables[w % count];
  float *y = out + b * outStride + t.outOffset;
  const I *sample = ids + b * idsRow;
  const int64_t chunks = t.dim / V;
  const int slots = chunks >= 32 ? 1 : int(max(min(32 / chunks, t.hotness), int64_t(1)));
  const int slot = chunks >= 32 ? 0 : lane / int(chunks);
  const bool rows = mode == 3, max = mode == 2;
  auto rowOf = [&](int64_t l) {
    I id = sample[columns[t.firstId + l]];
    if (id < (wrapNegative ? -t.rows : 0) || id >= t.rows) {
      flag(error, where);
      id = 0;
    }
    return t.data + (id < 0 ? id + t.rows : int64_t(id)) * t.dim;
  };
  for (int64_t c0 = 0; c0 < chunks; c0 += 32) {
    const int64_t c = chunks >= 32 ? c0 + lane : lane % chunks;
    const bool active = slot < slots && c < chunks;
    Chunk<V> acc;
    for (int j = 0; j < V; ++j)
      acc.v[j] = max ? -INFINITY : 0.0f;
    for (int64_t l0 = slot; active && l0 < t.hotness; l0 += 4 * slots) {
      Chunk<V> part[4];
#pragma unroll
      for (int u = 0; u < 4; ++u)
        if (l0 + u * slots < t.hotness)
          part[u] = loadChunk<V>(rowOf(l0 + u * slots) + c * V);
#pragma unroll
      for (int u = 0; u < 4; ++u) {
        const int64_t l = l0 + u * slots;
        if (l >= t.hotness)
          continue;
        for (int j = 0; j < V; ++j) {
          if (rows)
            y[l * t.dim + c * V + j] = part[u].v[j];
          else
            acc.v[j] = max ? fmaxf(acc.v[j], part[u].v[j]) : acc.v[j] + part[u].v[j];
        }
      }
    }
    if (rows)
      continue;
    // Slot 0's lanes gather the other slots' results for their chunk.
    for (int k = 1; k < slots; ++k)
      for (int j = 0; j < V; ++j) {
        const float other = __shfl_sync(0xffffffffu, acc.v[j], (lane + k * int(chunks)) % 32);
        if (slot == 0)
          acc.v[j] = max ? fmaxf(acc.v[j], other) : acc.v[j] + other;
      }
    if (slot == 0 && c < chunks)
      for (int j = 0; j < V; ++j)
        y[c * V + j] = t.hotness == 0               ? 0.0f
                       : mode == 1 && t.hotness > 1 ? acc.v[j] / float(t.hotness)
                                                    : acc.v[j];
  }
}

/// The lookups of an op's host tables, pooled on the CPU: the ids are
/// copied into pinned memory, a host node runs the CPU kernel over them, and
/// each run of pooled values is copied into the output.
template <typename T, typename I> struct HostBagsWork final : HostWork {
  HostBags<T> part;
  uint8_t *pinned = nullptr; // the ids [batch, idsRow], then the pooled rows [batch, width]
  I *ids = nullptr;
  T *pooled = nullptr;
  int64_t batch = 0, idsRow = 0;
  int mode = 0;
  bool wrapNegative = false;
  int *error = nullptr;
  int where = 0;
  const kiln_abi_exec *threads = nullptr;

  ~HostBagsWork() override { cudaFreeHost(pinned); }
  void run() override {
    if (!cpu::embeddingBags<T, I>(ids, batch, idsRow, part.tables.data(),
                                  int64_t(part.tables.size()), part.columns.data(), mode,
                                  wrapNegative, pooled, part.width, threads))
      *reinterpret_cast<volatile int *>(error) = where;
  }
};

template <typename T, typename I>
void poolOnHost(const I *ids, int64_t batch, int64_t idsRow, const BagTable<T> *tables,
                int64_t count, const int64_t *columns, int mode, bool wrapNegative, T *out,
                int64_t outStride, int where, Exec *e) {
  using Work = HostBagsWork<T, I>;
  const size_t idsBytes = (size_t(batch * idsRow) * sizeof(I) + 63) / 64 * 64;
  Work *w = nullptr;
  if (e->capturing) {
    if (e->hostWorkCursor < e->hostWork.size())
      w = static_cast<Work *>(e->hostWork[e->hostWorkCursor++].get());
  } else {
    auto made = std::make_unique<Work>();
    made->part = splitHostBags(tables, count, columns, mode);
    made->batch = batch, made->idsRow = idsRow, made->mode = mode;
    made->wrapNegative = wrapNegative, made->error = e->hostError, made->where = where;
    made->threads = e->hostThreads;
    check(e,
          cudaHostAlloc(&made->pinned, idsBytes + size_t(batch * made->part.width) * sizeof(T) + 1,
                        cudaHostAllocDefault),
          "allocating pinned memory for host tables");
    made->ids = reinterpret_cast<I *>(made->pinned);
    made->pooled = reinterpret_cast<T *>(made->pinned + idsBytes);
    w = made.get();
    e->hostWork.push_back(std::move(made));
  }
  if (!w || !w->pinned || batch <= 0)
    return;
  check(e,
        cudaMemcpyAsync(w->ids, ids, size_t(batch * idsRow) * sizeof(I), cudaMemcpyDeviceToHost,
                        e->stream),
        "copying ids for host tables");
  check(e, cudaLaunchHostFunc(e->stream, HostWork::call, w), "cudaLaunchHostFunc");
  for (const auto &run : w->part.runs)
    check(e,
          cudaMemcpy2DAsync(out + run.to, size_t(outStride) * sizeof(T), w->pooled + run.from,
                            size_t(w->part.width) * sizeof(T), size_t(run.width) * sizeof(T),
                            size_t(batch), cudaMemcpyHostToDevice, e->stream),
          "copying host tables' rows");
}

template <typename T, typename I>
bool embeddingBags(const I *ids, int64_t batch, int64_t idsRow, const BagTable<T> *tables,
                   int64_t count, const int64_t *columns, int mode, bool wrapNegative, T *out,
                   int64_t outStride, Exec *e) {
  static_assert(std::is_same_v<T, float>, "f32 embedding tables");
  std::vector<DeviceBagTable<T>> layout;
  int64_t firstId = 0, outOffset = 0;
  bool onHost = false;
  for (int64_t t = 0; t < count; ++t) {
    if (tables[t].rowwise) {
      check(e, cudaErrorNotSupported, "embedding_bags: row-wise quantised tables");
      return true;
    }
    if (tables[t].host)
      onHost = true;
    else
      layout.push_back(
          {tables[t].data, tables[t].rows, tables[t].dim, tables[t].hotness, firstId, outOffset});
    firstId += tables[t].hotness;
    outOffset += mode == 3 ? tables[t].dim * tables[t].hotness : tables[t].dim;
  }
  const int where = site(e);
  if (onHost)
    poolOnHost(ids, batch, idsRow, tables, count, columns, mode, wrapNegative, out, outStride,
               where, e);
  if (layout.empty())
    return true;
  const int64_t onDevice = int64_t(layout.size());
  const DeviceBagTable<T> *deviceTables = persist(e, layout.data(), onDevice);
  const int64_t *deviceColumns = persist(e, columns, firstId);
  const int64_t warps = batch * onDevice;
  if (warps <= 0 || !deviceTables || !deviceColumns)
    return true;
  // 16-byte chunks when every device table's rows, and the output rows, allow them.
  bool vector = reinterpret_cast<uintptr_t>(out) % 16 == 0 && outStride % 4 == 0;
  for (const DeviceBagTable<T> &t : layout)
    vector = vector && t.dim % 4 == 0 && reinterpret_cast<uintptr_t>(t.data) % 16 == 0;
  auto launch = vector ? embeddingBagsKernel<4, I> : embeddingBagsKernel<1, I>;
  launch<<<unsigned((warps + 7) / 8), 256, 0, e->stream>>>(
      ids, batch, idsRow, deviceTables, onDevice, deviceColumns, mode, wrapNegative, out, outStride,
      e->error, where);
  check(e, cudaGetLastError(), "embedding_bags launch");
  return true;
}

/// ONNX-style bags over [begin[b], end[b]) of `indices`, optional per-id
/// weights: one warp per bag.
template <typename T, typename I>
__global__ void embeddingBagKernel(const T *table, int64_t rows, int64_t dim, const I *indices,
                                   int64_t numIndices, const I *begin, const I *end, int64_t bags,
                                   const T *weights, int mode, bool wrapNegative, T *out,
                                   int64_t outStride, int *error, int where) {
  const int64_t b = blockIdx.x * int64_t(blockDim.x / 32) + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (b >= bags)
    return;
  int64_t lo = begin[b], hi = end[b];
  if (lo < 0 || hi < lo || hi > numIndices) {
    flag(error, where);
    lo = hi = 0;
  }
  T *y = out + b * outStride;
  for (int64_t c = lane; c < dim; c += 32) {
    T acc = (mode == 2 && hi > lo) ? -INFINITY : T(0);
    for (int64_t j = lo; j < hi; ++j) {
      I id = indices[j];
      if (id < (wrapNegative ? -rows : 0) || id >= rows) {
        flag(error, where);
        continue;
      }
      const T x =
          table[(id < 0 ? id + rows : int64_t(id)) * dim + c] * (weights ? weights[j] : T(1));
      acc = mode == 2 ? fmaxf(acc, x) : acc + x;
    }
    y[c] = mode == 1 && hi > lo ? acc / T(hi - lo) : acc;
  }
}

template <typename T, typename I>
bool embeddingBag(const T *table, int64_t rows, int64_t dim, const I *indices, int64_t numIndices,
                  const I *begin, const I *end, int64_t bags, const T *weights, int mode,
                  bool wrapNegative, T *out, int64_t outStride, Exec *e) {
  const int where = site(e);
  if (bags <= 0)
    return true;
  embeddingBagKernel<<<unsigned((bags + 7) / 8), 256, 0, e->stream>>>(
      table, rows, dim, indices, numIndices, begin, end, bags, weights, mode, wrapNegative, out,
      outStride, e->error, where);
  check(e, cudaGetLastError(), "embedding_bag launch");
  return true;
}

} // namespace kiln::cuda

#endif
