// kvasir bench: a load generator for a running server, over the async (callback) gRPC client.
//
// Closed loop (default): --concurrency requests in flight, a new one as each ends. Open loop
// (--rate R): requests start at R per second (Poisson arrivals), at most --concurrency in flight.
// Stops after --requests or --duration. Prompts from --prompts FILE.jsonl ({"text": ...,
// "max_tokens": N} per line, max_tokens optional) or synthetic token ids (--prompt-tokens).
// Reports what ghz reports (count, total, requests/s, latency distribution and percentiles,
// status codes) plus what ghz cannot see inside a stream: time to first token, inter-token
// latency and output tokens/s; as a table, and as JSON with --json FILE.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "grpcpp/grpcpp.h"
#include "kvasir/v1/kvasir.grpc.pb.h"
#include "nlohmann/json.hpp"
#include "server/cli_args.h"
#include "server/commands.h"

namespace kvasir::server {
namespace {

using Clock = std::chrono::steady_clock;

const FlagSpec kBenchFlags[] = {
    {"target", true, "HOST:PORT", "the server (default localhost:50051)"},
    {"concurrency", true, "N",
     "requests in flight (closed loop), or at most (open loop); default 8"},
    {"rate", true, "R", "open loop: start R requests per second (Poisson); 0 = closed loop"},
    {"requests", true, "N", "stop after N requests (default 100 unless --duration)"},
    {"duration", true, "S", "stop starting requests after S seconds"},
    {"prompts", true, "FILE", "JSONL prompts: {\"text\": ..., \"max_tokens\": N} per line"},
    {"prompt-tokens", true, "N", "synthetic prompts of N random token ids (default 128)"},
    {"max-tokens", true, "N", "tokens to generate per request (default 64)"},
    {"channels", true, "N", "gRPC channels (connections) to spread calls over (default 1)"},
    {"unary", false, "", "call Complete (one reply) instead of streaming Generate"},
    {"seed", true, "S", "random seed for synthetic prompts and arrivals (default 1)"},
    {"json", true, "FILE", "also write the report as JSON to FILE ('-' = stdout only JSON)"},
};

struct Prompt {
  std::string text;
  int32_t max_tokens = 0;
};

struct CallRecord {
  Clock::time_point start, first_token, end;
  std::vector<Clock::time_point> token_times;  // when each message with tokens arrived
  std::vector<int32_t> tokens_per_message;
  int64_t output_tokens = 0;
  grpc::StatusCode code = grpc::StatusCode::OK;
};

class LoadRun;

// One streaming Generate call.
class StreamCall final : public grpc::ClientReadReactor<v1::GenerateResponse> {
 public:
  StreamCall(LoadRun* run, v1::Kvasir::Stub* stub, v1::GenerateRequest request);
  void OnReadDone(bool ok) override;
  void OnDone(const grpc::Status& status) override;

 private:
  LoadRun* const run_;
  grpc::ClientContext context_;
  v1::GenerateRequest request_;
  v1::GenerateResponse response_;
  CallRecord record_;
};

class LoadRun {
 public:
  // Prompts from a file (cycled), or, when prompts is empty, synthetic ones of
  // synthetic_tokens random ids generating synthetic_max_tokens each.
  LoadRun(std::vector<std::unique_ptr<v1::Kvasir::Stub>> stubs, std::vector<Prompt> prompts,
          int32_t synthetic_tokens, int32_t synthetic_max_tokens, int concurrency, double rate,
          int64_t max_requests, double duration_s, bool unary, uint64_t seed)
      : stubs_(std::move(stubs)),
        prompts_(std::move(prompts)),
        synthetic_tokens_(prompts_.empty() ? synthetic_tokens : 0),
        synthetic_max_tokens_(synthetic_max_tokens),
        seed_(seed),
        concurrency_(concurrency),
        rate_(rate),
        max_requests_(max_requests),
        duration_s_(duration_s),
        unary_(unary),
        rng_(seed) {}

  // Synthetic ids are drawn from [1, vocab).
  void set_vocab(int64_t vocab) { synthetic_vocab_ = std::max<int64_t>(vocab, 2); }

