// RopeAndWriteKv: rotation of q and k (NeoX and interleaved, full and partial rotary, llama3-scaled
// frequencies, a YaRN attention factor) against float64 and the CPU RopeApply; K/V rows stored at
// slot_mapping and nowhere else.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kernels/cpu/ops.h"
#include "kernels/cuda/ops.h"
#include "kernels/cuda/rope_table.h"
#include "tests/kernels/cuda/gpu_test_util.h"

namespace kvasir::cuda::testing {
namespace {

// transformers' _compute_llama3_parameters over theta^(-2i/rot_dim).
std::vector<float> Llama3InvFreq(int rot_dim, double theta) {
  const double factor = 8, low = 1, high = 4, original = 8192;
  const double pi = 3.14159265358979323846;
  std::vector<float> f(rot_dim / 2);
  for (int i = 0; i < rot_dim / 2; ++i) {
    const double inv = std::pow(theta, -2.0 * i / rot_dim);
    const double wavelen = 2 * pi / inv;
    double v = inv;
    if (wavelen > original / low) {
      v = inv / factor;
    } else if (wavelen >= original / high) {
      const double smooth = (original / wavelen - low) / (high - low);
      v = (1 - smooth) * inv / factor + smooth * inv;
    }
    f[i] = static_cast<float>(v);
  }
  return f;
}

struct RopeCase {
  int heads, kv_heads, head_dim, rot_dim;
  RopeStyle style;
  float attention_factor;
};

std::string Name(const RopeCase& c) {
  return absl::StrCat("h", c.heads, "_kv", c.kv_heads, "_d", c.head_dim, "_rot", c.rot_dim,
                      c.style == RopeStyle::kNeox ? "_neox" : "_interleaved",
                      c.attention_factor != 1.0f ? "_mscale" : "");
}
void PrintTo(const RopeCase& c, std::ostream* os) { *os << Name(c); }

class RopeTest : public GpuTest, public ::testing::WithParamInterface<RopeCase> {};

TEST_P(RopeTest, RotatesInPlaceAndWritesPagedKv) {
  const RopeCase c = GetParam();
  const int tokens = 37, max_positions = 9000, num_slots = 16 * 50;
  const int64_t q_stride = int64_t{c.heads} * c.head_dim;
  const int64_t kv_stride = int64_t{c.kv_heads} * c.head_dim;
  const uint32_t seed = c.heads * 1000 + c.head_dim + c.rot_dim + static_cast<int>(c.style);
  const std::vector<uint16_t> q = RandomBf16(tokens * q_stride, seed);
  const std::vector<uint16_t> k = RandomBf16(tokens * kv_stride, seed + 1);
  const std::vector<uint16_t> v = RandomBf16(tokens * kv_stride, seed + 2);
  std::mt19937 rng(seed);
  std::vector<int32_t> positions(tokens);
  for (int32_t& p : positions) p = static_cast<int32_t>(rng() % max_positions);
  positions[3] = max_positions - 1;
  std::vector<int64_t> slots(num_slots);
  std::iota(slots.begin(), slots.end(), 0);
  std::shuffle(slots.begin(), slots.end(), rng);
  std::vector<int64_t> slot_mapping(slots.begin(), slots.begin() + tokens);
  slot_mapping[7] = -1;  // not written

  const std::vector<float> inv_freq = Llama3InvFreq(c.rot_dim, 500000.0);
  const std::vector<float> table = RopeCosSinTable(inv_freq, max_positions, c.attention_factor);

  // float64 reference, independent of the table under test: angle = position * inv_freq in
  // float64, cos/sin in float64, times the attention factor.
  const int half = c.rot_dim / 2;
  auto ref_cos_sin = [&](int32_t pos) {
    std::vector<double> cs(c.rot_dim);
    for (int i = 0; i < half; ++i) {
      const double angle = static_cast<double>(pos) * static_cast<double>(inv_freq[i]);
      cs[i] = std::cos(angle) * c.attention_factor;
      cs[half + i] = std::sin(angle) * c.attention_factor;
    }
    return cs;
  };
  // The table itself: float32 angles (as transformers forms them) differ from float64 by at most
  // half an ulp of position * inv_freq (<= 2^-11 rad below position 16384; 1.2x with the factor).
  double table_err = 0;
  for (int32_t pos : positions) {
    const std::vector<double> cs = ref_cos_sin(pos);
    for (int i = 0; i < c.rot_dim; ++i) {
      table_err = std::max(table_err, std::abs(table[int64_t{pos} * c.rot_dim + i] - cs[i]));
    }
  }
  EXPECT_LT(table_err, 1e-3) << "RopeCosSinTable vs float64 cos/sin";
  auto rotate = [&](const std::vector<uint16_t>& x, int64_t stride, int heads) {
    std::vector<double> out(x.size());
    for (int t = 0; t < tokens; ++t) {
      const std::vector<double> cs = ref_cos_sin(positions[t]);
      for (int h = 0; h < heads; ++h) {
        const int64_t base = t * stride + int64_t{h} * c.head_dim;
        for (int d = 0; d < c.head_dim; ++d) out[base + d] = Bf(x[base + d]);
        for (int i = 0; i < half; ++i) {
          const int i0 = c.style == RopeStyle::kNeox ? i : 2 * i;
          const int i1 = c.style == RopeStyle::kNeox ? i + half : 2 * i + 1;
          const double x0 = Bf(x[base + i0]), x1 = Bf(x[base + i1]);
          out[base + i0] = x0 * cs[i] - x1 * cs[half + i];
          out[base + i1] = x0 * cs[half + i] + x1 * cs[i];
        }
      }
    }
    return out;
  };
  const std::vector<double> q_ref = rotate(q, q_stride, c.heads);
  const std::vector<double> k_ref = rotate(k, kv_stride, c.kv_heads);

  // The CPU kernel on the same values and table (its table rows are per token).
  std::vector<float> cpu_table(int64_t{tokens} * c.rot_dim);
  for (int t = 0; t < tokens; ++t) {
    std::copy_n(table.data() + int64_t{positions[t]} * c.rot_dim, c.rot_dim,
                cpu_table.data() + int64_t{t} * c.rot_dim);
  }
  std::vector<float> cpu_q = Bf16ToFloat(q);
  cpu::RopeApply(
      cpu_q.data(), tokens, c.heads, c.head_dim, c.rot_dim, cpu_table.data(),
      c.style == RopeStyle::kNeox ? cpu::RopeStyle::kNeox : cpu::RopeStyle::kInterleaved);

  DeviceArray<uint16_t> dq(q), dk(k), dv(v);
  DeviceArray<int32_t> dpos(positions);
  DeviceArray<int64_t> dslots(slot_mapping);
  DeviceArray<float> dtable(table);
  DeviceArray<uint16_t> kc(num_slots * kv_stride), vc(num_slots * kv_stride);
  KV_ASSERT_OK(kc.Poison());
  KV_ASSERT_OK(vc.Poison());
  RopeKvArgs a;
  a.q = dq.bf();
  a.q_row_stride = q_stride;
  a.k = dk.bf();
  a.v = dv.bf();
  a.kv_row_stride = kv_stride;
  a.num_tokens = tokens;
  a.num_heads = c.heads;
  a.num_kv_heads = c.kv_heads;
  a.head_dim = c.head_dim;
  a.rot_dim = c.rot_dim;
  a.style = c.style;
  a.positions = dpos.get();
  a.cos_sin = dtable.get();
  a.max_positions = max_positions;
  a.slot_mapping = dslots.get();
  a.k_cache = kc.bf();
  a.v_cache = vc.bf();
  KV_ASSERT_OK(RopeAndWriteKv(a, nullptr));
  KV_ASSERT_CUDA(cudaDeviceSynchronize());

  const std::vector<uint16_t> q_got = dq.Download(), k_got = dk.Download();
  EXPECT_LT(RelError(q_got, q_ref), kBf16Tol) << "q vs float64";
  EXPECT_LT(RelError(q_got, ToDouble(cpu_q)), kBf16Tol) << "q vs CPU RopeApply";
  EXPECT_LT(RelError(k_got, k_ref), kBf16Tol) << "k vs float64";
  // Cache: each written slot holds exactly the rotated k and the original v; others untouched.
  const std::vector<uint16_t> kc_got = kc.Download(), vc_got = vc.Download();
  std::vector<bool> written(num_slots, false);
  for (int t = 0; t < tokens; ++t) {
    if (slot_mapping[t] < 0) continue;
    written[slot_mapping[t]] = true;
    for (int64_t e = 0; e < kv_stride; ++e) {
      ASSERT_EQ(kc_got[slot_mapping[t] * kv_stride + e], k_got[t * kv_stride + e]) << t;
      ASSERT_EQ(vc_got[slot_mapping[t] * kv_stride + e], v[t * kv_stride + e]) << t;
    }
  }
  for (int s = 0; s < num_slots; ++s) {
    if (written[s]) continue;
    for (int64_t e = 0; e < kv_stride; ++e) {
      ASSERT_TRUE(std::isnan(cpu::Bf16ToFp32(kc_got[s * kv_stride + e]))) << "slot " << s;
      ASSERT_TRUE(std::isnan(cpu::Bf16ToFp32(vc_got[s * kv_stride + e]))) << "v slot " << s;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Layouts, RopeTest,
    ::testing::Values(RopeCase{32, 8, 128, 128, RopeStyle::kNeox, 1.0f},
                      RopeCase{32, 8, 128, 128, RopeStyle::kInterleaved, 1.0f},
                      RopeCase{16, 16, 64, 64, RopeStyle::kNeox, 1.0f},
                      RopeCase{12, 4, 128, 64, RopeStyle::kNeox, 1.0f},  // partial rotary
                      RopeCase{8, 1, 64, 32, RopeStyle::kInterleaved, 1.0f},
                      RopeCase{32, 4, 128, 128, RopeStyle::kNeox, 1.2f}),  // YaRN mscale
    [](const ::testing::TestParamInfo<RopeCase>& i) { return Name(i.param); });

class RopeEdgeTest : public GpuTest {};

TEST_F(RopeEdgeTest, PositionOutsideTableGivesNaN) {
  const int heads = 2, head_dim = 64;
  const std::vector<uint16_t> q = RandomBf16(heads * head_dim, 5), k = RandomBf16(head_dim, 6);
  const std::vector<float> table = RopeCosSinTable(Llama3InvFreq(head_dim, 10000.0), 16, 1.0f);
  DeviceArray<uint16_t> dq(q), dk(k), dv(k);
  DeviceArray<int32_t> dpos(std::vector<int32_t>{16});
  DeviceArray<float> dtable(table);
  RopeKvArgs a;
  a.q = dq.bf();
  a.q_row_stride = heads * head_dim;
  a.k = dk.bf();
  a.v = dv.bf();
  a.kv_row_stride = head_dim;
  a.num_tokens = 1;
  a.num_heads = heads;
  a.num_kv_heads = 1;
  a.head_dim = a.rot_dim = head_dim;
  a.positions = dpos.get();
  a.cos_sin = dtable.get();
  a.max_positions = 16;
  KV_ASSERT_OK(RopeAndWriteKv(a, nullptr));
  KV_ASSERT_CUDA(cudaDeviceSynchronize());
  for (uint16_t h : dq.Download()) ASSERT_TRUE(std::isnan(cpu::Bf16ToFp32(h)));
  a.rot_dim = 3;
  EXPECT_EQ(RopeAndWriteKv(a, nullptr).code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace kvasir::cuda::testing
