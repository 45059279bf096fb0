// An owned cudaMalloc allocation (move-only). For tests, benchmarks and, later, the CUDA backend's
// memory planner, which carves one large buffer rather than allocating per tensor.
#ifndef KVASIR_KERNELS_CUDA_DEVICE_BUFFER_H_
#define KVASIR_KERNELS_CUDA_DEVICE_BUFFER_H_

#include <cuda_runtime_api.h>

#include <cstddef>
#include <utility>

#include "absl/status/statusor.h"
#include "kernels/cuda/cuda_status.h"

namespace kvasir::cuda {

class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& o) noexcept
      : data_(std::exchange(o.data_, nullptr)), bytes_(std::exchange(o.bytes_, 0)) {}
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    if (this != &o) {
      Free();
      data_ = std::exchange(o.data_, nullptr);
      bytes_ = std::exchange(o.bytes_, 0);
    }
    return *this;
  }
  ~DeviceBuffer() { Free(); }

  // On success returns a buffer of `bytes` bytes (256-byte aligned, uninitialised); a request for
  // 0 bytes gives an empty buffer. Out of memory is RESOURCE_EXHAUSTED.
  static absl::StatusOr<DeviceBuffer> Allocate(size_t bytes) {
    DeviceBuffer b;
    if (bytes == 0) return b;
    absl::Status s = CudaStatus(cudaMalloc(&b.data_, bytes), "cudaMalloc");
    if (!s.ok()) return s;
    b.bytes_ = bytes;
    return b;
  }

  void* data() const { return data_; }
  template <typename T>
  T* as() const {
    return static_cast<T*>(data_);
  }
  size_t bytes() const { return bytes_; }

 private:
  void Free() {
    if (data_ != nullptr) cudaFree(data_);  // errors here are sticky ones already reported
    data_ = nullptr;
    bytes_ = 0;
  }
  void* data_ = nullptr;
  size_t bytes_ = 0;
};

}  // namespace kvasir::cuda

#endif  // KVASIR_KERNELS_CUDA_DEVICE_BUFFER_H_
