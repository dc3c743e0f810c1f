// A device model whose hooks (kiln_abi_device) run on the CPU, so that the
// runtime's handling of device models is tested without a GPU: y = 2 x for
// host tensors, 2 x + 1 for device pointers (here: any memory), a NaN input
// fails the run with a message. Built three times: FAKE_DEVICE_PRESENT 0
// refuses to open as a CUDA model does on a machine without a GPU;
// FAKE_HOOK_IN_DATA points its run hook at data, which the runtime must
// refuse at open. A session given
// CPU threads (session_create_exec) computes host requests on them, and
// fake_device_threads records how many the last session got.
#include "kiln/model_abi.h"

#ifndef FAKE_HOOK_IN_DATA
#define FAKE_HOOK_IN_DATA 0
#endif

#include <cmath>
#include <cstdio>
#include <cstring>

extern "C" {
__attribute__((visibility("default"))) int fake_device_threads = -1;
}

namespace {

struct State {
  int sessions = 0;
};

struct Session {
  State *state;
  const kiln_abi_exec *exec;
};

int open(const kiln_abi_model *, void **state, char *message, size_t size) {
  if (!FAKE_DEVICE_PRESENT) {
    std::snprintf(message, size, "no CUDA device is available (fake)");
    return 1;
  }
  *state = new State;
  return 0;
}

void close(void *state) { delete static_cast<State *>(state); }

int sessionCreateExec(void *state, const kiln_abi_exec *exec, void **session, char *message,
                      size_t size) {
  auto *s = static_cast<State *>(state);
  if (s->sessions == 2) { // a device out of memory after two sessions
    std::snprintf(message, size, "CUDA: allocating the device arena failed: out of memory (fake)");
    return 1;
  }
  ++s->sessions;
  fake_device_threads = exec ? exec->num_threads : 0;
  *session = new Session{s, exec};
  return 0;
}

int sessionCreate(void *state, void **session, char *message, size_t size) {
  return sessionCreateExec(state, nullptr, session, message, size);
}

void sessionDestroy(void *session) {
  auto *s = static_cast<Session *>(session);
  --s->state->sessions;
  delete s;
}

struct Rows {
  const float *x;
  float *y;
  float add;
};

void row(void *ctx, int64_t r) {
  auto *rows = static_cast<Rows *>(ctx);
  for (int64_t i = 2 * r; i < 2 * r + 2; ++i)
    rows->y[i] = 2 * rows->x[i] + rows->add;
}

int run(void *session, int32_t, int64_t batch, const void *const *inputs, void *const *outputs,
        int32_t devicePointers, char *message, size_t size) {
  const kiln_abi_exec *exec = static_cast<Session *>(session)->exec;
  Rows rows{static_cast<const float *>(inputs[0]), static_cast<float *>(outputs[0]),
            devicePointers ? 1.0f : 0.0f};
  for (int64_t i = 0; i < batch * 2; ++i)
    if (std::isnan(rows.x[i])) {
      std::snprintf(message, size, "fake: NaN input");
      return 1;
    }
  if (exec && exec->parallel_for)
    exec->parallel_for(exec->pool, batch, &row, &rows);
  else
    for (int64_t r = 0; r < batch; ++r)
      row(&rows, r);
  return 0;
}

const int64_t kShape[] = {-1, 2};
const kiln_abi_tensor kInputs[] = {{"x", 1, 2, kShape, 1, nullptr}};
const kiln_abi_tensor kOutputs[] = {{"y", 1, 2, kShape, 1, nullptr}};
const uint64_t kOffsets[] = {0};
// 64 bytes of weights, of which the last 48 would be tables kept in host memory.
const uint8_t kWeights[64] = {};
const kiln_abi_device kDevice = {
    &open,           &close,
    &sessionCreate,  &sessionDestroy,
    FAKE_HOOK_IN_DATA ? reinterpret_cast<decltype(&run)>(const_cast<uint8_t *>(kWeights)) : &run,
    &sessionCreateExec};
const kiln_abi_bucket kBuckets[] = {{2, 64, 64, kOffsets, kOffsets, nullptr},
                                    {4, 64, 64, kOffsets, kOffsets, nullptr}};

} // namespace

extern "C" __attribute__((visibility("default")))
const kiln_abi_model kiln_model_descriptor = {KILN_MODEL_MAGIC,
                                              KILN_ABI_MAJOR,
                                              KILN_ABI_MINOR,
                                              "fake",
                                              "cuda-sm90",
                                              KILN_ISA_CUDA,
                                              "0",
                                              1,
                                              1,
                                              kInputs,
                                              kOutputs,
                                              2,
                                              kBuckets,
                                              kWeights,
                                              sizeof kWeights,
                                              "none",
                                              0,
                                              &kDevice,
                                              48};
