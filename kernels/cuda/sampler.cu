// Batched sampling with the CPU Sampler's rule (engine/sampler.cc), one 512-thread block per row.
//
// Per row:
//   1. Processors, in place, in the CPU's order: save the raw value of every listed id (workspace),
//      logit_bias (a repeated id adds its biases in list order, by the thread of its first
//      occurrence), repetition penalty once per distinct id of prompt and output (a shared-memory
//      bitmap picks the one thread that penalises it), presence / frequency per output id,
//      banned ids to -inf. __syncthreads between steps; the raw values are written back at the end.
//   2. One pass: argmax (NaN skipped, lowest id on ties; 0 when all NaN) and its value M. Greedy
//      rows, and rows whose M is not finite (the CPU's fallback to cpu::Argmax), end here.
//   3. min-p: keep l >= double(M) + log(double(min_p)) * double(T) (the CPU's double expression,
//      without FMA contraction). With NaN read as -inf, as the CPU's candidates do.
//   4. top-k (0 < k < candidates): a radix select (8-bit digits, most significant first) over the
//      order-preserving uint32 key of the logit finds the k-th largest key tau and the count of
//      larger keys; the ids with key == tau are admitted lowest first by a scan in id order. This
//      is exactly the set of the k greatest under the CPU's Greater (value desc, id asc).
//   5. Probabilities p = float(exp(double((l - M) * inv_t))) with float subtraction and product as
//      on the CPU, as integers P = trunc(p * 2^44) (p <= 1, vocab <= 2^18: sums < 2^62, exact).
//   6. top-p (< 1): the CPU keeps the shortest prefix of (p desc, id asc) whose mass reaches
//      top_p * total. With integers, "mass >= x" is "mass > ceil(x) - 1"; a radix select over the
//      float bits of p (non-negative, so the bits order like the values) weighted by P finds the
//      p of the last element of that prefix and the mass above it; a scan in id order among
//      equal p finds the id. The same select with "mass > floor(u * N)" finds the drawn token,
//      since the CPU returns the first candidate in that order with r < acc, i.e. acc > r.
//   7. top-p == 1: the CPU walks its candidates in id order (erase_if keeps the order; after
//      top-k it sorts the survivors by id), so the drawn token is the first in id order whose
//      cumulative mass exceeds floor(u * total): one scan in id order.
// Why the first prefix with mass > thr is found exactly: at each digit the bins are walked from
// the highest; every element of a higher bin precedes every element of the chosen bin in the
// order, so the mass before the chosen bin is exact; after the last digit all remaining elements
// have the same key and are ordered by id, which the scan walks with the remaining threshold.
#include <cuda_runtime.h>

#include <climits>
#include <cmath>
#include <cstdint>

#include "kernels/cuda/sampler.h"

