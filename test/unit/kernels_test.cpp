// kernels_test.cpp - the CPU kernels against plain reference loops.
//
// Dense layers over shapes that exercise every tile size, panel tail and
// cache block, with each epilogue, on one thread and split over a real
// session thread pool; the vectorised math against libm.
#include "cuda/host_tables.h"
#include "gemm.h"
#include "kernels.h"
#include "thread_pool.h"

#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <random>
#include <vector>

#if defined(KILN_EXPECT_AVX512) && !defined(KILN_AVX512)
#error "kernels_avx512_test must be built with AVX-512 F/BW/VL"
#endif

using namespace kiln::cpu;

namespace {

/// n values uniform in [-1, 1), the same for the same seed.
std::vector<float> randomFloats(size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-1, 1);
  std::vector<float> v(n);
  for (float &x : v)
    x = dist(rng);
  return v;
}

struct DenseCase {
  int64_t m, n, k;
};

/// act(A W + bias) * multiplier + residual, accumulated in double.
std::vector<float> reference(const std::vector<float> &A, const std::vector<float> &W,
                             const std::vector<float> &bias, const std::vector<float> &multiplier,
                             const std::vector<float> &residual, const DenseCase &c,
                             Activation act) {
  std::vector<float> out(c.m * c.n);
  for (int64_t i = 0; i < c.m; ++i)
    for (int64_t j = 0; j < c.n; ++j) {
      double acc = bias[j];
      for (int64_t k = 0; k < c.k; ++k)
        acc += double(A[i * c.k + k]) * W[k * c.n + j];
      out[i * c.n + j] =
          activate(float(acc), act) * multiplier[i * c.n + j] + residual[i * c.n + j];
    }
  return out;
}

void checkDense(const DenseCase &c, Activation act, const kiln_abi_exec *exec) {
  unsigned seed = c.m * 131 + c.n * 17 + c.k;
  auto A = randomFloats(c.m * c.k, seed), W = randomFloats(c.k * c.n, seed + 1),
       bias = randomFloats(c.n, seed + 2), multiplier = randomFloats(c.m * c.n, seed + 3),
       residual = randomFloats(c.m * c.n, seed + 4);
  std::vector<float> packed(panelCount(c.n) * c.k * kPanelWidth), out(c.m * c.n, NAN);
  packWeights(W.data(), false, c.k, c.n, 1.0f, packed.data());
  Epilogue ep;
  ep.bias = bias.data();
  ep.multiplier = multiplier.data();
  ep.residual = residual.data();
  ep.stride = c.n;
  ep.activation = act;
  dense(A.data(), c.k, packed.data(), c.k, c.n, out.data(), c.n, c.m, ep, exec);
  auto expected = reference(A, W, bias, multiplier, residual, c, act);
  for (int64_t i = 0; i < c.m * c.n; ++i)
    ASSERT_NEAR(out[i], expected[i], 1e-4f * (1 + std::abs(expected[i])))
        << "M " << c.m << " N " << c.n << " K " << c.k << " activation " << int(act) << " at " << i;
}

// Every tile height and panel group of both widths (AVX2: 6-row tiles, 1,
// 2 or 4 panels for few rows, 6-row slivers; AVX-512: 2, 4 or 8 panels,
// 12-row slivers against two panels), panel tails and cache blocks (several
// row blocks at both widths, equal depth blocks, weights past the prefetch
// threshold), one-column layers as dot products at every depth tail and
// past the deepest one taken that way.
const DenseCase kCases[] = {
    {1, 1, 1},     {1, 17, 5},     {1, 300, 64},   {2, 33, 64},   {2, 200, 32},    {3, 16, 3},
    {4, 130, 40},  {5, 100, 300},  {7, 64, 513},   {13, 90, 20},  {16, 48, 1030},  {17, 7, 9},
    {23, 50, 33},  {50, 80, 512},  {97, 130, 600}, {256, 40, 80}, {130, 33, 1100}, {300, 40, 700},
    {560, 20, 64}, {40, 520, 600}, {1, 1, 400},    {7, 1, 17},    {16, 1, 16},     {300, 1, 401},
    {37, 1, 4096}, {20, 1, 4097}};
const Activation kActivations[] = {Activation::None, Activation::Relu,    Activation::Sigmoid,
                                   Activation::Tanh, Activation::GeluErf, Activation::GeluTanh};

