// run_fuzzer.cpp - kiln_run on mutated requests against a real compiled
// model (KILN_FUZZ_MODEL). The input decides the batch (in and out of
// [1, largest bucket], 0, negative), one thing wrong with the request (an
// input's dtype, rank or a dim; NULL data; the number of inputs; an output's
// dtype or dim) and the data: floats from the raw bytes (NaN and Inf
// included), ids as raw 64-bit values or dim, -dim - 1, INT64_MIN, INT64_MAX.
// Every run must succeed or fail with a message; after it, a fixed valid
// request must give outputs bit-identical to that request's on a fresh
// session: a failed run leaves the session as it was.

#include "kiln/runtime.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace {

kiln_model *model = nullptr;
kiln_session *session = nullptr;
std::vector<kiln_tensor_info> inputs, outputs;
int64_t maxBatch = 1;

/// One request's tensors and their memory, sized to what they declare.
struct Request {
  std::vector<std::vector<int64_t>> shapes;
  std::vector<std::vector<unsigned char>> data;
  std::vector<kiln_tensor> tensors;

  void add(const kiln_tensor_info &info, int64_t batch) {
    std::vector<int64_t> shape(info.shape, info.shape + info.rank);
    if (info.rank && shape[0] < 0)
      shape[0] = batch;
    shapes.push_back(std::move(shape));
    tensors.push_back({nullptr, info.dtype, info.rank, nullptr});
  }
  /// Allocates every tensor's declared bytes (false when that is too many).
  bool allocate() {
    data.resize(tensors.size());
    for (size_t i = 0; i < tensors.size(); ++i) {
      int64_t bytes = int64_t(kiln_dtype_size(tensors[i].dtype));
      if (bytes == 0)
        bytes = 1;
      for (int32_t d = 0; d < tensors[i].rank && d < int32_t(shapes[i].size()); ++d) {
        if (shapes[i][d] < 0 || shapes[i][d] > (1 << 20) || (bytes *= shapes[i][d]) > (1 << 24))
          return false;
      }
      data[i].assign(size_t(bytes), 0);
      tensors[i].data = data[i].data();
      tensors[i].shape = shapes[i].data();
    }
    return true;
  }
};

/// A valid request at batch 1 with fixed data, and its outputs on a fresh session.
Request reference;
Request referenceOut;
std::vector<std::vector<unsigned char>> expected;

void fillValid(Request &in) {
  for (size_t i = 0; i < inputs.size(); ++i) {
    auto &bytes = in.data[i];
    if (inputs[i].index_bounds) { // the lowest valid id everywhere
      auto *ids = reinterpret_cast<int64_t *>(bytes.data());
      auto *ids32 = reinterpret_cast<int32_t *>(bytes.data());
      size_t n = bytes.size() / kiln_dtype_size(inputs[i].dtype);
      for (size_t e = 0; e < n; ++e) {
        int64_t lo = inputs[i].index_bounds[2 * (e % inputs[i].row_elements)];
        if (inputs[i].dtype == KILN_DTYPE_I64)
          ids[e] = lo;
        else
          ids32[e] = int32_t(lo);
      }
    } else if (inputs[i].dtype == KILN_DTYPE_F32) {
      auto *f = reinterpret_cast<float *>(bytes.data());
      for (size_t e = 0; e < bytes.size() / 4; ++e)
        f[e] = 0.25f * float(int(e % 9) - 4);
    }
  }
}

kiln_status runReference(kiln_session *s) {
  return kiln_run(s, 1, reference.tensors.data(), int32_t(reference.tensors.size()),
                  referenceOut.tensors.data(), int32_t(referenceOut.tensors.size()));
}

} // namespace

