// kvasir generate and kvasir tokenize: the engine and tokenizer in-process, no network.
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/engine.h"
#include "engine/model_loader.h"
#include "engine/request.h"
#include "engine/tokenizer/tokenizer.h"
#include "nlohmann/json.hpp"
#include "server/api_convert.h"
#include "server/cli_args.h"
#include "server/commands.h"
#include "server/engine_flags.h"

namespace kvasir::server {

namespace {

const FlagSpec kGenerateFlags[] = {
    {"model", true, "PATH", "GGUF file or model directory (required)"},
    {"prompt", true, "TEXT", "the prompt (required)"},
    {"max-tokens", true, "N", "tokens to generate at most (default 64)"},
    {"temperature", true, "T", "sampling temperature; 0 = greedy (default 0)"},
    {"top-k", true, "K", "top-k filter; 0 = off (default 0)"},
    {"top-p", true, "P", "nucleus filter in (0, 1] (default 1)"},
    {"seed", true, "S", "sampling seed (default: random)"},
    {"ignore-eos", false, "", "keep generating past the model's stop tokens"},
    {"json", false, "", "print {\"text\": ..., \"token_ids\": [...]} (generated ids only)"},
};

const FlagSpec kTokenizeFlags[] = {
    {"model", true, "PATH", "GGUF file, model directory or directory with tokenizer.json"},
    {"text", true, "TEXT", "the text to tokenize (required)"},
    {"no-special", false, "", "do not add the tokenizer's special tokens (e.g. BOS)"},
    {"json", false, "", "print {\"token_ids\": [...]}"},
};

// Handles --help and parse errors; returns -1 to go on, else the exit code.
int ParseOrExit(const char* command, absl::Span<const FlagSpec> specs,
                absl::Span<const char* const> args, absl::StatusOr<ParsedArgs>* parsed) {
  *parsed = ParseArgs(specs, args);
  if (parsed->ok() && !(*parsed)->help) return -1;
  if (!parsed->ok()) {
    std::fprintf(stderr, "kvasir %s: %s\n\n", command,
                 std::string(parsed->status().message()).c_str());
  }
  std::fprintf(parsed->ok() ? stdout : stderr, "usage: kvasir %s [flags]\n\n%s", command,
               FlagsHelp(specs).c_str());
  return parsed->ok() ? kExitOk : kExitUsage;
}

int Fail(const char* command, const absl::Status& status) {
  std::fprintf(stderr, "kvasir %s: %s\n", command, status.ToString().c_str());
  return kExitFailure;
}

// A sink that the CLI thread waits on. OnOutput (engine thread) only queues and notifies.
class BlockingSink final : public RequestSink {
 public:
  void OnOutput(RequestOutput output) override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      outputs_.push_back(std::move(output));
    }
    cv_.notify_one();
  }
  // Blocks until the next output arrives.
  RequestOutput Next() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [this] { return !outputs_.empty(); });
    RequestOutput out = std::move(outputs_.front());
    outputs_.pop_front();
    return out;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<RequestOutput> outputs_;
};

std::string JsonString(const std::string& s) {
  return nlohmann::json(s).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string JsonIds(const std::vector<int32_t>& ids) {
  return absl::StrCat("[", absl::StrJoin(ids, ", "), "]");
}

absl::Status ReadSamplingFlags(const ParsedArgs& args, EngineRequest* request) {
  auto max_tokens = args.GetInt("max-tokens", 64, INT32_MIN, INT32_MAX);
  auto temperature = args.GetDouble("temperature", 0.0);
  auto top_k = args.GetInt("top-k", 0, INT32_MIN, INT32_MAX);
  auto top_p = args.GetDouble("top-p", 1.0);
  auto seed = args.GetInt("seed", 0, 0, INT64_MAX);
  for (const absl::Status& s :
       {max_tokens.status(), temperature.status(), top_k.status(), top_p.status(), seed.status()}) {
    if (!s.ok()) return s;
  }
  request->max_tokens = static_cast<int32_t>(*max_tokens);
  request->sampling.temperature = static_cast<float>(*temperature);
  request->sampling.top_k = static_cast<int32_t>(*top_k);
  request->sampling.top_p = static_cast<float>(*top_p);
  if (args.Has("seed")) request->sampling.seed = static_cast<uint64_t>(*seed);
  request->ignore_eos = args.Has("ignore-eos");
  return absl::OkStatus();
}

}  // namespace

