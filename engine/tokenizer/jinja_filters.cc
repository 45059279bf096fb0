// jinja2's filters and tests (as of jinja2 3.1) that chat templates use; tojson is transformers'.
#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "engine/tokenizer/jinja_builtins.h"
#include "engine/util/status_macros.h"

namespace kvasir::jinja {
namespace {

using FilterFn = absl::StatusOr<Value> (*)(const Value&, const ArgReader&, size_t max_bytes);

absl::Status TypeError(std::string_view what) {
  return absl::InvalidArgumentError(std::string(what));
}

absl::Status CheckSize(size_t bytes, size_t max_bytes, const ArgReader& a) {
  if (bytes <= max_bytes) return absl::OkStatus();
  return absl::ResourceExhaustedError(
      absl::StrCat(a.what(), " result exceeds the output limit of ", max_bytes, " bytes"));
}

absl::StatusOr<std::string> StringArg(const Value& v, const ArgReader& a) {
  if (v.is_string()) return v.as_string();
  if (v.is_undefined()) return std::string();
  return v.Str();
}

// attribute="a.b" lookups used by map/sort/selectattr/sum/...
absl::StatusOr<Value> AttrPath(const Value& v, const std::string& path) {
  Value cur = v;
  size_t start = 0;
  while (start <= path.size()) {
    const size_t dot = path.find('.', start);
    const std::string part = path.substr(start, dot == std::string::npos ? dot : dot - start);
    const bool numeric = !part.empty() && std::all_of(part.begin(), part.end(), ::isdigit);
    KV_ASSIGN_OR_RETURN(
        cur, GetItem(cur, numeric ? Value(static_cast<int64_t>(std::stoll(part))) : Value(part)));
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  return cur;
}

// A sort/compare key: the attribute when given, strings lower-cased unless case-sensitive.
// `case_index`/`attr_index`: the positions of case_sensitive/attribute in the filter's signature.
absl::StatusOr<Value> SortKey(const Value& v, const ArgReader& a, size_t case_index,
                              size_t attr_index) {
  Value key = v;
  if (const Value* attr = a.Get(attr_index, "attribute"); attr != nullptr && !attr->is_none()) {
    KV_ASSIGN_OR_RETURN(key, AttrPath(v, attr->Str()));
  }
  if (key.is_string() && !a.GetOr(case_index, "case_sensitive", false).Truthy()) {
    return Value(Lower(key.as_string()));
  }
  return key;
}

// sort(reverse, case_sensitive, attribute) order of arguments.
absl::StatusOr<std::vector<Value>> SortedValues(std::vector<Value> items, const ArgReader& a,
                                                bool reverse) {
  std::vector<std::pair<Value, Value>> keyed;
  for (Value& v : items) {
    KV_ASSIGN_OR_RETURN(Value k, SortKey(v, a, 1, 2));
    keyed.emplace_back(std::move(k), std::move(v));
  }
  absl::Status error;
  std::stable_sort(keyed.begin(), keyed.end(), [&](const auto& x, const auto& y) {
    absl::StatusOr<bool> less = reverse ? Less(y.first, x.first) : Less(x.first, y.first);
    if (!less.ok()) error = less.status();
    return less.ok() && *less;
  });
  KV_RETURN_IF_ERROR(error);
  std::vector<Value> out;
  for (auto& [k, v] : keyed) out.push_back(std::move(v));
  return out;
}

absl::StatusOr<Value> Tojson(const Value& v, const ArgReader& a, size_t) {
  KV_RETURN_IF_ERROR(a.Check(5, {"ensure_ascii", "indent", "separators", "sort_keys"}));
  if (a.GetOr(0, "ensure_ascii", false).Truthy()) {
    return TypeError("tojson: ensure_ascii=True is not supported");
  }
  JsonOptions o;
  const Value indent = a.GetOr(1, "indent", None{});
  if (indent.is_int()) {
    o.indent = static_cast<int>(std::clamp<int64_t>(indent.as_int(), 0, 64));
  } else if (indent.is_string()) {
    o.indent_string = indent.as_string();
  } else if (!indent.is_none()) {
    return TypeError("tojson: indent must be an int, a str or None");
  }
  const Value seps = a.GetOr(2, "separators", None{});
  if (seps.is_list() && seps.as_list().size() == 2 && seps.as_list()[0].is_string() &&
      seps.as_list()[1].is_string()) {
    o.separators = std::make_pair(seps.as_list()[0].as_string(), seps.as_list()[1].as_string());
  } else if (!seps.is_none()) {
    return TypeError("tojson: separators must be a pair of strings");
  }
  o.sort_keys = a.GetOr(3, "sort_keys", false).Truthy();
  KV_ASSIGN_OR_RETURN(std::string out, ToJson(v, o));
  return Value(std::move(out));
}

absl::StatusOr<Value> Length(const Value& v, const ArgReader& a, size_t) {
  KV_RETURN_IF_ERROR(a.Check(0, {}));
  if (v.is_string()) return Value(static_cast<int64_t>(CodePoints(v.as_string()).size()));
  if (v.is_list()) return Value(static_cast<int64_t>(v.as_list().size()));
  if (v.is_dict()) return Value(static_cast<int64_t>(v.as_dict().size()));
  if (v.is_undefined()) return Value(0);
  return TypeError(absl::StrCat("object of type '", v.TypeName(), "' has no len()"));
}

absl::StatusOr<Value> Trim(const Value& v, const ArgReader& a, size_t) {
  KV_RETURN_IF_ERROR(a.Check(1, {"chars"}));
  KV_ASSIGN_OR_RETURN(std::string s, StringArg(v, a));
  KV_ASSIGN_OR_RETURN(std::string out, Strip(s, a.GetOr(0, "chars", None{}), true, true));
  return Value(std::move(out));
}

absl::StatusOr<Value> StringFilter(const Value& v, const ArgReader& a, size_t) {
  KV_RETURN_IF_ERROR(a.Check(0, {}));
  return Value(v.Str());
}

absl::StatusOr<Value> LowerFilter(const Value& v, const ArgReader& a, size_t) {
  KV_RETURN_IF_ERROR(a.Check(0, {}));
  return Value(Lower(v.Str()));
}

absl::StatusOr<Value> UpperFilter(const Value& v, const ArgReader& a, size_t) {
  KV_RETURN_IF_ERROR(a.Check(0, {}));
  return Value(Upper(v.Str()));
}

absl::StatusOr<Value> StrMethodFilter(const Value& v, const std::string& method,
                                      const CallArgs& args) {
  KV_ASSIGN_OR_RETURN(Value fn, GetAttr(Value(v.Str()), method));
  CallArgs copy = args;
  return fn.as_callable().fn(copy);
}

absl::StatusOr<Value> CapitalizeFilter(const Value& v, const ArgReader& a, size_t) {
  KV_RETURN_IF_ERROR(a.Check(0, {}));
  return StrMethodFilter(v, "capitalize", {});
}

absl::StatusOr<Value> TitleFilter(const Value& v, const ArgReader& a, size_t) {
  KV_RETURN_IF_ERROR(a.Check(0, {}));
  return StrMethodFilter(v, "title", {});
}

absl::StatusOr<Value> ReplaceFilter(const Value& v, const ArgReader& a, size_t max_bytes) {
  KV_RETURN_IF_ERROR(a.Check(3, {"old", "new", "count"}));
  CallArgs args;
  KV_ASSIGN_OR_RETURN(std::string old_s, a.String(0, "old"));
  KV_ASSIGN_OR_RETURN(std::string new_s, a.String(1, "new"));
  args.positional = {Value(old_s), Value(new_s), a.GetOr(2, "count", None{})};
  KV_ASSIGN_OR_RETURN(Value out, StrMethodFilter(v, "replace", args));
  KV_RETURN_IF_ERROR(CheckSize(out.as_string().size(), max_bytes, a));
  return out;
}

absl::StatusOr<Value> Join(const Value& v, const ArgReader& a, size_t max_bytes) {
  KV_RETURN_IF_ERROR(a.Check(2, {"d", "attribute"}));
  const std::string sep = a.GetOr(0, "d", "").Str();
  KV_ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(v));
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) {
    Value item = items[i];
    if (const Value* attr = a.Get(1, "attribute"); attr != nullptr && !attr->is_none()) {
      KV_ASSIGN_OR_RETURN(item, AttrPath(item, attr->Str()));
    }
    absl::StrAppend(&out, i ? sep : "", item.Str());
    KV_RETURN_IF_ERROR(CheckSize(out.size(), max_bytes, a));
  }
  return Value(std::move(out));
}

absl::StatusOr<Value> FirstOrLast(const Value& v, const ArgReader& a, bool first) {
  KV_RETURN_IF_ERROR(a.Check(0, {}));
  KV_ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(v));
  if (items.empty()) return Value(Undefined{"No first item, sequence was empty."});
  return first ? items.front() : items.back();
}
absl::StatusOr<Value> First(const Value& v, const ArgReader& a, size_t) {
  return FirstOrLast(v, a, true);
}
absl::StatusOr<Value> Last(const Value& v, const ArgReader& a, size_t) {
  return FirstOrLast(v, a, false);
}

