// descriptor_check.cpp - see descriptor_check.h.

#include "descriptor_check.h"

#include "kiln/checked.h"
#include "kiln/runtime.h"

#include <dlfcn.h>
#include <link.h>

#include <cstdarg>
#include <cstdio>
#include <cstring>

namespace kiln {
namespace {

constexpr int32_t kMaxRank = 32;
constexpr int32_t kMaxTensors = 1 << 16;
constexpr int32_t kMaxBuckets = 1 << 16;
constexpr int kMaxSegments = 32;

/// The readable PT_LOAD segments of one loaded object, as address ranges,
/// and which of them hold code.
struct Segments {
  uintptr_t base = 0;
  const char *name = nullptr;
  uintptr_t lo[kMaxSegments] = {}, hi[kMaxSegments] = {};
  bool code[kMaxSegments] = {};
  int count = 0;
};

int collectSegments(dl_phdr_info *info, size_t, void *data) {
  auto *s = static_cast<Segments *>(data);
  if (info->dlpi_addr != s->base || !info->dlpi_name || std::strcmp(info->dlpi_name, s->name))
    return 0;
  for (int i = 0; i < info->dlpi_phnum && s->count < kMaxSegments; ++i) {
    const ElfW(Phdr) &p = info->dlpi_phdr[i];
    if (p.p_type == PT_LOAD && (p.p_flags & PF_R)) {
      s->lo[s->count] = s->base + p.p_vaddr;
      s->hi[s->count] = s->base + p.p_vaddr + p.p_memsz;
      s->code[s->count++] = (p.p_flags & PF_X) != 0;
    }
  }
  return 1;
}

/// Elements and bytes of one batch row of `t` (all of it when not batched).
std::optional<int64_t> rowElements(const kiln_abi_tensor &t) {
  const int32_t first = t.batched ? 1 : 0;
  return checkedProductN(t.shape + first, t.rank - first);
}
std::optional<int64_t> rowBytes(const kiln_abi_tensor &t) {
  std::optional<int64_t> n = rowElements(t);
  return n ? checkedMul(*n, int64_t(dtypeBytes(t.dtype))) : n;
}

class Checker {
public:
  Checker(const Segments &segments, char *why, size_t size)
      : segments(segments), why(why), whySize(size) {}

  /// [p, p + count * size) lies in one readable segment (NULL never does).
  bool readable(const void *p, uint64_t count, uint64_t size = 1) const {
    std::optional<int64_t> bytes = checkedMul(int64_t(count), int64_t(size));
    auto at = reinterpret_cast<uintptr_t>(p);
    for (int i = 0; p && bytes && i < segments.count; ++i)
      if (at >= segments.lo[i] && at <= segments.hi[i] && uint64_t(*bytes) <= segments.hi[i] - at)
        return true;
    return false;
  }

  /// `count` Ts at `p`, aligned for T, in one readable segment.
  template <typename T> bool array(const T *p, uint64_t count) const {
    return reinterpret_cast<uintptr_t>(p) % alignof(T) == 0 && readable(p, count, sizeof(T));
  }

  /// A function of the model: a pointer into one of its code segments (a
  /// descriptor cannot send a call anywhere else).
  template <typename Fn> bool function(Fn *fn) const {
    auto at = reinterpret_cast<uintptr_t>(fn);
    for (int i = 0; fn && i < segments.count; ++i)
      if (segments.code[i] && at >= segments.lo[i] && at < segments.hi[i])
        return true;
    return false;
  }

  /// A NUL-terminated string in one readable segment.
  bool string(const char *p) const {
    auto at = reinterpret_cast<uintptr_t>(p);
    for (int i = 0; p && i < segments.count; ++i)
      if (at >= segments.lo[i] && at < segments.hi[i])
        return std::memchr(p, 0, segments.hi[i] - at) != nullptr;
    return false;
  }

  bool fail(const char *fmt, ...) const {
    va_list args;
    va_start(args, fmt);
    std::vsnprintf(why, whySize, fmt, args);
    va_end(args);
    return false;
  }

  /// A tensor spec: a known dtype, a sane rank and dims, and a row (of the
  /// whole tensor when it is not batched) whose size does not overflow.
  bool tensor(const char *role, int32_t i, const kiln_abi_tensor &t) const {
    if (!string(t.name))
      return fail("%s %d: its name is not a string in the model", role, i);
    if (dtypeBytes(t.dtype) == 0)
      return fail("%s '%s': unknown dtype %d", role, t.name, t.dtype);
    if (t.rank < 0 || t.rank > kMaxRank || (t.batched && t.rank == 0))
      return fail("%s '%s': rank %d", role, t.name, t.rank);
    if (t.rank && !array(t.shape, t.rank))
      return fail("%s '%s': its shape is not an aligned array in the model", role, t.name);
    if (t.batched && t.shape[0] != -1)
      return fail("%s '%s': batched, but its dim 0 is %lld", role, t.name,
                  (long long)t.shape[0]);
    std::optional<int64_t> elements = rowElements(t);
    if (!elements || !rowBytes(t))
      return fail("%s '%s': a negative dim or a size that overflows 64 bits", role, t.name);
    if (t.index_bounds && !array(t.index_bounds, uint64_t(*elements) * 2))
      return fail("%s '%s': its id bounds are not an aligned array in the model", role, t.name);
    return true;
  }

