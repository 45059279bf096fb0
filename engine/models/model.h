// A model architecture: loads its weights through the ops interface and runs one step.
// Architectures register themselves by their Hugging Face name:
//   KVASIR_REGISTER_MODEL("LlamaForCausalLM", LlamaModel);
#ifndef KVASIR_ENGINE_MODELS_MODEL_H_
#define KVASIR_ENGINE_MODELS_MODEL_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/model_config.h"
#include "engine/ops.h"
#include "engine/weights/weight_source.h"
#include "scheduler/batch.h"

namespace kvasir {

class Model {
 public:
  virtual ~Model() = default;
  // Uploads the weights named by the config; errors name the tensor and the expected shape.
  virtual absl::Status Load(const WeightSource& weights, Ops& ops) = 0;
  // The KV cache this model needs per layer (block count and size filled in by the runner).
  virtual KvCacheSpec KvSpec() const = 0;
  // Runs the batch (ops.BeginStep already called). Returns the logits of the rows in
  // batch.logits_indices: [logits_indices.size(), vocab].
  virtual Tensor Forward(const StepBatch& batch, Ops& ops) = 0;
};

// The logits of batch.logits_indices from the last hidden states x [tokens, hidden]: only the
// rows that are read go through the final norm and the (large) LM head.
inline Tensor ComputeLogits(Ops& ops, const StepBatch& batch, Tensor x, const Weight& final_norm,
                            const Weight& lm_head, float eps, int64_t hidden, int64_t vocab) {
  const int64_t m = static_cast<int64_t>(batch.logits_indices.size());
  Tensor last = ops.Alloc(m, hidden);
  ops.GatherLogitsRows(x, last);
  ops.RmsNorm(last, final_norm, eps, last);
  Tensor logits = ops.AllocF32(m, vocab);
  ops.MatMul(last, lm_head, nullptr, logits);
  return logits;
}

using ModelFactory = std::function<std::unique_ptr<Model>(const ModelConfig&)>;

class ModelRegistry {
 public:
  static ModelRegistry& Get();
  void Register(const std::string& architecture, ModelFactory factory);
  // InvalidArgument naming the architecture and listing the supported ones when unknown.
  absl::StatusOr<std::unique_ptr<Model>> Create(const ModelConfig& config) const;
  std::vector<std::string> Architectures() const;

 private:
  std::vector<std::pair<std::string, ModelFactory>> factories_;
};

struct ModelRegistration {
  ModelRegistration(const char* architecture, ModelFactory factory) {
    ModelRegistry::Get().Register(architecture, std::move(factory));
  }
};

#define KVASIR_REGISTER_MODEL_CONCAT_(a, b) a##b
#define KVASIR_REGISTER_MODEL_NAME_(line) KVASIR_REGISTER_MODEL_CONCAT_(kModelRegistration, line)
#define KVASIR_REGISTER_MODEL(arch, Class)                                        \
  static const ::kvasir::ModelRegistration KVASIR_REGISTER_MODEL_NAME_(__LINE__)( \
      arch, [](const ::kvasir::ModelConfig& c) { return std::make_unique<Class>(c); })

}  // namespace kvasir

#endif  // KVASIR_ENGINE_MODELS_MODEL_H_
