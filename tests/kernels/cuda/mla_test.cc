// Multi-head latent attention on CUDA (kernels/cuda/mla.h) against the CPU kernels (kernels/cpu/
// mla.h, the engine's per-sequence choice of form) on the same bf16 values: decode batches mixing
// contexts of 1, 17, 1000 and 4097 tokens, prefill chunks over cached prefixes (and sequences with
// no queries), pages of 1, 7, 16 and 64 tokens scattered over the pool, DeepSeek-V3 dims (16, 20
// and 128 heads) and the tiny test models' dims, several partitionings (including a bound below
// the real context), zero-length decode sequences (zeros). Every run starts from NaN-poisoned
// outputs and workspace; the step's latents go in through MlaWriteCache (a fused [latent | k_rope]
// row, padding tokens with slot -1), and the whole cache is compared afterwards, so a slot
// outside slot_mapping that changed fails the test.
#include "kernels/cpu/mla.h"

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
#include "kernels/cuda/mla.h"
#include "tests/kernels/cuda/gpu_test_util.h"

namespace kvasir::cuda::testing {
namespace {

constexpr MlaShape kV3{16, 128, 64, 128, 512};   // DeepSeek-V3 at tensor parallelism 8
constexpr MlaShape kTiny{4, 16, 8, 16, 32};      // tests/fixtures/models/deepseek_v*_tiny
constexpr MlaShape kTinyOdd{3, 32, 16, 24, 64};  // odd head count, v_dim != nope_dim
constexpr MlaShape kTinyMin{2, 16, 8, 16, 16};   // the smallest supported rank

struct MlaCase {
  MlaShape shape;
  std::vector<int> prefix;  // decode: context lengths (0: an empty sequence); prefill: cached
  std::vector<int> chunks;  // empty: decode; else the new tokens of each sequence
  int block_size = 16;
};

std::string CaseName(const ::testing::TestParamInfo<MlaCase>& i) {
  const MlaShape& s = i.param.shape;
  return absl::StrCat("h", s.num_heads, "_r", s.kv_lora_rank, "_n", s.nope_dim, "_page",
                      i.param.block_size, "_", i.index);
}
void PrintTo(const MlaCase& c, std::ostream* os) {
  const MlaShape& s = c.shape;
  *os << absl::StrCat("heads ", s.num_heads, " nope ", s.nope_dim, " rope ", s.rope_dim, " v ",
                      s.v_dim, " rank ", s.kv_lora_rank, " prefix ", absl::StrJoin(c.prefix, ","),
                      " chunks ", absl::StrJoin(c.chunks, ","), " page ", c.block_size);
}

int NumSms() {
  int dev = 0, sms = 0;
  cudaGetDevice(&dev);
  cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
  return sms;
}

// One step of one layer: the pool before the step, the step's new latents and where they go, the
// pool after it, queries and kv_b. All values are random bf16.
struct Step {
  MlaShape shape;
  int width = 0, block_size = 0, num_seqs = 0, num_tokens = 0;  // num_tokens: query rows
  bool decode = false;
  std::vector<int32_t> seq_lens, indptr, indices, query_start;
  std::vector<uint16_t> cache_before, cache_after;  // [slots, width]
  std::vector<uint16_t> kv_a;                       // [num_writes, width]: latent | k_rope
  std::vector<int64_t> slots;                       // [num_writes]; -1 for padding tokens
  std::vector<uint16_t> q, kv_b;

