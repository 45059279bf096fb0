// Renders a parsed chat template with jinja2's semantics: scoping (a for loop body and a macro
// get their own scope; namespace() attributes are shared), loop.* variables, break/continue,
// Python truthiness, operators and printing.
#ifndef KVASIR_ENGINE_TOKENIZER_JINJA_EVAL_H_
#define KVASIR_ENGINE_TOKENIZER_JINJA_EVAL_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/tokenizer/jinja_parser.h"
#include "engine/tokenizer/jinja_value.h"

namespace kvasir::jinja {

// Bounds on one render, so that a hostile template or input cannot hang or exhaust memory.
struct RenderLimits {
  // Nested evaluation (expressions, statements, macro calls) deeper than this fails.
  int max_recursion = 1000;
  // for-loop iterations (and loop filter evaluations) over the whole render.
  int64_t max_loop_iterations = 1'000'000;
  // The output, and any string or list built on the way.
  size_t max_output_bytes = size_t{16} << 20;
};

// InvalidArgument naming the line for a filter or test that does not exist, where jinja2 rejects
// it when it compiles the template (outside if statements and inline ifs; inside them the error
// comes from Render when the expression is evaluated).
absl::Status CheckNames(const Template& t);

// Renders `t` with `context` (its variables, on top of Globals()). Errors: InvalidArgument
// "chat template line N: <what>" for a failing operation or raise_exception (its message
// included); ResourceExhausted when a limit is exceeded.
absl::StatusOr<std::string> Render(const Template& t, const Dict& context,
                                   const RenderLimits& limits);

}  // namespace kvasir::jinja

#endif  // KVASIR_ENGINE_TOKENIZER_JINJA_EVAL_H_
