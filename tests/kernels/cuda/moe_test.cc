// The CUDA MoE stages (kernels/cuda/moe.h) against the CPU kernels (kernels/cpu/moe.h) on the same
// bf16-rounded inputs: routing ids exactly (logits are drawn with clear gaps at every decision,
// and exact ties are built on purpose), weights to fp32 rounding, the permutation and tile
// schedule exactly, the grouped GEMM, combine and the whole layer (also replayed from a CUDA
// graph) to bf16 tolerance. Outputs and workspaces start NaN-poisoned. The argument checks and
// MoeMaxTiles run without a device.
#include "kernels/cuda/moe.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kernels/cpu/moe.h"
#include "tests/kernels/cuda/gpu_test_util.h"

namespace kvasir::cuda::testing {
namespace {

// Single (non-parameterised) GPU tests.
class MoeTest : public GpuTest {};

// ---------------------------------------------------------------------------------------------
// Routing configurations and inputs.

struct RouteCase {
  std::string name;
  MoeRouting routing;
  bool bias = false;
};

MoeRouting Mixtral() {
  MoeRouting r;
  r.num_experts = 8;
  r.top_k = 2;
  r.renormalize = true;
  return r;
}
MoeRouting Qwen3Moe() {
  MoeRouting r;
  r.num_experts = 128;
  r.top_k = 8;
  r.renormalize = true;
  return r;
}
MoeRouting DeepSeekV3() {
  MoeRouting r;
  r.num_experts = 256;
  r.top_k = 8;
  r.scoring = MoeScoring::kSigmoid;
  r.num_groups = 8;
  r.topk_groups = 4;
  r.group_score = MoeGroupScore::kTop2Sum;
  r.renormalize = true;
  r.scaling = 2.5f;
  return r;
}
MoeRouting DeepSeekV2() {  // group max, softmax, no renormalisation (shrunk from 160 experts)
  MoeRouting r;
  r.num_experts = 160;
  r.top_k = 6;
  r.num_groups = 8;
  r.topk_groups = 3;
  r.group_score = MoeGroupScore::kMax;
  r.scaling = 16.0f;
  return r;
}

std::vector<RouteCase> RouteCases() {
  return {{"Mixtral", Mixtral(), false},
          {"Qwen3Moe", Qwen3Moe(), false},
          {"DeepSeekV3", DeepSeekV3(), true},
          {"DeepSeekV2", DeepSeekV2(), false}};
}

// The smallest relative gap, in float64, between neighbours at the decisions routing makes for
// one token: the best topk_groups + 1 group scores and the best top_k + 1 eligible choices. Far
// above float rounding means the CPU and the GPU must pick the same experts in the same order.
double DecisionGap(const float* l, const MoeRouting& r, const float* bias) {
  const int n = r.num_experts;
  std::vector<double> s(n), c(n);
  if (r.scoring == MoeScoring::kSigmoid) {
    for (int e = 0; e < n; ++e) s[e] = 1.0 / (1.0 + std::exp(-double{l[e]}));
  } else {
    const double m = *std::max_element(l, l + n);
    double sum = 0.0;
    for (int e = 0; e < n; ++e) sum += s[e] = std::exp(l[e] - m);
    for (double& v : s) v /= sum;
  }
  for (int e = 0; e < n; ++e) c[e] = s[e] + (bias != nullptr ? bias[e] : 0.0);
  auto rel_gap = [](double a, double b) {
    return std::abs(a - b) / std::max({std::abs(a), std::abs(b), 1e-30});
  };
  double gap = INFINITY;
  if (r.num_groups > 1) {
    const int per = n / r.num_groups;
    std::vector<double> gs(r.num_groups);
    for (int g = 0; g < r.num_groups; ++g) {
      std::vector<double> v(c.begin() + g * per, c.begin() + (g + 1) * per);
      std::sort(v.rbegin(), v.rend());
      gs[g] = r.group_score == MoeGroupScore::kMax ? v[0] : v[0] + v[1];
    }
    std::vector<int> order(r.num_groups);
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(), [&](int a, int b) { return gs[a] > gs[b]; });
    for (int i = 0; i < std::min(r.topk_groups, r.num_groups - 1); ++i) {
      gap = std::min(gap, rel_gap(gs[order[i]], gs[order[i + 1]]));
    }
    for (int i = r.topk_groups; i < r.num_groups; ++i) {
      for (int e = 0; e < per; ++e) c[order[i] * per + e] = -INFINITY;
    }
  }
  std::vector<double> sorted = c;
  std::sort(sorted.rbegin(), sorted.rend());
  for (int j = 0; j < r.top_k && j + 1 < n && std::isfinite(sorted[j + 1]); ++j) {
    gap = std::min(gap, rel_gap(sorted[j], sorted[j + 1]));
  }
  return gap;
}

// Logits [tokens, E] (normal, sd 2), each token redrawn until its decisions are 1e-4 apart.
std::vector<float> GappedLogits(int tokens, const MoeRouting& r, const float* bias, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 2.0f);
  const int n = r.num_experts;
  std::vector<float> l(static_cast<size_t>(tokens) * n);
  for (int t = 0; t < tokens; ++t) {
    float* row = l.data() + static_cast<size_t>(t) * n;
    int tries = 0;
    do {
      for (int e = 0; e < n; ++e) row[e] = dist(rng);
    } while (DecisionGap(row, r, bias) < 1e-4 && ++tries < 1000);
    EXPECT_LT(tries, 1000) << "could not draw well-separated logits";
  }
  return l;
}

