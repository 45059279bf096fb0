#include "engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "kernels/cpu/ops.h"

namespace kvasir {
namespace {

uint64_t SplitMix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

bool Greater(const std::pair<float, int32_t>& a, const std::pair<float, int32_t>& b) {
  return a.first > b.first || (a.first == b.first && a.second < b.second);
}

}  // namespace

double Sampler::Uniform(uint64_t seed, uint64_t step) {
  const uint64_t bits = SplitMix64(SplitMix64(seed) ^ SplitMix64(step + 0x632be59bd9b4e019ull));
  return static_cast<double>(bits >> 11) * 0x1.0p-53;
}

int32_t Sampler::SampleRow(const float* logits, int64_t vocab, const SamplingParams& params,
                           const TokenHistory& history, std::span<const int32_t> banned,
                           uint64_t seed, uint64_t step, int32_t top_n, TokenLogprobs* logprobs) {
  const float* use = logits;
  if (NeedsProcessing(params, !banned.empty())) {
    processed_.assign(logits, logits + vocab);
    ApplyProcessors(processed_.data(), vocab, params, history, banned);
    use = processed_.data();
  }
  const int32_t token = Sample(use, vocab, params, seed, step);
  if (logprobs != nullptr) *logprobs = Logprobs(logits, vocab, token, top_n);
  return token;
}

int32_t Sampler::Sample(const float* logits, int64_t vocab, const SamplingParams& params,
                        uint64_t seed, uint64_t step) {
  // Greedy also when 1/T overflows (T below ~3e-39): sampling at such T is argmax anyway.
  const float inv_t = params.temperature > 0.0f ? 1.0f / params.temperature : 0.0f;
  if (params.temperature <= 0.0f || params.top_k == 1 || !std::isfinite(inv_t)) {
    return static_cast<int32_t>(cpu::Argmax(logits, vocab));
  }
  // NaN logits can never be sampled (and must not reach the sort, whose order they break).
  candidates_.resize(vocab);
  for (int64_t i = 0; i < vocab; ++i) {
    const float l = std::isnan(logits[i]) ? -std::numeric_limits<float>::infinity() : logits[i];
    candidates_[i] = {l, static_cast<int32_t>(i)};
  }
  // Min-p: p_i >= min_p * p_max, i.e. l_i >= l_max + T * ln(min_p).
  if (params.min_p > 0.0f) {
    float max_l = -std::numeric_limits<float>::infinity();
    for (const auto& c : candidates_) max_l = std::max(max_l, c.first);
    if (std::isfinite(max_l)) {
      const double cut = max_l + std::log(static_cast<double>(params.min_p)) * params.temperature;
      std::erase_if(candidates_, [cut](const auto& c) { return c.first < cut; });
    }
  }
  // Top-k: keep the k largest logits (all when top_k is 0).
  if (params.top_k > 0 && params.top_k < static_cast<int64_t>(candidates_.size())) {
    std::nth_element(candidates_.begin(), candidates_.begin() + params.top_k, candidates_.end(),
                     Greater);
    candidates_.resize(params.top_k);
    // nth_element leaves an unspecified order; the draw walks the candidates in order, so give
    // them the id order they have without top-k (the GPU sampler, kernels/cuda/sampler.h, walks
    // the same order). With top_p < 1 the sort below orders them by probability instead.
    if (params.top_p >= 1.0f) {
      std::sort(candidates_.begin(), candidates_.end(),
                [](const auto& a, const auto& b) { return a.second < b.second; });
    }
  }
  float max_logit = candidates_[0].first;
  for (const auto& c : candidates_) max_logit = std::max(max_logit, c.first);
  // An infinite maximum (or only -inf and NaN) leaves no proper distribution: take the argmax.
  if (!std::isfinite(max_logit)) return static_cast<int32_t>(cpu::Argmax(logits, vocab));
  // Unnormalised probabilities exp((l - max) / T), in place of the logits.
  double total = 0.0;
  for (auto& c : candidates_) {
    c.first = std::exp((c.first - max_logit) * inv_t);
    total += c.first;
  }
  if (!(total > 0.0) || !std::isfinite(total)) {
    return static_cast<int32_t>(cpu::Argmax(logits, vocab));
  }
  // Top-p: the smallest most-likely prefix holding top_p of the mass. Sorting a growing prefix
  // avoids sorting the whole vocabulary when the distribution is peaked (the usual case).
  if (params.top_p < 1.0f) {
    const double target = params.top_p * total;
    const int64_t size = static_cast<int64_t>(candidates_.size());
    int64_t sorted = std::min<int64_t>(64, size);
    for (;;) {
      std::partial_sort(candidates_.begin(), candidates_.begin() + sorted, candidates_.end(),
                        Greater);
      double mass = 0.0;
      int64_t cut = 0;
      while (cut < sorted && mass < target) mass += candidates_[cut++].first;
      if (mass >= target || sorted == size) {
        candidates_.resize(cut);
        total = mass;
        break;
      }
      sorted = std::min(size, sorted * 4);
    }
  }
  const double r = Uniform(seed, step) * total;
  double acc = 0.0;
  for (const auto& c : candidates_) {
    acc += c.first;
    if (r < acc) return c.second;
  }
  return candidates_.back().second;  // r within rounding of total
}

bool Sampler::UsesOutputHistory(const SamplingParams& p) {
  return p.repetition_penalty != 1.0f || p.presence_penalty != 0.0f || p.frequency_penalty != 0.0f;
}

bool Sampler::NeedsProcessing(const SamplingParams& p, bool has_banned) {
  return has_banned || !p.logit_bias.empty() || UsesOutputHistory(p);
}

void Sampler::ApplyProcessors(float* logits, int64_t vocab, const SamplingParams& p,
                              const TokenHistory& history, std::span<const int32_t> banned) {
  for (const auto& [token, bias] : p.logit_bias) {
    if (token >= 0 && token < vocab) logits[token] += bias;
  }
  if (p.repetition_penalty != 1.0f) {
    auto penalise = [&](int32_t t) {
      if (t < 0 || t >= vocab) return;
      logits[t] =
          logits[t] > 0.0f ? logits[t] / p.repetition_penalty : logits[t] * p.repetition_penalty;
    };
    if (history.prompt_tokens != nullptr) {
      for (int32_t t : *history.prompt_tokens) penalise(t);
    }
    if (history.output_counts != nullptr) {
      for (const auto& [t, count] : *history.output_counts) {
        // Once per distinct token, also when it is in the prompt as well.
        if (history.prompt_tokens == nullptr || !history.prompt_tokens->contains(t)) penalise(t);
      }
    }
  }
  if ((p.presence_penalty != 0.0f || p.frequency_penalty != 0.0f) &&
      history.output_counts != nullptr) {
    for (const auto& [t, count] : *history.output_counts) {
      if (t < 0 || t >= vocab) continue;
      logits[t] -= p.presence_penalty + p.frequency_penalty * static_cast<float>(count);
    }
  }
  for (int32_t t : banned) {
    if (t >= 0 && t < vocab) logits[t] = -std::numeric_limits<float>::infinity();
  }
}

TokenLogprobs Sampler::Logprobs(const float* logits, int64_t vocab, int32_t chosen, int32_t top_n) {
  // log p_i = l_i - (max + log sum exp(l - max)), summed in double; NaN logits count as -inf.
  float max_l = -std::numeric_limits<float>::infinity();
  for (int64_t i = 0; i < vocab; ++i) {
    if (!std::isnan(logits[i])) max_l = std::max(max_l, logits[i]);
  }
  if (!std::isfinite(max_l)) {
    // +inf (or only -inf/NaN) leaves no proper distribution: the +inf tokens (or, when there is
    // none, all tokens) share the mass evenly.
    auto in_support = [&](int64_t i) { return max_l > 0 ? logits[i] == max_l : true; };
    int64_t n = 0;
    for (int64_t i = 0; i < vocab; ++i) n += in_support(i) ? 1 : 0;
    const float even = -std::log(static_cast<float>(std::max<int64_t>(n, 1)));
    auto lp = [&](int64_t i) {
      return in_support(i) ? even : -std::numeric_limits<float>::infinity();
    };
    TokenLogprobs out;
    out.logprob = lp(chosen);
    std::vector<std::pair<float, int32_t>> all(vocab);
    for (int64_t i = 0; i < vocab; ++i) all[i] = {lp(i), static_cast<int32_t>(i)};
    const int64_t k = std::min<int64_t>(std::max(top_n, 0), vocab);
    std::partial_sort(all.begin(), all.begin() + k, all.end(), Greater);
    for (int64_t i = 0; i < k; ++i) out.top.emplace_back(all[i].second, all[i].first);
    return out;
  }
  double sum = 0.0;
  for (int64_t i = 0; i < vocab; ++i) {
    if (!std::isnan(logits[i])) sum += std::exp(static_cast<double>(logits[i]) - max_l);
  }
  const double log_z = static_cast<double>(max_l) + std::log(sum);
  auto logprob = [&](int32_t i) {
    return std::isnan(logits[i]) ? -std::numeric_limits<float>::infinity()
                                 : static_cast<float>(logits[i] - log_z);
  };
  TokenLogprobs out;
  out.logprob = logprob(chosen);
  if (top_n > 0) {
    std::vector<std::pair<float, int32_t>> all(vocab);
    for (int64_t i = 0; i < vocab; ++i) {
      const float l = std::isnan(logits[i]) ? -std::numeric_limits<float>::infinity() : logits[i];
      all[i] = {l, static_cast<int32_t>(i)};
    }
    const int64_t n = std::min<int64_t>(top_n, vocab);
    std::partial_sort(all.begin(), all.begin() + n, all.end(), Greater);
    for (int64_t i = 0; i < n; ++i) out.top.emplace_back(all[i].second, logprob(all[i].second));
  }
  return out;
}

}  // namespace kvasir
