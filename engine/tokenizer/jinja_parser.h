// Syntax tree and parser of the chat-template Jinja subset: text, {{ expr }}, if/elif/else,
// for (with an `if` filter, else, loop.*), set (name, tuple, namespace attribute, block),
// macro, break/continue, generation (transformers' assistant-mask block, rendered as its body),
// and jinja2's expression grammar and operator precedence.
#ifndef KVASIR_ENGINE_TOKENIZER_JINJA_PARSER_H_
#define KVASIR_ENGINE_TOKENIZER_JINJA_PARSER_H_

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/tokenizer/jinja_value.h"

namespace kvasir::jinja {

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

struct Expr {
  enum class Kind {
    kLiteral,  // literal
    kName,     // name
    kList,     // args: items
    kTuple,    // args: items
    kDict,     // kwargs: key expr in args[2i], value in args[2i+1]
    kAttr,     // args[0].name
    kItem,     // args[0][args[1]]
    kSlice,    // args[0..2]: start, stop, step (null when omitted)
    kCall,     // args[0](args[1..], kwargs)
    kFilter,   // args[0] | name(args[1..], kwargs)
    kTest,     // args[0] is [not] name(args[1..], kwargs)
    kUnary,    // op args[0]: "-", "+", "not"
    kBinary,   // args[0] op args[1]: + - * / // % ** ~ and or
    kCompare,  // args[0] ops[0] args[1] ops[1] args[2] ...: == != < <= > >= in notin
    kCond,     // args[0] if args[1] else args[2] (args[2] null: undefined)
  };
  Kind kind;
  int line = 0;
  Value literal;
  std::string name;  // variable, attribute, filter or test name; operator for kUnary/kBinary
  std::vector<ExprPtr> args;
  std::vector<std::pair<std::string, ExprPtr>> kwargs;
  std::vector<std::string> ops;  // kCompare
  bool negated = false;          // kTest: "is not"
};

struct Stmt;
using Body = std::vector<std::unique_ptr<Stmt>>;

struct Stmt {
  enum class Kind {
    kText,      // text
    kOutput,    // {{ expr }}
    kIf,        // conds[i] -> bodies[i]; else_body
    kFor,       // for targets in expr [if cond]: body; else_body
    kSet,       // set targets = expr, or set targets[0].attr = expr
    kSetBlock,  // {% set targets[0] %}body{% endset %}
    kMacro,     // macro name(params) body
    kBreak,
    kContinue,
    kScope,  // body rendered in place (generation blocks)
  };
  Kind kind;
  int line = 0;
  std::string text;
  ExprPtr expr;
  ExprPtr cond;  // kFor filter
  std::vector<ExprPtr> conds;
  std::vector<Body> bodies;
  Body body;
  Body else_body;
  std::vector<std::string> targets;
  std::string attr;                                     // kSet on a namespace attribute
  std::string name;                                     // kMacro
  std::vector<std::pair<std::string, ExprPtr>> params;  // kMacro: name, default (may be null)
};

struct Template {
  Body body;
};

// Parses `source`. InvalidArgument naming the line and the construct for a syntax error, an
// unsupported tag (extends, include, import, call, filter, with, raw, recursive loops) or nesting
// deeper than `max_depth`.
absl::StatusOr<std::unique_ptr<Template>> ParseTemplate(std::string_view source, int max_depth);

}  // namespace kvasir::jinja

#endif  // KVASIR_ENGINE_TOKENIZER_JINJA_PARSER_H_
