// The value type of the chat-template (Jinja subset) interpreter, with Python semantics: str()
// and repr() as Python prints them, truthiness, ==/< and json.dumps (transformers' tojson).
//
// Lists and dicts are immutable once built (transformers renders in jinja2's
// ImmutableSandboxedEnvironment), so copies share them. A namespace() is the one mutable object;
// copies of a namespace Value refer to the same attributes, as in Python.
#ifndef KVASIR_ENGINE_TOKENIZER_JINJA_VALUE_H_
#define KVASIR_ENGINE_TOKENIZER_JINJA_VALUE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "absl/status/statusor.h"

namespace kvasir::jinja {

class Value;

using List = std::vector<Value>;
// An insertion-ordered dict with string keys (what JSON-like template data holds).
using Dict = std::vector<std::pair<std::string, Value>>;

struct Undefined {
  // Why the value is undefined, e.g. "'x' is undefined"; used when an operation on it fails.
  std::string reason;
};
struct None {};

struct Namespace {
  Dict attrs;
};

// Arguments of a call: positional, then keyword (name=value) in source order.
struct CallArgs {
  std::vector<Value> positional;
  std::vector<std::pair<std::string, Value>> named;
};

struct Callable {
  std::string name;  // for messages: "raise_exception", "macro f", "str.strip"
  std::function<absl::StatusOr<Value>(CallArgs&)> fn;
};

class Value {
 public:
  enum class Kind { kUndefined, kNone, kBool, kInt, kFloat, kString, kList, kDict, kNs, kCallable };

  Value() : v_(None{}) {}
  Value(None) : v_(None{}) {}                                        // NOLINT(runtime/explicit)
  Value(Undefined u) : v_(std::move(u)) {}                           // NOLINT(runtime/explicit)
  Value(bool b) : v_(b) {}                                           // NOLINT(runtime/explicit)
  Value(int64_t i) : v_(i) {}                                        // NOLINT(runtime/explicit)
  Value(int i) : v_(static_cast<int64_t>(i)) {}                      // NOLINT(runtime/explicit)
  Value(double d) : v_(d) {}                                         // NOLINT(runtime/explicit)
  Value(std::string s) : v_(std::move(s)) {}                         // NOLINT(runtime/explicit)
  Value(std::string_view s) : v_(std::string(s)) {}                  // NOLINT(runtime/explicit)
  Value(const char* s) : v_(std::string(s)) {}                       // NOLINT(runtime/explicit)
  Value(List l) : v_(std::make_shared<const List>(std::move(l))) {}  // NOLINT(runtime/explicit)
  Value(Dict d) : v_(std::make_shared<const Dict>(std::move(d))) {}  // NOLINT(runtime/explicit)
  Value(std::shared_ptr<Namespace> ns) : v_(std::move(ns)) {}        // NOLINT(runtime/explicit)
  Value(Callable c) : v_(std::make_shared<const Callable>(std::move(c))) {}  // NOLINT

  // A Python tuple: a list that prints as (a, b).
  static Value Tuple(List l) {
    Value v(std::move(l));
    v.tuple_ = true;
    return v;
  }

  Kind kind() const { return static_cast<Kind>(v_.index()); }
  bool is_undefined() const { return kind() == Kind::kUndefined; }
  bool is_none() const { return kind() == Kind::kNone; }
  bool is_bool() const { return kind() == Kind::kBool; }
  bool is_int() const { return kind() == Kind::kInt; }
  bool is_float() const { return kind() == Kind::kFloat; }
  // int, float or bool (a Python bool is an int).
  bool is_number() const { return is_int() || is_float() || is_bool(); }
  bool is_string() const { return kind() == Kind::kString; }
  bool is_list() const { return kind() == Kind::kList; }
  bool is_tuple() const { return is_list() && tuple_; }
  bool is_dict() const { return kind() == Kind::kDict; }
  bool is_namespace() const { return kind() == Kind::kNs; }
  bool is_callable() const { return kind() == Kind::kCallable; }

  // Accessors; each requires the matching kind.
  bool as_bool() const { return std::get<bool>(v_); }
  int64_t as_int() const { return is_bool() ? as_bool() : std::get<int64_t>(v_); }
  double as_float() const;  // int, bool or float
  const std::string& as_string() const { return std::get<std::string>(v_); }
  const List& as_list() const { return *std::get<std::shared_ptr<const List>>(v_); }
  const Dict& as_dict() const { return *std::get<std::shared_ptr<const Dict>>(v_); }
  Namespace& as_namespace() const { return *std::get<std::shared_ptr<Namespace>>(v_); }
  const Callable& as_callable() const { return *std::get<std::shared_ptr<const Callable>>(v_); }
  const Undefined& as_undefined() const { return std::get<Undefined>(v_); }

  // The value of `key` in a dict, or nullptr.
  const Value* Find(std::string_view key) const;

  // Python truthiness; Undefined is false.
  bool Truthy() const;
  // Python str(): None -> "None", True -> "True", 1.0 -> "1.0", lists/dicts via repr of items;
  // Undefined -> "".
  std::string Str() const;
  // Python repr(): strings quoted and escaped as Python does.
  std::string Repr() const;
  // Python type name for messages: "int", "str", "dict", "undefined", ...
  std::string TypeName() const;

 private:
  std::variant<Undefined, None, bool, int64_t, double, std::string, std::shared_ptr<const List>,
               std::shared_ptr<const Dict>, std::shared_ptr<Namespace>,
               std::shared_ptr<const Callable>>
      v_;
  bool tuple_ = false;
};

// Python ==: numbers compare by value (True == 1), lists and dicts element-wise, other kinds
// only with themselves; Undefined equals Undefined.
bool Equal(const Value& a, const Value& b);
// Python <: numbers, strings (code point order) and lists; TypeError (InvalidArgument) otherwise.
absl::StatusOr<bool> Less(const Value& a, const Value& b);

// json.dumps(v, ensure_ascii=False, indent=indent, separators=..., sort_keys=sort_keys), as
// transformers' tojson filter. `indent` < 0 means None. InvalidArgument for values JSON cannot
// hold (undefined, namespace, callable).
struct JsonOptions {
  int indent = -1;
  std::optional<std::string> indent_string;  // indent given as a string
  std::optional<std::pair<std::string, std::string>> separators;
  bool sort_keys = false;
};
absl::StatusOr<std::string> ToJson(const Value& v, const JsonOptions& options);

// Python float repr: shortest round-trip digits, "1.0", "1e+16", "1e-05", "inf", "nan".
std::string PyFloatRepr(double d);

// Python str.isspace() for one code point.
bool IsPyWhitespace(char32_t cp);

// The code points of `s` as byte ranges; an invalid UTF-8 byte counts as one code point.
std::vector<std::string_view> CodePoints(std::string_view s);

}  // namespace kvasir::jinja

#endif  // KVASIR_ENGINE_TOKENIZER_JINJA_VALUE_H_
