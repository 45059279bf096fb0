// Argument structs and limits of the CUDA MoE kernels (plain data, no Abseil), shared by the host
// launchers (moe.h, which documents them) and the device code (moe.cu).
#ifndef KVASIR_KERNELS_CUDA_MOE_ARGS_H_
#define KVASIR_KERNELS_CUDA_MOE_ARGS_H_

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "kernels/cuda/kernel_args.h"
#include "kernels/moe_routing.h"

namespace kvasir::cuda {

inline constexpr int32_t kMoeMaxExperts = 256;
inline constexpr int32_t kMoeBlockMSmall = 16;  // tile rows for few rows per expert (decode)
inline constexpr int32_t kMoeBlockMLarge = 64;  // tile rows for prefill

// MoeAlign's outputs, all device int32 arrays (n = num_tokens * top_k).
struct MoeAlignOut {
  int32_t* expert_offsets = nullptr;  // [E + 1]: expert e owns permuted rows [off[e], off[e+1])
  int32_t* source_token = nullptr;    // [n]: the token of each permuted row (-1: unused row)
  int32_t* row_of = nullptr;          // [n]: permuted row of assignment t*k+j (-1: bad id)
  // The tile schedule: tile i covers rows [tile_row[i], min(tile_row[i] + block_m,
  // expert_offsets[tile_expert[i] + 1])) of expert tile_expert[i]; each expert's rows are padded
  // to a multiple of block_m by masking (not in memory). Tiles are ordered by expert, then row.
  int32_t* tile_expert = nullptr;  // [max_tiles]
  int32_t* tile_row = nullptr;     // [max_tiles]
  int32_t* num_tiles = nullptr;    // [1]: tiles in use (<= max_tiles)
  int32_t max_tiles = 0;           // entries of tile_expert / tile_row; >= MoeMaxTiles(n, E, bm)
};

// One projection of every expert, bf16 [rows, cols] row-major per expert: either a device array
// of per-expert pointers (ptrs[e], each 16-byte aligned) or, with ptrs null, a stacked tensor
// (expert e at base + e * expert_stride elements; expert_stride % 8 == 0). A fused gate|up tensor
// [E, 2 * inter, hidden] is gate = {base, 2 * inter * hidden} and up = {base + inter * hidden,
// 2 * inter * hidden}.
struct MoeWeight {
  const bf16* const* ptrs = nullptr;  // [E] device array, or null
  const bf16* base = nullptr;
  int64_t expert_stride = 0;  // elements
};

// See moe.h MoeExperts. hidden and inter are multiples of 8.
struct MoeExpertsArgs {
  const bf16* xs = nullptr;  // [rows, hidden]: gathered rows, permuted order
  int32_t num_experts = 0;
  int64_t hidden = 0;
  int64_t inter = 0;
  MoeWeight gate;  // [inter, hidden] per expert
  MoeWeight up;    // [inter, hidden]
  MoeWeight down;  // [hidden, inter]
  // MoeAlign's outputs for this block_m: expert_offsets, tile_expert, tile_row, num_tiles,
  // max_tiles (the grid's size).
  const int32_t* expert_offsets = nullptr;
  const int32_t* tile_expert = nullptr;
  const int32_t* tile_row = nullptr;
  const int32_t* num_tiles = nullptr;
  int32_t max_tiles = 0;
  int32_t block_m = kMoeBlockMLarge;  // kMoeBlockMSmall or kMoeBlockMLarge, as given to MoeAlign
  bf16* h = nullptr;                  // [rows, inter] scratch
  bf16* ys = nullptr;                 // [rows, hidden] out
};

// See moe.h MoeForward.
struct MoeForwardArgs {
  const bf16* x = nullptr;                // [num_tokens, hidden]
  const float* router_logits = nullptr;   // [num_tokens, E]
  const float* selection_bias = nullptr;  // [E] or null
  int32_t num_tokens = 0;
  int64_t hidden = 0;  // multiple of 8
  int64_t inter = 0;   // multiple of 8 (moe_intermediate_size)
  MoeRouting routing;
  MoeWeight gate, up, down;
  bf16* out = nullptr;  // [num_tokens, hidden]; may be x (x is read before out is written)
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
};

namespace internal {

// The device launchers (moe.cu); they trust their arguments, which moe.cc checks.
cudaError_t LaunchMoeRoute(const float* logits, int32_t num_tokens, const MoeRouting& routing,
                           const float* selection_bias, int32_t* expert_ids, float* weights,
                           cudaStream_t stream);
cudaError_t LaunchMoeAlign(const int32_t* expert_ids, int32_t num_tokens, int32_t top_k,
                           int32_t num_experts, int32_t block_m, const MoeAlignOut& out,
                           cudaStream_t stream);
cudaError_t LaunchMoeGatherRows(const bf16* x, int32_t num_tokens, int64_t hidden,
                                const int32_t* source_token, int32_t num_rows, bf16* xs,
                                cudaStream_t stream);
cudaError_t LaunchMoeExperts(const MoeExpertsArgs& args, cudaStream_t stream);
cudaError_t LaunchMoeCombine(const bf16* ys, int64_t hidden, const int32_t* row_of,
                             const float* weights, int32_t num_tokens, int32_t top_k, bf16* out,
                             cudaStream_t stream);

}  // namespace internal
}  // namespace kvasir::cuda

#endif  // KVASIR_KERNELS_CUDA_MOE_ARGS_H_
