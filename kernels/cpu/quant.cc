#include "kernels/cpu/quant.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/fp16.h"
#include "kernels/cpu/simd_internal.h"

namespace kvasir::cpu {
namespace {

void DequantizeQ8_0(const BlockQ8_0* b, int64_t nb, float* dst) {
  for (int64_t i = 0; i < nb; ++i) {
    const float d = Fp16ToFp32(b[i].d);
    for (int j = 0; j < 32; ++j) dst[i * 32 + j] = d * static_cast<float>(b[i].qs[j]);
  }
}

void DequantizeQ4_0(const BlockQ4_0* b, int64_t nb, float* dst) {
  for (int64_t i = 0; i < nb; ++i) {
    const float d = Fp16ToFp32(b[i].d);
    for (int j = 0; j < 16; ++j) {
      dst[i * 32 + j] = d * static_cast<float>((b[i].qs[j] & 0x0f) - 8);
      dst[i * 32 + j + 16] = d * static_cast<float>((b[i].qs[j] >> 4) - 8);
    }
  }
}

void DequantizeQ4_1(const BlockQ4_1* b, int64_t nb, float* dst) {
  for (int64_t i = 0; i < nb; ++i) {
    const float d = Fp16ToFp32(b[i].d);
    const float m = Fp16ToFp32(b[i].m);
    for (int j = 0; j < 16; ++j) {
      dst[i * 32 + j] = d * static_cast<float>(b[i].qs[j] & 0x0f) + m;
      dst[i * 32 + j + 16] = d * static_cast<float>(b[i].qs[j] >> 4) + m;
    }
  }
}

}  // namespace

void DequantizeRow(const void* src, DType t, int64_t n, float* dst) {
  switch (t) {
    case DType::kF32:
      std::memcpy(dst, src, n * sizeof(float));
      return;
    case DType::kF16: {
      const uint16_t* h = static_cast<const uint16_t*>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = Fp16ToFp32(h[i]);
      return;
    }
    case DType::kBF16: {
      const uint16_t* h = static_cast<const uint16_t*>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = Bf16ToFp32(h[i]);
      return;
    }
    case DType::kQ8_0:
      return DequantizeQ8_0(static_cast<const BlockQ8_0*>(src), n / 32, dst);
    case DType::kQ4_0:
      return DequantizeQ4_0(static_cast<const BlockQ4_0*>(src), n / 32, dst);
    case DType::kQ4_1:
      return DequantizeQ4_1(static_cast<const BlockQ4_1*>(src), n / 32, dst);
  }
}

void QuantizeRowQ8_0(const float* x, int64_t n, BlockQ8_0* out) {
  for (int64_t i = 0; i < n / 32; ++i, x += 32) {
    float amax = 0.0f;
    for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[j]));
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    out[i].d = Fp32ToFp16(d);
    for (int j = 0; j < 32; ++j) out[i].qs[j] = static_cast<int8_t>(std::roundf(x[j] * id));
  }
}

void QuantizeRowQ4_0(const float* x, int64_t n, BlockQ4_0* out) {
  for (int64_t i = 0; i < n / 32; ++i, x += 32) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < 32; ++j) {
      if (std::fabs(x[j]) > amax) {
        amax = std::fabs(x[j]);
        max = x[j];
      }
    }
    const float d = max / -8.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    out[i].d = Fp32ToFp16(d);
    for (int j = 0; j < 16; ++j) {
      const int q0 = std::min(15, static_cast<int>(static_cast<int8_t>(x[j] * id + 8.5f)));
      const int q1 = std::min(15, static_cast<int>(static_cast<int8_t>(x[j + 16] * id + 8.5f)));
      out[i].qs[j] = static_cast<uint8_t>(q0 | (q1 << 4));
    }
  }
}

void QuantizeRowQ4_1(const float* x, int64_t n, BlockQ4_1* out) {
  for (int64_t i = 0; i < n / 32; ++i, x += 32) {
    float min = x[0], max = x[0];
    for (int j = 1; j < 32; ++j) {
      min = std::min(min, x[j]);
      max = std::max(max, x[j]);
    }
    const float d = (max - min) / 15.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    out[i].d = Fp32ToFp16(d);
    out[i].m = Fp32ToFp16(min);
    for (int j = 0; j < 16; ++j) {
      const int q0 = std::min(15, static_cast<int>(static_cast<int8_t>((x[j] - min) * id + 0.5f)));
      const int q1 =
          std::min(15, static_cast<int>(static_cast<int8_t>((x[j + 16] - min) * id + 0.5f)));
      out[i].qs[j] = static_cast<uint8_t>(q0 | (q1 << 4));
    }
  }
}

void QuantizeRow(const float* x, DType t, int64_t n, void* out) {
  switch (t) {
    case DType::kF32:
      std::memcpy(out, x, n * sizeof(float));
      return;
    case DType::kF16:
      for (int64_t i = 0; i < n; ++i) static_cast<uint16_t*>(out)[i] = Fp32ToFp16(x[i]);
      return;
    case DType::kBF16:
      for (int64_t i = 0; i < n; ++i) static_cast<uint16_t*>(out)[i] = Fp32ToBf16(x[i]);
      return;
    case DType::kQ8_0:
      return QuantizeRowQ8_0(x, n, static_cast<BlockQ8_0*>(out));
    case DType::kQ4_0:
      return QuantizeRowQ4_0(x, n, static_cast<BlockQ4_0*>(out));
    case DType::kQ4_1:
      return QuantizeRowQ4_1(x, n, static_cast<BlockQ4_1*>(out));
  }
}

namespace internal {

void QuantizeActivationRowScalar(const float* x, int64_t n, BlockQ8Act* out) {
  for (int64_t i = 0; i < n / 32; ++i, x += 32) {
    float amax = 0.0f;
    for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[j]));
    const float d = amax / 127.0f;
    const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
    int sum = 0;
    for (int j = 0; j < 32; ++j) {
      // nearbyint rounds half to even like _mm256_round_ps, so both paths give the same bits.
      const int q = static_cast<int>(std::nearbyint(x[j] * id));
      out[i].qs[j] = static_cast<int8_t>(q);
      sum += q;
    }
    out[i].d = RoundToFp16(d);
    out[i].s = RoundToFp16(d * static_cast<float>(sum));
  }
}

}  // namespace internal

void QuantizeActivationRow(const float* x, int64_t n, BlockQ8Act* out) {
  if (UseAvx2()) return internal::QuantizeActivationRowAvx2(x, n, out);
  internal::QuantizeActivationRowScalar(x, n, out);
}

}  // namespace kvasir::cpu
