// Kernel launchers as the device code exposes them (FlashInfer style: they return the
// cudaError_t of the launch). Callers check arguments first: these trust them. Use ops.h.
#ifndef KVASIR_KERNELS_CUDA_LAUNCH_H_
#define KVASIR_KERNELS_CUDA_LAUNCH_H_

#include <cuda_runtime_api.h>

#include <cstdint>

#include "kernels/cuda/kernel_args.h"

namespace kvasir::cuda::internal {

cudaError_t LaunchEmbedding(const bf16* table, int64_t vocab, int64_t dim, const int32_t* ids,
                            int64_t num_tokens, bf16* out, cudaStream_t stream);
// residual null: plain RmsNorm.
cudaError_t LaunchRmsNorm(const bf16* x, bf16* residual, const bf16* w, int64_t rows, int64_t dim,
                          float eps, bf16* out, cudaStream_t stream);
cudaError_t LaunchSiluMul(const bf16* gate, const bf16* up, int64_t in_row_stride, int64_t rows,
                          int64_t inter, bf16* out, cudaStream_t stream);
cudaError_t LaunchRopeKv(const RopeKvArgs& args, cudaStream_t stream);
cudaError_t LaunchDecodeAttention(const DecodeAttentionArgs& args, cudaStream_t stream);
cudaError_t LaunchPrefillAttention(const PrefillAttentionArgs& args, cudaStream_t stream);
cudaError_t LaunchArgmax(const float* logits, int32_t rows, int32_t vocab, int32_t* ids,
                         cudaStream_t stream);
cudaError_t LaunchLogprobs(const LogprobsArgs& args, cudaStream_t stream);

// glue.cu
cudaError_t LaunchAdd(bf16* a, const bf16* b, int64_t n, cudaStream_t stream);
cudaError_t LaunchGatherRows(const bf16* x, int64_t dim, const int32_t* rows, int64_t num_rows,
                             bf16* out, cudaStream_t stream);
cudaError_t LaunchToFloat(const bf16* x, int64_t n, float* out, cudaStream_t stream);
cudaError_t LaunchRopeTable(const int32_t* positions, int64_t num_tokens, const float* inv_freq,
                            int rot_dim, bool recurrence, float attention_factor, float* cos_sin,
                            cudaStream_t stream);
cudaError_t LaunchRopeApply(bf16* x, int64_t num_tokens, int num_heads, int head_dim,
                            int rot_offset, int rot_dim, const float* cos_sin, bool neox,
                            cudaStream_t stream);
cudaError_t LaunchFillDummy(bf16* out, int64_t n, uint64_t seed, bool ones, double amplitude,
                            cudaStream_t stream);
cudaError_t LaunchWriteKv(const bf16* k, const bf16* v, int64_t num_tokens, int64_t row,
                          const int64_t* slot_mapping, bf16* k_cache, bf16* v_cache,
                          cudaStream_t stream);

// Limits the launchers rely on (checked by ops.cc).
inline constexpr int kDecodeMaxPartitionTokens = 1024;
inline constexpr int kDecodeMaxHeadsPerBlock = 8;  // query heads of one kv head per block
inline constexpr int kLogprobsMaxTopK = 64;

}  // namespace kvasir::cuda::internal

#endif  // KVASIR_KERNELS_CUDA_LAUNCH_H_
