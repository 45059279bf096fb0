#include "kernels/cpu/moe.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "kernels/check.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cpu/ops.h"

namespace kvasir::cpu {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// Runs fn over [0, n) on the pool when there is enough work to split, else inline.
template <typename Fn>
void MaybeParallel(ThreadPool* pool, int64_t n, int64_t min_parallel, const Fn& fn) {
  if (pool != nullptr && pool->num_threads() > 1 && n >= min_parallel) {
    pool->ParallelFor(n, fn);
  } else {
    fn(0, n);
  }
}

// Larger choice first, lower index on ties: a strict total order (NaNs were mapped to -inf).
struct ByChoice {
  const float* c;
  bool operator()(int32_t a, int32_t b) const { return c[a] > c[b] || (c[a] == c[b] && a < b); }
};

void Scores(const float* logits, int32_t n, MoeScoring scoring, float* s) {
  if (scoring == MoeScoring::kSigmoid) {
    for (int32_t e = 0; e < n; ++e) s[e] = 1.0f / (1.0f + std::exp(-logits[e]));
    return;
  }
  float max = logits[0];
  for (int32_t e = 1; e < n; ++e) max = std::max(max, logits[e]);
  float sum = 0.0f;
  for (int32_t e = 0; e < n; ++e) {
    s[e] = std::exp(logits[e] - max);
    sum += s[e];
  }
  for (int32_t e = 0; e < n; ++e) s[e] /= sum;
}

// Keeps only the experts of the topk_groups best groups eligible: the others' choice becomes -inf.
void LimitToBestGroups(const MoeRouting& r, float* c, std::vector<float>& group_score,
                       std::vector<int32_t>& order) {
  const int32_t per_group = r.num_experts / r.num_groups;
  group_score.resize(r.num_groups);
  for (int32_t g = 0; g < r.num_groups; ++g) {
    const float* cg = c + g * per_group;
    float best = kNegInf, second = kNegInf;
    for (int32_t i = 0; i < per_group; ++i) {
      if (cg[i] > best) {
        second = best;
        best = cg[i];
      } else if (cg[i] > second) {
        second = cg[i];
      }
    }
    group_score[g] = r.group_score == MoeGroupScore::kMax ? best : best + second;
  }
  order.resize(r.num_groups);
  for (int32_t g = 0; g < r.num_groups; ++g) order[g] = g;
  std::partial_sort(order.begin(), order.begin() + r.topk_groups, order.end(),
                    ByChoice{group_score.data()});
  for (int32_t i = r.topk_groups; i < r.num_groups; ++i) {
    std::fill_n(c + order[i] * per_group, per_group, kNegInf);
  }
}

// Routes one token; scratch vectors are the caller's, reused across tokens.
struct RouteScratch {
  std::vector<float> scores, choice, group_score;
  std::vector<int32_t> order, group_order;
};

void RouteToken(const float* logits, const MoeRouting& r, const float* bias, RouteScratch& s,
                int32_t* ids, float* weights) {
  const int32_t n = r.num_experts;
  s.scores.resize(n);
  s.choice.resize(n);
  Scores(logits, n, r.scoring, s.scores.data());
  for (int32_t e = 0; e < n; ++e) {
    const float c = s.scores[e] + (bias != nullptr ? bias[e] : 0.0f);
    s.choice[e] = std::isnan(c) ? kNegInf : c;
  }
  if (r.num_groups > 1) LimitToBestGroups(r, s.choice.data(), s.group_score, s.group_order);
  s.order.resize(n);
  for (int32_t e = 0; e < n; ++e) s.order[e] = e;
  std::partial_sort(s.order.begin(), s.order.begin() + r.top_k, s.order.end(),
                    ByChoice{s.choice.data()});
  float sum = 0.0f;
  for (int32_t j = 0; j < r.top_k; ++j) {
    ids[j] = s.order[j];
    weights[j] = s.scores[s.order[j]];
    sum += weights[j];
  }
  for (int32_t j = 0; j < r.top_k; ++j) {
    if (r.renormalize) weights[j] /= sum;
    weights[j] *= r.scaling;
  }
}

void ExpertSwiGlu(const MoeExpertsArgs& a, int32_t e, ThreadPool* pool) {
  const int64_t begin = a.expert_offsets[e];
  const int64_t m = a.expert_offsets[e + 1] - begin;
  if (m == 0) return;
  const ExpertWeights& w = a.experts[e];
  const float* x = a.xs + begin * a.hidden;
  float* g = a.scratch_gate + begin * a.inter;
  float* u = a.scratch_up + begin * a.inter;
  MatMul(x, m, a.hidden, w.gate, w.gate_dtype, a.inter, nullptr, g, pool);
  MatMul(x, m, a.hidden, w.up, w.up_dtype, a.inter, nullptr, u, pool);
  SiluMul(g, u, m * a.inter, g);
  MatMul(g, m, a.inter, w.down, w.down_dtype, a.hidden, nullptr, a.ys + begin * a.hidden, pool);
}

}  // namespace