std::vector<float> SelectionBias(const RouteCase& c, uint32_t seed) {
  if (!c.bias) return {};
  return RandomFloats(c.routing.num_experts, seed, -0.1f, 0.1f);
}

const float* OrNull(const std::vector<float>& v) { return v.empty() ? nullptr : v.data(); }

// ---------------------------------------------------------------------------------------------
// MoeRoute.

struct RouteParam {
  RouteCase c;
  int tokens;
};

std::vector<RouteParam> RouteParams() {
  std::vector<RouteParam> p;
  for (const RouteCase& c : RouteCases()) {
    for (int t : {1, 3, 64, 257}) p.push_back({c, t});
  }
  return p;
}

std::string RouteName(const ::testing::TestParamInfo<RouteParam>& i) {
  return absl::StrCat(i.param.c.name, "_t", i.param.tokens);
}

class MoeRouteTest : public GpuTest, public ::testing::WithParamInterface<RouteParam> {};

// Runs cpu::MoeRoute and MoeRoute on the same logits; ids must agree exactly, weights to fp32
// rounding.
void ExpectRouteMatchesCpu(const std::vector<float>& logits, int tokens, const MoeRouting& r,
                           const std::vector<float>& bias) {
  const size_t nk = static_cast<size_t>(tokens) * r.top_k;
  std::vector<int32_t> cpu_ids(nk);
  std::vector<float> cpu_w(nk);
  cpu::MoeRoute(logits.data(), tokens, r, OrNull(bias), cpu_ids.data(), cpu_w.data(), nullptr);

  DeviceArray<float> dlogits(logits), dbias(bias), dw(nk);
  DeviceArray<int32_t> dids(nk);
  KV_ASSERT_OK(dw.Poison());
  KV_ASSERT_OK(dids.Poison());
  KV_ASSERT_OK(MoeRoute(dlogits.get(), tokens, r, bias.empty() ? nullptr : dbias.get(), dids.get(),
                        dw.get(), nullptr));
  KV_ASSERT_CUDA(cudaDeviceSynchronize());
  const std::vector<int32_t> ids = dids.Download();
  for (size_t i = 0; i < nk; ++i) {
    ASSERT_EQ(ids[i], cpu_ids[i]) << "token " << i / r.top_k << " choice " << i % r.top_k;
  }
  EXPECT_LT(RelError(dw.Download(), ToDouble(cpu_w)), kF32OutTol);
}

TEST_P(MoeRouteTest, MatchesCpuOnSeparatedLogits) {
  const RouteParam p = GetParam();
  const std::vector<float> bias = SelectionBias(p.c, 7);
  const std::vector<float> logits =
      GappedLogits(p.tokens, p.c.routing, OrNull(bias), 100 + p.tokens);
  ExpectRouteMatchesCpu(logits, p.tokens, p.c.routing, bias);
}

// Logits from four levels: many exact ties between experts (and between groups, whose top-2 sums
// or maxima of the same levels are bit-identical); every tie goes to the lower index, on both.
// Different levels are far apart, so only true ties are ties. The bias is one constant.
TEST_P(MoeRouteTest, ExactTiesGoToTheLowerIndex) {
  const RouteParam p = GetParam();
  const MoeRouting& r = p.c.routing;
  std::mt19937 rng(300 + p.tokens);
  std::uniform_int_distribution<int> level(0, 3);
  std::vector<float> logits(static_cast<size_t>(p.tokens) * r.num_experts);
  for (float& l : logits) l = 0.7f * level(rng);
  const std::vector<float> bias =
      p.c.bias ? std::vector<float>(r.num_experts, 0.125f) : std::vector<float>();
  ExpectRouteMatchesCpu(logits, p.tokens, r, bias);
}

TEST_P(MoeRouteTest, AllEqualLogitsPickTheFirstExperts) {
  const RouteParam p = GetParam();
  const MoeRouting& r = p.c.routing;
  const std::vector<float> logits(static_cast<size_t>(p.tokens) * r.num_experts, 0.5f);
  const std::vector<float> bias =
      p.c.bias ? std::vector<float>(r.num_experts, 0.0f) : std::vector<float>();
  ExpectRouteMatchesCpu(logits, p.tokens, r, bias);
  // Spelled out: experts 0..top_k-1 in order (they all lie in the first group here).
  std::vector<int32_t> ids(static_cast<size_t>(p.tokens) * r.top_k);
  std::vector<float> w(ids.size());
  cpu::MoeRoute(logits.data(), p.tokens, r, OrNull(bias), ids.data(), w.data(), nullptr);
  for (int j = 0; j < r.top_k; ++j) EXPECT_EQ(ids[j], j);
}

INSTANTIATE_TEST_SUITE_P(Models, MoeRouteTest, ::testing::ValuesIn(RouteParams()), RouteName);

// ---------------------------------------------------------------------------------------------
// MoeAlign.

// The schedule MoeAlign must write, from expert offsets.
void ExpectedTiles(const std::vector<int32_t>& off, int block_m, std::vector<int32_t>* expert,
                   std::vector<int32_t>* row) {
  expert->clear();
  row->clear();
  for (size_t e = 0; e + 1 < off.size(); ++e) {
    for (int32_t r = off[e]; r < off[e + 1]; r += block_m) {
      expert->push_back(static_cast<int32_t>(e));
      row->push_back(r);
    }
  }
}

