// kernel_bench.cpp - the CPU kernels against what this machine can do.
//
// Before the benchmarks run, the program measures the machine's own limits
// on one core: the FMA peak at 8 and, in the AVX-512 build, 16 lanes
// (twelve independent chains, more than the two FMA pipes need to stay
// busy) and the read bandwidth of a buffer far larger than the caches. Dense layers report GFLOP/s
// and `peak_fraction`; the embedding bag reports bytes of table rows read per second and
// `bandwidth_fraction`.
//
//   build/bench/kiln_kernel_bench [--benchmark_filter=Dense]
#include "gemm.h"
#include "kernels.h"
#include "quantized.h"

#include <benchmark/benchmark.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <new>
#include <random>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

double seconds(Clock::time_point since) {
  return std::chrono::duration<double>(Clock::now() - since).count();
}

/// Single-core FMA peak in FLOP/s at the vector width of L: best of five
/// 0.1 s runs of twelve independent chains of FMAs.
template <typename L> double measureFmaPeak() {
  using V = typename L::V;
  const float one = 0.999f, tiny = 1e-6f, start[12] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};
  const V b = L::broadcast(&one), c = L::broadcast(&tiny);
#define KILN_ACC(i) V a##i = L::broadcast(start + i);
  KILN_ACC(0)
  KILN_ACC(1) KILN_ACC(2) KILN_ACC(3) KILN_ACC(4) KILN_ACC(5) KILN_ACC(6) KILN_ACC(7) KILN_ACC(8)
      KILN_ACC(9) KILN_ACC(10) KILN_ACC(11)
#undef KILN_ACC
          double best = 0;
  const long n = 20'000'000;
  for (int run = 0; run < 5; ++run) {
    auto begin = Clock::now();
    for (long i = 0; i < n; ++i) {
#define KILN_FMA(i) a##i = L::fma(a##i, b, c);
      KILN_FMA(0)
      KILN_FMA(1) KILN_FMA(2) KILN_FMA(3) KILN_FMA(4) KILN_FMA(5) KILN_FMA(6) KILN_FMA(7)
          KILN_FMA(8) KILN_FMA(9) KILN_FMA(10) KILN_FMA(11)
#undef KILN_FMA
          // Keeps every chain live and in a register.
          asm volatile(""
                       : "+v"(a0), "+v"(a1), "+v"(a2), "+v"(a3), "+v"(a4), "+v"(a5), "+v"(a6),
                         "+v"(a7), "+v"(a8), "+v"(a9), "+v"(a10), "+v"(a11));
    }
    best = std::max(best, double(n) * 12 * 2 * L::kLanes / seconds(begin));
  }
  return best;
}

