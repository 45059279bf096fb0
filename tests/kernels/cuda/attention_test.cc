// Paged decode and prefill attention against a float64 reference and the CPU PagedAttention on the
// same bf16 values: GQA ratios 1/4/8, head_dim 64/128, 16-token pages (and 1- and 7-token ones)
// scattered over the pool, contexts spanning many pages, prefix + chunk prefill, several decode
// partitionings, zero-length decode sequences (zeros).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "kernels/cpu/ops.h"
#include "kernels/cuda/ops.h"
#include "tests/kernels/cuda/gpu_test_util.h"

namespace kvasir::cuda::testing {
namespace {

// A page pool holding every sequence's context at shuffled pages, all of it random.
struct Paged {
  int kv_heads = 0, head_dim = 0, num_blocks = 0, block_size = 16;
  std::vector<int32_t> seq_lens, indptr, indices;
  std::vector<uint16_t> k, v;  // [num_blocks, block_size, kv_heads, head_dim]

  int64_t RowOffset(int seq, int pos, int kvh) const {
    const int64_t slot =
        int64_t{indices[indptr[seq] + pos / block_size]} * block_size + pos % block_size;
    return (slot * kv_heads + kvh) * head_dim;
  }
};

Paged MakePaged(const std::vector<int>& lens, int kv_heads, int head_dim, int block_size,
                uint32_t seed) {
  Paged p;
  p.block_size = block_size;
  p.kv_heads = kv_heads;
  p.head_dim = head_dim;
  p.indptr.push_back(0);
  for (int len : lens) {
    p.seq_lens.push_back(len);
    p.indptr.push_back(p.indptr.back() + (len + block_size - 1) / block_size);
  }
  p.num_blocks = p.indptr.back() + 5;  // spare pages nobody owns
  std::vector<int32_t> ids(p.num_blocks);
  std::iota(ids.begin(), ids.end(), 0);
  std::mt19937 rng(seed);
  std::shuffle(ids.begin(), ids.end(), rng);
  p.indices.assign(ids.begin(), ids.begin() + p.indptr.back());
  const size_t n = size_t{static_cast<size_t>(p.num_blocks)} * block_size * kv_heads * head_dim;
  p.k = RandomBf16(n, seed + 1);
  p.v = RandomBf16(n, seed + 2);
  return p;
}

// float64 attention of one query row (head h of q_row) at position pos over [0, pos].
void RefAttend(const Paged& p, int seq, int pos, int kvh, const uint16_t* q, double scale,
               double* out) {
  const int d = p.head_dim;
  std::vector<double> s(pos + 1);
  double m = -INFINITY;
  for (int t = 0; t <= pos; ++t) {
    const int64_t off = p.RowOffset(seq, t, kvh);
    double dot = 0.0;
    for (int i = 0; i < d; ++i) dot += Bf(q[i]) * Bf(p.k[off + i]);
    s[t] = dot * scale;
    m = std::max(m, s[t]);
  }
  double l = 0.0;
  for (double& x : s) l += (x = std::exp(x - m));
  for (int i = 0; i < d; ++i) out[i] = 0.0;
  for (int t = 0; t <= pos; ++t) {
    const int64_t off = p.RowOffset(seq, t, kvh);
    for (int i = 0; i < d; ++i) out[i] += s[t] / l * Bf(p.v[off + i]);
  }
}

// The CPU kernel on the same values: caches and q as float.
std::vector<float> CpuAttention(const Paged& p, const std::vector<uint16_t>& q,
                                const std::vector<int32_t>& query_start, int heads, float scale) {
  const std::vector<float> kf = Bf16ToFloat(p.k), vf = Bf16ToFloat(p.v), qf = Bf16ToFloat(q);
  std::vector<float> out(q.size());
  cpu::PagedAttentionArgs a;
  a.q = qf.data();
  a.k_cache = kf.data();
  a.v_cache = vf.data();
  a.num_seqs = static_cast<int>(p.seq_lens.size());
  a.num_heads = heads;
  a.num_kv_heads = p.kv_heads;
  a.head_dim = p.head_dim;
  a.block_size = p.block_size;
  a.scale = scale;
  a.query_start = query_start.data();
  a.seq_lens = p.seq_lens.data();
  a.block_table_indptr = p.indptr.data();
  a.block_table = p.indices.data();
  a.out = out.data();
  cpu::PagedAttention(a, nullptr);
  return out;
}

// Device copies of a Paged pool.
struct DevicePaged {
  explicit DevicePaged(const Paged& p)
      : k(p.k), v(p.v), indptr(p.indptr), indices(p.indices), lens(p.seq_lens) {}
  PagedKv View(const Paged& p) const {
    PagedKv kv;
    kv.k_cache = k.bf();
    kv.v_cache = v.bf();
    kv.block_size = p.block_size;
    kv.num_kv_heads = p.kv_heads;
    kv.head_dim = p.head_dim;
    kv.kv_indptr = indptr.get();
    kv.kv_indices = indices.get();
    kv.seq_lens = lens.get();
    return kv;
  }
  DeviceArray<uint16_t> k, v;
  DeviceArray<int32_t> indptr, indices, lens;
};

struct AttnCase {
  int heads, kv_heads, head_dim;
  std::vector<int> lens;    // decode: context lengths; prefill: prefix lengths
  std::vector<int> chunks;  // prefill only: new tokens per sequence
  int block_size = 16;      // tokens per page
};

std::string CaseName(const ::testing::TestParamInfo<AttnCase>& i) {
  const AttnCase& c = i.param;
  return absl::StrCat("h", c.heads, "_kv", c.kv_heads, "_d", c.head_dim, "_page", c.block_size, "_",
                      i.index);
}
void PrintTo(const AttnCase& c, std::ostream* os) {
  *os << absl::StrCat("heads ", c.heads, " kv ", c.kv_heads, " d ", c.head_dim, " lens ",
                      absl::StrJoin(c.lens, ","), " chunks ", absl::StrJoin(c.chunks, ","),
                      " page ", c.block_size);
}

int NumSms() {
  int dev = 0, sms = 0;
  cudaGetDevice(&dev);
  cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
  return sms;
}

class DecodeAttentionTest : public GpuTest, public ::testing::WithParamInterface<AttnCase> {};

TEST_P(DecodeAttentionTest, MatchesFloat64AndCpuForEveryPartitioning) {
  const AttnCase& c = GetParam();
  const int n = static_cast<int>(c.lens.size()), d = c.head_dim;
  const uint32_t seed = c.heads * 31 + c.kv_heads * 7 + d + c.lens.back();
  const Paged p = MakePaged(c.lens, c.kv_heads, d, c.block_size, seed);
  const std::vector<uint16_t> q = RandomBf16(int64_t{n} * c.heads * d, seed + 3, -3.0f, 3.0f);
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  const int group = c.heads / c.kv_heads;
  std::vector<double> ref(q.size());
  for (int s = 0; s < n; ++s) {
    for (int h = 0; h < c.heads; ++h) {
      const int64_t off = (int64_t{s} * c.heads + h) * d;
      RefAttend(p, s, c.lens[s] - 1, h / group, &q[off], scale, &ref[off]);  // len 0: zeros
    }
  }
  std::vector<int32_t> query_start(n + 1);
  std::iota(query_start.begin(), query_start.end(), 0);
  // The CPU kernel is compared only where every sequence has a context.
  const bool cpu_comparable = std::find(c.lens.begin(), c.lens.end(), 0) == c.lens.end();
  const std::vector<float> cpu_out =
      cpu_comparable ? CpuAttention(p, q, query_start, c.heads, scale) : std::vector<float>{};

  DevicePaged dp(p);
  DeviceArray<uint16_t> dq(q), out(q.size());
  const int max_len = *std::max_element(c.lens.begin(), c.lens.end());
  // One partition, the device's own choice, many small ones; the last with a bound past every
  // length, so whole partitions are empty.
  const int sms_choices[] = {1, NumSms(), 100000};
  for (int sms : sms_choices) {
    for (int bound : {max_len, max_len + 700}) {
      const DecodeAttentionPlan plan = PlanDecodeAttention(n, c.heads, c.kv_heads, d, bound, sms);
      DeviceArray<uint8_t> ws(std::max<size_t>(plan.workspace_bytes, 16));
      KV_ASSERT_OK(ws.Poison());
      KV_ASSERT_OK(out.Poison());
      DecodeAttentionArgs a;
      a.q = dq.bf();
      a.out = out.bf();
      a.num_seqs = n;
      a.num_heads = c.heads;
      a.scale = scale;
      a.kv = dp.View(p);
      a.plan = plan;
      a.workspace = ws.get();
      KV_ASSERT_OK(DecodeAttention(a, nullptr));
      KV_ASSERT_CUDA(cudaDeviceSynchronize());
      const std::vector<uint16_t> got = out.Download();
      SCOPED_TRACE(::testing::Message() << "partition " << plan.partition_tokens << " x "
                                        << plan.num_partitions << ", bound " << bound);
      EXPECT_LT(RelError(got, ref), kBf16Tol) << "vs float64";
      if (cpu_comparable) {
        EXPECT_LT(RelError(got, ToDouble(cpu_out)), kBf16Tol) << "vs CPU";
      }
      for (int s = 0; s < n; ++s) {
        if (c.lens[s] != 0) continue;
        for (int64_t e = int64_t{s} * c.heads * d; e < int64_t{s + 1} * c.heads * d; ++e) {
          ASSERT_EQ(cpu::Bf16ToFp32(got[e]), 0.0f) << "zero-length sequence " << s;
        }
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, DecodeAttentionTest,
    ::testing::Values(AttnCase{8, 8, 128, {1, 17, 300}, {}},                 // GQA 1
                      AttnCase{32, 8, 128, {5, 1000, 4099, 33}, {}},         // GQA 4, llama-3-8B
                      AttnCase{32, 4, 64, {8191, 16, 700}, {}},              // GQA 8, head_dim 64
                      AttnCase{40, 4, 128, {257, 2048}, {}},                 // GQA 10: two chunks
                      AttnCase{14, 2, 64, {1, 2, 3, 4, 5, 6, 7, 8, 9}, {}},  // GQA 7
                      AttnCase{32, 8, 128, {1, 2, 300, 1025}, {}, 1},        // 1-token pages
                      AttnCase{32, 4, 64, {6, 7, 8, 500}, {}, 7},            // 7-token pages
                      AttnCase{8, 2, 128, {0, 40, 0}, {}},                   // zero lengths
                      AttnCase{16, 4, 64, {0, 1, 0}, {}, 7}),                // 1 of 3 non-empty
    CaseName);

class PrefillAttentionTest : public GpuTest, public ::testing::WithParamInterface<AttnCase> {};

TEST_P(PrefillAttentionTest, CausalOverPrefixAndChunkMatchesFloat64AndCpu) {
  const AttnCase& c = GetParam();
  const int n = static_cast<int>(c.lens.size()), d = c.head_dim;
  std::vector<int> lens(n);
  std::vector<int32_t> query_start(n + 1, 0);
  int max_q = 0;
  for (int s = 0; s < n; ++s) {
    lens[s] = c.lens[s] + c.chunks[s];
    query_start[s + 1] = query_start[s] + c.chunks[s];
    max_q = std::max(max_q, c.chunks[s]);
  }
  const int tokens = query_start[n];
  const uint32_t seed = c.heads * 37 + c.kv_heads * 5 + d + tokens;
  const Paged p = MakePaged(lens, c.kv_heads, d, c.block_size, seed);
  const std::vector<uint16_t> q = RandomBf16(int64_t{tokens} * c.heads * d, seed + 3, -3.0f, 3.0f);
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  const int group = c.heads / c.kv_heads;
  std::vector<double> ref(q.size());
  for (int s = 0; s < n; ++s) {
    for (int i = 0; i < c.chunks[s]; ++i) {
      const int t = query_start[s] + i;
      for (int h = 0; h < c.heads; ++h) {
        const int64_t off = (int64_t{t} * c.heads + h) * d;
        RefAttend(p, s, c.lens[s] + i, h / group, &q[off], scale, &ref[off]);
      }
    }
  }
  const std::vector<float> cpu_out = CpuAttention(p, q, query_start, c.heads, scale);

  DevicePaged dp(p);
  DeviceArray<uint16_t> dq(q), out(q.size());
  DeviceArray<int32_t> dqs(query_start);
  KV_ASSERT_OK(out.Poison());
  PrefillAttentionArgs a;
  a.q = dq.bf();
  a.out = out.bf();
  a.query_start = dqs.get();
  a.num_seqs = n;
  a.num_heads = c.heads;
  a.max_query_len = max_q;
  a.scale = scale;
  a.kv = dp.View(p);
  KV_ASSERT_OK(PrefillAttention(a, nullptr));
  KV_ASSERT_CUDA(cudaDeviceSynchronize());
  const std::vector<uint16_t> got = out.Download();
  EXPECT_LT(RelError(got, ref), kBf16Tol) << "vs float64";
  EXPECT_LT(RelError(got, ToDouble(cpu_out)), kBf16Tol) << "vs CPU";
}

// lens = cached prefix per sequence, chunks = new tokens (a decode is a chunk of 1).
INSTANTIATE_TEST_SUITE_P(Shapes, PrefillAttentionTest,
                         ::testing::Values(AttnCase{8, 8, 128, {0, 0, 100}, {1, 37, 64}},
                                           AttnCase{32, 8, 128, {513, 16, 0}, {200, 33, 130}},
                                           AttnCase{32, 4, 64, {0, 1000}, {257, 1}},
                                           AttnCase{16, 2, 64, {31, 7, 0, 2000}, {1, 95, 16, 45}},
                                           AttnCase{32, 8, 128, {0, 20}, {33, 5}, 1},
                                           AttnCase{16, 4, 64, {13, 0, 700}, {9, 50, 3}, 7}),
                         CaseName);

class AttentionArgsTest : public GpuTest {};

TEST_F(AttentionArgsTest, RejectsUnsupportedHeadDimAndGqa) {
  DecodeAttentionArgs a;
  a.num_seqs = 1;
  a.num_heads = 6;
  int dummy = 0;
  a.q = a.out = reinterpret_cast<bf16*>(&dummy);
  a.kv.k_cache = a.kv.v_cache = a.q;
  a.kv.kv_indptr = a.kv.kv_indices = a.kv.seq_lens = &dummy;
  a.kv.block_size = 16;
  a.kv.num_kv_heads = 4;  // 6 is not a multiple of 4
  a.kv.head_dim = 128;
  EXPECT_EQ(DecodeAttention(a, nullptr).code(), absl::StatusCode::kInvalidArgument);
  a.kv.num_kv_heads = 2;
  a.kv.head_dim = 96;
  EXPECT_EQ(DecodeAttention(a, nullptr).code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace kvasir::cuda::testing
