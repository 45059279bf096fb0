#include "engine/engine.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <random>
#include <span>
#include <thread>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "engine/model_loader.h"
#include "engine/model_runner.h"
#include "engine/request_validation.h"
#include "engine/sampler.h"
#include "engine/stop_strings.h"
#include "engine/tokenizer/chat_template.h"
#include "engine/util/status_macros.h"
#include "kernels/check.h"
#include "kernels/cpu/cpu_features.h"
#include "scheduler/scheduler.h"

namespace kvasir {

const char* FinishReasonName(FinishReason r) {
  switch (r) {
    case FinishReason::kNone:
      return "none";
    case FinishReason::kStop:
      return "stop";
    case FinishReason::kLength:
      return "length";
    case FinishReason::kAbort:
      return "abort";
    case FinishReason::kError:
      return "error";
  }
  return "?";
}

void AppendOutput(RequestOutput& into, RequestOutput&& next) {
  if (!next.prompt_logprobs.empty()) into.prompt_logprobs = std::move(next.prompt_logprobs);
  into.token_ids.insert(into.token_ids.end(), next.token_ids.begin(), next.token_ids.end());
  into.logprobs.insert(into.logprobs.end(), std::make_move_iterator(next.logprobs.begin()),
                       std::make_move_iterator(next.logprobs.end()));
  into.text += next.text;
  into.index = next.index;
  into.finish_reason = next.finish_reason;
  into.final_output = next.final_output;
  into.stop_string = std::move(next.stop_string);
  into.stop_token = next.stop_token;
  into.error = std::move(next.error);
  into.usage = next.usage;
  into.timings = next.timings;
}

const char* RequestEventKindName(RequestEventKind kind) {
  switch (kind) {
    case RequestEventKind::kArrived:
      return "arrived";
    case RequestEventKind::kScheduled:
      return "scheduled";
    case RequestEventKind::kFirstToken:
      return "first_token";
    case RequestEventKind::kToken:
      return "token";
    case RequestEventKind::kPreempted:
      return "preempted";
    case RequestEventKind::kFinished:
      return "finished";
  }
  return "?";
}

namespace {

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

constexpr int64_t kDefaultMaxModelLen = 8192;
constexpr int64_t kMaxDefaultKvBytes = int64_t{2} << 30;

// A request between Submit and the loop picking it up.
struct Pending {
  EngineRequest request;
  std::shared_ptr<RequestSink> sink;
  int64_t arrival_ns = 0;
};

// Per-choice state owned by the loop thread (a request has n choices).
struct Live {
  int32_t index = 0;                             // the choice
  std::shared_ptr<const EngineRequest> request;  // shared by the request's choices
  std::shared_ptr<RequestSink> sink;
  std::unique_ptr<IncrementalDetokenizer> detokenizer;  // null without a tokenizer
  std::unique_ptr<StopStringMatcher> stop_strings;      // null without stop strings
  uint64_t seed = 0;
  // Every id that ends it: the model's (unless ignore_eos) and its own.
  std::vector<int32_t> stop_ids;
  Timings timings;
  // Penalty history, kept only when a penalty needs it.
  absl::flat_hash_set<int32_t> prompt_tokens;
  absl::flat_hash_map<int32_t, int32_t> output_counts;
  RequestOutput unsent;                       // tokens held back by stream_interval
  std::vector<TokenLogprob> prompt_logprobs;  // computed so far (prompt_logprobs requests)
};

// The choices of one request, loop thread only.
struct Group {
  std::vector<uint64_t> uids;  // choices not finished yet
  // Choices 1..n-1 while choice 0 computes the prompt's KV: they are scheduled once it has (and
  // find the prompt's full blocks in the prefix cache).
  std::vector<std::unique_ptr<Sequence>> held;
};

// The seed of choice `index` (choice 0: the request's seed itself).
uint64_t ChoiceSeed(uint64_t seed, int32_t index) {
  if (index == 0) return seed;
  uint64_t z = seed + 0x9E3779B97F4A7C15ull * static_cast<uint64_t>(index);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

absl::StatusOr<ChatTemplate> ParseChatTemplate(const LoadedModel& model) {
  if (model.tokenizer == nullptr || model.tokenizer->chat_template().empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("the model ", model.name, " has no chat template"));
  }
  absl::StatusOr<ChatTemplate> t = ChatTemplate::Parse(model.tokenizer->chat_template());
  if (!t.ok()) {  // the server's model, not the request, is at fault
    return absl::FailedPreconditionError(absl::StrCat("the chat template of ", model.name,
                                                      " cannot be used: ", t.status().message()));
  }
  return t;
}

}  // namespace

class Engine::Impl {
 public:
  absl::Status Init(const EngineOptions& options);
  ~Impl() { Shutdown(); }

