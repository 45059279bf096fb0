// Dummy weights: a WeightSource that makes up every tensor a model asks for, in the shape it asks
// for, so that any config (full-size or tiny) runs without a weights file. For benchmarks that
// measure everything except the model's numbers (the front end's ceiling, full-size step times).
//
// Values are deterministic per tensor name: norm weights are 1; everything else is uniform with
// standard deviation 0.02 (Hugging Face's initializer_range), so activations stay finite.
#ifndef KVASIR_ENGINE_WEIGHTS_DUMMY_WEIGHTS_H_
#define KVASIR_ENGINE_WEIGHTS_DUMMY_WEIGHTS_H_

#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "engine/weights/weight_source.h"

namespace kvasir {

class DummyWeightSource final : public WeightSource {
 public:
  // `dtype`: kF32, kF16 or kBF16 (what the tensors are made in).
  explicit DummyWeightSource(std::string describe, DType dtype = DType::kF32);

  std::string Describe() const override { return describe_; }
  // The tensors made so far.
  std::vector<std::string> TensorNames() const override;
  // No tensor exists until a model asks for it with a shape, so optional tensors (a separate
  // lm_head, biases the config does not enable) are absent.
  bool Has(std::string_view name) const override;
  // A tensor already made by GetWithShape; NotFound otherwise.
  absl::StatusOr<TensorView> Get(std::string_view name) const override;
  // Makes the tensor on first use (the same one again for the same name); InvalidArgument when
  // the name was made before with another shape or the shape has a negative dim or is too big.
  absl::StatusOr<TensorView> GetWithShape(std::string_view name,
                                          absl::Span<const int64_t> shape) const override;

 private:
  std::string describe_;
  DType dtype_;
  mutable std::mutex mu_;  // loading is single-threaded today; this keeps the contract honest
  mutable std::deque<std::vector<uint8_t>> buffers_;
  mutable std::map<std::string, TensorView, std::less<>> tensors_;
  mutable std::vector<std::string> order_;
};

}  // namespace kvasir

#endif  // KVASIR_ENGINE_WEIGHTS_DUMMY_WEIGHTS_H_