TEST(Dense, MatchesReferenceOnOneThread) {
  for (const DenseCase &c : kCases)
    for (Activation act : kActivations)
      checkDense(c, act, nullptr);
}

TEST(Dense, MatchesReferenceOnAThreadPool) {
  kiln::ThreadPool pool;
  ASSERT_TRUE(pool.start(3));
  kiln_abi_exec exec{&pool, pool.size(), &kiln::ThreadPool::parallelFor};
  for (const DenseCase &c : kCases)
    checkDense(c, Activation::Relu, &exec);
}

TEST(Dense, PackingTransposesAndScales) {
  // B given as [N, K] with alpha 2: packed column n, row k is 2 B[n, k].
  const float B[] = {1, 2, 3, 4, 5, 6}; // N = 2, K = 3
  std::vector<float> packed(3 * kPanelWidth, -1);
  packWeights(B, true, 3, 2, 2.0f, packed.data());
  EXPECT_EQ(packed[0 * kPanelWidth + 0], 2);
  EXPECT_EQ(packed[0 * kPanelWidth + 1], 8);
  EXPECT_EQ(packed[2 * kPanelWidth + 1], 12);
  EXPECT_EQ(packed[2 * kPanelWidth + 2], 0); // padding
}

TEST(ThreadPool, RunsEveryTaskOnce) {
  kiln::ThreadPool pool;
  ASSERT_TRUE(pool.start(4));
  for (int64_t tasks : {0, 1, 3, 4, 9}) {
    std::vector<int> hits(tasks, 0);
    pool.run(
        tasks, [](void *ctx, int64_t t) { ++static_cast<int *>(ctx)[t]; }, hits.data());
    for (int64_t t = 0; t < tasks; ++t)
      EXPECT_EQ(hits[t], 1) << tasks << " tasks, task " << t;
  }
}

TEST(Attention, MatchesReference) {
  // Sizes around the kernel's 16-wide tiles and 4-query blocks (3 with
  // 1029 keys), a [batch, 1, 1, keys] mask.
  for (auto [sq, sk, d, dv] :
       {std::array<int64_t, 4>{3, 37, 5, 40}, {64, 64, 32, 32}, {2, 8, 33, 7}, {7, 1029, 3, 17}}) {
    const int64_t batch = 2, heads = 3;
    unsigned seed = sq * 7 + sk;
    auto q = randomFloats(batch * sq * heads * d, seed),
         k = randomFloats(batch * sk * heads * d, seed + 1),
         v = randomFloats(batch * sk * heads * dv, seed + 2),
         mask = randomFloats(batch * sk, seed + 3);
    std::vector<float> out(batch * sq * heads * dv);
    const int64_t strides[4] = {sk, 0, 0, 1};
    const float scale = 0.3f;
    kiln::ThreadPool pool;
    ASSERT_TRUE(pool.start(2));
    kiln_abi_exec exec{&pool, pool.size(), &kiln::ThreadPool::parallelFor};
    attention(q.data(), k.data(), v.data(), mask.data(), strides, out.data(), batch, sq, sk, heads,
              d, dv, scale, &exec);
    for (int64_t b = 0; b < batch; ++b)
      for (int64_t h = 0; h < heads; ++h)
        for (int64_t i = 0; i < sq; ++i) {
          std::vector<double> p(sk);
          double max = -1e300, sum = 0;
          for (int64_t j = 0; j < sk; ++j) {
            double dot = 0;
            for (int64_t c = 0; c < d; ++c)
              dot += double(q[((b * sq + i) * heads + h) * d + c]) *
                     k[((b * sk + j) * heads + h) * d + c];
            p[j] = scale * dot + mask[b * sk + j];
            max = std::max(max, p[j]);
          }
          for (double &x : p)
            sum += x = std::exp(x - max);
          for (int64_t c = 0; c < dv; ++c) {
            double want = 0;
            for (int64_t j = 0; j < sk; ++j)
              want += p[j] / sum * v[((b * sk + j) * heads + h) * dv + c];
            ASSERT_NEAR(out[((b * sq + i) * heads + h) * dv + c], want, 1e-5)
                << "sq " << sq << " sk " << sk << " d " << d << " dv " << dv;
          }
        }
  }
}

