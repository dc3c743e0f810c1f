// session.cuh - the device hooks (kiln_abi_device) of a CUDA model.
//
// Compiled into each CUDA model .so, so that the runtime library itself
// never links CUDA. Opening the model uploads its weights once. A session
// allocates, once, a device arena (the planned arena and the cuBLASLt
// workspace), pinned host staging for the inputs and outputs, a mapped error
// word and a stream; then, for every batch bucket, it runs the bucket's entry
// point once eagerly (loading modules and choosing cuBLASLt algorithms),
// captures it as a CUDA graph and instantiates it twice: inside a graph that
// also copies the inputs from and the outputs to pinned staging, and alone
// for callers passing device pointers (whose copies are then stream-ordered
// around it: a graph's copy nodes cannot be pointed at memory of another
// allocator, such as PyTorch's). A request is memcpys into pinned memory,
// one graph launch and one stream synchronisation: no allocation, host or
// device. Tables kept in host memory are pooled by host nodes of the same
// graph (kernels.cuh's poolOnHost), into pinned memory the eager run made.
#ifndef KILN_KERNELS_CUDA_SESSION_CUH
#define KILN_KERNELS_CUDA_SESSION_CUH

#include "kernels.cuh"
#include "kiln/model_abi.h"

#include <cstdio>
#include <new>

namespace kiln::cuda {

/// The entry point of one bucket as the generated code defines it.
using Entry = int (*)(uint8_t *arena, const uint8_t *weights, Exec *exec, char *message,
                      size_t message_size);

/// What a compile fixed about the device side.
struct ModelConfig {
  Precision precision;
  int sm; // the oldest compute capability the code runs on, e.g. 90
  /// The largest input a dense layer with 16- or 8-bit weights converts
  /// (kernels.cuh's denseHalf, denseFp8), in bytes at that width.
  uint64_t operandScratchBytes;
};

constexpr size_t kWorkspaceBytes = size_t(32) << 20;
constexpr size_t kDeviceAlignment = 256;

inline size_t alignUp(size_t n, size_t a) { return (n + a - 1) / a * a; }

inline int cudaFailure(char *message, size_t size, const char *what, cudaError_t status) {
  std::snprintf(message, size, "CUDA: %s failed: %s", what, cudaGetErrorString(status));
  return 1;
}

/// Bytes of one leading-dim row of a tensor (all of a scalar), and the rows
/// a caller's buffer holds at `batch`.
inline size_t rowBytes(const kiln_abi_tensor &t) {
  static const size_t sizes[] = {0, 4, 8, 8, 4, 1, 1, 1, 2, 2, 4, 8, 2, 2}; // by kiln_dtype
  size_t bytes = t.dtype >= 1 && t.dtype < int32_t(sizeof sizes / sizeof *sizes) ? sizes[t.dtype] : 0;
  for (int32_t d = 1; d < t.rank; ++d)
    bytes *= t.shape[d];
  return bytes;
}

inline size_t rowsAt(const kiln_abi_tensor &t, int64_t batch) {
  return t.batched ? batch : (t.rank ? t.shape[0] : 1);
}

struct DeviceModel {
  const kiln_abi_model *abi = nullptr;
  uint8_t *weights = nullptr;
};

struct DeviceSession {
  const DeviceModel *model = nullptr;
  Exec exec;
  uint8_t *arena = nullptr;   // device: arena, cuBLASLt workspace
  uint8_t *staging = nullptr; // pinned: inputs, outputs (at the largest batch), error word
  std::vector<size_t> inputStage, outputStage;
  std::vector<cudaGraphExec_t> hostGraphs, deviceGraphs;
};

template <const ModelConfig &C>
int open(const kiln_abi_model *abi, void **state, char *message, size_t size) {
  int count = 0, device = 0, major = 0, minor = 0;
  cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess || count == 0) {
    std::snprintf(message, size, "compiled for target '%s', and no CUDA device is available (%s)",
                  abi->target, status != cudaSuccess ? cudaGetErrorString(status) : "none found");
    return 1;
  }
  cudaGetDevice(&device);
  cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device);
  cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device);
  if (major * 10 + minor < C.sm) {
    std::snprintf(message, size, "compiled for target '%s' (sm_%d and newer); device %d is sm_%d%d",
                  abi->target, C.sm, device, major, minor);
    return 1;
  }
  auto *model = new (std::nothrow) DeviceModel;
  if (!model)
    return std::snprintf(message, size, "out of memory"), 1;
  model->abi = abi;
  // All but the tables kept in host memory, which come last.
  const uint64_t uploaded = abi->weights_bytes - abi->host_weights_bytes;
  if ((status = cudaMalloc(&model->weights, std::max<uint64_t>(uploaded, 1))) != cudaSuccess ||
      (status = cudaMemcpy(model->weights, abi->weights, uploaded, cudaMemcpyHostToDevice)) !=
          cudaSuccess) {
    cudaFree(model->weights);
    delete model;
    return cudaFailure(message, size, "uploading the weights", status);
  }
  *state = model;
  return 0;
}