  absl::Status Submit(EngineRequest request, std::shared_ptr<RequestSink> sink);
  void Abort(const std::string& id);
  void Shutdown();
  EngineLoads GetLoads() const;

  ModelInfo info;
  LoadedModel model;
  absl::StatusOr<ChatTemplate> chat_template = absl::FailedPreconditionError("not loaded");

 private:
  void Loop();
  void Admit(std::vector<Pending>& pending);
  Live NewLive(std::shared_ptr<const EngineRequest> request, int32_t index, const Pending& p);
  // Schedules the held choices of request `id` (its first choice has computed the prompt).
  void ReleaseHeld(const std::string& id);
  void FinishRequest(const std::string& id, FinishReason reason);
  void Step();
  // Publishes the scheduler's state for GetLoads (and marks progress for the watchdog).
  void PublishLoads();
  // Sends the final output and forgets the request.
  void Finish(uint64_t uid, FinishReason reason, RequestOutput out);
  // Prompt logprobs from the rows of a sequence's prompt positions in this step.
  void CollectPromptLogprobs(const ScheduledSequence& ss, const float* rows);
  // Fills sample_request_ and returns true when the backend can sample every logits row of the
  // step itself (no prompt-logprob rows, which read whole rows): then only token ids and
  // log-probabilities leave the device.
  bool PrepareBackendSampling(const StepBatch& batch);
  // What a step's model run left for sampling: the backend's samples, or the logits.
  struct StepSamples {
    bool on_backend = false;
    SampledRows sampled;            // on_backend
    std::span<const float> logits;  // otherwise: [rows, vocab] on the host
  };
  // The token of logits row `row` (the step-th token of live's sequence) and, when its request
  // asks for them, its log-probabilities (appended to `logprobs`).
  int32_t TakeToken(const StepSamples& s, int64_t row, Live& live, int32_t step,
                    std::vector<TokenLogprob>* logprobs);
  // Appends the sampled token to its sequence and sends the output (or finishes the request on
  // a stop token, a stop string or its length).
  void AppendToken(uint64_t uid, Live& live, int32_t step, int32_t token,
                   std::vector<TokenLogprob> logprobs, int64_t end_ns);
  // `index`: the sequence's choice.
  void Emit(RequestEventKind kind, const Sequence& seq, int32_t index, int64_t time_ns,
            FinishReason reason = FinishReason::kNone);

  EngineOptions options_;
  std::unique_ptr<ModelRunner> runner_;
  std::unique_ptr<KvCacheManager> kv_;
  std::unique_ptr<Scheduler> scheduler_;
  Sampler sampler_;
  SampleRowsRequest sample_request_;
  absl::flat_hash_set<int32_t> stop_ids_;
  std::shared_ptr<EngineObserver> observer_;  // may be null

  // Shared with Submit/Abort callers.
  mutable std::mutex mu_;
  std::condition_variable wake_;
  std::vector<Pending> inbox_;                 // guarded by mu_
  std::vector<std::string> aborts_;            // guarded by mu_
  absl::flat_hash_set<std::string> live_ids_;  // guarded by mu_: submitted, not yet finished
  bool stopping_ = false;                      // guarded by mu_
  std::random_device entropy_;                 // guarded by mu_: seeds for unseeded requests
  EngineLoads loads_;                          // guarded by mu_: published by the loop
  int64_t busy_since_ns_ = 0;  // guarded by mu_: when the loop last made progress with work