TEST(Softmax, MatchesReferenceMaskedAndNaN) {
  for (int64_t n : {1, 7, 37, 64}) {
    auto x = randomFloats(3 * n, unsigned(n));
    for (int64_t j = 0; j < n; j += 2)
      x[n + j] = -10000.0f; // row 1: every other position masked
    std::vector<float> y(3 * n);
    softmax(x.data(), y.data(), 3, n, 1);
    for (int64_t r = 0; r < 3; ++r) {
      double max = -1e300, sum = 0;
      for (int64_t j = 0; j < n; ++j)
        max = std::max(max, double(x[r * n + j]));
      for (int64_t j = 0; j < n; ++j)
        sum += std::exp(x[r * n + j] - max);
      for (int64_t j = 0; j < n; ++j)
        ASSERT_NEAR(y[r * n + j], std::exp(x[r * n + j] - max) / sum, 1e-6)
            << "n " << n << " row " << r << " at " << j;
    }
    // A NaN anywhere, in the vector part or the tail, makes its row NaN.
    for (int64_t at : {int64_t(0), n / 2, n - 1}) {
      std::vector<float> z(x.begin(), x.begin() + n);
      z[at] = NAN;
      softmax(z.data(), y.data(), 1, n, 1);
      for (int64_t j = 0; j < n; ++j)
        ASSERT_TRUE(std::isnan(y[j])) << "n " << n << " NaN at " << at << ", output " << j;
    }
  }
}

TEST(Interaction, MatchesReferenceWithRowStride) {
  // Dims around the kernel's 16- and 8-wide steps; rows written 5 apart
  // into a wider buffer whose other columns must stay untouched.
  for (int64_t dim : {1, 7, 8, 16, 29, 128}) {
    const int64_t batch = 9, features = 4, stride = 9;
    const std::vector<int64_t> pairs = {1, 0, 2, 0, 2, 1, 3, 3, 0, 3};
    const int64_t count = pairs.size() / 2;
    auto x = randomFloats(batch * features * dim, unsigned(dim));
    std::vector<float> out(batch * stride, -7.0f);
    kiln::ThreadPool pool;
    ASSERT_TRUE(pool.start(2));
    kiln_abi_exec exec{&pool, pool.size(), &kiln::ThreadPool::parallelFor};
    interaction(x.data(), batch, features, dim, pairs.data(), count, out.data() + 2, stride, &exec);
    for (int64_t b = 0; b < batch; ++b)
      for (int64_t c = 0; c < stride; ++c) {
        int64_t p = c - 2;
        if (p < 0 || p >= count) {
          ASSERT_EQ(out[b * stride + c], -7.0f) << "column " << c << " was written";
          continue;
        }
        double want = 0;
        for (int64_t d = 0; d < dim; ++d)
          want += double(x[(b * features + pairs[2 * p]) * dim + d]) *
                  x[(b * features + pairs[2 * p + 1]) * dim + d];
        ASSERT_NEAR(out[b * stride + c], want, 1e-5 * (1 + std::abs(want))) << "dim " << dim;
      }
  }
}

TEST(EmbeddingBags, MatchesPerTableBags) {
  // Three tables of different dims and hotness (one of them 0) read columns
  // of [batch, 6] id rows; their 23 pooled floats land at column 1 of each
  // 26-wide row.
  const int64_t batch = 7, idsRow = 6, stride = 26;
  auto t0 = randomFloats(11 * 5, 1), t1 = randomFloats(4 * 9, 2);
  const std::vector<BagTable<float>> tables = {
      {t0.data(), 11, 5, 3}, {t1.data(), 4, 9, 2}, {t1.data(), 4, 9, 0}};
  const int64_t columns[] = {5, 0, 2, 1, 3};
  std::vector<int64_t> ids(batch * idsRow);
  for (int64_t i = 0; i < int64_t(ids.size()); ++i)
    ids[i] = (i * 7) % 4 - (i % 3 == 0 ? 4 : 0); // in [-4, 4): negative ids wrap
  kiln::ThreadPool pool;
  ASSERT_TRUE(pool.start(2));
  kiln_abi_exec exec{&pool, pool.size(), &kiln::ThreadPool::parallelFor};
  for (int mode : {0, 1, 2}) {
    std::vector<float> out(batch * stride, -7.0f);
    ASSERT_TRUE(embeddingBags(ids.data(), batch, idsRow, tables.data(), 3, columns, mode, true,
                              out.data() + 1, stride, &exec));
    for (int64_t b = 0; b < batch; ++b) {
      const float *y = out.data() + b * stride;
      EXPECT_EQ(y[0], -7.0f);
      for (int64_t c = 1 + 23; c < stride; ++c)
        EXPECT_EQ(y[c], -7.0f) << "column " << c << " was written";
      int64_t k = 0, column = 1;
      for (const BagTable<float> &t : tables) {
        for (int64_t d = 0; d < t.dim; ++d) {
          double want = t.hotness ? (mode == 2 ? -1e30 : 0) : 0;
          for (int64_t l = 0; l < t.hotness; ++l) {
            int64_t id = ids[b * idsRow + columns[k + l]];
            float v = t.data[(id < 0 ? id + t.rows : id) * t.dim + d];
            want = mode == 2 ? std::max(want, double(v)) : want + v;
          }
          if (mode == 1 && t.hotness)
            want /= t.hotness;
          ASSERT_NEAR(y[column + d], want, 1e-5) << "mode " << mode << " sample " << b;
        }
        k += t.hotness;
        column += t.dim;
      }
    }
  }
  // Without wrapping a negative id is out of range, and so is one past the end.
  std::vector<float> out(batch * stride);
  EXPECT_FALSE(embeddingBags(ids.data(), batch, idsRow, tables.data(), 3, columns, 0, false,
                             out.data(), stride, &exec));
  ids.assign(ids.size(), 0);
  ids[3 * idsRow + 2] = 11;
  EXPECT_FALSE(embeddingBags(ids.data(), batch, idsRow, tables.data(), 3, columns, 0, true,
                             out.data(), stride, &exec));
}