struct AlignBuffers {
  DeviceArray<int32_t> offsets, source_token, row_of, tile_expert, tile_row, num_tiles;
  MoeAlignOut out;
  AlignBuffers(int64_t n, int32_t num_experts, int32_t block_m)
      : offsets(num_experts + 1),
        source_token(std::max<int64_t>(n, 1)),
        row_of(std::max<int64_t>(n, 1)),
        tile_expert(std::max<int64_t>(MoeMaxTiles(n, num_experts, block_m), 1)),
        tile_row(tile_expert.size()),
        num_tiles(1) {
    out.expert_offsets = offsets.get();
    out.source_token = source_token.get();
    out.row_of = row_of.get();
    out.tile_expert = tile_expert.get();
    out.tile_row = tile_row.get();
    out.num_tiles = num_tiles.get();
    out.max_tiles = static_cast<int32_t>(MoeMaxTiles(n, num_experts, block_m));
  }
  absl::Status Poison() {
    for (DeviceArray<int32_t>* a :
         {&offsets, &source_token, &row_of, &tile_expert, &tile_row, &num_tiles}) {
      if (absl::Status s = a->Poison(); !s.ok()) return s;
    }
    return absl::OkStatus();
  }
};

// Ids [tokens, top_k], distinct within a token. skewed: most tokens use the same few experts
// (big counts, most experts empty); otherwise uniform.
std::vector<int32_t> RandomIds(int tokens, int top_k, int num_experts, bool skewed, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int32_t> ids;
  std::vector<int32_t> perm(num_experts);
  for (int t = 0; t < tokens; ++t) {
    std::iota(perm.begin(), perm.end(), 0);
    const int pool = skewed ? std::min(num_experts, top_k + 2) : num_experts;
    std::shuffle(perm.begin(), perm.begin() + pool, rng);
    ids.insert(ids.end(), perm.begin(), perm.begin() + top_k);
  }
  return ids;
}

struct AlignParam {
  int num_experts, top_k, tokens, block_m;
  bool skewed;
};

std::string AlignName(const ::testing::TestParamInfo<AlignParam>& i) {
  const AlignParam& p = i.param;
  return absl::StrCat("e", p.num_experts, "_k", p.top_k, "_t", p.tokens, "_bm", p.block_m,
                      p.skewed ? "_skewed" : "");
}

std::vector<AlignParam> AlignParams() {
  std::vector<AlignParam> v;
  const int ek[][2] = {{8, 2}, {128, 8}, {256, 8}};
  for (const auto& x : ek) {
    for (int t : {1, 3, 64, 257}) {
      for (int bm : {kMoeBlockMSmall, kMoeBlockMLarge}) {
        for (bool skewed : {false, true}) v.push_back({x[0], x[1], t, bm, skewed});
      }
    }
  }
  return v;
}

class MoeAlignTest : public GpuTest, public ::testing::WithParamInterface<AlignParam> {};

TEST_P(MoeAlignTest, MatchesCpuPermuteAndWritesTheTileSchedule) {
  const AlignParam p = GetParam();
  const int64_t n = int64_t{p.tokens} * p.top_k;
  const std::vector<int32_t> ids =
      RandomIds(p.tokens, p.top_k, p.num_experts, p.skewed, 500 + p.tokens + p.num_experts);
  cpu::MoePermutation perm;
  cpu::MoePermute(ids.data(), p.tokens, p.top_k, p.num_experts, &perm);
  std::vector<int32_t> want_expert, want_row;
  ExpectedTiles(perm.expert_offsets, p.block_m, &want_expert, &want_row);
  ASSERT_LE(static_cast<int64_t>(want_expert.size()), MoeMaxTiles(n, p.num_experts, p.block_m));

  DeviceArray<int32_t> dids(ids);
  AlignBuffers b(n, p.num_experts, p.block_m);
  KV_ASSERT_OK(b.Poison());
  KV_ASSERT_OK(MoeAlign(dids.get(), p.tokens, p.top_k, p.num_experts, p.block_m, b.out, nullptr));
  KV_ASSERT_CUDA(cudaDeviceSynchronize());
  EXPECT_EQ(b.offsets.Download(), perm.expert_offsets);
  std::vector<int32_t> st = b.source_token.Download(), ro = b.row_of.Download();
  st.resize(n);
  ro.resize(n);
  EXPECT_EQ(st, perm.source_token);
  EXPECT_EQ(ro, perm.row_of);
  ASSERT_EQ(b.num_tiles.Download()[0], static_cast<int32_t>(want_expert.size()));
  std::vector<int32_t> te = b.tile_expert.Download(), tr = b.tile_row.Download();
  te.resize(want_expert.size());
  tr.resize(want_row.size());
  EXPECT_EQ(te, want_expert);
  EXPECT_EQ(tr, want_row);
}

INSTANTIATE_TEST_SUITE_P(Shapes, MoeAlignTest, ::testing::ValuesIn(AlignParams()), AlignName);

