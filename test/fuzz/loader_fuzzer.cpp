// loader_fuzzer.cpp - the model loader on mutated descriptors of a real kiln
// model. The input is the bytes of the descriptor regions of the model named
// by KILN_FUZZ_MODEL (descriptor_regions.h: the descriptor, its tensor
// specs, shapes, id bounds, buckets and slot offsets), concatenated; each run
// writes them into a copy of the model and opens it with
// kiln_model_open_descriptor and kiln_model_open, reads everything the
// runtime API returns about it and creates and destroys a session. A corrupt
// descriptor must be refused with a message, never read past or trusted.
//
// KILN_FUZZ_WRITE_SEED=FILE writes the model's own region bytes (the seed).

#include "descriptor_regions.h"
#include "kiln/runtime.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

namespace {

std::string model;                          // the .so's bytes
std::vector<kiln::test::Region> regions;    // where the input goes in it
std::string scratch;                        // where the mutated copy is written

/// Reads every value the runtime hands out about a tensor.
void touch(const kiln_tensor_info &info) {
  volatile uint64_t sink = uint64_t(info.name[0]);
  for (int32_t d = 0; d < info.rank; ++d)
    sink = sink ^ uint64_t(info.shape[d]);
  if (info.index_bounds)
    for (int64_t e = 0; e < 2 * info.row_elements; ++e)
      sink = sink ^ uint64_t(info.index_bounds[e]);
}

/// Everything the runtime tells about an opened model.
void readAll(const kiln_model *m) {
  kiln_model_info info;
  kiln_model_get_info(m, &info);
  volatile size_t sink = std::strlen(info.target) + std::strlen(info.compiler_version) +
                         std::strlen(info.model_hash) + std::strlen(kiln_model_quantization(m));
  (void)sink;
  kiln_tensor_info t;
  for (int32_t i = 0; i < kiln_model_num_inputs(m); ++i)
    if (kiln_model_input(m, i, &t) == KILN_OK)
      touch(t);
  for (int32_t i = 0; i < kiln_model_num_outputs(m); ++i)
    if (kiln_model_output(m, i, &t) == KILN_OK)
      touch(t);
  for (int32_t b = 0; b < kiln_model_num_buckets(m); ++b)
    (void)(kiln_model_bucket_batch(m, b) + kiln_model_bucket_arena_bytes(m, b));
  (void)kiln_model_arena_bytes(m);
}

} // namespace

extern "C" int LLVMFuzzerInitialize(int *, char ***) {
  const char *path = std::getenv("KILN_FUZZ_MODEL");
  if (!path) {
    std::fprintf(stderr, "loader_fuzzer: set KILN_FUZZ_MODEL to a kiln model .so\n");
    std::exit(2);
  }
  std::ifstream in(path, std::ios::binary);
  model.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  regions = kiln::test::descriptorRegions(path);
  if (model.empty() || regions.empty()) {
    std::fprintf(stderr, "loader_fuzzer: %s is not a kiln model this runtime opens\n", path);
    std::exit(2);
  }
  const char *tmp = std::getenv("TMPDIR");
  scratch = std::string(tmp ? tmp : "/tmp") + "/kiln-loader-fuzz-" + std::to_string(getpid()) + ".so";
  if (const char *seed = std::getenv("KILN_FUZZ_WRITE_SEED")) {
    std::ofstream out(seed, std::ios::binary);
    for (const auto &r : regions)
      out.write(model.data() + r.fileOffset, std::streamsize(r.bytes));
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  std::string bytes = model;
  size_t at = 0;
  for (const auto &r : regions)
    for (uint64_t i = 0; i < r.bytes && at < size; ++i)
      bytes[r.fileOffset + i] = char(data[at++]);
  std::ofstream(scratch, std::ios::binary | std::ios::trunc).write(bytes.data(), bytes.size());

  char error[512];
  kiln_model *m = nullptr;
  if (kiln_model_open_descriptor(scratch.c_str(), &m, error, sizeof error) == KILN_OK) {
    readAll(m);
    kiln_model_close(m);
  } else if (!error[0]) {
    __builtin_trap(); // a refusal must say why
  }
  if (kiln_model_open(scratch.c_str(), &m, error, sizeof error) == KILN_OK) {
    readAll(m);
    // A session allocates the arena the descriptor asks for: a big one is
    // a big model, not a fault, so it is not tried here.
    kiln_session *s = nullptr;
    if (kiln_model_arena_bytes(m) <= (uint64_t(1) << 28) && kiln_session_create(m, &s) == KILN_OK)
      kiln_session_destroy(s);
    kiln_model_close(m);
  }
  std::remove(scratch.c_str());
  return 0;
}
