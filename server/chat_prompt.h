// Chat messages to prompt token ids, as transformers' apply_chat_template(tokenize=True) does:
// render with the model's chat template, then tokenize without adding special tokens (the
// template writes them). Shared by the gRPC and HTTP front ends.
#ifndef KVASIR_SERVER_CHAT_PROMPT_H_
#define KVASIR_SERVER_CHAT_PROMPT_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/engine.h"
#include "engine/tokenizer/chat_template.h"

namespace kvasir::server {

struct ChatPromptOptions {
  bool add_generation_prompt = true;
  std::vector<std::pair<std::string, ChatTemplateArg>> kwargs;  // e.g. enable_thinking
};

inline constexpr size_t kMaxChatMessages = 4096;

// InvalidArgument naming the message and field: no messages, more than kMaxChatMessages, an
// empty role, text that is not valid UTF-8, or a template error (raise_exception's message);
// FailedPrecondition when the model has no (usable) chat template; ResourceExhausted when the
// rendering exceeds the template limits.
absl::StatusOr<std::vector<int32_t>> ChatPromptIds(const Engine& engine,
                                                   const std::vector<ChatMessage>& messages,
                                                   const ChatPromptOptions& options);

}  // namespace kvasir::server

#endif  // KVASIR_SERVER_CHAT_PROMPT_H_