  // Loop thread only.
  uint64_t next_uid_ = 1;
  int64_t step_ = 0;  // steps completed
  absl::flat_hash_map<uint64_t, Live> live_;
  absl::flat_hash_map<std::string, Group> groups_;  // by request id
  std::thread thread_;
  std::once_flag join_once_;
};

absl::Status Engine::Impl::Init(const EngineOptions& options) {
  options_ = options;
  if (options.max_num_seqs < 1 || options.max_batched_tokens < options.max_num_seqs) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_batched_tokens (", options.max_batched_tokens,
                     ") must be >= max_num_seqs (", options.max_num_seqs,
                     ") >= 1, so that every running "
                     "sequence can decode in every step"));
  }
  if (options.stream_interval < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("stream_interval must be >= 1, got ", options.stream_interval));
  }
  if (options.long_prefill_chunk < 0 || options.max_long_partial_prefills < 1) {
    return absl::InvalidArgumentError(
        "long_prefill_chunk must be >= 0 and max_long_partial_prefills >= 1");
  }
  observer_ = options.observer;
  KV_ASSIGN_OR_RETURN(
      model, LoadModel(options.model_path, {.dummy_weights = options.dummy_weights,
                                            .dummy_on_device = options.device == Device::kCuda}));
  const ModelConfig& c = model.config;
  int64_t max_len = std::min(c.max_position_embeddings, kDefaultMaxModelLen);
  if (options.max_model_len > 0)
    max_len = std::min(options.max_model_len, c.max_position_embeddings);
  if (max_len <= 0) max_len = kDefaultMaxModelLen;

  RunnerOptions ro;
  ro.device = options.device;
  ro.cuda_device = options.cuda_device;
  ro.gpu_memory_utilization = options.gpu_memory_utilization;
  ro.cuda_graphs = options.cuda_graphs;
  ro.max_num_seqs = options.max_num_seqs;
  ro.max_batched_tokens = options.max_batched_tokens;
  ro.max_model_len = static_cast<int32_t>(max_len);
  ro.num_threads = options.num_threads;
  ro.block_size = options.block_size;
  ro.kv_cache_bytes = options.kv_cache_bytes;
  ro.default_kv_tokens = max_len * options.max_num_seqs;
  ro.max_default_kv_bytes = kMaxDefaultKvBytes;
  KV_ASSIGN_OR_RETURN(runner_, ModelRunner::Create(c, *model.weights, ro));
  const KvCacheSpec& kv = runner_->kv_spec();
  kv_ = std::make_unique<KvCacheManager>(KvCacheConfig{
      .num_blocks = kv.num_blocks,
      .block_size = kv.block_size,
      .enable_prefix_caching = options.enable_prefix_caching,
  });
  SchedulerConfig sc;
  sc.max_num_seqs = options.max_num_seqs;
  sc.max_batched_tokens = options.max_batched_tokens;
  sc.long_prefill_chunk = options.long_prefill_chunk;
  sc.max_long_partial_prefills = options.max_long_partial_prefills;
  scheduler_ = std::make_unique<Scheduler>(sc, kv_.get());

  for (int64_t id : c.eos_token_ids) stop_ids_.insert(static_cast<int32_t>(id));
  if (model.tokenizer) {
    for (int32_t id : model.tokenizer->stop_ids()) stop_ids_.insert(id);
  }
  chat_template = ParseChatTemplate(model);
  info.name = model.name;
  info.architecture = c.architecture;
  info.format = model.format;
  // The first layer's query projection (DeepSeek with q_lora_rank: its q_a_proj).
  for (const char* name :
       {"model.layers.0.self_attn.q_proj.weight", "model.layers.0.self_attn.q_a_proj.weight"}) {
    if (auto q = model.weights->Get(name); q.ok()) {
      info.weight_dtype = std::string(DTypeName(q->dtype));
      break;
    }
  }
  info.vocab_size = c.vocab_size;
  info.max_model_len = max_len;
  info.num_layers = c.num_layers;
  info.hidden_size = c.hidden_size;
  info.stop_ids.assign(stop_ids_.begin(), stop_ids_.end());
  std::sort(info.stop_ids.begin(), info.stop_ids.end());
  info.kernels = runner_->Describe();
  info.kv_block_size = kv.block_size;
  info.kv_num_blocks = kv.num_blocks;
  info.kv_bytes_per_token = kv.bytes_per_token();
  info.prefix_caching = options.enable_prefix_caching;
  info.max_num_seqs = options.max_num_seqs;
  info.max_batched_tokens = options.max_batched_tokens;
  thread_ = std::thread([this] { Loop(); });
  return absl::OkStatus();
}

