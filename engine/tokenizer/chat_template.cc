#include "engine/tokenizer/chat_template.h"

#include <utility>

#include "engine/tokenizer/jinja_parser.h"
#include "engine/tokenizer/jinja_value.h"
#include "engine/util/status_macros.h"

namespace kvasir {
namespace {

// Statement and expression nesting a template may use (real templates stay under ~30).
constexpr int kMaxParseDepth = 200;

jinja::Value ToValue(const ChatTemplateArg& arg) {
  return std::visit([](const auto& v) { return jinja::Value(v); }, arg);
}

// A message as transformers hands it to the template: its keys in order, and, when it has
// reasoning, `thinking` first and `reasoning_content` last (chat_template_utils
// _alias_reasoning_fields).
jinja::Value MessageValue(const ChatMessage& m) {
  jinja::Dict d;
  if (m.reasoning_content.has_value()) d.emplace_back("thinking", *m.reasoning_content);
  d.emplace_back("role", m.role);
  d.emplace_back("content", m.content);
  if (m.reasoning_content.has_value()) d.emplace_back("reasoning_content", *m.reasoning_content);
  return jinja::Value(std::move(d));
}

void Put(jinja::Dict* d, const std::string& name, jinja::Value v) {
  for (auto& [k, old] : *d) {
    if (k == name) {
      old = std::move(v);
      return;
    }
  }
  d->emplace_back(name, std::move(v));
}

}  // namespace

absl::StatusOr<ChatTemplate> ChatTemplate::Parse(std::string source, jinja::RenderLimits limits) {
  KV_ASSIGN_OR_RETURN(std::unique_ptr<jinja::Template> t,
                      jinja::ParseTemplate(source, kMaxParseDepth));
  KV_RETURN_IF_ERROR(jinja::CheckNames(*t));
  return ChatTemplate(std::move(source), std::shared_ptr<const jinja::Template>(std::move(t)),
                      limits);
}

absl::StatusOr<std::string> ChatTemplate::Render(const ChatTemplateInput& input) const {
  // transformers: template_kwargs = {**special_tokens_map, **kwargs}, then render(messages=...,
  // tools=None, documents=None, add_generation_prompt=..., **template_kwargs).
  jinja::Dict context;
  const std::pair<const char*, const std::optional<std::string>*> tokens[] = {
      {"bos_token", &input.bos_token},
      {"eos_token", &input.eos_token},
      {"unk_token", &input.unk_token},
      {"pad_token", &input.pad_token}};
  for (const auto& [name, value] : tokens) {
    if (value->has_value()) Put(&context, name, jinja::Value(**value));
  }
  for (const auto& [name, value] : input.kwargs) Put(&context, name, ToValue(value));
  jinja::List messages;
  messages.reserve(input.messages.size());
  for (const ChatMessage& m : input.messages) messages.push_back(MessageValue(m));
  Put(&context, "messages", jinja::Value(std::move(messages)));
  Put(&context, "tools", jinja::Value(jinja::None{}));
  Put(&context, "documents", jinja::Value(jinja::None{}));
  Put(&context, "add_generation_prompt", jinja::Value(input.add_generation_prompt));
  return jinja::Render(*template_, context, limits_);
}

}  // namespace kvasir