  int64_t Slot(int seq, int pos) const {
    return int64_t{indices[indptr[seq] + pos / block_size]} * block_size + pos % block_size;
  }
};

Step MakeStep(const MlaCase& c, uint32_t seed) {
  Step st;
  const MlaShape& s = c.shape;
  st.shape = s;
  st.width = s.kv_lora_rank + s.rope_dim;
  st.block_size = c.block_size;
  st.decode = c.chunks.empty();
  st.num_seqs = static_cast<int>(c.prefix.size());
  st.indptr.push_back(0);
  st.query_start.push_back(0);
  for (int i = 0; i < st.num_seqs; ++i) {
    const int len = st.decode ? c.prefix[i] : c.prefix[i] + c.chunks[i];
    st.seq_lens.push_back(len);
    st.indptr.push_back(st.indptr.back() + (len + c.block_size - 1) / c.block_size);
    st.query_start.push_back(st.query_start.back() + (st.decode ? 1 : c.chunks[i]));
  }
  st.num_tokens = st.query_start.back();
  const int num_blocks = st.indptr.back() + 3;  // spare pages nobody owns
  std::vector<int32_t> ids(num_blocks);
  std::iota(ids.begin(), ids.end(), 0);
  std::mt19937 rng(seed);
  std::shuffle(ids.begin(), ids.end(), rng);
  st.indices.assign(ids.begin(), ids.begin() + st.indptr.back());
  const int64_t slots = int64_t{num_blocks} * c.block_size;
  st.cache_before = RandomBf16(slots * st.width, seed + 1);
  // This step's tokens: decode writes each sequence's last position (none for an empty one);
  // prefill its chunk. Two padding tokens with slot -1 follow.
  for (int i = 0; i < st.num_seqs; ++i) {
    const int len = st.seq_lens[i];
    const int first = st.decode ? len - 1 : c.prefix[i];
    if (st.decode && len == 0) {
      st.slots.push_back(-1);
      continue;
    }
    for (int p = first; p < len; ++p) st.slots.push_back(st.Slot(i, p));
  }
  st.slots.push_back(-1);
  st.slots.push_back(-1);
  st.kv_a = RandomBf16(st.slots.size() * st.width, seed + 2);
  st.cache_after = st.cache_before;
  for (size_t t = 0; t < st.slots.size(); ++t) {
    if (st.slots[t] < 0) continue;
    std::copy_n(st.kv_a.begin() + t * st.width, st.width,
                st.cache_after.begin() + st.slots[t] * st.width);
  }
  st.q = RandomBf16(int64_t{st.num_tokens} * s.num_heads * (s.nope_dim + s.rope_dim), seed + 3);
  st.kv_b = RandomBf16(int64_t{s.num_heads} * (s.nope_dim + s.v_dim) * s.kv_lora_rank, seed + 4,
                       -0.2f, 0.2f);
  return st;
}

float Scale(const MlaShape& s) { return 1.0f / std::sqrt(float(s.nope_dim + s.rope_dim)); }

// The CPU kernel on the same values (the engine's choice of form per sequence). Decode rows of
// empty sequences are left at zero (the CPU kernel needs q_len <= seq_len).
std::vector<double> CpuReference(const Step& st) {
  const MlaShape& s = st.shape;
  const std::vector<float> cache = Bf16ToFloat(st.cache_after), q = Bf16ToFloat(st.q),
                           kv_b = Bf16ToFloat(st.kv_b);
  const int64_t q_width = int64_t{s.num_heads} * (s.nope_dim + s.rope_dim);
  const int64_t out_width = int64_t{s.num_heads} * s.v_dim;
  std::vector<float> out(st.num_tokens * out_width, 0.0f);
  cpu::MlaAttentionArgs a;
  a.cache = cache.data();
  a.kv_b = kv_b.data();
  a.kv_b_dtype = DType::kF32;
  a.num_heads = s.num_heads;
  a.nope_dim = s.nope_dim;
  a.rope_dim = s.rope_dim;
  a.v_dim = s.v_dim;
  a.kv_lora_rank = s.kv_lora_rank;
  a.block_size = st.block_size;
  a.scale = Scale(s);
  cpu::MlaScratch scratch;
  if (!st.decode) {
    a.q = q.data();
    a.num_seqs = st.num_seqs;
    a.query_start = st.query_start.data();
    a.seq_lens = st.seq_lens.data();
    a.block_table_indptr = st.indptr.data();
    a.block_table = st.indices.data();
    a.out = out.data();
    cpu::MlaAttention(a, cpu::MlaForm::kByQueryCount, &scratch, nullptr);
    return ToDouble(out);
  }
  // Decode: one call per non-empty sequence.
  for (int i = 0; i < st.num_seqs; ++i) {
    if (st.seq_lens[i] == 0) continue;
    const int32_t query_start[2] = {0, 1}, indptr[2] = {0, st.indptr[i + 1] - st.indptr[i]};
    a.q = q.data() + i * q_width;
    a.num_seqs = 1;
    a.query_start = query_start;
    a.seq_lens = &st.seq_lens[i];
    a.block_table_indptr = indptr;
    a.block_table = st.indices.data() + st.indptr[i];
    a.out = out.data() + i * out_width;
    cpu::MlaAttention(a, cpu::MlaForm::kByQueryCount, &scratch, nullptr);
  }
  return ToDouble(out);
}

// Device copies of a Step; the cache starts as cache_before.
struct DeviceStep {
  explicit DeviceStep(const Step& st)
      : cache(st.cache_before),
        kv_a(st.kv_a),
        slots(st.slots),
        q(st.q),
        kv_b(st.kv_b),
        lens(st.seq_lens),
        indptr(st.indptr),
        indices(st.indices),
        query_start(st.query_start),
        out(int64_t{st.num_tokens} * st.shape.num_heads * st.shape.v_dim) {}

