// One loader interface over every weight format (safetensors directories, GGUF files).
//
// A WeightSource owns the mapped files; every TensorView it hands out points into them and stays
// valid for as long as the source lives. Names are Hugging Face style ("model.layers.0.mlp.up_proj
// .weight") whatever the format, so model code is written once.
#ifndef KVASIR_ENGINE_WEIGHTS_WEIGHT_SOURCE_H_
#define KVASIR_ENGINE_WEIGHTS_WEIGHT_SOURCE_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "kernels/dtype.h"

namespace kvasir {

// A named, typed tensor that lives in a mapped file. Read-only.
struct TensorView {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;  // outermost first, as PyTorch/HF (a linear weight is [out, in])
  const void* data = nullptr;  // points into the mmap; valid while the source lives
  int64_t nbytes = 0;

  // Product of the dims; 1 for a scalar (empty shape).
  int64_t numel() const;
};

// "[49152, 576]".
std::string ShapeString(absl::Span<const int64_t> shape);

class WeightSource {
 public:
  virtual ~WeightSource() = default;

  // What the weights were read from, e.g. the path; used to prefix error messages.
  virtual std::string Describe() const = 0;
  // Every tensor name, in a stable order.
  virtual std::vector<std::string> TensorNames() const = 0;
  virtual bool Has(std::string_view name) const = 0;
  // On success returns a view of the tensor. NotFound naming the tensor and the file(s) when it is
  // absent; InvalidArgument naming the tensor, the file and its type when the file stores it in a
  // type that has no DType (e.g. I64, Q6_K).
  virtual absl::StatusOr<TensorView> Get(std::string_view name) const = 0;
  // Get(name), then checks that the shape equals `shape` exactly: InvalidArgument naming the
  // tensor, the source, the expected and the actual shape otherwise. Sources that make tensors
  // up (dummy weights) override it to make one of that shape.
  virtual absl::StatusOr<TensorView> GetWithShape(std::string_view name,
                                                  absl::Span<const int64_t> shape) const;
};

// source.GetWithShape(name, shape). Any DType is accepted; the caller dispatches on view.dtype.
absl::StatusOr<TensorView> GetChecked(const WeightSource& source, std::string_view name,
                                      absl::Span<const int64_t> shape);

}  // namespace kvasir

#endif  // KVASIR_ENGINE_WEIGHTS_WEIGHT_SOURCE_H_
