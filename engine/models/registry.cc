#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/models/model.h"

namespace kvasir {

ModelRegistry& ModelRegistry::Get() {
  static ModelRegistry* registry = new ModelRegistry();
  return *registry;
}

void ModelRegistry::Register(const std::string& architecture, ModelFactory factory) {
  factories_.emplace_back(architecture, std::move(factory));
}

absl::StatusOr<std::unique_ptr<Model>> ModelRegistry::Create(const ModelConfig& config) const {
  for (const auto& [name, factory] : factories_) {
    if (name == config.architecture) return factory(config);
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unsupported architecture '", config.architecture,
                   "'; supported: ", absl::StrJoin(Architectures(), ", ")));
}

std::vector<std::string> ModelRegistry::Architectures() const {
  std::vector<std::string> names;
  for (const auto& entry : factories_) names.push_back(entry.first);
  std::sort(names.begin(), names.end());
  return names;
}

}  // namespace kvasir