absl::Status Engine::Impl::Submit(EngineRequest request, std::shared_ptr<RequestSink> sink) {
  // The pool's geometry is fixed after Init, so CanEverFit is safe from any thread.
  KV_RETURN_IF_ERROR(ValidateRequest(
      request, {.vocab_size = info.vocab_size,
                .max_model_len = info.max_model_len,
                .kv_capacity_tokens = int64_t{info.kv_num_blocks} * info.kv_block_size,
                .has_tokenizer = model.tokenizer != nullptr,
                .can_ever_fit = [this](int64_t n) { return scheduler_->CanEverFit(n); }}));
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return absl::FailedPreconditionError("the engine is shutting down");
    if (options_.max_waiting > 0 &&
        loads_.num_waiting + static_cast<int64_t>(inbox_.size()) >= options_.max_waiting) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "the waiting queue is full (", options_.max_waiting, " requests); retry later"));
    }
    if (!live_ids_.insert(request.id).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("request id '", request.id, "' is already in use"));
    }
    // An abort still queued for this id was meant for an earlier request that has finished
    // since (the id was not live a moment ago); it must not reach this one.
    std::erase(aborts_, request.id);
    if (!request.sampling.seed.has_value()) {
      request.sampling.seed = (uint64_t{entropy_()} << 32) | entropy_();
    }
    // Leaving idle: the watchdog must measure progress from now, not from the last step.
    if (inbox_.empty() && loads_.num_running + loads_.num_waiting == 0) busy_since_ns_ = NowNs();
    inbox_.push_back({std::move(request), std::move(sink), NowNs()});
  }
  wake_.notify_one();
  return absl::OkStatus();
}

void Engine::Impl::Abort(const std::string& id) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!live_ids_.contains(id)) return;
    aborts_.push_back(id);
  }
  wake_.notify_one();
}

void Engine::Impl::Shutdown() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  wake_.notify_one();
  // Concurrent callers all wait here until the one join has finished.
  std::call_once(join_once_, [this] {
    if (thread_.joinable()) thread_.join();
  });
}

void Engine::Impl::Loop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    loads_.loop_alive = true;
    busy_since_ns_ = NowNs();
  }
  for (;;) {
    std::vector<Pending> pending;
    std::vector<std::string> aborts;
    bool stopping;
    {
      std::unique_lock<std::mutex> lock(mu_);
      wake_.wait(
          lock, [&] { return stopping_ || !inbox_.empty() || !aborts_.empty() || !live_.empty(); });
      pending.swap(inbox_);
      aborts.swap(aborts_);
      stopping = stopping_;
      loads_.num_waiting += static_cast<int32_t>(pending.size());  // until the next publish
      if (live_.empty()) busy_since_ns_ = NowNs();                 // idle until now: not stalled
    }
    Admit(pending);
    for (const std::string& id : aborts) FinishRequest(id, FinishReason::kAbort);
    if (stopping) {
      std::vector<uint64_t> uids;
      for (const auto& [uid, live] : live_) uids.push_back(uid);
      for (uint64_t uid : uids) Finish(uid, FinishReason::kAbort, {});
      std::lock_guard<std::mutex> lock(mu_);
      loads_ = EngineLoads();  // loop_alive = false
      return;
    }
    if (!live_.empty()) Step();
    PublishLoads();
  }
}

void Engine::Impl::PublishLoads() {
  EngineLoads l;
  l.num_running = scheduler_->num_running();
  l.num_waiting = scheduler_->num_waiting();
  l.kv_usage = kv_->usage();
  const SchedulerCounters& c = scheduler_->counters();
  l.prefix_query_tokens = c.prefix_query_tokens;
  l.prefix_hit_tokens = c.prefix_hit_tokens;
  l.num_preemptions = c.preemptions;
  l.num_steps = step_;
  l.loop_alive = true;
  std::lock_guard<std::mutex> lock(mu_);
  loads_ = l;
  busy_since_ns_ = NowNs();
}

EngineLoads Engine::Impl::GetLoads() const {
  std::lock_guard<std::mutex> lock(mu_);
  EngineLoads l = loads_;
  l.num_waiting += static_cast<int32_t>(inbox_.size());
  const bool has_work = l.num_running + l.num_waiting > 0;
  l.stalled_seconds = has_work && l.loop_alive ? (NowNs() - busy_since_ns_) * 1e-9 : 0.0;
  return l;
}