absl::StatusOr<Value> ListFilter(const Value& v, const ArgReader& a, size_t) {
  KV_RETURN_IF_ERROR(a.Check(0, {}));
  KV_ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(v));
  return Value(List(std::move(items)));
}

absl::StatusOr<Value> Reverse(const Value& v, const ArgReader& a, size_t) {
  KV_RETURN_IF_ERROR(a.Check(0, {}));
  KV_ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(v));
  std::reverse(items.begin(), items.end());
  if (!v.is_string()) return Value(List(std::move(items)));
  std::string out;
  for (const Value& c : items) out += c.as_string();
  return Value(std::move(out));
}

absl::StatusOr<Value> Default(const Value& v, const ArgReader& a, size_t) {
  KV_RETURN_IF_ERROR(a.Check(2, {"default_value", "boolean"}));
  const bool boolean = a.GetOr(1, "boolean", false).Truthy();
  if (v.is_undefined() || (boolean && !v.Truthy())) return a.GetOr(0, "default_value", "");
  return v;
}

absl::StatusOr<Value> Items(const Value& v, const ArgReader& a, size_t) {
  KV_RETURN_IF_ERROR(a.Check(0, {}));
  if (v.is_undefined()) return Value(List{});
  if (!v.is_dict()) return TypeError(absl::StrCat("items: expected a dict, got ", v.TypeName()));
  List out;
  for (const auto& [k, x] : v.as_dict()) out.push_back(Value::Tuple({Value(k), x}));
  return Value(std::move(out));
}