TEST(MoeAlignNoDeviceTest, MoeMaxTilesBoundsEveryDistribution) {
  std::mt19937 rng(9);
  for (int trial = 0; trial < 2000; ++trial) {
    const int num_experts = 1 + static_cast<int>(rng() % 256);
    const int n = static_cast<int>(rng() % 3000);
    const int bm = trial % 2 ? kMoeBlockMSmall : kMoeBlockMLarge;
    std::vector<int> count(num_experts, 0);
    // Spread n rows: sometimes all on one expert, sometimes one each, mostly random.
    for (int i = 0; i < n; ++i) {
      const int e = trial % 3 == 0   ? 0
                    : trial % 3 == 1 ? i % num_experts
                                     : static_cast<int>(rng() % num_experts);
      ++count[e];
    }
    int64_t tiles = 0;
    for (int c : count) tiles += (c + bm - 1) / bm;
    ASSERT_LE(tiles, MoeMaxTiles(n, num_experts, bm)) << n << " rows, " << num_experts;
  }
}

TEST_F(MoeTest, MoeAlignLeavesOutBadIdsLoudly) {
  const int tokens = 5, top_k = 2, num_experts = 4, bm = kMoeBlockMSmall;
  // Token 1 has an id past the experts, token 3 a negative one.
  const std::vector<int32_t> ids = {0, 1, 2, 4, 3, 1, -1, 0, 2, 3};
  DeviceArray<int32_t> dids(ids);
  AlignBuffers b(tokens * top_k, num_experts, bm);
  KV_ASSERT_OK(b.Poison());
  KV_ASSERT_OK(MoeAlign(dids.get(), tokens, top_k, num_experts, bm, b.out, nullptr));
  KV_ASSERT_CUDA(cudaDeviceSynchronize());
  // Valid ids per expert, tokens ascending: e0 {t0, t3}, e1 {t0, t2}, e2 {t1, t4}, e3 {t2, t4}.
  EXPECT_EQ(b.offsets.Download(), (std::vector<int32_t>{0, 2, 4, 6, 8}));
  EXPECT_EQ(b.source_token.Download(), (std::vector<int32_t>{0, 3, 0, 2, 1, 4, 2, 4, -1, -1}));
  EXPECT_EQ(b.row_of.Download(), (std::vector<int32_t>{0, 2, 4, -1, 6, 3, -1, 1, 5, 7}));
  EXPECT_EQ(b.num_tiles.Download()[0], 4);
}

// ---------------------------------------------------------------------------------------------
// MoeGatherRows and MoeCombine.

TEST_F(MoeTest, MoeGatherRowsCopiesRowsAndPoisonsUnusedOnes) {
  const int tokens = 7, hidden = 72, rows = 12;
  const std::vector<uint16_t> x = RandomBf16(tokens * hidden, 31);
  std::vector<int32_t> src(rows);
  for (int r = 0; r < rows; ++r) src[r] = (r * 5) % tokens;
  src[rows - 1] = -1;  // an unused row
  DeviceArray<uint16_t> dx(x), dxs(rows * hidden);
  DeviceArray<int32_t> dsrc(src);
  KV_ASSERT_OK(dxs.Poison());
  KV_ASSERT_OK(MoeGatherRows(dx.bf(), tokens, hidden, dsrc.get(), rows, dxs.bf(), nullptr));
  KV_ASSERT_CUDA(cudaDeviceSynchronize());
  const std::vector<uint16_t> got = dxs.Download();
  for (int r = 0; r < rows; ++r) {
    for (int d = 0; d < hidden; ++d) {
      if (src[r] < 0) {
        ASSERT_TRUE(std::isnan(Bf(got[r * hidden + d]))) << r;
      } else {
        ASSERT_EQ(got[r * hidden + d], x[src[r] * hidden + d]) << r << "," << d;
      }
    }
  }
}

TEST_F(MoeTest, MoeCombineMatchesCpuAndPoisonsBadRows) {
  for (const int tokens : {1, 3, 64, 257}) {
    const int top_k = 8, hidden = 264;
    const int n = tokens * top_k;
    const std::vector<uint16_t> ys = RandomBf16(static_cast<size_t>(n) * hidden, 41 + tokens);
    std::vector<int32_t> row_of(n);
    std::iota(row_of.begin(), row_of.end(), 0);
    std::shuffle(row_of.begin(), row_of.end(), std::mt19937(42 + tokens));
    const std::vector<float> w = RandomFloats(n, 43 + tokens, 0.0f, 1.0f);
    std::vector<float> cpu_out(static_cast<size_t>(tokens) * hidden);
    const std::vector<float> ysf = Bf16ToFloat(ys);
    cpu::MoeCombine(ysf.data(), hidden, row_of.data(), w.data(), tokens, top_k, cpu_out.data(),
                    nullptr);

    DeviceArray<uint16_t> dys(ys), dout(static_cast<size_t>(tokens) * hidden);
    DeviceArray<int32_t> drow(row_of);
    DeviceArray<float> dw(w);
    KV_ASSERT_OK(dout.Poison());
    KV_ASSERT_OK(
        MoeCombine(dys.bf(), hidden, drow.get(), dw.get(), tokens, top_k, dout.bf(), nullptr));
    KV_ASSERT_CUDA(cudaDeviceSynchronize());
    EXPECT_LT(RelError(dout.Download(), ToDouble(cpu_out)), kBf16Tol) << tokens << " tokens";
  }
  // A -1 row (an id MoeAlign left out) makes its token's row NaN, not silently smaller.
  const std::vector<uint16_t> ys = RandomBf16(2 * 8, 44);
  DeviceArray<uint16_t> dys(ys), dout(2 * 8);
  DeviceArray<int32_t> drow(std::vector<int32_t>{0, -1});
  DeviceArray<float> dw(std::vector<float>{0.5f, 0.5f});
  KV_ASSERT_OK(MoeCombine(dys.bf(), 8, drow.get(), dw.get(), 1, 2, dout.bf(), nullptr));
  KV_ASSERT_CUDA(cudaDeviceSynchronize());
  for (uint16_t v : dout.Download()) EXPECT_TRUE(std::isnan(Bf(v)));
}