void Engine::Impl::Admit(std::vector<Pending>& pending) {
  for (Pending& p : pending) {
    // One immutable copy of the request for all its choices (moved, not copied).
    const auto request = std::make_shared<const EngineRequest>(std::move(p.request));
    const EngineRequest& r = *request;
    Group& group = groups_[r.id];
    for (int32_t index = 0; index < r.n; ++index) {
      const uint64_t uid = next_uid_++;
      auto seq = std::make_unique<Sequence>();
      seq->uid = uid;
      seq->id = r.id;
      seq->tokens = r.prompt_ids;
      seq->num_prompt_tokens = static_cast<int32_t>(r.prompt_ids.size());
      seq->max_tokens = r.max_tokens;
      seq->priority = r.priority;
      seq->arrival = uid;
      seq->cache_salt = r.cache_salt;
      seq->needs_prompt_logits = index == 0 && r.prompt_logprobs.has_value();
      Live& live = live_.emplace(uid, NewLive(request, index, p)).first->second;
      live.timings.arrival_ns = p.arrival_ns;
      group.uids.push_back(uid);
      Emit(RequestEventKind::kArrived, *seq, index, p.arrival_ns);
      if (index == 0 || !options_.enable_prefix_caching) {
        scheduler_->Add(std::move(seq));
      } else {
        group.held.push_back(std::move(seq));
      }
    }
  }
}

Live Engine::Impl::NewLive(std::shared_ptr<const EngineRequest> request, int32_t index,
                           const Pending& p) {
  const EngineRequest& r = *request;
  Live live;
  live.index = index;
  live.seed = ChoiceSeed(*r.sampling.seed, index);
  live.sink = p.sink;
  if (model.tokenizer) {
    live.detokenizer = std::make_unique<IncrementalDetokenizer>(*model.tokenizer);
  }
  if (!r.stop.empty()) {
    live.stop_strings = std::make_unique<StopStringMatcher>(r.stop, r.include_stop_str_in_output);
  }
  if (!r.ignore_eos) live.stop_ids.assign(stop_ids_.begin(), stop_ids_.end());
  live.stop_ids.insert(live.stop_ids.end(), r.stop_token_ids.begin(), r.stop_token_ids.end());
  std::sort(live.stop_ids.begin(), live.stop_ids.end());
  live.stop_ids.erase(std::unique(live.stop_ids.begin(), live.stop_ids.end()), live.stop_ids.end());
  if (r.sampling.repetition_penalty != 1.0f) {
    live.prompt_tokens.insert(r.prompt_ids.begin(), r.prompt_ids.end());
  }
  live.request = std::move(request);
  return live;
}

void Engine::Impl::ReleaseHeld(const std::string& id) {
  auto it = groups_.find(id);
  if (it == groups_.end()) return;
  for (std::unique_ptr<Sequence>& seq : it->second.held) scheduler_->Add(std::move(seq));
  it->second.held.clear();
}

void Engine::Impl::FinishRequest(const std::string& id, FinishReason reason) {
  auto it = groups_.find(id);
  if (it == groups_.end()) return;
  const std::vector<uint64_t> uids = it->second.uids;  // Finish erases the group with the last
  for (uint64_t uid : uids) Finish(uid, reason, {});
}

void Engine::Impl::Step() {
  const int64_t start_ns = NowNs();
  StepBatch batch = scheduler_->Schedule();
  // Admission guarantees every request fits an empty pool, so a step with live requests and an
  // empty batch would mean a scheduler bug.
  KV_CHECK(!batch.empty()) << "no sequence could be scheduled";
  const ScheduleReport& report = scheduler_->last_report();
  for (uint64_t uid : report.preempted) {
    Emit(RequestEventKind::kPreempted, *scheduler_->Find(uid), live_.at(uid).index, start_ns);
  }
  for (uint64_t uid : report.first_scheduled) {
    Live& live = live_.at(uid);
    Emit(RequestEventKind::kScheduled, *scheduler_->Find(uid), live.index, start_ns);
    live.timings.scheduled_ns = start_ns;
  }
  StepEvent step_event;
  step_event.step = step_;
  step_event.start_ns = start_ns;
  step_event.num_seqs = batch.num_seqs();
  step_event.num_prefill_tokens = report.num_prefill_tokens;
  step_event.num_decode_tokens = report.num_decode_tokens;
  step_event.num_running = scheduler_->num_running();
  step_event.num_waiting = scheduler_->num_waiting();
  step_event.num_preempted = static_cast<int32_t>(report.preempted.size());
  step_event.kv_usage = kv_->usage();
  // Sampled by the backend when it can (a GPU keeps the logits), else on the host from logits.
  StepSamples samples;
  samples.on_backend = PrepareBackendSampling(batch);
  if (samples.on_backend) {
    samples.sampled = runner_->ExecuteAndSample(batch, sample_request_);
  } else {
    samples.logits = runner_->Execute(batch);
  }
  scheduler_->CommitStep(batch);
  ++step_;
  const int64_t end_ns = NowNs();
  // Published before the step's outputs go out, so that a client who has seen an output (and
  // sends its next request) sees this step's queue, not the previous one's.
  PublishLoads();
  // Reported before the step's outputs go out, so whoever has seen an output can see its step.
  if (observer_) {
    step_event.end_ns = end_ns;
    step_event.num_blocks = kv_->num_blocks();
    step_event.num_free_blocks = kv_->num_free_blocks();
    step_event.block_size = kv_->block_size();
    step_event.counters = scheduler_->counters();
    observer_->OnStep(step_event);
  }
  const int64_t vocab = info.vocab_size;
  int64_t row = 0;
  for (const ScheduledSequence& ss : batch.seqs) {
    if (ss.num_prompt_logit_rows > 0) {
      CollectPromptLogprobs(ss, samples.logits.data() + row * vocab);
      row += ss.num_prompt_logit_rows;
    }
    if (!ss.samples) continue;
    Live& live = live_.at(ss.uid);
    const int32_t step = scheduler_->Find(ss.uid)->num_generated();
    std::vector<TokenLogprob> logprobs;
    const int32_t token = TakeToken(samples, row++, live, step, &logprobs);
    AppendToken(ss.uid, live, step, token, std::move(logprobs), end_ns);
  }
}

