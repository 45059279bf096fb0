// Ops::Moe (CPU backend) against a naive per-token loop over the chosen experts, and the stacked
// expert layout (transformers 5's experts.gate_up_proj / experts.down_proj) against the
// per-expert one on the tiny Mixtral.
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <numeric>
#include <random>

#include "engine/engine.h"
#include "engine/model_loader.h"
#include "engine/model_runner.h"
#include "engine/ops.h"
#include "engine/weights/safetensors.h"
#include "gtest/gtest.h"
#include "tests/engine/engine_fixtures.h"

namespace kvasir {
namespace {

constexpr int64_t kHidden = 64, kInter = 32;
constexpr int32_t kExperts = 8;
constexpr int32_t kAlwaysChosen = 2;           // router pushes every token here
constexpr int32_t kNeverChosen[] = {5, 6, 7};  // and never here

std::vector<float> Random(int64_t n, uint32_t seed, float scale) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(-scale, scale);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

// Host copies of one MoE layer's weights, uploaded to an Ops backend on demand.
struct HostMoe {
  MoeRouting routing;
  std::vector<float> router, bias;
  std::vector<std::vector<float>> gate, up, down;  // per expert

  // x[t][0] is 4 for every token (see Inputs); router column 0 decides the extremes.
  explicit HostMoe(MoeRouting r) : routing(r) {
    router = Random(kExperts * kHidden, 1, 0.3f);
    router[kAlwaysChosen * kHidden] = 0.75f;  // logit ~3: in the top k, but not alone in it
    for (int32_t e : kNeverChosen) router[e * kHidden] = -1.5f;  // logit ~ -6
    if (r.scoring == MoeScoring::kSigmoid) {  // sigmoid saturates: the bias keeps the extremes
      bias = Random(kExperts, 2, 0.2f);
      bias[kAlwaysChosen] = 0.5f;
      for (int32_t e : kNeverChosen) bias[e] = -0.5f;
    }
    for (int32_t e = 0; e < kExperts; ++e) {
      gate.push_back(Random(kInter * kHidden, 10 + e, 0.2f));
      up.push_back(Random(kInter * kHidden, 20 + e, 0.2f));
      down.push_back(Random(kHidden * kInter, 30 + e, 0.2f));
    }
  }

  MoeWeights Upload(Ops& ops) const {
    auto up_load = [&](const std::vector<float>& v, int64_t rows, int64_t cols) {
      TensorView t{
          "w", DType::kF32, {rows, cols}, v.data(), static_cast<int64_t>(v.size() * sizeof(float))};
      return *ops.Upload(t);
    };
    MoeWeights w;
    w.routing = routing;
    w.inter = kInter;
    w.router = up_load(router, kExperts, kHidden);
    if (!bias.empty()) w.selection_bias = *ops.UploadFloats(bias);
    for (int32_t e = 0; e < kExperts; ++e) {
      w.gate.push_back(up_load(gate[e], kInter, kHidden));
      w.up.push_back(up_load(up[e], kInter, kHidden));
      w.down.push_back(up_load(down[e], kHidden, kInter));
    }
    return w;
  }

  // The naive reference in double: per token, score every expert, sort, loop over the top k.
  std::vector<double> Reference(const std::vector<float>& x, int64_t tokens,
                                std::vector<int>* tokens_per_expert) const {
    std::vector<double> out(tokens * kHidden, 0.0);
    tokens_per_expert->assign(kExperts, 0);
    for (int64_t t = 0; t < tokens; ++t) {
      const float* xt = x.data() + t * kHidden;
      std::vector<double> s(kExperts), c(kExperts);
      for (int32_t e = 0; e < kExperts; ++e) {
        double l = 0;
        for (int64_t i = 0; i < kHidden; ++i) l += double{xt[i]} * router[e * kHidden + i];
        s[e] = routing.scoring == MoeScoring::kSigmoid ? 1 / (1 + std::exp(-l)) : std::exp(l);
      }
      if (routing.scoring == MoeScoring::kSoftmax) {
        const double sum = std::accumulate(s.begin(), s.end(), 0.0);
        for (double& v : s) v /= sum;
      }
      for (int32_t e = 0; e < kExperts; ++e) c[e] = s[e] + (bias.empty() ? 0.0 : bias[e]);
      std::vector<int32_t> order(kExperts);
      std::iota(order.begin(), order.end(), 0);
      std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return c[a] > c[b]; });
      double sum = 0;
      for (int32_t j = 0; j < routing.top_k; ++j) sum += s[order[j]];
      for (int32_t j = 0; j < routing.top_k; ++j) {
        const int32_t e = order[j];
        ++(*tokens_per_expert)[e];
        const double weight = (routing.renormalize ? s[e] / sum : s[e]) * routing.scaling;
        std::vector<double> act(kInter);
        for (int64_t r = 0; r < kInter; ++r) {
          double g = 0, u = 0;
          for (int64_t i = 0; i < kHidden; ++i) {
            g += double{xt[i]} * gate[e][r * kHidden + i];
            u += double{xt[i]} * up[e][r * kHidden + i];
          }
          act[r] = g / (1 + std::exp(-g)) * u;
        }
        for (int64_t d = 0; d < kHidden; ++d) {
          double y = 0;
          for (int64_t r = 0; r < kInter; ++r) y += act[r] * down[e][d * kInter + r];
          out[t * kHidden + d] += weight * y;
        }
      }
    }
    return out;
  }
};

