// GGUF (llama.cpp) files, versions 2 and 3, read in place from a read-only mapping.
//
// Layout (little-endian): "GGUF", u32 version, u64 tensor_count, u64 kv_count; kv_count pairs of
// (string key, u32 value type, value); tensor_count infos of (string name, u32 n_dims,
// u64 ne[n_dims] innermost first, u32 ggml type, u64 offset); then the data section at the next
// multiple of general.alignment (default 32). A string is a u64 length and that many bytes.
//
// Tensor names: for the llama, qwen2 and qwen3 architectures Get() and TensorNames() use Hugging
// Face names ("blk.3.attn_q.weight" is "model.layers.3.self_attn.q_proj.weight"), so model code is
// format-agnostic; GetRaw() takes the GGUF name. Shapes are outermost first, as in PyTorch.
// Q and K rows of llama files are in llama.cpp's permuted order (for interleaved RoPE); they are
// not un-permuted here: ConfigFromGguf() reports RopeLayout::kInterleaved for them instead.
#ifndef KVASIR_ENGINE_WEIGHTS_GGUF_H_
#define KVASIR_ENGINE_WEIGHTS_GGUF_H_

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/weights/mmap_file.h"
#include "engine/weights/weight_source.h"

namespace kvasir {

// Metadata value types, numbered as in the file.
enum class GgufType : uint32_t {
  kU8 = 0,
  kI8 = 1,
  kU16 = 2,
  kI16 = 3,
  kU32 = 4,
  kI32 = 5,
  kF32 = 6,
  kBool = 7,
  kString = 8,
  kArray = 9,
  kU64 = 10,
  kI64 = 11,
  kF64 = 12,
};

// "u32", "string", ...; "type 42" for a number outside the enum.
std::string GgufTypeName(GgufType t);
// "Q6_K", "F32", ...; "type 42" for an unknown id.
std::string GgmlTypeName(uint32_t ggml_type);

inline constexpr uint64_t kGgufDefaultAlignment = 32;
inline constexpr uint32_t kGgufMaxDims = 4;

class GgufFile : public WeightSource {
 public:
  // Maps and validates the whole header (metadata, tensor infos, every tensor's byte range).
  // NotFound when the file is absent. InvalidArgument naming the file for bad magic, an unsupported
  // version (1, or > 3), counts larger than the file could hold, an unknown value type, a nested
  // array, n_dims > 4, dims that overflow, a bad general.alignment, an offset not a multiple of it,
  // a duplicate tensor name, or a row not a whole number of quant blocks. DataLoss naming the file
  // and the position when anything (a string, a value, tensor data) runs past the end of the file.
  static absl::StatusOr<std::unique_ptr<GgufFile>> Open(const std::string& path);

  GgufFile(const GgufFile&) = delete;
  GgufFile& operator=(const GgufFile&) = delete;

  const std::string& path() const { return file_.path(); }
  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }

  // Metadata, typed. NotFound naming the key and the file when absent; InvalidArgument naming the
  // key, the file, the stored type and the one asked for when the types do not fit.
  std::vector<std::string> Keys() const;  // in file order
  bool HasKey(std::string_view key) const;
  absl::StatusOr<GgufType> KeyType(std::string_view key) const;
  absl::StatusOr<std::string> GetString(std::string_view key) const;
  absl::StatusOr<int64_t> GetInt(std::string_view key) const;   // any integer type that fits int64
  absl::StatusOr<double> GetFloat(std::string_view key) const;  // f32/f64 (and integers)
  absl::StatusOr<bool> GetBool(std::string_view key) const;
  absl::StatusOr<std::vector<std::string>> GetStringArray(std::string_view key) const;
  absl::StatusOr<std::vector<int64_t>> GetIntArray(std::string_view key) const;
  absl::StatusOr<std::vector<double>> GetFloatArray(std::string_view key) const;  // floats or ints

  // general.architecture, or "" when absent or not a string.
  std::string architecture() const;

  // WeightSource, with translated (Hugging Face) names.
  std::string Describe() const override { return path(); }
  std::vector<std::string> TensorNames() const override;  // in file order
  bool Has(std::string_view name) const override;
  absl::StatusOr<TensorView> Get(std::string_view name) const override;

  // The same, with the names as stored in the file ("blk.0.attn_q.weight"). The view's name is the
  // raw name.
  std::vector<std::string> RawTensorNames() const;
  bool HasRaw(std::string_view raw_name) const;
  absl::StatusOr<TensorView> GetRaw(std::string_view raw_name) const;
  // The GGML type id of a tensor (raw name), also for types Get() cannot return.
  absl::StatusOr<uint32_t> RawGgmlType(std::string_view raw_name) const;

 private:
  struct Value {
    GgufType type = GgufType::kU8;
    GgufType elem_type = GgufType::kU8;  // arrays only
    uint64_t count = 0;                  // arrays only
    const uint8_t* data = nullptr;       // scalar bytes; string/array: after the length/header
    uint64_t nbytes = 0;
  };
  struct TensorInfo {
    std::string raw_name;
    std::string name;  // translated
    uint32_t ggml_type = 0;
    std::vector<int64_t> shape;  // outermost first
    uint64_t offset = 0;         // from the data section
    int64_t nbytes = -1;         // -1 when the type's block size is unknown
  };
  class Reader;

  explicit GgufFile(MmapFile file) : file_(std::move(file)) {}
  absl::Status Parse();
  absl::Status ParseKv(Reader& r, uint64_t index);
  absl::Status ParseTensorInfo(Reader& r, uint64_t index);
  absl::Status Finish(uint64_t end_of_infos);
  absl::StatusOr<const Value*> Find(std::string_view key) const;
  absl::Status TypeError(std::string_view key, const Value& v, std::string_view wanted) const;
  absl::StatusOr<TensorView> View(const TensorInfo& t, std::string_view name) const;

  MmapFile file_;
  uint32_t version_ = 0;
  uint64_t alignment_ = kGgufDefaultAlignment;
  uint64_t data_start_ = 0;
  std::vector<std::string> key_order_;
  std::map<std::string, Value, std::less<>> kv_;
  std::vector<TensorInfo> tensors_;
  std::map<std::string, size_t, std::less<>> by_name_;
  std::map<std::string, size_t, std::less<>> by_raw_;
};

// The Hugging Face name of a GGUF tensor name for `architecture` (llama, qwen2, qwen3); the name
// unchanged for other architectures or names it does not know.
std::string GgufToHfName(std::string_view architecture, std::string_view gguf_name);

}  // namespace kvasir

#endif  // KVASIR_ENGINE_WEIGHTS_GGUF_H_
