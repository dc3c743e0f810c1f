/*
 * kiln/runtime.h - the C ABI for serving kiln-compiled models.
 *
 * A model is opened once and shared read-only; each thread creates its own
 * session, which owns (or borrows) the one arena a request needs. kiln_run
 * never allocates, never throws, and a failed run leaves the session usable.
 * Every call returns a kiln_status; the reason for a failure is in the
 * caller's error buffer (model open) or in kiln_session_error.
 */
#ifndef KILN_RUNTIME_H
#define KILN_RUNTIME_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define KILN_API __attribute__((visibility("default")))
#else
#define KILN_API
#endif

typedef enum kiln_status {
  KILN_OK = 0,
  KILN_ERROR_INVALID_ARGUMENT = 1,   /* a bad batch, pointer, shape or index */
  KILN_ERROR_NOT_A_MODEL = 2,        /* the file is not a loadable kiln model */
  KILN_ERROR_ABI_MISMATCH = 3,       /* compiled for another runtime ABI major */
  KILN_ERROR_UNSUPPORTED_TARGET = 4, /* e.g. the CPU lacks AVX2/FMA */
  KILN_ERROR_OUT_OF_MEMORY = 5,
  KILN_ERROR_MODEL_FAILURE = 6 /* the model's code reported an error */
} kiln_status;

typedef enum kiln_dtype {
  KILN_DTYPE_F32 = 1,
  KILN_DTYPE_F64 = 2,
  KILN_DTYPE_I64 = 3,
  KILN_DTYPE_I32 = 4,
  KILN_DTYPE_I8 = 5,
  KILN_DTYPE_U8 = 6,
  KILN_DTYPE_BOOL = 7, /* one byte, 0 or 1 */
  KILN_DTYPE_I16 = 8,
  KILN_DTYPE_U16 = 9,
  KILN_DTYPE_U32 = 10,
  KILN_DTYPE_U64 = 11,
  KILN_DTYPE_F16 = 12, /* IEEE binary16 */
  KILN_DTYPE_BF16 = 13 /* bfloat16: the high half of an f32 */
} kiln_dtype;

/* Bytes per element, and a short name ("f32", "i64", ...; "?" if unknown). */
KILN_API size_t kiln_dtype_size(kiln_dtype dtype);
KILN_API const char *kiln_dtype_name(kiln_dtype dtype);

typedef struct kiln_model kiln_model;
typedef struct kiln_session kiln_session;

typedef struct kiln_tensor_info {
  const char *name;
  kiln_dtype dtype;
  int32_t rank;
  const int64_t *shape; /* shape[0] == -1 when the leading dim is the batch */
  /* Id inputs: the valid values, as [lo, hi] pairs for each of the
   * row_elements elements of a batch row (of the whole tensor when it is not
   * batched); NULL when the values are not checked. */
  const int64_t *index_bounds;
  int64_t row_elements;
} kiln_tensor_info;

typedef struct kiln_model_info {
  uint32_t abi_major, abi_minor;
  const char *compiler_version;
  const char *target;
  const char *model_hash;
  uint64_t weights_bytes;
} kiln_model_info;

/* Opens a compiled model. A model built with its weights in a file maps that
 * file (named in the descriptor, in the .so's folder) read-only and refuses
 * it when it is missing, truncated or from another compile (its header's
 * size and hash against the descriptor's); the map is a map, not a read, so
 * opening takes the same time at any size. On failure *model is NULL and
 * `error` (if not NULL) receives a NUL-terminated reason. */
KILN_API kiln_status kiln_model_open(const char *path, kiln_model **model, char *error,
                                     size_t error_size);
/* Opens a compiled model to read its descriptor only (kiln inspect): the
 * checks of kiln_model_open, except that this CPU need not have the model's
 * instruction sets and a device model is not opened on a device, so it
 * works on any machine. Sessions cannot be created on such a model. */
KILN_API kiln_status kiln_model_open_descriptor(const char *path, kiln_model **model, char *error,
                                                size_t error_size);
KILN_API void kiln_model_close(kiln_model *model);

KILN_API void kiln_model_get_info(const kiln_model *model, kiln_model_info *info);
KILN_API int32_t kiln_model_num_inputs(const kiln_model *model);
KILN_API int32_t kiln_model_num_outputs(const kiln_model *model);
KILN_API kiln_status kiln_model_input(const kiln_model *model, int32_t index,
                                      kiln_tensor_info *info);
KILN_API kiln_status kiln_model_output(const kiln_model *model, int32_t index,
                                       kiln_tensor_info *info);
/* How the model's weights were quantised: "none", or the modes given to
 * `kiln compile --quantize` (e.g. "int8,int8-embeddings"). */
KILN_API const char *kiln_model_quantization(const kiln_model *model);
/* Weight bytes of the same model compiled at f32 (weights_bytes when not
 * quantised). */
KILN_API uint64_t kiln_model_f32_weights_bytes(const kiln_model *model);
/* Of the weight bytes, those a CUDA model keeps in host memory (embedding
 * tables placed there by `kiln compile --host-tables-over`); the rest are
 * uploaded to the device. 0 for every other model. */
