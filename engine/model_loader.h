// Opens a model from a path: a GGUF file (llama.cpp) or a Hugging Face directory
// (config.json + *.safetensors [+ tokenizer.json]). Format is detected from the path.
#ifndef KVASIR_ENGINE_MODEL_LOADER_H_
#define KVASIR_ENGINE_MODEL_LOADER_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "engine/model_config.h"
#include "engine/tokenizer/tokenizer.h"
#include "engine/weights/weight_source.h"

namespace kvasir {

class GgufFile;

struct LoadedModel {
  std::string name;    // file or directory name
  std::string format;  // "gguf", "safetensors", or "dummy" (made-up weights)
  ModelConfig config;
  std::unique_ptr<WeightSource> weights;
  std::unique_ptr<Tokenizer> tokenizer;  // null for a directory without tokenizer.json
};

struct LoadOptions {
  // Make the weights up (engine/weights/dummy_weights.h) instead of reading them: `path` then
  // only has to give the config (a GGUF file, a directory holding config.json, or a config.json
  // file) and, where it has one, the tokenizer.
  bool dummy_weights = false;
  // With dummy_weights: the tensors are made by the backend in its own memory (bf16, the same
  // values DummyWeightSource makes on the host) instead of on the host first: a device backend
  // then loads a 30B-parameter dummy model without 60 GB of host buffers (dummy_weights.h).
  bool dummy_on_device = false;
};

// NotFound naming the path when it does not exist; InvalidArgument/DataLoss naming the file and
// what is wrong when it is not a readable model.
absl::StatusOr<LoadedModel> LoadModel(const std::string& path, const LoadOptions& options = {});

// The tokenizer alone: a GGUF file, a model directory, or a directory holding tokenizer.json.
absl::StatusOr<std::unique_ptr<Tokenizer>> LoadTokenizer(const std::string& path);

// The tokenizer.ggml.* metadata of a GGUF file.
absl::StatusOr<GgufVocab> ReadGgufVocab(const GgufFile& file);

}  // namespace kvasir

#endif  // KVASIR_ENGINE_MODEL_LOADER_H_