/// Single-core read bandwidth in bytes/s over 512 MiB: best of three.
double measureReadBandwidth() {
  std::vector<float> data(128u << 20, 1.0f);
  double best = 0;
  for (int run = 0; run < 3; ++run) {
    auto start = Clock::now();
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    for (size_t i = 0; i < data.size(); i += 32) {
      s0 = _mm256_add_ps(s0, _mm256_loadu_ps(&data[i]));
      s1 = _mm256_add_ps(s1, _mm256_loadu_ps(&data[i + 8]));
      s2 = _mm256_add_ps(s2, _mm256_loadu_ps(&data[i + 16]));
      s3 = _mm256_add_ps(s3, _mm256_loadu_ps(&data[i + 24]));
    }
    benchmark::DoNotOptimize(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
    best = std::max(best, data.size() * sizeof(float) / seconds(start));
  }
  return best;
}

double fmaPeak = 0, readBandwidth = 0;

/// 64-byte aligned storage, as a compiled model's weights and arena are
/// (a zmm load across two cache lines costs two).
template <typename T> struct Aligned64 {
  using value_type = T;
  Aligned64() = default;
  template <typename U> Aligned64(const Aligned64<U> &) {}
  T *allocate(size_t n) { return static_cast<T *>(::operator new(n * sizeof(T), kAlignment)); }
  void deallocate(T *p, size_t) { ::operator delete(p, kAlignment); }
  bool operator==(const Aligned64 &) const { return true; }
  bool operator!=(const Aligned64 &) const { return false; }
  static constexpr std::align_val_t kAlignment{64};
};
template <typename T> using Buffer = std::vector<T, Aligned64<T>>;

Buffer<float> randomFloats(size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(-1, 1);
  Buffer<float> v(n);
  for (float &x : v)
    x = d(rng);
  return v;
}

/// The weight formats a dense layer runs on.
enum class Weights { F32, Int8, Bf16, Bf16Dot };

/// C[M, N] = relu(A[M, K] W + bias) on packed weights of `format`, one thread.
void Dense(benchmark::State &state, Weights format) {
  const int64_t M = state.range(0), N = state.range(1), K = state.range(2);
  auto A = randomFloats(M * K, 1), W = randomFloats(K * N, 2), bias = randomFloats(N, 3);
  Buffer<float> packed(kiln::cpu::panelCount(N) * K * kiln::cpu::kPanelWidth), C(M * N);
  kiln::cpu::packWeights(W.data(), false, K, N, 1.0f, packed.data());
  Buffer<uint16_t> half(packed.size());
  for (size_t i = 0; i < half.size(); ++i)
    half[i] = kiln::cpu::floatToBf16(packed[i]);
  Buffer<int8_t> q(K * N), packedInt8(kiln::cpu::panelCount(N) * kiln::cpu::int8GroupCount(K) * 64);
  std::vector<float> scale(N);
  std::vector<int32_t> sums(N);
  if (!kiln::cpu::quantizeWeightsInt8(W.data(), K, N, q.data(), scale.data(), sums.data()))
    std::abort(); // W is uniform random: always finite
  kiln::cpu::packWeightsInt8(q.data(), K, N, packedInt8.data());
  const kiln::cpu::Int8Weights int8{packedInt8.data(), scale.data(), sums.data()};
  kiln::cpu::Epilogue ep;
  ep.bias = bias.data();
  ep.activation = kiln::cpu::Activation::Relu;
  for (auto _ : state) {
    if (format == Weights::F32)
      kiln::cpu::dense(A.data(), K, packed.data(), K, N, C.data(), N, M, ep, nullptr);
    else if (format == Weights::Int8)
      kiln::cpu::denseInt8(A.data(), K, int8, K, N, C.data(), N, M, ep, nullptr);
    else if (format == Weights::Bf16)
      kiln::cpu::denseHalf<kiln::cpu::HalfFormat::Bf16>(A.data(), K, half.data(), K, N, C.data(), N,
                                                        M, ep, nullptr);
    else
      kiln::cpu::denseHalf<kiln::cpu::HalfFormat::Bf16Dot>(A.data(), K, half.data(), K, N, C.data(),
                                                           N, M, ep, nullptr);
    benchmark::DoNotOptimize(C.data());
    benchmark::ClobberMemory();
  }
  double flops = 2.0 * M * N * K * state.iterations();
  state.counters["GFLOPS"] = benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsRate);
  state.counters["peak_fraction"] =
      benchmark::Counter(flops / fmaPeak, benchmark::Counter::kIsRate);
}

/// A DLRM lookup: 26 tables of 100k rows x 64 floats (666 MB, far beyond the
/// caches), a batch of 256 bags of `hotness` uniformly random ids each.
void EmbeddingBag(benchmark::State &state) {
  const int64_t tables = 26, rows = 100'000, dim = 64, batch = 256, hot = state.range(0);
  static Buffer<float> storage = randomFloats(size_t(tables) * rows * dim, 4);
  std::mt19937 rng(5);
  std::uniform_int_distribution<int64_t> pick(0, rows - 1);
  std::vector<int64_t> ids(tables * batch * hot), begin(batch), end(batch);
  for (int64_t &id : ids)
    id = pick(rng);
  for (int64_t b = 0; b < batch; ++b) {
    begin[b] = b * hot;
    end[b] = (b + 1) * hot;
  }
  // Pooled rows go straight into the concatenated [batch, tables * dim]
  // feature buffer, as in a compiled DLRM.
  Buffer<float> out(batch * tables * dim);
  for (auto _ : state) {
    for (int64_t t = 0; t < tables; ++t)
      kiln::cpu::embeddingBag<float, int64_t>(storage.data() + t * rows * dim, rows, dim,
                                              ids.data() + t * batch * hot, batch * hot,
                                              begin.data(), end.data(), batch, nullptr, 0, false,
                                              out.data() + t * dim, tables * dim, nullptr);
    benchmark::DoNotOptimize(out.data());
  }
  double bytes = double(tables) * batch * hot * dim * sizeof(float) * state.iterations();
  state.counters["GB/s"] = benchmark::Counter(bytes * 1e-9, benchmark::Counter::kIsRate);
  state.counters["bandwidth_fraction"] =
      benchmark::Counter(bytes / readBandwidth, benchmark::Counter::kIsRate);
}

} // namespace

