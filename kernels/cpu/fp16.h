// Scalar IEEE half (fp16) and bfloat16 conversions. Float to half/bf16 rounds to nearest even;
// infinities and NaNs are kept (NaNs stay NaN, quieted), half subnormals are produced and read.
// These match F16C's vcvtps2ph/vcvtph2ps bit for bit (tests check it), so scalar and SIMD kernels
// agree exactly.
#ifndef KVASIR_KERNELS_CPU_FP16_H_
#define KVASIR_KERNELS_CPU_FP16_H_

#include <bit>
#include <cstdint>

namespace kvasir::cpu {

inline float Fp16ToFp32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  const uint32_t mant = h & 0x3ffu;
  if (exp == 0) {
    // Zero or subnormal: mant * 2^-24 is exact in float.
    const float v = static_cast<float>(mant) * 0x1p-24f;
    return std::bit_cast<float>(std::bit_cast<uint32_t>(v) | sign);
  }
  if (exp == 31) {
    const uint32_t quiet = mant != 0 ? 0x00400000u : 0u;  // NaNs come out quiet, as with F16C
    return std::bit_cast<float>(sign | 0x7f800000u | quiet | (mant << 13));
  }
  return std::bit_cast<float>(sign | ((exp + 112) << 23) | (mant << 13));
}

inline uint16_t Fp32ToFp16(float f) {
  const uint32_t x = std::bit_cast<uint32_t>(f);
  const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
  uint32_t abs = x & 0x7fffffffu;
  if (abs > 0x7f800000u) return sign | 0x7e00u | static_cast<uint16_t>((abs >> 13) & 0x3ffu);
  if (abs >= 0x477ff000u) return sign | 0x7c00u;  // >= 65520 rounds to infinity
  if (abs < 0x38800000u) {
    // Below the smallest normal half: adding 0.5f makes the float ulp 2^-24, the half subnormal
    // step, so the FPU does the round-to-nearest-even for us.
    const float r = std::bit_cast<float>(abs) + 0.5f;
    return sign | static_cast<uint16_t>(std::bit_cast<uint32_t>(r) - 0x3f000000u);
  }
  const uint32_t odd = (abs >> 13) & 1u;
  abs += 0xc8000fffu + odd;  // rebias exponent 127 -> 15, round half to even
  return sign | static_cast<uint16_t>(abs >> 13);
}

inline float Bf16ToFp32(uint16_t h) { return std::bit_cast<float>(static_cast<uint32_t>(h) << 16); }

inline uint16_t Fp32ToBf16(float f) {
  const uint32_t x = std::bit_cast<uint32_t>(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((x >> 16) | 0x40u);
  return static_cast<uint16_t>((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

}  // namespace kvasir::cpu

#endif  // KVASIR_KERNELS_CPU_FP16_H_
