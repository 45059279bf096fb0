// Row-wise float32 operators of a transformer forward pass on CPU.
//
// Every operator is deterministic and batch invariant: the value computed for one row (token)
// depends only on that row's inputs, never on how many rows run together or on the thread count.
#ifndef KVASIR_KERNELS_CPU_OPS_H_
#define KVASIR_KERNELS_CPU_OPS_H_

#include <cstdint>

#include "kernels/cpu/thread_pool.h"
#include "kernels/dtype.h"

namespace kvasir::cpu {

// out[r] = x[r] / sqrt(mean(x[r]^2) + eps) * w, as HF computes it: (x * rsqrt) * w. The sum of
// squares uses 8 interleaved float partial sums reduced in a fixed tree. out may alias x.
// pool may be null.
void RmsNorm(const float* x, const float* w, int64_t rows, int64_t dim, float eps, float* out,
             ThreadPool* pool);

// a[i] += b[i].
void AddInPlace(float* a, const float* b, int64_t n);

// out[i] = silu(gate[i]) * up[i], silu(g) = g / (1 + exp(-g)). out may alias gate or up.
void SiluMul(const float* gate, const float* up, int64_t n, float* out);

// For a fused [rows, 2 * inter] buffer whose row r is gate | up: out[r] = silu(gate) * up, out is
// [rows, inter]. out may alias gate_up (rows are processed in order, each read before written).
// pool may be null.
void SiluMulFused(const float* gate_up, int64_t rows, int64_t inter, float* out, ThreadPool* pool);

enum class RopeStyle {
  kNeox,         // pairs (i, i + rot_dim/2): HF transformers' rotate_half
  kInterleaved,  // pairs (2i, 2i + 1): GGUF llama / Meta
};

// How the angle of frequency i at position p is formed (inv_freq has rot_dim/2 entries).
enum class RopeAngles {
  kProduct,         // float(p) * inv_freq[i], as HF transformers computes it in fp32
  kGgmlRecurrence,  // theta_0 = p, theta_{i+1} = theta_i * inv_freq[1]: llama.cpp's rope cache
                    // for plain (unscaled) RoPE, so GGUF models reproduce llama.cpp bit for bit
};

// Fills cos_sin [num_tokens, rot_dim]: row t holds cos of the rot_dim/2 angles of positions[t],
// then their sin. Computed once per step and shared by every layer's q and k.
void RopeCosSin(const int32_t* positions, int64_t num_tokens, const float* inv_freq, int rot_dim,
                RopeAngles angles, float* cos_sin);

// Rotates, in place, the first rot_dim dims of every head of x [num_tokens, num_heads, head_dim]
// by the angles of cos_sin (from RopeCosSin). rot_dim must be even and <= head_dim.
void RopeApply(float* x, int64_t num_tokens, int num_heads, int head_dim, int rot_dim,
               const float* cos_sin, RopeStyle style);

// Both steps at once (tests, one-off callers).
void Rope(float* x, int64_t num_tokens, int num_heads, int head_dim, int rot_dim,
          const int32_t* positions, const float* inv_freq, RopeStyle style, RopeAngles angles);

// In-place numerically stable softmax over n values (max subtracted; sum in index order).
void Softmax(float* x, int64_t n);

// Copies rows ids[0..n) of table [vocab, dim] of type t into out [n, dim] as float.
void Embedding(const void* table, DType t, int64_t dim, const int32_t* ids, int64_t n, float* out);

// Index of the largest of x[0..n); the lowest index on ties. NaNs are skipped (0 if all are NaN).
int64_t Argmax(const float* x, int64_t n);

// Paged attention over a block-paged float32 KV cache, for a batch mixing prefill chunks and
// decodes. The cache of one layer is [num_blocks, block_size, num_kv_heads, head_dim].
struct PagedAttentionArgs {
  const float* q;        // [num_tokens, num_heads, head_dim]
  const float* k_cache;  // [num_blocks, block_size, num_kv_heads, head_dim]
  const float* v_cache;  // same shape as k_cache
  int num_seqs;
  int num_heads;
  int num_kv_heads;  // divides num_heads; head h reads kv head h / (heads per kv head)
  int head_dim;
  int block_size;
  float scale;                 // usually 1/sqrt(head_dim)
  const int32_t* query_start;  // [num_seqs + 1] offsets of each sequence's tokens in q and out
  const int32_t* seq_lens;     // [num_seqs] context length after this step's tokens are written
  const int32_t* block_table_indptr;  // [num_seqs + 1] CSR row pointers into block_table
  const int32_t* block_table;         // physical block ids; token p of sequence s lives in block
                               // block_table[indptr[s] + p / block_size], slot p % block_size
  float* out;  // [num_tokens, num_heads, head_dim]
};

// Causal attention: sequence s's q_len queries are the last q_len positions of its context, so
// query t attends to positions [0, seq_lens[s] - q_len + t]. The K/V of this step's tokens must
// already be in the cache (WriteKvCache). An online softmax walks the context from position 0 up
// in tiles of 32 positions aligned to absolute positions, so a query's output is bitwise the same
// whatever else is in the batch, however its prompt was chunked, whatever the block size and
// thread count, and for the scalar and AVX2 kernels. pool may be null.
void PagedAttention(const PagedAttentionArgs& args, ThreadPool* pool);

// Stores k and v [num_tokens, num_kv_heads, head_dim] into the caches at
// slot_mapping[t] = block * block_size + offset; tokens with slot -1 are skipped.
void WriteKvCache(const float* k, const float* v, int64_t num_tokens, int num_kv_heads,
                  int head_dim, const int64_t* slot_mapping, float* k_cache, float* v_cache);

}  // namespace kvasir::cpu

#endif  // KVASIR_KERNELS_CPU_OPS_H_
