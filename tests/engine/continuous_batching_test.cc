// Continuous batching on real models: many concurrent requests through chunked prefill, prefix
// cache hits and forced preemption produce exactly what each request produces alone; a shared
// prefix is not computed twice; short requests are not stuck behind a long prefill.
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <random>

#include "engine/engine.h"
#include "gtest/gtest.h"
#include "tests/engine/engine_fixtures.h"

namespace kvasir {
namespace {

using testing::CollectingSink;
using testing::FixturePath;

// Records every event; thread-safe reads for the test thread.
class RecordingObserver : public EngineObserver {
 public:
  struct Req {
    std::string id;
    RequestEventKind kind;
    int64_t step;
    int32_t cached;
  };
  void OnRequestEvent(const RequestEvent& e) override {
    std::lock_guard<std::mutex> lock(mu_);
    reqs_.push_back({std::string(e.request_id), e.kind, e.step, e.num_cached_prompt_tokens});
    cv_.notify_all();
  }
  void OnStep(const StepEvent& e) override {
    std::lock_guard<std::mutex> lock(mu_);
    steps_.push_back(e);
  }
  std::vector<Req> reqs() {
    std::lock_guard<std::mutex> lock(mu_);
    return reqs_;
  }
  std::vector<StepEvent> steps() {
    std::lock_guard<std::mutex> lock(mu_);
    return steps_;
  }
  SchedulerCounters last_counters() {
    std::lock_guard<std::mutex> lock(mu_);
    return steps_.empty() ? SchedulerCounters{} : steps_.back().counters;
  }
  // Step of the first event of this kind for this request, or -1.
  int64_t StepOf(const std::string& id, RequestEventKind kind) {
    std::lock_guard<std::mutex> lock(mu_);
    for (const Req& r : reqs_) {
      if (r.id == id && r.kind == kind) return r.step;
    }
    return -1;
  }
  void WaitFor(const std::string& id, RequestEventKind kind) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] {
      return std::any_of(reqs_.begin(), reqs_.end(),
                         [&](const Req& r) { return r.id == id && r.kind == kind; });
    });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Req> reqs_;
  std::vector<StepEvent> steps_;
};

std::unique_ptr<Engine> MakeEngine(EngineOptions o) {
  o.num_threads = 2;
  auto e = Engine::Create(o);
  EXPECT_TRUE(e.ok()) << e.status();
  return e.ok() ? std::move(*e) : nullptr;
}

// A copy of the tiny Llama fixture whose config allows 16k positions (RoPE has no learned
// positions, so the weights are valid at any length), for long-prompt tests.
std::string LongContextTinyModel() {
  namespace fs = std::filesystem;
  const fs::path src = FixturePath("models/llama_tiny");
  const fs::path dst = fs::temp_directory_path() / ("kvasir_long_tiny_" + std::to_string(getpid()));
  fs::create_directories(dst);
  for (const auto& entry : fs::directory_iterator(src)) {
    if (entry.path().filename() == "config.json") continue;
    fs::copy(entry.path(), dst / entry.path().filename(), fs::copy_options::overwrite_existing);
  }
  nlohmann::json config = testing::ReadJson((src / "config.json").string());
  config["max_position_embeddings"] = 16384;
  std::ofstream(dst / "config.json") << config.dump();
  return dst.string();
}

struct ModelCase {
  std::string name;
  std::string path;  // empty: the default SmolLM2 GGUF; else LongContextTinyModel()
  friend void PrintTo(const ModelCase& c, std::ostream* os) { *os << c.name; }
};

class ContinuousBatchingTest : public ::testing::TestWithParam<ModelCase> {
 protected:
  void SetUp() override {
    if (GetParam().path.empty()) {
      path_ = testing::DefaultModelPath();
      if (path_.empty()) GTEST_SKIP() << "default model not fetched (run tools/setup.sh)";
    } else {
      path_ = LongContextTinyModel();
      temp_ = path_;
    }
  }
  void TearDown() override {
    if (!temp_.empty()) std::filesystem::remove_all(temp_);
  }
  std::string path_;
  std::string temp_;
};

