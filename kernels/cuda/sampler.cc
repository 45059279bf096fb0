// Host launcher of sampler.h: argument checks, the sampling kernel, then (if asked) the chosen
// token's log-probability by the Logprobs kernel of ops.h on the restored raw logits.
#include "kernels/cuda/sampler.h"

#include <cstdint>
#include <string>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/launch.h"

namespace kvasir::cuda {
namespace {

absl::Status Invalid(const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat("Sample: ", what));
}

bool Aligned(const void* p, uintptr_t bytes) { return reinterpret_cast<uintptr_t>(p) % bytes == 0; }

}  // namespace

absl::Status Sample(const SampleArgs& a, cudaStream_t stream) {
  if (a.rows < 0) return Invalid(absl::StrCat("rows ", a.rows, " < 0"));
  if (a.vocab < 1 || a.vocab > kSampleMaxVocab) {
    return Invalid(absl::StrCat("vocab ", a.vocab, " outside [1, ", kSampleMaxVocab, "]"));
  }
  if (a.rows == 0) return absl::OkStatus();
  if (a.logits == nullptr || a.ids == nullptr) return Invalid("null logits or ids");
  if (a.params.temperature == nullptr || a.params.seed == nullptr || a.params.step == nullptr) {
    return Invalid("params.temperature, params.seed and params.step are required");
  }
  if (a.bias.indptr != nullptr && (a.bias.ids == nullptr || a.bias_values == nullptr)) {
    return Invalid("bias.indptr without bias.ids or bias_values");
  }
  if (a.prompt.indptr != nullptr && a.prompt.ids == nullptr) {
    return Invalid("prompt.indptr without prompt.ids");
  }
  if (a.output.indptr != nullptr && (a.output.ids == nullptr || a.output_counts == nullptr)) {
    return Invalid("output.indptr without output.ids or output_counts");
  }
  if (a.banned.indptr != nullptr && a.banned.ids == nullptr) {
    return Invalid("banned.indptr without banned.ids");
  }
  if (a.workspace_bytes > 0 && (a.workspace == nullptr || !Aligned(a.workspace, 4))) {
    return Invalid("workspace is null or not 4-byte aligned");
  }
  if (absl::Status s = CudaStatus(internal::LaunchSample(a, stream), "SampleKernel"); !s.ok()) {
    return s;
  }
  if (a.chosen_logprob == nullptr) return absl::OkStatus();
  LogprobsArgs lp;
  lp.logits = a.logits;
  lp.rows = a.rows;
  lp.vocab = a.vocab;
  lp.chosen = a.ids;
  lp.chosen_logprob = a.chosen_logprob;
  return CudaStatus(internal::LaunchLogprobs(lp, stream), "LogprobsKernel");
}

}  // namespace kvasir::cuda
