// runtime.cpp - loads kiln model .so files and runs requests over one arena.
//
// Everything a request does is bounded and allocation-free: validation reads
// the caller's tensors, the inputs are copied into their planned arena slots
// (zero-padded up to the bucket's batch), the bucket's entry point runs, and
// the outputs are copied out. Errors are formatted into fixed buffers.

#include "kiln/runtime.h"
#include "kiln/checked.h"
#include "kiln/model_abi.h"
#include "descriptor_check.h"
#include "thread_pool.h"

#include <dlfcn.h>
#include <elf.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>

struct kiln_model {
  void *handle;
  const kiln_abi_model *abi;
  /// A device model's hooks and their state (kiln_abi_device); null on the CPU.
  const kiln_abi_device *device;
  void *device_state;
  /// Opened by kiln_model_open_descriptor: no device state, no sessions.
  bool descriptor_only;
  /// A model whose weights are in a weights file: the file's read-only map,
  /// its path, and the descriptor with `weights` pointing into the map
  /// (which `abi` then points to).
  void *weights_map = nullptr;
  size_t weights_map_bytes = 0;
  char weights_path[4096] = {};
  kiln_abi_model mapped = {};
};

struct kiln_session {
  const kiln_model *model;
  uint8_t *arena;
  bool owns_arena;
  kiln::ThreadPool *pool; // null for one thread
  kiln_abi_exec exec;
  void *device_session;
  /// A device model's tensor pointers, sized once (run does not allocate).
  const void **device_inputs;
  void **device_outputs;
  char error[512];
};

