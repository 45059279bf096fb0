// Tokenizer::FromTokenizerJson / FromDirectory: HF tokenizer.json + tokenizer_config.json.
#include <filesystem>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "engine/tokenizer/tokenizer.h"
#include "engine/tokenizer/tokenizer_parts.h"
#include "engine/util/status_macros.h"
#include "nlohmann/json.hpp"

namespace kvasir {

using nlohmann::json;
using tokenizer_internal::AddedToken;
using tokenizer_internal::NormalForm;
using tokenizer_internal::Normalizer;
using tokenizer_internal::PreTokenizer;
using tokenizer_internal::Regex;
using tokenizer_internal::TokenizerParts;

namespace {

absl::StatusOr<json> ReadJson(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  std::stringstream buffer;
  buffer << in.rdbuf();
  json j = json::parse(buffer.str(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return absl::InvalidArgumentError(absl::StrCat(path, ": not valid JSON"));
  return j;
}

std::string TypeOf(const json& j) {
  return j.is_object() && j.contains("type") && j["type"].is_string() ? j["type"].get<std::string>()
                                                                      : "<missing>";
}

bool BoolOr(const json& j, const char* key, bool fallback) {
  return j.contains(key) && j[key].is_boolean() ? j[key].get<bool>() : fallback;
}

// A Split/Replace "pattern": {"String": literal} or {"Regex": pattern}.
absl::StatusOr<std::unique_ptr<Regex>> ParsePattern(const json& j, const std::string& where) {
  if (j.is_object() && j.contains("Regex") && j["Regex"].is_string()) {
    auto regex = Regex::Compile(j["Regex"].get<std::string>());
    if (!regex.ok())
      return absl::InvalidArgumentError(absl::StrCat(where, ": ", regex.status().message()));
    return regex;
  }
  if (j.is_object() && j.contains("String") && j["String"].is_string()) {
    return Regex::Compile(Regex::Quote(j["String"].get<std::string>()));
  }
  return absl::InvalidArgumentError(
      absl::StrCat(where, ".pattern must be {\"String\": ..} or {\"Regex\": ..}"));
}

absl::Status ParseNormalizer(const json& j, const std::string& where, Normalizer* out) {
  if (j.is_null()) return absl::OkStatus();
  const std::string type = TypeOf(j);
  if (type == "Sequence") {
    if (!j.contains("normalizers") || !j["normalizers"].is_array()) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": Sequence without \"normalizers\""));
    }
    for (size_t i = 0; i < j["normalizers"].size(); ++i) {
      KV_RETURN_IF_ERROR(
          ParseNormalizer(j["normalizers"][i], absl::StrCat(where, ".normalizers[", i, "]"), out));
    }
  } else if (type == "NFC") {
    out->AddNormalForm(NormalForm::kNfc);
  } else if (type == "NFD") {
    out->AddNormalForm(NormalForm::kNfd);
  } else if (type == "NFKC") {
    out->AddNormalForm(NormalForm::kNfkc);
  } else if (type == "NFKD") {
    out->AddNormalForm(NormalForm::kNfkd);
  } else if (type == "Lowercase") {
    out->AddLowercase();
  } else if (type == "Prepend") {
    out->AddPrepend(j.value("prepend", std::string()));
  } else if (type == "Replace") {
    KV_ASSIGN_OR_RETURN(auto regex, ParsePattern(j.value("pattern", json()), where));
    out->AddReplace(std::move(regex), j.value("content", std::string()));
  } else {
    return absl::UnimplementedError(
        absl::StrCat(where, ": unsupported normalizer type \"", type, "\""));
  }
  return absl::OkStatus();
}

absl::Status ParsePreTokenizer(const json& j, const std::string& where, PreTokenizer* out) {
  if (j.is_null()) return absl::OkStatus();
  const std::string type = TypeOf(j);
  if (type == "Sequence") {
    if (!j.contains("pretokenizers") || !j["pretokenizers"].is_array()) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": Sequence without \"pretokenizers\""));
    }
    for (size_t i = 0; i < j["pretokenizers"].size(); ++i) {
      KV_RETURN_IF_ERROR(ParsePreTokenizer(j["pretokenizers"][i],
                                           absl::StrCat(where, ".pretokenizers[", i, "]"), out));
    }
  } else if (type == "Split") {
    KV_ASSIGN_OR_RETURN(auto regex, ParsePattern(j.value("pattern", json()), where));
    auto behavior = tokenizer_internal::ParseSplitBehavior(j.value("behavior", std::string()));
    if (!behavior.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": ", behavior.status().message()));
    }
    out->AddSplit(std::move(regex), *behavior, BoolOr(j, "invert", false));
  } else if (type == "Digits") {
    KV_RETURN_IF_ERROR(out->AddDigits(BoolOr(j, "individual_digits", false)));
  } else if (type == "ByteLevel") {
    KV_RETURN_IF_ERROR(
        out->AddByteLevel(BoolOr(j, "add_prefix_space", true), BoolOr(j, "use_regex", true)));
  } else {
    return absl::UnimplementedError(
        absl::StrCat(where, ": unsupported pre_tokenizer type \"", type, "\""));
  }
  return absl::OkStatus();
}