absl::StatusOr<Value> DictSort(const Value& v, const ArgReader& a, size_t) {
  KV_RETURN_IF_ERROR(a.Check(3, {"case_sensitive", "by", "reverse"}));
  KV_ASSIGN_OR_RETURN(Value items, Items(v, ArgReader(CallArgs{}, a.what()), 0));
  const bool by_value = a.GetOr(1, "by", "key").Str() == "value";
  const bool case_sensitive = a.GetOr(0, "case_sensitive", false).Truthy();
  CallArgs key_args;
  key_args.named = {{"attribute", Value(by_value ? 1 : 0)},
                    {"case_sensitive", Value(case_sensitive)}};
  ArgReader key_reader(key_args, a.what());
  KV_ASSIGN_OR_RETURN(
      std::vector<Value> sorted,
      SortedValues(items.as_list(), key_reader, a.GetOr(2, "reverse", false).Truthy()));
  return Value(List(std::move(sorted)));
}

absl::StatusOr<Value> Sort(const Value& v, const ArgReader& a, size_t) {
  KV_RETURN_IF_ERROR(a.Check(3, {"reverse", "case_sensitive", "attribute"}));
  KV_ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(v));
  KV_ASSIGN_OR_RETURN(std::vector<Value> sorted,
                      SortedValues(std::move(items), a, a.GetOr(0, "reverse", false).Truthy()));
  return Value(List(std::move(sorted)));
}

absl::StatusOr<Value> Unique(const Value& v, const ArgReader& a, size_t) {
  KV_RETURN_IF_ERROR(a.Check(2, {"case_sensitive", "attribute"}));
  KV_ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(v));
  List out;
  std::vector<Value> seen;
  for (const Value& item : items) {
    KV_ASSIGN_OR_RETURN(Value key, SortKey(item, a, 0, 1));
    if (std::any_of(seen.begin(), seen.end(), [&](const Value& s) { return Equal(s, key); })) {
      continue;
    }
    seen.push_back(key);
    out.push_back(item);
  }
  return Value(std::move(out));
}