// ---------------------------------------------------------------------------------------------
// MoeExperts: the grouped GEMM over MoeAlign's schedule against cpu::MoeExpertsSwiGlu.

enum class WeightForm { kStacked, kFusedGateUp, kPointers };

struct ExpertsParam {
  int64_t hidden, inter;
  int block_m;
  WeightForm form;
};

std::string ExpertsName(const ::testing::TestParamInfo<ExpertsParam>& i) {
  const ExpertsParam& p = i.param;
  const char* form = p.form == WeightForm::kStacked       ? "stacked"
                     : p.form == WeightForm::kFusedGateUp ? "fused"
                                                          : "pointers";
  return absl::StrCat("h", p.hidden, "_i", p.inter, "_bm", p.block_m, "_", form);
}

// Per-expert weights [E, ...] as bf16 bits (device layout) and float (the CPU's ExpertWeights).
struct Experts {
  int num_experts;
  int64_t hidden, inter;
  std::vector<uint16_t> gate_up;  // [E, 2 * inter, hidden]: gate rows, then up rows
  std::vector<uint16_t> down;     // [E, hidden, inter]
  std::vector<float> gate_up_f, down_f;

  Experts(int e, int64_t h, int64_t i, uint32_t seed)
      : num_experts(e),
        hidden(h),
        inter(i),
        gate_up(RandomBf16(e * 2 * i * h, seed, -0.1f, 0.1f)),
        down(RandomBf16(e * h * i, seed + 1, -0.1f, 0.1f)),
        gate_up_f(Bf16ToFloat(gate_up)),
        down_f(Bf16ToFloat(down)) {}

  std::vector<cpu::ExpertWeights> Cpu() const {
    std::vector<cpu::ExpertWeights> w(num_experts);
    for (int e = 0; e < num_experts; ++e) {
      w[e].gate = gate_up_f.data() + e * 2 * inter * hidden;
      w[e].up = gate_up_f.data() + (e * 2 + 1) * inter * hidden;
      w[e].down = down_f.data() + e * hidden * inter;
    }
    return w;
  }
};

// cpu::MoeExpertsSwiGlu on float copies of the bf16 rows xs.
std::vector<float> CpuExperts(const Experts& ex, const std::vector<uint16_t>& xs,
                              const std::vector<int32_t>& offsets) {
  const int64_t rows = offsets.back();
  const std::vector<float> xsf = Bf16ToFloat(xs);
  std::vector<float> g(rows * ex.inter), u(rows * ex.inter), ys(rows * ex.hidden);
  const std::vector<cpu::ExpertWeights> w = ex.Cpu();
  cpu::MoeExpertsArgs a;
  a.xs = xsf.data();
  a.expert_offsets = offsets.data();
  a.num_experts = ex.num_experts;
  a.hidden = ex.hidden;
  a.inter = ex.inter;
  a.experts = w.data();
  a.scratch_gate = g.data();
  a.scratch_up = u.data();
  a.ys = ys.data();
  cpu::MoeExpertsSwiGlu(a, nullptr);
  return ys;
}

// Device copies of an Experts set, viewed as MoeWeights of the chosen form.
struct DeviceExperts {
  DeviceArray<uint16_t> gate, up, gate_up, down;
  DeviceArray<const bf16*> gate_ptrs, up_ptrs, down_ptrs;
  MoeWeight g, u, d;

  // used[e] false: in the pointer form, expert e's pointers are null (the kernel must not read
  // the weights of an expert without rows).
  DeviceExperts(const Experts& ex, WeightForm form, const std::vector<bool>& used)
      : gate(Split(ex, 0)),
        up(Split(ex, 1)),
        gate_up(ex.gate_up),
        down(ex.down),
        gate_ptrs(Pointers(gate, ex.inter * ex.hidden, used)),
        up_ptrs(Pointers(up, ex.inter * ex.hidden, used)),
        down_ptrs(Pointers(down, ex.hidden * ex.inter, used)) {
    const int64_t ih = ex.inter * ex.hidden;
    switch (form) {
      case WeightForm::kStacked:
        g = {nullptr, gate.bf(), ih};
        u = {nullptr, up.bf(), ih};
        d = {nullptr, down.bf(), ih};
        break;
      case WeightForm::kFusedGateUp:
        g = {nullptr, gate_up.bf(), 2 * ih};
        u = {nullptr, gate_up.bf() + ih, 2 * ih};
        d = {nullptr, down.bf(), ih};
        break;
      case WeightForm::kPointers:
        g = {gate_ptrs.get(), nullptr, 0};
        u = {up_ptrs.get(), nullptr, 0};
        d = {down_ptrs.get(), nullptr, 0};
        break;
    }
  }
  // Gate (which 0) or up (1) rows of every expert, stacked [E, inter, hidden].
  static std::vector<uint16_t> Split(const Experts& ex, int which) {
    const int64_t ih = ex.inter * ex.hidden;
    std::vector<uint16_t> v(ex.num_experts * ih);
    for (int e = 0; e < ex.num_experts; ++e) {
      std::copy_n(ex.gate_up.begin() + (2 * e + which) * ih, ih, v.begin() + e * ih);
    }
    return v;
  }
  static std::vector<const bf16*> Pointers(const DeviceArray<uint16_t>& a, int64_t stride,
                                           const std::vector<bool>& used) {
    std::vector<const bf16*> p(used.size());
    for (size_t e = 0; e < used.size(); ++e) p[e] = used[e] ? a.bf() + e * stride : nullptr;
    return p;
  }
};

