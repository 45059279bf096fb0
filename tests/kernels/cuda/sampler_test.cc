// Sample (kernels/cuda/sampler.h) against a host reference of the CPU Sampler's rule
// (engine/sampler.cc, rewritten here from its documented rule: the GPU test target does not link
// the engine). Tokens must be equal except where the draw (or the top-p cut) lies within 1e-6 of
// a boundary, where float rounding may legitimately decide differently; such rows are counted
// and must be rare. Every run poisons ids and checks that the logits come back bit for bit.
#include "kernels/cuda/sampler.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <set>
#include <utility>
#include <vector>

#include "tests/kernels/cuda/gpu_test_util.h"

namespace kvasir::cuda::testing {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

struct Row {
  float temperature = 0.0f;
  int32_t top_k = 0;
  float top_p = 1.0f, min_p = 0.0f;
  float repetition = 1.0f, presence = 0.0f, frequency = 0.0f;
  uint64_t seed = 0, step = 0;
  std::vector<std::pair<int32_t, float>> bias;
  std::vector<int32_t> prompt;                      // distinct
  std::vector<std::pair<int32_t, int32_t>> output;  // distinct ids, counts
  std::vector<int32_t> banned;
};

uint64_t SplitMix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

double Uniform(uint64_t seed, uint64_t step) {
  const uint64_t bits = SplitMix64(SplitMix64(seed) ^ SplitMix64(step + 0x632be59bd9b4e019ull));
  return static_cast<double>(bits >> 11) * 0x1.0p-53;
}

int32_t Argmax(const std::vector<float>& x) {
  int32_t best = 0;
  bool found = false;
  for (size_t i = 0; i < x.size(); ++i) {
    if (!std::isnan(x[i]) && (!found || x[i] > x[best]))
      best = static_cast<int32_t>(i), found = true;
  }
  return best;
}

// The processors, in float, in the CPU's order.
std::vector<float> Process(std::vector<float> x, const Row& r) {
  const int32_t vocab = static_cast<int32_t>(x.size());
  auto ok = [&](int32_t t) { return t >= 0 && t < vocab; };
  for (const auto& [t, b] : r.bias) {
    if (ok(t)) x[t] += b;
  }
  if (r.repetition != 1.0f) {
    std::set<int32_t> seen;
    for (int32_t t : r.prompt) seen.insert(t);
    for (const auto& [t, c] : r.output) seen.insert(t);
    for (int32_t t : seen) {
      if (ok(t)) x[t] = x[t] > 0.0f ? x[t] / r.repetition : x[t] * r.repetition;
    }
  }
  if (r.presence != 0.0f || r.frequency != 0.0f) {
    for (const auto& [t, c] : r.output) {
      const float pen = r.presence + r.frequency * static_cast<float>(c);
      if (ok(t)) x[t] -= pen;
    }
  }
  for (int32_t t : r.banned) {
    if (ok(t)) x[t] = -kInf;
  }
  return x;
}

struct RefResult {
  int32_t token = -1;
  double margin = 1.0;  // distance of the draw (or the top-p cut) to the nearest boundary / total
  std::vector<std::pair<int32_t, double>> dist;  // the filtered distribution (normalised)
};

// The CPU rule on processed logits x.
RefResult Reference(const std::vector<float>& x, const Row& r) {
  RefResult out;
  const float inv_t = r.temperature > 0.0f ? 1.0f / r.temperature : 0.0f;
  if (r.temperature <= 0.0f || r.top_k == 1 || !std::isfinite(inv_t)) {
    out.token = Argmax(x);
    out.dist = {{out.token, 1.0}};
    return out;
  }
  std::vector<std::pair<float, int32_t>> c;
  for (size_t i = 0; i < x.size(); ++i) {
    c.emplace_back(std::isnan(x[i]) ? -kInf : x[i], static_cast<int32_t>(i));
  }
  float m = -kInf;
  for (const auto& e : c) m = std::max(m, e.first);
  if (!std::isfinite(m)) {
    out.token = Argmax(x);
    out.dist = {{out.token, 1.0}};
    return out;
  }
  if (r.min_p > 0.0f) {
    const double cut = m + std::log(static_cast<double>(r.min_p)) * r.temperature;
    std::erase_if(c, [cut](const auto& e) { return e.first < cut; });
  }
  auto greater = [](const auto& a, const auto& b) {
    return a.first > b.first || (a.first == b.first && a.second < b.second);
  };
  if (r.top_k > 0 && r.top_k < static_cast<int64_t>(c.size())) {
    std::sort(c.begin(), c.end(), greater);
    c.resize(r.top_k);
    std::sort(c.begin(), c.end(), [](const auto& a, const auto& b) { return a.second < b.second; });
  }
  double total = 0;
  for (auto& e : c) {
    e.first = std::exp((e.first - m) * inv_t);
    total += e.first;
  }
  if (r.top_p < 1.0f) {
    std::sort(c.begin(), c.end(), greater);
    const double target = r.top_p * total;
    double mass = 0;
    size_t cut = 0;
    while (cut < c.size() && mass < target) mass += c[cut++].first;
    double pre = 0;  // the margin of the cut: masses of the prefixes around it
    for (size_t i = 0; i < c.size(); ++i) {
      pre += c[i].first;
      out.margin = std::min(out.margin, std::abs(pre - target) / total);
    }
    c.resize(cut);
    total = mass;
  }
  const double rr = Uniform(r.seed, r.step) * total;
  double acc = 0;
  for (const auto& e : c) {
    acc += e.first;
    out.margin = std::min(out.margin, std::abs(acc - rr) / total);
    if (out.token < 0 && rr < acc) out.token = e.second;
    out.dist.emplace_back(e.second, e.first / total);
  }
  if (out.token < 0) out.token = c.back().second;
  return out;
}

struct Result {
  std::vector<int32_t> ids;
  std::vector<float> chosen_logprob;
  bool restored = false;
};

// Runs Sample on logits [rows.size(), vocab]; workspace_slack < 0 makes the workspace too small.
Result RunSample(const std::vector<float>& logits, int32_t vocab, const std::vector<Row>& rows,
                 bool logprob = false, int64_t workspace_slack = 0) {
  const int32_t n = static_cast<int32_t>(rows.size());
  std::vector<float> t(n), tp(n), mp(n), rep(n), pres(n), freq(n), bias_v;
  std::vector<int32_t> k(n), bias_ptr{0}, bias_ids, prompt_ptr{0}, prompt_ids, out_ptr{0}, out_ids,
      out_counts, ban_ptr{0}, ban_ids;
  std::vector<uint64_t> seed(n), step(n);
  for (int32_t i = 0; i < n; ++i) {
    const Row& r = rows[i];
    t[i] = r.temperature, k[i] = r.top_k, tp[i] = r.top_p, mp[i] = r.min_p;
    rep[i] = r.repetition, pres[i] = r.presence, freq[i] = r.frequency;
    seed[i] = r.seed, step[i] = r.step;
    for (const auto& [id, b] : r.bias) bias_ids.push_back(id), bias_v.push_back(b);
    prompt_ids.insert(prompt_ids.end(), r.prompt.begin(), r.prompt.end());
    for (const auto& [id, c] : r.output) out_ids.push_back(id), out_counts.push_back(c);
    ban_ids.insert(ban_ids.end(), r.banned.begin(), r.banned.end());
    bias_ptr.push_back(static_cast<int32_t>(bias_ids.size()));
    prompt_ptr.push_back(static_cast<int32_t>(prompt_ids.size()));
    out_ptr.push_back(static_cast<int32_t>(out_ids.size()));
    ban_ptr.push_back(static_cast<int32_t>(ban_ids.size()));
  }
  // Empty id arrays still get one element, so that every pointer is non-null.
  for (auto* v : {&bias_ids, &prompt_ids, &out_ids, &out_counts, &ban_ids}) v->push_back(0);
  bias_v.push_back(0);
  const int64_t entries = bias_ptr.back() + prompt_ptr.back() + out_ptr.back() + ban_ptr.back();
  DeviceArray<float> dx(logits), dt(t), dtp(tp), dmp(mp), drep(rep), dpres(pres), dfreq(freq),
      dbias_v(bias_v), dlp(n), ws(std::max<int64_t>(1, entries));
  DeviceArray<int32_t> dk(k), dbp(bias_ptr), dbi(bias_ids), dpp(prompt_ptr), dpi(prompt_ids),
      dop(out_ptr), doi(out_ids), doc(out_counts), dnp(ban_ptr), dni(ban_ids), ids(n);
  DeviceArray<uint64_t> dseed(seed), dstep(step);
  Result res;
  EXPECT_TRUE(ids.Poison().ok());
  EXPECT_TRUE(dlp.Poison().ok());
  SampleArgs a;
  a.logits = dx.get();
  a.rows = n;
  a.vocab = vocab;
  a.params.temperature = dt.get();
  a.params.top_k = dk.get();
  a.params.top_p = dtp.get();
  a.params.min_p = dmp.get();
  a.params.seed = dseed.get();
  a.params.step = dstep.get();
  a.params.repetition_penalty = drep.get();
  a.params.presence_penalty = dpres.get();
  a.params.frequency_penalty = dfreq.get();
  a.bias = {dbp.get(), dbi.get()};
  a.bias_values = dbias_v.get();
  a.prompt = {dpp.get(), dpi.get()};
  a.output = {dop.get(), doi.get()};
  a.output_counts = doc.get();
  a.banned = {dnp.get(), dni.get()};
  a.ids = ids.get();
  a.chosen_logprob = logprob ? dlp.get() : nullptr;
  a.workspace = ws.get();
  a.workspace_bytes = SampleWorkspaceBytes(entries + workspace_slack);
  const absl::Status s = Sample(a, nullptr);
  EXPECT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  res.ids = ids.Download();
  res.chosen_logprob = dlp.Download();
  const std::vector<float> after = dx.Download();
  res.restored = after.size() == logits.size() &&
                 std::memcmp(after.data(), logits.data(), logits.size() * sizeof(float)) == 0;
  return res;
}

// Compares every row with the reference; rows within 1e-6 of a boundary are only counted.
void ExpectMatchesReference(const std::vector<float>& logits, int32_t vocab,
                            const std::vector<Row>& rows, int max_near_boundary = 1) {
  const Result got = RunSample(logits, vocab, rows);
  ASSERT_EQ(got.ids.size(), rows.size());
  EXPECT_TRUE(got.restored) << "the logits were not restored bit for bit";
  int near = 0;
  for (size_t i = 0; i < rows.size(); ++i) {
    const std::vector<float> row(logits.begin() + i * vocab, logits.begin() + (i + 1) * vocab);
    const RefResult ref = Reference(Process(row, rows[i]), rows[i]);
    if (ref.margin < 1e-6) {
      ++near;
      continue;
    }
    EXPECT_EQ(got.ids[i], ref.token)
        << "row " << i << " T " << rows[i].temperature << " k " << rows[i].top_k << " p "
        << rows[i].top_p << " min_p " << rows[i].min_p << " step " << rows[i].step;
  }
  EXPECT_LE(near, max_near_boundary);
}

std::vector<float> Logits(int32_t rows, int32_t vocab, uint32_t seed, float scale = 8.0f) {
  return RandomFloats(static_cast<size_t>(rows) * vocab, seed, -scale, scale);
}

// No device needed: the argument checks return before any launch.
TEST(SampleArgsTest, RejectsBadShapesAndMissingArrays) {
  SampleArgs a;
  a.rows = 1;
  a.vocab = 0;
  EXPECT_EQ(Sample(a, nullptr).code(), absl::StatusCode::kInvalidArgument);
  a.vocab = kSampleMaxVocab + 1;
  EXPECT_EQ(Sample(a, nullptr).code(), absl::StatusCode::kInvalidArgument);
  a.vocab = 10;
  float fake = 0;
  int32_t fake_id = 0;
  a.logits = &fake;
  a.ids = &fake_id;
  EXPECT_EQ(Sample(a, nullptr).code(), absl::StatusCode::kInvalidArgument);  // no temperature
  a.rows = 0;
  EXPECT_TRUE(Sample(a, nullptr).ok());
}

class SamplerTest : public GpuTest, public ::testing::WithParamInterface<int32_t> {};

TEST_P(SamplerTest, GreedyRowsAreTheArgmaxWithTiesNaNAndInfinities) {
  const int32_t vocab = GetParam();
  std::vector<float> x = Logits(8, vocab, 1);
  auto at = [&](int r, int i) -> float& { return x[static_cast<size_t>(r) * vocab + i % vocab]; };
  at(1, 3) = at(1, 1) = 100.0f;                                      // tie: id 1
  at(2, 0) = NAN, at(2, 2) = 200.0f, at(2, 1) = NAN;                 // NaN skipped
  std::fill_n(x.begin() + 3 * vocab, vocab, NAN);                    // all NaN: 0
  std::fill_n(x.begin() + 4 * vocab, vocab, -kInf), at(4, 0) = NAN;  // all -inf: first non-NaN
  at(5, 4) = kInf;                                                   // +inf wins
  std::vector<Row> rows(8);
  rows[6].temperature = 1.0f, rows[6].top_k = 1;  // top_k 1 is greedy
  rows[7].temperature = 1e-39f;                   // 1/T overflows: greedy
  rows[5].temperature = 0.8f;                     // +inf max: the CPU's argmax fallback
  ExpectMatchesReference(x, vocab, rows, 0);
  const Result got = RunSample(x, vocab, rows);
  EXPECT_EQ(got.ids[1], 1);
  EXPECT_EQ(got.ids[2], 2);
  EXPECT_EQ(got.ids[3], 0);
  EXPECT_EQ(got.ids[4], 1);
  EXPECT_EQ(got.ids[5], 4);
}

TEST_P(SamplerTest, MixedBatchMatchesTheCpuRule) {
  const int32_t vocab = GetParam();
  const int32_t n = 48;
  std::vector<float> x = Logits(n, vocab, 2);
  std::mt19937 rng(3);
  std::vector<Row> rows(n);
  const float temps[] = {0.0f, 0.3f, 0.7f, 1.0f, 1.5f};
  const int32_t ks[] = {0, 1, 2, 5, 50, vocab};
  const float ps[] = {1.0f, 0.95f, 0.5f, 0.1f};
  const float min_ps[] = {0.0f, 0.01f, 0.3f, 1.0f};
  for (int32_t i = 0; i < n; ++i) {
    Row& r = rows[i];
    r.temperature = temps[i % 5];
    r.top_k = ks[(i / 5) % 6];
    r.top_p = ps[(i / 2) % 4];
    r.min_p = min_ps[(i / 3) % 4];
    r.seed = 1000 + i, r.step = static_cast<uint64_t>(i) * 7;
    float* row = &x[static_cast<size_t>(i) * vocab];
    if (i % 4 == 1) row[rng() % vocab] = NAN, row[rng() % vocab] = -kInf;
    if (i % 6 == 2) row[rng() % vocab] = 0.0f, row[rng() % vocab] = -0.0f;
    if (i % 3 == 0) {  // processors
      const int32_t a = rng() % vocab, b = rng() % vocab;
      r.bias = {{a, 5.0f}, {b, -3.0f}, {a, 2.5f}, {vocab + 3, 1.0f}};  // a repeats; one outside
      r.prompt = {static_cast<int32_t>(rng() % vocab), b};
      r.output = {{a, 3}, {static_cast<int32_t>(rng() % vocab), 1}};
      if (r.output[1].first == a) r.output.pop_back();
      r.repetition = 1.3f, r.presence = 0.4f, r.frequency = 0.25f;
      r.banned = {static_cast<int32_t>(rng() % vocab), -1};
    }
  }
  ExpectMatchesReference(x, vocab, rows);
}

TEST_P(SamplerTest, PenaltiesBiasAndBansDecideTheToken) {
  const int32_t vocab = GetParam();
  if (vocab < 5) GTEST_SKIP() << "needs 5 distinct ids";
  std::vector<float> x(static_cast<size_t>(4) * vocab, 0.0f);
  for (int r = 0; r < 4; ++r) x[static_cast<size_t>(r) * vocab + 2] = 10.0f;
  std::vector<Row> rows(4);
  rows[0].banned = {2};                               // id 2 banned: ties at 0 -> id 0
  rows[1].bias = {{4, 20.0f}};                        // bias lifts id 4
  rows[2].prompt = {2}, rows[2].repetition = 100.0f;  // 10 / 100 < 0.5 bias on id 3
  rows[2].bias = {{3, 0.5f}};
  rows[3].output = {{2, 20}}, rows[3].frequency = 1.0f;  // 10 - 20 < 0 -> id 0
  ExpectMatchesReference(x, vocab, rows, 0);
  const Result got = RunSample(x, vocab, rows);
  EXPECT_EQ(got.ids, (std::vector<int32_t>{0, 4, 3, 0}));
  EXPECT_TRUE(got.restored);
}

TEST_P(SamplerTest, SeededRowsAreBatchInvariant) {
  const int32_t vocab = GetParam();
  const int32_t n = 40;
  std::vector<float> x = Logits(n, vocab, 4, 3.0f);
  std::vector<Row> rows(n);
  for (int32_t i = 0; i < n; ++i) {
    rows[i].temperature = 0.5f + 0.05f * (i % 10), rows[i].top_k = i % 3 == 0 ? 40 : 0;
    rows[i].top_p = i % 2 ? 0.8f : 1.0f, rows[i].seed = 77 + i, rows[i].step = i;
  }
  // Row 3 again at positions 17 and 39.
  for (int32_t dst : {17, 39}) {
    rows[dst] = rows[3];
    std::copy_n(x.begin() + 3 * vocab, vocab, x.begin() + static_cast<size_t>(dst) * vocab);
  }
  const Result got = RunSample(x, vocab, rows);
  EXPECT_EQ(got.ids[17], got.ids[3]);
  EXPECT_EQ(got.ids[39], got.ids[3]);
  const Result alone =
      RunSample(std::vector<float>(x.begin() + 3 * vocab, x.begin() + 4 * vocab), vocab, {rows[3]});
  EXPECT_EQ(alone.ids[0], got.ids[3]);
}

TEST_P(SamplerTest, ChosenLogprobIsTheRawLogSoftmax) {
  const int32_t vocab = GetParam();
  std::vector<float> x = Logits(3, vocab, 5);
  std::vector<Row> rows(3);
  for (auto& r : rows) r.temperature = 1.0f, r.bias = {{0, 50.0f}}, r.seed = 9;
  const Result got = RunSample(x, vocab, rows, /*logprob=*/true);
  for (int r = 0; r < 3; ++r) {
    const float* row = &x[static_cast<size_t>(r) * vocab];
    double m = -INFINITY, s = 0;
    for (int i = 0; i < vocab; ++i) m = std::max(m, double{row[i]});
    for (int i = 0; i < vocab; ++i) s += std::exp(row[i] - m);
    ASSERT_GE(got.ids[r], 0);
    const double ref = row[got.ids[r]] - (m + std::log(s));  // raw: the bias does not count
    EXPECT_NEAR(got.chosen_logprob[r], ref, 1e-5 * std::abs(ref) + 1e-5) << "row " << r;
  }
}

TEST_P(SamplerTest, TooSmallAWorkspaceGivesMinusOneAndLeavesTheLogits) {
  const int32_t vocab = GetParam();
  std::vector<float> x = Logits(2, vocab, 6);
  std::vector<Row> rows(2);
  rows[0].banned = {0, 1};
  const Result got = RunSample(x, vocab, rows, false, /*workspace_slack=*/-1);
  EXPECT_EQ(got.ids, (std::vector<int32_t>{-1, -1}));
  EXPECT_TRUE(got.restored);
}

// Tiny, Llama-2's 32000 and Qwen2's 151936.
INSTANTIATE_TEST_SUITE_P(Vocab, SamplerTest, ::testing::Values(5, 32000, 151936));

// Many (seed, step) draws of one filtered distribution: the frequencies follow it (chi-square,
// fixed seeds: deterministic), and filtered-out tokens never appear.
TEST_F(GpuTest, SamplerFrequenciesFollowTheFilteredDistribution) {
  const int32_t vocab = 8, n = 8192;
  const std::vector<float> base = {2.0f, 1.5f, 1.4f, 0.3f, -1.0f, 3.0f, NAN, 0.9f};
  auto config = [](float t, int32_t k, float p, float min_p) {
    Row r;
    r.temperature = t, r.top_k = k, r.top_p = p, r.min_p = min_p;
    return r;
  };
  const Row configs[] = {config(0.8f, 0, 1.0f, 0.0f), config(1.2f, 4, 1.0f, 0.0f),
                         config(1.0f, 0, 0.8f, 0.0f), config(0.7f, 6, 0.9f, 0.05f)};
  for (const Row& cfg : configs) {
    std::vector<float> x;
    std::vector<Row> rows(n, cfg);
    for (int32_t i = 0; i < n; ++i) {
      x.insert(x.end(), base.begin(), base.end());
      rows[i].seed = 12345 + i % 7, rows[i].step = static_cast<uint64_t>(i / 7);
    }
    const Result got = RunSample(x, vocab, rows);
    std::vector<int> counts(vocab, 0);
    for (int32_t id : got.ids) {
      ASSERT_TRUE(id >= 0 && id < vocab) << id;
      ++counts[id];
    }
    std::vector<double> expected(vocab, 0.0);
    for (const auto& [id, p] : Reference(base, cfg).dist) expected[id] += p;
    double chi2 = 0;
    int dof = -1;
    for (int32_t v = 0; v < vocab; ++v) {
      if (expected[v] == 0.0) {
        EXPECT_EQ(counts[v], 0) << "token " << v << " is outside the filtered support";
        continue;
      }
      const double e = expected[v] * n;
      chi2 += (counts[v] - e) * (counts[v] - e) / e;
      ++dof;
    }
    // p < 1e-6 for dof <= 7 is chi2 > ~40: generous but still catches a wrong distribution.
    EXPECT_LT(chi2, 40.0) << "dof " << dof << " T " << cfg.temperature << " k " << cfg.top_k
                          << " p " << cfg.top_p;
  }
}

}  // namespace
}  // namespace kvasir::cuda::testing
