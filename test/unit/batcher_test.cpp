// The Triton backend's staging (serving/triton/Batcher.h) over models/tiny
// (buckets 1 and 4): requests staged one after the other, each checked alone,
// run as one kiln_run at the smallest bucket; nothing allocated per batch.
#include "Batcher.h"
#include "allocation_counter.h"

#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <string>

namespace {

using kiln::serving::Batcher;

class BatcherTest : public ::testing::Test {
protected:
  void SetUp() override {
    char error[512];
    ASSERT_EQ(kiln_model_open(KILN_TEST_MODELS "/tiny.so", &model, error, sizeof error), KILN_OK)
        << error;
    std::string why;
    batcher = Batcher::create(model, 1, why);
    ASSERT_TRUE(batcher) << why;
  }
  void TearDown() override {
    batcher.reset();
    kiln_model_close(model);
  }

  /// Stages `rows` rows of tiny's inputs: x = row + seed, ids = {id, id}.
  bool stage(int64_t rows, float seed, int64_t id) {
    auto *x = reinterpret_cast<float *>(batcher->inputSlot(0));
    auto *ids = reinterpret_cast<int64_t *>(batcher->inputSlot(1));
    for (int64_t r = 0; r < rows; ++r) {
      for (int c = 0; c < 4; ++c)
        x[r * 4 + c] = seed + float(r);
      ids[r * 2] = ids[r * 2 + 1] = id;
    }
    return batcher->stage(rows);
  }

  /// tiny's `pooled` output for a row: table[id] twice, the table's row `id`
  /// being id + 0.1 * column.
  static float pooled(int64_t id, int column) { return 2 * (float(id) + 0.1f * float(column)); }

  kiln_model *model = nullptr;
  std::unique_ptr<Batcher> batcher;
};

TEST_F(BatcherTest, SizesItsStagingForTheLargestBucket) {
  EXPECT_EQ(batcher->maxBatch(), 4);
  EXPECT_EQ(batcher->inputRowBytes(0), 4 * sizeof(float));
  EXPECT_EQ(batcher->inputRowBytes(1), 2 * sizeof(int64_t));
  EXPECT_EQ(batcher->outputRowBytes(0), 3 * sizeof(float));
  EXPECT_TRUE(batcher->fits(4));
  EXPECT_FALSE(batcher->fits(5));
}

TEST_F(BatcherTest, RunsStagedRequestsAsOneBatchAtTheSmallestBucket) {
  ASSERT_TRUE(stage(1, 0, 2));
  ASSERT_TRUE(stage(2, 10, 7));
  EXPECT_EQ(batcher->stagedRows(), 3);
  EXPECT_FALSE(batcher->fits(2));
  ASSERT_TRUE(batcher->run()) << batcher->error();
  EXPECT_EQ(batcher->lastBucketRows(), 4);
  EXPECT_EQ(batcher->stagedRows(), 0);
  const int64_t ids[] = {2, 7, 7};
  for (int64_t row = 0; row < 3; ++row) {
    auto *out = reinterpret_cast<const float *>(batcher->output(1, row));
    for (int c = 0; c < 4; ++c)
      EXPECT_NEAR(out[c], pooled(ids[row], c), 1e-5) << row << "," << c;
  }
  ASSERT_TRUE(stage(1, 0, 3));
  ASSERT_TRUE(batcher->run());
  EXPECT_EQ(batcher->lastBucketRows(), 1);
}

TEST_F(BatcherTest, ABadRequestIsDroppedAloneWithKilnsMessage) {
  ASSERT_TRUE(stage(1, 0, 1));
  EXPECT_FALSE(stage(2, 0, 99)); // tiny's table has 10 rows
  EXPECT_NE(std::string(batcher->error()).find("outside the valid ids"), std::string::npos)
      << batcher->error();
  EXPECT_EQ(batcher->stagedRows(), 1);
  ASSERT_TRUE(stage(1, 0, 4)); // takes the dropped request's place
  ASSERT_TRUE(batcher->run()) << batcher->error();
  auto *second = reinterpret_cast<const float *>(batcher->output(1, 1));
  EXPECT_NEAR(second[0], pooled(4, 0), 1e-5);
}

TEST_F(BatcherTest, StagingAndRunningAllocateNothing) {
  if (!KILN_COUNT_ALLOCATIONS)
    GTEST_SKIP() << "allocation counting needs the non-sanitizer build";
  ASSERT_TRUE(stage(3, 0, 1));
  ASSERT_TRUE(batcher->run()); // warm-up
  allocations = 0;
  counting = true;
  bool ok = true;
  for (int batch = 0; batch < 100; ++batch) {
    ok &= stage(1, 0, 1);
    ok &= !stage(1, 0, 99);
    ok &= stage(3, 0, 5);
    ok &= batcher->run();
    ok &= stage(2, 0, 5);
    ok &= batcher->run();
  }
  counting = false;
  EXPECT_TRUE(ok) << batcher->error();
  EXPECT_EQ(allocations.load(), 0) << "staging or running a batch allocated";
}

} // namespace