class MoeExpertsTest : public GpuTest, public ::testing::WithParamInterface<ExpertsParam> {};

TEST_P(MoeExpertsTest, MatchesCpuSwiGluPerExpert) {
  const ExpertsParam p = GetParam();
  const int num_experts = 8;
  // Rows per expert: empty experts, one row, tile edges of both block sizes, several tiles.
  const std::vector<int> counts = {0, 1, 17, 0, 64, 65, 3, 130};
  std::vector<int32_t> ids;  // top_k 1: "token" i picks expert ids[i]; shuffled
  for (int e = 0; e < num_experts; ++e) ids.insert(ids.end(), counts[e], e);
  std::shuffle(ids.begin(), ids.end(), std::mt19937(51));
  const int rows = static_cast<int>(ids.size());
  std::vector<int32_t> offsets(num_experts + 1, 0);
  for (int e = 0; e < num_experts; ++e) offsets[e + 1] = offsets[e] + counts[e];
  std::vector<bool> used(num_experts);
  for (int e = 0; e < num_experts; ++e) used[e] = counts[e] > 0;

  const Experts ex(num_experts, p.hidden, p.inter, 52 + static_cast<uint32_t>(p.hidden));
  const std::vector<uint16_t> xs = RandomBf16(rows * p.hidden, 53);
  const std::vector<float> want = CpuExperts(ex, xs, offsets);

  DeviceExperts dex(ex, p.form, used);
  DeviceArray<int32_t> dids(ids);
  AlignBuffers b(rows, num_experts, p.block_m);
  KV_ASSERT_OK(b.Poison());
  KV_ASSERT_OK(MoeAlign(dids.get(), rows, 1, num_experts, p.block_m, b.out, nullptr));
  DeviceArray<uint16_t> dxs(xs), dh(rows * p.inter), dys(rows * p.hidden);
  KV_ASSERT_OK(dh.Poison());
  KV_ASSERT_OK(dys.Poison());
  MoeExpertsArgs a;
  a.xs = dxs.bf();
  a.num_experts = num_experts;
  a.hidden = p.hidden;
  a.inter = p.inter;
  a.gate = dex.g;
  a.up = dex.u;
  a.down = dex.d;
  a.expert_offsets = b.offsets.get();
  a.tile_expert = b.tile_expert.get();
  a.tile_row = b.tile_row.get();
  a.num_tiles = b.num_tiles.get();
  a.max_tiles = b.out.max_tiles;
  a.block_m = p.block_m;
  a.h = dh.bf();
  a.ys = dys.bf();
  KV_ASSERT_OK(MoeExperts(a, nullptr));
  KV_ASSERT_CUDA(cudaDeviceSynchronize());
  EXPECT_EQ(b.offsets.Download(), offsets);
  const std::vector<uint16_t> got = dys.Download();
  EXPECT_LT(RelError(got, ToDouble(want)), kBf16Tol);
  // Per expert too, so that one wrong expert cannot hide in the total.
  for (int e = 0; e < num_experts; ++e) {
    if (counts[e] == 0) continue;
    const auto lo = offsets[e] * p.hidden, hi = offsets[e + 1] * p.hidden;
    const std::vector<uint16_t> ge(got.begin() + lo, got.begin() + hi);
    const std::vector<double> we(want.begin() + lo, want.begin() + hi);
    EXPECT_LT(RelError(ge, we), kBf16Tol) << "expert " << e;
  }
}

// 256 x 128: whole tiles; 200 x 88: K and N tails in both GEMMs (200 % 32, 88 % 64, 200 % 64);
// 1024 x 384: several K steps through the cp.async ring.
INSTANTIATE_TEST_SUITE_P(
    Shapes, MoeExpertsTest,
    ::testing::Values(ExpertsParam{256, 128, kMoeBlockMSmall, WeightForm::kStacked},
                      ExpertsParam{256, 128, kMoeBlockMLarge, WeightForm::kStacked},
                      ExpertsParam{200, 88, kMoeBlockMSmall, WeightForm::kFusedGateUp},
                      ExpertsParam{200, 88, kMoeBlockMLarge, WeightForm::kPointers},
                      ExpertsParam{200, 88, kMoeBlockMSmall, WeightForm::kPointers},
                      ExpertsParam{1024, 384, kMoeBlockMLarge, WeightForm::kFusedGateUp},
                      ExpertsParam{1024, 384, kMoeBlockMSmall, WeightForm::kStacked}),
    ExpertsName);

// ---------------------------------------------------------------------------------------------
// MoeForward: the whole layer against the CPU stages.