std::vector<float> Inputs(int64_t tokens) {
  std::vector<float> x = Random(tokens * kHidden, 99, 1.0f);
  for (int64_t t = 0; t < tokens; ++t) x[t * kHidden] = 4.0f;
  return x;
}

// Runs the op on `x` with a fresh CPU backend of `threads` threads.
std::vector<float> RunMoe(const HostMoe& layer, const std::vector<float>& x, int threads) {
  std::unique_ptr<Ops> ops = MakeCpuOps(threads);
  const MoeWeights w = layer.Upload(*ops);
  const StepBatch batch;
  ops->BeginStep(batch);
  const int64_t tokens = static_cast<int64_t>(x.size()) / kHidden;
  Tensor in = ops->Alloc(tokens, kHidden), out = ops->Alloc(tokens, kHidden);
  std::copy(x.begin(), x.end(), in.f32());
  ops->Moe(in, w, out);
  std::vector<float> host(out.numel());
  ops->CopyToHost(out, host.data());
  return host;
}

struct OpCase {
  const char* name;
  MoeRouting routing;
  friend void PrintTo(const OpCase& c, std::ostream* os) { *os << c.name; }
};

class MoeOpTest : public ::testing::TestWithParam<OpCase> {};

TEST_P(MoeOpTest, MatchesNaivePerTokenReferenceWithEmptyAndFullExperts) {
  const HostMoe layer(GetParam().routing);
  const int64_t tokens = 37;
  const std::vector<float> x = Inputs(tokens);
  std::vector<int> per_expert;
  const std::vector<double> want = layer.Reference(x, tokens, &per_expert);
  // The data does what the test is about: some experts get nothing, one gets every token.
  EXPECT_EQ(per_expert[kAlwaysChosen], tokens);
  for (int32_t e : kNeverChosen) EXPECT_EQ(per_expert[e], 0) << "expert " << e;
  const std::vector<float> got = RunMoe(layer, x, 2);
  double max_diff = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    max_diff = std::max(max_diff, std::abs(want[i] - got[i]));
  }
  EXPECT_LE(max_diff, 1e-5);
}