  /// The slots of one bucket's checked tensors lie in its arena.
  bool slots(const char *role, const kiln_abi_tensor *specs, const uint64_t *offsets, int32_t n,
             const kiln_abi_bucket &b) const {
    if (n && !array(offsets, n))
      return fail("bucket %lld: its %s offsets are not an aligned array in the model", (long long)b.batch, role);
    for (int32_t i = 0; i < n; ++i) {
      const kiln_abi_tensor &t = specs[i];
      std::optional<int64_t> bytes = checkedMul(*rowBytes(t), t.batched ? b.batch : 1);
      std::optional<int64_t> end =
          bytes && offsets[i] <= uint64_t(INT64_MAX) ? checkedAdd(int64_t(offsets[i]), *bytes)
                                                     : std::nullopt;
      if (!end || uint64_t(*end) > b.arena_bytes)
        return fail("bucket %lld: %s '%s' at offset %llu does not fit its %llu-byte arena",
                    (long long)b.batch, role, t.name, (unsigned long long)offsets[i],
                    (unsigned long long)b.arena_bytes);
    }
    return true;
  }

private:
  const Segments &segments;
  char *why;
  size_t whySize;
};

} // namespace

size_t dtypeBytes(int32_t dtype) {
  switch (dtype) {
  case KILN_DTYPE_F64:
  case KILN_DTYPE_I64:
  case KILN_DTYPE_U64:
    return 8;
  case KILN_DTYPE_F32:
  case KILN_DTYPE_I32:
  case KILN_DTYPE_U32:
    return 4;
  case KILN_DTYPE_I16:
  case KILN_DTYPE_U16:
  case KILN_DTYPE_F16:
  case KILN_DTYPE_BF16:
    return 2;
  case KILN_DTYPE_I8:
  case KILN_DTYPE_U8:
  case KILN_DTYPE_BOOL:
    return 1;
  default:
    return 0;
  }
}

bool checkDescriptor(void *handle, const kiln_abi_model *abi, char *why, size_t why_size) {
  Segments segments;
  link_map *map = nullptr;
  if (dlinfo(handle, RTLD_DI_LINKMAP, &map) != 0 || !map) {
    std::snprintf(why, why_size, "cannot find the model's segments");
    return false;
  }
  segments.base = map->l_addr;
  segments.name = map->l_name;
  dl_iterate_phdr(collectSegments, &segments);
  Checker c(segments, why, why_size);

  if (!c.array(abi, 1))
    return c.fail("the descriptor is not in the model");
  if (!c.string(abi->compiler_version) || !c.string(abi->target) || !c.string(abi->model_hash) ||
      (abi->abi_minor >= 1 && !c.string(abi->quantization)) ||
      (abi->abi_minor >= 6 && abi->weights_file && !c.string(abi->weights_file)))
    return c.fail("a string field is not a string in the model");
  if (abi->num_inputs < 0 || abi->num_inputs > kMaxTensors || abi->num_outputs < 0 ||
      abi->num_outputs > kMaxTensors)
    return c.fail("%d inputs and %d outputs", abi->num_inputs, abi->num_outputs);
  if (abi->num_buckets < 1 || abi->num_buckets > kMaxBuckets)
    return c.fail("%d batch buckets", abi->num_buckets);
  if ((abi->num_inputs && !c.array(abi->inputs, abi->num_inputs)) ||
      (abi->num_outputs && !c.array(abi->outputs, abi->num_outputs)) ||
      !c.array(abi->buckets, abi->num_buckets))
    return c.fail("its tensor or bucket tables are not in the model");

  for (int32_t i = 0; i < abi->num_inputs; ++i)
    if (!c.tensor("input", i, abi->inputs[i]))
      return false;
  for (int32_t i = 0; i < abi->num_outputs; ++i)
    if (!c.tensor("output", i, abi->outputs[i]))
      return false;

  const bool device = (abi->isa & KILN_ISA_CUDA) != 0;
  if (device && abi->abi_minor >= 2 && abi->device) {
    const kiln_abi_device *d = abi->device;
    if (!c.array(d, 1))
      return c.fail("its device hooks are not in the model");
    if (!c.function(d->open) || !c.function(d->close) || !c.function(d->session_create) ||
        !c.function(d->session_destroy) || !c.function(d->run) ||
        (abi->abi_minor >= 4 && d->session_create_exec && !c.function(d->session_create_exec)))
      return c.fail("a device hook is not a function of the model");
  }
  if (!device && abi->weights && !c.readable(abi->weights, abi->weights_bytes))
    return c.fail("its %llu bytes of weights are not in the model",
                  (unsigned long long)abi->weights_bytes);
  for (int32_t i = 0; i < abi->num_buckets; ++i) {
    const kiln_abi_bucket &b = abi->buckets[i];
    if (b.batch < 1 || (i && b.batch <= abi->buckets[i - 1].batch))
      return c.fail("bucket %d has batch %lld: buckets must ascend from 1", i, (long long)b.batch);
    if (device) // its arena and entry points are the device model's own
      continue;
    if (!c.function(b.entry))
      return c.fail("bucket %lld: its entry point is not a function of the model",
                    (long long)b.batch);
    if (!c.slots("input", abi->inputs, b.input_offsets, abi->num_inputs, b) ||
        !c.slots("output", abi->outputs, b.output_offsets, abi->num_outputs, b))
      return false;
  }
  return true;
}

} // namespace kiln
