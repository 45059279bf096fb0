// Hugging Face safetensors: a single file, or a model directory (sharded or not).
//
// File layout: 8-byte little-endian header length N, N bytes of JSON
//   {name: {"dtype": "BF16", "shape": [out, in], "data_offsets": [begin, end]}, "__metadata__": {}}
// then the data section; offsets are relative to byte 8 + N. Every shard is mapped, never copied.
#ifndef KVASIR_ENGINE_WEIGHTS_SAFETENSORS_H_
#define KVASIR_ENGINE_WEIGHTS_SAFETENSORS_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "engine/weights/weight_source.h"

namespace kvasir {

// Largest JSON header accepted (the format's own limit).
inline constexpr uint64_t kMaxSafetensorsHeaderBytes = 100'000'000;

// Opens `path_or_dir`: a .safetensors file; or a directory holding model.safetensors.index.json
// (its "weight_map" maps each tensor to a shard file in the same directory) or model.safetensors.
// The whole header of every shard is validated up front: InvalidArgument or DataLoss naming the
// file (and the tensor) for a short file, a header length past the end or above the limit, JSON
// that is not a header, a duplicate name, an unknown dtype, a negative dim, a shape whose size
// overflows, offsets out of range, overlapping or not matching numel * element size, or an index
// that names a missing shard or a tensor its shard lacks. NotFound when the path or the model files
// are absent. Tensors stored as F32, F16 or BF16 are readable; other dtypes (I64, U8, BOOL,
// F8_E4M3, ...) are listed by TensorNames() but Get() reports them as unsupported.
absl::StatusOr<std::unique_ptr<WeightSource>> OpenSafetensors(const std::string& path_or_dir);

}  // namespace kvasir

#endif  // KVASIR_ENGINE_WEIGHTS_SAFETENSORS_H_
