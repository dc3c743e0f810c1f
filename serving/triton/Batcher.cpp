#include "Batcher.h"

namespace kiln::serving {

namespace {

/// A buffer for `rows` rows of `info`, which must be batched.
bool describe(const kiln_tensor_info &info, const char *role, std::string &error,
              size_t &rowBytes, std::vector<int64_t> &shape) {
  if (info.rank < 1 || info.shape[0] != -1) {
    error = std::string(role) + " '" + info.name +
            "' has no batch dimension: a served model must batch every input and output";
    return false;
  }
  rowBytes = kiln_dtype_size(info.dtype);
  shape.assign(info.shape, info.shape + info.rank);
  for (int32_t d = 1; d < info.rank; ++d)
    rowBytes *= size_t(info.shape[d]);
  return true;
}

} // namespace

std::unique_ptr<Batcher> Batcher::create(const kiln_model *model, int threads,
                                         std::string &error) {
  std::unique_ptr<Batcher> b(new Batcher);
  b->model_ = model;
  b->maxBatch_ = kiln_model_bucket_batch(model, kiln_model_num_buckets(model) - 1);
  auto add = [&](std::vector<Buffer> &buffers, const kiln_tensor_info &info, const char *role) {
    Buffer buffer;
    buffer.dtype = info.dtype;
    if (!describe(info, role, error, buffer.rowBytes, buffer.shape))
      return false;
    buffer.data.reset(new uint8_t[buffer.rowBytes * b->maxBatch_]());
    buffers.push_back(std::move(buffer));
    return true;
  };
  kiln_tensor_info info;
  for (int32_t i = 0; i < kiln_model_num_inputs(model); ++i)
    if (kiln_model_input(model, i, &info) != KILN_OK || !add(b->inputs_, info, "input"))
      return nullptr;
  for (int32_t o = 0; o < kiln_model_num_outputs(model); ++o)
    if (kiln_model_output(model, o, &info) != KILN_OK || !add(b->outputs_, info, "output"))
      return nullptr;
  b->inputTensors_.resize(b->inputs_.size());
  b->outputTensors_.resize(b->outputs_.size());

  kiln_session_options options;
  kiln_session_options_init(&options);
  if (threads > 0)
    options.num_threads = threads;
  if (kiln_session_create_with_options(model, &options, &b->session_) != KILN_OK) {
    error = std::string("cannot create a kiln session: ") + kiln_last_error();
    return nullptr;
  }
  return b;
}

Batcher::~Batcher() { kiln_session_destroy(session_); }

kiln_tensor Batcher::tensor(Buffer &buffer, int64_t offset, int64_t rows) {
  buffer.shape[0] = rows;
  return {buffer.data.get() + offset * buffer.rowBytes, buffer.dtype,
          int32_t(buffer.shape.size()), buffer.shape.data()};
}

bool Batcher::stage(int64_t rows) {
  for (size_t i = 0; i < inputs_.size(); ++i) {
    kiln_tensor t = tensor(inputs_[i], staged_, rows);
    if (kiln_check_input(session_, int32_t(i), rows, &t) != KILN_OK)
      return false;
  }
  staged_ += rows;
  return true;
}

bool Batcher::run() {
  const int64_t rows = staged_;
  staged_ = 0;
  for (size_t i = 0; i < inputs_.size(); ++i)
    inputTensors_[i] = tensor(inputs_[i], 0, rows);
  for (size_t o = 0; o < outputs_.size(); ++o)
    outputTensors_[o] = tensor(outputs_[o], 0, rows);
  if (kiln_run(session_, rows, inputTensors_.data(), int32_t(inputTensors_.size()),
               outputTensors_.data(), int32_t(outputTensors_.size())) != KILN_OK)
    return false;
  int32_t bucket = 0;
  while (kiln_model_bucket_batch(model_, bucket) < rows)
    ++bucket;
  lastBucket_ = kiln_model_bucket_batch(model_, bucket);
  return true;
}

} // namespace kiln::serving
