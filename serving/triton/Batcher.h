// The staging between Triton's batches and kiln's buckets, free of Triton's
// API so that it can be tested alone: requests' rows are copied one after the
// other into one contiguous buffer per input, each checked as it is staged,
// and run as one kiln_run at the smallest bucket that holds them. Every buffer
// is sized for the largest bucket when the instance starts: staging and
// running allocate nothing.
#ifndef KILN_SERVING_TRITON_BATCHER_H
#define KILN_SERVING_TRITON_BATCHER_H

#include "kiln/runtime.h"

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace kiln::serving {

class Batcher {
public:
  /// A session of `model` with `threads` threads (0: the session's default)
  /// and buffers for its largest bucket; null with `error` set on failure.
  static std::unique_ptr<Batcher> create(const kiln_model *model, int threads, std::string &error);
  ~Batcher();
  Batcher(const Batcher &) = delete;
  Batcher &operator=(const Batcher &) = delete;

  int64_t maxBatch() const { return maxBatch_; }
  int64_t stagedRows() const { return staged_; }
  /// Whether `rows` more rows fit beside those staged.
  bool fits(int64_t rows) const { return staged_ + rows <= maxBatch_; }
  /// Bytes of one row of input `i` / output `o`.
  size_t inputRowBytes(int i) const { return inputs_[i].rowBytes; }
  size_t outputRowBytes(int o) const { return outputs_[o].rowBytes; }

  /// Where the next request's rows of input `i` go (room for fits() rows).
  uint8_t *inputSlot(int i) { return inputs_[i].data.get() + staged_ * inputs_[i].rowBytes; }
  /// Checks the `rows` rows written to the slots as kiln_run would (ids in
  /// range) and keeps them; on failure they are dropped and error() says why.
  bool stage(int64_t rows);
  /// Runs the staged rows (1 <= rows <= maxBatch()); afterwards the outputs
  /// hold them and nothing is staged. On failure error() says why.
  bool run();
  /// Output `o` of the row `row` of the last run.
  const uint8_t *output(int o, int64_t row) const {
    return outputs_[o].data.get() + row * outputs_[o].rowBytes;
  }
  /// The rows of the bucket the last run used (>= its rows: the rest padding).
  int64_t lastBucketRows() const { return lastBucket_; }
  const char *error() const { return kiln_session_error(session_); }

private:
  struct Buffer {
    std::unique_ptr<uint8_t[]> data;
    size_t rowBytes = 0;
    kiln_dtype dtype = KILN_DTYPE_F32;
    std::vector<int64_t> shape; // [rows, dims...], shape[0] set per call
  };
  Batcher() = default;
  kiln_tensor tensor(Buffer &buffer, int64_t offset, int64_t rows);

  const kiln_model *model_ = nullptr;
  kiln_session *session_ = nullptr;
  int64_t maxBatch_ = 0, staged_ = 0, lastBucket_ = 0;
  std::vector<Buffer> inputs_, outputs_;
  std::vector<kiln_tensor> inputTensors_, outputTensors_;
};

} // namespace kiln::serving

#endif // KILN_SERVING_TRITON_BATCHER_H
