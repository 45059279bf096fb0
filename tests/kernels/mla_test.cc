// Multi-head latent attention: the absorbed (decode) and expanded (prefill) forms against each
// other and against a float64 reference that expands K and V per head, on random data in a
// shuffled paged cache; the per-sequence choice; batch and thread invariance.
#include "kernels/cpu/mla.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include "tests/kernels/test_util.h"

namespace kvasir::cpu {
namespace {

using testing::MakeWeights;
using testing::RandomFloats;
using testing::TestWeights;

constexpr int kHeads = 4, kNope = 16, kRope = 8, kV = 12, kRank = 32, kBlock = 4;
constexpr int kQk = kNope + kRope, kWidth = kRank + kRope;

// A batch: a decode (1 query, context 9), a prefill chunk after 7 cached tokens (5 queries,
// context 12) and a whole prompt (6 queries). The cache is filled at random, blocks shuffled.
struct Batch {
  std::vector<int32_t> q_lens{1, 5, 6}, seq_lens{9, 12, 6};
  std::vector<int32_t> query_start, block_table_indptr, block_table;
  std::vector<float> cache, q;
  TestWeights kv_b;
  int num_tokens = 0;

  explicit Batch(DType kv_b_dtype) {
    query_start.push_back(0);
    block_table_indptr.push_back(0);
    int num_blocks = 0;
    for (size_t s = 0; s < q_lens.size(); ++s) {
      query_start.push_back(query_start.back() + q_lens[s]);
      num_blocks += (seq_lens[s] + kBlock - 1) / kBlock;
      block_table_indptr.push_back(num_blocks);
    }
    num_tokens = query_start.back();
    block_table.resize(num_blocks);
    std::iota(block_table.begin(), block_table.end(), 0);
    std::shuffle(block_table.begin(), block_table.end(), std::mt19937(7));
    cache = RandomFloats(int64_t{num_blocks} * kBlock * kWidth, 1);
    q = RandomFloats(int64_t{num_tokens} * kHeads * kQk, 2, -1.5f, 1.5f);
    kv_b = MakeWeights(kv_b_dtype, kHeads * (kNope + kV), kRank, 3);
  }

  MlaAttentionArgs Args(float* out) const {
    MlaAttentionArgs a;
    a.q = q.data();
    a.cache = cache.data();
    a.kv_b = kv_b.bytes.data();
    a.kv_b_dtype = DType::kF32;
    a.num_heads = kHeads;
    a.nope_dim = kNope;
    a.rope_dim = kRope;
    a.v_dim = kV;
    a.kv_lora_rank = kRank;
    a.block_size = kBlock;
    a.scale = 0.3f;
    a.num_seqs = static_cast<int>(q_lens.size());
    a.query_start = query_start.data();
    a.seq_lens = seq_lens.data();
    a.block_table_indptr = block_table_indptr.data();
    a.block_table = block_table.data();
    a.out = out;
    return a;
  }

  std::vector<float> Run(MlaForm form, DType dtype, ThreadPool* pool) const {
    std::vector<float> out(int64_t{num_tokens} * kHeads * kV, NAN);
    MlaAttentionArgs a = Args(out.data());
    a.kv_b_dtype = dtype;
    MlaScratch scratch;
    MlaAttention(a, form, &scratch, pool);
    return out;
  }

