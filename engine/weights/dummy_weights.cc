#include "engine/weights/dummy_weights.h"

#include <bit>
#include <cmath>
#include <cstring>

#include "engine/weights/str_util.h"

namespace kvasir {
namespace {

using weights_internal::Cat;

constexpr int64_t kMaxDummyBytes = int64_t{1} << 40;

uint16_t ToHalfBits(float f, DType dtype) {
  if (dtype == DType::kBF16) {
    const uint32_t bits = std::bit_cast<uint32_t>(f);
    return static_cast<uint16_t>((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16);  // round to even
  }
  return std::bit_cast<uint16_t>(static_cast<_Float16>(f));
}

// splitmix64: a fast, well-mixed stream of 64-bit values from one seed.
uint64_t NextRandom(uint64_t& state) {
  uint64_t z = (state += kDummyGolden);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

}  // namespace

// FNV-1a: a seed that is the same in every process (absl::Hash is not).
uint64_t DummyNameSeed(std::string_view name) {
  uint64_t h = 0xCBF29CE484222325ull;
  for (unsigned char c : name) h = (h ^ c) * 0x100000001B3ull;
  return h;
}

bool DummyIsNorm(std::string_view name) { return name.ends_with("norm.weight"); }

DummyWeightSource::DummyWeightSource(std::string describe, DType dtype)
    : describe_(std::move(describe)), dtype_(dtype) {}

DummyWeightSource::DummyWeightSource(std::string describe, Where where)
    : describe_(std::move(describe)),
      dtype_(where == kOnDevice ? DType::kBF16 : DType::kF32),
      on_device_(where == kOnDevice) {}

std::vector<std::string> DummyWeightSource::TensorNames() const {
  std::lock_guard<std::mutex> lock(mu_);
  return order_;
}

bool DummyWeightSource::Has(std::string_view name) const {
  std::lock_guard<std::mutex> lock(mu_);
  return tensors_.find(name) != tensors_.end();
}

absl::StatusOr<TensorView> DummyWeightSource::Get(std::string_view name) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = tensors_.find(name);
  if (it == tensors_.end()) {
    return absl::NotFoundError(
        Cat(describe_, ": no dummy tensor '", name, "' has been made (no shape asked)"));
  }
  return it->second;
}

absl::StatusOr<TensorView> DummyWeightSource::GetWithShape(std::string_view name,
                                                           absl::Span<const int64_t> shape) const {
  std::lock_guard<std::mutex> lock(mu_);
  if (auto it = tensors_.find(name); it != tensors_.end()) {
    if (absl::Span<const int64_t>(it->second.shape) != shape) {
      return absl::InvalidArgumentError(Cat(describe_, ": dummy tensor '", name,
                                            "' was made with shape ", ShapeString(it->second.shape),
                                            ", asked again with ", ShapeString(shape)));
    }
    return it->second;
  }
  const int64_t elem = dtype_ == DType::kF32 ? 4 : 2;
  int64_t numel = 1;
  for (int64_t d : shape) {
    if (d < 0 || (d > 0 && numel > kMaxDummyBytes / elem / d)) {
      return absl::InvalidArgumentError(
          Cat(describe_, ": dummy tensor '", name, "' has an invalid shape ", ShapeString(shape)));
    }
    numel *= d;
  }
  TensorView view;
  view.name = std::string(name);
  view.dtype = dtype_;
  view.shape.assign(shape.begin(), shape.end());
  view.nbytes = numel * elem;
  if (on_device_) {  // data stays null: the backend makes the values
    order_.push_back(view.name);
    tensors_.emplace(view.name, view);
    return view;
  }
  std::vector<uint8_t>& buf = buffers_.emplace_back(static_cast<size_t>(numel * elem));
  const bool is_norm = DummyIsNorm(name);
  // Uniform in [-a, a] has standard deviation a / sqrt(3).
  const double a = kDummyAmplitude;
  uint64_t state = DummyNameSeed(name);
  for (int64_t i = 0; i < numel; ++i) {
    float v = 1.0f;
    if (!is_norm) {
      const double u = static_cast<double>(NextRandom(state) >> 11) * 0x1.0p-53;  // [0, 1)
      v = static_cast<float>((2.0 * u - 1.0) * a);
    }
    if (dtype_ == DType::kF32) {
      std::memcpy(buf.data() + i * 4, &v, 4);
    } else {
      const uint16_t h = ToHalfBits(v, dtype_);
      std::memcpy(buf.data() + i * 2, &h, 2);
    }
  }
  view.data = buf.data();
  order_.push_back(view.name);
  tensors_.emplace(view.name, view);
  return view;
}

}  // namespace kvasir