inline void close(void *state) {
  auto *model = static_cast<DeviceModel *>(state);
  if (!model)
    return;
  cudaFree(model->weights);
  delete model;
}

inline void sessionDestroy(void *session) {
  auto *s = static_cast<DeviceSession *>(session);
  if (!s)
    return;
  if (s->exec.stream)
    cudaStreamSynchronize(s->exec.stream);
  for (cudaGraphExec_t g : s->hostGraphs)
    if (g)
      cudaGraphExecDestroy(g);
  for (cudaGraphExec_t g : s->deviceGraphs)
    if (g)
      cudaGraphExecDestroy(g);
  for (void *p : s->exec.persisted)
    cudaFree(p);
  if (s->exec.lt)
    cublasLtDestroy(s->exec.lt);
  if (s->exec.stream)
    cudaStreamDestroy(s->exec.stream);
  cudaFree(s->arena);
  cudaFreeHost(s->staging);
  delete s;
}

/// Reports the first failed call of an entry point's run.
inline int execFailure(const Exec &e, char *message, size_t size) {
  if (e.failedCode >= 100000)
    std::snprintf(message, size, "cuBLASLt: %s failed with status %d", e.failedCall,
                  e.failedCode - 100000);
  else
    std::snprintf(message, size, "CUDA: %s failed: %s", e.failedCall,
                  cudaGetErrorString(cudaError_t(e.failedCode)));
  return 1;
}

/// Captures the work of bucket `b` (its entry point) as a graph, over the
/// persisted tables and host work its eager run made (from these indices).
inline int capture(DeviceSession *s, int32_t b, size_t firstPersisted, size_t firstHostWork,
                   cudaGraph_t *graph, char *message, size_t size) {
  Exec &e = s->exec;
  e.capturing = true;
  e.persistCursor = firstPersisted;
  e.hostWorkCursor = firstHostWork;
  cudaError_t status = cudaStreamBeginCapture(e.stream, cudaStreamCaptureModeRelaxed);
  if (status != cudaSuccess)
    return cudaFailure(message, size, "cudaStreamBeginCapture", status);
  const kiln_abi_bucket &bucket = s->model->abi->buckets[b];
  int rc = reinterpret_cast<Entry>(bucket.entry)(s->arena, s->model->weights, &e, message, size);
  status = cudaStreamEndCapture(e.stream, graph);
  e.capturing = false;
  if (rc != 0)
    return rc;
  if (e.failedCall)
    return execFailure(e, message, size);
  if (status != cudaSuccess)
    return cudaFailure(message, size, "cudaStreamEndCapture", status);
  return 0;
}

/// The executable graph of bucket `b` for host tensors: copies of the
/// inputs from pinned staging, the captured `work`, copies of the outputs to
/// pinned staging.
inline int withCopies(DeviceSession *s, int32_t b, cudaGraph_t work, cudaGraphExec_t *out,
                      char *message, size_t size) {
  const kiln_abi_model *m = s->model->abi;
  const kiln_abi_bucket &bucket = m->buckets[b];
  cudaGraph_t graph = nullptr;
  cudaError_t status = cudaGraphCreate(&graph, 0);
  std::vector<cudaGraphNode_t> copies;
  for (int32_t i = 0; i < m->num_inputs && status == cudaSuccess; ++i) {
    cudaGraphNode_t node = nullptr;
    if (size_t bytes = rowBytes(m->inputs[i]) * rowsAt(m->inputs[i], bucket.batch)) {
      status =
          cudaGraphAddMemcpyNode1D(&node, graph, nullptr, 0, s->arena + bucket.input_offsets[i],
                                   s->staging + s->inputStage[i], bytes, cudaMemcpyHostToDevice);
      copies.push_back(node);
    }
  }
  cudaGraphNode_t body = nullptr;
  if (status == cudaSuccess)
    status = cudaGraphAddChildGraphNode(&body, graph, copies.data(), copies.size(), work);
  for (int32_t i = 0; i < m->num_outputs && status == cudaSuccess; ++i) {
    cudaGraphNode_t node = nullptr;
    if (size_t bytes = rowBytes(m->outputs[i]) * rowsAt(m->outputs[i], bucket.batch))
      status = cudaGraphAddMemcpyNode1D(&node, graph, &body, 1, s->staging + s->outputStage[i],
                                        s->arena + bucket.output_offsets[i], bytes,
                                        cudaMemcpyDeviceToHost);
  }
  if (status == cudaSuccess)
    status = cudaGraphInstantiate(out, graph, 0);
  cudaGraphDestroy(graph);
  return status == cudaSuccess ? 0
                               : cudaFailure(message, size, "building the bucket's graph", status);
}