void Engine::Impl::AppendToken(uint64_t uid, Live& live, int32_t step, int32_t token,
                               std::vector<TokenLogprob> logprobs, int64_t end_ns) {
  Sequence* seq = scheduler_->Find(uid);
  const EngineRequest& req = *live.request;
  scheduler_->AppendToken(uid, token);
  // The prompt's KV is computed and cached now: the other choices can share it.
  if (live.index == 0 && seq->num_generated() == 1 && req.n > 1) ReleaseHeld(req.id);
  if (Sampler::UsesOutputHistory(req.sampling)) ++live.output_counts[token];
  Emit(seq->num_generated() == 1 ? RequestEventKind::kFirstToken : RequestEventKind::kToken, *seq,
       live.index, end_ns);
  if (seq->num_generated() == 1) live.timings.first_token_ns = end_ns;
  RequestOutput out;
  out.index = live.index;
  out.token_ids.push_back(token);
  if (seq->num_generated() == 1 && seq->needs_prompt_logits) {
    out.prompt_logprobs = std::move(live.prompt_logprobs);
    seq->needs_prompt_logits = false;  // sent: a recompute after preemption may use the cache
  }
  out.logprobs = std::move(logprobs);
  const bool stop_token = std::binary_search(live.stop_ids.begin(), live.stop_ids.end(), token);
  if (live.detokenizer) out.text = live.detokenizer->Push(token);
  // Like stop tokens, stop strings cannot end a request before min_tokens tokens (a stop string
  // completed by an earlier token is not looked for again).
  if (live.stop_strings && step >= req.min_tokens) {
    std::optional<std::string> matched;
    out.text = live.stop_strings->Push(out.text, &matched);
    if (matched.has_value()) {
      out.stop_string = *std::move(matched);
      Finish(uid, FinishReason::kStop, std::move(out));
      return;
    }
  }
  if (stop_token || seq->num_generated() >= req.max_tokens) {
    if (stop_token) out.stop_token = token;
    Finish(uid, stop_token ? FinishReason::kStop : FinishReason::kLength, std::move(out));
    return;
  }
  out.usage.prompt_tokens = seq->num_prompt_tokens;
  out.usage.completion_tokens = seq->num_generated();
  out.usage.cached_prompt_tokens = std::max(0, seq->num_cached_prompt_tokens);
  if (options_.stream_interval > 1) {
    AppendOutput(live.unsent, std::move(out));
    if (seq->num_generated() > 1 &&
        static_cast<int32_t>(live.unsent.token_ids.size()) < options_.stream_interval) {
      return;
    }
    out = std::exchange(live.unsent, RequestOutput());
  }
  live.sink->OnOutput(std::move(out));
}