  std::vector<CallRecord> Run() {
    begin_ = Clock::now();
    if (rate_ > 0) {
      std::exponential_distribution<double> gap(rate_);
      Clock::time_point next = begin_;
      for (;;) {
        std::this_thread::sleep_until(next);
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] { return in_flight_ < concurrency_; });
        if (!MayStartLocked()) break;
        Launch launch = PrepareLocked();
        lock.unlock();
        Start(std::move(launch));
        next +=
            std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(gap(rng_)));
      }
    } else {
      std::vector<Launch> launches;
      {
        std::lock_guard<std::mutex> lock(mu_);
        for (int i = 0; i < concurrency_ && MayStartLocked(); ++i) {
          launches.push_back(PrepareLocked());
        }
      }
      for (Launch& l : launches) Start(std::move(l));
    }
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return in_flight_ == 0 && (rate_ > 0 || !MayStartLocked()); });
    end_ = Clock::now();
    return std::move(records_);
  }

  void Finished(CallRecord record) {
    std::optional<Launch> next;
    {
      std::lock_guard<std::mutex> lock(mu_);
      records_.push_back(std::move(record));
      --in_flight_;
      if (rate_ <= 0 && MayStartLocked()) next = PrepareLocked();  // closed loop: replace it
      cv_.notify_all();
    }
    // Outside the lock: a call may complete (and come back here) before Start returns.
    if (next.has_value()) Start(*std::move(next));
  }

  double wall_seconds() const { return std::chrono::duration<double>(end_ - begin_).count(); }

 private:
  bool MayStartLocked() const {
    if (max_requests_ > 0 && started_ >= max_requests_) return false;
    if (duration_s_ > 0 &&
        std::chrono::duration<double>(Clock::now() - begin_).count() >= duration_s_) {
      return false;
    }
    return true;
  }

  v1::GenerateRequest NextRequestLocked() {
    v1::GenerateRequest r;
    if (synthetic_tokens_ > 0) {
      // A fresh random prompt per request: no request hits another's prefix in the cache.
      std::mt19937_64 g(seed_ * 0x9e3779b97f4a7c15ull + static_cast<uint64_t>(started_));
      for (int32_t t = 0; t < synthetic_tokens_; ++t) {
        r.mutable_token_ids()->add_ids(static_cast<int32_t>(1 + g() % (synthetic_vocab_ - 1)));
      }
      r.set_max_tokens(synthetic_max_tokens_);
    } else {
      const Prompt& p = prompts_[started_ % prompts_.size()];
      r.set_text(p.text);
      r.set_max_tokens(p.max_tokens);
    }
    r.set_ignore_eos(true);
    return r;
  }

  struct Launch {
    v1::Kvasir::Stub* stub;
    v1::GenerateRequest request;
  };

  Launch PrepareLocked() {
    Launch l{stubs_[started_ % stubs_.size()].get(), NextRequestLocked()};
    ++started_;
    ++in_flight_;
    return l;
  }

  void Start(Launch launch) {
    v1::Kvasir::Stub* stub = launch.stub;
    v1::GenerateRequest request = std::move(launch.request);
    if (!unary_) {
      new StreamCall(this, stub, std::move(request));  // deletes itself in OnDone
      return;
    }
    struct Unary {
      grpc::ClientContext context;
      v1::GenerateRequest request;
      v1::GenerateResponse response;
      CallRecord record;
    };
    auto* u = new Unary{{}, std::move(request), {}, {}};
    u->record.start = Clock::now();
    stub->async()->Complete(&u->context, &u->request, &u->response,
                            [this, u](const grpc::Status& status) {
                              u->record.end = Clock::now();
                              u->record.code = status.error_code();
                              if (status.ok()) {
                                const int n = u->response.complete().token_ids_size();
                                u->record.output_tokens = n;
                                u->record.first_token = u->record.end;
                              }
                              CallRecord rec = std::move(u->record);
                              delete u;
                              Finished(std::move(rec));
                            });
  }

  std::vector<std::unique_ptr<v1::Kvasir::Stub>> stubs_;
  std::vector<Prompt> prompts_;
  const int32_t synthetic_tokens_;
  int64_t synthetic_vocab_ = 2;
  const int32_t synthetic_max_tokens_;
  const uint64_t seed_;
  const int concurrency_;
  const double rate_;
  const int64_t max_requests_;
  const double duration_s_;
  const bool unary_;
  std::mt19937_64 rng_;
  std::mutex mu_;
  std::condition_variable cv_;
  int64_t started_ = 0;              // guarded by mu_
  int in_flight_ = 0;                // guarded by mu_
  std::vector<CallRecord> records_;  // guarded by mu_
  Clock::time_point begin_, end_;
};