/// `cpu`: the session's threads for host work (kiln_abi_device's
/// session_create_exec), or null for the calling thread alone.
template <const ModelConfig &C>
int sessionCreate(void *state, const kiln_abi_exec *cpu, void **session, char *message,
                  size_t size) {
  const auto *model = static_cast<const DeviceModel *>(state);
  const kiln_abi_model *m = model->abi;
  auto *s = new (std::nothrow) DeviceSession;
  if (!s)
    return std::snprintf(message, size, "out of memory"), 1;
  s->model = model;
  Exec &e = s->exec;
  e.precision = C.precision;
  e.hostThreads = cpu;
  e.hostWeights = m->weights + (m->weights_bytes - m->host_weights_bytes);
  auto failed = [&](int rc) {
    sessionDestroy(s);
    return rc;
  };
  int device = 0, sms = 0;
  cudaGetDevice(&device);
  cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
  e.maxBlocks = std::max(sms, 1) * 8;
  cudaError_t status = cudaStreamCreateWithFlags(&e.stream, cudaStreamNonBlocking);
  if (status != cudaSuccess)
    return failed(cudaFailure(message, size, "cudaStreamCreate", status));
  if (cublasLtCreate(&e.lt) != CUBLAS_STATUS_SUCCESS) {
    e.lt = nullptr;
    std::snprintf(message, size, "cuBLASLt: cublasLtCreate failed");
    return failed(1);
  }

  uint64_t arena = 0;
  for (int32_t b = 0; b < m->num_buckets; ++b)
    arena = std::max(arena, m->buckets[b].arena_bytes);
  arena = alignUp(arena, kDeviceAlignment);
  if ((status = cudaMalloc(&s->arena, arena + kWorkspaceBytes + C.operandScratchBytes)) !=
      cudaSuccess)
    return failed(cudaFailure(message, size, "allocating the device arena", status));
  e.workspace = s->arena + arena;
  e.workspaceBytes = kWorkspaceBytes;
  e.operandScratch = s->arena + arena + kWorkspaceBytes;
  e.operandScratchBytes = C.operandScratchBytes;

  const int64_t maxBatch = m->buckets[m->num_buckets - 1].batch;
  size_t staged = 0;
  for (int32_t i = 0; i < m->num_inputs; ++i) {
    s->inputStage.push_back(staged);
    staged += alignUp(rowBytes(m->inputs[i]) * rowsAt(m->inputs[i], maxBatch), 64);
  }
  for (int32_t i = 0; i < m->num_outputs; ++i) {
    s->outputStage.push_back(staged);
    staged += alignUp(rowBytes(m->outputs[i]) * rowsAt(m->outputs[i], maxBatch), 64);
  }
  if ((status = cudaHostAlloc(&s->staging, staged + 64, cudaHostAllocMapped)) != cudaSuccess)
    return failed(cudaFailure(message, size, "allocating pinned staging", status));
  e.hostError = reinterpret_cast<int *>(s->staging + staged);
  *e.hostError = 0;
  if ((status = cudaHostGetDevicePointer(reinterpret_cast<void **>(&e.error), e.hostError, 0)) !=
      cudaSuccess)
    return failed(cudaFailure(message, size, "mapping the error word", status));

  for (int32_t b = 0; b < m->num_buckets; ++b) {
    // An eager run over a zeroed arena (every id 0, valid) loads the
    // kernels and makes the persisted tables; then the two captures.
    const size_t firstPersisted = e.persisted.size(), firstHostWork = e.hostWork.size();
    check(&e, cudaMemsetAsync(s->arena, 0, m->buckets[b].arena_bytes, e.stream), "cudaMemset");
    int rc =
        reinterpret_cast<Entry>(m->buckets[b].entry)(s->arena, model->weights, &e, message, size);
    check(&e, cudaStreamSynchronize(e.stream), "the first run of a bucket");
    *e.hostError = 0;
    if (rc != 0)
      return failed(rc);
    if (e.failedCall)
      return failed(execFailure(e, message, size));
    cudaGraph_t work = nullptr;
    if ((rc = capture(s, b, firstPersisted, firstHostWork, &work, message, size)) != 0)
      return failed(rc);
    s->hostGraphs.emplace_back();
    s->deviceGraphs.emplace_back();
    rc = withCopies(s, b, work, &s->hostGraphs.back(), message, size);
    if (rc == 0 && (status = cudaGraphInstantiate(&s->deviceGraphs.back(), work, 0)) != cudaSuccess)
      rc = cudaFailure(message, size, "cudaGraphInstantiate", status);
    cudaGraphDestroy(work);
    if (rc != 0)
      return failed(rc);
  }
  *session = s;
  return 0;
}