KILN_API uint64_t kiln_model_host_weights_bytes(const kiln_model *model);
/* The weights file a model maps read-only (kiln compile --weights-file: the
 * file the descriptor names, in the .so's folder; its pages are shared by
 * every process that opens the model), or NULL for embedded weights. */
KILN_API const char *kiln_model_weights_path(const kiln_model *model);
/* Non-zero for a model whose output rows depend on other rows of the batch
 * (kiln compile --row-mixing=exact-buckets): kiln_run accepts only a batch
 * equal to one of its buckets, since padding would change the answer. */
KILN_API int32_t kiln_model_exact_buckets(const kiln_model *model);
KILN_API int32_t kiln_model_num_buckets(const kiln_model *model);
/* Batch size of bucket `index` (ascending), or -1. */
KILN_API int64_t kiln_model_bucket_batch(const kiln_model *model, int32_t index);
/* Arena bytes of bucket `index` and the liveness lower bound of its plan. */
KILN_API uint64_t kiln_model_bucket_arena_bytes(const kiln_model *model, int32_t index);
KILN_API uint64_t kiln_model_bucket_arena_lower_bound(const kiln_model *model, int32_t index);
/* Bytes a caller-supplied arena needs: the largest bucket's arena. */
KILN_API uint64_t kiln_model_arena_bytes(const kiln_model *model);
/* Required alignment of a caller-supplied arena. */
#define KILN_ARENA_ALIGNMENT 64

/* How a session runs. Initialise with kiln_session_options_init, then set
 * what differs from the defaults. */
typedef struct kiln_session_options {
  /* Threads a run uses, the calling thread included (default 1). They are
   * started with the session and kept until it is destroyed; kernels split
   * large batches and layers across them. */
  int32_t num_threads;
  /* The caller's arena (NULL: the session allocates one): at least
   * kiln_model_arena_bytes, aligned to KILN_ARENA_ALIGNMENT, alive until the
   * session is destroyed. */
  void *arena;
  uint64_t arena_bytes;
} kiln_session_options;

KILN_API void kiln_session_options_init(kiln_session_options *options);
KILN_API kiln_status kiln_session_create_with_options(const kiln_model *model,
                                                      const kiln_session_options *options,
                                                      kiln_session **session);
/* The session's thread count (1 unless num_threads asked for more). */
KILN_API int32_t kiln_session_num_threads(const kiln_session *session);

/* Why the calling thread's last kiln_session_create* failed ("" after a
 * success). For a device model this is where a CUDA error at session
 * creation (out of device memory, say) is reported. */
KILN_API const char *kiln_last_error(void);

/* A one-thread session that owns an arena allocated once here. */
KILN_API kiln_status kiln_session_create(const kiln_model *model, kiln_session **session);
/* A one-thread session that uses the caller's arena (see
 * kiln_session_options.arena). */
KILN_API kiln_status kiln_session_create_with_arena(const kiln_model *model, void *arena,
                                                    uint64_t arena_bytes, kiln_session **session);
KILN_API void kiln_session_destroy(kiln_session *session);
/* The reason for the session's last failed run ("" after a success). */
KILN_API const char *kiln_session_error(const kiln_session *session);

/* A dense row-major tensor supplied by the caller. */
typedef struct kiln_tensor {
  void *data; /* read for inputs, written for outputs */
  kiln_dtype dtype;
  int32_t rank;
  const int64_t *shape;
} kiln_tensor;

/* Runs `batch` rows (1 <= batch <= the largest bucket). inputs and outputs
 * are in the model's order; a batched tensor has `batch` as its leading dim.
 * Every tensor's dtype and shape, and every id input's values, are checked
 * before the arena is touched. */
KILN_API kiln_status kiln_run(kiln_session *session, int64_t batch, const kiln_tensor *inputs,
                              int32_t num_inputs, const kiln_tensor *outputs, int32_t num_outputs);

/* Checks one input (the model's input `index`) as kiln_run would at `batch`
 * rows: dtype, shape and, in host memory, every id's range; the reason is in
 * kiln_session_error. Runs nothing and leaves the arena alone: a server
 * checks each request this way before it batches requests into one run. */
KILN_API kiln_status kiln_check_input(kiln_session *session, int32_t index, int64_t batch,
                                      const kiln_tensor *input);

/* Device models (compiled with --target cuda). kiln_run works for them too:
 * its host tensors are copied through the session's pinned staging inside
 * the bucket's CUDA graph. A session of a device model takes no caller
 * arena: it allocates its device arena once. Its num_threads threads pool
 * the embedding tables kept in host memory (kiln compile
 * --host-tables-over); a model without such tables does not use them. */
KILN_API int32_t kiln_model_is_device(const kiln_model *model);
/* As kiln_run, with every tensor's data in device memory (CUDA pointers of
 * the model's device). Id inputs are checked on the device: an id out of
 * range fails the run with the op's name. Returns when the outputs are
 * written. KILN_ERROR_INVALID_ARGUMENT for a CPU model. */
KILN_API kiln_status kiln_run_device(kiln_session *session, int64_t batch,
                                     const kiln_tensor *inputs, int32_t num_inputs,
                                     const kiln_tensor *outputs, int32_t num_outputs);

#ifdef __cplusplus
}
#endif

#endif /* KILN_RUNTIME_H */