namespace kvasir::cuda::internal {
namespace {

using u64 = unsigned long long;

constexpr int kThreads = 512;  // 512 x <= 128 registers: no spills (1024 spilled ~2 KB)
constexpr int kWarps = kThreads / 32;
constexpr float kFixedScale = 17592186044416.0f;  // 2^44

struct Shared {
  u64 hist[256];
  u64 warp_sums[kWarps];
  float warp_v[kWarps];
  int warp_i[kWarps];
  u64 sel_above, sel_eq, found_cum;
  int sel_digit, found;
};

// SplitMix64 and Sampler::Uniform, as in engine/sampler.cc.
__device__ __forceinline__ u64 SplitMix64(u64 x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// The top 53 bits of the draw: Uniform(seed, step) == UniformBits(seed, step) * 2^-53.
__device__ __forceinline__ u64 UniformBits(u64 seed, u64 step) {
  return SplitMix64(SplitMix64(seed) ^ SplitMix64(step + 0x632be59bd9b4e019ull)) >> 11;
}

// floor(bits * 2^-53 * n), exact (128-bit product).
__device__ __forceinline__ u64 FloorScaled(u64 bits, u64 n) {
  const u64 lo = bits * n, hi = __umul64hi(bits, n);
  return (hi << 11) | (lo >> 53);
}

// ceil(top_p * n) - 1 for top_p in (0, 1), with top_p taken to 40 fractional bits (exact for
// top_p >= 2^-16), clamped to >= 0 (at least one token stays).
__device__ __forceinline__ u64 TopPThreshold(float top_p, u64 n) {
  const u64 tp = static_cast<u64>(static_cast<double>(top_p) * 1099511627776.0);  // 2^40
  const u64 lo = tp * n, hi = __umul64hi(tp, n);
  const u64 floor_v = (hi << 24) | (lo >> 40);
  const bool exact = (lo & ((1ull << 40) - 1)) == 0;
  const u64 ceil_v = floor_v + (exact ? 0 : 1);
  return ceil_v == 0 ? 0 : ceil_v - 1;
}

// A candidate's logit as the CPU sees it: NaN is -inf; -0 is +0 (the two compare equal on the
// CPU, so they must get the same key here and tie by id).
__device__ __forceinline__ float Logit(const float* x, int i) {
  const float v = x[i];
  return isnan(v) ? -INFINITY : (v == 0.0f ? 0.0f : v);
}

// Order-preserving key of a non-NaN float: larger value, larger key.
__device__ __forceinline__ uint32_t FloatKey(float v) {
  const uint32_t u = __float_as_uint(v);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

// The CPU's probability: std::exp((l - max) * inv_t) in float. exp is taken in double and rounded
// (glibc's expf is within 0.502 ulp, so the two agree but for rare last-bit cases).
__device__ __forceinline__ float Prob(float l, float m, float inv_t) {
  const float z = __fmul_rn(__fsub_rn(l, m), inv_t);
  return static_cast<float>(exp(static_cast<double>(z)));
}

__device__ __forceinline__ u64 Fixed(float p) { return __float2ull_rz(p * kFixedScale); }

__device__ __forceinline__ bool Better(float v, int i, float bv, int bi) {
  return v > bv || (v == bv && i < bi);
}

// Block-wide inclusive scan of w; *total gets the block's sum. Two __syncthreads.
__device__ __forceinline__ u64 BlockScan(u64 w, u64* total, Shared& sh) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  u64 incl = w;
#pragma unroll
  for (int o = 1; o < 32; o *= 2) {
    const u64 t = __shfl_up_sync(0xffffffffu, incl, o);
    if (lane >= o) incl += t;
  }
  __syncthreads();  // warp_sums may still be read by a previous call
  if (lane == 31) sh.warp_sums[warp] = incl;
  __syncthreads();
  u64 before = 0, sum = 0;
  for (int w2 = 0; w2 < kWarps; ++w2) {  // broadcast reads; kWarps is small
    const u64 s = sh.warp_sums[w2];
    if (w2 < warp) before += s;
    sum += s;
  }
  *total = sum;
  return before + incl;
}

__device__ __forceinline__ u64 BlockSumU64(u64 w, Shared& sh) {
  u64 total;
  BlockScan(w, &total, sh);
  return total;
}

// Block-wide argmax by Better; (value, id) to every thread, id INT_MAX when none.
__device__ __forceinline__ void BlockArgmax(float& bv, int& bi, Shared& sh) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
#pragma unroll
  for (int o = 16; o > 0; o /= 2) {
    const float ov = __shfl_xor_sync(0xffffffffu, bv, o);
    const int oi = __shfl_xor_sync(0xffffffffu, bi, o);
    if (Better(ov, oi, bv, bi)) bv = ov, bi = oi;
  }
  __syncthreads();
  if (lane == 0) sh.warp_v[warp] = bv, sh.warp_i[warp] = bi;
  __syncthreads();
  for (int w2 = 0; w2 < kWarps; ++w2) {
    if (Better(sh.warp_v[w2], sh.warp_i[w2], bv, bi)) bv = sh.warp_v[w2], bi = sh.warp_i[w2];
  }
}

// The first element, in id order, at which the cumulative weight(i) exceeds thr (thr must be
// below the total weight). Returns its id; *cum gets the cumulative weight there.
template <class Weight>
__device__ __forceinline__ int ScanFirstAbove(int n, Weight weight, u64 thr, u64* cum, Shared& sh) {
  u64 carry = 0;
  for (int base = 0; base < n; base += kThreads) {
    const int i = base + static_cast<int>(threadIdx.x);
    const u64 w = i < n ? weight(i) : 0;
    u64 total;
    const u64 incl = BlockScan(w, &total, sh);
    if (carry + total > thr) {  // the same for every thread
      if (w > 0 && carry + incl > thr && carry + incl - w <= thr) {
        sh.found = i;
        sh.found_cum = carry + incl;
      }
      __syncthreads();
      *cum = sh.found_cum;
      return sh.found;
    }
    carry += total;
  }
  *cum = carry;
  return -1;  // thr >= total: the caller's bug
}

struct Selected {
  uint32_t key;  // the key of the boundary element
  u64 above;     // the weight of the elements with a larger key
  u64 eq;        // the weight of the elements with this key
};

// Among the elements for which item(i, &key, &w) is true, ordered by key descending, finds the
// key of the first element at which the cumulative weight exceeds thr (< the total weight).
template <class Item>
__device__ __forceinline__ Selected SelectDesc(int n, Item item, u64 thr, Shared& sh) {
  uint32_t prefix = 0, mask = 0;
  u64 above = 0, eq = 0;
  for (int shift = 24; shift >= 0; shift -= 8) {
    __syncthreads();  // hist and sel_* may still be read
    for (int b = threadIdx.x; b < 256; b += kThreads) sh.hist[b] = 0;
    __syncthreads();
    for (int i = threadIdx.x; i < n; i += kThreads) {
      uint32_t key;
      u64 w;
      if (item(i, &key, &w) && w != 0 && (key & mask) == prefix) {
        atomicAdd(&sh.hist[(key >> shift) & 255u], w);
      }
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      u64 acc = above;
      int b = 255;
      for (; b > 0; --b) {
        if (acc + sh.hist[b] > thr) break;
        acc += sh.hist[b];
      }
      sh.sel_digit = b;  // b == 0 when no higher bin crossed: bin 0 must hold the rest
      sh.sel_above = acc;
      sh.sel_eq = sh.hist[b];
    }
    __syncthreads();
    prefix |= static_cast<uint32_t>(sh.sel_digit) << shift;
    mask |= 255u << shift;
    above = sh.sel_above;
    eq = sh.sel_eq;
  }
  return {prefix, above, eq};
}

struct RowParams {
  float t, top_p, min_p;
  int32_t top_k;
  u64 seed, step;
};

// Steps 3-7 for a row whose max logit m is finite and whose temperature samples.
__device__ __forceinline__ int SampleRow(const float* x, int vocab, const RowParams& rp, float m,
                                         Shared& sh) {
  const float inv_t = __fdiv_rn(1.0f, rp.t);
  const bool use_min_p = rp.min_p > 0.0f;
  const double cut =
      use_min_p ? __dadd_rn(static_cast<double>(m), __dmul_rn(log(static_cast<double>(rp.min_p)),
                                                              static_cast<double>(rp.t)))
                : 0.0;
  auto in_min_p = [&](float v) { return !use_min_p || static_cast<double>(v) >= cut; };

  // Top-k: the k greatest by (logit desc, id asc) among the min-p survivors.
  bool use_top_k = false;
  uint32_t tau = 0;
  int tau_id = INT_MAX;
  if (rp.top_k > 0) {
    auto by_logit = [&](int i, uint32_t* key, u64* w) {
      const float v = Logit(x, i);
      *key = FloatKey(v);
      *w = 1;
      return in_min_p(v);
    };
    const u64 k = static_cast<u64>(rp.top_k);
    // The count of survivors: the level-0 histogram's sum would do; a separate sum is simpler.
    u64 n0 = 0;
    for (int i = threadIdx.x; i < vocab; i += kThreads) n0 += in_min_p(Logit(x, i)) ? 1 : 0;
    n0 = BlockSumU64(n0, sh);
    if (k < n0) {
      use_top_k = true;
      const Selected s = SelectDesc(vocab, by_logit, k - 1, sh);
      tau = s.key;
      if (s.above + s.eq > k) {  // ties at tau: the lowest ids first
        u64 cum;
        tau_id = ScanFirstAbove(
            vocab,
            [&](int i) -> u64 {
              const float v = Logit(x, i);
              return in_min_p(v) && FloatKey(v) == tau ? 1 : 0;
            },
            k - 1 - s.above, &cum, sh);
      }
    }
  }
  auto kept = [&](int i, float v) {
    if (!in_min_p(v)) return false;
    if (!use_top_k) return true;
    const uint32_t key = FloatKey(v);
    return key > tau || (key == tau && i <= tau_id);
  };
  auto mass = [&](int i) -> u64 {
    const float v = Logit(x, i);
    return kept(i, v) ? Fixed(Prob(v, m, inv_t)) : 0;
  };
  const u64 bits = UniformBits(rp.seed, rp.step);

  if (!(rp.top_p < 1.0f)) {
    u64 total = 0;
    for (int i = threadIdx.x; i < vocab; i += kThreads) total += mass(i);
    total = BlockSumU64(total, sh);
    u64 cum;
    return ScanFirstAbove(vocab, mass, FloorScaled(bits, total), &cum, sh);
  }

  // Top-p, then the draw, both in the order (p desc, id asc).
  auto by_prob = [&](int i, uint32_t* key, u64* w) {
    const float v = Logit(x, i);
    if (!kept(i, v)) return false;
    const float p = Prob(v, m, inv_t);
    *key = __float_as_uint(p);
    *w = Fixed(p);
    return true;
  };
  u64 total = 0;
  for (int i = threadIdx.x; i < vocab; i += kThreads) total += mass(i);
  total = BlockSumU64(total, sh);
  const u64 p_thr = TopPThreshold(rp.top_p, total);
  const Selected pi = SelectDesc(vocab, by_prob, p_thr, sh);
  u64 cum;
  const int pi_id = ScanFirstAbove(
      vocab,
      [&](int i) -> u64 {
        uint32_t key;
        u64 w;
        return by_prob(i, &key, &w) && key == pi.key ? w : 0;
      },
      p_thr - pi.above, &cum, sh);
  const u64 nucleus_mass = pi.above + cum;
  auto in_nucleus = [&](int i, uint32_t* key, u64* w) {
    return by_prob(i, key, w) && (*key > pi.key || (*key == pi.key && i <= pi_id));
  };
  const u64 r = FloorScaled(bits, nucleus_mass);
  const Selected d = SelectDesc(vocab, in_nucleus, r, sh);
  return ScanFirstAbove(
      vocab,
      [&](int i) -> u64 {
        uint32_t key;
        u64 w;
        return in_nucleus(i, &key, &w) && key == d.key ? w : 0;
      },
      r - d.above, &cum, sh);
}

struct ListSpan {
  const int32_t* ids;
  int begin, end;  // [begin, end) of the CSR arrays
  int64_t save;    // workspace offset of entry 0 of the CSR arrays
};

__device__ __forceinline__ ListSpan Span(const TokenLists& l, int row, int64_t save) {
  if (l.indptr == nullptr) return {nullptr, 0, 0, save};
  return {l.ids, l.indptr[row], l.indptr[row + 1], save};
}

// Step 1. Returns after a __syncthreads.
__device__ __forceinline__ void ApplyProcessors(const SampleArgs& a, float* x,
                                                const ListSpan (&lists)[4], float* saved,
                                                uint32_t* seen, float rep, float presence,
                                                float frequency) {
  const int vocab = a.vocab;
  for (const ListSpan& l : lists) {
    for (int j = l.begin + threadIdx.x; j < l.end; j += kThreads) {
      const int t = l.ids[j];
      if (t >= 0 && t < vocab) saved[l.save + j] = x[t];
    }
  }
  for (int w = threadIdx.x; w < (vocab + 31) / 32; w += kThreads) seen[w] = 0;
  __syncthreads();
  const ListSpan& bias = lists[0];
  for (int j = bias.begin + threadIdx.x; j < bias.end; j += kThreads) {
    const int t = bias.ids[j];
    if (t < 0 || t >= vocab) continue;
    bool first = true;
    for (int e = bias.begin; e < j && first; ++e) first = bias.ids[e] != t;
    if (!first) continue;
    float v = x[t];
    for (int e = j; e < bias.end; ++e) {
      if (bias.ids[e] == t) v = __fadd_rn(v, a.bias_values[e]);
    }
    x[t] = v;
  }
  __syncthreads();
  if (rep != 1.0f) {
    for (int li = 1; li <= 2; ++li) {  // prompt, output: each distinct id once
      const ListSpan& l = lists[li];
      for (int j = l.begin + threadIdx.x; j < l.end; j += kThreads) {
        const int t = l.ids[j];
        if (t < 0 || t >= vocab) continue;
        const uint32_t bit = 1u << (t % 32);
        if (atomicOr(&seen[t / 32], bit) & bit) continue;
        const float v = x[t];
        x[t] = v > 0.0f ? __fdiv_rn(v, rep) : __fmul_rn(v, rep);
      }
    }
    __syncthreads();
  }
  if (presence != 0.0f || frequency != 0.0f) {
    const ListSpan& l = lists[2];  // distinct ids: one thread per id
    for (int j = l.begin + threadIdx.x; j < l.end; j += kThreads) {
      const int t = l.ids[j];
      if (t < 0 || t >= vocab) continue;
      const float c = static_cast<float>(a.output_counts[j]);
      x[t] = __fsub_rn(x[t], __fadd_rn(presence, __fmul_rn(frequency, c)));
    }
    __syncthreads();
  }
  const ListSpan& banned = lists[3];
  for (int j = banned.begin + threadIdx.x; j < banned.end; j += kThreads) {
    const int t = banned.ids[j];
    if (t >= 0 && t < vocab) x[t] = -INFINITY;
  }
  __syncthreads();
}

__global__ void __launch_bounds__(kThreads, 1) SampleKernel(SampleArgs a) {
  extern __shared__ uint32_t seen[];  // [(vocab + 31) / 32] bits: repetition-penalised ids
  __shared__ Shared sh;
  const int row = blockIdx.x;
  float* x = a.logits + static_cast<int64_t>(row) * a.vocab;
  const SamplingRows& p = a.params;
  RowParams rp;
  rp.t = p.temperature[row];
  rp.top_k = p.top_k ? p.top_k[row] : 0;
  rp.top_p = p.top_p ? p.top_p[row] : 1.0f;
  rp.min_p = p.min_p ? p.min_p[row] : 0.0f;
  rp.seed = p.seed[row];
  rp.step = p.step[row];
  const float rep = p.repetition_penalty ? p.repetition_penalty[row] : 1.0f;
  const float presence = p.presence_penalty ? p.presence_penalty[row] : 0.0f;
  const float frequency = p.frequency_penalty ? p.frequency_penalty[row] : 0.0f;

  // Workspace offsets: the saved raw values of the four lists, one after another.
  int64_t off = 0;
  ListSpan lists[4];
  const TokenLists* all[4] = {&a.bias, &a.prompt, &a.output, &a.banned};
  for (int li = 0; li < 4; ++li) {
    lists[li] = Span(*all[li], row, off);
    if (all[li]->indptr != nullptr) off += all[li]->indptr[a.rows];
  }
  bool process = false;
  for (const ListSpan& l : lists) process |= l.end > l.begin;
  if (static_cast<size_t>(off) * sizeof(float) > a.workspace_bytes) {
    if (threadIdx.x == 0) a.ids[row] = -1;  // workspace too small: loud, nothing touched
    return;
  }
  float* saved = static_cast<float*>(a.workspace);
  if (process) ApplyProcessors(a, x, lists, saved, seen, rep, presence, frequency);

  float bv = -INFINITY;
  int bi = INT_MAX;
  for (int i = threadIdx.x; i < a.vocab; i += kThreads) {
    const float v = x[i];
    if (!isnan(v) && Better(v, i, bv, bi)) bv = v, bi = i;
  }
  BlockArgmax(bv, bi, sh);
  const int argmax = bi == INT_MAX ? 0 : bi;
  const float inv_t = rp.t > 0.0f ? __fdiv_rn(1.0f, rp.t) : 0.0f;
  const bool greedy = rp.t <= 0.0f || rp.top_k == 1 || !isfinite(inv_t);
  const int token = greedy || !isfinite(bv) ? argmax : SampleRow(x, a.vocab, rp, bv, sh);

  if (process) {
    __syncthreads();  // every read of the processed row is done
    for (const ListSpan& l : lists) {
      for (int j = l.begin + threadIdx.x; j < l.end; j += kThreads) {
        const int t = l.ids[j];
        if (t >= 0 && t < a.vocab) x[t] = saved[l.save + j];  // repeats write the same value
      }
    }
  }
  if (threadIdx.x == 0) a.ids[row] = token;
}

}  // namespace

cudaError_t LaunchSample(const SampleArgs& args, cudaStream_t stream) {
  if (args.rows == 0) return cudaSuccess;
  const size_t smem = static_cast<size_t>((args.vocab + 31) / 32) * sizeof(uint32_t);
  SampleKernel<<<args.rows, kThreads, smem, stream>>>(args);
  return cudaGetLastError();
}

}  // namespace kvasir::cuda::internal
