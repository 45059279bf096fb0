#include "tests/engine/engine_fixtures.h"

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <utility>

#include "gtest/gtest.h"
#include "scheduler/scheduler.h"

namespace kvasir::testing {

std::string FixturePath(const std::string& relative) {
  return std::string(KVASIR_FIXTURES_DIR) + "/" + relative;
}

nlohmann::json ReadJson(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot open " + path);
  return nlohmann::json::parse(in);
}

std::string DefaultModelPath() {
  std::string path;
  if (const char* env = std::getenv("KVASIR_DEFAULT_MODEL")) {
    path = env;
  } else {
    std::string cache;
    if (const char* c = std::getenv("KVASIR_CACHE")) {
      cache = c;
    } else if (const char* x = std::getenv("XDG_CACHE_HOME")) {
      cache = std::string(x) + "/kvasir";
    } else if (const char* h = std::getenv("HOME")) {
      cache = std::string(h) + "/.cache/kvasir";
    }
    path = cache + "/models/SmolLM2-135M-Instruct.Q4_1.gguf";
  }
  return std::filesystem::exists(path) ? path : "";
}

std::vector<float> AllLogits(ModelRunner& runner, const std::vector<int32_t>& prompt) {
  KvCacheManager kv({.num_blocks = runner.kv_spec().num_blocks,
                     .block_size = runner.kv_spec().block_size,
                     .enable_prefix_caching = false});
  Scheduler scheduler({.max_num_seqs = 1, .max_batched_tokens = 4096}, &kv);
  auto seq = std::make_unique<Sequence>();
  seq->uid = 1;
  seq->tokens = prompt;
  seq->num_prompt_tokens = static_cast<int32_t>(prompt.size());
  seq->max_tokens = 1;
  scheduler.Add(std::move(seq));
  StepBatch batch = scheduler.Schedule();
  batch.logits_indices.clear();
  for (int32_t i = 0; i < batch.num_tokens(); ++i) batch.logits_indices.push_back(i);
  const std::span<const float> logits = runner.Execute(batch);
  return {logits.begin(), logits.end()};
}

std::vector<float> TokenByTokenLogits(ModelRunner& runner, const std::vector<int32_t>& prompt) {
  const int32_t block_size = runner.kv_spec().block_size;
  const int32_t n = static_cast<int32_t>(prompt.size());
  std::vector<float> all;
  StepBatch batch;
  batch.seqs.resize(1);
  batch.query_start = {0, 1};
  batch.block_table_indptr = {0, (n + block_size - 1) / block_size};
  for (int32_t b = 0; b < batch.block_table_indptr[1]; ++b) batch.block_table.push_back(b);
  batch.logits_indices = {0};
  for (int32_t i = 0; i < n; ++i) {
    batch.seqs[0].start_position = i;
    batch.seqs[0].num_new_tokens = 1;
    batch.seqs[0].samples = true;
    batch.token_ids = {prompt[i]};
    batch.positions = {i};
    batch.slot_mapping = {int64_t{batch.block_table[i / block_size]} * block_size + i % block_size};
    batch.seq_lens = {i + 1};
    const std::span<const float> logits = runner.Execute(batch);
    all.insert(all.end(), logits.begin(), logits.end());
  }
  return all;
}

EngineRequest GreedyRequest(const std::string& id, std::vector<int32_t> prompt,
                            int32_t max_tokens) {
  EngineRequest r;
  r.id = id;
  r.prompt_ids = std::move(prompt);
  r.max_tokens = max_tokens;
  r.ignore_eos = true;
  return r;
}

std::vector<RequestOutput> RunGoldenCases(Engine& engine, const nlohmann::json& reference,
                                          const std::string& id_prefix,
                                          std::optional<int32_t> logprobs) {
  std::vector<std::shared_ptr<CollectingSink>> sinks;
  for (const auto& c : reference["cases"]) {
    EngineRequest r = GreedyRequest(id_prefix + "-" + std::to_string(sinks.size()),
                                    c["prompt_ids"].get<std::vector<int32_t>>(),
                                    static_cast<int32_t>(c["greedy_ids"].size()));
    r.logprobs = logprobs;
    sinks.push_back(std::make_shared<CollectingSink>());
    const absl::Status submitted = engine.Submit(r, sinks.back());
    EXPECT_TRUE(submitted.ok()) << submitted;
    if (!submitted.ok()) sinks.pop_back();
  }
  std::vector<RequestOutput> outputs;
  for (const auto& sink : sinks) outputs.push_back(sink->Wait());
  return outputs;
}

void ExpectDummyModelRunsDeterministically(const nlohmann::json& config, const std::string& tag,
                                           const std::function<void(const Engine&)>& check) {
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("kvasir_" + tag + "_" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "config.json") << config.dump(2);
  EngineOptions o;
  o.model_path = dir.string();
  o.dummy_weights = true;
  o.num_threads = 2;
  std::vector<std::vector<int32_t>> runs;
  for (int i = 0; i < 2; ++i) {
    auto e = Engine::Create(o);
    ASSERT_TRUE(e.ok()) << e.status();
    if (check) check(**e);
    auto a = std::make_shared<CollectingSink>();
    auto b = std::make_shared<CollectingSink>();
    ASSERT_TRUE((*e)->Submit(GreedyRequest("a", {1, 2, 3, 4, 5}, 8), a).ok());
    ASSERT_TRUE((*e)->Submit(GreedyRequest("b", {9, 8, 7}, 8), b).ok());
    runs.push_back(a->Wait().token_ids);
    EXPECT_EQ(runs.back().size(), 8u);
    EXPECT_EQ(b->Wait().token_ids.size(), 8u);
  }
  EXPECT_EQ(runs[0], runs[1]);
  std::filesystem::remove_all(dir);
}

void CollectingSink::OnOutput(RequestOutput output) {
  std::lock_guard<std::mutex> lock(mu_);
  ++num_outputs_;
  if (choices_.size() <= static_cast<size_t>(output.index)) choices_.resize(output.index + 1);
  RequestOutput& all = choices_[output.index];
  all.index = output.index;
  all.token_ids.insert(all.token_ids.end(), output.token_ids.begin(), output.token_ids.end());
  all.logprobs.insert(all.logprobs.end(), output.logprobs.begin(), output.logprobs.end());
  all.text += output.text;
  all.usage = output.usage;
  if (!output.prompt_logprobs.empty()) all.prompt_logprobs = output.prompt_logprobs;
  if (output.finish_reason != FinishReason::kNone) {
    all.finish_reason = output.finish_reason;
    all.error = output.error;
    all.stop_string = output.stop_string;
    all.stop_token = output.stop_token;
  }
  if (output.final_output) {
    all.final_output = true;
    done_ = true;
    cv_.notify_all();
  }
}

RequestOutput CollectingSink::Wait() { return WaitAll().at(0); }

std::vector<RequestOutput> CollectingSink::WaitAll() {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [&] { return done_; });
  return choices_;
}

int CollectingSink::num_outputs() {
  std::lock_guard<std::mutex> lock(mu_);
  return num_outputs_;
}

}  // namespace kvasir::testing
