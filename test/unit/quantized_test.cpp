// quantized_test.cpp - int8 and 16-bit dense layers, half conversions and
// row-wise quantised embedding rows against plain reference loops.
#include "kernels.h"
#include "quantized.h"
#include "thread_pool.h"

#include <gtest/gtest.h>
#include <immintrin.h>

#include <array>
#include <cmath>
#include <random>
#include <vector>

using namespace kiln::cpu;

namespace {

#if defined(KILN_EXPECT_BF16) && !(defined(KILN_AVX512) && defined(__AVX512BF16__))
#error "the AVX-512 BF16 build of these tests does not reach the vdpbf16ps kernel"
#endif
#if defined(KILN_EXPECT_VNNI) && !defined(KILN_AVX512_VNNI)
#error "the AVX-512 VNNI build of these tests does not reach the VNNI kernel"
#endif

#ifdef KILN_AVX512_VNNI
/// The AVX-512 VNNI build of these tests needs a CPU that runs it.
class RequireVnni : public ::testing::Environment {
  void SetUp() override {
    __builtin_cpu_init();
    if (!(__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
          __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni")))
      GTEST_SKIP() << "this CPU has no AVX-512 VNNI";
  }
};
::testing::Environment *const kRequireVnni = ::testing::AddGlobalTestEnvironment(new RequireVnni);
#endif

std::vector<float> uniform(size_t n, unsigned seed, float lo = -1, float hi = 1) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (float &x : v)
    x = dist(rng);
  return v;
}

struct Shape {
  int64_t m, n, k;
};
const Shape kShapes[] = {{1, 1, 1},     {1, 17, 5},    {2, 33, 64},  {3, 16, 3},
                         {4, 40, 7},    {5, 100, 300}, {7, 64, 513}, {16, 48, 1030},
                         {49, 70, 129}, {97, 130, 600}};

struct Int8Layer {
  std::vector<int8_t> q, packed;
  std::vector<float> scale;
  std::vector<int32_t> sums;
  Int8Weights view() const { return {packed.data(), scale.data(), sums.data()}; }
};

Int8Layer quantizeLayer(const std::vector<float> &W, int64_t K, int64_t N) {
  Int8Layer l;
  l.q.resize(K * N);
  l.scale.resize(N);
  l.sums.resize(N);
  EXPECT_TRUE(quantizeWeightsInt8(W.data(), K, N, l.q.data(), l.scale.data(), l.sums.data()));
  l.packed.resize(panelCount(N) * int8GroupCount(K) * 64);
  packWeightsInt8(l.q.data(), K, N, l.packed.data());
  return l;
}

/// The int8 layer computed exactly in integers from the same quantised
/// values, then the epilogue (bias and activation). A static range (scale
/// `inputScale` > 0) is applied here by the plain formula, saturating.
std::vector<float> int8Reference(const std::vector<float> &A, const Int8Layer &l,
                                 const std::vector<float> &bias, const Shape &s, Activation act,
                                 float inputScale = 0, int32_t inputZeroPoint = 0) {
  std::vector<float> out(s.m * s.n);
  std::vector<uint8_t> qa(int8GroupCount(s.k) * 4);
  for (int64_t i = 0; i < s.m; ++i) {
    float scale = inputScale;
    int32_t zp = inputZeroPoint;
    if (inputScale > 0)
      for (int64_t k = 0; k < s.k; ++k)
        qa[k] = uint8_t(
            std::clamp<long>(std::lround(A[i * s.k + k] / inputScale) + inputZeroPoint, 0, 127));
    else
      quantizeActivationRow(A.data() + i * s.k, s.k, qa.data(), scale, zp);
    for (int64_t j = 0; j < s.n; ++j) {
      int64_t acc = 0;
      for (int64_t k = 0; k < s.k; ++k)
        acc += (int64_t(qa[k]) - zp) * l.q[k * s.n + j];
      out[i * s.n + j] = activate(float(double(acc) * scale * l.scale[j]) + bias[j], act);
    }
  }
  return out;
}

void checkInt8(const Shape &s, Activation act, const kiln_abi_exec *exec) {
  const unsigned seed = unsigned(s.m * 131 + s.n * 17 + s.k);
  auto A = uniform(s.m * s.k, seed, -0.5f, 1.5f), W = uniform(s.k * s.n, seed + 1),
       bias = uniform(s.n, seed + 2);
  Int8Layer l = quantizeLayer(W, s.k, s.n);
  Epilogue ep;
  ep.bias = bias.data();
  ep.activation = act;
  std::vector<float> out(s.m * s.n, NAN);
  denseInt8(A.data(), s.k, l.view(), s.k, s.n, out.data(), s.n, s.m, ep, exec);
  auto want = int8Reference(A, l, bias, s, act);
  for (int64_t i = 0; i < s.m * s.n; ++i)
    ASSERT_NEAR(out[i], want[i], 1e-5f * (1 + std::abs(want[i])))
        << "M " << s.m << " N " << s.n << " K " << s.k << " at " << i;
}

TEST(Int8Dense, MatchesExactIntegerReference) {
  for (const Shape &s : kShapes)
    for (Activation act : {Activation::None, Activation::Relu, Activation::Sigmoid})
      checkInt8(s, act, nullptr);
}

TEST(Int8Dense, StaticRangeSaturatesOutsideIt) {
  // Calibrated on [-0.25, 0.75], run on [-0.5, 1.5]: a third of the values
  // saturate, each row quantised with the layer's one range.
  float scale;
  int32_t zp;
  activationQuantization(-0.25f, 0.75f, scale, zp);
  EXPECT_NEAR(scale, 1.0f / 127, 1e-7f);
  EXPECT_EQ(zp, 32);
  for (const Shape &s : kShapes) {
    const unsigned seed = unsigned(s.m * 7 + s.n + s.k);
    auto A = uniform(s.m * s.k, seed, -0.5f, 1.5f), W = uniform(s.k * s.n, seed + 1),
         bias = uniform(s.n, seed + 2);
    Int8Layer l = quantizeLayer(W, s.k, s.n);
    Int8Weights w = l.view();
    w.inputScale = scale;
    w.inputZeroPoint = zp;
    Epilogue ep;
    ep.bias = bias.data();
    std::vector<float> out(s.m * s.n, NAN);
    denseInt8(A.data(), s.k, w, s.k, s.n, out.data(), s.n, s.m, ep, nullptr);
    auto want = int8Reference(A, l, bias, s, Activation::None, scale, zp);
    auto dynamic = int8Reference(A, l, bias, s, Activation::None);
    bool differs = false;
    for (int64_t i = 0; i < s.m * s.n; ++i) {
      ASSERT_NEAR(out[i], want[i], 1e-5f * (1 + std::abs(want[i])))
          << "M " << s.m << " N " << s.n << " K " << s.k << " at " << i;
      differs |= std::abs(want[i] - dynamic[i]) > 1e-3f;
    }
    EXPECT_TRUE(differs || s.k < 3) << "the static range changed nothing at K " << s.k;
  }
}

TEST(Int8Dense, RequantisedChainEqualsTheFloatChain) {
  // Two calibrated layers: the first writing uint8 with the second's input
  // range (its epilogue requantising) and the second reading those bytes
  // give exactly what the two give through f32, on one thread and on a
  // pool; rows and widths around the tiles (the second depth a multiple of 4).
  kiln::ThreadPool pool;
  ASSERT_TRUE(pool.start(3));
  kiln_abi_exec exec{&pool, pool.size(), &kiln::ThreadPool::parallelFor};
  for (auto [m, k, n1, n2] :
       {std::array<int64_t, 4>{1, 5, 4, 3}, {7, 33, 20, 17}, {50, 64, 132, 40}, {97, 300, 64, 130}})
    for (const kiln_abi_exec *e : {(const kiln_abi_exec *)nullptr, (const kiln_abi_exec *)&exec}) {
      const unsigned seed = unsigned(m + k + n1 + n2);
      auto A = uniform(m * k, seed, -0.5f, 1.5f), W1 = uniform(k * n1, seed + 1),
           W2 = uniform(n1 * n2, seed + 2), bias = uniform(n1, seed + 3);
      Int8Layer l1 = quantizeLayer(W1, k, n1), l2 = quantizeLayer(W2, n1, n2);
      Int8Weights w1 = l1.view(), w2 = l2.view();
      activationQuantization(-0.5f, 1.0f, w1.inputScale, w1.inputZeroPoint);
      activationQuantization(0.0f, 0.8f * float(k) / 8, w2.inputScale, w2.inputZeroPoint);
      Epilogue relu;
      relu.bias = bias.data();
      relu.activation = Activation::Relu;
      std::vector<float> hidden(m * n1), want(m * n2), got(m * n2, NAN);
      denseInt8(A.data(), k, w1, k, n1, hidden.data(), n1, m, relu, e);
      denseInt8(hidden.data(), n1, w2, n1, n2, want.data(), n2, m, Epilogue{}, e);
      Int8Weights requantising = w1;
      requantising.outputScale = w2.inputScale;
      requantising.outputZeroPoint = w2.inputZeroPoint;
      std::vector<uint8_t> bytes(m * n1);
      denseInt8(A.data(), k, requantising, k, n1, bytes.data(), n1, m, relu, e);
      denseInt8(bytes.data(), n1, w2, n1, n2, got.data(), n2, m, Epilogue{}, e);
      ASSERT_EQ(got, want) << "M " << m << " K " << k << " N " << n1 << ", " << n2;
      int saturated = 0;
      for (uint8_t q : bytes)
        saturated += q == kInt8ActivationMax;
      EXPECT_LT(saturated, m * n1) << "the range must not clip everything";
    }
}

TEST(Int8Dense, MatchesOnAThreadPool) {
  kiln::ThreadPool pool;
  ASSERT_TRUE(pool.start(3));
  kiln_abi_exec exec{&pool, pool.size(), &kiln::ThreadPool::parallelFor};
  for (const Shape &s : kShapes)
    checkInt8(s, Activation::Relu, &exec);
}

TEST(Int8Dense, CloseToFloat) {
  // The quantisation error of a 256-deep layer stays well under 1% of the
  // output's scale.
  const Shape s{64, 64, 256};
  auto A = uniform(s.m * s.k, 5, 0, 1), W = uniform(s.k * s.n, 6);
  Int8Layer l = quantizeLayer(W, s.k, s.n);
  std::vector<float> out(s.m * s.n);
  denseInt8(A.data(), s.k, l.view(), s.k, s.n, out.data(), s.n, s.m, Epilogue{}, nullptr);
  double worst = 0, norm = 0;
  for (int64_t i = 0; i < s.m; ++i)
    for (int64_t j = 0; j < s.n; ++j) {
      double want = 0;
      for (int64_t k = 0; k < s.k; ++k)
        want += double(A[i * s.k + k]) * W[k * s.n + j];
      worst = std::max(worst, std::abs(out[i * s.n + j] - want));
      norm = std::max(norm, std::abs(want));
    }
  EXPECT_LT(worst, 0.01 * norm);
}

TEST(Int8Dense, NoInt16OverflowAtTheExtremes) {
  // Every activation quantises to 127 (x = 1: range [0, 1], zero point 0)
  // and every weight is -128 or 127, the largest magnitudes vpmaddubsw can
  // pair: 2 * 127 * -128 = -32512 and 2 * 127 * 127 = 32258 fit in int16,
  // so the sums are exact: K * 127 * w, times the activation scale 1/127.
  for (int64_t K : {int64_t(4), int64_t(1023), int64_t(4096), kMaxInt8Depth})
    for (int8_t w : {int8_t(-128), int8_t(127)})
      for (int64_t M : {1, 3, 50}) {
        const int64_t N = 20;
        std::vector<int8_t> q(K * N, w), packed(panelCount(N) * int8GroupCount(K) * 64);
        packWeightsInt8(q.data(), K, N, packed.data());
        std::vector<float> scale(N, 1.0f);
        std::vector<int32_t> sums(N, int32_t(K * w));
        std::vector<float> A(M * K, 1.0f), out(M * N);
        denseInt8(A.data(), K, Int8Weights{packed.data(), scale.data(), sums.data()}, K, N,
                  out.data(), N, M, Epilogue{}, nullptr);
        const double want = double(K) * w;
        for (float v : out)
          ASSERT_NEAR(v, want, std::abs(want) * 1e-6) << "K " << K << " w " << int(w);
      }
}

TEST(Int8Dense, ActivationRowsUseSevenBits) {
  // Negative and positive values: the zero point sits inside [0, 127], the
  // extremes map to 0 and 127 and zero is exact.
  const float x[] = {-2.0f, 0.0f, 1.0f, 3.0f, 0.5f};
  uint8_t q[8];
  float scale;
  int32_t zp;
  quantizeActivationRow(x, 5, q, scale, zp);
  EXPECT_EQ(q[0], 0);
  EXPECT_EQ(q[3], 127);
  EXPECT_EQ(q[1], zp);
  EXPECT_NEAR(scale, 5.0f / 127, 1e-7);
  for (int k = 5; k < 8; ++k)
    EXPECT_EQ(q[k], zp) << "padding";
  for (int k = 0; k < 5; ++k)
    EXPECT_NEAR(scale * (q[k] - zp), x[k], scale / 2 + 1e-6);
}

TEST(HalfConversion, MatchesF16cOnEveryHalf) {
  for (uint32_t h = 0; h < 65536; ++h) {
    float want = _cvtsh_ss(uint16_t(h)), got = fp16ToFloat(uint16_t(h));
    if (std::isnan(want))
      ASSERT_TRUE(std::isnan(got)) << h;
    else
      ASSERT_EQ(got, want) << h;
  }
}

TEST(HalfConversion, RoundsLikeF16c) {
  std::mt19937 rng(7);
  std::vector<float> values = {0.0f,     -0.0f,   65504.0f, 65520.0f,  1e-8f,    5.96e-8f,
                               2.98e-8f, 6.1e-5f, INFINITY, -INFINITY, 1.0f / 3, 1e30f};
  std::uniform_int_distribution<uint32_t> bits(0, 0xffffffffu);
  for (int i = 0; i < 200000; ++i) {
    uint32_t u = bits(rng);
    float f;
    std::memcpy(&f, &u, 4);
    values.push_back(f);
  }
  for (float f : values) {
    if (std::isnan(f))
      continue;
    ASSERT_EQ(floatToFp16(f), _cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT)) << f;
  }
  EXPECT_EQ(floatToBf16(1.0f), 0x3f80);
  EXPECT_EQ(bf16ToFloat(floatToBf16(1.00390625f)), 1.0f);      // tie to even
  EXPECT_EQ(bf16ToFloat(floatToBf16(1.01171875f)), 1.015625f); // tie to even, up
  EXPECT_TRUE(std::isnan(bf16ToFloat(floatToBf16(NAN))));
}

#if defined(KILN_AVX512) && defined(__AVX512BF16__)
TEST(HalfConversion, VectorBf16IsTheScalarOneBitForBit) {
  std::mt19937 rng(11);
  std::uniform_int_distribution<uint32_t> bits(0, 0xffffffffu);
  // Ties, NaNs of both signs and payloads, infinities, denormals, the largest floats.
  std::vector<uint32_t> values = {0x3f808000, 0x3f818000, 0x7fc00000, 0xffc00001, 0x7f800001,
                                  0x7f800000, 0xff800000, 0x00000001, 0x807fffff, 0x7f7fffff,
                                  0xff7fffff, 0x00000000, 0x80000000, 0x3f7fffff, 0x7f7f8000};
  while (values.size() % 16 || values.size() < 160000)
    values.push_back(bits(rng));
  for (size_t i = 0; i < values.size(); i += 16) {
    alignas(32) uint16_t got[16];
    _mm256_store_si256(reinterpret_cast<__m256i *>(got),
                       kiln::cpu::detail::floatsToBf16(
                           _mm512_castsi512_ps(_mm512_loadu_si512(values.data() + i))));
    for (int j = 0; j < 16; ++j) {
      float f;
      std::memcpy(&f, &values[i + j], 4);
      ASSERT_EQ(got[j], floatToBf16(f)) << std::hex << values[i + j];
    }
  }
}
#endif

TEST(Fp8Conversion, E4m3RoundsToNearestEvenAndSaturates) {
  // Every finite code decodes and encodes back to itself; the value halfway
  // between two neighbours rounds to the one with an even code; past 448
  // saturates; NaN stays NaN.
  std::vector<float> finite;
  for (int q = 0; q < 256; ++q) {
    const float v = e4m3ToFloat(uint8_t(q));
    if ((q & 0x7f) == 0x7f) {
      EXPECT_TRUE(std::isnan(v)) << q;
      continue;
    }
    EXPECT_EQ(floatToE4m3(v), q == 0x80 ? 0x80 : q) << "code " << q << " value " << v;
    if (q < 0x80)
      finite.push_back(v);
  }
  EXPECT_EQ(e4m3ToFloat(0x7e), 448.0f);
  EXPECT_EQ(e4m3ToFloat(0x01), std::ldexp(1.0f, -9));
  EXPECT_EQ(e4m3ToFloat(0x08), std::ldexp(1.0f, -6));
  for (size_t i = 0; i + 1 < finite.size(); ++i) {
    const float mid = (finite[i] + finite[i + 1]) / 2;
    const int even = (i % 2 == 0) ? int(i) : int(i + 1);
    EXPECT_EQ(floatToE4m3(mid), even) << "between codes " << i << " and " << i + 1;
    EXPECT_EQ(floatToE4m3(std::nextafter(mid, 0.0f)), int(i));
    EXPECT_EQ(floatToE4m3(std::nextafter(mid, 1000.0f)), int(i + 1));
    EXPECT_EQ(floatToE4m3(-finite[i + 1]), int(i + 1) | 0x80);
  }
  EXPECT_EQ(floatToE4m3(470.0f), 0x7e);
  EXPECT_EQ(floatToE4m3(-1e30f), 0xfe);
  EXPECT_EQ(floatToE4m3(INFINITY), 0x7e);
  EXPECT_TRUE(std::isnan(e4m3ToFloat(floatToE4m3(NAN))));
}

TEST(Fp8Dense, EmulatesTheCudaLayer) {
  // denseFp8 (the CPU's emulation of --precision fp8) against a double
  // reference built from the conversions: E4M3 inputs at the input scale,
  // E4M3 weights ([N, K]) at their scale, then bias and ReLU; K = 600
  // crosses the 256-value chunks. On one thread and on a pool.
  const int64_t M = 5, K = 600, N = 19, ldc = 23;
  auto A = uniform(M * K, 11, -3, 2), Wf = uniform(N * K, 12), bias = uniform(N, 13);
  const float inputScale = 3.0f / kE4m3Max, wScale = 0.01f;
  std::vector<uint8_t> W(N * K);
  for (size_t i = 0; i < W.size(); ++i)
    W[i] = floatToE4m3(Wf[i] * 300);
  Epilogue ep;
  ep.bias = bias.data();
  ep.activation = Activation::Relu;
  kiln::ThreadPool pool;
  ASSERT_TRUE(pool.start(3));
  kiln_abi_exec threads{&pool, pool.size(), &kiln::ThreadPool::parallelFor};
  for (const kiln_abi_exec *exec : {static_cast<const kiln_abi_exec *>(nullptr),
                                    static_cast<const kiln_abi_exec *>(&threads)}) {
    std::vector<float> C(M * ldc, -9.0f);
    denseFp8(A.data(), K, W.data(), &wScale, K, N, C.data(), ldc, M, inputScale, ep, exec);
    for (int64_t m = 0; m < M; ++m) {
      for (int64_t n = 0; n < N; ++n) {
        double sum = 0;
        for (int64_t k = 0; k < K; ++k)
          sum += double(e4m3ToFloat(floatToE4m3(A[m * K + k] / inputScale))) *
                 e4m3ToFloat(W[n * K + k]);
        const double want = std::max(0.0, sum * wScale * inputScale + bias[n]);
        ASSERT_NEAR(C[m * ldc + n], want, 1e-4 * (1 + std::abs(want))) << m << ", " << n;
      }
      for (int64_t n = N; n < ldc; ++n)
        ASSERT_EQ(C[m * ldc + n], -9.0f) << "column " << n << " was written";
    }
  }
}

template <HalfFormat F> void checkHalf(const kiln_abi_exec *exec) {
  for (const Shape &s : kShapes) {
    auto A = uniform(s.m * s.k, unsigned(s.k), -1, 1), W = uniform(s.k * s.n, unsigned(s.n)),
         bias = uniform(s.n, 3);
    // The reference multiplies by the weights as the kernel sees them.
    std::vector<float> rounded(W.size()), packedF(panelCount(s.n) * s.k * kPanelWidth);
    for (size_t i = 0; i < W.size(); ++i)
      rounded[i] =
          F == HalfFormat::Fp16 ? fp16ToFloat(floatToFp16(W[i])) : bf16ToFloat(floatToBf16(W[i]));
    // Bf16Dot also rounds the inputs.
    std::vector<float> input = A;
    if (F == HalfFormat::Bf16Dot)
      for (float &x : input)
        x = bf16ToFloat(floatToBf16(x));
    packWeights(W.data(), false, s.k, s.n, 1.0f, packedF.data());
    std::vector<uint16_t> packed(packedF.size());
    for (size_t i = 0; i < packed.size(); ++i)
      packed[i] = F == HalfFormat::Fp16 ? floatToFp16(packedF[i]) : floatToBf16(packedF[i]);
    Epilogue ep;
    ep.bias = bias.data();
    ep.activation = Activation::Tanh;
    std::vector<float> out(s.m * s.n, NAN);
    denseHalf<F>(A.data(), s.k, packed.data(), s.k, s.n, out.data(), s.n, s.m, ep, exec);
    for (int64_t i = 0; i < s.m; ++i)
      for (int64_t j = 0; j < s.n; ++j) {
        double acc = bias[j];
        for (int64_t k = 0; k < s.k; ++k)
          acc += double(input[i * s.k + k]) * rounded[k * s.n + j];
        ASSERT_NEAR(out[i * s.n + j], std::tanh(acc), 1e-4)
            << "M " << s.m << " N " << s.n << " K " << s.k;
      }
  }
}

TEST(HalfDense, Fp16MatchesRoundedWeights) { checkHalf<HalfFormat::Fp16>(nullptr); }
TEST(HalfDense, Bf16MatchesRoundedWeights) { checkHalf<HalfFormat::Bf16>(nullptr); }
TEST(HalfDense, Bf16DotMatchesRoundedInputsAndWeights) { checkHalf<HalfFormat::Bf16Dot>(nullptr); }
TEST(HalfDense, OnAThreadPool) {
  kiln::ThreadPool pool;
  ASSERT_TRUE(pool.start(2));
  kiln_abi_exec exec{&pool, pool.size(), &kiln::ThreadPool::parallelFor};
  checkHalf<HalfFormat::Bf16>(&exec);
  checkHalf<HalfFormat::Bf16Dot>(&exec);
}

TEST(RowwiseTables, RowsRoundTripWithinHalfAStep) {
  for (int bits : {8, 4})
    for (int64_t dim : {1, 2, 7, 16, 33}) {
      auto x = uniform(dim, unsigned(dim * bits), -3, 2);
      std::vector<uint8_t> row(quantizedRowBytes(dim, bits));
      ASSERT_TRUE(quantizeTableRow(x.data(), dim, bits, row.data()));
      std::vector<float> y(dim);
      poolQuantizedRow(y.data(), row.data(), dim, bits, 0, true);
      float lo = *std::min_element(x.begin(), x.end()), hi = *std::max_element(x.begin(), x.end());
      const float step = (hi - lo) / (bits == 4 ? 15 : 255);
      for (int64_t d = 0; d < dim; ++d)
        ASSERT_NEAR(y[d], x[d], 0.5f * step * 1.01f + 1e-3f * std::abs(lo) + 1e-6f)
            << "bits " << bits << " dim " << dim << " d " << d;
    }
  // A constant row (zero range) comes back exactly when the value is a half.
  const float same[] = {0.25f, 0.25f, 0.25f};
  uint8_t row[3 + 4];
  ASSERT_TRUE(quantizeTableRow(same, 3, 8, row));
  float y[3];
  poolQuantizedRow(y, row, 3, 8, 0, true);
  EXPECT_EQ(y[0], 0.25f);
  EXPECT_EQ(y[2], 0.25f);
}

// Found by import_fuzzer: NaN or Inf has no int8 code; quantising them was
// undefined behaviour. The quantisers refuse them, writing nothing.
TEST(RowwiseTables, RowsHoldingNanOrInfAreRefused) {
  for (float bad : {NAN, INFINITY, -INFINITY}) {
    const float x[] = {1.0f, bad, 2.0f};
    uint8_t row[3 + 4] = {7, 7, 7, 7, 7, 7, 7};
    EXPECT_FALSE(quantizeTableRow(x, 3, 8, row)) << bad;
    EXPECT_EQ(row[0], 7) << bad;
    int8_t q[3] = {7, 7, 7};
    float scale[1] = {-1};
    int32_t sums[1] = {-1};
    EXPECT_FALSE(quantizeWeightsInt8(x, 3, 1, q, scale, sums)) << bad;
    EXPECT_EQ(q[0], 7) << bad;
    EXPECT_EQ(scale[0], -1) << bad;
  }
}

TEST(RowwiseTables, EmbeddingBagsPoolDequantizedRows) {
  // The same bags over a row-wise table and over its dequantised f32 copy.
  const int64_t batch = 9, idsRow = 4, rows = 13;
  kiln::ThreadPool pool;
  ASSERT_TRUE(pool.start(2));
  kiln_abi_exec exec{&pool, pool.size(), &kiln::ThreadPool::parallelFor};
  std::vector<int32_t> ids(batch * idsRow);
  for (size_t i = 0; i < ids.size(); ++i)
    ids[i] = int32_t((i * 5) % rows);
  const int64_t columns[] = {0, 1, 3, 2};
  for (int bits : {8, 4})
    for (int64_t dim : {6, 16, 20}) {
      auto x = uniform(rows * dim, unsigned(dim + bits));
      const int64_t rowBytes = quantizedRowBytes(dim, bits);
      std::vector<uint8_t> q(rows * rowBytes);
      std::vector<float> deq(rows * dim);
      for (int64_t r = 0; r < rows; ++r) {
        ASSERT_TRUE(quantizeTableRow(x.data() + r * dim, dim, bits, q.data() + r * rowBytes));
        poolQuantizedRow(deq.data() + r * dim, q.data() + r * rowBytes, dim, bits, 0, true);
      }
      const BagTable<float> quantized[] = {{nullptr, rows, dim, 3, q.data(), bits},
                                           {nullptr, rows, dim, 1, q.data(), bits}};
      const BagTable<float> plain[] = {{deq.data(), rows, dim, 3}, {deq.data(), rows, dim, 1}};
      for (int mode : {0, 1, 2, 3}) {
        // Mode 3 writes the 3 + 1 rows unpooled.
        const int64_t width = (mode == 3 ? 4 : 2) * dim;
        std::vector<float> got(batch * width), want(batch * width);
        ASSERT_TRUE(embeddingBags(ids.data(), batch, idsRow, quantized, 2, columns, mode, false,
                                  got.data(), width, &exec));
        ASSERT_TRUE(embeddingBags(ids.data(), batch, idsRow, plain, 2, columns, mode, false,
                                  want.data(), width, &exec));
        for (size_t i = 0; i < got.size(); ++i)
          ASSERT_NEAR(got[i], want[i], 1e-6f) << "bits " << bits << " dim " << dim;
        if (mode == 3) // the second row of sample 1 is table row ids[1 * idsRow + columns[1]]
          for (int64_t d = 0; d < dim; ++d)
            ASSERT_EQ(want[width + dim + d], deq[ids[idsRow + columns[1]] * dim + d]);
      }
      ids[5] = int32_t(rows); // out of range is still refused
      std::vector<float> out(batch * 2 * dim);
      EXPECT_FALSE(embeddingBags(ids.data(), batch, idsRow, quantized, 2, columns, 0, false,
                                 out.data(), 2 * dim, &exec));
      ids[5] = 0;
    }
}

} // namespace