BENCHMARK(EmbeddingBag)->ArgName("hotness")->Arg(1)->Arg(20)->Unit(benchmark::kMicrosecond);

int main(int argc, char **argv) {
  benchmark::Initialize(&argc, argv);
  // Each shape in f32, int8 and bf16 one after the other, so that the
  // ratios are taken side by side. DenseBf16 is 16-bit weights times f32
  // inputs; DenseBf16Dot (AVX-512 BF16 builds) --precision bf16's kernel.
  const int64_t shapes[][3] = {
      {1, 256, 256},     {1, 1024, 1024},  {16, 256, 256},    {16, 1024, 1024},  {64, 256, 256},
      {64, 512, 512},    {64, 1024, 1024}, {256, 256, 256},   {256, 512, 512},   {256, 1024, 1024},
      {256, 1024, 3456}, {256, 3456, 512}, {1024, 384, 1536}, {1024, 1536, 384}, {1, 1, 400},
      {256, 1, 400}}; // the last two: a logit layer
  std::vector<std::pair<const char *, Weights>> formats = {
      {"Dense", Weights::F32}, {"DenseInt8", Weights::Int8}, {"DenseBf16", Weights::Bf16}};
#if defined(KILN_AVX512) && defined(__AVX512BF16__)
  formats.push_back({"DenseBf16Dot", Weights::Bf16Dot}); // --precision bf16 (vdpbf16ps)
#endif
  for (const auto &shape : shapes)
    for (auto [name, format] : formats)
      benchmark::RegisterBenchmark(name, Dense, format)
          ->ArgNames({"M", "N", "K"})
          ->Args({shape[0], shape[1], shape[2]})
          ->Unit(benchmark::kMicrosecond);
  if (benchmark::ReportUnrecognizedArguments(argc, argv))
    return 1;
  // peak_fraction is of the peak at the width the kernels are built for
  // (kiln_kernel_bench: AVX2, kiln_kernel_bench_avx512: AVX-512).
  const double avx2Peak = measureFmaPeak<kiln::cpu::detail::Avx2Lanes>();
  benchmark::AddCustomContext("fma_peak_avx2_gflops", std::to_string(avx2Peak * 1e-9));
  fmaPeak = avx2Peak;
#ifdef KILN_AVX512
  fmaPeak = measureFmaPeak<kiln::cpu::detail::Avx512Lanes>();
  benchmark::AddCustomContext("fma_peak_avx512_gflops", std::to_string(fmaPeak * 1e-9));
  benchmark::AddCustomContext("kernels_isa", "avx512");
#else
  benchmark::AddCustomContext("kernels_isa", "avx2");
#endif
  readBandwidth = measureReadBandwidth();
  benchmark::AddCustomContext("fma_peak_gflops", std::to_string(fmaPeak * 1e-9));
  benchmark::AddCustomContext("read_bandwidth_gbs", std::to_string(readBandwidth * 1e-9));
  std::fprintf(stderr, "measured: FMA peak %.1f GFLOP/s, read bandwidth %.1f GB/s (one core)\n",
               fmaPeak * 1e-9, readBandwidth * 1e-9);
  size_t ran = benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return ran > 0 ? 0 : 1; // a filter matching nothing is an error
}