  // Float64, K and V expanded per head from the decoded kv_b, plain softmax.
  std::vector<double> Reference() const {
    std::vector<double> out(int64_t{num_tokens} * kHeads * kV);
    const std::vector<float>& w = kv_b.decoded;
    for (size_t s = 0; s < q_lens.size(); ++s) {
      auto row = [&](int p) {
        const int block = block_table[block_table_indptr[s] + p / kBlock];
        return cache.data() + (int64_t{block} * kBlock + p % kBlock) * kWidth;
      };
      for (int t = 0; t < q_lens[s]; ++t) {
        const int token = query_start[s] + t, ctx = seq_lens[s] - q_lens[s] + t + 1;
        for (int h = 0; h < kHeads; ++h) {
          const float* qh = q.data() + (int64_t{token} * kHeads + h) * kQk;
          std::vector<double> scores(ctx), v(int64_t{ctx} * kV);
          for (int p = 0; p < ctx; ++p) {
            double sc = 0;
            for (int d = 0; d < kNope; ++d) {
              double k = 0;
              for (int l = 0; l < kRank; ++l)
                k += double{w[(h * (kNope + kV) + d) * kRank + l]} * row(p)[l];
              sc += qh[d] * k;
            }
            for (int d = 0; d < kRope; ++d) sc += double{qh[kNope + d]} * row(p)[kRank + d];
            scores[p] = sc * 0.3;
            for (int d = 0; d < kV; ++d) {
              double x = 0;
              for (int l = 0; l < kRank; ++l) {
                x += double{w[(h * (kNope + kV) + kNope + d) * kRank + l]} * row(p)[l];
              }
              v[int64_t{p} * kV + d] = x;
            }
          }
          const double m = *std::max_element(scores.begin(), scores.end());
          double sum = 0;
          for (double& x : scores) sum += (x = std::exp(x - m));
          for (int d = 0; d < kV; ++d) {
            double o = 0;
            for (int p = 0; p < ctx; ++p) o += scores[p] / sum * v[int64_t{p} * kV + d];
            out[(int64_t{token} * kHeads + h) * kV + d] = o;
          }
        }
      }
    }
    return out;
  }
};

double MaxDiff(const std::vector<float>& a, const std::vector<double>& b) {
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::abs(a[i] - b[i]));
  return std::isnan(worst) ? INFINITY : worst;
}

std::vector<double> ToDouble(const std::vector<float>& v) { return {v.begin(), v.end()}; }

TEST(MlaAttentionTest, AbsorbedAndExpandedFormsAgreeWithAFloat64Reference) {
  for (DType dtype : {DType::kF32, DType::kBF16}) {
    const Batch b(dtype);
    ThreadPool pool(2);
    const std::vector<double> ref = b.Reference();
    const std::vector<float> absorbed = b.Run(MlaForm::kAbsorbed, dtype, &pool);
    const std::vector<float> expanded = b.Run(MlaForm::kExpanded, dtype, &pool);
    const double scale = std::abs(*std::max_element(
        ref.begin(), ref.end(), [](double x, double y) { return std::abs(x) < std::abs(y); }));
    EXPECT_GT(scale, 0.5);  // outputs are O(1), so the tolerances below are meaningful
    EXPECT_LE(MaxDiff(absorbed, ToDouble(expanded)), 1e-5) << DTypeName(dtype);
    EXPECT_LE(MaxDiff(absorbed, ref), 1e-5) << DTypeName(dtype);
    EXPECT_LE(MaxDiff(expanded, ref), 1e-5) << DTypeName(dtype);
  }
}

TEST(MlaAttentionTest, ByQueryCountAbsorbsSingleQueriesAndExpandsSeveral) {
  const Batch b(DType::kF32);
  ThreadPool pool(2);
  const std::vector<float> absorbed = b.Run(MlaForm::kAbsorbed, DType::kF32, &pool);
  const std::vector<float> expanded = b.Run(MlaForm::kExpanded, DType::kF32, &pool);
  const std::vector<float> chosen = b.Run(MlaForm::kByQueryCount, DType::kF32, &pool);
  const int64_t row = kHeads * kV;
  // Token 0 is the decode; tokens 1.. belong to the two prefills.
  EXPECT_TRUE(std::equal(chosen.begin(), chosen.begin() + row, absorbed.begin()));
  EXPECT_TRUE(std::equal(chosen.begin() + row, chosen.end(), expanded.begin() + row));
  EXPECT_FALSE(std::equal(absorbed.begin(), absorbed.end(), expanded.begin()))
      << "the two forms should round differently somewhere";
}

// Each sequence run alone, and with 1 or 2 threads: bitwise what it got in the batch.
TEST(MlaAttentionTest, ResultsDoNotDependOnTheBatchOrTheThreadCount) {
  const Batch b(DType::kF32);
  ThreadPool one(1), two(2);
  for (MlaForm form : {MlaForm::kAbsorbed, MlaForm::kExpanded}) {
    const std::vector<float> batched = b.Run(form, DType::kF32, &two);
    EXPECT_EQ(batched, b.Run(form, DType::kF32, &one));
    for (int s = 0; s < 3; ++s) {
      std::vector<float> out(int64_t{b.q_lens[s]} * kHeads * kV);
      MlaAttentionArgs a = b.Args(out.data());
      const int32_t query_start[2] = {0, b.q_lens[s]};
      a.num_seqs = 1;
      a.q = b.q.data() + int64_t{b.query_start[s]} * kHeads * kQk;
      a.query_start = query_start;
      a.seq_lens = b.seq_lens.data() + s;
      a.block_table_indptr = b.block_table_indptr.data() + s;
      MlaScratch scratch;
      MlaAttention(a, form, &scratch, &two);
      EXPECT_TRUE(std::equal(out.begin(), out.end(),
                             batched.begin() + int64_t{b.query_start[s]} * kHeads * kV))
          << "sequence " << s;
    }
  }
}

TEST(MlaAttentionTest, WriteMlaCacheStoresLatentThenRopeKeyAndSkipsUnmappedTokens) {
  const std::vector<float> latent = RandomFloats(3 * kRank, 5), rope = RandomFloats(3 * kRope, 6);
  std::vector<float> cache(8 * kWidth, -7.0f);
  const int64_t slots[3] = {5, -1, 2};
  WriteMlaCache(latent.data(), rope.data(), 3, kRank, kRope, slots, cache.data());
  for (int t : {0, 2}) {
    const float* row = cache.data() + slots[t] * kWidth;
    EXPECT_TRUE(std::equal(row, row + kRank, latent.begin() + t * kRank));
    EXPECT_TRUE(std::equal(row + kRank, row + kWidth, rope.begin() + t * kRope));
  }
  EXPECT_EQ(std::count(cache.begin(), cache.end(), -7.0f), 6 * kWidth);
}

}  // namespace
}  // namespace kvasir::cpu