// 64 concurrent requests with mixed prompt lengths, many sharing prefixes, through a token
// budget that chunks the long prompts and a KV pool so small that sequences are preempted: every
// greedy output equals that request's output when it runs alone (no batching, no prefix cache).
TEST_P(ContinuousBatchingTest, SixtyFourConcurrentRequestsMatchEachRequestAlone) {
  EngineOptions alone_opts;
  alone_opts.model_path = path_;
  alone_opts.max_num_seqs = 1;
  alone_opts.enable_prefix_caching = false;
  auto alone = MakeEngine(alone_opts);
  ASSERT_NE(alone, nullptr);
  const int64_t vocab = alone->model_info().vocab_size;

  std::mt19937 rng(2024);
  auto random_tokens = [&](int n) {
    std::vector<int32_t> v(n);
    for (auto& t : v) t = 1 + rng() % (vocab - 1);
    return v;
  };
  const std::vector<std::vector<int32_t>> prefixes = {random_tokens(37), random_tokens(64),
                                                      random_tokens(90)};
  std::vector<EngineRequest> reqs;
  int32_t longest = 0;
  for (int i = 0; i < 64; ++i) {
    std::vector<int32_t> prompt;
    if (i % 4 != 3) prompt = prefixes[i % 3];
    const std::vector<int32_t> suffix = random_tokens(1 + rng() % 40);
    prompt.insert(prompt.end(), suffix.begin(), suffix.end());
    longest = std::max<int32_t>(longest, prompt.size());
    reqs.push_back(testing::GreedyRequest("r" + std::to_string(i), prompt, 1 + rng() % 12));
  }

  auto observer = std::make_shared<RecordingObserver>();
  EngineOptions batched_opts;
  batched_opts.model_path = path_;
  batched_opts.max_num_seqs = 32;
  batched_opts.max_batched_tokens = 96;  // < the longest prompts: they are chunked
  batched_opts.block_size = 16;
  // Room for about two of the longest requests at once: 32 running sequences must preempt.
  batched_opts.kv_cache_bytes = alone->model_info().kv_bytes_per_token * (longest + 12) * 2;
  batched_opts.observer = observer;
  auto batched = MakeEngine(batched_opts);
  ASSERT_NE(batched, nullptr);
  ASSERT_GT(longest, batched_opts.max_batched_tokens);

  std::vector<std::shared_ptr<CollectingSink>> sinks;
  for (const EngineRequest& r : reqs) {
    sinks.push_back(std::make_shared<CollectingSink>());
    ASSERT_TRUE(batched->Submit(r, sinks.back()).ok());
  }
  for (size_t i = 0; i < reqs.size(); ++i) {
    const RequestOutput got = sinks[i]->Wait();
    auto sink = std::make_shared<CollectingSink>();
    ASSERT_TRUE(alone->Submit(reqs[i], sink).ok());
    const RequestOutput want = sink->Wait();
    ASSERT_EQ(want.token_ids.size(), static_cast<size_t>(reqs[i].max_tokens));
    EXPECT_EQ(got.token_ids, want.token_ids) << "request " << i;
    EXPECT_EQ(got.text, want.text) << "request " << i;
    EXPECT_EQ(got.usage.prompt_tokens, want.usage.prompt_tokens);
  }
  // The run exercised what it claims to.
  const SchedulerCounters c = observer->last_counters();
  EXPECT_GT(c.preemptions, 0);
  EXPECT_GT(c.prefix_hit_tokens, 0);
  bool mixed = false;
  int32_t max_running = 0;
  for (const StepEvent& s : observer->steps()) {
    mixed |= s.num_prefill_tokens > 0 && s.num_decode_tokens > 0;
    max_running = std::max(max_running, s.num_running);
    EXPECT_LE(s.num_prefill_tokens + s.num_decode_tokens, batched_opts.max_batched_tokens);
  }
  EXPECT_TRUE(mixed) << "no step mixed prefill chunks and decodes";
  EXPECT_GT(max_running, 8);
  std::printf(
      "[ info ] %s: %lld preemptions, %lld of %lld prompt tokens from the prefix cache, "
      "%zu steps\n",
      GetParam().name.c_str(), static_cast<long long>(c.preemptions),
      static_cast<long long>(c.prefix_hit_tokens), static_cast<long long>(c.prefix_query_tokens),
      observer->steps().size());
}