namespace {

/// The reason for the calling thread's last failed session creation.
thread_local char lastError[512];

void format(char *out, size_t size, const char *fmt, ...) {
  if (!out || size == 0)
    return;
  va_list args;
  va_start(args, fmt);
  vsnprintf(out, size, fmt, args);
  va_end(args);
}

bool cpuSupports(uint32_t isa) {
  if (isa & ~uint32_t(KILN_ISA_AVX2 | KILN_ISA_FMA | KILN_ISA_F16C | KILN_ISA_CUDA |
                      KILN_ISA_AVX512 | KILN_ISA_AVX512_VNNI | KILN_ISA_AVX512_BF16))
    return false; // a feature this runtime does not know how to check
  __builtin_cpu_init();
  if ((isa & KILN_ISA_AVX2) && !__builtin_cpu_supports("avx2"))
    return false;
  if ((isa & KILN_ISA_FMA) && !__builtin_cpu_supports("fma"))
    return false;
  if ((isa & KILN_ISA_F16C) && !__builtin_cpu_supports("f16c"))
    return false;
  if ((isa & KILN_ISA_AVX512) &&
      !(__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl")))
    return false;
  if ((isa & KILN_ISA_AVX512_VNNI) && !__builtin_cpu_supports("avx512vnni"))
    return false;
  if ((isa & KILN_ISA_AVX512_BF16) && !__builtin_cpu_supports("avx512bf16"))
    return false;
  return true;
}

uint64_t maxArena(const kiln_abi_model *m) {
  uint64_t bytes = KILN_ARENA_ALIGNMENT;
  for (int32_t i = 0; i < m->num_buckets; ++i)
    if (m->buckets[i].arena_bytes > bytes)
      bytes = m->buckets[i].arena_bytes;
  return bytes;
}

/// Elements of one batch row (of the whole tensor when it is not batched);
/// checkDescriptor has made sure it does not overflow.
int64_t rowElements(const kiln_abi_tensor &t) {
  const int32_t first = t.batched ? 1 : 0;
  return kiln::checkedProductN(t.shape + first, t.rank - first).value_or(0);
}

void fillInfo(const kiln_abi_tensor &t, kiln_tensor_info *info) {
  info->name = t.name;
  info->dtype = static_cast<kiln_dtype>(t.dtype);
  info->rank = t.rank;
  info->shape = t.shape;
  info->index_bounds = t.index_bounds;
  info->row_elements = rowElements(t);
}

/// Checks a caller's tensor against its spec at this batch; elements counts
/// the tensor's elements.
bool checkTensor(kiln_session *s, const char *role, const kiln_abi_tensor &spec,
                 const kiln_tensor &t, int64_t batch, int64_t &elements) {
  if (!t.data) {
    format(s->error, sizeof s->error, "%s '%s': data is NULL", role, spec.name);
    return false;
  }
  if (t.dtype != spec.dtype) {
    format(s->error, sizeof s->error, "%s '%s': dtype is %s, the model expects %s", role, spec.name,
           kiln_dtype_name(t.dtype), kiln_dtype_name(static_cast<kiln_dtype>(spec.dtype)));
    return false;
  }
  if (t.rank != spec.rank || (t.rank > 0 && !t.shape)) {
    format(s->error, sizeof s->error, "%s '%s': rank is %d, the model expects %d", role, spec.name,
           t.rank, spec.rank);
    return false;
  }
  elements = 1;
  for (int32_t d = 0; d < spec.rank; ++d) {
    int64_t expected = (d == 0 && spec.batched) ? batch : spec.shape[d];
    if (t.shape[d] != expected) {
      format(s->error, sizeof s->error, "%s '%s': dim %d is %lld, the model expects %lld", role,
             spec.name, d, (long long)t.shape[d], (long long)expected);
      return false;
    }
    elements = kiln::checkedMul(elements, expected).value_or(0); // bounded: batch <= its largest bucket
  }
  return true;
}

/// Bytes of one leading-dim row of a tensor (all of a scalar).
size_t rowBytes(const kiln_abi_tensor &spec) {
  const int64_t width = kiln_dtype_size(static_cast<kiln_dtype>(spec.dtype));
  return spec.rank ? kiln::checkedProductN(spec.shape + 1, spec.rank - 1, width).value_or(0)
                   : width;
}

/// Rows the caller's buffer holds at this batch.
size_t rows(const kiln_abi_tensor &spec, int64_t batch) {
  return spec.batched ? batch : (spec.rank ? spec.shape[0] : 1);
}

template <typename T>
bool checkBounds(kiln_session *s, const kiln_abi_tensor &spec, const void *data, int64_t elements) {
  const T *v = static_cast<const T *>(data);
  const int64_t row = rowElements(spec);
  for (int64_t i = 0, p = 0; i < elements; ++i, p = p + 1 == row ? 0 : p + 1) {
    int64_t lo = spec.index_bounds[2 * p], hi = spec.index_bounds[2 * p + 1];
    if (v[i] < lo || v[i] > hi) {
      format(s->error, sizeof s->error,
             "input '%s': element %lld (row %lld, position %lld) is %lld, outside the valid "
             "ids [%lld, %lld]",
             spec.name, (long long)i, (long long)(i / row), (long long)p, (long long)v[i],
             (long long)lo, (long long)hi);
      return false;
    }
  }
  return true;
}

/// Maps the weights file the descriptor names, from the folder of the .so at
/// `path`, and checks its header against the descriptor.
kiln_status mapWeights(kiln_model *m, const char *path, char *error, size_t error_size) {
  const kiln_abi_model *abi = m->abi;
  const char *name = abi->weights_file;
  if (!*name || std::strchr(name, '/') || std::strcmp(name, ".") == 0 ||
      std::strcmp(name, "..") == 0) {
    format(error, error_size, "%s: a corrupt descriptor: weights file name '%s'", path, name);
    return KILN_ERROR_NOT_A_MODEL;
  }
  const char *slash = std::strrchr(path, '/');
  const int folder = slash ? int(slash - path) : 1;
  if (std::snprintf(m->weights_path, sizeof m->weights_path, "%.*s/%s", folder,
                    slash ? path : ".", name) >= int(sizeof m->weights_path)) {
    format(error, error_size, "%s: the path of its weights file is too long", path);
    return KILN_ERROR_INVALID_ARGUMENT;
  }
  const char *file = m->weights_path;
  int fd = open(file, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    format(error, error_size, "%s: cannot open its weights file %s: %s", path, file,
           std::strerror(errno));
    return KILN_ERROR_NOT_A_MODEL;
  }
  struct stat st;
  const uint64_t expected = uint64_t(KILN_WEIGHTS_HEADER_BYTES) + abi->weights_bytes;
  kiln_status status = KILN_OK;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    format(error, error_size, "%s: its weights file %s is not a regular file", path, file);
    status = KILN_ERROR_NOT_A_MODEL;
  } else if (uint64_t(st.st_size) != expected) {
    format(error, error_size,
           "%s: its weights file %s holds %llu bytes, the model was built with %llu (truncated, "
           "or from another compile)",
           path, file, (unsigned long long)st.st_size, (unsigned long long)expected);
    status = KILN_ERROR_NOT_A_MODEL;
  } else {
    void *map = mmap(nullptr, expected, PROT_READ, MAP_SHARED, fd, 0);
    if (map == MAP_FAILED) {
      format(error, error_size, "%s: cannot map its weights file %s: %s", path, file,
             std::strerror(errno));
      status = KILN_ERROR_OUT_OF_MEMORY;
    } else {
      m->weights_map = map;
      m->weights_map_bytes = expected;
    }
  }
  close(fd);
  if (status != KILN_OK)
    return status;
  kiln_weights_header header;
  std::memcpy(&header, m->weights_map, sizeof header);
  if (std::memcmp(header.magic, KILN_WEIGHTS_MAGIC, sizeof KILN_WEIGHTS_MAGIC) != 0 ||
      header.version != KILN_WEIGHTS_VERSION ||
      header.header_bytes != KILN_WEIGHTS_HEADER_BYTES) {
    format(error, error_size, "%s: %s is not a kiln weights file of format version %d", path, file,
           KILN_WEIGHTS_VERSION);
    return KILN_ERROR_NOT_A_MODEL;
  }
  if (header.data_bytes != abi->weights_bytes || header.data_hash != abi->weights_hash) {
    format(error, error_size,
           "%s: its weights file %s is from another compile (hash %016llx, the model was built "
           "with %016llx)",
           path, file, (unsigned long long)header.data_hash, (unsigned long long)abi->weights_hash);
    return KILN_ERROR_NOT_A_MODEL;
  }
  m->mapped = *abi;
  m->mapped.weights = static_cast<const uint8_t *>(m->weights_map) + KILN_WEIGHTS_HEADER_BYTES;
  m->abi = &m->mapped;
  return KILN_OK;
}

void freeModel(kiln_model *m) {
  if (m->weights_map)
    munmap(m->weights_map, m->weights_map_bytes);
  delete m;
}

} // namespace

extern "C" {

size_t kiln_dtype_size(kiln_dtype dtype) { return kiln::dtypeBytes(dtype); }

const char *kiln_dtype_name(kiln_dtype dtype) {
  static const char *const names[] = {"?",   "f32", "f64", "i64", "i32", "i8",  "u8",
                                      "bool", "i16", "u16", "u32", "u64", "f16", "bf16"};
  return dtype >= 1 && dtype <= KILN_DTYPE_BF16 ? names[dtype] : "?";
}

namespace {

/// Refuses a file the dynamic loader would map past its end: a truncated or
/// half-copied library makes dlopen's touch of those pages a SIGBUS, which
/// takes the whole serving process down. Checks that the ELF header, the
/// program and section header tables and every loaded segment lie in the file.
kiln_status checkElf(const char *path, const char *file, char *error, size_t error_size) {
  int fd = open(file, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    format(error, error_size, "%s: cannot open: %s", path, std::strerror(errno));
    return KILN_ERROR_NOT_A_MODEL;
  }
  struct stat st;
  Elf64_Ehdr header;
  const char *problem = nullptr;
  uint64_t end = 0, size = 0;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    problem = "not a regular file";
  } else if (size = uint64_t(st.st_size);
             pread(fd, &header, sizeof header, 0) != ssize_t(sizeof header) ||
             std::memcmp(header.e_ident, ELFMAG, SELFMAG) != 0 ||
             header.e_ident[EI_CLASS] != ELFCLASS64 || header.e_phentsize != sizeof(Elf64_Phdr)) {
    problem = "not a 64-bit ELF shared library";
  } else if ((end = header.e_phoff + uint64_t(header.e_phnum) * sizeof(Elf64_Phdr)) > size) {
    problem = "its program headers";
  } else if (header.e_shnum &&
             (end = header.e_shoff + uint64_t(header.e_shnum) * header.e_shentsize) > size) {
    problem = "its section headers";
  } else {
    for (uint16_t i = 0; i < header.e_phnum && !problem; ++i) {
      Elf64_Phdr segment;
      if (pread(fd, &segment, sizeof segment, off_t(header.e_phoff + i * sizeof segment)) !=
          ssize_t(sizeof segment))
        problem = "its program headers";
      else if (segment.p_type == PT_LOAD && (end = segment.p_offset + segment.p_filesz) > size)
        problem = "a loaded segment";
    }
  }
  close(fd);
  if (!problem)
    return KILN_OK;
  if (end > size)
    format(error, error_size,
           "%s: truncated or corrupt (a half-copied file?): %s end at byte %llu, the file has "
           "%llu",
           path, problem, (unsigned long long)end, (unsigned long long)size);
  else
    format(error, error_size, "%s: not a loadable kiln model: %s", path, problem);
  return KILN_ERROR_NOT_A_MODEL;
}

/// kiln_model_open, or with `descriptorOnly` kiln_model_open_descriptor.
kiln_status openModel(const char *path, kiln_model **model, char *error, size_t error_size,
                      bool descriptorOnly) {
  if (error && error_size)
    error[0] = '\0';
  if (!model) {
    format(error, error_size, "model out-parameter is NULL");
    return KILN_ERROR_INVALID_ARGUMENT;
  }
  *model = nullptr;
  if (!path) {
    format(error, error_size, "path is NULL");
    return KILN_ERROR_INVALID_ARGUMENT;
  }
  // A bare file name is a file in the working directory, not a library for
  // dlopen to search for on the loader's path.
  char local[4096];
  const char *file = path;
  if (!std::strchr(path, '/') && std::strlen(path) + 3 <= sizeof local) {
    format(local, sizeof local, "./%s", path);
    file = local;
  }
  if (kiln_status status = checkElf(path, file, error, error_size); status != KILN_OK)
    return status;
  void *handle = dlopen(file, RTLD_NOW | RTLD_LOCAL);
  if (!handle) {
    format(error, error_size, "%s: not a loadable kiln model: %s", path, dlerror());
    return KILN_ERROR_NOT_A_MODEL;
  }
  auto *abi = static_cast<const kiln_abi_model *>(dlsym(handle, KILN_DESCRIPTOR_SYMBOL));
  kiln_status status = KILN_OK;
  if (!abi || abi->magic != KILN_MODEL_MAGIC) {
    format(error, error_size, "%s: not a kiln model (no %s descriptor)", path,
           KILN_DESCRIPTOR_SYMBOL);
    status = KILN_ERROR_NOT_A_MODEL;
  } else if (abi->abi_major != KILN_ABI_MAJOR) {
    format(error, error_size, "%s: built for kiln ABI %u.%u, this runtime speaks %d.%d", path,
           abi->abi_major, abi->abi_minor, KILN_ABI_MAJOR, KILN_ABI_MINOR);
    status = KILN_ERROR_ABI_MISMATCH;
  } else if (!descriptorOnly && !cpuSupports(abi->isa)) {
    format(error, error_size, "%s: compiled for target '%s', which this CPU cannot run", path,
           abi->target);
    status = KILN_ERROR_UNSUPPORTED_TARGET;
  } else if (abi->abi_minor >= 5 && abi->host_weights_bytes > abi->weights_bytes) {
    format(error, error_size,
           "%s: a corrupt descriptor: %llu bytes of weights in host memory, of %llu", path,
           (unsigned long long)abi->host_weights_bytes, (unsigned long long)abi->weights_bytes);
    status = KILN_ERROR_NOT_A_MODEL;
  } else if (abi->num_buckets < 1) {
    format(error, error_size, "%s: the model has no batch buckets", path);
    status = KILN_ERROR_NOT_A_MODEL;
  } else if (char why[256]; !kiln::checkDescriptor(handle, abi, why, sizeof why)) {
    format(error, error_size, "%s: a corrupt descriptor: %s", path, why);
    status = KILN_ERROR_NOT_A_MODEL;
  } else if ((abi->abi_minor < 6 || !abi->weights_file) && !abi->weights && abi->weights_bytes) {
    format(error, error_size, "%s: a corrupt descriptor: weights neither embedded nor in a file",
           path);
    status = KILN_ERROR_NOT_A_MODEL;
  } else if ((abi->isa & KILN_ISA_CUDA) && (abi->abi_minor < 2 || !abi->device)) {
    format(error, error_size, "%s: a device model without device hooks", path);
    status = KILN_ERROR_NOT_A_MODEL;
  }
  if (status == KILN_OK) {
    const kiln_abi_device *device = (abi->isa & KILN_ISA_CUDA) ? abi->device : nullptr;
    *model = new (std::nothrow) kiln_model{handle, abi, device, nullptr, descriptorOnly};
    if (!*model) {
      format(error, error_size, "out of memory");
      status = KILN_ERROR_OUT_OF_MEMORY;
    } else {
      if (abi->abi_minor >= 6 && abi->weights_file)
        status = mapWeights(*model, path, error, error_size);
      char reason[512] = "";
      if (status == KILN_OK && device && !descriptorOnly &&
          device->open((*model)->abi, &(*model)->device_state, reason, sizeof reason) != 0) {
        format(error, error_size, "%s: %s", path, reason);
        status = KILN_ERROR_UNSUPPORTED_TARGET;
      }
      if (status != KILN_OK) {
        freeModel(*model);
        *model = nullptr;
      }
    }
  }
  if (status != KILN_OK)
    dlclose(handle);
  return status;
}

} // namespace

kiln_status kiln_model_open(const char *path, kiln_model **model, char *error, size_t error_size) {
  return openModel(path, model, error, error_size, false);
}

kiln_status kiln_model_open_descriptor(const char *path, kiln_model **model, char *error,
                                       size_t error_size) {
  return openModel(path, model, error, error_size, true);
}

void kiln_model_close(kiln_model *model) {
  if (!model)
    return;
  if (model->device && !model->descriptor_only)
    model->device->close(model->device_state);
  dlclose(model->handle);
  freeModel(model);
}

void kiln_model_get_info(const kiln_model *model, kiln_model_info *info) {
  if (!model || !info)
    return;
  const kiln_abi_model *m = model->abi;
  *info = {m->abi_major, m->abi_minor,  m->compiler_version,
           m->target,    m->model_hash, m->weights_bytes};
}

int32_t kiln_model_num_inputs(const kiln_model *model) {
  return model ? model->abi->num_inputs : 0;
}
int32_t kiln_model_num_outputs(const kiln_model *model) {
  return model ? model->abi->num_outputs : 0;
}

kiln_status kiln_model_input(const kiln_model *model, int32_t index, kiln_tensor_info *info) {
  if (!model || !info || index < 0 || index >= model->abi->num_inputs)
    return KILN_ERROR_INVALID_ARGUMENT;
  fillInfo(model->abi->inputs[index], info);
  return KILN_OK;
}

kiln_status kiln_model_output(const kiln_model *model, int32_t index, kiln_tensor_info *info) {
  if (!model || !info || index < 0 || index >= model->abi->num_outputs)
    return KILN_ERROR_INVALID_ARGUMENT;
  fillInfo(model->abi->outputs[index], info);
  return KILN_OK;
}

int32_t kiln_model_num_buckets(const kiln_model *model) {
  return model ? model->abi->num_buckets : 0;
}

int64_t kiln_model_bucket_batch(const kiln_model *model, int32_t index) {
  if (!model || index < 0 || index >= model->abi->num_buckets)
    return -1;
  return model->abi->buckets[index].batch;
}

uint64_t kiln_model_bucket_arena_bytes(const kiln_model *model, int32_t index) {
  if (!model || index < 0 || index >= model->abi->num_buckets)
    return 0;
  return model->abi->buckets[index].arena_bytes;
}

const char *kiln_model_quantization(const kiln_model *model) {
  if (!model || model->abi->abi_minor < 1 || !model->abi->quantization)
    return "none";
  return model->abi->quantization;
}

uint64_t kiln_model_f32_weights_bytes(const kiln_model *model) {
  if (!model)
    return 0;
  if (model->abi->abi_minor < 1 || !model->abi->f32_weights_bytes)
    return model->abi->weights_bytes;
  return model->abi->f32_weights_bytes;
}

const char *kiln_model_weights_path(const kiln_model *model) {
  return model && model->weights_map ? model->weights_path : nullptr;
}

int32_t kiln_model_exact_buckets(const kiln_model *model) {
  return model && model->abi->abi_minor >= 7 && (model->abi->flags & KILN_MODEL_EXACT_BUCKETS);
}

uint64_t kiln_model_host_weights_bytes(const kiln_model *model) {
  return model && model->abi->abi_minor >= 5 ? model->abi->host_weights_bytes : 0;
}

uint64_t kiln_model_bucket_arena_lower_bound(const kiln_model *model, int32_t index) {
  if (!model || index < 0 || index >= model->abi->num_buckets)
    return 0;
  return model->abi->buckets[index].arena_lower_bound;
}

uint64_t kiln_model_arena_bytes(const kiln_model *model) {
  return model ? maxArena(model->abi) : 0;
}

void kiln_session_options_init(kiln_session_options *options) {
  if (options)
    *options = kiln_session_options{1, nullptr, 0};
}

kiln_status kiln_session_create_with_options(const kiln_model *model,
                                             const kiln_session_options *options,
                                             kiln_session **session) {
  lastError[0] = '\0';
  auto refuse = [](kiln_status status, const char *why) {
    format(lastError, sizeof lastError, "%s", why);
    return status;
  };
  if (!model || !options || !session)
    return refuse(KILN_ERROR_INVALID_ARGUMENT, "model, options or session is NULL");
  *session = nullptr;
  if (model->descriptor_only)
    return refuse(KILN_ERROR_INVALID_ARGUMENT,
                  "the model was opened to read its descriptor only (kiln_model_open_descriptor)");
  uint64_t bytes = maxArena(model->abi);
  if (options->num_threads < 0 || options->num_threads > 256)
    return refuse(KILN_ERROR_INVALID_ARGUMENT, "num_threads must be in [0, 256]");
  if (options->arena && (options->arena_bytes < bytes ||
                         reinterpret_cast<uintptr_t>(options->arena) % KILN_ARENA_ALIGNMENT != 0))
    return refuse(KILN_ERROR_INVALID_ARGUMENT,
                  "the caller's arena is smaller than kiln_model_arena_bytes or misaligned");
  if (options->arena && model->device)
    return refuse(KILN_ERROR_INVALID_ARGUMENT,
                  "a device model's arena is device memory the session allocates");
  auto *s = new (std::nothrow) kiln_session{};
  if (!s)
    return refuse(KILN_ERROR_OUT_OF_MEMORY, "out of memory");
  s->model = model;
  s->arena = static_cast<uint8_t *>(options->arena);
  s->exec = {nullptr, 1, nullptr};
  if (options->num_threads > 1) {
    s->pool = new (std::nothrow) kiln::ThreadPool;
    if (s->pool && s->pool->start(options->num_threads))
      s->exec = {s->pool, s->pool->size(), &kiln::ThreadPool::parallelFor};
  }
  if (options->num_threads > 1 && !s->exec.parallel_for) {
    kiln_session_destroy(s);
    return refuse(KILN_ERROR_OUT_OF_MEMORY, "out of memory (threads)");
  }
  if (model->device) {
    const kiln_abi_model *m = model->abi;
    s->device_inputs = new (std::nothrow) const void *[m->num_inputs + 1];
    s->device_outputs = new (std::nothrow) void *[m->num_outputs + 1];
    if (!s->device_inputs || !s->device_outputs) {
      kiln_session_destroy(s);
      return refuse(KILN_ERROR_OUT_OF_MEMORY, "out of memory");
    }
    const kiln_abi_device *d = model->device;
    const bool withThreads = m->abi_minor >= 4 && d->session_create_exec;
    if ((withThreads ? d->session_create_exec(model->device_state, &s->exec, &s->device_session,
                                              lastError, sizeof lastError)
                     : d->session_create(model->device_state, &s->device_session, lastError,
                                         sizeof lastError)) != 0) {
      kiln_session_destroy(s);
      return KILN_ERROR_MODEL_FAILURE;
    }
    *session = s;
    return KILN_OK;
  }
  if (!s->arena) {
    s->arena = static_cast<uint8_t *>(
        std::aligned_alloc(KILN_ARENA_ALIGNMENT, (bytes + KILN_ARENA_ALIGNMENT - 1) /
                                                     KILN_ARENA_ALIGNMENT * KILN_ARENA_ALIGNMENT));
    s->owns_arena = true;
  }
  if (!s->arena) {
    kiln_session_destroy(s);
    return refuse(KILN_ERROR_OUT_OF_MEMORY, "out of memory (arena)");
  }
  *session = s;
  return KILN_OK;
}

kiln_status kiln_session_create(const kiln_model *model, kiln_session **session) {
  kiln_session_options options;
  kiln_session_options_init(&options);
  return kiln_session_create_with_options(model, &options, session);
}

kiln_status kiln_session_create_with_arena(const kiln_model *model, void *arena,
                                           uint64_t arena_bytes, kiln_session **session) {
  if (!arena)
    return KILN_ERROR_INVALID_ARGUMENT;
  kiln_session_options options;
  kiln_session_options_init(&options);
  options.arena = arena;
  options.arena_bytes = arena_bytes;
  return kiln_session_create_with_options(model, &options, session);
}

void kiln_session_destroy(kiln_session *session) {
  if (!session)
    return;
  if (session->device_session)
    session->model->device->session_destroy(session->device_session);
  delete[] session->device_inputs;
  delete[] session->device_outputs;
  delete session->pool;
  if (session->owns_arena)
    std::free(session->arena);
  delete session;
}

int32_t kiln_session_num_threads(const kiln_session *session) {
  return session ? session->exec.num_threads : 0;
}

const char *kiln_session_error(const kiln_session *session) {
  return session ? session->error : "session is NULL";
}

namespace {

bool checkBatch(kiln_session *s, int64_t batch) {
  const kiln_abi_model *m = s->model->abi;
  const int64_t maxBatch = m->buckets[m->num_buckets - 1].batch;
  if (batch >= 1 && batch <= maxBatch)
    return true;
  format(s->error, sizeof s->error, "batch %lld is outside [1, %lld]", (long long)batch,
         (long long)maxBatch);
  return false;
}

/// Checks one input's dtype and shape, and its ids when they are host memory.
bool checkInput(kiln_session *s, const kiln_abi_tensor &spec, const kiln_tensor &t, int64_t batch,
                bool hostMemory) {
  int64_t elements = 0;
  if (!checkTensor(s, "input", spec, t, batch, elements))
    return false;
  if (!spec.index_bounds || !hostMemory)
    return true;
  return spec.dtype == KILN_DTYPE_I64 ? checkBounds<int64_t>(s, spec, t.data, elements)
                                      : checkBounds<int32_t>(s, spec, t.data, elements);
}

/// Checks a request and finds its bucket. Id inputs' values are checked
/// when they are host memory (`hostInputs`).
kiln_status validate(kiln_session *s, int64_t batch, const kiln_tensor *inputs, int32_t num_inputs,
                     const kiln_tensor *outputs, int32_t num_outputs, bool hostInputs,
                     int32_t &bucket) {
  if (!s)
    return KILN_ERROR_INVALID_ARGUMENT;
  s->error[0] = '\0';
  const kiln_abi_model *m = s->model->abi;
  if (!checkBatch(s, batch))
    return KILN_ERROR_INVALID_ARGUMENT;
  if (num_inputs != m->num_inputs || num_outputs != m->num_outputs || (num_inputs && !inputs) ||
      (num_outputs && !outputs)) {
    format(s->error, sizeof s->error, "the model takes %d inputs and %d outputs, got %d and %d",
           m->num_inputs, m->num_outputs, num_inputs, num_outputs);
    return KILN_ERROR_INVALID_ARGUMENT;
  }
  bucket = 0;
  while (m->buckets[bucket].batch < batch)
    ++bucket;
  if (kiln_model_exact_buckets(s->model) && m->buckets[bucket].batch != batch) {
    format(s->error, sizeof s->error,
           "batch %lld is not a bucket of this model (the smallest above it is %lld): its rows "
           "depend on each other (compiled with --row-mixing=exact-buckets), so it runs only "
           "batches equal to a bucket, never padded",
           (long long)batch, (long long)m->buckets[bucket].batch);
    return KILN_ERROR_INVALID_ARGUMENT;
  }
  for (int32_t i = 0; i < num_inputs; ++i)
    if (!checkInput(s, m->inputs[i], inputs[i], batch, hostInputs))
      return KILN_ERROR_INVALID_ARGUMENT;
  for (int32_t i = 0; i < num_outputs; ++i) {
    int64_t elements = 0;
    if (!checkTensor(s, "output", m->outputs[i], outputs[i], batch, elements))
      return KILN_ERROR_INVALID_ARGUMENT;
  }
  return KILN_OK;
}

/// Hands a validated request to a device model.
kiln_status runOnDevice(kiln_session *s, int32_t bucket, int64_t batch, const kiln_tensor *inputs,
                        const kiln_tensor *outputs, bool devicePointers) {
  const kiln_abi_model *m = s->model->abi;
  for (int32_t i = 0; i < m->num_inputs; ++i)
    s->device_inputs[i] = inputs[i].data;
  for (int32_t i = 0; i < m->num_outputs; ++i)
    s->device_outputs[i] = outputs[i].data;
  if (s->model->device->run(s->device_session, bucket, batch, s->device_inputs, s->device_outputs,
                            devicePointers ? 1 : 0, s->error, sizeof s->error) != 0)
    return KILN_ERROR_MODEL_FAILURE;
  return KILN_OK;
}

} // namespace

kiln_status kiln_run(kiln_session *s, int64_t batch, const kiln_tensor *inputs, int32_t num_inputs,
                     const kiln_tensor *outputs, int32_t num_outputs) {
  int32_t b = 0;
  kiln_status status = validate(s, batch, inputs, num_inputs, outputs, num_outputs, true, b);
  if (status != KILN_OK)
    return status;
  if (s->model->device)
    return runOnDevice(s, b, batch, inputs, outputs, false);

  // Batched rows beyond `batch` are zero: id 0 is valid for every table.
  const kiln_abi_model *m = s->model->abi;
  const kiln_abi_bucket *bucket = &m->buckets[b];
  for (int32_t i = 0; i < num_inputs; ++i) {
    const kiln_abi_tensor &spec = m->inputs[i];
    size_t row = rowBytes(spec);
    uint8_t *slot = s->arena + bucket->input_offsets[i];
    std::memcpy(slot, inputs[i].data, row * rows(spec, batch));
    if (spec.batched)
      std::memset(slot + row * batch, 0, row * (bucket->batch - batch));
  }
  if (bucket->entry(s->arena, m->weights, &s->exec, s->error, sizeof s->error) != 0)
    return KILN_ERROR_MODEL_FAILURE;
  for (int32_t i = 0; i < num_outputs; ++i) {
    const kiln_abi_tensor &spec = m->outputs[i];
    std::memcpy(outputs[i].data, s->arena + bucket->output_offsets[i],
                rowBytes(spec) * rows(spec, batch));
  }
  return KILN_OK;
}

kiln_status kiln_check_input(kiln_session *s, int32_t index, int64_t batch,
                             const kiln_tensor *input) {
  if (!s)
    return KILN_ERROR_INVALID_ARGUMENT;
  s->error[0] = '\0';
  const kiln_abi_model *m = s->model->abi;
  if (index < 0 || index >= m->num_inputs || !input) {
    format(s->error, sizeof s->error, "input %d: the model takes %d inputs", index, m->num_inputs);
    return KILN_ERROR_INVALID_ARGUMENT;
  }
  if (!checkBatch(s, batch))
    return KILN_ERROR_INVALID_ARGUMENT;
  return checkInput(s, m->inputs[index], *input, batch, true) ? KILN_OK
                                                              : KILN_ERROR_INVALID_ARGUMENT;
}

kiln_status kiln_run_device(kiln_session *s, int64_t batch, const kiln_tensor *inputs,
                            int32_t num_inputs, const kiln_tensor *outputs, int32_t num_outputs) {
  int32_t b = 0;
  kiln_status status = validate(s, batch, inputs, num_inputs, outputs, num_outputs, false, b);
  if (status != KILN_OK)
    return status;
  if (!s->model->device) {
    format(s->error, sizeof s->error,
           "the model runs on the CPU (target '%s'): pass host memory to kiln_run",
           s->model->abi->target);
    return KILN_ERROR_INVALID_ARGUMENT;
  }
  return runOnDevice(s, b, batch, inputs, outputs, true);
}

int32_t kiln_model_is_device(const kiln_model *model) { return model && model->device ? 1 : 0; }

const char *kiln_last_error(void) { return lastError; }

} // extern "C"
