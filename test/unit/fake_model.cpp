// A shared library with a kiln descriptor that a runtime must refuse: built
// twice, with another ABI major (FAKE_ABI_MAJOR) or an ISA bit no runtime
// knows (FAKE_ISA).
#include "kiln/model_abi.h"

namespace {
int entry(uint8_t *, const uint8_t *, const kiln_abi_exec *, char *, size_t) { return 0; }
const uint64_t kOffsets[] = {0};
const kiln_abi_bucket kBuckets[] = {{1, 64, 64, kOffsets, kOffsets, &entry}};
} // namespace

extern "C" __attribute__((visibility("default"))) const kiln_abi_model kiln_model_descriptor = {
    KILN_MODEL_MAGIC, FAKE_ABI_MAJOR, 0, "fake",   "fake-target", FAKE_ISA, "0", 0, 0,
    nullptr,          nullptr,        1, kBuckets, nullptr,       0};
