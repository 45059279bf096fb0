// Token sampling on the GPU for a whole batch in one launch, with the CPU Sampler's rule
// (engine/sampler.h) applied per row: logit processors (logit_bias, repetition / presence /
// frequency penalties, banned tokens), then greedy (temperature == 0 or top_k == 1: argmax, the
// lowest id on ties, NaN skipped) or softmax(logits / T) restricted by min_p, then top_k, then
// top_p, sampled with the counter-based draw Sampler::Uniform(seed, step) reproduced bit for bit.
// Only token ids (and, if asked, the chosen token's log-probability) are written; nothing
// synchronises, allocates or copies to the host, so Sample can be captured in a CUDA graph.
//
// Per-row parameters are device arrays [rows]; the token lists are CSR arrays (FlashInfer's
// layout: indptr [rows + 1], int32, row r's entries at [indptr[r], indptr[r + 1])). Lists rather
// than a dense [rows, vocab] count buffer: a decode step touches a few hundred tokens per row, a
// dense buffer would be 256 x 152k x 4 = 155 MB to clear and upload per step. The processors are
// applied in place on the logits row and undone before the kernel ends (the raw value of every
// listed token is saved in the workspace first), so no copy of the row is made: the workspace is
// 4 bytes per list entry (SampleWorkspaceBytes).
//
// How the selection equals the CPU's (kernels/cuda/sampler.cu has the proofs): every threshold
// (top-k's k-th logit, top-p's cut, the token a draw falls on) is found exactly by a radix select
// over the float bits of the logit or the probability, and ties in the CPU's order (value
// descending, then id ascending) by a scan in id order. Probabilities are float
// exp((l - max) * (1 / T)) as on the CPU; masses are summed as 44-bit fixed point integers (exact,
// so the result does not depend on the order of summation or on the batch), where the CPU sums
// doubles: the two can choose different tokens only when the draw falls within ~1e-8 (relative)
// of a boundary between two tokens, or when two probabilities differ by float rounding.
//
// The device code includes this header for the structs; the Status launcher is hidden from nvcc,
// which never sees Abseil (see kernels/cuda/CMakeLists.txt).
#ifndef KVASIR_KERNELS_CUDA_SAMPLER_H_
#define KVASIR_KERNELS_CUDA_SAMPLER_H_

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#ifndef __CUDACC__
#include "absl/status/status.h"
#endif

namespace kvasir::cuda {

// Per-row sampling parameters, device arrays [rows]. A null array means the default for every
// row (the defaults of SamplingParams, engine/request.h); temperature, seed and step are required.
struct SamplingRows {
  const float* temperature = nullptr;         // <= 0: greedy
  const int32_t* top_k = nullptr;             // 0: no top-k (default 0)
  const float* top_p = nullptr;               // in (0, 1]; 1: no nucleus (default 1)
  const float* min_p = nullptr;               // in [0, 1] (default 0)
  const uint64_t* seed = nullptr;             // the draw is Sampler::Uniform(seed[r], step[r])
  const uint64_t* step = nullptr;             // the request's number of generated tokens
  const float* repetition_penalty = nullptr;  // > 0 (default 1)
  const float* presence_penalty = nullptr;    // (default 0)
  const float* frequency_penalty = nullptr;   // (default 0)
};

// A CSR list per row; indptr null: every row's list is empty. Ids outside [0, vocab) are skipped
// (as on the CPU).
struct TokenLists {
  const int32_t* indptr = nullptr;  // [rows + 1], indptr[0] == 0
  const int32_t* ids = nullptr;     // [indptr[rows]]
};

// See Sample.
struct SampleArgs {
  float* logits = nullptr;  // [rows, vocab]; modified during the kernel, restored bit for bit
  int32_t rows = 0;
  int32_t vocab = 0;  // <= kSampleMaxVocab
  SamplingRows params;
  // logit_bias: (id, bias) in the request's order; an id may repeat (added in list order).
  TokenLists bias;
  const float* bias_values = nullptr;  // [bias.indptr[rows]]
  // The distinct prompt ids (repetition penalty).
  TokenLists prompt;
  // The distinct generated ids and how often each was generated (all three penalties).
  TokenLists output;
  const int32_t* output_counts = nullptr;  // [output.indptr[rows]]
  // Ids set to -inf (the stop tokens before min_tokens).
  TokenLists banned;
  int32_t* ids = nullptr;  // [rows] out: the sampled token
  // [rows] out, optional: log softmax(raw logits)[ids[r]] (the model's distribution, before the
  // processors), computed by the Logprobs kernel (ops.h) after the sampler.
  float* chosen_logprob = nullptr;
  // SampleWorkspaceBytes(total list entries) of device memory, 4-byte aligned; may be null when
  // no list is given.
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
};

inline constexpr int32_t kSampleMaxVocab = 1 << 18;  // a 32 KiB bitmap in shared memory

// Workspace for `list_entries` = bias.indptr[rows] + prompt.indptr[rows] + output.indptr[rows] +
// banned.indptr[rows] (the lists given). A graph captured with a bound serves any step under it.
inline size_t SampleWorkspaceBytes(int64_t list_entries) {
  return static_cast<size_t>(list_entries < 0 ? 0 : list_entries) * sizeof(float);
}

#ifndef __CUDACC__
// Samples ids[r] for every row r < rows in one launch (one block per row). The logits are
// modified while the kernel runs and restored before it ends: nothing else may read them
// concurrently. The lists' lengths live on the device, so the kernel checks the workspace: a
// workspace_bytes below SampleWorkspaceBytes(list entries) makes every ids[r] -1 (logits
// untouched). INVALID_ARGUMENT names the field at fault; INTERNAL names the kernel that failed to
// launch.
absl::Status Sample(const SampleArgs& args, cudaStream_t stream);
#endif

namespace internal {
// The device launcher (sampler.cu): trusts its arguments.
cudaError_t LaunchSample(const SampleArgs& args, cudaStream_t stream);
}  // namespace internal

}  // namespace kvasir::cuda

#endif  // KVASIR_KERNELS_CUDA_SAMPLER_H_