TEST_P(MoeOpTest, RowsDoNotDependOnTheBatchOrTheThreadCount) {
  const HostMoe layer(GetParam().routing);
  const int64_t tokens = 40;
  const std::vector<float> x = Inputs(tokens);
  const std::vector<float> batched = RunMoe(layer, x, 2);
  EXPECT_EQ(RunMoe(layer, x, 1), batched);
  for (int64_t t : {0, 17, 39}) {
    const std::vector<float> alone(x.begin() + t * kHidden, x.begin() + (t + 1) * kHidden);
    const std::vector<float> row(batched.begin() + t * kHidden,
                                 batched.begin() + (t + 1) * kHidden);
    EXPECT_EQ(RunMoe(layer, alone, 2), row) << "token " << t;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Routings, MoeOpTest,
    ::testing::Values(
        OpCase{"softmax_top2_renormalised",
               {kExperts, 2, MoeScoring::kSoftmax, 1, 1, MoeGroupScore::kMax, true, 1.0f}},
        OpCase{"softmax_top3_scaled",
               {kExperts, 3, MoeScoring::kSoftmax, 1, 1, MoeGroupScore::kMax, false, 2.5f}},
        OpCase{"sigmoid_bias_top2",
               {kExperts, 2, MoeScoring::kSigmoid, 1, 1, MoeGroupScore::kMax, true, 1.0f}}),
    [](const auto& info) { return std::string(info.param.name); });

// The tiny Mixtral's weights with each MoE layer's experts stacked as transformers 5 holds them
// in memory: experts.gate_up_proj [E, 2I, H] (gate rows, then up rows) and experts.down_proj
// [E, H, I]. The per-expert tensors are hidden.
class StackedExpertsSource : public WeightSource {
 public:
  StackedExpertsSource(std::unique_ptr<WeightSource> base, const ModelConfig& c)
      : base_(std::move(base)) {
    const int64_t e_count = c.moe.routing.num_experts, inter = c.moe.expert_intermediate_size;
    for (int64_t l = 0; l < c.num_layers; ++l) {
      const std::string p = "model.layers." + std::to_string(l) + ".block_sparse_moe.experts.";
      std::vector<float>& gu = Make(p + "gate_up_proj", {e_count, 2 * inter, c.hidden_size});
      std::vector<float>& down = Make(p + "down_proj", {e_count, c.hidden_size, inter});
      const int64_t part = inter * c.hidden_size;
      for (int64_t e = 0; e < e_count; ++e) {
        const std::string ep = p + std::to_string(e) + ".";
        Append(ep + "w1.weight", gu.data() + 2 * part * e);
        Append(ep + "w3.weight", gu.data() + 2 * part * e + part);
        Append(ep + "w2.weight", down.data() + part * e);
      }
    }
  }
  std::string Describe() const override { return "stacked " + base_->Describe(); }
  std::vector<std::string> TensorNames() const override { return base_->TensorNames(); }
  bool Has(std::string_view name) const override {
    return stacked_.count(std::string(name)) > 0 ||
           (name.find(".experts.") == std::string_view::npos && base_->Has(name));
  }
  absl::StatusOr<TensorView> Get(std::string_view name) const override {
    auto it = stacked_.find(std::string(name));
    if (it != stacked_.end()) return it->second.view;
    if (name.find(".experts.") != std::string_view::npos) {
      return absl::NotFoundError(std::string(name) + " is hidden");
    }
    return base_->Get(name);
  }

 private:
  struct Stacked {
    std::vector<float> data;
    TensorView view;
  };
  std::vector<float>& Make(const std::string& name, std::vector<int64_t> shape) {
    Stacked& s = stacked_[name];
    s.data.resize(shape[0] * shape[1] * shape[2]);
    s.view = {name, DType::kF32, shape, s.data.data(),
              static_cast<int64_t>(s.data.size() * sizeof(float))};
    return s.data;
  }
  void Append(const std::string& name, float* dst) {
    const TensorView t = *base_->Get(name);
    std::copy_n(static_cast<const float*>(t.data), t.numel(), dst);
  }

  std::unique_ptr<WeightSource> base_;
  std::map<std::string, Stacked> stacked_;
};

TEST(MoeStackedLayoutTest, StackedExpertTensorsGiveTheSameLogitsAsPerExpertOnes) {
  auto model = LoadModel(testing::FixturePath("models/mixtral_tiny"));
  ASSERT_TRUE(model.ok()) << model.status();
  auto base = OpenSafetensors(testing::FixturePath("models/mixtral_tiny"));
  ASSERT_TRUE(base.ok()) << base.status();
  const StackedExpertsSource stacked(std::move(*base), model->config);
  const RunnerOptions options{.num_threads = 2, .block_size = 16, .kv_cache_bytes = 1 << 20};
  auto per_expert = ModelRunner::Create(model->config, *model->weights, options);
  ASSERT_TRUE(per_expert.ok()) << per_expert.status();
  auto from_stacked = ModelRunner::Create(model->config, stacked, options);
  ASSERT_TRUE(from_stacked.ok()) << from_stacked.status();
  const std::vector<int32_t> prompt = {5, 17, 200, 3, 99, 42, 7, 128, 64};
  const std::vector<float> want = testing::AllLogits(**per_expert, prompt);
  EXPECT_EQ(testing::AllLogits(**from_stacked, prompt), want);
}

// Qwen3-30B-A3B's own config.json (bench/models): parsed, it has the published sizes, 30.5B
// parameters of which 3.3B are active per token.
TEST(MoeFullSizeConfigTest, RealQwen3MoeConfigHasThePublishedParameterCounts) {
  auto c = ParseHfConfig(std::string(KVASIR_BENCH_MODELS_DIR) + "/qwen3_30b_a3b/config.json");
  ASSERT_TRUE(c.ok()) << c.status();
  const int64_t h = c->hidden_size, hd = c->head_dim;
  const int64_t experts = c->moe.routing.num_experts, k = c->moe.routing.top_k;
  const int64_t expert = 3 * c->moe.expert_intermediate_size * h;
  const int64_t attn = (c->num_heads + 2 * c->num_kv_heads) * hd * h + h * c->num_heads * hd;
  int64_t total = 2 * c->vocab_size * h, active = total;
  for (int64_t i = 0; i < c->num_layers; ++i) {
    ASSERT_TRUE(IsMoeLayer(*c, i)) << "layer " << i;
    total += attn + experts * h + experts * expert;
    active += attn + experts * h + k * expert;
  }
  EXPECT_EQ(c->num_layers, 48);
  EXPECT_TRUE(c->moe.routing.renormalize);
  EXPECT_NEAR(static_cast<double>(total) / 1e9, 30.5, 0.05);
  EXPECT_NEAR(static_cast<double>(active) / 1e9, 3.3, 0.1);
}

// The same config scaled down (hidden 128, 2 layers, vocab 512, expert intermediate 32; still
// 128 experts, top-8, head_dim 64 != hidden / heads) runs through the engine with dummy weights.
TEST(MoeDummyWeightsTest, ScaledDownQwen3MoeConfigRunsWithDummyWeights) {
  nlohmann::json cfg =
      testing::ReadJson(std::string(KVASIR_BENCH_MODELS_DIR) + "/qwen3_30b_a3b/config.json");
  cfg["hidden_size"] = 128;
  cfg["num_hidden_layers"] = 2;
  cfg["num_attention_heads"] = 4;
  cfg["num_key_value_heads"] = 2;
  cfg["head_dim"] = 64;
  cfg["vocab_size"] = 512;
  cfg["moe_intermediate_size"] = 32;
  cfg["intermediate_size"] = 256;
  cfg["torch_dtype"] = "float32";
  testing::ExpectDummyModelRunsDeterministically(cfg, "moe_dummy");
}

}  // namespace
}  // namespace kvasir