// Decoding is byte-level (plus U+FFFD replacement); Fuse is implied. Anything else is refused
// rather than silently decoded differently from HF.
absl::Status CheckDecoder(const json& j, const std::string& where) {
  if (j.is_null()) return absl::OkStatus();
  const std::string type = TypeOf(j);
  if (type == "Sequence" && j.contains("decoders") && j["decoders"].is_array()) {
    for (size_t i = 0; i < j["decoders"].size(); ++i) {
      KV_RETURN_IF_ERROR(CheckDecoder(j["decoders"][i], absl::StrCat(where, ".decoders[", i, "]")));
    }
    return absl::OkStatus();
  }
  if (type == "ByteLevel" || type == "Fuse") return absl::OkStatus();
  return absl::UnimplementedError(absl::StrCat(where, ": unsupported decoder type \"", type, "\""));
}

// TemplateProcessing "single": special tokens before $A form the prefix, after it the suffix.
absl::Status ParsePostProcessor(const json& j, const std::string& where, TokenizerParts* parts) {
  if (j.is_null()) return absl::OkStatus();
  const std::string type = TypeOf(j);
  if (type == "ByteLevel") return absl::OkStatus();
  if (type == "Sequence" && j.contains("processors") && j["processors"].is_array()) {
    for (size_t i = 0; i < j["processors"].size(); ++i) {
      KV_RETURN_IF_ERROR(ParsePostProcessor(j["processors"][i],
                                            absl::StrCat(where, ".processors[", i, "]"), parts));
    }
    return absl::OkStatus();
  }
  if (type != "TemplateProcessing") {
    return absl::UnimplementedError(
        absl::StrCat(where, ": unsupported post_processor type \"", type, "\""));
  }
  if (!j.contains("single") || !j["single"].is_array()) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": TemplateProcessing without \"single\""));
  }
  bool seen_sequence = false;
  for (const json& item : j["single"]) {
    if (item.contains("Sequence")) {
      seen_sequence = true;
      continue;
    }
    const std::string name = item["SpecialToken"]["id"].get<std::string>();
    const json& special = j["special_tokens"][name];
    if (!special.contains("ids") || !special["ids"].is_array()) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": special_tokens has no ids for \"", name, "\""));
    }
    for (const json& id : special["ids"]) {
      (seen_sequence ? parts->suffix_ids : parts->prefix_ids).push_back(id.get<int32_t>());
    }
  }
  return absl::OkStatus();
}

