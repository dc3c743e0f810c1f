// Runtime tests over models compiled by kiln at build time (models/*.onnxtxt):
// the ABI checks at open, queries, numerics against a hand-written reference,
// input validation, caller-owned arenas, threads, and zero allocation per run.

#include "kiln/model_abi.h"
#include "kiln/runtime.h"
#include "kiln/runtime.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <string>
#include <fstream>
#include <thread>
#include <vector>

#include <dlfcn.h>
#include <unistd.h>

#include "allocation_counter.h"
#include "test/fuzz/descriptor_regions.h"

namespace {

const std::string kModels = KILN_TEST_MODELS;

// The weights of models/tiny.onnxtxt.
float tableValue(int64_t row, int col) { return float(row) + 0.1f * float(col); }
const float kW[4][3] = {
    {1.0f, -1.0f, 0.5f}, {0.25f, 2.0f, -0.5f}, {-1.0f, 0.0f, 1.0f}, {0.5f, 0.5f, -2.0f}};
const float kB[3] = {0.1f, -0.2f, 0.3f};

struct TinyRequest {
  explicit TinyRequest(int64_t batch)
      : batch(batch), x(batch * 4), ids(batch * 2), y(batch * 3), pooled(batch * 4) {
    for (int64_t i = 0; i < batch * 4; ++i)
      x[i] = 0.1f * float(i % 7) - 0.3f;
    for (int64_t i = 0; i < batch * 2; ++i)
      ids[i] = (i * 3) % 10;
    xShape[0] = idsShape[0] = yShape[0] = pooledShape[0] = batch;
    inputs[0] = {x.data(), KILN_DTYPE_F32, 2, xShape};
    inputs[1] = {ids.data(), KILN_DTYPE_I64, 2, idsShape};
    outputs[0] = {y.data(), KILN_DTYPE_F32, 2, yShape};
    outputs[1] = {pooled.data(), KILN_DTYPE_F32, 2, pooledShape};
  }
  kiln_status run(kiln_session *s) { return kiln_run(s, batch, inputs, 2, outputs, 2); }

  void expectCorrect() const {
    for (int64_t r = 0; r < batch; ++r) {
      float h[4];
      for (int c = 0; c < 4; ++c) {
        float p = tableValue(ids[r * 2], c) + tableValue(ids[r * 2 + 1], c);
        EXPECT_NEAR(pooled[r * 4 + c], p, 1e-5) << "row " << r;
        h[c] = x[r * 4 + c] + p;
      }
      for (int j = 0; j < 3; ++j) {
        float acc = kB[j];
        for (int k = 0; k < 4; ++k)
          acc += h[k] * kW[k][j];
        EXPECT_NEAR(y[r * 3 + j], std::max(acc, 0.0f), 1e-4) << "row " << r << " col " << j;
      }
    }
  }