  MlaWriteCacheArgs Write(const Step& st) const {
    MlaWriteCacheArgs w;
    w.latent = kv_a.bf();
    w.latent_row_stride = st.width;
    w.k_rope = kv_a.bf() + st.shape.kv_lora_rank;
    w.k_rope_row_stride = st.width;
    w.num_tokens = static_cast<int32_t>(st.slots.size());
    w.kv_lora_rank = st.shape.kv_lora_rank;
    w.rope_dim = st.shape.rope_dim;
    w.slot_mapping = slots.get();
    w.cache = cache.bf();
    return w;
  }

  MlaAttentionArgs Attention(const Step& st, const MlaPlan& plan, void* workspace) const {
    MlaAttentionArgs a;
    a.q = q.bf();
    a.kv_b = kv_b.bf();
    a.out = out.bf();
    a.shape = st.shape;
    a.scale = Scale(st.shape);
    a.num_seqs = st.num_seqs;
    a.num_tokens = st.num_tokens;
    a.query_start = st.decode ? nullptr : query_start.get();
    a.cache = cache.bf();
    a.block_size = st.block_size;
    a.kv_indptr = indptr.get();
    a.kv_indices = indices.get();
    a.seq_lens = lens.get();
    a.plan = plan;
    a.workspace = workspace;
    return a;
  }

