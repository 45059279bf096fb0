#include "engine/model_loader.h"

#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "engine/util/status_macros.h"
#include "engine/weights/dummy_weights.h"
#include "engine/weights/gguf.h"
#include "engine/weights/safetensors.h"

namespace kvasir {
namespace {

namespace fs = std::filesystem;

absl::StatusOr<bool> IsGgufFile(const std::string& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) {
    return absl::NotFoundError(absl::StrCat("model path '", path, "' does not exist"));
  }
  if (fs::is_directory(path, ec)) return false;
  std::ifstream in(path, std::ios::binary);
  char magic[4] = {};
  if (!in.read(magic, 4)) {
    return absl::InvalidArgumentError(
        absl::StrCat("model file '", path, "' is too short to be a GGUF file"));
  }
  if (std::string_view(magic, 4) != "GGUF") {
    return absl::InvalidArgumentError(absl::StrCat(
        "model file '", path,
        "' is not a GGUF file (no GGUF magic); pass a .gguf file or a Hugging Face directory"));
  }
  return true;
}

std::optional<int32_t> OptionalId(const GgufFile& f, const char* key) {
  auto v = f.GetInt(key);
  if (!v.ok()) return std::nullopt;
  return static_cast<int32_t>(*v);
}

absl::StatusOr<std::unique_ptr<Tokenizer>> TokenizerFromGguf(const GgufFile& f) {
  KV_ASSIGN_OR_RETURN(GgufVocab vocab, ReadGgufVocab(f));
  auto tok = Tokenizer::FromGgufVocab(vocab);
  if (!tok.ok()) {
    return absl::Status(tok.status().code(),
                        absl::StrCat(f.Describe(), ": tokenizer: ", tok.status().message()));
  }
  return tok;
}

std::string ModelName(const std::string& path) {
  std::string name = fs::path(path).filename().string();
  if (name.empty()) name = fs::path(path).parent_path().filename().string();
  return name;
}

absl::StatusOr<LoadedModel> LoadDummyModel(const std::string& path, bool on_device) {
  std::error_code ec;
  if (!fs::exists(path, ec)) {
    return absl::NotFoundError(absl::StrCat("model path '", path, "' does not exist"));
  }
  LoadedModel m;
  m.format = "dummy";
  fs::path dir(path);
  if (fs::is_directory(dir, ec)) {
    m.name = absl::StrCat("dummy:", ModelName(path));
    KV_ASSIGN_OR_RETURN(m.config, ParseHfConfig((dir / "config.json").string()));
  } else if (dir.extension() == ".json") {
    dir = fs::absolute(dir, ec).parent_path();
    m.name = absl::StrCat("dummy:", dir.filename().string());
    KV_ASSIGN_OR_RETURN(m.config, ParseHfConfig(path));
  } else {
    KV_ASSIGN_OR_RETURN(bool gguf, IsGgufFile(path));  // errors unless it is a GGUF file
    (void)gguf;
    m.name = absl::StrCat("dummy:", ModelName(path));
    KV_ASSIGN_OR_RETURN(std::unique_ptr<GgufFile> file, GgufFile::Open(path));
    KV_ASSIGN_OR_RETURN(m.config, ConfigFromGguf(*file));
    KV_ASSIGN_OR_RETURN(m.tokenizer, TokenizerFromGguf(*file));
    m.weights = std::make_unique<DummyWeightSource>(
        absl::StrCat("dummy weights for ", path),
        on_device ? DummyWeightSource::kOnDevice : DummyWeightSource::kOnHost);
    return m;
  }
  if (fs::exists(dir / "tokenizer.json")) {
    KV_ASSIGN_OR_RETURN(m.tokenizer, Tokenizer::FromDirectory(dir.string()));
  }
  m.weights = std::make_unique<DummyWeightSource>(
      absl::StrCat("dummy weights for ", path),
      on_device ? DummyWeightSource::kOnDevice : DummyWeightSource::kOnHost);
  return m;
}

}  // namespace