StreamCall::StreamCall(LoadRun* run, v1::Kvasir::Stub* stub, v1::GenerateRequest request)
    : run_(run), request_(std::move(request)) {
  record_.start = Clock::now();
  stub->async()->Generate(&context_, &request_, this);
  StartRead(&response_);
  StartCall();
}

void StreamCall::OnReadDone(bool ok) {
  if (!ok) return;  // OnDone follows
  const Clock::time_point now = Clock::now();
  const int n = response_.has_chunk() ? response_.chunk().token_ids_size()
                                      : response_.complete().token_ids_size();
  if (n > 0) {
    if (record_.output_tokens == 0) record_.first_token = now;
    record_.token_times.push_back(now);
    record_.tokens_per_message.push_back(n);
    record_.output_tokens += n;
  }
  StartRead(&response_);
}

void StreamCall::OnDone(const grpc::Status& status) {
  record_.end = Clock::now();
  record_.code = status.error_code();
  LoadRun* run = run_;
  CallRecord record = std::move(record_);
  delete this;
  run->Finished(std::move(record));
}

double Percentile(std::vector<double>& sorted, double q) {
  if (sorted.empty()) return 0.0;
  const double pos = q * (sorted.size() - 1);
  const size_t lo = static_cast<size_t>(pos);
  const size_t hi = std::min(lo + 1, sorted.size() - 1);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
}

nlohmann::json Distribution(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  nlohmann::json d;
  d["count"] = v.size();
  if (v.empty()) return d;
  double sum = 0;
  for (double x : v) sum += x;
  d["min"] = v.front();
  d["mean"] = sum / v.size();
  d["max"] = v.back();
  for (double q : {0.10, 0.25, 0.50, 0.75, 0.90, 0.95, 0.99}) {
    d[absl::StrFormat("p%g", q * 100)] = Percentile(v, q);
  }
  return d;
}

std::string StatusName(grpc::StatusCode code) {
  static const char* const kNames[] = {"OK",
                                       "CANCELLED",
                                       "UNKNOWN",
                                       "INVALID_ARGUMENT",
                                       "DEADLINE_EXCEEDED",
                                       "NOT_FOUND",
                                       "ALREADY_EXISTS",
                                       "PERMISSION_DENIED",
                                       "RESOURCE_EXHAUSTED",
                                       "FAILED_PRECONDITION",
                                       "ABORTED",
                                       "OUT_OF_RANGE",
                                       "UNIMPLEMENTED",
                                       "INTERNAL",
                                       "UNAVAILABLE",
                                       "DATA_LOSS",
                                       "UNAUTHENTICATED"};
  const int c = static_cast<int>(code);
  return c >= 0 && c <= 16 ? kNames[c] : absl::StrCat("CODE_", c);
}

void PrintDistribution(const char* name, const nlohmann::json& d, double scale, const char* unit) {
  if (d["count"].get<size_t>() == 0) {
    std::printf("  %-22s (none)\n", name);
    return;
  }
  std::printf("  %-22s mean %8.2f  p50 %8.2f  p90 %8.2f  p95 %8.2f  p99 %8.2f  max %8.2f %s\n",
              name, d["mean"].get<double>() * scale, d["p50"].get<double>() * scale,
              d["p90"].get<double>() * scale, d["p95"].get<double>() * scale,
              d["p99"].get<double>() * scale, d["max"].get<double>() * scale, unit);
}

}  // namespace