absl::StatusOr<Value> MinMax(const Value& v, const ArgReader& a, bool max) {
  KV_RETURN_IF_ERROR(a.Check(2, {"case_sensitive", "attribute"}));
  KV_ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(v));
  if (items.empty()) return Value(Undefined{"No aggregated item, sequence was empty."});
  Value best = items[0];
  KV_ASSIGN_OR_RETURN(Value best_key, SortKey(best, a, 0, 1));
  for (size_t i = 1; i < items.size(); ++i) {
    KV_ASSIGN_OR_RETURN(Value key, SortKey(items[i], a, 0, 1));
    KV_ASSIGN_OR_RETURN(bool better, max ? Less(best_key, key) : Less(key, best_key));
    if (better) best = items[i], best_key = key;
  }
  return best;
}
absl::StatusOr<Value> Max(const Value& v, const ArgReader& a, size_t) { return MinMax(v, a, true); }
absl::StatusOr<Value> Min(const Value& v, const ArgReader& a, size_t) {
  return MinMax(v, a, false);
}

absl::StatusOr<Value> Add(const Value& x, const Value& y) {
  if (!x.is_number() || !y.is_number()) {
    return TypeError(absl::StrCat("unsupported operand type(s) for +: '", x.TypeName(), "' and '",
                                  y.TypeName(), "'"));
  }
  if (x.is_float() || y.is_float()) return Value(x.as_float() + y.as_float());
  int64_t r;
  if (__builtin_add_overflow(x.as_int(), y.as_int(), &r)) return TypeError("integer overflow");
  return Value(r);
}

absl::StatusOr<Value> Sum(const Value& v, const ArgReader& a, size_t) {
  KV_RETURN_IF_ERROR(a.Check(2, {"attribute", "start"}));
  KV_ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(v));
  Value total = a.GetOr(1, "start", 0);
  for (Value item : items) {
    if (const Value* attr = a.Get(0, "attribute"); attr != nullptr && !attr->is_none()) {
      KV_ASSIGN_OR_RETURN(item, AttrPath(item, attr->Str()));
    }
    KV_ASSIGN_OR_RETURN(total, Add(total, item));
  }
  return total;
}

absl::StatusOr<Value> Abs(const Value& v, const ArgReader& a, size_t) {
  KV_RETURN_IF_ERROR(a.Check(0, {}));
  if (v.is_float()) return Value(std::fabs(v.as_float()));
  if (v.is_int() || v.is_bool()) {
    if (v.as_int() == INT64_MIN) return TypeError("integer overflow");
    return Value(v.as_int() < 0 ? -v.as_int() : v.as_int());
  }
  return TypeError(absl::StrCat("bad operand type for abs(): '", v.TypeName(), "'"));
}

// Python float(str): optional whitespace, sign, digits, "inf"/"nan"; nullopt if invalid.
std::optional<double> ParsePyFloat(const std::string& s) {
  std::string t;
  for (char c : s) {
    if (c != '_') t.push_back(c);
  }
  const size_t b = t.find_first_not_of(" \t\n\r\f\v");
  const size_t e = t.find_last_not_of(" \t\n\r\f\v");
  if (b == std::string::npos) return std::nullopt;
  t = t.substr(b, e - b + 1);
  if (t.find_first_of("xXpP") != std::string::npos) return std::nullopt;  // no hex floats
  char* end = nullptr;
  const double d = std::strtod(t.c_str(), &end);
  if (end != t.c_str() + t.size()) return std::nullopt;
  return d;
}