absl::StatusOr<GgufVocab> ReadGgufVocab(const GgufFile& f) {
  GgufVocab v;
  KV_ASSIGN_OR_RETURN(v.model, f.GetString("tokenizer.ggml.model"));
  if (f.HasKey("tokenizer.ggml.pre")) {
    KV_ASSIGN_OR_RETURN(v.pre, f.GetString("tokenizer.ggml.pre"));
  } else {
    v.pre = "default";
  }
  KV_ASSIGN_OR_RETURN(v.tokens, f.GetStringArray("tokenizer.ggml.tokens"));
  if (f.HasKey("tokenizer.ggml.token_type")) {
    KV_ASSIGN_OR_RETURN(std::vector<int64_t> types, f.GetIntArray("tokenizer.ggml.token_type"));
    v.token_types.assign(types.begin(), types.end());
  }
  if (f.HasKey("tokenizer.ggml.merges")) {
    KV_ASSIGN_OR_RETURN(v.merges, f.GetStringArray("tokenizer.ggml.merges"));
  }
  v.bos_id = OptionalId(f, "tokenizer.ggml.bos_token_id");
  v.eos_id = OptionalId(f, "tokenizer.ggml.eos_token_id");
  v.unk_id = OptionalId(f, "tokenizer.ggml.unknown_token_id");
  v.pad_id = OptionalId(f, "tokenizer.ggml.padding_token_id");
  v.eot_id = OptionalId(f, "tokenizer.ggml.eot_token_id");
  v.eom_id = OptionalId(f, "tokenizer.ggml.eom_token_id");
  if (auto b = f.GetBool("tokenizer.ggml.add_bos_token"); b.ok()) v.add_bos = *b;
  if (auto b = f.GetBool("tokenizer.ggml.add_eos_token"); b.ok()) v.add_eos = *b;
  if (f.HasKey("tokenizer.chat_template")) {
    KV_ASSIGN_OR_RETURN(v.chat_template, f.GetString("tokenizer.chat_template"));
  }
  return v;
}

absl::StatusOr<LoadedModel> LoadModel(const std::string& path, const LoadOptions& options) {
  if (options.dummy_weights) return LoadDummyModel(path, options.dummy_on_device);
  KV_ASSIGN_OR_RETURN(bool gguf, IsGgufFile(path));
  LoadedModel m;
  m.name = ModelName(path);
  if (gguf) {
    m.format = "gguf";
    KV_ASSIGN_OR_RETURN(std::unique_ptr<GgufFile> file, GgufFile::Open(path));
    KV_ASSIGN_OR_RETURN(m.config, ConfigFromGguf(*file));
    KV_ASSIGN_OR_RETURN(m.tokenizer, TokenizerFromGguf(*file));
    m.weights = std::move(file);
    return m;
  }
  m.format = "safetensors";
  const fs::path dir(path);
  KV_ASSIGN_OR_RETURN(m.config, ParseHfConfig((dir / "config.json").string()));
  KV_ASSIGN_OR_RETURN(m.weights, OpenSafetensors(path));
  if (fs::exists(dir / "tokenizer.json")) {
    KV_ASSIGN_OR_RETURN(m.tokenizer, Tokenizer::FromDirectory(path));
  }
  return m;
}

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadTokenizer(const std::string& path) {
  KV_ASSIGN_OR_RETURN(bool gguf, IsGgufFile(path));
  if (gguf) {
    KV_ASSIGN_OR_RETURN(std::unique_ptr<GgufFile> file, GgufFile::Open(path));
    return TokenizerFromGguf(*file);
  }
  if (!fs::exists(fs::path(path) / "tokenizer.json")) {
    return absl::NotFoundError(absl::StrCat("no tokenizer.json in directory '", path, "'"));
  }
  return Tokenizer::FromDirectory(path);
}

}  // namespace kvasir