extern "C" int LLVMFuzzerInitialize(int *, char ***) {
  const char *path = std::getenv("KILN_FUZZ_MODEL");
  char error[512];
  if (!path || kiln_model_open(path, &model, error, sizeof error) != KILN_OK ||
      kiln_session_create(model, &session) != KILN_OK) {
    std::fprintf(stderr, "run_fuzzer: set KILN_FUZZ_MODEL to a kiln model this CPU runs (%s)\n",
                 path ? error : "unset");
    std::exit(2);
  }
  for (int32_t i = 0; i < kiln_model_num_inputs(model); ++i) {
    inputs.emplace_back();
    kiln_model_input(model, i, &inputs.back());
    reference.add(inputs.back(), 1);
  }
  for (int32_t i = 0; i < kiln_model_num_outputs(model); ++i) {
    outputs.emplace_back();
    kiln_model_output(model, i, &outputs.back());
    referenceOut.add(outputs.back(), 1);
  }
  maxBatch = kiln_model_bucket_batch(model, kiln_model_num_buckets(model) - 1);
  if (!reference.allocate() || !referenceOut.allocate())
    std::exit(2);
  fillValid(reference);
  kiln_session *fresh = nullptr;
  if (kiln_session_create(model, &fresh) != KILN_OK || runReference(fresh) != KILN_OK) {
    std::fprintf(stderr, "run_fuzzer: the reference request fails: %s\n", kiln_session_error(fresh));
    std::exit(2);
  }
  expected = referenceOut.data;
  kiln_session_destroy(fresh);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 4)
    return -1;
  const uint8_t which = data[1], kind = data[2] % 10, how = data[3];
  int64_t batch = 1 + data[0] % (maxBatch + 1); // one past the largest bucket too
  if (data[0] >= 250)
    batch = data[0] == 250 ? 0 : data[0] == 251 ? -1 : data[0] == 252 ? INT64_MIN : INT64_MAX;
  const int64_t rowsBatch = batch >= 1 && batch <= maxBatch + 1 ? batch : 1;

  Request in, out;
  for (const auto &info : inputs)
    in.add(info, rowsBatch);
  for (const auto &info : outputs)
    out.add(info, rowsBatch);
  Request &target = kind < 6 ? in : out;
  if (target.tensors.empty())
    return 0;
  kiln_tensor *t = &target.tensors[which % target.tensors.size()];
  std::vector<int64_t> &shape = target.shapes[which % target.shapes.size()];
  int32_t numInputs = int32_t(in.tensors.size());
  switch (kind) {
  case 1:
  case 6:
    t->dtype = kiln_dtype(how % 13);
    break;
  case 2:
    t->rank = int32_t(how % 5) - 1;
    shape.resize(size_t(std::max(t->rank, 0)), 1);
    break;
  case 3:
  case 7:
    if (!shape.empty())
      shape[how % shape.size()] += int64_t(how % 3) - 1 + (how >= 128 ? 1 << 21 : 0);
    break;
  case 5:
    numInputs += int32_t(how % 3) - 1;
    break;
  default:
    break;
  }
  if (!in.allocate() || !out.allocate())
    return 0;
  if (kind == 4)
    t->data = nullptr;

  // The rest of the input is the data, cycled; ids now and then extreme.
  size_t at = 4;
  for (size_t i = 0; i < in.tensors.size() && size > 4; ++i) {
    auto &bytes = in.data[i];
    for (auto &b : bytes) {
      b = data[at];
      at = at + 1 < size ? at + 1 : 4;
    }
    if (i < inputs.size() && inputs[i].index_bounds && in.tensors[i].dtype == KILN_DTYPE_I64 &&
        bytes.size() >= 8 && (how & 1)) {
      auto *ids = reinterpret_cast<int64_t *>(bytes.data());
      const int64_t dim = inputs[i].index_bounds[1] + 1;
      const int64_t extremes[] = {dim, -dim - 1, INT64_MIN, INT64_MAX, 0, -1};
      ids[(how >> 1) % (bytes.size() / 8)] = extremes[(how >> 4) % 6];
    }
  }

  kiln_status status = kiln_run(session, batch, in.tensors.data(), numInputs, out.tensors.data(),
                                int32_t(out.tensors.size()));
  if (status != KILN_OK && !kiln_session_error(session)[0])
    __builtin_trap(); // a failure must say why
  if (runReference(session) != KILN_OK || referenceOut.data != expected)
    __builtin_trap(); // the session is not what a fresh one is
  return 0;
}
