// The builtins of the chat-template Jinja subset: jinja2's filters and tests that chat templates
// use (with transformers' tojson), attribute and item lookup with jinja2's getattr/getitem rules,
// the Python str/dict methods templates call, and the globals transformers defines.
//
// Every function here is pure; errors are InvalidArgument naming the filter, test or method and
// the Python type at fault (the caller adds the template line).
#ifndef KVASIR_ENGINE_TOKENIZER_JINJA_BUILTINS_H_
#define KVASIR_ENGINE_TOKENIZER_JINJA_BUILTINS_H_

#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/tokenizer/jinja_value.h"

namespace kvasir::jinja {

bool IsKnownFilter(std::string_view name);
bool IsKnownTest(std::string_view name);

// `value | name(args)`. `max_bytes` bounds any string or list the filter builds.
absl::StatusOr<Value> ApplyFilter(std::string_view name, const Value& value, const CallArgs& args,
                                  size_t max_bytes);
// `value is name(args)`.
absl::StatusOr<bool> ApplyTest(std::string_view name, const Value& value, const CallArgs& args);

// `obj.name` as jinja2 resolves it: a method of str/dict (bound), a dict key, a namespace
// attribute; Undefined when absent. InvalidArgument when `obj` is itself undefined.
absl::StatusOr<Value> GetAttr(const Value& obj, const std::string& name);
// `obj[key]`: list/str index (negative from the end; code points for str), dict key, then
// attribute; Undefined when absent. InvalidArgument when `obj` is undefined.
absl::StatusOr<Value> GetItem(const Value& obj, const Value& key);
// `obj[start:stop:step]` on a list or str with Python's rules; an omitted bound is None.
absl::StatusOr<Value> GetSlice(const Value& obj, const Value& start, const Value& stop,
                               const Value& step);

// The values a for loop visits: list items, dict keys, str code points; Undefined: none.
absl::StatusOr<std::vector<Value>> Iterate(const Value& v);
// `needle in haystack` (substring, list membership or dict key).
absl::StatusOr<bool> Contains(const Value& haystack, const Value& needle);

// Globals transformers gives templates: namespace, raise_exception, strftime_now, dict, range.
// raise_exception(msg) fails with InvalidArgument whose message is "raise_exception: " + msg.
Dict Globals();

// Binds call arguments to Python-style parameters: Get(i, "name") is the i-th positional
// argument or the keyword argument `name`.
class ArgReader {
 public:
  // `what` names the callee in messages, e.g. "filter 'join'".
  ArgReader(const CallArgs& args, std::string what) : args_(args), what_(std::move(what)) {}
  // InvalidArgument if there are more than `max_positional` positional arguments or a keyword
  // not in `names`.
  absl::Status Check(size_t max_positional, std::initializer_list<std::string_view> names) const;
  const Value* Get(size_t index, std::string_view name) const;
  Value GetOr(size_t index, std::string_view name, Value fallback) const;
  // The argument as a str/int; InvalidArgument naming it otherwise.
  absl::StatusOr<std::string> String(size_t index, std::string_view name) const;
  absl::StatusOr<int64_t> Int(size_t index, std::string_view name, int64_t fallback) const;
  const std::string& what() const { return what_; }

 private:
  const CallArgs& args_;
  std::string what_;
};

// Python str.lower()/str.upper() by code point (simple case mapping).
std::string Lower(std::string_view s);
std::string Upper(std::string_view s);
// Python str.strip(chars) on code points; `chars` None strips whitespace. `left`/`right` choose
// lstrip/rstrip.
absl::StatusOr<std::string> Strip(const std::string& s, const Value& chars, bool left, bool right);

}  // namespace kvasir::jinja

#endif  // KVASIR_ENGINE_TOKENIZER_JINJA_BUILTINS_H_
