// A shared library with a kiln descriptor that a runtime must refuse: built
// with another ABI major (FAKE_ABI_MAJOR), an ISA bit no runtime knows
// (FAKE_ISA), more host-memory weights than weights (FAKE_HOST_WEIGHTS,
// ABI 2.5), a bucket entry point that is data, not code (FAKE_ENTRY_IN_DATA),
// or an input whose shape is a misaligned pointer (FAKE_MISALIGNED_SHAPE).
#include "kiln/model_abi.h"

#ifndef FAKE_HOST_WEIGHTS
#define FAKE_HOST_WEIGHTS 0
#endif
#ifndef FAKE_ENTRY_IN_DATA
#define FAKE_ENTRY_IN_DATA 0
#endif
#ifndef FAKE_MISALIGNED_SHAPE
#define FAKE_MISALIGNED_SHAPE 0
#endif

namespace {
int entry(uint8_t *, const uint8_t *, const kiln_abi_exec *, char *, size_t) { return 0; }
const uint64_t kOffsets[] = {0};
alignas(8) const unsigned char kShapeBytes[16] = {0, 1};
const kiln_abi_tensor kInputs[] = {
    {"x", 1, 1, reinterpret_cast<const int64_t *>(kShapeBytes + 1), 0, nullptr}};
const kiln_abi_bucket kBuckets[] = {
    {1, 64, 64, kOffsets, kOffsets,
     FAKE_ENTRY_IN_DATA ? reinterpret_cast<kiln_entry_fn>(const_cast<uint64_t *>(kOffsets))
                        : &entry}};
} // namespace

extern "C" __attribute__((visibility("default")))
const kiln_abi_model kiln_model_descriptor = {KILN_MODEL_MAGIC,
                                              FAKE_ABI_MAJOR,
                                              FAKE_HOST_WEIGHTS ? 5 : 0,
                                              "fake",
                                              "fake-target",
                                              FAKE_ISA,
                                              "0",
                                              FAKE_MISALIGNED_SHAPE,
                                              0,
                                              FAKE_MISALIGNED_SHAPE ? kInputs : nullptr,
                                              nullptr,
                                              1,
                                              kBuckets,
                                              nullptr,
                                              0,
                                              "none",
                                              0,
                                              nullptr,
                                              FAKE_HOST_WEIGHTS};