int RunBench(absl::Span<const char* const> argv) {
  absl::StatusOr<ParsedArgs> args = ParseArgs(kBenchFlags, argv);
  if (!args.ok() || args->help) {
    if (!args.ok()) {
      std::fprintf(stderr, "kvasir bench: %s\n\n", std::string(args.status().message()).c_str());
    }
    std::fprintf(args.ok() ? stdout : stderr, "usage: kvasir bench [flags]\n\n%s",
                 FlagsHelp(kBenchFlags).c_str());
    return args.ok() ? kExitOk : kExitUsage;
  }
  auto concurrency = args->GetInt("concurrency", 8, 1, 1 << 20);
  auto rate = args->GetDouble("rate", 0.0);
  auto duration = args->GetDouble("duration", 0.0);
  auto requests = args->GetInt("requests", args->Has("duration") ? 0 : 100, 0, INT64_MAX);
  auto prompt_tokens = args->GetInt("prompt-tokens", 128, 1, 1 << 20);
  auto max_tokens = args->GetInt("max-tokens", 64, 1, 1 << 20);
  auto channels = args->GetInt("channels", 1, 1, 1024);
  auto seed = args->GetInt("seed", 1, 0, INT64_MAX);
  for (const absl::Status& s :
       {concurrency.status(), rate.status(), duration.status(), requests.status(),
        prompt_tokens.status(), max_tokens.status(), channels.status(), seed.status()}) {
    if (!s.ok()) {
      std::fprintf(stderr, "kvasir bench: %s\n", std::string(s.message()).c_str());
      return kExitUsage;
    }
  }
  if (*requests == 0 && *duration <= 0) {
    std::fprintf(stderr, "kvasir bench: give --requests N or --duration S\n");
    return kExitUsage;
  }
  const std::string target = args->GetString("target", "localhost:50051");
  std::vector<Prompt> prompts;
  if (args->Has("prompts")) {
    const std::string path = args->GetString("prompts", "");
    std::ifstream in(path);
    if (!in) {
      std::fprintf(stderr, "kvasir bench: cannot read %s\n", path.c_str());
      return kExitFailure;
    }
    int line_no = 0;
    for (std::string line; std::getline(in, line);) {
      ++line_no;
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      const nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
      if (!j.is_object() || !j.contains("text") || !j["text"].is_string()) {
        std::fprintf(stderr, "kvasir bench: %s:%d: expected {\"text\": ..., \"max_tokens\": N}\n",
                     path.c_str(), line_no);
        return kExitFailure;
      }
      Prompt p;
      p.text = j["text"].get<std::string>();
      p.max_tokens = j.contains("max_tokens") && j["max_tokens"].is_number_integer()
                         ? j["max_tokens"].get<int32_t>()
                         : static_cast<int32_t>(*max_tokens);
      prompts.push_back(std::move(p));
    }
    if (prompts.empty()) {
      std::fprintf(stderr, "kvasir bench: %s holds no prompts\n", path.c_str());
      return kExitFailure;
    }
  }
  // Synthetic prompts (no --prompts): random ids in a range every model's vocab has.

  std::vector<std::unique_ptr<v1::Kvasir::Stub>> stubs;
  for (int64_t c = 0; c < *channels; ++c) {
    grpc::ChannelArguments ch_args;
    ch_args.SetInt("kvasir.channel_index", static_cast<int>(c));  // distinct connections
    ch_args.SetMaxReceiveMessageSize(64 << 20);
    stubs.push_back(v1::Kvasir::NewStub(
        grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), ch_args)));
  }
  const bool unary = args->Has("unary");
  // The server's vocabulary bounds the synthetic token ids.
  v1::ModelInfo info;
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    const grpc::Status s = stubs[0]->GetModelInfo(&ctx, v1::GetModelInfoRequest(), &info);
    if (!s.ok()) {
      std::fprintf(stderr, "kvasir bench: GetModelInfo on %s failed: %s\n", target.c_str(),
                   s.error_message().c_str());
      return kExitFailure;
    }
  }
  LoadRun run(std::move(stubs), std::move(prompts), static_cast<int32_t>(*prompt_tokens),
              static_cast<int32_t>(*max_tokens), static_cast<int>(*concurrency), *rate, *requests,
              *duration, unary, static_cast<uint64_t>(*seed));
  run.set_vocab(std::min<int64_t>(info.vocab_size(), 32000));
  const std::vector<CallRecord> records = run.Run();
  const double wall = run.wall_seconds();

  std::vector<double> latency, ttft, itl;
  std::map<std::string, int64_t> codes;
  int64_t output_tokens = 0;
  for (const CallRecord& r : records) {
    ++codes[StatusName(r.code)];
    latency.push_back(std::chrono::duration<double>(r.end - r.start).count());
    if (r.code != grpc::StatusCode::OK) continue;
    output_tokens += r.output_tokens;
    if (r.output_tokens > 0) {
      ttft.push_back(std::chrono::duration<double>(r.first_token - r.start).count());
    }
    for (size_t i = 1; i < r.token_times.size(); ++i) {
      // A message may carry several tokens: spread its gap over them.
      const double gap =
          std::chrono::duration<double>(r.token_times[i] - r.token_times[i - 1]).count() /
          r.tokens_per_message[i];
      for (int k = 0; k < r.tokens_per_message[i]; ++k) itl.push_back(gap);
    }
  }
  nlohmann::json report;
  report["target"] = target;
  report["call"] = unary ? "kvasir.v1.Kvasir.Complete" : "kvasir.v1.Kvasir.Generate";
  report["concurrency"] = *concurrency;
  report["rate"] = *rate;
  report["channels"] = *channels;
  report["count"] = records.size();
  report["total_s"] = wall;
  report["rps"] = wall > 0 ? records.size() / wall : 0.0;
  report["output_tokens"] = output_tokens;
  report["output_tokens_per_s"] = wall > 0 ? output_tokens / wall : 0.0;
  report["latency_s"] = Distribution(latency);
  report["ttft_s"] = Distribution(ttft);
  report["itl_s"] = Distribution(itl);
  report["status_codes"] = codes;

  const std::string json_path = args->GetString("json", "");
  const int exit_code = codes.size() == 1 && codes.count("OK") == 1 ? kExitOk : kExitFailure;
  if (json_path == "-") {
    std::printf("%s\n", report.dump(2).c_str());
    return exit_code;
  }
  std::printf(
      "Summary (%s on %s, %lld channel%s, %s):\n", report["call"].get<std::string>().c_str(),
      target.c_str(), static_cast<long long>(*channels), *channels == 1 ? "" : "s",
      *rate > 0
          ? absl::StrFormat("open loop %.1f req/s, at most %lld in flight", *rate,
                            static_cast<long long>(*concurrency))
                .c_str()
          : absl::StrFormat("closed loop, %lld in flight", static_cast<long long>(*concurrency))
                .c_str());
  std::printf("  count %zu  total %.2f s  %.2f req/s  output %lld tokens, %.1f tokens/s\n",
              records.size(), wall, report["rps"].get<double>(),
              static_cast<long long>(output_tokens), report["output_tokens_per_s"].get<double>());
  PrintDistribution("latency (whole call)", report["latency_s"], 1e3, "ms");
  PrintDistribution("time to first token", report["ttft_s"], 1e3, "ms");
  PrintDistribution("inter-token latency", report["itl_s"], 1e3, "ms");
  std::printf("  status codes:");
  for (const auto& [name, n] : codes)
    std::printf(" %s=%lld", name.c_str(), static_cast<long long>(n));
  std::printf("\n");
  if (!json_path.empty()) {
    std::ofstream out(json_path);
    out << report.dump(2) << "\n";
    if (!out) {
      std::fprintf(stderr, "kvasir bench: cannot write %s\n", json_path.c_str());
      return kExitFailure;
    }
  }
  return exit_code;
}

}  // namespace kvasir::server