absl::StatusOr<Value> IntFilter(const Value& v, const ArgReader& a, size_t) {
  KV_RETURN_IF_ERROR(a.Check(2, {"default", "base"}));
  const Value fallback = a.GetOr(0, "default", 0);
  if (v.is_int() || v.is_bool()) return Value(v.as_int());
  if (v.is_float()) {
    const double d = std::trunc(v.as_float());
    if (!std::isfinite(d) || std::fabs(d) >= 9.2e18) return fallback;
    return Value(static_cast<int64_t>(d));
  }
  if (!v.is_string()) return fallback;
  KV_ASSIGN_OR_RETURN(int64_t base, a.Int(1, "base", 10));
  std::string t;
  for (char c : v.as_string()) {
    if (c != '_') t.push_back(c);
  }
  errno = 0;
  char* end = nullptr;
  const char* begin = t.c_str();
  while (*begin == ' ' || *begin == '\t' || *begin == '\n') ++begin;
  const long long i = std::strtoll(begin, &end, static_cast<int>(base));
  std::string rest(end);
  if (end != begin && errno == 0 && rest.find_first_not_of(" \t\n\r\f\v") == std::string::npos) {
    return Value(static_cast<int64_t>(i));
  }
  std::optional<double> d = ParsePyFloat(v.as_string());
  if (!d.has_value() || !std::isfinite(*d) || std::fabs(*d) >= 9.2e18) return fallback;
  return Value(static_cast<int64_t>(std::trunc(*d)));
}

absl::StatusOr<Value> FloatFilter(const Value& v, const ArgReader& a, size_t) {
  KV_RETURN_IF_ERROR(a.Check(1, {"default"}));
  if (v.is_number()) return Value(v.as_float());
  if (v.is_string()) {
    if (std::optional<double> d = ParsePyFloat(v.as_string())) return Value(*d);
  }
  return a.GetOr(0, "default", 0.0);
}

absl::StatusOr<Value> Round(const Value& v, const ArgReader& a, size_t) {
  KV_RETURN_IF_ERROR(a.Check(2, {"precision", "method"}));
  KV_ASSIGN_OR_RETURN(int64_t precision, a.Int(0, "precision", 0));
  const std::string method = a.GetOr(1, "method", "common").Str();
  if (!v.is_number())
    return TypeError(absl::StrCat("round: expected a number, got ", v.TypeName()));
  const double x = v.as_float();
  const double scale = std::pow(10.0, static_cast<double>(precision));
  if (method == "ceil") return Value(std::ceil(x * scale) / scale);
  if (method == "floor") return Value(std::floor(x * scale) / scale);
  if (method != "common") return TypeError("round: method must be common, ceil or floor");
  if (!std::isfinite(x) || precision > 300 || precision < -300) return Value(x);
  char buf[400];  // Python round(): correctly rounded, halves to even on the exact value.
  std::snprintf(buf, sizeof(buf), "%.*f", static_cast<int>(std::max<int64_t>(precision, 0)), x);
  if (precision >= 0) return Value(std::strtod(buf, nullptr));
  return Value(std::nearbyint(x * scale) / scale);
}

absl::StatusOr<Value> Indent(const Value& v, const ArgReader& a, size_t max_bytes) {
  KV_RETURN_IF_ERROR(a.Check(3, {"width", "first", "blank"}));
  const Value width = a.GetOr(0, "width", 4);
  const std::string pad = width.is_string()
                              ? width.as_string()
                              : std::string(static_cast<size_t>(std::clamp<int64_t>(
                                                width.is_int() ? width.as_int() : 4, 0, 256)),
                                            ' ');
  const bool first = a.GetOr(1, "first", false).Truthy();
  const bool blank = a.GetOr(2, "blank", false).Truthy();
  // Python str.splitlines() on s + "\n" (only \n, \r\n and \r are handled as line breaks).
  std::vector<std::string> lines;
  const std::string s = v.Str() + "\n";
  size_t start = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '\n' && s[i] != '\r') continue;
    lines.push_back(s.substr(start, i - start));
    if (s[i] == '\r' && i + 1 < s.size() && s[i + 1] == '\n') ++i;
    start = i + 1;
  }
  std::string out = lines.empty() ? "" : lines[0];
  for (size_t i = 1; i < lines.size(); ++i) {
    out += "\n";
    if (blank || !lines[i].empty()) out += pad;
    out += lines[i];
    KV_RETURN_IF_ERROR(CheckSize(out.size(), max_bytes, a));
  }
  if (first) out = pad + out;
  return Value(std::move(out));
}

absl::StatusOr<Value> Escape(const Value& v, const ArgReader& a, size_t) {
  KV_RETURN_IF_ERROR(a.Check(0, {}));
  std::string out;
  for (char c : v.Str()) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&#34;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out.push_back(c);
    }
  }
  return Value(std::move(out));
}

