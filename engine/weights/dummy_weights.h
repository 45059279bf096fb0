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
#include <string_view>
#include <vector>

#include "engine/weights/weight_source.h"

namespace kvasir {

// Value i of a dummy tensor (not a norm) is (2u - 1) * kDummyAmplitude with u = the top 53 bits
// of DummyMix(DummyNameSeed(name) + (i + 1) * kDummyGolden) over 2^53: a counter-based stream,
// so a device can make element i on its own (kernels/cuda FillDummy). Norm weights
// (DummyIsNorm) are 1.
inline constexpr uint64_t kDummyGolden = 0x9E3779B97F4A7C15ull;
// 0.02 * sqrt(3) rounded to float (uniform in [-a, a] has standard deviation a / sqrt(3) = 0.02).
inline constexpr double kDummyAmplitude = 0x1.1bc77ap-5;
uint64_t DummyNameSeed(std::string_view name);
bool DummyIsNorm(std::string_view name);

class DummyWeightSource final : public WeightSource {
 public:
  enum Where {
    kOnHost,    // the tensors are made here; TensorView::data points to them
    kOnDevice,  // TensorView::data is null: the backend makes the tensor itself, in bf16
                // (Ops::Upload), from the name (DummyNameSeed, DummyIsNorm)
  };
  // `dtype`: kF32, kF16 or kBF16 (what the tensors are made in; kBF16 for kOnDevice).
  explicit DummyWeightSource(std::string describe, DType dtype = DType::kF32);
  DummyWeightSource(std::string describe, Where where);

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
  bool on_device_ = false;
  mutable std::mutex mu_;  // loading is single-threaded today; this keeps the contract honest
  mutable std::deque<std::vector<uint8_t>> buffers_;
  mutable std::map<std::string, TensorView, std::less<>> tensors_;
  mutable std::vector<std::string> order_;
};

}  // namespace kvasir

#endif  // KVASIR_ENGINE_WEIGHTS_DUMMY_WEIGHTS_H_