int32_t Engine::Impl::TakeToken(const StepSamples& s, int64_t row, Live& live, int32_t step,
                                std::vector<TokenLogprob>* logprobs) {
  const EngineRequest& req = *live.request;
  const int64_t vocab = info.vocab_size;
  if (s.on_backend) {
    const int32_t token = s.sampled.ids[row];
    KV_CHECK(token >= 0 && token < vocab) << "the backend sampled token " << token;
    if (req.logprobs.has_value()) {
      const int32_t n = sample_request_.top_logprobs;
      TokenLogprob lp{token, s.sampled.chosen_logprob[row], {}};
      for (int32_t j = 0; j < *req.logprobs && j < n; ++j) {
        const int32_t id = s.sampled.top_ids[row * n + j];
        if (id >= 0) lp.top.emplace_back(id, s.sampled.top_logprobs[row * n + j]);
      }
      logprobs->push_back(std::move(lp));
    }
    return token;
  }
  const bool ban_stops = step < req.min_tokens && !live.stop_ids.empty();
  TokenLogprobs host;
  const int32_t token = sampler_.SampleRow(
      s.logits.data() + row * vocab, vocab, req.sampling,
      {&live.prompt_tokens, &live.output_counts},
      ban_stops ? std::span<const int32_t>(live.stop_ids) : std::span<const int32_t>(), live.seed,
      step, req.logprobs.value_or(0), req.logprobs.has_value() ? &host : nullptr);
  if (req.logprobs.has_value()) logprobs->push_back({token, host.logprob, std::move(host.top)});
  return token;
}

bool Engine::Impl::PrepareBackendSampling(const StepBatch& batch) {
  SampleRowsRequest& r = sample_request_;
  r.Clear();
  if (batch.logits_indices.empty()) return false;  // nothing to sample: no logits to move either
  for (const ScheduledSequence& ss : batch.seqs) {
    if (ss.num_prompt_logit_rows > 0) return false;  // prompt logprobs read whole rows
    if (!ss.samples) continue;
    const Live& live = live_.at(ss.uid);
    const SamplingParams& p = live.request->sampling;
    const int32_t step = scheduler_->Find(ss.uid)->num_generated();
    r.temperature.push_back(p.temperature);
    r.top_k.push_back(p.top_k);
    r.top_p.push_back(p.top_p);
    r.min_p.push_back(p.min_p);
    r.seed.push_back(live.seed);
    r.step.push_back(static_cast<uint64_t>(step));
    r.repetition_penalty.push_back(p.repetition_penalty);
    r.presence_penalty.push_back(p.presence_penalty);
    r.frequency_penalty.push_back(p.frequency_penalty);
    // The processors' inputs, as the host path hands them to Sampler::ApplyProcessors.
    for (const auto& [id, bias] : p.logit_bias) {
      r.bias_ids.push_back(id);
      r.bias_values.push_back(bias);
    }
    if (p.repetition_penalty != 1.0f) {
      r.prompt_ids.insert(r.prompt_ids.end(), live.prompt_tokens.begin(), live.prompt_tokens.end());
    }
    if (Sampler::UsesOutputHistory(p)) {
      for (const auto& [id, count] : live.output_counts) {
        r.output_ids.push_back(id);
        r.output_counts.push_back(count);
      }
    }
    if (step < live.request->min_tokens && !live.stop_ids.empty()) {
      r.banned_ids.insert(r.banned_ids.end(), live.stop_ids.begin(), live.stop_ids.end());
    }
    r.bias_indptr.push_back(static_cast<int32_t>(r.bias_ids.size()));
    r.prompt_indptr.push_back(static_cast<int32_t>(r.prompt_ids.size()));
    r.output_indptr.push_back(static_cast<int32_t>(r.output_ids.size()));
    r.banned_indptr.push_back(static_cast<int32_t>(r.banned_ids.size()));
    if (live.request->logprobs.has_value()) {
      r.top_logprobs = std::max(r.top_logprobs, *live.request->logprobs);
    }
  }
  return r.rows() == static_cast<int64_t>(batch.logits_indices.size()) &&
         runner_->CanSampleRows(info.vocab_size);
}

void Engine::Impl::CollectPromptLogprobs(const ScheduledSequence& ss, const float* rows) {
  Live& live = live_.at(ss.uid);
  const Sequence* seq = scheduler_->Find(ss.uid);
  const int64_t vocab = info.vocab_size;
  for (int32_t j = 0; j < ss.num_prompt_logit_rows; ++j) {
    // Position p's logits give the log-probability of token p + 1. After a preemption the
    // prompt is computed again: keep the first result of each position.
    const int32_t p = ss.start_position + j;
    if (p < static_cast<int32_t>(live.prompt_logprobs.size())) continue;
    TokenLogprobs lp = Sampler::Logprobs(rows + j * vocab, vocab, seq->tokens[p + 1],
                                         *live.request->prompt_logprobs);
    live.prompt_logprobs.push_back({seq->tokens[p + 1], lp.logprob, std::move(lp.top)});
  }
}

