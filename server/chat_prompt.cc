#include "server/chat_prompt.h"

#include "absl/strings/str_cat.h"
#include "engine/tokenizer/tokenizer.h"

namespace kvasir::server {
namespace {

absl::Status ValidateMessages(const std::vector<ChatMessage>& messages) {
  if (messages.empty()) return absl::InvalidArgumentError("messages is empty");
  if (messages.size() > kMaxChatMessages) {
    return absl::InvalidArgumentError(
        absl::StrCat("messages: at most ", kMaxChatMessages, " messages, got ", messages.size()));
  }
  for (size_t i = 0; i < messages.size(); ++i) {
    const ChatMessage& m = messages[i];
    if (m.role.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("messages[", i, "].role is empty"));
    }
    for (const auto& [field, text] : {std::pair<const char*, std::string_view>{"role", m.role},
                                      {"content", m.content},
                                      {"reasoning_content", m.reasoning_content.value_or("")}}) {
      if (!IsValidUtf8(text)) {
        return absl::InvalidArgumentError(
            absl::StrCat("messages[", i, "].", field, " is not valid UTF-8"));
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::vector<int32_t>> ChatPromptIds(const Engine& engine,
                                                   const std::vector<ChatMessage>& messages,
                                                   const ChatPromptOptions& options) {
  if (absl::Status s = ValidateMessages(messages); !s.ok()) return s;
  absl::StatusOr<const ChatTemplate*> chat_template = engine.chat_template();
  if (!chat_template.ok()) return chat_template.status();
  const Tokenizer& tokenizer = *engine.tokenizer();  // a template implies a tokenizer
  ChatTemplateInput input;
  input.messages = messages;
  input.add_generation_prompt = options.add_generation_prompt;
  const SpecialTokenTexts& special = tokenizer.special_token_texts();
  input.bos_token = special.bos;
  input.eos_token = special.eos;
  input.unk_token = special.unk;
  input.pad_token = special.pad;
  input.kwargs = options.kwargs;
  absl::StatusOr<std::string> text = (*chat_template)->Render(input);
  if (!text.ok()) return text.status();
  if (text->empty()) {
    return absl::InvalidArgumentError("messages: the chat template rendered an empty prompt");
  }
  return tokenizer.Encode(*text, /*add_special=*/false);
}

}  // namespace kvasir::server
