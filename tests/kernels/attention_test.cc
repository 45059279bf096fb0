#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>
#include <vector>

#include "kernels/cpu/ops.h"
#include "tests/kernels/test_util.h"

namespace kvasir::cpu {
namespace {

using testing::RandomFloats;

// Per-sequence K, V and queries for every position; a batch picks which positions run as queries.
struct Problem {
  int num_heads = 6;
  int num_kv_heads = 2;  // GQA group of 3
  int head_dim = 16;
  std::vector<int> lens;
  std::vector<std::vector<float>> k, v, q;  // [len, kv heads or heads, head_dim]

  Problem(std::vector<int> seq_lens, int dim) : head_dim(dim), lens(std::move(seq_lens)) {
    for (size_t s = 0; s < lens.size(); ++s) {
      const uint32_t seed = 100 + 3 * static_cast<uint32_t>(s);
      k.push_back(RandomFloats(lens[s] * num_kv_heads * head_dim, seed, -2.0f, 2.0f));
      v.push_back(RandomFloats(lens[s] * num_kv_heads * head_dim, seed + 1));
      q.push_back(RandomFloats(lens[s] * num_heads * head_dim, seed + 2, -2.0f, 2.0f));
    }
  }
};

// One sequence of a step: its context is [0, seq_len) and its queries the last q_len positions.
struct Entry {
  int seq;
  int q_len;
  int seq_len;
};

// Writes each entry's context into a paged cache with shuffled physical blocks and runs
// PagedAttention. Returns out [num_tokens, heads, head_dim].
std::vector<float> RunBatch(const Problem& pr, const std::vector<Entry>& batch, int block_size,
                            ThreadPool* pool) {
  const int row = pr.num_kv_heads * pr.head_dim;
  int num_blocks = 1;  // one spare block
  for (const Entry& e : batch) num_blocks += (e.seq_len + block_size - 1) / block_size;
  std::vector<int32_t> physical(num_blocks);
  std::iota(physical.begin(), physical.end(), 0);
  std::shuffle(physical.begin(), physical.end(), std::mt19937(block_size));
  std::vector<float> k_cache(num_blocks * block_size * row, NAN), v_cache = k_cache;
  std::vector<int32_t> query_start = {0}, seq_lens, indptr = {0}, table;
  std::vector<float> q;
  int next = 0;
  for (const Entry& e : batch) {
    const int nb = (e.seq_len + block_size - 1) / block_size;
    for (int b = 0; b < nb; ++b) table.push_back(physical[next++]);
    indptr.push_back(static_cast<int32_t>(table.size()));
    std::vector<int64_t> slots(e.seq_len + 1, -1);  // the extra token has slot -1: skipped
    for (int p = 0; p < e.seq_len; ++p) {
      slots[p] =
          int64_t{table[indptr[indptr.size() - 2] + p / block_size]} * block_size + p % block_size;
    }
    std::vector<float> kk(pr.k[e.seq].begin(), pr.k[e.seq].begin() + e.seq_len * row);
    std::vector<float> vv(pr.v[e.seq].begin(), pr.v[e.seq].begin() + e.seq_len * row);
    kk.resize((e.seq_len + 1) * row, 99.0f);
    vv.resize((e.seq_len + 1) * row, 99.0f);
    WriteKvCache(kk.data(), vv.data(), e.seq_len + 1, pr.num_kv_heads, pr.head_dim, slots.data(),
                 k_cache.data(), v_cache.data());
    const int qrow = pr.num_heads * pr.head_dim;
    q.insert(q.end(), pr.q[e.seq].begin() + (e.seq_len - e.q_len) * qrow,
             pr.q[e.seq].begin() + e.seq_len * qrow);
    query_start.push_back(query_start.back() + e.q_len);
    seq_lens.push_back(e.seq_len);
  }
  std::vector<float> out(q.size(), NAN);
  PagedAttentionArgs a{};
  a.q = q.data();
  a.k_cache = k_cache.data();
  a.v_cache = v_cache.data();
  a.num_seqs = static_cast<int>(batch.size());
  a.num_heads = pr.num_heads;
  a.num_kv_heads = pr.num_kv_heads;
  a.head_dim = pr.head_dim;
  a.block_size = block_size;
  a.scale = 1.0f / std::sqrt(static_cast<float>(pr.head_dim));
  a.query_start = query_start.data();
  a.seq_lens = seq_lens.data();
  a.block_table_indptr = indptr.data();
  a.block_table = table.data();
  a.out = out.data();
  PagedAttention(a, pool);
  return out;
}

// Dense causal attention in double for query position pos, head h of sequence s.
std::vector<double> Reference(const Problem& pr, int s, int pos, int h) {
  const int d = pr.head_dim, kvh = h / (pr.num_heads / pr.num_kv_heads);
  const float* q = &pr.q[s][(pos * pr.num_heads + h) * d];
  std::vector<double> scores(pos + 1);
  double max = -1e300;
  for (int p = 0; p <= pos; ++p) {
    double dot = 0;
    for (int i = 0; i < d; ++i) dot += double{q[i]} * pr.k[s][(p * pr.num_kv_heads + kvh) * d + i];
    scores[p] = dot / std::sqrt(static_cast<double>(d));
    max = std::max(max, scores[p]);
  }
  double z = 0;
  for (double& sc : scores) z += (sc = std::exp(sc - max));
  std::vector<double> out(d, 0.0);
  for (int p = 0; p <= pos; ++p) {
    const float* v = &pr.v[s][(p * pr.num_kv_heads + kvh) * d];
    for (int i = 0; i < d; ++i) out[i] += scores[p] / z * v[i];
  }
  return out;
}

// Output row of the query at position pos of entry index e within a batch's output.
std::vector<float> QueryRow(const Problem& pr, const std::vector<Entry>& batch,
                            const std::vector<float>& out, size_t e, int pos) {
  int token = 0;
  for (size_t i = 0; i < e; ++i) token += batch[i].q_len;
  token += pos - (batch[e].seq_len - batch[e].q_len);
  const int row = pr.num_heads * pr.head_dim;
  return std::vector<float>(out.begin() + token * row, out.begin() + (token + 1) * row);
}

class PagedAttentionTest : public ::testing::TestWithParam<int> {};  // block size

TEST_P(PagedAttentionTest, MixedBatchMatchesDenseCausalReference) {
  const Problem pr({23, 26, 40}, 16);
  // A decode, a chunk of 9 over a cached prefix of 17, and a fresh 40-token prefill.
  const std::vector<Entry> batch = {{0, 1, 23}, {1, 9, 26}, {2, 40, 40}};
  ThreadPool pool(2);
  const std::vector<float> out = RunBatch(pr, batch, GetParam(), &pool);
  for (size_t e = 0; e < batch.size(); ++e) {
    for (int pos = batch[e].seq_len - batch[e].q_len; pos < batch[e].seq_len; ++pos) {
      const std::vector<float> got = QueryRow(pr, batch, out, e, pos);
      for (int h = 0; h < pr.num_heads; ++h) {
        const std::vector<double> ref = Reference(pr, batch[e].seq, pos, h);
        for (int i = 0; i < pr.head_dim; ++i) {
          ASSERT_NEAR(got[h * pr.head_dim + i], ref[i], 2e-6)
              << "seq " << batch[e].seq << " pos " << pos << " head " << h << " dim " << i;
        }
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(BlockSizes, PagedAttentionTest, ::testing::Values(16, 5));

TEST(PagedAttentionInvarianceTest, QueryOutputIsBitwiseIndependentOfBatchChunksAndThreads) {
  const Problem pr({23, 70, 40}, 16);
  const int pos = 69;  // last prompt token of sequence 1
  ThreadPool pool(2);
  const std::vector<Entry> alone = {{1, 1, 70}};
  const std::vector<float> want = QueryRow(pr, alone, RunBatch(pr, alone, 16, nullptr), 0, pos);
  struct Case {
    const char* name;
    std::vector<Entry> batch;
    size_t entry;
    int block_size;
    ThreadPool* pool;
  };
  const std::vector<Case> cases = {
      {"whole prompt in one chunk", {{1, 70, 70}}, 0, 16, nullptr},
      {"last chunk of 30 after 40 cached", {{1, 30, 70}}, 0, 16, nullptr},
      {"inside a mixed batch", {{0, 1, 23}, {1, 7, 70}, {2, 40, 40}}, 1, 16, nullptr},
      {"with two threads", {{0, 1, 23}, {1, 70, 70}}, 1, 16, &pool},
      {"block size 5", {{1, 70, 70}}, 0, 5, &pool},
  };
  for (const Case& c : cases) {
    const std::vector<float> got =
        QueryRow(pr, c.batch, RunBatch(pr, c.batch, c.block_size, c.pool), c.entry, pos);
    ASSERT_EQ(std::memcmp(got.data(), want.data(), want.size() * sizeof(float)), 0) << c.name;
  }
}

TEST(PagedAttentionInvarianceTest, ScalarAndAvx2AreBitwiseEqual) {
  if (!testing::HaveAvx2()) GTEST_SKIP() << "no AVX2";
  for (int dim : {16, 20}) {  // 20 exercises the head_dim % 8 tail
    const Problem pr({50, 33}, dim);
    const std::vector<Entry> batch = {{0, 1, 50}, {1, 33, 33}};
    const std::vector<float> simd = RunBatch(pr, batch, 16, nullptr);
    testing::ScopedForceScalar force;
    const std::vector<float> scalar = RunBatch(pr, batch, 16, nullptr);
    ASSERT_EQ(std::memcmp(simd.data(), scalar.data(), simd.size() * sizeof(float)), 0) << dim;
  }
}

TEST(WriteKvCacheTest, StoresBySlotAndSkipsNegativeSlots) {
  const std::vector<float> k = {1, 2, 3, 4, 5, 6}, v = {7, 8, 9, 10, 11, 12};
  const std::vector<int64_t> slots = {2, -1, 0};
  std::vector<float> kc(8, 0.0f), vc(8, 0.0f);  // 4 slots x 1 kv head x dim 2
  WriteKvCache(k.data(), v.data(), 3, 1, 2, slots.data(), kc.data(), vc.data());
  EXPECT_EQ(kc, (std::vector<float>{5, 6, 0, 0, 1, 2, 0, 0}));
  EXPECT_EQ(vc, (std::vector<float>{11, 12, 0, 0, 7, 8, 0, 0}));
}

}  // namespace
}  // namespace kvasir::cpu