  int64_t batch;
  std::vector<float> x;
  std::vector<int64_t> ids;
  std::vector<float> y, pooled;
  int64_t xShape[2] = {0, 4}, idsShape[2] = {0, 2}, yShape[2] = {0, 3}, pooledShape[2] = {0, 4};
  kiln_tensor inputs[2], outputs[2];
};

/// kiln_model_open, or kiln_model_open_descriptor with `descriptorOnly`,
/// with the message in `error`.
kiln_status openModel(const std::string &path, kiln_model **model, std::string &error,
                      bool descriptorOnly = false) {
  char buffer[512];
  kiln_status status = (descriptorOnly ? kiln_model_open_descriptor : kiln_model_open)(
      path.c_str(), model, buffer, sizeof buffer);
  error = buffer;
  return status;
}

class TinyModel : public ::testing::Test {
protected:
  void SetUp() override {
    std::string error;
    ASSERT_EQ(openModel(kModels + "/tiny.so", &model, error), KILN_OK) << error;
    ASSERT_EQ(kiln_session_create(model, &session), KILN_OK);
  }
  void TearDown() override {
    kiln_session_destroy(session);
    kiln_model_close(model);
  }
  kiln_model *model = nullptr;
  kiln_session *session = nullptr;
};

TEST(ModelOpen, RefusesAMissingFile) {
  kiln_model *model = reinterpret_cast<kiln_model *>(1);
  std::string error;
  EXPECT_EQ(openModel(kModels + "/no_such_model.so", &model, error), KILN_ERROR_NOT_A_MODEL);
  EXPECT_EQ(model, nullptr);
  EXPECT_NE(error.find("no_such_model.so"), std::string::npos) << error;
}

TEST(ModelOpen, OpensABareFileNameFromTheWorkingDirectory) {
  char cwd[4096];
  ASSERT_NE(getcwd(cwd, sizeof cwd), nullptr);
  ASSERT_EQ(chdir(KILN_TEST_MODELS), 0);
  kiln_model *model = nullptr;
  std::string error;
  kiln_status status = openModel("tiny.so", &model, error);
  ASSERT_EQ(chdir(cwd), 0);
  EXPECT_EQ(status, KILN_OK) << error;
  kiln_model_close(model);
}

TEST(ModelOpen, RefusesAFileThatIsNotALibrary) {
  kiln_model *model = nullptr;
  std::string error;
  EXPECT_EQ(openModel(KILN_TEST_MODELS "/../CTestTestfile.cmake", &model, error),
            KILN_ERROR_NOT_A_MODEL);
  EXPECT_NE(error.find("not a loadable kiln model"), std::string::npos) << error;
}

// A half-copied model: dlopen would SIGBUS on the pages past its end.
TEST(ModelOpen, RefusesATruncatedLibrary) {
  std::ifstream in(KILN_TEST_MODELS "/tiny.so", std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ASSERT_GT(bytes.size(), 8192u);
  for (size_t keep : {bytes.size() / 2, bytes.size() - 1, size_t(4096)}) {
    std::string path = ::testing::TempDir() + "/half.so";
    std::ofstream(path, std::ios::binary | std::ios::trunc).write(bytes.data(), keep);
    kiln_model *model = nullptr;
    std::string error;
    EXPECT_EQ(openModel(path.c_str(), &model, error), KILN_ERROR_NOT_A_MODEL) << keep;
    EXPECT_NE(error.find("truncated or corrupt"), std::string::npos) << error;
    std::remove(path.c_str());
  }
}

TEST(ModelOpen, RefusesALibraryWithoutDescriptor) {
  kiln_model *model = nullptr;
  std::string error;
  EXPECT_EQ(openModel(KILN_RUNTIME_LIBRARY, &model, error), KILN_ERROR_NOT_A_MODEL);
  EXPECT_NE(error.find("kiln_model_descriptor"), std::string::npos) << error;
}

TEST(ModelOpen, RefusesAnotherAbiMajor) {
  kiln_model *model = nullptr;
  std::string error;
  EXPECT_EQ(openModel(kModels + "/libfake_abi_major.so", &model, error), KILN_ERROR_ABI_MISMATCH);
  EXPECT_NE(error.find("ABI 99.0"), std::string::npos) << error;
  EXPECT_EQ(model, nullptr);
}

TEST(ModelOpen, RefusesMoreHostWeightsThanWeights) {
  kiln_model *model = nullptr;
  std::string error;
  EXPECT_EQ(openModel(kModels + "/libfake_host_weights.so", &model, error), KILN_ERROR_NOT_A_MODEL);
  EXPECT_NE(error.find("64 bytes of weights in host memory, of 0"), std::string::npos) << error;
  EXPECT_EQ(model, nullptr);
}

// Found by loader_fuzzer: a descriptor's function pointers are called only
// when they point into the model's code, and its arrays read only when
// aligned for their type.
TEST(ModelOpen, RefusesPointersAFieldCannotHold) {
  for (auto [file, message] :
       {std::pair{"libfake_entry_in_data.so", "bucket 1: its entry point is not a function"},
        std::pair{"libfake_device_hook_in_data.so", "a device hook is not a function"},
        std::pair{"libfake_misaligned_shape.so", "input 'x': its shape is not an aligned array"}}) {
    kiln_model *model = nullptr;
    std::string error;
    EXPECT_EQ(openModel(kModels + "/" + file, &model, error), KILN_ERROR_NOT_A_MODEL) << file;
    EXPECT_NE(error.find(message), std::string::npos) << error;
    EXPECT_EQ(model, nullptr);
  }
}

TEST(ModelOpen, RefusesATargetThisCpuCannotRun) {
  kiln_model *model = nullptr;
  std::string error;
  EXPECT_EQ(openModel(kModels + "/libfake_isa.so", &model, error), KILN_ERROR_UNSUPPORTED_TARGET);
  EXPECT_NE(error.find("fake-target"), std::string::npos) << error;
}

TEST(ModelOpen, ItsDescriptorReadsWhereTheCpuCannotRunIt) {
  kiln_model *model = nullptr;
  std::string error;
  ASSERT_EQ(openModel(kModels + "/libfake_isa.so", &model, error, true), KILN_OK) << error;
  kiln_model_info info;
  kiln_model_get_info(model, &info);
  EXPECT_STREQ(info.target, "fake-target");
  kiln_session *session = nullptr;
  EXPECT_EQ(kiln_session_create(model, &session), KILN_ERROR_INVALID_ARGUMENT);
  kiln_model_close(model);
  // The other checks stay: a library that is not a model is refused.
  EXPECT_EQ(openModel(KILN_RUNTIME_LIBRARY, &model, error, true), KILN_ERROR_NOT_A_MODEL);
}

/// The fake model `file` opens exactly where the CPU has (`has`) what it needs.
void expectOpensWhereCpuHas(const std::string &file, bool has) {
  kiln_model *model = nullptr;
  std::string error;
  EXPECT_EQ(openModel(kModels + file, &model, error), has ? KILN_OK : KILN_ERROR_UNSUPPORTED_TARGET)
      << error;
  kiln_model_close(model);
}

bool cpuHasAvx512Vnni() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
}

TEST(ModelOpen, ChecksAvx512VnniOnThisCpu) {
  // KILN_ISA_AVX512 | KILN_ISA_AVX512_VNNI: AVX-512 F, BW, VL and VNNI.
  static_assert((KILN_ISA_AVX512 | KILN_ISA_AVX512_VNNI) == 0x30, "as the fake model's isa");
  expectOpensWhereCpuHas("/libfake_avx512_vnni.so", cpuHasAvx512Vnni());
}

TEST(ModelOpen, ChecksAvx512Bf16OnThisCpu) {
  // ... | KILN_ISA_AVX512_BF16 (--cpu avx512-bf16): also AVX-512 BF16.
  static_assert((KILN_ISA_AVX512 | KILN_ISA_AVX512_VNNI | KILN_ISA_AVX512_BF16) == 0x70,
                "as the fake model's isa");
  expectOpensWhereCpuHas("/libfake_avx512_bf16.so",
                         cpuHasAvx512Vnni() && __builtin_cpu_supports("avx512bf16"));
}

int tamperedFiles = 0;

/// A copy of tiny.so with `value` written `at` bytes into its descriptor
/// region `what`: how a bit flip or a tampered file looks to the runtime.
template <typename T> std::string tamperedTiny(const std::string &what, size_t at, T value) {
  const std::string source = kModels + "/tiny.so";
  auto regions = kiln::test::descriptorRegions(source);
  const kiln::test::Region *region = kiln::test::findRegion(regions, what);
  EXPECT_NE(region, nullptr) << what;
  std::ifstream in(source, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (region)
    std::memcpy(&bytes[region->fileOffset + at], &value, sizeof value);
  std::string path = ::testing::TempDir() + "/tampered" + std::to_string(tamperedFiles++) + ".so";
  std::ofstream(path, std::ios::binary | std::ios::trunc).write(bytes.data(), bytes.size());
  return path;
}

// Each field the runtime trusts, tampered with: refused at open, naming it.
TEST(ModelOpen, RefusesATamperedDescriptor) {
  const size_t dim1 = sizeof(int64_t);
  struct Case {
    std::string path, message;
  } cases[] = {
      {tamperedTiny("buckets", offsetof(kiln_abi_bucket, arena_bytes), uint64_t(8)),
       "input 'x' at offset 0 does not fit its 8-byte arena"},
      {tamperedTiny("bucket 0 outputs", 0, uint64_t(1) << 40), "output 'y' at offset 1099511627776"},
      {tamperedTiny("input 0 shape", dim1, int64_t(-3)), "input 'x': a negative dim"},
      {tamperedTiny("input 0 shape", dim1, int64_t(1) << 62), "input 'x': a negative dim or a size "
                                                              "that overflows 64 bits"},
      {tamperedTiny("input 0 shape", 0, int64_t(5)), "input 'x': batched, but its dim 0 is 5"},
      {tamperedTiny("inputs", offsetof(kiln_abi_tensor, dtype), int32_t(99)),
       "input 'x': unknown dtype 99"},
      {tamperedTiny("inputs", offsetof(kiln_abi_tensor, rank), int32_t(1000)), "input 'x': rank 1000"},
      // Found by loader_fuzzer: a dtype outside the enum's range.
      {tamperedTiny("outputs", offsetof(kiln_abi_tensor, dtype), int32_t(56833)),
       "output 'y': unknown dtype 56833"},
      {tamperedTiny("buckets", sizeof(kiln_abi_bucket), int64_t(1)), "buckets must ascend from 1"},
      {tamperedTiny("descriptor", offsetof(kiln_abi_model, num_inputs), int32_t(1 << 20)),
       "1048576 inputs"},
      {tamperedTiny("descriptor", offsetof(kiln_abi_model, num_buckets), int32_t(60000)),
       "tensor or bucket tables are not in the model"},
  };
  for (const Case &c : cases) {
    kiln_model *model = nullptr;
    std::string error;
    EXPECT_EQ(openModel(c.path, &model, error), KILN_ERROR_NOT_A_MODEL) << c.message;
    EXPECT_NE(error.find("a corrupt descriptor"), std::string::npos) << error;
    EXPECT_NE(error.find(c.message), std::string::npos) << error;
    EXPECT_EQ(model, nullptr);
    std::remove(c.path.c_str());
  }
}

TEST(ModelOpen, RejectsNullArguments) {
  EXPECT_EQ(kiln_model_open(nullptr, nullptr, nullptr, 0), KILN_ERROR_INVALID_ARGUMENT);
  kiln_model *model = nullptr;
  EXPECT_EQ(kiln_model_open(nullptr, &model, nullptr, 0), KILN_ERROR_INVALID_ARGUMENT);
}

TEST_F(TinyModel, DescribesItsInterface) {
  kiln_model_info info;
  kiln_model_get_info(model, &info);
  EXPECT_EQ(info.abi_major, 2u);
  EXPECT_STREQ(info.target, "x86_64-avx2-fma-f16c");
  EXPECT_GT(info.weights_bytes, 40u * 4);

  ASSERT_EQ(kiln_model_num_inputs(model), 2);
  ASSERT_EQ(kiln_model_num_outputs(model), 2);
  kiln_tensor_info t;
  ASSERT_EQ(kiln_model_input(model, 1, &t), KILN_OK);
  EXPECT_STREQ(t.name, "ids");
  EXPECT_EQ(t.dtype, KILN_DTYPE_I64);
  ASSERT_EQ(t.rank, 2);
  EXPECT_EQ(t.shape[0], -1);
  EXPECT_EQ(t.shape[1], 2);
  ASSERT_NE(t.index_bounds, nullptr);
  ASSERT_EQ(t.row_elements, 2);
  for (int p = 0; p < 2; ++p) {
    EXPECT_EQ(t.index_bounds[2 * p], -10);
    EXPECT_EQ(t.index_bounds[2 * p + 1], 9);
  }
  ASSERT_EQ(kiln_model_output(model, 0, &t), KILN_OK);
  EXPECT_STREQ(t.name, "y");
  EXPECT_EQ(kiln_model_output(model, 2, &t), KILN_ERROR_INVALID_ARGUMENT);

  ASSERT_EQ(kiln_model_num_buckets(model), 2);
  EXPECT_EQ(kiln_model_bucket_batch(model, 0), 1);
  EXPECT_EQ(kiln_model_bucket_batch(model, 1), 4);
  for (int b = 0; b < 2; ++b) {
    EXPECT_GE(kiln_model_bucket_arena_bytes(model, b),
              kiln_model_bucket_arena_lower_bound(model, b));
    EXPECT_EQ(kiln_model_bucket_arena_bytes(model, b) % 64, 0u);
  }
  EXPECT_EQ(kiln_model_arena_bytes(model), kiln_model_bucket_arena_bytes(model, 1));
}

TEST_F(TinyModel, RunsEveryBatchUpToTheLargestBucket) {
  for (int64_t batch = 1; batch <= 4; ++batch) {
    TinyRequest r(batch);
    ASSERT_EQ(r.run(session), KILN_OK) << kiln_session_error(session);
    r.expectCorrect();
  }
}

TEST_F(TinyModel, AcceptsNegativeIdsAsOnnxDoes) {
  TinyRequest r(2);
  r.ids = {-1, 0, 3, -10};
  ASSERT_EQ(r.run(session), KILN_OK) << kiln_session_error(session);
  r.ids = {9, 0, 3, 0}; // what -1 and -10 mean
  std::vector<float> y = r.y;
  ASSERT_EQ(r.run(session), KILN_OK);
  EXPECT_EQ(y, r.y);
}

TEST_F(TinyModel, ValidatesBeforeTouchingTheArena) {
  TinyRequest good(2);
  ASSERT_EQ(good.run(session), KILN_OK);
  const std::vector<float> expected = good.y;

  struct Case {
    const char *what;
    std::function<void(TinyRequest &)> spoil;
    const char *message;
  };
  std::vector<Case> cases = {
      {"batch 0", [](TinyRequest &r) { r.batch = 0; }, "batch 0 is outside [1, 4]"},
      {"batch 5", [](TinyRequest &r) { r.batch = 5; }, "batch 5 is outside [1, 4]"},
      {"dtype", [](TinyRequest &r) { r.inputs[0].dtype = KILN_DTYPE_F64; },
       "input 'x': dtype is f64"},
      {"rank", [](TinyRequest &r) { r.inputs[1].rank = 1; }, "input 'ids': rank is 1"},
      {"dim", [](TinyRequest &r) { r.xShape[1] = 5; }, "input 'x': dim 1 is 5"},
      {"batch dim", [](TinyRequest &r) { r.idsShape[0] = 3; }, "input 'ids': dim 0 is 3"},
      {"null", [](TinyRequest &r) { r.inputs[0].data = nullptr; }, "input 'x': data is NULL"},
      {"id too big", [](TinyRequest &r) { r.ids[3] = 10; },
       "element 3 (row 1, position 1) is 10, outside the valid ids [-10, 9]"},
      {"id too small", [](TinyRequest &r) { r.ids[0] = -11; },
       "element 0 (row 0, position 0) is -11"},
      {"id INT64_MIN", [](TinyRequest &r) { r.ids[1] = INT64_MIN; },
       "element 1 (row 0, position 1) is -9223372036854775808"},
      {"output shape", [](TinyRequest &r) { r.yShape[1] = 4; }, "output 'y': dim 1 is 4"},
  };
  for (const Case &c : cases) {
    TinyRequest r(2);
    c.spoil(r);
    std::fill(r.y.begin(), r.y.end(), -7.0f);
    EXPECT_EQ(r.run(session), KILN_ERROR_INVALID_ARGUMENT) << c.what;
    EXPECT_NE(std::string(kiln_session_error(session)).find(c.message), std::string::npos)
        << c.what << ": " << kiln_session_error(session);
    EXPECT_EQ(r.y, std::vector<float>(6, -7.0f)) << c.what << ": outputs were written";
    // The session stays usable.
    TinyRequest again(2);
    ASSERT_EQ(again.run(session), KILN_OK) << c.what;
    EXPECT_EQ(again.y, expected) << c.what;
    EXPECT_STREQ(kiln_session_error(session), "");
  }
  TinyRequest r(2);
  EXPECT_EQ(kiln_run(session, 2, r.inputs, 1, r.outputs, 2), KILN_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(kiln_run(nullptr, 2, r.inputs, 2, r.outputs, 2), KILN_ERROR_INVALID_ARGUMENT);
}

// NaN and Inf are values like others: the run succeeds, IEEE arithmetic
// carries them through their own row, and the other rows do not see them.
TEST_F(TinyModel, NanAndInfStayInTheirRow) {
  TinyRequest clean(2);
  ASSERT_EQ(clean.run(session), KILN_OK);
  for (float bad : {NAN, INFINITY, -INFINITY}) {
    TinyRequest r(2);
    r.x[0] = bad;
    r.x[3] = bad;
    ASSERT_EQ(r.run(session), KILN_OK) << kiln_session_error(session);
    EXPECT_EQ(std::vector<float>(r.y.begin() + 3, r.y.end()),
              std::vector<float>(clean.y.begin() + 3, clean.y.end()));
    EXPECT_EQ(r.pooled, clean.pooled);
    bool carried = false;
    for (int j = 0; j < 3; ++j)
      carried |= !std::isfinite(r.y[j]) || r.y[j] != clean.y[j];
    EXPECT_TRUE(carried) << bad << " vanished from its row";
  }
}

TEST_F(TinyModel, RunsInACallerSuppliedArena) {
  uint64_t bytes = kiln_model_arena_bytes(model);
  void *arena = std::aligned_alloc(64, bytes + 64);
  kiln_session *s = nullptr;
  EXPECT_EQ(kiln_session_create_with_arena(model, arena, bytes - 64, &s),
            KILN_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(kiln_session_create_with_arena(model, static_cast<char *>(arena) + 8, bytes, &s),
            KILN_ERROR_INVALID_ARGUMENT);
  ASSERT_EQ(kiln_session_create_with_arena(model, arena, bytes, &s), KILN_OK);
  TinyRequest r(3);
  ASSERT_EQ(r.run(s), KILN_OK) << kiln_session_error(s);
  r.expectCorrect();
  kiln_session_destroy(s);
  std::free(arena);
}

TEST_F(TinyModel, RunPerformsNoHeapAllocation) {
  if (!KILN_COUNT_ALLOCATIONS)
    GTEST_SKIP() << "allocation counting needs the non-sanitizer build";
  TinyRequest r(3), bad(3);
  bad.ids[0] = 99;
  ASSERT_EQ(r.run(session), KILN_OK); // warm-up
  allocations = 0;
  counting = true;
  kiln_status ok = r.run(session);
  kiln_status failed = bad.run(session);
  counting = false;
  EXPECT_EQ(ok, KILN_OK);
  EXPECT_EQ(failed, KILN_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(allocations.load(), 0) << "kiln_run allocated";
  // The counter itself works.
  counting = true;
  void *volatile p = malloc(16); // volatile: kept, though freed unused
  counting = false;
  free(p);
  EXPECT_EQ(allocations.load(), 1);
}

TEST_F(TinyModel, SessionsOnThreadsShareTheModel) {
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      kiln_session *s = nullptr;
      if (kiln_session_create(model, &s) != KILN_OK) {
        ++failures;
        return;
      }
      for (int i = 0; i < 200; ++i) {
        TinyRequest r(1 + (t + i) % 4);
        if (r.run(s) != KILN_OK)
          ++failures;
        else if (i % 50 == 0)
          r.expectCorrect();
      }
      kiln_session_destroy(s);
    });
  for (auto &t : threads)
    t.join();
  EXPECT_EQ(failures.load(), 0);
}

TEST(ModelFailure, AnIndexComputedInsideTheModelIsCheckedWhenItRuns) {
  kiln::Model model(kModels + "/computed_ids.so");
  kiln_tensor_info info;
  ASSERT_EQ(kiln_model_input(model.get(), 0, &info), KILN_OK);
  EXPECT_EQ(info.index_bounds, nullptr) << "ids + 1 is not a plain id input";
  kiln::Session session(model);
  int64_t ids[2] = {0, 1}, idsShape[1] = {2}, yShape[2] = {2, 2};
  float y[4];
  kiln_tensor in = {ids, KILN_DTYPE_I64, 1, idsShape}, out = {y, KILN_DTYPE_F32, 2, yShape};
  session.run(2, &in, 1, &out, 1);
  EXPECT_EQ(y[0], 3.0f);
  EXPECT_EQ(y[3], 6.0f);
  ids[1] = 2; // 2 + 1 is beyond the 3-row table
  try {
    session.run(2, &in, 1, &out, 1);
    FAIL() << "expected a model failure";
  } catch (const kiln::Error &e) {
    EXPECT_EQ(e.status, KILN_ERROR_MODEL_FAILURE);
    EXPECT_NE(std::string(e.what()).find("index out of range"), std::string::npos) << e.what();
  }
  ids[1] = 1;
  session.run(2, &in, 1, &out, 1);
  EXPECT_EQ(y[3], 6.0f);
}

} // namespace

// Device models (kiln compile --target cuda) hand validated requests to their
// own hooks; fake_device_model.cpp implements them on the CPU.
namespace {
struct DeviceRequest {
  explicit DeviceRequest(int64_t batch) : batch(batch), x(batch * 2), y(batch * 2, -1.0f) {
    for (int64_t i = 0; i < batch * 2; ++i)
      x[i] = float(i);
    shape[0] = batch;
    input = {x.data(), KILN_DTYPE_F32, 2, shape};
    output = {y.data(), KILN_DTYPE_F32, 2, shape};
  }
  int64_t batch;
  std::vector<float> x, y;
  int64_t shape[2] = {0, 2};
  kiln_tensor input, output;
};
} // namespace

TEST(DeviceModel, OpeningWithoutADeviceFailsWithTheModelsReason) {
  kiln_model *model = nullptr;
  std::string error;
  EXPECT_EQ(openModel(kModels + "/libfake_device_0.so", &model, error),
            KILN_ERROR_UNSUPPORTED_TARGET);
  EXPECT_EQ(model, nullptr);
  EXPECT_NE(error.find("no CUDA device is available"), std::string::npos) << error;
}

TEST(DeviceModel, ItsDescriptorReadsWithoutADevice) {
  // kiln inspect on a machine without a GPU: the descriptor opens without
  // the device, and no session can be created on it.
  kiln_model *model = nullptr;
  std::string error;
  ASSERT_EQ(openModel(kModels + "/libfake_device_0.so", &model, error, true), KILN_OK) << error;
  EXPECT_EQ(kiln_model_is_device(model), 1);
  EXPECT_EQ(kiln_model_num_inputs(model), 1);
  EXPECT_EQ(kiln_model_host_weights_bytes(model), 48u);
  EXPECT_EQ(kiln_model_host_weights_bytes(nullptr), 0u);
  kiln_session *session = nullptr;
  EXPECT_EQ(kiln_session_create(model, &session), KILN_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(session, nullptr);
  EXPECT_NE(std::string(kiln_last_error()).find("descriptor only"), std::string::npos)
      << kiln_last_error();
  kiln_model_close(model);
}

TEST(DeviceModel, RequestsGoToTheDeviceHooksAfterValidation) {
  kiln_model *model = nullptr;
  std::string error;
  ASSERT_EQ(openModel(kModels + "/libfake_device_1.so", &model, error), KILN_OK) << error;
  EXPECT_EQ(kiln_model_is_device(model), 1);
  kiln_session *session = nullptr;
  ASSERT_EQ(kiln_session_create(model, &session), KILN_OK) << kiln_last_error();

  DeviceRequest r(3);
  ASSERT_EQ(kiln_run(session, 3, &r.input, 1, &r.output, 1), KILN_OK)
      << kiln_session_error(session);
  for (int64_t i = 0; i < 6; ++i)
    EXPECT_EQ(r.y[i], 2 * r.x[i]);
  ASSERT_EQ(kiln_run_device(session, 3, &r.input, 1, &r.output, 1), KILN_OK);
  for (int64_t i = 0; i < 6; ++i)
    EXPECT_EQ(r.y[i], 2 * r.x[i] + 1);

  // The runtime still checks shapes and batches; the model's own failure
  // comes back with its message, and the session stays usable.
  EXPECT_EQ(kiln_run(session, 5, &r.input, 1, &r.output, 1), KILN_ERROR_INVALID_ARGUMENT);
  r.x[1] = NAN;
  EXPECT_EQ(kiln_run_device(session, 3, &r.input, 1, &r.output, 1), KILN_ERROR_MODEL_FAILURE);
  EXPECT_STREQ(kiln_session_error(session), "fake: NaN input");
  r.x[1] = 1;
  EXPECT_EQ(kiln_run(session, 3, &r.input, 1, &r.output, 1), KILN_OK);

  // A caller's arena is host memory: refused, with the reason.
  kiln_session_options options;
  kiln_session_options_init(&options);
  alignas(64) static uint8_t arena[64];
  options.arena = arena;
  options.arena_bytes = sizeof arena;
  kiln_session *other = nullptr;
  EXPECT_EQ(kiln_session_create_with_options(model, &options, &other), KILN_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(kiln_last_error()).find("device memory"), std::string::npos);

  // The fake device runs out of memory at its third session.
  kiln_session *second = nullptr, *third = nullptr;
  ASSERT_EQ(kiln_session_create(model, &second), KILN_OK);
  EXPECT_EQ(kiln_session_create(model, &third), KILN_ERROR_MODEL_FAILURE);
  EXPECT_EQ(third, nullptr);
  EXPECT_NE(std::string(kiln_last_error()).find("out of memory"), std::string::npos);
  kiln_session_destroy(second);
  kiln_session_destroy(session);
  kiln_model_close(model);
}

TEST(DeviceModel, ItsSessionGetsTheThreadsAskedFor) {
  // For tables kept in host memory: the model's session_create_exec hook
  // receives the session's threads, and runs work on them.
  kiln_model *model = nullptr;
  std::string error;
  const std::string path = kModels + "/libfake_device_1.so";
  ASSERT_EQ(openModel(path, &model, error), KILN_OK) << error;
  void *handle = dlopen(path.c_str(), RTLD_NOW | RTLD_NOLOAD);
  ASSERT_NE(handle, nullptr);
  auto *threads = static_cast<int *>(dlsym(handle, "fake_device_threads"));
  ASSERT_NE(threads, nullptr);
  for (int32_t asked : {1, 3}) {
    kiln_session_options options;
    kiln_session_options_init(&options);
    options.num_threads = asked;
    kiln_session *session = nullptr;
    ASSERT_EQ(kiln_session_create_with_options(model, &options, &session), KILN_OK)
        << kiln_last_error();
    EXPECT_EQ(*threads, asked);
    EXPECT_EQ(kiln_session_num_threads(session), asked);
    DeviceRequest r(4);
    ASSERT_EQ(kiln_run(session, 4, &r.input, 1, &r.output, 1), KILN_OK);
    for (int64_t i = 0; i < 8; ++i)
      EXPECT_EQ(r.y[i], 2 * r.x[i]) << asked << " threads";
    kiln_session_destroy(session);
  }
  dlclose(handle);
  kiln_model_close(model);
}

TEST_F(TinyModel, DevicePointersAreRefusedForACpuModel) {
  EXPECT_EQ(kiln_model_is_device(model), 0);
  TinyRequest r(2);
  EXPECT_EQ(kiln_run_device(session, 2, r.inputs, 2, r.outputs, 2), KILN_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(kiln_session_error(session)).find("runs on the CPU"), std::string::npos);
}
