// Concurrent sessions under ThreadSanitizer (scripts/tsan.sh): one model
// opened once, N threads each with its own session (alternately one and two
// kernel threads), every bucket and a padded batch in turn; each output must
// be bit-identical to a serial run's. Exits non-zero on a difference; TSan
// itself fails the run on a data race.
//
//     sessions MODEL.so THREADS ITERATIONS
#include <kiln/runtime.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

namespace {

struct Buffer {
  std::vector<uint8_t> bytes;
  std::vector<int64_t> shape;
  kiln_dtype dtype;
};

/// The tensors of `count` inputs or outputs at `batch` rows.
std::vector<Buffer> buffers(const kiln_model *model, int32_t count, bool inputs, int64_t batch) {
  std::vector<Buffer> out(static_cast<size_t>(count));
  for (int32_t i = 0; i < count; ++i) {
    kiln_tensor_info info;
    if ((inputs ? kiln_model_input(model, i, &info) : kiln_model_output(model, i, &info)) != KILN_OK)
      std::exit(2);
    Buffer &b = out[size_t(i)];
    b.dtype = info.dtype;
    b.shape.assign(info.shape, info.shape + info.rank);
    uint64_t elements = 1;
    for (int64_t &d : b.shape) {
      if (d == -1)
        d = batch;
      elements *= uint64_t(d);
    }
    b.bytes.assign(elements * kiln_dtype_size(info.dtype), 0);
  }
  return out;
}

/// Inputs of `batch` rows: floats in [-1, 1), ids inside their bounds.
std::vector<Buffer> inputs(const kiln_model *model, int64_t batch, uint32_t seed) {
  std::vector<Buffer> in = buffers(model, kiln_model_num_inputs(model), true, batch);
  std::mt19937_64 rng(seed);
  for (size_t i = 0; i < in.size(); ++i) {
    kiln_tensor_info info;
    kiln_model_input(model, int32_t(i), &info);
    Buffer &b = in[i];
    const size_t n = b.bytes.size() / kiln_dtype_size(b.dtype);
    for (size_t e = 0; e < n; ++e) {
      int64_t lo = 0, hi = 1;
      if (info.index_bounds && info.row_elements > 0) {
        const size_t k = e % size_t(info.row_elements);
        lo = info.index_bounds[2 * k];
        hi = info.index_bounds[2 * k + 1];
      }
      const int64_t id = lo + int64_t(rng() % uint64_t(hi - lo + 1));
      switch (b.dtype) {
      case KILN_DTYPE_F32: {
        const float v = float(int64_t(rng() % 2000) - 1000) / 1000.0f;
        std::memcpy(&b.bytes[e * 4], &v, 4);
        break;
      }
      case KILN_DTYPE_I64:
        std::memcpy(&b.bytes[e * 8], &id, 8);
        break;
      case KILN_DTYPE_I32: {
        const int32_t v = int32_t(id);
        std::memcpy(&b.bytes[e * 4], &v, 4);
        break;
      }
      default:
        std::fprintf(stderr, "sessions: input %zu has a dtype this driver does not fill\n", i);
        std::exit(2);
      }
    }
  }
  return in;
}

std::vector<kiln_tensor> tensors(std::vector<Buffer> &buffers) {
  std::vector<kiln_tensor> out;
  for (Buffer &b : buffers)
    out.push_back({b.bytes.data(), b.dtype, int32_t(b.shape.size()), b.shape.data()});
  return out;
}

struct Case {
  int64_t batch;
  std::vector<Buffer> in, want;
};

bool run(kiln_session *session, const kiln_model *model, Case &c, std::vector<Buffer> &out) {
  out = buffers(model, kiln_model_num_outputs(model), false, c.batch);
  std::vector<kiln_tensor> in = tensors(c.in), outs = tensors(out);
  if (kiln_run(session, c.batch, in.data(), int32_t(in.size()), outs.data(),
               int32_t(outs.size())) != KILN_OK) {
    std::fprintf(stderr, "sessions: kiln_run at batch %lld: %s\n", (long long)c.batch,
                 kiln_session_error(session));
    return false;
  }
  return true;
}

} // namespace

int main(int argc, char **argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: sessions MODEL.so THREADS ITERATIONS\n");
    return 2;
  }
  const int threads = std::atoi(argv[2]), iterations = std::atoi(argv[3]);
  kiln_model *model = nullptr;
  char error[512];
  if (kiln_model_open(argv[1], &model, error, sizeof error) != KILN_OK) {
    std::fprintf(stderr, "sessions: %s\n", error);
    return 2;
  }
  // Every bucket, and one batch between the first two (padded).
  std::vector<Case> cases;
  for (int32_t b = 0; b < kiln_model_num_buckets(model); ++b)
    cases.push_back({kiln_model_bucket_batch(model, b), {}, {}});
  if (cases.size() > 1 && cases[1].batch - cases[0].batch > 1)
    cases.push_back({cases[0].batch + 1, {}, {}});
  kiln_session *serial = nullptr;
  if (kiln_session_create(model, &serial) != KILN_OK)
    return 2;
  for (size_t i = 0; i < cases.size(); ++i) {
    cases[i].in = inputs(model, cases[i].batch, uint32_t(i + 1));
    if (!run(serial, model, cases[i], cases[i].want))
      return 1;
  }
  kiln_session_destroy(serial);

  std::vector<int> failures(size_t(threads), 0);
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t)
    pool.emplace_back([&, t] {
      kiln_session_options options;
      kiln_session_options_init(&options);
      options.num_threads = 1 + t % 2;
      kiln_session *session = nullptr;
      if (kiln_session_create_with_options(model, &options, &session) != KILN_OK) {
        failures[size_t(t)] = 1;
        return;
      }
      std::vector<Buffer> out;
      for (int k = 0; k < iterations; ++k) {
        Case &c = cases[size_t(k + t) % cases.size()];
        if (!run(session, model, c, out)) {
          failures[size_t(t)] = 1;
          break;
        }
        for (size_t o = 0; o < out.size(); ++o)
          if (out[o].bytes != c.want[o].bytes) {
            std::fprintf(stderr, "sessions: thread %d, batch %lld: output %zu differs from the "
                         "serial run\n", t, (long long)c.batch, o);
            failures[size_t(t)] = 1;
          }
      }
      kiln_session_destroy(session);
    });
  for (std::thread &t : pool)
    t.join();
  kiln_model_close(model);
  int failed = 0;
  for (int f : failures)
    failed += f;
  std::printf("sessions: %s, %d threads x %d runs over %zu batches: %s\n", argv[1], threads,
              iterations, cases.size(), failed ? "FAILED" : "bit-identical to the serial run");
  return failed ? 1 : 0;
}