inline int run(void *session, int32_t b, int64_t batch, const void *const *inputs,
               void *const *outputs, int32_t devicePointers, char *message, size_t size) {
  auto *s = static_cast<DeviceSession *>(session);
  const kiln_abi_model *m = s->model->abi;
  const kiln_abi_bucket &bucket = m->buckets[b];
  cudaStream_t stream = s->exec.stream;
  cudaGraphExec_t graph = devicePointers ? s->deviceGraphs[b] : s->hostGraphs[b];
  cudaError_t status = cudaSuccess;
  const char *failed = nullptr;
  auto step = [&](cudaError_t st, const char *what) {
    if (status == cudaSuccess && st != cudaSuccess) {
      status = st;
      failed = what;
    }
  };
  // Rows past `batch` up to the bucket's are zero: id 0 is valid everywhere.
  for (int32_t i = 0; i < m->num_inputs; ++i) {
    const kiln_abi_tensor &t = m->inputs[i];
    const size_t used = rowBytes(t) * rowsAt(t, batch), all = rowBytes(t) * rowsAt(t, bucket.batch);
    if (devicePointers) {
      uint8_t *slot = s->arena + bucket.input_offsets[i];
      step(cudaMemcpyAsync(slot, inputs[i], used, cudaMemcpyDeviceToDevice, stream),
           "copying an input");
      if (all > used)
        step(cudaMemsetAsync(slot + used, 0, all - used, stream), "cudaMemsetAsync");
    } else {
      uint8_t *slot = s->staging + s->inputStage[i];
      std::memcpy(slot, inputs[i], used);
      std::memset(slot + used, 0, all - used);
    }
  }
  if (status == cudaSuccess)
    step(cudaGraphLaunch(graph, stream), "cudaGraphLaunch");
  for (int32_t i = 0; devicePointers && status == cudaSuccess && i < m->num_outputs; ++i)
    step(cudaMemcpyAsync(outputs[i], s->arena + bucket.output_offsets[i],
                         rowBytes(m->outputs[i]) * rowsAt(m->outputs[i], batch),
                         cudaMemcpyDeviceToDevice, stream),
         "copying an output");
  step(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
  if (status != cudaSuccess)
    return cudaFailure(message, size, failed, status);
  if (int where = *s->exec.hostError) {
    *s->exec.hostError = 0;
    std::snprintf(message, size, "%s",
                  where <= s->exec.numSites ? s->exec.sites[where - 1] : "index out of range");
    return 1;
  }
  for (int32_t i = 0; !devicePointers && i < m->num_outputs; ++i)
    std::memcpy(outputs[i], s->staging + s->outputStage[i],
                rowBytes(m->outputs[i]) * rowsAt(m->outputs[i], batch));
  return 0;
}

/// session_create for runtimes before ABI 2.4: host work on one thread.
template <const ModelConfig &C>
int sessionCreateOneThread(void *state, void **session, char *message, size_t size) {
  return sessionCreate<C>(state, nullptr, session, message, size);
}

/// The hooks a generated model exports through its descriptor.
template <const ModelConfig &C> constexpr kiln_abi_device deviceHooks() {
  return kiln_abi_device{&open<C>,        &close, &sessionCreateOneThread<C>,
                         &sessionDestroy, &run,   &sessionCreate<C>};
}

} // namespace kiln::cuda

#endif
