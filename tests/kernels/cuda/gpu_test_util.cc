#include "tests/kernels/cuda/gpu_test_util.h"

#include <cmath>
#include <random>

namespace kvasir::cuda::testing {

std::string NoDeviceReason() {
  int n = 0;
  const cudaError_t err = cudaGetDeviceCount(&n);
  if (err != cudaSuccess) {
    cudaGetLastError();
    return std::string(cudaGetErrorName(err)) + ": " + cudaGetErrorString(err);
  }
  if (n == 0) return "cudaGetDeviceCount found 0 devices";
  return "";
}

std::vector<float> RandomFloats(size_t n, uint32_t seed, float lo, float hi) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

std::vector<uint16_t> RandomBf16(size_t n, uint32_t seed, float lo, float hi) {
  const std::vector<float> f = RandomFloats(n, seed, lo, hi);
  std::vector<uint16_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = cpu::Fp32ToBf16(f[i]);
  return v;
}

std::vector<float> Bf16ToFloat(const std::vector<uint16_t>& v) {
  std::vector<float> f(v.size());
  for (size_t i = 0; i < v.size(); ++i) f[i] = cpu::Bf16ToFp32(v[i]);
  return f;
}

std::vector<double> ToDouble(const std::vector<float>& v) { return {v.begin(), v.end()}; }

double RelError(const std::vector<float>& out, const std::vector<double>& ref) {
  // A size mismatch is a broken test, not a numeric difference: say so.
  EXPECT_EQ(out.size(), ref.size()) << "output and reference differ in length";
  if (out.size() != ref.size()) return INFINITY;
  double num = 0.0, den = 0.0;
  for (size_t i = 0; i < out.size(); ++i) {
    if (!std::isfinite(out[i]) && std::isfinite(ref[i])) return INFINITY;
    const double d = out[i] - ref[i];
    num += d * d;
    den += ref[i] * ref[i];
  }
  return den == 0.0 ? std::sqrt(num) : std::sqrt(num / den);
}

double RelError(const std::vector<uint16_t>& out_bf16, const std::vector<double>& ref) {
  return RelError(Bf16ToFloat(out_bf16), ref);
}

}  // namespace kvasir::cuda::testing