absl::StatusOr<Value> Safe(const Value& v, const ArgReader& a, size_t) {
  KV_RETURN_IF_ERROR(a.Check(0, {}));
  return v;
}

absl::StatusOr<Value> Map(const Value& v, const ArgReader& a, size_t max_bytes) {
  KV_ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(v));
  List out;
  if (const Value* attr = a.Get(99, "attribute"); attr != nullptr) {
    const Value fallback = a.GetOr(99, "default", Undefined{"map: attribute is undefined"});
    for (const Value& item : items) {
      KV_ASSIGN_OR_RETURN(Value x, AttrPath(item, attr->Str()));
      out.push_back(x.is_undefined() ? fallback : x);
    }
    return Value(std::move(out));
  }
  const Value* name = a.Get(0, "");
  if (name == nullptr || !name->is_string()) {
    return TypeError("map: expected a filter name or attribute=");
  }
  CallArgs rest;
  for (size_t i = 1; const Value* x = a.Get(i, ""); ++i) rest.positional.push_back(*x);
  for (const Value& item : items) {
    KV_ASSIGN_OR_RETURN(Value x, ApplyFilter(name->as_string(), item, rest, max_bytes));
    out.push_back(std::move(x));
  }
  return Value(std::move(out));
}

// select/reject (attr empty) and selectattr/rejectattr.
absl::StatusOr<Value> Select(const Value& v, const ArgReader& a, bool by_attr, bool keep) {
  KV_ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(v));
  size_t next = 0;
  std::string attr;
  if (by_attr) {
    KV_ASSIGN_OR_RETURN(attr, a.String(next++, ""));
  }
  const Value* test = a.Get(next++, "");
  CallArgs test_args;
  for (size_t i = next; const Value* x = a.Get(i, ""); ++i) test_args.positional.push_back(*x);
  List out;
  for (const Value& item : items) {
    Value subject = item;
    if (by_attr) {
      KV_ASSIGN_OR_RETURN(subject, AttrPath(item, attr));
    }
    bool pass = subject.Truthy();
    if (test != nullptr) {
      KV_ASSIGN_OR_RETURN(pass, ApplyTest(test->Str(), subject, test_args));
    }
    if (pass == keep) out.push_back(item);
  }
  return Value(std::move(out));
}
absl::StatusOr<Value> SelectF(const Value& v, const ArgReader& a, size_t) {
  return Select(v, a, false, true);
}
absl::StatusOr<Value> RejectF(const Value& v, const ArgReader& a, size_t) {
  return Select(v, a, false, false);
}
absl::StatusOr<Value> SelectAttr(const Value& v, const ArgReader& a, size_t) {
  return Select(v, a, true, true);
}
absl::StatusOr<Value> RejectAttr(const Value& v, const ArgReader& a, size_t) {
  return Select(v, a, true, false);
}

struct NamedFilter {
  std::string_view name;
  FilterFn fn;
};
constexpr NamedFilter kFilters[] = {
    {"abs", Abs},
    {"capitalize", CapitalizeFilter},
    {"count", Length},
    {"d", Default},
    {"default", Default},
    {"dictsort", DictSort},
    {"e", Escape},
    {"escape", Escape},
    {"first", First},
    {"float", FloatFilter},
    {"indent", Indent},
    {"int", IntFilter},
    {"items", Items},
    {"join", Join},
    {"last", Last},
    {"length", Length},
    {"list", ListFilter},
    {"lower", LowerFilter},
    {"map", Map},
    {"max", Max},
    {"min", Min},
    {"reject", RejectF},
    {"rejectattr", RejectAttr},
    {"replace", ReplaceFilter},
    {"reverse", Reverse},
    {"round", Round},
    {"safe", Safe},
    {"select", SelectF},
    {"selectattr", SelectAttr},
    {"sort", Sort},
    {"string", StringFilter},
    {"sum", Sum},
    {"title", TitleFilter},
    {"tojson", Tojson},
    {"trim", Trim},
    {"unique", Unique},
    {"upper", UpperFilter},
};