int RunGenerate(absl::Span<const char* const> argv) {
  absl::StatusOr<ParsedArgs> args;
  const std::vector<FlagSpec> flags = WithEngineFlags(kGenerateFlags);
  if (int rc = ParseOrExit("generate", flags, argv, &args); rc >= 0) return rc;
  if (!args->Has("model") || !args->Has("prompt")) {
    std::fprintf(stderr, "kvasir generate: --model and --prompt are required\n");
    return kExitUsage;
  }
  EngineRequest request;
  request.id = "cli";
  EngineOptions options;
  options.model_path = args->GetString("model", "");
  options.max_num_seqs = 1;
  for (const absl::Status& s :
       {ReadSamplingFlags(*args, &request), ReadEngineFlags(*args, &options)}) {
    if (!s.ok()) {
      std::fprintf(stderr, "kvasir generate: %s\n", std::string(s.message()).c_str());
      return kExitUsage;
    }
  }
  auto engine = Engine::Create(options);
  if (!engine.ok()) return Fail("generate", engine.status());
  // The prompt is tokenized exactly as the server tokenizes GenerateRequest.text by default.
  auto prompt_ids = TokenizeText((*engine)->tokenizer(), "--prompt", args->GetString("prompt", ""),
                                 /*add_special_tokens=*/true);
  if (!prompt_ids.ok()) return Fail("generate", prompt_ids.status());
  request.prompt_ids = *std::move(prompt_ids);

  auto sink = std::make_shared<BlockingSink>();
  if (absl::Status s = (*engine)->Submit(request, sink); !s.ok()) return Fail("generate", s);
  const bool json = args->Has("json");
  std::string text;
  std::vector<int32_t> ids;
  for (;;) {
    RequestOutput out = sink->Next();
    if (out.finish_reason == FinishReason::kError) return Fail("generate", out.error);
    ids.insert(ids.end(), out.token_ids.begin(), out.token_ids.end());
    if (!json) {
      std::fwrite(out.text.data(), 1, out.text.size(), stdout);
      std::fflush(stdout);
    }
    text += out.text;
    if (out.finish_reason != FinishReason::kNone) break;
  }
  if (json) {
    std::printf("{\"text\": %s, \"token_ids\": %s}\n", JsonString(text).c_str(),
                JsonIds(ids).c_str());
  } else {
    std::printf("\n");
  }
  (*engine)->Shutdown();
  return kExitOk;
}

int RunTokenize(absl::Span<const char* const> argv) {
  absl::StatusOr<ParsedArgs> args;
  if (int rc = ParseOrExit("tokenize", kTokenizeFlags, argv, &args); rc >= 0) return rc;
  if (!args->Has("model") || !args->Has("text")) {
    std::fprintf(stderr, "kvasir tokenize: --model and --text are required\n");
    return kExitUsage;
  }
  auto tokenizer = LoadTokenizer(args->GetString("model", ""));
  if (!tokenizer.ok()) return Fail("tokenize", tokenizer.status());
  auto ids = TokenizeText(tokenizer->get(), "--text", args->GetString("text", ""),
                          !args->Has("no-special"));
  if (!ids.ok()) return Fail("tokenize", ids.status());
  if (args->Has("json")) {
    std::printf("{\"token_ids\": %s}\n", JsonIds(*ids).c_str());
  } else {
    std::printf("%s\n", absl::StrJoin(*ids, " ").c_str());
  }
  return kExitOk;
}

}  // namespace kvasir::server
