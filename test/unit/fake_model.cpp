// A shared library with a kiln descriptor that a runtime must refuse: built
// with another ABI major (FAKE_ABI_MAJOR), an ISA bit no runtime knows
// (FAKE_ISA), or more host-memory weights than weights (FAKE_HOST_WEIGHTS,
// ABI 2.5).
#include "kiln/model_abi.h"

#ifndef FAKE_HOST_WEIGHTS
#define FAKE_HOST_WEIGHTS 0
#endif

namespace {
int entry(uint8_t *, const uint8_t *, const kiln_abi_exec *, char *, size_t) { return 0; }
const uint64_t kOffsets[] = {0};
const kiln_abi_bucket kBuckets[] = {{1, 64, 64, kOffsets, kOffsets, &entry}};
} // namespace

extern "C" __attribute__((visibility("default")))
const kiln_abi_model kiln_model_descriptor = {KILN_MODEL_MAGIC,
                                              FAKE_ABI_MAJOR,
                                              FAKE_HOST_WEIGHTS ? 5 : 0,
                                              "fake",
                                              "fake-target",
                                              FAKE_ISA,
                                              "0",
                                              0,
                                              0,
                                              nullptr,
                                              nullptr,
                                              1,
                                              kBuckets,
                                              nullptr,
                                              0,
                                              "none",
                                              0,
                                              nullptr,
                                              FAKE_HOST_WEIGHTS};
