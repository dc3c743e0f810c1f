// A device model whose hooks (kiln_abi_device) run on the CPU, so that the
// runtime's handling of device models is tested without a GPU: y = 2 x for
// host tensors, 2 x + 1 for device pointers (here: any memory), a NaN input
// fails the run with a message. Built twice: FAKE_DEVICE_PRESENT 0 refuses
// to open as a CUDA model does on a machine without a GPU.
#include "kiln/model_abi.h"

#include <cmath>
#include <cstdio>
#include <cstring>

namespace {

struct State {
  int sessions = 0;
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

int sessionCreate(void *state, void **session, char *message, size_t size) {
  auto *s = static_cast<State *>(state);
  if (s->sessions == 2) { // a device out of memory after two sessions
    std::snprintf(message, size, "CUDA: allocating the device arena failed: out of memory (fake)");
    return 1;
  }
  ++s->sessions;
  *session = s;
  return 0;
}

void sessionDestroy(void *session) { --static_cast<State *>(session)->sessions; }

int run(void *, int32_t, int64_t batch, const void *const *inputs, void *const *outputs,
        int32_t devicePointers, char *message, size_t size) {
  const float *x = static_cast<const float *>(inputs[0]);
  float *y = static_cast<float *>(outputs[0]);
  for (int64_t i = 0; i < batch * 2; ++i) {
    if (std::isnan(x[i])) {
      std::snprintf(message, size, "fake: NaN input");
      return 1;
    }
    y[i] = 2 * x[i] + (devicePointers ? 1 : 0);
  }
  return 0;
}

const kiln_abi_device kDevice = {&open, &close, &sessionCreate, &sessionDestroy, &run};
const int64_t kShape[] = {-1, 2};
const kiln_abi_tensor kInputs[] = {{"x", 1, 2, kShape, 1, nullptr}};
const kiln_abi_tensor kOutputs[] = {{"y", 1, 2, kShape, 1, nullptr}};
const uint64_t kOffsets[] = {0};
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
                                              nullptr,
                                              0,
                                              "none",
                                              0,
                                              &kDevice};
