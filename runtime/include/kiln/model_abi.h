/*
 * kiln/model_abi.h - the descriptor a compiled model exports.
 *
 * Shared by generated model code and the runtime, and nothing else: a model
 * .so exports exactly one symbol, KILN_DESCRIPTOR_SYMBOL, of this type.
 * Fields are only ever appended (ABI minor); a layout change bumps the major.
 */
#ifndef KILN_MODEL_ABI_H
#define KILN_MODEL_ABI_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define KILN_ABI_MAJOR 2
#define KILN_ABI_MINOR 9             /* 9: KILN_ISA_AVX512_BF16 */
#define KILN_MODEL_MAGIC 0x4e4c494bu /* "KILN" */
#define KILN_DESCRIPTOR_SYMBOL "kiln_model_descriptor"

/* Instruction-set features a model's code needs (kiln_abi_model.isa). */
#define KILN_ISA_AVX2 (1u << 0)
#define KILN_ISA_FMA (1u << 1)
#define KILN_ISA_F16C (1u << 2) /* since 2.1: half-precision conversions */
#define KILN_ISA_CUDA (1u << 3) /* since 2.2: runs on a CUDA device (kiln_abi_model.device) */
#define KILN_ISA_AVX512 (1u << 4)      /* since 2.3: AVX-512 F, BW and VL */
#define KILN_ISA_AVX512_VNNI (1u << 5) /* since 2.3: AVX-512 VNNI */
#define KILN_ISA_AVX512_BF16 (1u << 6) /* since 2.9: AVX-512 BF16 */

/* The session's threads as a model sees them. parallel_for runs
 * fn(ctx, task) for every task in [0, tasks) on up to num_threads threads
 * (the calling one included) and returns when all have finished; it never
 * allocates. A model with parallel_for NULL runs on the calling thread. */
typedef struct kiln_abi_exec {
  void *pool;
  int32_t num_threads;
  void (*parallel_for)(void *pool, int64_t tasks, void (*fn)(void *ctx, int64_t task), void *ctx);
} kiln_abi_exec;

/* Entry point of one batch bucket: runs the model over the arena, whose
 * input slots the runtime has filled. Returns 0, or non-zero after writing a
 * NUL-terminated reason into `message`. */
typedef int (*kiln_entry_fn)(uint8_t *arena, const uint8_t *weights, const kiln_abi_exec *exec,
                             char *message, size_t message_size);

typedef struct kiln_abi_tensor {
  const char *name;
  int32_t dtype; /* kiln_dtype */
  int32_t rank;
  const int64_t *shape; /* the leading dim is -1 when batched */
  int32_t batched;
  /* Id inputs: [lo, hi] for each element of a batch row (the whole tensor
   * when not batched); NULL when the values are not bounded. */
  const int64_t *index_bounds;
} kiln_abi_tensor;

typedef struct kiln_abi_bucket {
  int64_t batch;
  uint64_t arena_bytes;
  uint64_t arena_lower_bound;
  const uint64_t *input_offsets;
  const uint64_t *output_offsets;
  kiln_entry_fn entry;
} kiln_abi_bucket;

/* Since 2.2: the hooks of a model whose code runs on a device (target
 * "cuda-..."). The runtime validates requests as for a CPU model and hands
 * them to these; it never calls a device model's bucket entry points, which
 * have the model's own signature. Each returns 0, or non-zero after writing a
 * NUL-terminated reason into `message`. */
typedef struct kiln_abi_device {
  /* At kiln_model_open: checks the device and uploads the weights. */
  int (*open)(const struct kiln_abi_model *model, void **state, char *message, size_t message_size);
  void (*close)(void *state);
  /* At kiln_session_create: the device arena, pinned staging, a stream and
   * one captured CUDA graph per bucket. */
  int (*session_create)(void *state, void **session, char *message, size_t message_size);
  void (*session_destroy)(void *session);
  /* Runs `batch` rows in bucket `bucket`; the tensors' data are host
   * pointers, or device pointers when `device_pointers` is non-zero. */
  int (*run)(void *session, int32_t bucket, int64_t batch, const void *const *inputs,
             void *const *outputs, int32_t device_pointers, char *message, size_t message_size);
  /* Since 2.4: session_create, given the session's CPU threads (`exec`,
   * valid until session_destroy) for the work the model does on the host:
   * pooling embedding tables kept in host memory. The runtime calls it
   * instead of session_create when the model has it. */
  int (*session_create_exec)(void *state, const kiln_abi_exec *exec, void **session, char *message,
                             size_t message_size);
} kiln_abi_device;

typedef struct kiln_abi_model {
  uint32_t magic;
  uint16_t abi_major, abi_minor;
  const char *compiler_version;
  const char *target;
  uint32_t isa;
  const char *model_hash;
  int32_t num_inputs, num_outputs;
  const kiln_abi_tensor *inputs;
  const kiln_abi_tensor *outputs;
  int32_t num_buckets; /* ascending batch */
  const kiln_abi_bucket *buckets;
  const uint8_t *weights;
  uint64_t weights_bytes;
  /* Since 2.1: how the weights were quantised ("none", or kiln compile's
   * --quantize modes) and the weight bytes of the same model at f32. */
  const char *quantization;
  uint64_t f32_weights_bytes;
  /* Since 2.2: NULL for a CPU model. */
  const kiln_abi_device *device;
  /* Since 2.5: of weights_bytes, those a device model keeps in host memory
   * (embedding tables, kiln compile --host-tables-over): the last ones. The
   * model uploads the others to the device. */
  uint64_t host_weights_bytes;
  /* Since 2.6: where the weights live when they are not embedded (weights is
   * then NULL): the file name of a weights file in the .so's folder, which
   * kiln_model_open maps read-only, and the hash of its data that the file's
   * header must carry. NULL and 0 for embedded weights. */
  const char *weights_file;
  uint64_t weights_hash;
  /* Since 2.7: KILN_MODEL_* flags. */
  uint32_t flags;
} kiln_abi_model;

/* kiln_abi_model.flags. EXACT_BUCKETS: the model's rows depend on other rows
 * of the batch (kiln compile --row-mixing=exact-buckets), so a padded bucket
 * would change the answer: it runs only batches equal to a bucket's. */
#define KILN_MODEL_EXACT_BUCKETS (1u << 0)

/* The header of a weights file (kiln compile --weights-file): the data, the
 * model's weights_bytes, follow at offset header_bytes (a multiple of the
 * page size, so every weight keeps its 64-byte alignment in the map). */
#define KILN_WEIGHTS_MAGIC "KILNWGT"
#define KILN_WEIGHTS_VERSION 1
#define KILN_WEIGHTS_HEADER_BYTES 4096
typedef struct kiln_weights_header {
  char magic[8]; /* KILN_WEIGHTS_MAGIC, NUL-terminated */
  uint32_t version;
  uint32_t header_bytes;
  uint64_t data_bytes;
  /* kiln's chunked xxh3 of the data (kiln inspect --verify-weights
   * recomputes it); equal to the descriptor's weights_hash. */
  uint64_t data_hash;
  char model_hash[32]; /* the descriptor's model_hash, NUL-terminated */
} kiln_weights_header;

#ifdef __cplusplus
}
#endif

#endif /* KILN_MODEL_ABI_H */