// The CPU layer on float copies of the same bf16 x and weights.
std::vector<float> CpuMoeLayer(const std::vector<uint16_t>& x, int tokens,
                               const std::vector<float>& logits, const MoeRouting& r,
                               const std::vector<float>& bias, const Experts& ex) {
  const int64_t n = int64_t{tokens} * r.top_k;
  std::vector<int32_t> ids(n);
  std::vector<float> w(n);
  cpu::MoeRoute(logits.data(), tokens, r, OrNull(bias), ids.data(), w.data(), nullptr);
  cpu::MoePermutation perm;
  cpu::MoePermute(ids.data(), tokens, r.top_k, r.num_experts, &perm);
  const std::vector<float> xf = Bf16ToFloat(x);
  std::vector<float> xs(n * ex.hidden);
  cpu::MoeGatherRows(xf.data(), ex.hidden, perm.source_token.data(), n, xs.data(), nullptr);
  std::vector<uint16_t> xs_bf(xs.size());
  for (size_t i = 0; i < xs.size(); ++i) xs_bf[i] = cpu::Fp32ToBf16(xs[i]);  // exact
  const std::vector<float> ys = CpuExperts(ex, xs_bf, perm.expert_offsets);
  std::vector<float> out(int64_t{tokens} * ex.hidden);
  cpu::MoeCombine(ys.data(), ex.hidden, perm.row_of.data(), w.data(), tokens, r.top_k, out.data(),
                  nullptr);
  return out;
}

class MoeForwardTest : public GpuTest, public ::testing::WithParamInterface<RouteParam> {};

TEST_P(MoeForwardTest, MatchesCpuLayer) {
  const RouteParam p = GetParam();
  const MoeRouting& r = p.c.routing;
  const int64_t hidden = 256, inter = 128;
  const std::vector<float> bias = SelectionBias(p.c, 61);
  const std::vector<float> logits = GappedLogits(p.tokens, r, OrNull(bias), 62 + p.tokens);
  const std::vector<uint16_t> x = RandomBf16(p.tokens * hidden, 63 + p.tokens);
  const Experts ex(r.num_experts, hidden, inter, 64);
  const std::vector<float> want = CpuMoeLayer(x, p.tokens, logits, r, bias, ex);

  DeviceExperts dex(ex, WeightForm::kFusedGateUp, std::vector<bool>(r.num_experts, true));
  DeviceArray<uint16_t> dx(x), dout(p.tokens * hidden);
  DeviceArray<float> dlogits(logits), dbias(bias);
  const size_t ws_bytes = MoeWorkspaceBytes(p.tokens, r.top_k, r.num_experts, hidden, inter);
  DeviceArray<uint8_t> ws(ws_bytes);
  KV_ASSERT_OK(ws.Poison());
  KV_ASSERT_OK(dout.Poison());
  MoeForwardArgs a;
  a.x = dx.bf();
  a.router_logits = dlogits.get();
  a.selection_bias = bias.empty() ? nullptr : dbias.get();
  a.num_tokens = p.tokens;
  a.hidden = hidden;
  a.inter = inter;
  a.routing = r;
  a.gate = dex.g;
  a.up = dex.u;
  a.down = dex.d;
  a.out = dout.bf();
  a.workspace = ws.get();
  a.workspace_bytes = ws_bytes;
  KV_ASSERT_OK(MoeForward(a, nullptr));
  KV_ASSERT_CUDA(cudaDeviceSynchronize());
  EXPECT_LT(RelError(dout.Download(), ToDouble(want)), kBf16Tol);

  // In place (out == x): x is gathered before out is written.
  a.out = dx.bf();
  KV_ASSERT_OK(MoeForward(a, nullptr));
  KV_ASSERT_CUDA(cudaDeviceSynchronize());
  EXPECT_LT(RelError(dx.Download(), ToDouble(want)), kBf16Tol) << "in place";
}

INSTANTIATE_TEST_SUITE_P(Models, MoeForwardTest, ::testing::ValuesIn(RouteParams()), RouteName);

