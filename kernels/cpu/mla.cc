#include "kernels/cpu/mla.h"

#include <algorithm>
#include <cstring>

#include "kernels/check.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cpu/ops.h"
#include "kernels/cpu/quant.h"

namespace kvasir::cpu {
namespace {

float Dot(const float* x, const float* y, int n) {
  float s = 0.0f;
  for (int i = 0; i < n; ++i) s += x[i] * y[i];
  return s;
}

int CacheWidth(const MlaAttentionArgs& a) { return a.kv_lora_rank + a.rope_dim; }
int QueryWidth(const MlaAttentionArgs& a) { return a.num_heads * (a.nope_dim + a.rope_dim); }

// Context position p of sequence s: its cache row (latent, then RoPE key).
const float* CacheRow(const MlaAttentionArgs& a, int s, int p) {
  const int32_t* blocks = a.block_table + a.block_table_indptr[s];
  const int64_t slot = int64_t{blocks[p / a.block_size]} * a.block_size + p % a.block_size;
  return a.cache + slot * CacheWidth(a);
}

// Row r of kv_b_proj, as float.
const uint8_t* KvBRow(const MlaAttentionArgs& a, int64_t r) {
  return static_cast<const uint8_t*>(a.kv_b) + r * RowBytes(a.kv_b_dtype, a.kv_lora_rank);
}

// Runs fn over [0, n) on the pool when there is one, else inline.
template <typename Fn>
void For(ThreadPool* pool, int64_t n, const Fn& fn) {
  if (pool != nullptr && pool->num_threads() > 1 && n > 1) {
    pool->ParallelFor(n, fn);
  } else {
    fn(0, n);
  }
}

// The absorbed form for the tokens listed in scratch->tokens (with their sequences).
void Absorbed(const MlaAttentionArgs& a, MlaScratch* s, ThreadPool* pool) {
  const int64_t n = static_cast<int64_t>(s->tokens.size());
  const int heads = a.num_heads, rank = a.kv_lora_rank, qk = a.nope_dim + a.rope_dim;
  // 1. q_lat [heads, n, rank] = W_UK_h^T q_nope, summed over the nope dims in order.
  s->q_lat.assign(heads * n * rank, 0.0f);
  For(pool, heads, [&](int64_t begin, int64_t end) {
    std::vector<float> row(rank);
    for (int64_t h = begin; h < end; ++h) {
      for (int d = 0; d < a.nope_dim; ++d) {
        DequantizeRow(KvBRow(a, h * (a.nope_dim + a.v_dim) + d), a.kv_b_dtype, rank, row.data());
        for (int64_t i = 0; i < n; ++i) {
          const float qd = a.q[int64_t{s->tokens[i]} * QueryWidth(a) + h * qk + d];
          float* ql = s->q_lat.data() + (h * n + i) * rank;
          for (int l = 0; l < rank; ++l) ql[l] += qd * row[l];
        }
      }
    }
  });
  // 2. o_lat [heads, n, rank] = softmax(scores) . c over the context, per (token, head).
  s->o_lat.assign(heads * n * rank, 0.0f);
  For(pool, n * heads, [&](int64_t begin, int64_t end) {
    std::vector<float> scores;
    for (int64_t task = begin; task < end; ++task) {
      const int64_t i = task / heads, h = task % heads;
      const int seq = s->token_seq[i];
      const int q_len = a.query_start[seq + 1] - a.query_start[seq];
      const int ctx = a.seq_lens[seq] - q_len + (s->tokens[i] - a.query_start[seq]) + 1;
      const float* ql = s->q_lat.data() + (h * n + i) * rank;
      const float* qr = a.q + int64_t{s->tokens[i]} * QueryWidth(a) + h * qk + a.nope_dim;
      scores.resize(ctx);
      for (int p = 0; p < ctx; ++p) {
        const float* c = CacheRow(a, seq, p);
        scores[p] = (Dot(ql, c, rank) + Dot(qr, c + rank, a.rope_dim)) * a.scale;
      }
      Softmax(scores.data(), ctx);
      float* ol = s->o_lat.data() + (h * n + i) * rank;
      for (int p = 0; p < ctx; ++p) {
        const float* c = CacheRow(a, seq, p);
        for (int l = 0; l < rank; ++l) ol[l] += scores[p] * c[l];
      }
    }
  });
  // 3. out_h = W_UV_h o_lat, one MatMul per head over the n tokens.
  s->y.resize(n * a.v_dim);
  for (int h = 0; h < heads; ++h) {
    const uint8_t* w_uv = KvBRow(a, int64_t{h} * (a.nope_dim + a.v_dim) + a.nope_dim);
    MatMul(s->o_lat.data() + h * n * rank, n, rank, w_uv, a.kv_b_dtype, a.v_dim, nullptr,
           s->y.data(), pool);
    for (int64_t i = 0; i < n; ++i) {
      std::memcpy(a.out + int64_t{s->tokens[i]} * heads * a.v_dim + h * a.v_dim,
                  s->y.data() + i * a.v_dim, a.v_dim * sizeof(float));
    }
  }
}

// The expanded form for sequence seq: K and V of every head for its whole context, then
// ordinary causal attention of its queries.
void Expanded(const MlaAttentionArgs& a, int seq, MlaScratch* s, ThreadPool* pool) {
  const int heads = a.num_heads, rank = a.kv_lora_rank, qk = a.nope_dim + a.rope_dim;
  const int kv_width = heads * (a.nope_dim + a.v_dim);
  const int ctx_len = a.seq_lens[seq];
  const int first = a.query_start[seq], q_len = a.query_start[seq + 1] - first;
  s->context.resize(int64_t{ctx_len} * rank);
  for (int p = 0; p < ctx_len; ++p) {
    std::memcpy(s->context.data() + int64_t{p} * rank, CacheRow(a, seq, p), rank * sizeof(float));
  }
  s->kv.resize(int64_t{ctx_len} * kv_width);
  MatMul(s->context.data(), ctx_len, rank, a.kv_b, a.kv_b_dtype, kv_width, nullptr, s->kv.data(),
         pool);
  For(pool, int64_t{q_len} * heads, [&](int64_t begin, int64_t end) {
    std::vector<float> scores;
    for (int64_t task = begin; task < end; ++task) {
      const int t = static_cast<int>(task / heads), h = static_cast<int>(task % heads);
      const int ctx = ctx_len - q_len + t + 1;
      const float* q = a.q + int64_t{first + t} * QueryWidth(a) + h * qk;
      const int64_t head_off = int64_t{h} * (a.nope_dim + a.v_dim);
      scores.resize(ctx);
      for (int p = 0; p < ctx; ++p) {
        const float* k_nope = s->kv.data() + int64_t{p} * kv_width + head_off;
        const float* k_rope = CacheRow(a, seq, p) + rank;
        scores[p] =
            (Dot(q, k_nope, a.nope_dim) + Dot(q + a.nope_dim, k_rope, a.rope_dim)) * a.scale;
      }
      Softmax(scores.data(), ctx);
      float* o = a.out + int64_t{first + t} * heads * a.v_dim + h * a.v_dim;
      std::fill_n(o, a.v_dim, 0.0f);
      for (int p = 0; p < ctx; ++p) {
        const float* v = s->kv.data() + int64_t{p} * kv_width + head_off + a.nope_dim;
        for (int d = 0; d < a.v_dim; ++d) o[d] += scores[p] * v[d];
      }
    }
  });
}

}  // namespace

void MlaAttention(const MlaAttentionArgs& a, MlaForm form, MlaScratch* scratch, ThreadPool* pool) {
  KV_CHECK(a.num_heads > 0 && a.kv_lora_rank > 0 && a.rope_dim >= 0 && a.v_dim > 0);
  KV_CHECK(a.kv_lora_rank % BlockElems(a.kv_b_dtype) == 0);
  scratch->tokens.clear();
  scratch->token_seq.clear();
  for (int s = 0; s < a.num_seqs; ++s) {
    const int q_len = a.query_start[s + 1] - a.query_start[s];
    KV_CHECK(q_len <= a.seq_lens[s]);
    const bool absorbed =
        form == MlaForm::kAbsorbed || (form == MlaForm::kByQueryCount && q_len == 1);
    if (!absorbed) continue;
    for (int t = a.query_start[s]; t < a.query_start[s + 1]; ++t) {
      scratch->tokens.push_back(t);
      scratch->token_seq.push_back(s);
    }
  }
  if (!scratch->tokens.empty()) Absorbed(a, scratch, pool);
  for (int s = 0; s < a.num_seqs; ++s) {
    const int q_len = a.query_start[s + 1] - a.query_start[s];
    const bool expanded =
        form == MlaForm::kExpanded || (form == MlaForm::kByQueryCount && q_len > 1);
    if (expanded && q_len > 0) Expanded(a, s, scratch, pool);
  }
}

void WriteMlaCache(const float* latent, const float* k_rope, int64_t num_tokens, int kv_lora_rank,
                   int rope_dim, const int64_t* slot_mapping, float* cache) {
  const int64_t width = int64_t{kv_lora_rank} + rope_dim;
  for (int64_t t = 0; t < num_tokens; ++t) {
    if (slot_mapping[t] < 0) continue;
    float* row = cache + slot_mapping[t] * width;
    std::copy(latent + t * kv_lora_rank, latent + (t + 1) * kv_lora_rank, row);
    std::copy(k_rope + t * rope_dim, k_rope + (t + 1) * rope_dim, row + kv_lora_rank);
  }
}

}  // namespace kvasir::cpu