// The second request with a shared 1,000-token prefix reports the cached tokens in usage and
// computes only the rest; its output equals the output without prefix caching.
TEST_P(ContinuousBatchingTest, SharedThousandTokenPrefixIsServedFromTheCache) {
  auto observer = std::make_shared<RecordingObserver>();
  EngineOptions o;
  o.model_path = path_;
  o.block_size = 16;
  o.max_model_len = 1100;
  o.observer = observer;
  auto e = MakeEngine(o);
  ASSERT_NE(e, nullptr);
  const int64_t vocab = e->model_info().vocab_size;
  std::mt19937 rng(5);
  std::vector<int32_t> prefix(1000);
  for (auto& t : prefix) t = 1 + rng() % (vocab - 1);
  std::vector<int32_t> p1 = prefix, p2 = prefix;
  p1.insert(p1.end(), {11, 12, 13});
  p2.insert(p2.end(), {21, 22, 23, 24, 25});

  auto first = std::make_shared<CollectingSink>();
  ASSERT_TRUE(e->Submit(testing::GreedyRequest("first", p1, 4), first).ok());
  EXPECT_EQ(first->Wait().usage.cached_prompt_tokens, 0);
  const int64_t computed_before = observer->last_counters().computed_tokens;

  auto second = std::make_shared<CollectingSink>();
  ASSERT_TRUE(e->Submit(testing::GreedyRequest("second", p2, 4), second).ok());
  const RequestOutput out = second->Wait();
  // 1000 / 16 = 62 full blocks: 992 tokens cached, 13 of 1005 prompt tokens computed, plus the
  // 3 decode steps after the first token.
  EXPECT_EQ(out.usage.prompt_tokens, 1005);
  EXPECT_EQ(out.usage.cached_prompt_tokens, 992);
  EXPECT_EQ(observer->last_counters().computed_tokens - computed_before, 13 + 3);

  EngineOptions off = o;
  off.enable_prefix_caching = false;
  off.observer = nullptr;
  auto uncached = MakeEngine(off);
  ASSERT_NE(uncached, nullptr);
  auto ref = std::make_shared<CollectingSink>();
  ASSERT_TRUE(uncached->Submit(testing::GreedyRequest("second", p2, 4), ref).ok());
  const RequestOutput want = ref->Wait();
  EXPECT_EQ(out.token_ids, want.token_ids);
  EXPECT_EQ(want.usage.cached_prompt_tokens, 0);
}

INSTANTIATE_TEST_SUITE_P(Models, ContinuousBatchingTest,
                         ::testing::Values(ModelCase{"llama_tiny", "llama_tiny (16k positions)"},
                                           ModelCase{"smollm2", ""}),
                         [](const auto& info) { return info.param.name; });

// Head of line: with an 8k-token prompt prefilling, short requests get their first token within
// two steps of arriving, while the long prompt is still in flight.
TEST(ContinuousBatchingHeadOfLineTest, ShortRequestsGetFirstTokensWhileAnEightKPromptPrefills) {
  const std::string model = LongContextTinyModel();
  auto observer = std::make_shared<RecordingObserver>();
  EngineOptions o;
  o.model_path = model;
  o.max_batched_tokens = 256;  // the long prompt needs 32+ steps
  o.max_model_len = 16384;
  o.observer = observer;
  auto e = MakeEngine(o);
  ASSERT_NE(e, nullptr);
  std::mt19937 rng(3);
  std::vector<int32_t> long_prompt(8192);
  for (auto& t : long_prompt) t = 1 + rng() % 383;
  auto long_sink = std::make_shared<CollectingSink>();
  ASSERT_TRUE(e->Submit(testing::GreedyRequest("long", long_prompt, 4), long_sink).ok());
  observer->WaitFor("long", RequestEventKind::kScheduled);

  std::vector<std::shared_ptr<CollectingSink>> sinks;
  for (int i = 0; i < 8; ++i) {
    std::vector<int32_t> p(5 + 7 * i);
    for (auto& t : p) t = 1 + rng() % 383;
    sinks.push_back(std::make_shared<CollectingSink>());
    ASSERT_TRUE(
        e->Submit(testing::GreedyRequest("short" + std::to_string(i), p, 2), sinks.back()).ok());
  }
  for (auto& s : sinks) EXPECT_EQ(s->Wait().token_ids.size(), 2u);
  e->Abort("long");
  EXPECT_EQ(long_sink->Wait().finish_reason, FinishReason::kAbort);

  // The long prompt never produced a token: the shorts all ran while it was prefilling.
  EXPECT_EQ(observer->StepOf("long", RequestEventKind::kFirstToken), -1);
  for (int i = 0; i < 8; ++i) {
    const std::string id = "short" + std::to_string(i);
    const int64_t arrived = observer->StepOf(id, RequestEventKind::kArrived);
    const int64_t first = observer->StepOf(id, RequestEventKind::kFirstToken);
    ASSERT_GE(arrived, 0);
    ASSERT_GE(first, 0);
    EXPECT_LE(first - arrived, 2) << id << " waited " << first - arrived << " steps";
  }
  std::filesystem::remove_all(model);
}

}  // namespace
}  // namespace kvasir