void MoeRoute(const float* logits, int64_t num_tokens, const MoeRouting& routing,
              const float* selection_bias, int32_t* expert_ids, float* weights, ThreadPool* pool) {
  const MoeRouting& r = routing;
  KV_CHECK(r.top_k >= 1 && r.top_k <= r.num_experts);
  KV_CHECK(r.num_groups >= 1 && r.num_experts % r.num_groups == 0);
  KV_CHECK(r.topk_groups >= 1 && r.topk_groups <= r.num_groups);
  KV_CHECK(r.num_groups == 1 || r.top_k <= r.topk_groups * (r.num_experts / r.num_groups));
  MaybeParallel(pool, num_tokens, 64, [&](int64_t begin, int64_t end) {
    RouteScratch scratch;
    for (int64_t t = begin; t < end; ++t) {
      RouteToken(logits + t * r.num_experts, r, selection_bias, scratch, expert_ids + t * r.top_k,
                 weights + t * r.top_k);
    }
  });
}

void MoePermute(const int32_t* expert_ids, int64_t num_tokens, int32_t top_k, int32_t num_experts,
                MoePermutation* perm) {
  const int64_t n = num_tokens * top_k;
  std::vector<int32_t>& off = perm->expert_offsets;
  off.assign(num_experts + 1, 0);
  for (int64_t i = 0; i < n; ++i) {
    KV_CHECK(expert_ids[i] >= 0 && expert_ids[i] < num_experts);
    ++off[expert_ids[i] + 1];
  }
  for (int32_t e = 0; e < num_experts; ++e) off[e + 1] += off[e];
  perm->source_token.resize(n);
  perm->row_of.resize(n);
  std::vector<int32_t> cursor(off.begin(), off.end() - 1);
  for (int64_t i = 0; i < n; ++i) {
    const int32_t row = cursor[expert_ids[i]]++;
    perm->source_token[row] = static_cast<int32_t>(i / top_k);
    perm->row_of[i] = row;
  }
}

void MoeGatherRows(const float* x, int64_t dim, const int32_t* rows, int64_t num_rows, float* out,
                   ThreadPool* pool) {
  MaybeParallel(pool, num_rows, 64, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      std::memcpy(out + r * dim, x + rows[r] * dim, dim * sizeof(float));
    }
  });
}

void MoeExpertsSwiGlu(const MoeExpertsArgs& a, ThreadPool* pool) {
  std::vector<int32_t> active;
  for (int32_t e = 0; e < a.num_experts; ++e) {
    if (a.expert_offsets[e + 1] > a.expert_offsets[e]) active.push_back(e);
  }
  const int threads = pool != nullptr ? pool->num_threads() : 1;
  if (threads > 1 && static_cast<int64_t>(active.size()) >= 2 * threads) {
    // Many experts with few rows each (decode of a batch): one expert per task, each MatMul on
    // one thread, instead of splitting every small MatMul across the pool.
    pool->ParallelForTasks(static_cast<int64_t>(active.size()),
                           [&](int64_t i) { ExpertSwiGlu(a, active[i], nullptr); });
  } else {
    for (int32_t e : active) ExpertSwiGlu(a, e, pool);
  }
}

void MoeCombine(const float* ys, int64_t dim, const int32_t* row_of, const float* weights,
                int64_t num_tokens, int32_t top_k, float* out, ThreadPool* pool) {
  MaybeParallel(pool, num_tokens, 32, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      float* o = out + t * dim;
      for (int32_t j = 0; j < top_k; ++j) {
        const float w = weights[t * top_k + j];
        const float* y = ys + static_cast<int64_t>(row_of[t * top_k + j]) * dim;
        if (j == 0) {
          for (int64_t d = 0; d < dim; ++d) o[d] = w * y[d];
        } else {
          for (int64_t d = 0; d < dim; ++d) o[d] += w * y[d];
        }
      }
    }
  });
}

}  // namespace kvasir::cpu
