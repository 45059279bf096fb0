// Renders a model's chat template (the Jinja text in tokenizer_config.json `chat_template` or GGUF
// `tokenizer.chat_template`) as transformers' apply_chat_template(tokenize=False) does: jinja2's
// ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, loopcontrols) with the
// globals raise_exception, strftime_now, namespace, dict and transformers' tojson filter
// (json.dumps, ensure_ascii=False). The output is byte-identical for the Jinja subset that chat
// templates use (see jinja_parser.h for the statements, jinja_builtins.h for filters/tests).
//
// Known differences from Python: integers are 64-bit (overflow is an error, not a bignum);
// str.upper()/lower() use simple (one-to-one) case mapping ('ß'.upper() stays 'ß'); dict keys
// are strings; printf-style '%' formatting, {% call %}, {% include %} and similar are rejected
// with an error naming the construct.
//
// Thread safety: a ChatTemplate is immutable; Render may be called from any number of threads.
#ifndef KVASIR_ENGINE_TOKENIZER_CHAT_TEMPLATE_H_
#define KVASIR_ENGINE_TOKENIZER_CHAT_TEMPLATE_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/tokenizer/jinja_eval.h"

namespace kvasir {

namespace jinja {
struct Template;
}  // namespace jinja

struct ChatMessage {
  std::string role;  // "system", "user", "assistant", "tool", ...
  std::string content;
  // The assistant's reasoning (Qwen3 renders it inside <think>). transformers also passes it as
  // `thinking`; so does Render.
  std::optional<std::string> reasoning_content;
};

// A template variable passed besides the messages, e.g. {"enable_thinking", false}.
using ChatTemplateArg = std::variant<bool, int64_t, double, std::string>;

struct ChatTemplateInput {
  std::vector<ChatMessage> messages;
  bool add_generation_prompt = false;
  // The special tokens transformers passes (its special_tokens_map); a missing one is undefined
  // in the template.
  std::optional<std::string> bos_token, eos_token, unk_token, pad_token;
  // Extra variables; a name here overrides the fields above, as transformers' kwargs do.
  std::vector<std::pair<std::string, ChatTemplateArg>> kwargs;
};

class ChatTemplate {
 public:
  // Parses `source`. InvalidArgument "chat template line N: ..." for a syntax error, an
  // unsupported tag, or an unknown filter or test (jinja2 also rejects these at compile time).
  static absl::StatusOr<ChatTemplate> Parse(std::string source,
                                            jinja::RenderLimits limits = jinja::RenderLimits());

  // Renders the conversation. Errors: InvalidArgument "chat template line N: <message>" when the
  // template calls raise_exception(message) or an operation fails (e.g. adding a str to an
  // undefined value); ResourceExhausted when a RenderLimits bound is exceeded.
  absl::StatusOr<std::string> Render(const ChatTemplateInput& input) const;

  const std::string& source() const { return source_; }

 private:
  ChatTemplate(std::string source, std::shared_ptr<const jinja::Template> t,
               jinja::RenderLimits limits)
      : source_(std::move(source)), template_(std::move(t)), limits_(limits) {}

  std::string source_;
  std::shared_ptr<const jinja::Template> template_;
  jinja::RenderLimits limits_;
};

}  // namespace kvasir

#endif  // KVASIR_ENGINE_TOKENIZER_CHAT_TEMPLATE_H_
