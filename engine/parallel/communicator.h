// The device data plane for tensor and expert parallelism: collectives over the ranks of a
// group. NCCL on GPUs; on CPU, ranks are threads of one process. Collectives are blocking and
// must be called by every rank of the group in the same order.
//
// Status: only the single-rank implementation exists so far (TP = EP = 1). The in-process
// multi-rank implementation and NCCL come with the tensor/expert-parallel work.
#ifndef KVASIR_ENGINE_PARALLEL_COMMUNICATOR_H_
#define KVASIR_ENGINE_PARALLEL_COMMUNICATOR_H_

#include <cstdint>
#include <memory>

namespace kvasir {

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  // data[0, n) = sum over ranks of data[0, n), in place.
  virtual void AllReduceSum(float* data, int64_t n) = 0;
  // out[r * n, (r + 1) * n) = rank r's in[0, n).
  virtual void AllGather(const float* in, int64_t n, float* out) = 0;
  // data[0, n) = root's data[0, n).
  virtual void Broadcast(float* data, int64_t n, int root) = 0;
};

// A group of one: every collective is the identity (or a copy).
std::unique_ptr<Communicator> MakeSingleRankCommunicator();

}  // namespace kvasir

#endif  // KVASIR_ENGINE_PARALLEL_COMMUNICATOR_H_
