// Argmax and Logprobs against the CPU Argmax and a float64 log-softmax; ties, NaNs, all-NaN rows.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <vector>

#include "kernels/cpu/ops.h"
#include "kernels/cuda/ops.h"
#include "tests/kernels/cuda/gpu_test_util.h"

namespace kvasir::cuda::testing {
namespace {

class SamplingTest : public GpuTest, public ::testing::WithParamInterface<int> {};

std::vector<float> MakeLogits(int rows, int vocab, uint32_t seed) {
  std::vector<float> x = RandomFloats(int64_t{rows} * vocab, seed, -10.0f, 10.0f);
  // Row 1: a tie for the max at two places; row 2: NaNs, including where the max would be;
  // row 3 (when present): all NaN.
  x[int64_t{1} * vocab + vocab / 3] = 50.0f;
  x[int64_t{1} * vocab + vocab / 2] = 50.0f;
  x[int64_t{2} * vocab + 5] = NAN;
  x[int64_t{2} * vocab + 6] = 60.0f;
  x[int64_t{2} * vocab + 7] = NAN;
  if (rows > 3) std::fill_n(x.begin() + int64_t{3} * vocab, vocab, NAN);
  return x;
}

TEST_P(SamplingTest, ArgmaxMatchesCpuIncludingTiesAndNaN) {
  const int vocab = GetParam(), rows = 5;
  const std::vector<float> x = MakeLogits(rows, vocab, vocab);
  DeviceArray<float> dx(x);
  DeviceArray<int32_t> ids(rows);
  KV_ASSERT_OK(ids.Poison());
  KV_ASSERT_OK(Argmax(dx.get(), rows, vocab, ids.get(), nullptr));
  KV_ASSERT_CUDA(cudaDeviceSynchronize());
  const std::vector<int32_t> got = ids.Download();
  for (int r = 0; r < rows; ++r) {
    EXPECT_EQ(got[r], cpu::Argmax(&x[int64_t{r} * vocab], vocab)) << "row " << r;
  }
  EXPECT_EQ(got[1], vocab / 3);
  EXPECT_EQ(got[3], 0);
}

TEST_P(SamplingTest, LogprobsTopKAndChosenMatchFloat64) {
  const int vocab = GetParam(), rows = 3, top_k = 20;
  std::vector<float> x = MakeLogits(rows, vocab, vocab + 1);
  x[int64_t{1} * vocab + 11] = 50.0f;               // a third tie at the top of row 1
  std::vector<int32_t> chosen = {7, vocab / 2, 5};  // row 2: a NaN logit
  DeviceArray<float> dx(x), top_lp(rows * top_k), chosen_lp(rows);
  DeviceArray<int32_t> top_ids(rows * top_k), dchosen(chosen);
  KV_ASSERT_OK(top_lp.Poison());
  KV_ASSERT_OK(chosen_lp.Poison());
  KV_ASSERT_OK(top_ids.Poison());
  LogprobsArgs a;
  a.logits = dx.get();
  a.rows = rows;
  a.vocab = vocab;
  a.top_k = top_k;
  a.top_ids = top_ids.get();
  a.top_logprobs = top_lp.get();
  a.chosen = dchosen.get();
  a.chosen_logprob = chosen_lp.get();
  KV_ASSERT_OK(Logprobs(a, nullptr));
  KV_ASSERT_CUDA(cudaDeviceSynchronize());
  const std::vector<int32_t> ids = top_ids.Download();
  const std::vector<float> lp = top_lp.Download(), clp = chosen_lp.Download();
  for (int r = 0; r < rows; ++r) {
    const float* row = &x[int64_t{r} * vocab];
    double m = -INFINITY, s = 0.0;
    for (int i = 0; i < vocab; ++i) {
      if (!std::isnan(row[i])) m = std::max(m, double{row[i]});
    }
    for (int i = 0; i < vocab; ++i) {
      if (!std::isnan(row[i])) s += std::exp(row[i] - m);
    }
    const double lse = m + std::log(s);
    std::vector<int> order;
    for (int i = 0; i < vocab; ++i) {
      if (!std::isnan(row[i])) order.push_back(i);
    }
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return row[a] > row[b]; });
    std::vector<double> ref_lp(top_k), got_lp(top_k);
    for (int j = 0; j < top_k; ++j) {
      EXPECT_EQ(ids[r * top_k + j], order[j]) << "row " << r << " rank " << j;
      ref_lp[j] = row[order[j]] - lse;
      got_lp[j] = lp[r * top_k + j];
    }
    EXPECT_LT(RelError(std::vector<float>(got_lp.begin(), got_lp.end()), ref_lp), kF32OutTol);
    if (r != 2) {
      EXPECT_NEAR(clp[r], row[chosen[r]] - lse, kF32OutTol * std::abs(row[chosen[r]] - lse) + 1e-5);
    }
  }
  EXPECT_EQ(ids[1 * top_k + 0], 11);  // ties: the lower index first
  EXPECT_EQ(ids[1 * top_k + 1], vocab / 3);
  EXPECT_EQ(ids[1 * top_k + 2], vocab / 2);
  EXPECT_TRUE(std::isnan(clp[2])) << "the chosen logit was NaN";
}

// A small vocabulary, Llama-3's 128256, and an odd one.
INSTANTIATE_TEST_SUITE_P(Vocab, SamplingTest, ::testing::Values(1000, 128256, 151937));

}  // namespace
}  // namespace kvasir::cuda::testing
