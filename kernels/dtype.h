// Element types of weights and activations, shared by every backend.
// Quantized types use GGML's block layouts byte for byte, so GGUF tensors are used in place (mmap).
#ifndef KVASIR_KERNELS_DTYPE_H_
#define KVASIR_KERNELS_DTYPE_H_

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace kvasir {

enum class DType : uint8_t {
  kF32,
  kF16,
  kBF16,
  kQ8_0,  // blocks of 32: fp16 scale d, int8 q[32]; x = d * q
  kQ4_0,  // blocks of 32: fp16 d, 16 bytes of nibbles; x = d * (q - 8)
  kQ4_1,  // blocks of 32: fp16 d, fp16 m, 16 bytes of nibbles; x = d * q + m
};

// Byte j of a Q4 block's qs holds element j in its low nibble and element j + 16 in its high one.
struct BlockQ8_0 {
  uint16_t d;
  int8_t qs[32];
};
struct BlockQ4_0 {
  uint16_t d;
  uint8_t qs[16];
};
struct BlockQ4_1 {
  uint16_t d;
  uint16_t m;
  uint8_t qs[16];
};
static_assert(sizeof(BlockQ8_0) == 34 && sizeof(BlockQ4_0) == 18 && sizeof(BlockQ4_1) == 20);

// Elements per block (1 for plain types) and bytes per block.
constexpr int64_t BlockElems(DType t) {
  return (t == DType::kQ8_0 || t == DType::kQ4_0 || t == DType::kQ4_1) ? 32 : 1;
}
constexpr int64_t BlockBytes(DType t) {
  switch (t) {
    case DType::kF32:
      return 4;
    case DType::kF16:
      return 2;
    case DType::kBF16:
      return 2;
    case DType::kQ8_0:
      return sizeof(BlockQ8_0);
    case DType::kQ4_0:
      return sizeof(BlockQ4_0);
    case DType::kQ4_1:
      return sizeof(BlockQ4_1);
  }
  return 0;
}
// Bytes of a row of n elements; n must be a multiple of BlockElems(t).
constexpr int64_t RowBytes(DType t, int64_t n) { return n / BlockElems(t) * BlockBytes(t); }
constexpr bool IsQuantized(DType t) { return BlockElems(t) > 1; }

constexpr std::string_view DTypeName(DType t) {
  switch (t) {
    case DType::kF32:
      return "F32";
    case DType::kF16:
      return "F16";
    case DType::kBF16:
      return "BF16";
    case DType::kQ8_0:
      return "Q8_0";
    case DType::kQ4_0:
      return "Q4_0";
    case DType::kQ4_1:
      return "Q4_1";
  }
  return "?";
}

}  // namespace kvasir

#endif  // KVASIR_KERNELS_DTYPE_H_
