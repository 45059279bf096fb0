// Greedy argmax and log-softmax top-k over logits rows: one 1024-thread block per row.
// Top-k runs k block-wide argmax passes, each over the elements ordered after the previous pick
// (value descending, index ascending): O(k * vocab) reads, no scratch, deterministic.
#include <cuda_runtime.h>

#include <climits>
#include <cmath>

#include "kernels/cuda/device_util.cuh"
#include "kernels/cuda/launch.h"

namespace kvasir::cuda::internal {
namespace {

constexpr int kThreads = 1024;

__device__ __forceinline__ bool Better(float v, int i, float bv, int bi) {
  return v > bv || (v == bv && i < bi);
}

// Block-wide best (value, index) by Better, returned to every thread. bi == INT_MAX: none.
__device__ void BlockArgmax(float& bv, int& bi) {
  __shared__ float sv[32];
  __shared__ int si[32];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
#pragma unroll
  for (int o = 16; o > 0; o /= 2) {
    const float ov = __shfl_xor_sync(0xffffffffu, bv, o);
    const int oi = __shfl_xor_sync(0xffffffffu, bi, o);
    if (Better(ov, oi, bv, bi)) bv = ov, bi = oi;
  }
  __syncthreads();  // sv/si may still be read by a previous call
  if (lane == 0) sv[warp] = bv, si[warp] = bi;
  __syncthreads();
  bv = lane < static_cast<int>(blockDim.x / 32) ? sv[lane] : -INFINITY;
  bi = lane < static_cast<int>(blockDim.x / 32) ? si[lane] : INT_MAX;
#pragma unroll
  for (int o = 16; o > 0; o /= 2) {
    const float ov = __shfl_xor_sync(0xffffffffu, bv, o);
    const int oi = __shfl_xor_sync(0xffffffffu, bi, o);
    if (Better(ov, oi, bv, bi)) bv = ov, bi = oi;
  }
}

__global__ void __launch_bounds__(kThreads)
    ArgmaxKernel(const float* __restrict__ logits, int32_t vocab, int32_t* __restrict__ ids) {
  const float* x = logits + static_cast<int64_t>(blockIdx.x) * vocab;
  float bv = -INFINITY;
  int bi = INT_MAX;
  for (int i = threadIdx.x; i < vocab; i += blockDim.x) {
    const float v = x[i];
    if (!isnan(v) && Better(v, i, bv, bi)) bv = v, bi = i;
  }
  BlockArgmax(bv, bi);
  if (threadIdx.x == 0) ids[blockIdx.x] = bi == INT_MAX ? 0 : bi;
}

__global__ void __launch_bounds__(kThreads) LogprobsKernel(LogprobsArgs a) {
  const int row = blockIdx.x;
  const float* x = a.logits + static_cast<int64_t>(row) * a.vocab;
  float m = -INFINITY;
  for (int i = threadIdx.x; i < a.vocab; i += blockDim.x) m = fmaxf(m, x[i]);  // NaN ignored
  m = BlockMax(m);
  float s = 0.0f;
  for (int i = threadIdx.x; i < a.vocab; i += blockDim.x) {
    const float v = x[i];
    if (!isnan(v)) s += expf(v - m);
  }
  const float lse = m + logf(BlockSum(s));
  if (a.chosen != nullptr && threadIdx.x == 0) {
    const int c = a.chosen[row];
    a.chosen_logprob[row] = c >= 0 && c < a.vocab ? x[c] - lse : NAN;
  }
  float prev_v = INFINITY;
  int prev_i = -1;
  for (int j = 0; j < a.top_k; ++j) {
    float bv = -INFINITY;
    int bi = INT_MAX;
    for (int i = threadIdx.x; i < a.vocab; i += blockDim.x) {
      const float v = x[i];
      const bool after = v < prev_v || (v == prev_v && i > prev_i);
      if (!isnan(v) && after && Better(v, i, bv, bi)) bv = v, bi = i;
    }
    BlockArgmax(bv, bi);
    if (threadIdx.x == 0) {
      const int64_t o = static_cast<int64_t>(row) * a.top_k + j;
      a.top_ids[o] = bi == INT_MAX ? -1 : bi;
      a.top_logprobs[o] = bi == INT_MAX ? -INFINITY : bv - lse;
    }
    prev_v = bv;
    prev_i = bi;
  }
}

}  // namespace

cudaError_t LaunchArgmax(const float* logits, int32_t rows, int32_t vocab, int32_t* ids,
                         cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  ArgmaxKernel<<<rows, kThreads, 0, stream>>>(logits, vocab, ids);
  return cudaGetLastError();
}

cudaError_t LaunchLogprobs(const LogprobsArgs& args, cudaStream_t stream) {
  if (args.rows == 0) return cudaSuccess;
  LogprobsKernel<<<args.rows, kThreads, 0, stream>>>(args);
  return cudaGetLastError();
}

}  // namespace kvasir::cuda::internal
