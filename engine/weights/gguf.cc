#include "engine/weights/gguf.h"

#include <cstring>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/util/status_macros.h"
#include "engine/weights/str_util.h"

namespace kvasir {

using weights_internal::Cat;
namespace {

// GGML tensor types: name, elements and bytes per block (0: unknown size), and our DType if any.
struct GgmlTypeInfo {
  uint32_t id;
  std::string_view name;
  int64_t block_elems;
  int64_t block_bytes;
  std::optional<DType> dtype;
};

constexpr GgmlTypeInfo kGgmlTypes[] = {
    {0, "F32", 1, 4, DType::kF32},          {1, "F16", 1, 2, DType::kF16},
    {2, "Q4_0", 32, 18, DType::kQ4_0},      {3, "Q4_1", 32, 20, DType::kQ4_1},
    {6, "Q5_0", 32, 22, std::nullopt},      {7, "Q5_1", 32, 24, std::nullopt},
    {8, "Q8_0", 32, 34, DType::kQ8_0},      {9, "Q8_1", 32, 36, std::nullopt},
    {10, "Q2_K", 256, 84, std::nullopt},    {11, "Q3_K", 256, 110, std::nullopt},
    {12, "Q4_K", 256, 144, std::nullopt},   {13, "Q5_K", 256, 176, std::nullopt},
    {14, "Q6_K", 256, 210, std::nullopt},   {15, "Q8_K", 256, 292, std::nullopt},
    {16, "IQ2_XXS", 256, 66, std::nullopt}, {17, "IQ2_XS", 256, 74, std::nullopt},
    {18, "IQ3_XXS", 256, 98, std::nullopt}, {19, "IQ1_S", 256, 50, std::nullopt},
    {20, "IQ4_NL", 32, 18, std::nullopt},   {21, "IQ3_S", 256, 110, std::nullopt},
    {22, "IQ2_S", 256, 82, std::nullopt},   {23, "IQ4_XS", 256, 136, std::nullopt},
    {24, "I8", 1, 1, std::nullopt},         {25, "I16", 1, 2, std::nullopt},
    {26, "I32", 1, 4, std::nullopt},        {27, "I64", 1, 8, std::nullopt},
    {28, "F64", 1, 8, std::nullopt},        {29, "IQ1_M", 256, 56, std::nullopt},
    {30, "BF16", 1, 2, DType::kBF16},       {34, "TQ1_0", 0, 0, std::nullopt},
    {35, "TQ2_0", 0, 0, std::nullopt},      {39, "MXFP4", 0, 0, std::nullopt},
};

const GgmlTypeInfo* FindGgmlType(uint32_t id) {
  for (const GgmlTypeInfo& t : kGgmlTypes) {
    if (t.id == id) return &t;
  }
  return nullptr;
}

// Bytes of a scalar value type; 0 for string/array/unknown.
uint64_t ScalarSize(GgufType t) {
  switch (t) {
    case GgufType::kU8:
    case GgufType::kI8:
    case GgufType::kBool:
      return 1;
    case GgufType::kU16:
    case GgufType::kI16:
      return 2;
    case GgufType::kU32:
    case GgufType::kI32:
    case GgufType::kF32:
      return 4;
    case GgufType::kU64:
    case GgufType::kI64:
    case GgufType::kF64:
      return 8;
    default:
      return 0;
  }
}

bool IsInteger(GgufType t) {
  return ScalarSize(t) != 0 && t != GgufType::kBool && t != GgufType::kF32 && t != GgufType::kF64;
}

template <typename T>
T Load(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

// Decodes an integer of type t at p; false when it does not fit int64.
bool LoadInt(GgufType t, const uint8_t* p, int64_t* out) {
  switch (t) {
    case GgufType::kU8:
      *out = Load<uint8_t>(p);
      return true;
    case GgufType::kI8:
      *out = Load<int8_t>(p);
      return true;
    case GgufType::kU16:
      *out = Load<uint16_t>(p);
      return true;
    case GgufType::kI16:
      *out = Load<int16_t>(p);
      return true;
    case GgufType::kU32:
      *out = Load<uint32_t>(p);
      return true;
    case GgufType::kI32:
      *out = Load<int32_t>(p);
      return true;
    case GgufType::kI64:
      *out = Load<int64_t>(p);
      return true;
    case GgufType::kU64: {
      const uint64_t u = Load<uint64_t>(p);
      if (u > uint64_t{INT64_MAX}) return false;
      *out = static_cast<int64_t>(u);
      return true;
    }
    default:
      return false;
  }
}

bool LoadFloat(GgufType t, const uint8_t* p, double* out) {
  if (t == GgufType::kF32)
    *out = Load<float>(p);
  else if (t == GgufType::kF64)
    *out = Load<double>(p);
  else if (int64_t i; LoadInt(t, p, &i))
    *out = static_cast<double>(i);
  else if (t == GgufType::kU64)
    *out = static_cast<double>(Load<uint64_t>(p));
  else
    return false;
  return true;
}

constexpr std::pair<std::string_view, std::string_view> kLayerNames[] = {
    {"attn_norm", "input_layernorm"},    {"ffn_norm", "post_attention_layernorm"},
    {"attn_q", "self_attn.q_proj"},      {"attn_k", "self_attn.k_proj"},
    {"attn_v", "self_attn.v_proj"},      {"attn_output", "self_attn.o_proj"},
    {"attn_q_norm", "self_attn.q_norm"}, {"attn_k_norm", "self_attn.k_norm"},
    {"ffn_gate", "mlp.gate_proj"},       {"ffn_up", "mlp.up_proj"},
    {"ffn_down", "mlp.down_proj"},
};

}  // namespace

std::string GgufTypeName(GgufType t) {
  static constexpr std::string_view kNames[] = {"u8",  "i8",  "u16",  "i16",    "u32",
                                                "i32", "f32", "bool", "string", "array",
                                                "u64", "i64", "f64"};
  const auto i = static_cast<uint32_t>(t);
  if (i < std::size(kNames)) return std::string(kNames[i]);
  return Cat("type ", i);
}

std::string GgmlTypeName(uint32_t ggml_type) {
  const GgmlTypeInfo* t = FindGgmlType(ggml_type);
  return t != nullptr ? std::string(t->name) : Cat("type ", ggml_type);
}

std::string GgufToHfName(std::string_view arch, std::string_view name) {
  if (arch != "llama" && arch != "qwen2" && arch != "qwen3") return std::string(name);
  if (name == "token_embd.weight") return "model.embed_tokens.weight";
  if (name == "output_norm.weight") return "model.norm.weight";
  if (name == "output.weight") return "lm_head.weight";
  constexpr std::string_view kBlk = "blk.";
  if (name.substr(0, kBlk.size()) != kBlk) return std::string(name);
  std::string_view rest = name.substr(kBlk.size());
  const size_t dot = rest.find('.');
  uint32_t layer = 0;
  if (dot == std::string_view::npos ||
      !absl::SimpleAtoi(weights_internal::ToAbsl(rest.substr(0, dot)), &layer)) {
    return std::string(name);
  }
  rest = rest.substr(dot + 1);
  const size_t last = rest.rfind('.');
  if (last == std::string_view::npos) return std::string(name);
  const std::string_view part = rest.substr(0, last);
  const std::string_view suffix = rest.substr(last + 1);
  if (suffix != "weight" && suffix != "bias") return std::string(name);
  for (const auto& [gguf, hf] : kLayerNames) {
    if (part == gguf) return Cat("model.layers.", layer, ".", hf, ".", suffix);
  }
  return std::string(name);
}

// Bounds-checked little-endian reads over the mapping; every error names the file and position.
class GgufFile::Reader {
 public:
  explicit Reader(const MmapFile& f) : f_(f) {}