TEST(Gather, MatchesReferenceOnAThreadPool) {
  // Rows of 1 to 17 floats (the masked copy and memcpy), [3, 7000, inner]
  // tables (the larger ones past the prefetch threshold), split over threads
  // at rows that do not start an outer slice; rows land inner + 3 apart.
  const int64_t outer = 3, axis = 7000, count = 2000;
  std::vector<int64_t> indices(count);
  for (int64_t i = 0; i < count; ++i)
    indices[i] = (i * 7919) % axis - (i % 5 == 0 ? axis : 0); // negative ones wrap
  kiln::ThreadPool pool;
  ASSERT_TRUE(pool.start(3));
  kiln_abi_exec exec{&pool, pool.size(), &kiln::ThreadPool::parallelFor};
  for (int64_t inner : {1, 10, 16, 17}) {
    const auto data = randomFloats(outer * axis * inner, unsigned(inner));
    const int64_t stride = inner + 3;
    std::vector<float> out(outer * count * stride, -7.0f);
    ASSERT_TRUE(
        gather(data.data(), indices.data(), out.data(), outer, axis, count, inner, stride, &exec));
    for (int64_t o = 0; o < outer; ++o)
      for (int64_t i = 0; i < count; ++i) {
        const float *y = out.data() + (o * count + i) * stride;
        const int64_t k = indices[i] < 0 ? indices[i] + axis : indices[i];
        for (int64_t d = 0; d < inner; ++d)
          ASSERT_EQ(y[d], data[(o * axis + k) * inner + d]) << "inner " << inner << " row " << i;
        for (int64_t d = inner; d < stride; ++d)
          ASSERT_EQ(y[d], -7.0f) << "inner " << inner << " wrote past row " << i;
      }
  }
  indices[1234] = axis;
  std::vector<float> out(outer * count);
  const auto data = randomFloats(outer * axis, 1);
  EXPECT_FALSE(gather(data.data(), indices.data(), out.data(), outer, axis, count, 1, 1, &exec));
}