absl::Status ParseModel(const json& model, const std::string& where, TokenizerParts* parts) {
  const std::string type = model.contains("type") ? TypeOf(model) : "BPE";
  if (type != "BPE") {
    return absl::UnimplementedError(absl::StrCat(where, ": unsupported model type \"", type,
                                                 "\" (only byte-level BPE is supported)"));
  }
  if (BoolOr(model, "byte_fallback", false)) {
    return absl::UnimplementedError(absl::StrCat(where, ".byte_fallback=true is not supported"));
  }
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    if (model.contains(key) && model[key].is_string() && !model[key].get<std::string>().empty()) {
      return absl::UnimplementedError(absl::StrCat(where, ".", key, " is not supported"));
    }
  }
  if (!model.contains("vocab") || !model["vocab"].is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(where, ".vocab is missing or not an object"));
  }
  parts->vocab.reserve(model["vocab"].size());
  for (const auto& [text, id] : model["vocab"].items()) {
    if (!id.is_number_integer()) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ".vocab[\"", text, "\"] is not an integer id"));
    }
    parts->vocab.emplace(text, id.get<int32_t>());
  }
  if (!model.contains("merges") || !model["merges"].is_array()) {
    return absl::InvalidArgumentError(absl::StrCat(where, ".merges is missing or not an array"));
  }
  const json& merges = model["merges"];
  parts->merges.reserve(merges.size());
  for (size_t i = 0; i < merges.size(); ++i) {
    const json& m = merges[i];
    if (m.is_string()) {
      const std::string s = m.get<std::string>();
      const size_t space = s.find(' ');
      if (space == std::string::npos || s.find(' ', space + 1) != std::string::npos) {
        return absl::InvalidArgumentError(absl::StrCat(
            where, ".merges[", i, "] = \"", s, "\" is not two tokens separated by one space"));
      }
      parts->merges.emplace_back(s.substr(0, space), s.substr(space + 1));
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      parts->merges.emplace_back(m[0].get<std::string>(), m[1].get<std::string>());
    } else {
      return absl::InvalidArgumentError(absl::StrCat(where, ".merges[", i, "] = ", m.dump(),
                                                     " is neither \"a b\" nor [\"a\", \"b\"]"));
    }
  }
  parts->ignore_merges = BoolOr(model, "ignore_merges", false);
  return absl::OkStatus();
}

absl::Status ParseAddedTokens(const json& j, const std::string& where, TokenizerParts* parts) {
  if (j.is_null()) return absl::OkStatus();
  if (!j.is_array()) return absl::InvalidArgumentError(absl::StrCat(where, " is not an array"));
  for (size_t i = 0; i < j.size(); ++i) {
    const json& t = j[i];
    if (!t.contains("id") || !t["id"].is_number_integer() || !t.contains("content") ||
        !t["content"].is_string()) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, "[", i, "] needs an integer \"id\" and a string \"content\""));
    }
    AddedToken token;
    token.id = t["id"].get<int32_t>();
    token.content = t["content"].get<std::string>();
    token.special = BoolOr(t, "special", false);
    token.lstrip = BoolOr(t, "lstrip", false);
    token.rstrip = BoolOr(t, "rstrip", false);
    token.normalized = BoolOr(t, "normalized", !token.special);
    token.single_word = BoolOr(t, "single_word", false);
    parts->added_tokens.push_back(std::move(token));
  }
  return absl::OkStatus();
}

// The text of a tokenizer_config token field: "text" or {"content": "text"}; nullopt otherwise.
std::optional<std::string> ConfigTokenText(const json& config, const char* key) {
  if (!config.contains(key)) return std::nullopt;
  const json& v = config[key];
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string()) {
    return v["content"].get<std::string>();
  }
  return std::nullopt;
}

// The id of a tokenizer_config token field: "text" or {"content": "text"}; nullopt if absent.
std::optional<int32_t> ConfigTokenId(const json& config, const char* key,
                                     const TokenizerParts& parts) {
  const std::optional<std::string> text = ConfigTokenText(config, key);
  if (!text.has_value()) return std::nullopt;
  for (const AddedToken& t : parts.added_tokens) {
    if (t.content == *text) return t.id;
  }
  auto it = parts.vocab.find(*text);
  if (it != parts.vocab.end()) return it->second;
  return std::nullopt;
}

// chat_template: a string, or a list of {"name", "template"} of which transformers uses "default".
absl::StatusOr<std::string> ConfigChatTemplate(const json& config, const std::string& config_path) {
  if (!config.contains("chat_template") || config["chat_template"].is_null()) return "";
  const json& t = config["chat_template"];
  if (t.is_string()) return t.get<std::string>();
  if (t.is_array()) {
    for (const json& named : t) {
      if (named.is_object() && named.value("name", json()) == "default" &&
          named.contains("template") && named["template"].is_string()) {
        return named["template"].get<std::string>();
      }
    }
    return "";  // only named templates (e.g. tool_use) and no default one
  }
  return absl::InvalidArgumentError(absl::StrCat(
      config_path, ": chat_template must be a string or a list of {name, template} objects"));
}

