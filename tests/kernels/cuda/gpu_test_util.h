// Helpers of the GPU kernel tests: device detection (tests skip visibly without a device), device
// arrays with NaN poisoning, bf16 random data, relative errors against float64 references.
#ifndef KVASIR_TESTS_KERNELS_CUDA_GPU_TEST_UTIL_H_
#define KVASIR_TESTS_KERNELS_CUDA_GPU_TEST_UTIL_H_

#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "kernels/cpu/fp16.h"
#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/device_buffer.h"
#include "kernels/cuda/kernel_args.h"

namespace kvasir::cuda::testing {

// "" when a CUDA device is usable; otherwise why not (the cudaGetDeviceCount error).
std::string NoDeviceReason();

// Base fixture: skips the test, saying so, when there is no device.
class GpuTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string why = NoDeviceReason();
    if (!why.empty()) GTEST_SKIP() << "no CUDA device: " << why;
  }
};

#define KV_ASSERT_OK(expr)                       \
  do {                                           \
    const ::absl::Status kv_s_ = (expr);         \
    ASSERT_TRUE(kv_s_.ok()) << kv_s_.ToString(); \
  } while (0)
#define KV_ASSERT_CUDA(call) KV_ASSERT_OK(::kvasir::cuda::CudaStatus((call), #call))

// A device array of n T's. Host-side bf16 values are uint16_t bit patterns.
template <typename T>
class DeviceArray {
 public:
  explicit DeviceArray(size_t n) : n_(n) {
    auto b = DeviceBuffer::Allocate(n * sizeof(T));
    status_ = b.status();
    if (b.ok()) buf_ = std::move(*b);
  }
  explicit DeviceArray(const std::vector<T>& host) : DeviceArray(host.size()) {
    if (status_.ok() && n_ > 0) {
      status_ =
          CudaStatus(cudaMemcpy(buf_.data(), host.data(), n_ * sizeof(T), cudaMemcpyHostToDevice),
                     "cudaMemcpy H2D");
    }
  }
  // Every byte 0xff: NaN for bf16 and float, -1 for integers.
  absl::Status Poison() {
    if (!status_.ok() || n_ == 0) return status_;
    return CudaStatus(cudaMemset(buf_.data(), 0xff, n_ * sizeof(T)), "cudaMemset");
  }
  std::vector<T> Download() const {
    std::vector<T> host(n_);
    if (n_ > 0) cudaMemcpy(host.data(), buf_.data(), n_ * sizeof(T), cudaMemcpyDeviceToHost);
    return host;
  }
  T* get() const { return buf_.as<T>(); }
  bf16* bf() const { return reinterpret_cast<bf16*>(buf_.data()); }
  size_t size() const { return n_; }
  const absl::Status& status() const { return status_; }

 private:
  size_t n_;
  DeviceBuffer buf_;
  absl::Status status_;
};

// n bf16 bit patterns of uniform values in [lo, hi), from seed.
std::vector<uint16_t> RandomBf16(size_t n, uint32_t seed, float lo = -1.0f, float hi = 1.0f);
std::vector<float> RandomFloats(size_t n, uint32_t seed, float lo = -1.0f, float hi = 1.0f);
std::vector<float> Bf16ToFloat(const std::vector<uint16_t>& v);
inline double Bf(uint16_t h) { return cpu::Bf16ToFp32(h); }

// ||out - ref|| / ||ref|| over all elements; infinity if out has a NaN or infinity where ref is
// finite (an unwritten, poisoned element).
double RelError(const std::vector<float>& out, const std::vector<double>& ref);
double RelError(const std::vector<uint16_t>& out_bf16, const std::vector<double>& ref);
std::vector<double> ToDouble(const std::vector<float>& v);

// Tolerances (device/METHOD.md): bf16 outputs land between 1e-3 and 1e-2. An f32 output whose
// float64 reference uses the same (bf16-rounded) inputs differs only by fp32 accumulation and
// rounding (~1e-7 relative for a bf16-input, fp32-accumulate GEMM or a logsumexp).
inline constexpr double kBf16Tol = 1e-2;
inline constexpr double kF32OutTol = 1e-5;

}  // namespace kvasir::cuda::testing

#endif  // KVASIR_TESTS_KERNELS_CUDA_GPU_TEST_UTIL_H_