constexpr std::string_view kTests[] = {
    "boolean", "callable",  "defined", "divisibleby", "eq",     "equalto",     "escaped",
    "even",    "false",     "float",   "ge",          "gt",     "greaterthan", "in",
    "integer", "iterable",  "le",      "lessthan",    "lower",  "lt",          "mapping",
    "ne",      "none",      "number",  "odd",         "sameas", "sequence",    "string",
    "true",    "undefined", "upper",   "==",          "!=",     "<",           "<=",
    ">",       ">="};

absl::StatusOr<bool> CompareTest(std::string_view name, const Value& v, const Value& other) {
  if (name == "eq" || name == "equalto" || name == "==") return Equal(v, other);
  if (name == "ne" || name == "!=") return !Equal(v, other);
  if (name == "lt" || name == "lessthan" || name == "<") return Less(v, other);
  if (name == "gt" || name == "greaterthan" || name == ">") return Less(other, v);
  KV_ASSIGN_OR_RETURN(bool less, name == "le" || name == "<=" ? Less(other, v) : Less(v, other));
  return !less;  // le: !(other < v); ge: !(v < other)
}

}  // namespace

bool IsKnownFilter(std::string_view name) {
  for (const NamedFilter& f : kFilters) {
    if (f.name == name) return true;
  }
  return false;
}

bool IsKnownTest(std::string_view name) {
  return std::find(std::begin(kTests), std::end(kTests), name) != std::end(kTests);
}

absl::StatusOr<Value> ApplyFilter(std::string_view name, const Value& value, const CallArgs& args,
                                  size_t max_bytes) {
  for (const NamedFilter& f : kFilters) {
    if (f.name == name)
      return f.fn(value, ArgReader(args, absl::StrCat("filter '", std::string(name), "'")),
                  max_bytes);
  }
  return absl::InvalidArgumentError(absl::StrCat("no filter named '", std::string(name), "'"));
}

absl::StatusOr<bool> ApplyTest(std::string_view name, const Value& v, const CallArgs& args) {
  const ArgReader a(args, absl::StrCat("test '", std::string(name), "'"));
  if (!IsKnownTest(name)) {
    return absl::InvalidArgumentError(absl::StrCat("no test named '", std::string(name), "'"));
  }
  const Value* arg = a.Get(0, "");
  KV_RETURN_IF_ERROR(a.Check(1, {}));
  if (name == "defined") return !v.is_undefined();
  if (name == "undefined") return v.is_undefined();
  if (name == "none") return v.is_none();
  if (name == "boolean") return v.is_bool();
  if (name == "true") return v.is_bool() && v.as_bool();
  if (name == "false") return v.is_bool() && !v.as_bool();
  if (name == "integer") return v.is_int();
  if (name == "float") return v.is_float();
  if (name == "number") return v.is_number();
  if (name == "string") return v.is_string();
  if (name == "mapping") return v.is_dict();
  if (name == "iterable") return v.is_list() || v.is_dict() || v.is_string() || v.is_undefined();
  if (name == "sequence") return v.is_list() || v.is_dict() || v.is_string();
  if (name == "callable") return v.is_callable();
  if (name == "escaped") return false;
  if (name == "lower") return v.is_string() && Lower(v.as_string()) == v.as_string();
  if (name == "upper") return v.is_string() && Upper(v.as_string()) == v.as_string();
  if (name == "odd" || name == "even") {
    if (!v.is_int() && !v.is_bool()) return TypeError(absl::StrCat(a.what(), ": expected an int"));
    return (v.as_int() % 2 != 0) == (name == "odd");
  }
  if (arg == nullptr) return TypeError(absl::StrCat(a.what(), " needs an argument"));
  if (name == "divisibleby") {
    if (!v.is_number() || !arg->is_number()) return TypeError("divisibleby: expected numbers");
    if (arg->as_float() == 0) return TypeError("divisibleby: division by zero");
    if (v.is_float() || arg->is_float()) return std::fmod(v.as_float(), arg->as_float()) == 0;
    return v.as_int() % arg->as_int() == 0;
  }
  if (name == "sameas") {
    return Equal(v, *arg) && v.kind() == arg->kind() &&
           (v.is_none() || v.is_bool() || v.is_undefined() || v.is_namespace());
  }
  if (name == "in") return Contains(*arg, v);
  return CompareTest(name, v, *arg);
}

}  // namespace kvasir::jinja