absl::Status ApplyConfig(const json& config, const std::string& config_path,
                         TokenizerParts* parts) {
  KV_ASSIGN_OR_RETURN(parts->chat_template, ConfigChatTemplate(config, config_path));
  parts->special_token_texts = {
      ConfigTokenText(config, "bos_token"), ConfigTokenText(config, "eos_token"),
      ConfigTokenText(config, "unk_token"), ConfigTokenText(config, "pad_token")};
  parts->bos_id = ConfigTokenId(config, "bos_token", *parts);
  parts->eos_id = ConfigTokenId(config, "eos_token", *parts);
  if (!parts->bos_id.has_value() && !parts->prefix_ids.empty())
    parts->bos_id = parts->prefix_ids[0];
  if (!parts->prefix_ids.empty() || !parts->suffix_ids.empty()) return absl::OkStatus();
  // The post-processor adds nothing: transformers adds BOS/EOS per these flags.
  if (BoolOr(config, "add_bos_token", false)) {
    if (!parts->bos_id.has_value()) {
      return absl::InvalidArgumentError(absl::StrCat(
          config_path, ": add_bos_token is true but bos_token is missing or not in the vocab"));
    }
    parts->prefix_ids.push_back(*parts->bos_id);
  }
  if (BoolOr(config, "add_eos_token", false)) {
    if (!parts->eos_id.has_value()) {
      return absl::InvalidArgumentError(absl::StrCat(
          config_path, ": add_eos_token is true but eos_token is missing or not in the vocab"));
    }
    parts->suffix_ids.push_back(*parts->eos_id);
  }
  return absl::OkStatus();
}

absl::Status ParseTokenizerJson(const json& j, const std::string& path, TokenizerParts* parts) {
  if (!j.is_object()) return absl::InvalidArgumentError(absl::StrCat(path, ": not a JSON object"));
  if (!j.contains("model") || !j["model"].is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": missing \"model\" object"));
  }
  KV_RETURN_IF_ERROR(ParseModel(j["model"], path + ": model", parts));
  KV_RETURN_IF_ERROR(
      ParseAddedTokens(j.value("added_tokens", json()), path + ": added_tokens", parts));
  auto normalizer = std::make_unique<Normalizer>();
  KV_RETURN_IF_ERROR(
      ParseNormalizer(j.value("normalizer", json()), path + ": normalizer", normalizer.get()));
  if (!normalizer->empty()) parts->normalizer = std::move(normalizer);
  parts->pre_tokenizer = std::make_unique<PreTokenizer>();
  KV_RETURN_IF_ERROR(ParsePreTokenizer(j.value("pre_tokenizer", json()), path + ": pre_tokenizer",
                                       parts->pre_tokenizer.get()));
  KV_RETURN_IF_ERROR(CheckDecoder(j.value("decoder", json()), path + ": decoder"));
  return ParsePostProcessor(j.value("post_processor", json()), path + ": post_processor", parts);
}

}  // namespace

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::FromTokenizerJson(
    const std::string& tokenizer_json_path, const std::string& tokenizer_config_json_path) {
  KV_ASSIGN_OR_RETURN(json j, ReadJson(tokenizer_json_path));
  json config = json::object();
  if (!tokenizer_config_json_path.empty() && std::filesystem::exists(tokenizer_config_json_path)) {
    KV_ASSIGN_OR_RETURN(config, ReadJson(tokenizer_config_json_path));
  }
  TokenizerParts parts;
  parts.source = tokenizer_json_path;
  try {
    KV_RETURN_IF_ERROR(ParseTokenizerJson(j, tokenizer_json_path, &parts));
    KV_RETURN_IF_ERROR(ApplyConfig(config, tokenizer_config_json_path, &parts));
  } catch (const json::exception& e) {  // a field of an unexpected JSON type
    return absl::InvalidArgumentError(absl::StrCat(tokenizer_json_path, ": ", e.what()));
  }
  return Build(std::move(parts));
}

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::FromDirectory(const std::string& dir) {
  const std::filesystem::path d(dir);
  KV_ASSIGN_OR_RETURN(
      std::unique_ptr<Tokenizer> tok,
      FromTokenizerJson((d / "tokenizer.json").string(), (d / "tokenizer_config.json").string()));
  // Newer Hugging Face repos keep the template in chat_template.jinja; transformers prefers it.
  const std::filesystem::path jinja = d / "chat_template.jinja";
  if (std::filesystem::exists(jinja)) {
    std::ifstream in(jinja, std::ios::binary);
    std::stringstream buffer;
    buffer << in.rdbuf();
    if (!in) return absl::DataLossError(absl::StrCat("cannot read ", jinja.string()));
    tok->chat_template_ = buffer.str();
  }
  return tok;
}

}  // namespace kvasir
