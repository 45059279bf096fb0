#include "engine/weights/safetensors.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/util/status_macros.h"
#include "engine/weights/mmap_file.h"
#include "engine/weights/str_util.h"
#include "nlohmann/json.hpp"

namespace kvasir {

using weights_internal::Cat;
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

constexpr char kIndexName[] = "model.safetensors.index.json";
constexpr char kSingleName[] = "model.safetensors";

struct StDType {
  std::string_view name;
  int64_t size;
  std::optional<DType> dtype;  // nullopt: listed, but Get() reports it unsupported
};

constexpr StDType kStDTypes[] = {
    {"F32", 4, DType::kF32},      {"F16", 2, DType::kF16},      {"BF16", 2, DType::kBF16},
    {"F64", 8, std::nullopt},     {"I64", 8, std::nullopt},     {"I32", 4, std::nullopt},
    {"I16", 2, std::nullopt},     {"I8", 1, std::nullopt},      {"U64", 8, std::nullopt},
    {"U32", 4, std::nullopt},     {"U16", 2, std::nullopt},     {"U8", 1, std::nullopt},
    {"BOOL", 1, std::nullopt},    {"F8_E4M3", 1, std::nullopt}, {"F8_E5M2", 1, std::nullopt},
    {"F8_E8M0", 1, std::nullopt},
};

const StDType* FindDType(std::string_view name) {
  for (const StDType& t : kStDTypes) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

struct StTensor {
  const StDType* dtype = nullptr;
  std::vector<int64_t> shape;
  size_t shard = 0;
  uint64_t begin = 0;  // absolute offsets in the shard file
  uint64_t end = 0;
};

// Parses JSON, rejecting duplicate keys in any object (nlohmann would silently keep the last).
absl::StatusOr<json> ParseStrictJson(std::string_view text, const std::string& path) {
  std::vector<std::set<std::string>> keys;
  std::string duplicate;
  auto callback = [&](int depth, json::parse_event_t event, json& parsed) {
    switch (event) {
      case json::parse_event_t::object_start:
        keys.emplace_back();
        break;
      case json::parse_event_t::object_end:
        if (!keys.empty()) keys.pop_back();
        break;
      case json::parse_event_t::key:
        if (!keys.empty() && parsed.is_string() &&
            !keys.back().insert(parsed.get<std::string>()).second && duplicate.empty()) {
          duplicate = parsed.get<std::string>();
        }
        break;
      default:
        break;
    }
    return true;
  };
  json j = json::parse(text.begin(), text.end(), callback, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    return absl::InvalidArgumentError(Cat("'", path, "': header is not valid JSON"));
  }
  if (!duplicate.empty()) {
    return absl::InvalidArgumentError(
        Cat("'", path, "': duplicate key '", duplicate, "' in the JSON header"));
  }
  return j;
}

std::string Brief(const json& v) {
  std::string s = v.dump();
  if (s.size() > 60) s = s.substr(0, 57) + "...";
  return s;
}

class SafetensorsSource final : public WeightSource {
 public:
  explicit SafetensorsSource(std::string describe) : describe_(std::move(describe)) {}

  std::string Describe() const override { return describe_; }

  std::vector<std::string> TensorNames() const override {
    std::vector<std::string> names;
    names.reserve(tensors_.size());
    for (const auto& [name, t] : tensors_) names.push_back(name);
    return names;
  }

  bool Has(std::string_view name) const override { return tensors_.find(name) != tensors_.end(); }

  absl::StatusOr<TensorView> Get(std::string_view name) const override {
    auto it = tensors_.find(name);
    if (it == tensors_.end()) {
      std::vector<std::string> files;
      for (const MmapFile& f : shards_) files.push_back(f.path());
      return absl::NotFoundError(Cat("tensor '", name, "' not found in '", describe_, "' (",
                                     tensors_.size(), " tensors in ", absl::StrJoin(files, ", "),
                                     ")"));
    }
    const StTensor& t = it->second;
    const MmapFile& file = shards_[t.shard];
    if (!t.dtype->dtype.has_value()) {
      return absl::InvalidArgumentError(
          Cat("tensor '", name, "' in '", file.path(), "' has dtype ", t.dtype->name,
              ", which is not supported (supported: F32, F16, BF16)"));
    }
    TensorView v;
    v.name = std::string(name);
    v.dtype = *t.dtype->dtype;
    v.shape = t.shape;
    v.data = file.data() + t.begin;
    v.nbytes = static_cast<int64_t>(t.end - t.begin);
    return v;
  }

  // Maps `path`, validates its header and adds its tensors. InvalidArgument for a name already
  // added from another shard.
  absl::Status AddShard(const std::string& path);

  const std::map<std::string, StTensor, std::less<>>& tensors() const { return tensors_; }
  const std::string& shard_path(size_t i) const { return shards_[i].path(); }

 private:
  absl::StatusOr<StTensor> ParseEntry(const std::string& path, const std::string& name,
                                      const json& entry, uint64_t data_size);

  std::string describe_;
  std::vector<MmapFile> shards_;
  std::map<std::string, StTensor, std::less<>> tensors_;
};

absl::StatusOr<StTensor> SafetensorsSource::ParseEntry(const std::string& path,
                                                       const std::string& name, const json& entry,
                                                       uint64_t data_size) {
  auto bad = [&](std::string_view what) {
    return absl::InvalidArgumentError(Cat("'", path, "': tensor '", name, "': ", what));
  };
  if (!entry.is_object()) return bad(Cat("entry is not an object: ", Brief(entry)));
  auto dtype_it = entry.find("dtype");
  auto shape_it = entry.find("shape");
  auto offsets_it = entry.find("data_offsets");
  if (dtype_it == entry.end() || !dtype_it->is_string()) return bad("missing string 'dtype'");
  if (shape_it == entry.end() || !shape_it->is_array()) return bad("missing array 'shape'");
  if (offsets_it == entry.end() || !offsets_it->is_array() || offsets_it->size() != 2) {
    return bad("'data_offsets' must be an array [begin, end]");
  }
  StTensor t;
  const std::string dtype_name = dtype_it->get<std::string>();
  t.dtype = FindDType(dtype_name);
  if (t.dtype == nullptr) return bad(Cat("unknown dtype '", dtype_name, "'"));
  int64_t numel = 1;
  for (const json& d : *shape_it) {
    if (!d.is_number_integer()) return bad(Cat("dim ", Brief(d), " is not an integer"));
    if (d.is_number_unsigned() ? d.get<uint64_t>() > uint64_t{INT64_MAX} : d.get<int64_t>() < 0) {
      return bad(Cat("negative or oversized dim ", Brief(d), " in shape ", Brief(*shape_it)));
    }
    const int64_t dim = d.get<int64_t>();
    if (__builtin_mul_overflow(numel, dim, &numel)) {
      return bad(Cat("shape ", Brief(*shape_it), " overflows int64"));
    }
    t.shape.push_back(dim);
  }
  const json& b = (*offsets_it)[0];
  const json& e = (*offsets_it)[1];
  if (!b.is_number_unsigned() || !e.is_number_unsigned()) {
    return bad(Cat("data_offsets ", Brief(*offsets_it), " must be non-negative integers"));
  }
  const uint64_t begin = b.get<uint64_t>();
  const uint64_t end = e.get<uint64_t>();
  if (begin > end || end > data_size) {
    return bad(Cat("data_offsets [", begin, ", ", end, "] out of range (data section is ",
                   data_size, " bytes)"));
  }
  int64_t nbytes = 0;
  if (__builtin_mul_overflow(numel, t.dtype->size, &nbytes) ||
      static_cast<uint64_t>(nbytes) != end - begin) {
    return bad(Cat("data_offsets [", begin, ", ", end, "] span ", end - begin, " bytes, but shape ",
                   ShapeString(t.shape), " of ", dtype_name, " needs ", numel, " * ",
                   t.dtype->size));
  }
  t.begin = begin;
  t.end = end;
  return t;
}

absl::Status SafetensorsSource::AddShard(const std::string& path) {
  KV_ASSIGN_OR_RETURN(MmapFile file, MmapFile::Open(path));
  if (file.size() < 8) {
    return absl::DataLossError(
        Cat("'", path, "' is ", file.size(), " bytes, too short for a safetensors header"));
  }
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | file.data()[i];
  if (n > kMaxSafetensorsHeaderBytes) {
    return absl::InvalidArgumentError(Cat("'", path, "': header length ", n,
                                          " exceeds the limit of ", kMaxSafetensorsHeaderBytes,
                                          " bytes"));
  }
  if (n > file.size() - 8) {
    return absl::DataLossError(Cat("'", path, "': header length ", n,
                                   " runs past the end of the file (", file.size(),
                                   " bytes); truncated?"));
  }
  KV_ASSIGN_OR_RETURN(json header, ParseStrictJson(file.bytes().substr(8, n), path));
  if (!header.is_object()) {
    return absl::InvalidArgumentError(Cat("'", path, "': header is JSON but not an object"));
  }
  const uint64_t data_start = 8 + n;
  const uint64_t data_size = file.size() - data_start;
  const size_t shard = shards_.size();
  std::vector<std::pair<std::string, StTensor>> parsed;
  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") continue;
    KV_ASSIGN_OR_RETURN(StTensor t, ParseEntry(path, name, entry, data_size));
    t.shard = shard;
    t.begin += data_start;
    t.end += data_start;
    parsed.emplace_back(name, std::move(t));
  }
  std::vector<const std::pair<std::string, StTensor>*> by_offset;
  for (const auto& p : parsed) by_offset.push_back(&p);
  std::sort(by_offset.begin(), by_offset.end(), [](const auto* a, const auto* b) {
    return std::tie(a->second.begin, a->second.end) < std::tie(b->second.begin, b->second.end);
  });
  for (size_t i = 1; i < by_offset.size(); ++i) {
    const auto& prev = *by_offset[i - 1];
    const auto& cur = *by_offset[i];
    if (cur.second.begin < prev.second.end) {
      return absl::InvalidArgumentError(
          Cat("'", path, "': tensor '", cur.first, "' (bytes ", cur.second.begin - data_start, "..",
              cur.second.end - data_start, ") overlaps tensor '", prev.first, "' (bytes ",
              prev.second.begin - data_start, "..", prev.second.end - data_start, ")"));
    }
  }
  for (auto& [name, t] : parsed) {
    auto [it, inserted] = tensors_.emplace(name, t);
    if (!inserted) {
      return absl::InvalidArgumentError(Cat("tensor '", name, "' appears in both '",
                                            shards_[it->second.shard].path(), "' and '", path,
                                            "'"));
    }
  }
  shards_.push_back(std::move(file));
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<WeightSource>> OpenSharded(const fs::path& dir,
                                                          const fs::path& index_path) {
  const std::string index = index_path.string();
  std::ifstream in(index_path, std::ios::binary);
  std::stringstream buf;
  buf << in.rdbuf();
  if (!in) return absl::InternalError(Cat("cannot read '", index, "'"));
  KV_ASSIGN_OR_RETURN(json j, ParseStrictJson(buf.str(), index));
  if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object()) {
    return absl::InvalidArgumentError(
        Cat("'", index, "': expected an object with a 'weight_map' object"));
  }
  // Shard file -> tensors the index maps to it, in the index's order.
  std::map<std::string, std::vector<std::string>> shard_tensors;
  for (const auto& [name, file] : j["weight_map"].items()) {
    if (!file.is_string()) {
      return absl::InvalidArgumentError(
          Cat("'", index, "': weight_map['", name, "'] is not a file name: ", Brief(file)));
    }
    const std::string f = file.get<std::string>();
    if (f.empty() || f.find('/') != std::string::npos || f == "." || f == "..") {
      return absl::InvalidArgumentError(Cat("'", index, "': weight_map['", name, "'] = '", f,
                                            "' must be a file name in the same directory"));
    }
    shard_tensors[f].push_back(name);
  }
  auto source = std::make_unique<SafetensorsSource>(dir.string());
  for (const auto& [file, names] : shard_tensors) {
    const fs::path shard_path = dir / file;
    std::error_code ec;
    if (!fs::is_regular_file(shard_path, ec)) {
      return absl::InvalidArgumentError(Cat("'", index, "' maps tensor '", names[0], "' to '", file,
                                            "', which does not exist in '", dir.string(), "'"));
    }
    KV_RETURN_IF_ERROR(source->AddShard(shard_path.string()));
  }
  for (const auto& [file, names] : shard_tensors) {
    for (const std::string& name : names) {
      auto it = source->tensors().find(name);
      if (it == source->tensors().end() ||
          fs::path(source->shard_path(it->second.shard)).filename() != file) {
        return absl::DataLossError(Cat("'", index, "' maps tensor '", name, "' to '", file,
                                       "', but that file does not contain it"));
      }
    }
  }
  return source;
}

}  // namespace

absl::StatusOr<std::unique_ptr<WeightSource>> OpenSafetensors(const std::string& path_or_dir) {
  std::error_code ec;
  const fs::path p(path_or_dir);
  if (!fs::exists(p, ec)) {
    return absl::NotFoundError(Cat("'", path_or_dir, "' does not exist"));
  }
  if (fs::is_directory(p, ec)) {
    if (fs::exists(p / kIndexName, ec)) return OpenSharded(p, p / kIndexName);
    if (!fs::exists(p / kSingleName, ec)) {
      return absl::NotFoundError(
          Cat("directory '", path_or_dir, "' has neither ", kIndexName, " nor ", kSingleName));
    }
    auto source = std::make_unique<SafetensorsSource>(path_or_dir);
    KV_RETURN_IF_ERROR(source->AddShard((p / kSingleName).string()));
    return source;
  }
  auto source = std::make_unique<SafetensorsSource>(path_or_dir);
  KV_RETURN_IF_ERROR(source->AddShard(path_or_dir));
  return source;
}

}  // namespace kvasir
