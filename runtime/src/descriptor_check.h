// descriptor_check.h - the checks kiln_model_open makes of a descriptor
// before anything reads through it.
//
// A model file can be truncated, bit-flipped in transit or tampered with; the
// ELF checks keep dlopen from faulting, and these keep the runtime from
// trusting the descriptor's numbers and pointers: every pointer must lie in
// the model's own loaded, readable segments (strings NUL-terminated there),
// every tensor spec must have a known dtype, a sane rank and dims, a row size
// that does not overflow, buckets must ascend, and in a CPU model every input
// and output slot of every bucket must fit in that bucket's arena.
#ifndef KILN_RUNTIME_DESCRIPTOR_CHECK_H
#define KILN_RUNTIME_DESCRIPTOR_CHECK_H

#include "kiln/model_abi.h"

#include <cstddef>

namespace kiln {

/// Bytes of an element of `dtype` (a kiln_dtype's value), 0 for a value
/// that is none: a descriptor's or a caller's int is never cast to the enum
/// before it is known to be one.
size_t dtypeBytes(int32_t dtype);

/// True when the descriptor `abi` of the library `handle` (from dlopen) is
/// well formed; otherwise false with the reason in `why`.
bool checkDescriptor(void *handle, const kiln_abi_model *abi, char *why, size_t why_size);

} // namespace kiln

#endif // KILN_RUNTIME_DESCRIPTOR_CHECK_H
