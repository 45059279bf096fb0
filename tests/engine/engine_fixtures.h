// Helpers shared by the engine tests.
#ifndef KVASIR_TESTS_ENGINE_ENGINE_FIXTURES_H_
#define KVASIR_TESTS_ENGINE_ENGINE_FIXTURES_H_

#include <condition_variable>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "engine/engine.h"
#include "engine/model_runner.h"
#include "nlohmann/json.hpp"

namespace kvasir::testing {

std::string FixturePath(const std::string& relative);
nlohmann::json ReadJson(const std::string& path);
// The default SmolLM2 GGUF (KVASIR_DEFAULT_MODEL or the setup script's cache); empty if absent.
std::string DefaultModelPath();

// Runs a whole prompt in one step with logits for every position: [len, vocab].
std::vector<float> AllLogits(ModelRunner& runner, const std::vector<int32_t>& prompt);
// The same, one token per step (every step a single-query decode over the cache): [len, vocab].
std::vector<float> TokenByTokenLogits(ModelRunner& runner, const std::vector<int32_t>& prompt);

// Writes `config` (a Hugging Face config.json) to a fresh temporary directory, creates an engine
// with dummy weights from it twice, runs two greedy 8-token requests at once on each, and expects
// both engines to produce the same tokens. `check` (optional) inspects each engine first.
void ExpectDummyModelRunsDeterministically(const nlohmann::json& config, const std::string& tag,
                                           const std::function<void(const Engine&)>& check = {});

// A greedy request that ignores the model's stop tokens (so its length is max_tokens).
EngineRequest GreedyRequest(const std::string& id, std::vector<int32_t> prompt, int32_t max_tokens);

// Submits every case of a golden reference.json (tools/gen_golden_models.py) at once as a greedy
// request as long as the case's greedy_ids (ids "<id_prefix>-<i>", `logprobs` alternatives when
// set) and returns each request's whole output, in case order.
std::vector<RequestOutput> RunGoldenCases(Engine& engine, const nlohmann::json& reference,
                                          const std::string& id_prefix,
                                          std::optional<int32_t> logprobs = std::nullopt);

// Collects a request's outputs, per choice; Wait() blocks until the request's final one.
class CollectingSink : public RequestSink {
 public:
  void OnOutput(RequestOutput output) override;
  // Waits for the final output; returns choice 0 with all its token ids and text concatenated.
  RequestOutput Wait();
  // The same for every choice, by index.
  std::vector<RequestOutput> WaitAll();
  int num_outputs();

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<RequestOutput> choices_;
  int num_outputs_ = 0;
  bool done_ = false;
};

}  // namespace kvasir::testing

#endif  // KVASIR_TESTS_ENGINE_ENGINE_FIXTURES_H_