  uint64_t pos() const { return pos_; }
  uint64_t remaining() const { return f_.size() - pos_; }
  const uint8_t* here() const { return f_.data() + pos_; }

  absl::Status Need(uint64_t n, std::string_view what) const {
    if (n > remaining()) {
      return absl::DataLossError(Cat("'", f_.path(), "': truncated: ", what, " needs ", n,
                                     " bytes at offset ", pos_, " but the file has ", f_.size(),
                                     " bytes"));
    }
    return absl::OkStatus();
  }
  absl::Status Skip(uint64_t n, std::string_view what) {
    KV_RETURN_IF_ERROR(Need(n, what));
    pos_ += n;
    return absl::OkStatus();
  }
  template <typename T>
  absl::StatusOr<T> Read(std::string_view what) {
    KV_RETURN_IF_ERROR(Need(sizeof(T), what));
    T v = Load<T>(here());
    pos_ += sizeof(T);
    return v;
  }
  absl::StatusOr<std::string_view> ReadString(std::string_view what) {
    KV_ASSIGN_OR_RETURN(uint64_t n, Read<uint64_t>(what));
    if (n > remaining()) {
      return absl::DataLossError(Cat("'", f_.path(), "': truncated: ", what, " has length ", n,
                                     " at offset ", pos_, ", past the end of the file (", f_.size(),
                                     " bytes)"));
    }
    std::string_view s(reinterpret_cast<const char*>(here()), n);
    pos_ += n;
    return s;
  }