void Engine::Impl::Emit(RequestEventKind kind, const Sequence& seq, int32_t index, int64_t time_ns,
                        FinishReason reason) {
  if (!observer_) return;
  RequestEvent e;
  e.kind = kind;
  e.request_id = seq.id;
  e.uid = seq.uid;
  e.index = index;
  e.time_ns = time_ns;
  e.step = step_;
  e.num_prompt_tokens = seq.num_prompt_tokens;
  e.num_cached_prompt_tokens = std::max(0, seq.num_cached_prompt_tokens);
  e.num_generated_tokens = seq.num_generated();
  e.finish_reason = reason;
  observer_->OnRequestEvent(e);
}

void Engine::Impl::Finish(uint64_t uid, FinishReason reason, RequestOutput out) {
  auto it = live_.find(uid);
  KV_CHECK(it != live_.end());
  Live& live = it->second;
  if (!live.unsent.token_ids.empty()) {
    RequestOutput last = std::move(out);
    out = std::exchange(live.unsent, RequestOutput());
    AppendOutput(out, std::move(last));
  }
  auto group_it = groups_.find(live.request->id);
  KV_CHECK(group_it != groups_.end());
  Group& group = group_it->second;
  const Sequence* seq = scheduler_->Find(uid);
  std::unique_ptr<Sequence> held;  // a choice still held back (the request was aborted)
  if (seq == nullptr) {
    auto h = std::find_if(group.held.begin(), group.held.end(),
                          [uid](const std::unique_ptr<Sequence>& s) { return s->uid == uid; });
    if (h != group.held.end()) {
      held = std::move(*h);
      group.held.erase(h);
      seq = held.get();
    }
  }
  if (seq != nullptr) {
    out.usage.prompt_tokens = seq->num_prompt_tokens;
    out.usage.completion_tokens = seq->num_generated();
    out.usage.cached_prompt_tokens = std::max(0, seq->num_cached_prompt_tokens);
    Emit(RequestEventKind::kFinished, *seq, live.index, NowNs(), reason);
  }
  // A stop string ends the text: nothing held after it is emitted.
  if (out.stop_string.empty()) {
    std::string tail = live.detokenizer ? live.detokenizer->Flush() : std::string();
    if (live.stop_strings) {
      std::optional<std::string> matched;
      tail = live.stop_strings->Push(tail, &matched);
      if (matched.has_value() && reason != FinishReason::kAbort) {
        out.stop_string = *std::move(matched);
        reason = FinishReason::kStop;
        out.stop_token = -1;
      } else if (!matched.has_value()) {
        tail += live.stop_strings->Flush();
      }
    }
    out.text += tail;
  }
  out.index = live.index;
  out.finish_reason = reason;
  out.timings = live.timings;
  out.timings.finished_ns = NowNs();
  scheduler_->Remove(uid);
  std::shared_ptr<RequestSink> sink = std::move(live.sink);
  const std::string id = live.request->id;
  live_.erase(it);
  std::erase(group.uids, uid);
  if (group.uids.empty()) {
    out.final_output = true;
    groups_.erase(group_it);
    std::lock_guard<std::mutex> lock(mu_);
    live_ids_.erase(id);
  }
  sink->OnOutput(std::move(out));
}

// ---------------------------------------------------------------------------------------------

Engine::Engine(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Engine::~Engine() = default;

absl::StatusOr<std::unique_ptr<Engine>> Engine::Create(const EngineOptions& options) {
  auto impl = std::make_unique<Impl>();
  KV_RETURN_IF_ERROR(impl->Init(options));
  return std::unique_ptr<Engine>(new Engine(std::move(impl)));
}

absl::Status Engine::Submit(EngineRequest request, std::shared_ptr<RequestSink> sink) {
  return impl_->Submit(std::move(request), std::move(sink));
}
void Engine::Abort(const std::string& request_id) { impl_->Abort(request_id); }
void Engine::Shutdown() { impl_->Shutdown(); }
const ModelInfo& Engine::model_info() const { return impl_->info; }
EngineLoads Engine::GetLoads() const { return impl_->GetLoads(); }
const Tokenizer* Engine::tokenizer() const { return impl_->model.tokenizer.get(); }
absl::StatusOr<const ChatTemplate*> Engine::chat_template() const {
  if (!impl_->chat_template.ok()) return impl_->chat_template.status();
  return &*impl_->chat_template;
}

}  // namespace kvasir