  DeviceArray<uint16_t> cache, kv_a;
  DeviceArray<int64_t> slots;
  DeviceArray<uint16_t> q, kv_b;
  DeviceArray<int32_t> lens, indptr, indices, query_start;
  DeviceArray<uint16_t> out;
};

class MlaTest : public GpuTest, public ::testing::WithParamInterface<MlaCase> {};

TEST_P(MlaTest, WritesOnlyMappedSlotsAndMatchesCpuForEveryPartitioning) {
  const MlaCase& c = GetParam();
  const MlaShape& s = c.shape;
  const uint32_t seed = s.num_heads * 131 + s.kv_lora_rank * 7 + c.block_size * 3 +
                        std::accumulate(c.prefix.begin(), c.prefix.end(), 0) +
                        std::accumulate(c.chunks.begin(), c.chunks.end(), 0) * 17;
  const Step st = MakeStep(c, seed);
  const std::vector<double> ref = CpuReference(st);

  DeviceStep d(st);
  KV_ASSERT_OK(MlaWriteCache(d.Write(st), nullptr));
  KV_ASSERT_CUDA(cudaDeviceSynchronize());
  const std::vector<uint16_t> cache = d.cache.Download();
  ASSERT_EQ(cache.size(), st.cache_after.size());
  for (size_t i = 0; i < cache.size(); ++i) {
    ASSERT_EQ(cache[i], st.cache_after[i])
        << "cache slot " << i / st.width << " element " << i % st.width;
  }

  const int max_len = std::max(1, *std::max_element(st.seq_lens.begin(), st.seq_lens.end()));
  struct Bounds {
    int sms, max_seq_len, extra_tokens;
  };
  // One partition, the device's own choice, many small ones; a bound past every length (empty
  // partitions), one below the longest context (its last partition runs long), a workspace laid
  // out for more query rows than the run has.
  const Bounds runs[] = {{1, max_len, 0},
                         {NumSms(), max_len, 0},
                         {100000, max_len, 3},
                         {100000, max_len + 700, 0},
                         {NumSms(), std::max(1, max_len / 3), 0}};
  for (const Bounds& b : runs) {
    const MlaPlan plan = PlanMla(s, st.num_tokens + b.extra_tokens, b.max_seq_len, b.sms);
    DeviceArray<uint8_t> ws(std::max<size_t>(plan.workspace_bytes, 256));
    KV_ASSERT_OK(ws.Poison());
    KV_ASSERT_OK(d.out.Poison());
    const MlaAttentionArgs a = d.Attention(st, plan, ws.get());
    KV_ASSERT_OK(st.decode ? MlaDecode(a, nullptr) : MlaAttention(a, nullptr));
    KV_ASSERT_CUDA(cudaDeviceSynchronize());
    const std::vector<uint16_t> got = d.out.Download();
    SCOPED_TRACE(::testing::Message() << "partition " << plan.partition_tokens << " x "
                                      << plan.num_partitions << ", bound " << b.max_seq_len);
    EXPECT_LT(RelError(got, ref), kBf16Tol) << "vs CPU";
    if (st.decode) {
      const int64_t row = int64_t{s.num_heads} * s.v_dim;
      for (int i = 0; i < st.num_seqs; ++i) {
        if (st.seq_lens[i] != 0) continue;
        for (int64_t e = i * row; e < (i + 1) * row; ++e) {
          ASSERT_EQ(cpu::Bf16ToFp32(got[e]), 0.0f) << "zero-length sequence " << i;
        }
      }
    }
  }
  // The attention reads the cache only.
  EXPECT_TRUE(d.cache.Download() == st.cache_after) << "MlaAttention changed the cache";
}

INSTANTIATE_TEST_SUITE_P(
    Decode, MlaTest,
    ::testing::Values(
        MlaCase{kV3, {1, 17, 1000, 4097}, {}, 16}, MlaCase{kV3, {1, 17, 1000, 4097}, {}, 64},
        MlaCase{{20, 128, 64, 128, 512}, {5, 300}, {}, 7},        // a partial head group
        MlaCase{{128, 128, 64, 128, 512}, {1, 40, 300}, {}, 64},  // V3, no TP
        MlaCase{kTiny, {1, 17, 1000, 4097}, {}, 1}, MlaCase{kTiny, {1, 17, 1000, 4097}, {}, 7},
        MlaCase{kTiny, {1, 17, 1000, 4097}, {}, 16}, MlaCase{kTiny, {1, 17, 1000, 4097}, {}, 64},
        MlaCase{kTinyOdd, {3, 64, 65, 129}, {}, 7}, MlaCase{kTinyMin, {2, 100}, {}, 16},
        MlaCase{kTiny, {0, 5, 0, 33}, {}, 7},  // zero lengths: zeros
        MlaCase{kV3, {0, 70}, {}, 16}),
    CaseName);

// prefix = cached tokens per sequence, chunks = new tokens (1: a decode row in a mixed batch;
// 0: a sequence with no queries this step).
INSTANTIATE_TEST_SUITE_P(Prefill, MlaTest,
                         ::testing::Values(MlaCase{kV3, {0, 100, 513}, {37, 1, 64}, 16},
                                           MlaCase{kV3, {0, 30, 7}, {0, 50, 3}, 64},
                                           MlaCase{kTiny, {0, 1000, 7, 0}, {33, 17, 1, 64}, 1},
                                           MlaCase{kTiny, {0, 1000, 7, 0}, {33, 17, 1, 64}, 7},
                                           MlaCase{kTiny, {0, 1000, 7, 0}, {33, 17, 1, 64}, 16},
                                           MlaCase{kTiny, {0, 1000, 7, 0}, {33, 17, 1, 64}, 64},
                                           MlaCase{kTinyOdd, {5, 0}, {40, 0}, 7},
                                           MlaCase{kTinyMin, {5}, {200}, 7}),
                         CaseName);

// Host-side checks: no device needed.
TEST(MlaPlanTest, PartitionsCoverTheBoundAndWorkspaceFitsTheLayout) {
  for (int max_len : {1, 31, 64, 1000, 4097, 131072}) {
    for (int tokens : {1, 64, 4096}) {
      for (int sms : {1, 132}) {
        const MlaPlan p = PlanMla(kV3, tokens, max_len, sms);
        EXPECT_EQ(p.partition_tokens % 32, 0);
        EXPECT_GE(p.partition_tokens, 64);
        EXPECT_GE(int64_t{p.partition_tokens} * p.num_partitions, max_len);
        EXPECT_LT(int64_t{p.partition_tokens} * (p.num_partitions - 1), max_len);
        EXPECT_EQ(p.max_tokens, tokens);
        const size_t rows = size_t{static_cast<size_t>(tokens)} * kV3.num_heads;
        size_t need = rows * (512 + 64) * 4 + rows * 512 * 4;
        if (p.num_partitions > 1) need += rows * p.num_partitions * (512 + 2) * 4;
        EXPECT_GE(p.workspace_bytes, need);
        EXPECT_LE(p.workspace_bytes, need + 4 * 256);
      }
    }
  }
  // One decode row of a 16-head model on 132 SMs splits a long context.
  EXPECT_GT(PlanMla(kV3, 1, 4096, 132).num_partitions, 1);
}

TEST(MlaArgsTest, RejectsUnsupportedShapesAndMisusedPlans) {
  int dummy[64] = {};
  void* ws = reinterpret_cast<void*>((reinterpret_cast<uintptr_t>(dummy) + 255) / 256 * 256);
  MlaAttentionArgs a;
  a.q = a.kv_b = a.cache = reinterpret_cast<const bf16*>(dummy);
  a.out = reinterpret_cast<bf16*>(dummy);
  a.kv_indptr = a.kv_indices = a.seq_lens = dummy;
  a.shape = kV3;
  a.num_seqs = a.num_tokens = 2;
  a.block_size = 16;
  a.plan = PlanMla(kV3, 2, 100, 1);
  a.workspace = ws;
  auto code = [&](const MlaAttentionArgs& x) { return MlaAttention(x, nullptr).code(); };
  MlaAttentionArgs b = a;
  b.shape.kv_lora_rank = 20;  // not a multiple of 8
  EXPECT_EQ(code(b), absl::StatusCode::kInvalidArgument);
  b = a;
  b.shape.rope_dim = 0;
  EXPECT_EQ(code(b), absl::StatusCode::kInvalidArgument);
  b = a;
  b.shape.kv_lora_rank = 1024;
  EXPECT_EQ(code(b), absl::StatusCode::kInvalidArgument);
  b = a;
  b.num_tokens = 3;  // decode needs one row per sequence
  EXPECT_EQ(code(b), absl::StatusCode::kInvalidArgument);
  b = a;
  b.query_start = dummy;
  b.num_tokens = 3;  // more rows than the plan was made for
  EXPECT_EQ(code(b), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(MlaDecode(b, nullptr).code(), absl::StatusCode::kInvalidArgument);
  b = a;
  b.shape.num_heads = 128;  // the plan's workspace was sized for 16 heads
  EXPECT_EQ(code(b), absl::StatusCode::kInvalidArgument);
  b = a;
  b.workspace = static_cast<char*>(ws) + 16;
  EXPECT_EQ(code(b), absl::StatusCode::kInvalidArgument);
  b = a;
  b.num_tokens = b.num_seqs = 0;  // nothing to do
  EXPECT_TRUE(MlaAttention(b, nullptr).ok());

  MlaWriteCacheArgs w;
  w.num_tokens = 1;
  w.kv_lora_rank = 512;
  w.rope_dim = 64;
  w.latent_row_stride = 500;  // shorter than the latent
  w.k_rope_row_stride = 64;
  EXPECT_EQ(MlaWriteCache(w, nullptr).code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace kvasir::cuda::testing