TEST(EmbeddingBags, HostTablesOfACudaOpPoolAsTheWholeOp) {
  // A CUDA op whose tables 0, 2 and 3 stay in host memory (kiln compile
  // --host-tables-over): the CPU pools those alone (splitHostBags), and the
  // runs copied into the op's output must equal the whole op's values
  // there, leaving the device tables' columns alone.
  const int64_t batch = 5, idsRow = 7, stride = 40;
  auto t0 = randomFloats(6 * 4, 3), t1 = randomFloats(9 * 3, 4), t2 = randomFloats(5 * 2, 5);
  std::vector<BagTable<float>> tables = {{t0.data(), 6, 4, 2},
                                         {t1.data(), 9, 3, 1},
                                         {t2.data(), 5, 2, 3},
                                         {t1.data(), 9, 3, 1},
                                         {t0.data(), 6, 4, 0}};
  for (int t : {0, 2, 3})
    tables[t].host = true;
  const int64_t columns[] = {6, 0, 1, 2, 3, 4, 5};
  std::vector<int64_t> ids(batch * idsRow);
  for (int64_t i = 0; i < int64_t(ids.size()); ++i)
    ids[i] = (i * 5) % 5;
  for (int mode : {0, 1, 2, 3}) {
    std::vector<float> whole(batch * stride, -7.0f);
    ASSERT_TRUE(embeddingBags(ids.data(), batch, idsRow, tables.data(), 5, columns, mode, false,
                              whole.data(), stride, nullptr));
    const auto part = kiln::cuda::splitHostBags(tables.data(), 5, columns, mode);
    ASSERT_EQ(part.tables.size(), 3u);
    ASSERT_EQ(part.runs.size(), 2u) << "tables 2 and 3 are copied together";
    std::vector<float> pooled(batch * part.width), out(batch * stride, -7.0f);
    ASSERT_TRUE(embeddingBags(ids.data(), batch, idsRow, part.tables.data(),
                              int64_t(part.tables.size()), part.columns.data(), mode, false,
                              pooled.data(), part.width, nullptr));
    std::vector<bool> onHost(stride, false);
    for (const auto &run : part.runs)
      for (int64_t b = 0; b < batch; ++b)
        for (int64_t c = 0; c < run.width; ++c) {
          out[b * stride + run.to + c] = pooled[b * part.width + run.from + c];
          onHost[run.to + c] = true;
        }
    const int64_t hostValues = mode == 3 ? 4 * 2 + 2 * 3 + 3 : 4 + 2 + 3;
    EXPECT_EQ(part.width, hostValues);
    EXPECT_EQ(std::count(onHost.begin(), onHost.end(), true), hostValues);
    for (int64_t b = 0; b < batch; ++b)
      for (int64_t c = 0; c < stride; ++c)
        ASSERT_EQ(out[b * stride + c], onHost[c] ? whole[b * stride + c] : -7.0f)
            << "mode " << mode << " sample " << b << " column " << c;
  }
}

/// Largest error of `fn` against `ref` over [lo, hi], relative to
/// max(|ref|, floor).
template <typename Fn, typename Ref>
double maxError(Fn fn, Ref ref, float lo, float hi, double floor) {
  const int n = 100000;
  std::vector<float> in(n), out(n);
  for (int i = 0; i < n; ++i)
    in[i] = lo + (hi - lo) * float(i) / (n - 1);
  fn(in.data(), out.data(), n);
  double worst = 0;
  for (int i = 0; i < n; ++i) {
    double r = ref(double(in[i]));
    worst = std::max(worst, std::abs(out[i] - r) / std::max(std::abs(r), floor));
  }
  return worst;
}

TEST(VectorMath, CloseToLibm) {
  EXPECT_LT(maxError([](auto *i, auto *o, int n) { exp(i, o, n); },
                     [](double x) { return std::exp(x); }, -87, 88, 1e-30),
            4e-7);
  EXPECT_LT(maxError([](auto *i, auto *o, int n) { erf(i, o, n); },
                     [](double x) { return std::erf(x); }, -6, 6, 1.0),
            3e-7);
  EXPECT_LT(maxError([](auto *i, auto *o, int n) { activate(i, o, n, Activation::Tanh); },
                     [](double x) { return std::tanh(x); }, -10, 10, 1e-3),
            2e-6);
  EXPECT_LT(maxError([](auto *i, auto *o, int n) { activate(i, o, n, Activation::Sigmoid); },
                     [](double x) { return 1 / (1 + std::exp(-x)); }, -30, 30, 1e-3),
            2e-6);
}

TEST(VectorMath, Saturates) {
  const float in[8] = {-1000, 1000, NAN, INFINITY, -INFINITY, 0, -0.0f, 1};
  float out[8];
  exp(in, out, 8);
  EXPECT_EQ(out[0], 0.0f);
  EXPECT_EQ(out[1], INFINITY);
  EXPECT_TRUE(std::isnan(out[2]));
  EXPECT_EQ(out[3], INFINITY);
  EXPECT_EQ(out[4], 0.0f);
  EXPECT_EQ(out[5], 1.0f);
  activate(in, out, 8, Activation::Tanh);
  EXPECT_EQ(out[0], -1.0f);
  EXPECT_EQ(out[1], 1.0f);
  EXPECT_TRUE(std::isnan(out[2]));
  activate(in, out, 8, Activation::Sigmoid);
  EXPECT_EQ(out[0], 0.0f);
  EXPECT_EQ(out[1], 1.0f);
}

} // namespace