// Captured once into a CUDA graph (nothing in MoeForward may sync, allocate or copy to the host)
// and replayed on new logits and x written into the same buffers.
TEST_F(MoeTest, MoeForwardReplaysFromACudaGraph) {
  const MoeRouting r = Qwen3Moe();
  const int tokens = 16;
  const int64_t hidden = 256, inter = 128;
  const Experts ex(r.num_experts, hidden, inter, 71);
  DeviceExperts dex(ex, WeightForm::kStacked, std::vector<bool>(r.num_experts, true));
  DeviceArray<uint16_t> dx(tokens * hidden), dout(tokens * hidden);
  DeviceArray<float> dlogits(tokens * r.num_experts);
  const size_t ws_bytes = MoeWorkspaceBytes(tokens, r.top_k, r.num_experts, hidden, inter);
  DeviceArray<uint8_t> ws(ws_bytes);
  KV_ASSERT_OK(ws.Poison());
  MoeForwardArgs a;
  a.x = dx.bf();
  a.router_logits = dlogits.get();
  a.num_tokens = tokens;
  a.hidden = hidden;
  a.inter = inter;
  a.routing = r;
  a.gate = dex.g;
  a.up = dex.u;
  a.down = dex.d;
  a.out = dout.bf();
  a.workspace = ws.get();
  a.workspace_bytes = ws_bytes;

  cudaStream_t stream;
  KV_ASSERT_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  cudaGraph_t graph;
  KV_ASSERT_CUDA(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
  const absl::Status captured = MoeForward(a, stream);
  KV_ASSERT_CUDA(cudaStreamEndCapture(stream, &graph));
  KV_ASSERT_OK(captured);
  cudaGraphExec_t exec;
  KV_ASSERT_CUDA(cudaGraphInstantiate(&exec, graph, 0));
  for (uint32_t round = 0; round < 2; ++round) {
    const std::vector<float> logits = GappedLogits(tokens, r, nullptr, 72 + round);
    const std::vector<uint16_t> x = RandomBf16(tokens * hidden, 73 + round);
    KV_ASSERT_CUDA(cudaMemcpy(dlogits.get(), logits.data(), logits.size() * sizeof(float),
                              cudaMemcpyHostToDevice));
    KV_ASSERT_CUDA(cudaMemcpy(dx.get(), x.data(), x.size() * 2, cudaMemcpyHostToDevice));
    KV_ASSERT_OK(dout.Poison());
    KV_ASSERT_CUDA(cudaDeviceSynchronize());  // the copies and the poison are on other streams
    KV_ASSERT_CUDA(cudaGraphLaunch(exec, stream));
    KV_ASSERT_CUDA(cudaStreamSynchronize(stream));
    const std::vector<float> want = CpuMoeLayer(x, tokens, logits, r, {}, ex);
    EXPECT_LT(RelError(dout.Download(), ToDouble(want)), kBf16Tol) << "replay " << round;
  }
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  cudaStreamDestroy(stream);
}

// ---------------------------------------------------------------------------------------------
// Argument checks: they fail before any CUDA call, so these run without a device.

void ExpectInvalid(const absl::Status& s, const std::string& field) {
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_NE(s.message().find(field), std::string::npos) << s << " should name " << field;
}

TEST(MoeArgsTest, LaunchersRejectBadArgumentsNamingTheField) {
  // Never dereferenced on the host; no kernel is launched for invalid arguments.
  auto* fake_f = reinterpret_cast<float*>(uintptr_t{1} << 20);
  auto* fake_i = reinterpret_cast<int32_t*>(uintptr_t{1} << 20);
  auto* fake_b = reinterpret_cast<bf16*>(uintptr_t{1} << 20);
  MoeRouting r = Qwen3Moe();
  r.top_k = 0;
  ExpectInvalid(MoeRoute(fake_f, 4, r, nullptr, fake_i, fake_f, nullptr), "top_k");
  r = DeepSeekV3();
  r.num_groups = 7;
  ExpectInvalid(MoeRoute(fake_f, 4, r, nullptr, fake_i, fake_f, nullptr), "num_groups");
  r = Qwen3Moe();
  r.num_experts = 512;
  r.top_k = 8;
  ExpectInvalid(MoeRoute(fake_f, 4, r, nullptr, fake_i, fake_f, nullptr), "num_experts");

  MoeAlignOut out;
  out.expert_offsets = out.source_token = out.row_of = fake_i;
  out.tile_expert = out.tile_row = out.num_tiles = fake_i;
  out.max_tiles = 1;  // far too few for 64 tokens
  ExpectInvalid(MoeAlign(fake_i, 64, 8, 128, kMoeBlockMSmall, out, nullptr), "max_tiles");
  out.max_tiles = 1 << 20;
  ExpectInvalid(MoeAlign(fake_i, 64, 8, 128, 32, out, nullptr), "block_m");

  ExpectInvalid(MoeGatherRows(fake_b, 4, 100, fake_i, 8, fake_b, nullptr), "hidden");

  MoeExpertsArgs e;
  e.xs = e.h = e.ys = fake_b;
  e.num_experts = 8;
  e.hidden = 256;
  e.inter = 100;
  e.expert_offsets = e.tile_expert = e.tile_row = e.num_tiles = fake_i;
  e.max_tiles = 4;
  e.gate = e.up = e.down = {nullptr, fake_b, 256 * 128};
  ExpectInvalid(MoeExperts(e, nullptr), "inter");
  e.inter = 128;
  e.up.expert_stride = 100;
  ExpectInvalid(MoeExperts(e, nullptr), "up.expert_stride");
  e.up.expert_stride = 256 * 128;
  e.down.base = nullptr;
  ExpectInvalid(MoeExperts(e, nullptr), "down");

  ExpectInvalid(MoeCombine(fake_b, 256, fake_i, fake_f, 4, 0, fake_b, nullptr), "top_k");

  MoeForwardArgs f;
  f.x = f.out = fake_b;
  f.router_logits = fake_f;
  f.num_tokens = 4;
  f.hidden = 256;
  f.inter = 128;
  f.routing = Qwen3Moe();
  f.gate = f.up = f.down = {nullptr, fake_b, 256 * 128};
  f.workspace = fake_i;
  f.workspace_bytes = MoeWorkspaceBytes(3, 8, 128, 256, 128);  // sized for 3 tokens
  ExpectInvalid(MoeForward(f, nullptr), "workspace_bytes");
}

TEST(MoeArgsTest, WorkspaceGrowsWithTokens) {
  size_t prev = MoeWorkspaceBytes(0, 8, 128, 2048, 768);
  for (int64_t t : {1, 3, 64, 257, 4096}) {
    const size_t b = MoeWorkspaceBytes(t, 8, 128, 2048, 768);
    EXPECT_GT(b, prev) << t;
    // At least ids, weights, three index arrays and xs, h, ys.
    EXPECT_GE(b, static_cast<size_t>(t * 8) * (4 * 4 + 2 * (2 * 2048 + 768)));
    prev = b;
  }
}

}  // namespace
}  // namespace kvasir::cuda::testing