 private:
  const MmapFile& f_;
  uint64_t pos_ = 0;
};

absl::StatusOr<std::unique_ptr<GgufFile>> GgufFile::Open(const std::string& path) {
  KV_ASSIGN_OR_RETURN(MmapFile file, MmapFile::Open(path));
  std::unique_ptr<GgufFile> f(new GgufFile(std::move(file)));
  KV_RETURN_IF_ERROR(f->Parse());
  return f;
}

absl::Status GgufFile::Parse() {
  Reader r(file_);
  const std::string& p = path();
  if (file_.size() < 4 || std::memcmp(file_.data(), "GGUF", 4) != 0) {
    return absl::InvalidArgumentError(
        Cat("'", p, "' is not a GGUF file (bad magic; expected \"GGUF\")"));
  }
  KV_RETURN_IF_ERROR(r.Skip(4, "magic"));
  KV_ASSIGN_OR_RETURN(version_, r.Read<uint32_t>("version"));
  if (version_ != 2 && version_ != 3) {
    return absl::InvalidArgumentError(
        Cat("'", p, "': unsupported GGUF version ", version_, " (supported: 2, 3)",
            version_ != 0 && (version_ & 0xffff) == 0 ? "; a big-endian file?" : ""));
  }
  KV_ASSIGN_OR_RETURN(const uint64_t tensor_count, r.Read<uint64_t>("tensor_count"));
  KV_ASSIGN_OR_RETURN(const uint64_t kv_count, r.Read<uint64_t>("kv_count"));
  // Smallest possible entries: a KV is an 8-byte key length, a 4-byte type and >= 1 byte of value;
  // a tensor info is an 8-byte name length, n_dims, type and offset.
  if (kv_count > r.remaining() / 13) {
    return absl::InvalidArgumentError(Cat("'", p, "': kv_count ", kv_count,
                                          " is larger than the file (", file_.size(),
                                          " bytes) could hold; truncated or corrupt?"));
  }
  if (tensor_count > r.remaining() / 24) {
    return absl::InvalidArgumentError(Cat("'", p, "': tensor_count ", tensor_count,
                                          " is larger than the file (", file_.size(),
                                          " bytes) could hold; truncated or corrupt?"));
  }
  for (uint64_t i = 0; i < kv_count; ++i) KV_RETURN_IF_ERROR(ParseKv(r, i));
  if (auto it = kv_.find("general.alignment"); it != kv_.end()) {
    int64_t a = 0;
    if (!IsInteger(it->second.type) || !LoadInt(it->second.type, it->second.data, &a) || a <= 0 ||
        (a & (a - 1)) != 0 || a > (1 << 30)) {
      return absl::InvalidArgumentError(
          Cat("'", p, "': general.alignment must be a positive power of two integer"));
    }
    alignment_ = static_cast<uint64_t>(a);
  }
  tensors_.reserve(tensor_count);
  for (uint64_t i = 0; i < tensor_count; ++i) KV_RETURN_IF_ERROR(ParseTensorInfo(r, i));
  return Finish(r.pos());
}

absl::Status GgufFile::ParseKv(Reader& r, uint64_t index) {
  const std::string what = Cat("key ", index);
  KV_ASSIGN_OR_RETURN(std::string_view key_view, r.ReadString(what));
  std::string key(key_view);
  const std::string ctx = Cat("value of key '", key, "'");
  KV_ASSIGN_OR_RETURN(uint32_t type, r.Read<uint32_t>(ctx));
  Value v;
  v.type = static_cast<GgufType>(type);
  if (const uint64_t size = ScalarSize(v.type); size != 0) {
    v.data = r.here();
    v.nbytes = size;
    KV_RETURN_IF_ERROR(r.Skip(size, ctx));
  } else if (v.type == GgufType::kString) {
    KV_ASSIGN_OR_RETURN(std::string_view s, r.ReadString(ctx));
    v.data = reinterpret_cast<const uint8_t*>(s.data());
    v.nbytes = s.size();
  } else if (v.type == GgufType::kArray) {
    KV_ASSIGN_OR_RETURN(uint32_t elem, r.Read<uint32_t>(ctx));
    KV_ASSIGN_OR_RETURN(v.count, r.Read<uint64_t>(ctx));
    v.elem_type = static_cast<GgufType>(elem);
    v.data = r.here();
    const uint64_t start = r.pos();
    const uint64_t elem_size = ScalarSize(v.elem_type);
    if (v.elem_type == GgufType::kArray) {
      return absl::InvalidArgumentError(
          Cat("'", path(), "': key '", key, "' is an array of arrays (not supported)"));
    }
    if (elem_size == 0 && v.elem_type != GgufType::kString) {
      return absl::InvalidArgumentError(
          Cat("'", path(), "': key '", key, "' has unknown array element type ", elem));
    }
    const uint64_t min_size = elem_size != 0 ? elem_size : 8;
    if (v.count > r.remaining() / min_size) {
      return absl::InvalidArgumentError(Cat("'", path(), "': array length ", v.count, " of key '",
                                            key, "' (", GgufTypeName(v.elem_type),
                                            ") is larger than the rest of the file could hold"));
    }
    if (elem_size != 0) {
      KV_RETURN_IF_ERROR(r.Skip(v.count * elem_size, ctx));
    } else {
      for (uint64_t i = 0; i < v.count; ++i) {
        KV_RETURN_IF_ERROR(r.ReadString(Cat(ctx, "[", i, "]")).status());
      }
    }
    v.nbytes = r.pos() - start;
  } else {
    return absl::InvalidArgumentError(
        Cat("'", path(), "': key '", key, "' has unknown value type ", type));
  }
  auto [it, inserted] = kv_.emplace(key, v);
  if (!inserted) {
    return absl::InvalidArgumentError(Cat("'", path(), "': duplicate metadata key '", key, "'"));
  }
  key_order_.push_back(std::move(key));
  return absl::OkStatus();
}

absl::Status GgufFile::ParseTensorInfo(Reader& r, uint64_t index) {
  KV_ASSIGN_OR_RETURN(std::string_view name, r.ReadString(Cat("name of tensor ", index)));
  TensorInfo t;
  t.raw_name = std::string(name);
  const std::string ctx = Cat("tensor '", t.raw_name, "'");
  auto bad = [&](std::string_view what) {
    return absl::InvalidArgumentError(Cat("'", path(), "': ", ctx, ": ", what));
  };
  KV_ASSIGN_OR_RETURN(uint32_t n_dims, r.Read<uint32_t>(ctx));
  if (n_dims > kGgufMaxDims) {
    return bad(Cat("n_dims ", n_dims, " exceeds the maximum of ", kGgufMaxDims));
  }
  std::vector<int64_t> ne(n_dims);
  int64_t numel = 1;
  for (uint32_t d = 0; d < n_dims; ++d) {
    KV_ASSIGN_OR_RETURN(uint64_t n, r.Read<uint64_t>(ctx));
    if (n > uint64_t{INT64_MAX} || __builtin_mul_overflow(numel, static_cast<int64_t>(n), &numel)) {
      return bad(Cat("dims overflow int64 (dim ", d, " is ", n, ")"));
    }
    ne[d] = static_cast<int64_t>(n);
  }
  t.shape.assign(ne.rbegin(), ne.rend());
  KV_ASSIGN_OR_RETURN(t.ggml_type, r.Read<uint32_t>(ctx));
  KV_ASSIGN_OR_RETURN(t.offset, r.Read<uint64_t>(ctx));
  if (t.offset % alignment_ != 0) {
    return bad(Cat("data offset ", t.offset, " is not a multiple of the alignment ", alignment_));
  }
  if (const GgmlTypeInfo* info = FindGgmlType(t.ggml_type);
      info != nullptr && info->block_elems != 0) {
    const int64_t row = n_dims == 0 ? 1 : ne[0];
    if (row % info->block_elems != 0) {
      return bad(Cat("row length ", row, " is not a multiple of the ", info->name, " block size ",
                     info->block_elems));
    }
    if (__builtin_mul_overflow(numel / info->block_elems, info->block_bytes, &t.nbytes)) {
      return bad("byte size overflows int64");
    }
  }
  const size_t i = tensors_.size();
  if (!by_raw_.emplace(t.raw_name, i).second) return bad("duplicate tensor name");
  tensors_.push_back(std::move(t));
  return absl::OkStatus();
}

absl::Status GgufFile::Finish(uint64_t end_of_infos) {
  const uint64_t size = file_.size();
  data_start_ = (end_of_infos + alignment_ - 1) / alignment_ * alignment_;
  const uint64_t data_size = data_start_ <= size ? size - data_start_ : 0;
  if (!tensors_.empty() && data_start_ > size) {
    return absl::DataLossError(Cat("'", path(), "': truncated: the data section starts at ",
                                   data_start_, " but the file has ", size, " bytes"));
  }
  const std::string arch = architecture();
  for (size_t i = 0; i < tensors_.size(); ++i) {
    TensorInfo& t = tensors_[i];
    const uint64_t nbytes = t.nbytes < 0 ? 0 : static_cast<uint64_t>(t.nbytes);
    if (t.offset > data_size || nbytes > data_size - t.offset) {
      return absl::DataLossError(Cat("'", path(), "': truncated: tensor '", t.raw_name, "' (",
                                     GgmlTypeName(t.ggml_type), " ", ShapeString(t.shape),
                                     ") spans bytes ", t.offset, "..", t.offset + nbytes,
                                     " of the data section, which has ", data_size, " bytes"));
    }
    t.name = GgufToHfName(arch, t.raw_name);
    if (!by_name_.emplace(t.name, i).second) {
      return absl::InvalidArgumentError(Cat("'", path(), "': tensor '", t.raw_name,
                                            "' maps to the name '", t.name, "' of another tensor"));
    }
  }
  return absl::OkStatus();
}

std::vector<std::string> GgufFile::Keys() const { return key_order_; }

bool GgufFile::HasKey(std::string_view key) const { return kv_.find(key) != kv_.end(); }

absl::StatusOr<const GgufFile::Value*> GgufFile::Find(std::string_view key) const {
  auto it = kv_.find(key);
  if (it == kv_.end()) {
    return absl::NotFoundError(Cat("metadata key '", key, "' not found in '", path(), "'"));
  }
  return &it->second;
}

absl::Status GgufFile::TypeError(std::string_view key, const Value& v,
                                 std::string_view wanted) const {
  std::string have = GgufTypeName(v.type);
  if (v.type == GgufType::kArray) have = Cat("array<", GgufTypeName(v.elem_type), ">");
  return absl::InvalidArgumentError(
      Cat("metadata key '", key, "' in '", path(), "' is ", have, ", expected ", wanted));
}

absl::StatusOr<GgufType> GgufFile::KeyType(std::string_view key) const {
  KV_ASSIGN_OR_RETURN(const Value* v, Find(key));
  return v->type;
}

absl::StatusOr<std::string> GgufFile::GetString(std::string_view key) const {
  KV_ASSIGN_OR_RETURN(const Value* v, Find(key));
  if (v->type != GgufType::kString) return TypeError(key, *v, "string");
  return std::string(reinterpret_cast<const char*>(v->data), v->nbytes);
}

absl::StatusOr<int64_t> GgufFile::GetInt(std::string_view key) const {
  KV_ASSIGN_OR_RETURN(const Value* v, Find(key));
  int64_t out = 0;
  if (!IsInteger(v->type)) return TypeError(key, *v, "an integer");
  if (!LoadInt(v->type, v->data, &out)) return TypeError(key, *v, "an integer that fits int64");
  return out;
}

absl::StatusOr<double> GgufFile::GetFloat(std::string_view key) const {
  KV_ASSIGN_OR_RETURN(const Value* v, Find(key));
  double out = 0;
  if (!LoadFloat(v->type, v->data, &out)) return TypeError(key, *v, "a number");
  return out;
}

absl::StatusOr<bool> GgufFile::GetBool(std::string_view key) const {
  KV_ASSIGN_OR_RETURN(const Value* v, Find(key));
  if (v->type != GgufType::kBool) return TypeError(key, *v, "bool");
  return v->data[0] != 0;
}

absl::StatusOr<std::vector<std::string>> GgufFile::GetStringArray(std::string_view key) const {
  KV_ASSIGN_OR_RETURN(const Value* v, Find(key));
  if (v->type != GgufType::kArray || v->elem_type != GgufType::kString) {
    return TypeError(key, *v, "array<string>");
  }
  std::vector<std::string> out;
  out.reserve(v->count);
  const uint8_t* p = v->data;  // validated by Parse()
  for (uint64_t i = 0; i < v->count; ++i) {
    const uint64_t n = Load<uint64_t>(p);
    out.emplace_back(reinterpret_cast<const char*>(p + 8), n);
    p += 8 + n;
  }
  return out;
}

absl::StatusOr<std::vector<int64_t>> GgufFile::GetIntArray(std::string_view key) const {
  KV_ASSIGN_OR_RETURN(const Value* v, Find(key));
  if (v->type != GgufType::kArray || !IsInteger(v->elem_type)) {
    return TypeError(key, *v, "an array of integers");
  }
  const uint64_t size = ScalarSize(v->elem_type);
  std::vector<int64_t> out(v->count);
  for (uint64_t i = 0; i < v->count; ++i) {
    if (!LoadInt(v->elem_type, v->data + i * size, &out[i])) {
      return TypeError(key, *v, "an array of integers that fit int64");
    }
  }
  return out;
}

absl::StatusOr<std::vector<double>> GgufFile::GetFloatArray(std::string_view key) const {
  KV_ASSIGN_OR_RETURN(const Value* v, Find(key));
  const uint64_t size = ScalarSize(v->elem_type);
  if (v->type != GgufType::kArray || size == 0 || v->elem_type == GgufType::kBool) {
    return TypeError(key, *v, "an array of numbers");
  }
  std::vector<double> out(v->count);
  for (uint64_t i = 0; i < v->count; ++i) LoadFloat(v->elem_type, v->data + i * size, &out[i]);
  return out;
}

std::string GgufFile::architecture() const {
  auto a = GetString("general.architecture");
  return a.ok() ? *a : std::string();
}

std::vector<std::string> GgufFile::TensorNames() const {
  std::vector<std::string> names;
  names.reserve(tensors_.size());
  for (const TensorInfo& t : tensors_) names.push_back(t.name);
  return names;
}

std::vector<std::string> GgufFile::RawTensorNames() const {
  std::vector<std::string> names;
  names.reserve(tensors_.size());
  for (const TensorInfo& t : tensors_) names.push_back(t.raw_name);
  return names;
}

bool GgufFile::Has(std::string_view name) const { return by_name_.find(name) != by_name_.end(); }

bool GgufFile::HasRaw(std::string_view raw_name) const {
  return by_raw_.find(raw_name) != by_raw_.end();
}

absl::StatusOr<TensorView> GgufFile::Get(std::string_view name) const {
  auto it = by_name_.find(name);
  if (it == by_name_.end()) {
    return absl::NotFoundError(Cat("tensor '", name, "' not found in '", path(), "' (",
                                   tensors_.size(), " tensors, architecture '", architecture(),
                                   "')"));
  }
  return View(tensors_[it->second], name);
}

absl::StatusOr<TensorView> GgufFile::GetRaw(std::string_view raw_name) const {
  auto it = by_raw_.find(raw_name);
  if (it == by_raw_.end()) {
    return absl::NotFoundError(
        Cat("tensor '", raw_name, "' (GGUF name) not found in '", path(), "'"));
  }
  return View(tensors_[it->second], raw_name);
}

absl::StatusOr<uint32_t> GgufFile::RawGgmlType(std::string_view raw_name) const {
  auto it = by_raw_.find(raw_name);
  if (it == by_raw_.end()) {
    return absl::NotFoundError(
        Cat("tensor '", raw_name, "' (GGUF name) not found in '", path(), "'"));
  }
  return tensors_[it->second].ggml_type;
}

absl::StatusOr<TensorView> GgufFile::View(const TensorInfo& t, std::string_view name) const {
  const GgmlTypeInfo* info = FindGgmlType(t.ggml_type);
  if (info == nullptr || !info->dtype.has_value()) {
    return absl::InvalidArgumentError(
        Cat("tensor '", name, "' (GGUF '", t.raw_name, "') in '", path(), "' has GGML type ",
            GgmlTypeName(t.ggml_type), " (id ", t.ggml_type,
            "), which is not supported (supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1)"));
  }
  TensorView v;
  v.name = std::string(name);
  v.dtype = *info->dtype;
  v.shape = t.shape;
  v.data = file_.data() + data_start_ + t.offset;
  v.nbytes = t.nbytes;
  return v;
}

}  // namespace kvasir
