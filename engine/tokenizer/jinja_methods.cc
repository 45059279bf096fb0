// Attribute/item lookup, slicing, iteration, Python str/dict methods and the globals.
#include <ctime>
#include <memory>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "engine/tokenizer/jinja_builtins.h"
#include "engine/tokenizer/utf8.h"
#include "engine/util/status_macros.h"
#include "utf8proc.h"

namespace kvasir::jinja {
namespace {

using tokenizer_internal::AppendCodePoint;

constexpr int64_t kMaxRange = 100000;  // jinja2.sandbox.MAX_RANGE

absl::Status TypeError(std::string_view what) {
  return absl::InvalidArgumentError(std::string(what));
}

char32_t Decode(std::string_view cp) {
  if (cp.size() == 1) return static_cast<unsigned char>(cp[0]);
  size_t len = 0;
  return tokenizer_internal::DecodeCodePoint(cp, &len);
}

template <typename F>
std::string MapCodePoints(std::string_view s, F f) {
  std::string out;
  out.reserve(s.size());
  for (std::string_view cp : CodePoints(s)) {
    if (cp.size() == 1 && static_cast<unsigned char>(cp[0]) >= 0x80) {
      out.append(cp);  // an invalid byte stays as it is
    } else {
      AppendCodePoint(f(Decode(cp)), &out);
    }
  }
  return out;
}

bool IsCased(char32_t c) {
  return utf8proc_tolower(static_cast<utf8proc_int32_t>(c)) != static_cast<utf8proc_int32_t>(c) ||
         utf8proc_toupper(static_cast<utf8proc_int32_t>(c)) != static_cast<utf8proc_int32_t>(c);
}
char32_t ToLower(char32_t c) { return utf8proc_tolower(static_cast<utf8proc_int32_t>(c)); }
char32_t ToUpper(char32_t c) { return utf8proc_toupper(static_cast<utf8proc_int32_t>(c)); }

std::string Title(std::string_view s) {
  bool prev_cased = false;
  return MapCodePoints(s, [&](char32_t c) {
    const char32_t out = prev_cased ? ToLower(c) : ToUpper(c);
    prev_cased = IsCased(c);
    return out;
  });
}

std::string Capitalize(std::string_view s) {
  bool first = true;
  return MapCodePoints(s, [&](char32_t c) {
    const char32_t out = first ? ToUpper(c) : ToLower(c);
    first = false;
    return out;
  });
}

// Python str.split(sep, maxsplit) (sep None: runs of whitespace) and rsplit.
List Split(const std::string& s, const Value& sep, int64_t maxsplit, bool from_right) {
  std::vector<std::string> parts;
  if (sep.is_none()) {
    std::vector<std::string_view> cps = CodePoints(s);
    std::vector<std::pair<size_t, size_t>> words;  // code point ranges
    for (size_t i = 0; i < cps.size();) {
      while (i < cps.size() && IsPyWhitespace(Decode(cps[i]))) ++i;
      size_t j = i;
      while (j < cps.size() && !IsPyWhitespace(Decode(cps[j]))) ++j;
      if (j > i) words.emplace_back(i, j);
      i = j;
    }
    auto join = [&](size_t a, size_t b) {
      std::string w;
      for (size_t k = a; k < b; ++k) w.append(cps[k]);
      return w;
    };
    const size_t n = words.size();
    const size_t splits = maxsplit < 0 ? n : std::min<size_t>(n, maxsplit + 1);
    if (splits == 0) return {};
    // Past maxsplit, the remainder keeps its inner and outer whitespace (as Python).
    if (!from_right) {
      for (size_t k = 0; k + 1 < splits; ++k)
        parts.push_back(join(words[k].first, words[k].second));
      parts.push_back(
          join(words[splits - 1].first, splits == n ? words[n - 1].second : cps.size()));
    } else {
      parts.push_back(join(splits == n ? words[0].first : 0, words[n - splits].second));
      for (size_t k = n - splits + 1; k < n; ++k)
        parts.push_back(join(words[k].first, words[k].second));
    }
  } else {
    const std::string& d = sep.as_string();
    if (!from_right) {
      size_t start = 0;
      int64_t count = 0;
      size_t p;
      while ((maxsplit < 0 || count < maxsplit) && (p = s.find(d, start)) != std::string::npos) {
        parts.push_back(s.substr(start, p - start));
        start = p + d.size();
        ++count;
      }
      parts.push_back(s.substr(start));
    } else {
      size_t end = s.size();
      int64_t count = 0;
      std::vector<std::string> rev;
      while (maxsplit < 0 || count < maxsplit) {
        if (end < d.size()) break;
        const size_t p = s.rfind(d, end - d.size());
        if (p == std::string::npos) break;
        rev.push_back(s.substr(p + d.size(), end - p - d.size()));
        end = p;
        ++count;
      }
      parts.push_back(s.substr(0, end));
      parts.insert(parts.end(), rev.rbegin(), rev.rend());
    }
  }
  List out;
  for (std::string& p : parts) out.emplace_back(std::move(p));
  return out;
}

absl::StatusOr<Value> Replace(const std::string& s, const ArgReader& a) {
  KV_RETURN_IF_ERROR(a.Check(3, {}));
  KV_ASSIGN_OR_RETURN(std::string old_s, a.String(0, ""));
  KV_ASSIGN_OR_RETURN(std::string new_s, a.String(1, ""));
  KV_ASSIGN_OR_RETURN(int64_t count, a.Int(2, "", -1));
  std::string out;
  if (old_s.empty()) {
    int64_t n = 0;
    for (std::string_view cp : CodePoints(s)) {
      if (count < 0 || n++ < count) out += new_s;
      out.append(cp);
    }
    if (count < 0 || n < count) out += new_s;
    return Value(std::move(out));
  }
  size_t start = 0, p;
  int64_t n = 0;
  while ((count < 0 || n < count) && (p = s.find(old_s, start)) != std::string::npos) {
    out.append(s, start, p - start);
    out += new_s;
    start = p + old_s.size();
    ++n;
  }
  out.append(s, start, std::string::npos);
  return Value(std::move(out));
}

absl::StatusOr<Value> AffixTest(const std::string& s, const ArgReader& a, bool prefix) {
  KV_RETURN_IF_ERROR(a.Check(1, {}));
  const Value* arg = a.Get(0, "");
  if (arg == nullptr) return TypeError(absl::StrCat(a.what(), " takes at least 1 argument"));
  std::vector<std::string> affixes;
  if (arg->is_string()) {
    affixes.push_back(arg->as_string());
  } else if (arg->is_tuple()) {
    for (const Value& v : arg->as_list()) {
      if (!v.is_string()) return TypeError(absl::StrCat(a.what(), ": tuple items must be str"));
      affixes.push_back(v.as_string());
    }
  } else {
    return TypeError(
        absl::StrCat(a.what(), " arg must be str or a tuple of str, not ", arg->TypeName()));
  }
  for (const std::string& x : affixes) {
    if (x.size() <= s.size() && (prefix ? s.compare(0, x.size(), x) == 0
                                        : s.compare(s.size() - x.size(), x.size(), x) == 0))
      return Value(true);
  }
  return Value(false);
}

absl::StatusOr<Value> Find(const std::string& s, const ArgReader& a, bool from_right, bool count) {
  KV_RETURN_IF_ERROR(a.Check(1, {}));
  KV_ASSIGN_OR_RETURN(std::string sub, a.String(0, ""));
  if (count) {
    if (sub.empty()) return Value(static_cast<int64_t>(CodePoints(s).size() + 1));
    int64_t n = 0;
    for (size_t p = s.find(sub); p != std::string::npos; p = s.find(sub, p + sub.size())) ++n;
    return Value(n);
  }
  const size_t p = from_right ? s.rfind(sub) : s.find(sub);
  if (p == std::string::npos) return Value(-1);
  return Value(static_cast<int64_t>(CodePoints(std::string_view(s).substr(0, p)).size()));
}

template <typename Pred>
Value AllCodePoints(const std::string& s, Pred pred) {
  if (s.empty()) return Value(false);
  for (std::string_view cp : CodePoints(s)) {
    if (!pred(Decode(cp))) return Value(false);
  }
  return Value(true);
}

bool IsDigitCp(char32_t c) { return utf8proc_category(c) == UTF8PROC_CATEGORY_ND; }
bool IsAlphaCp(char32_t c) {
  const auto cat = utf8proc_category(c);
  return cat >= UTF8PROC_CATEGORY_LU && cat <= UTF8PROC_CATEGORY_LO;
}

absl::StatusOr<Value> CallStrMethod(const std::string& s, const std::string& name,
                                    const CallArgs& args) {
  ArgReader a(args, absl::StrCat("str.", name, "()"));
  if (name == "strip" || name == "lstrip" || name == "rstrip") {
    KV_RETURN_IF_ERROR(a.Check(1, {}));
    KV_ASSIGN_OR_RETURN(std::string out,
                        Strip(s, a.GetOr(0, "", None{}), name != "rstrip", name != "lstrip"));
    return Value(std::move(out));
  }
  if (name == "startswith" || name == "endswith") return AffixTest(s, a, name == "startswith");
  if (name == "split" || name == "rsplit") {
    KV_RETURN_IF_ERROR(a.Check(2, {"sep", "maxsplit"}));
    const Value sep = a.GetOr(0, "sep", None{});
    if (!sep.is_none() && !sep.is_string()) return TypeError("must be str or None");
    if (sep.is_string() && sep.as_string().empty()) return TypeError("empty separator");
    KV_ASSIGN_OR_RETURN(int64_t maxsplit, a.Int(1, "maxsplit", -1));
    return Value(Split(s, sep, maxsplit, name == "rsplit"));
  }
  if (name == "replace") return Replace(s, a);
  if (name == "find" || name == "rfind" || name == "count") {
    return Find(s, a, name == "rfind", name == "count");
  }
  KV_RETURN_IF_ERROR(name == "join" ? a.Check(1, {}) : a.Check(0, {}));
  if (name == "lower") return Value(Lower(s));
  if (name == "upper") return Value(Upper(s));
  if (name == "title") return Value(Title(s));
  if (name == "capitalize") return Value(Capitalize(s));
  if (name == "isdigit") return AllCodePoints(s, IsDigitCp);
  if (name == "isalpha") return AllCodePoints(s, IsAlphaCp);
  if (name == "isalnum")
    return AllCodePoints(s, [](char32_t c) { return IsAlphaCp(c) || IsDigitCp(c); });
  if (name == "isspace") return AllCodePoints(s, IsPyWhitespace);
  if (name == "join") {
    const Value* items = a.Get(0, "");
    if (items == nullptr) return TypeError("str.join() takes exactly one argument");
    KV_ASSIGN_OR_RETURN(std::vector<Value> values, Iterate(*items));
    std::string out;
    for (size_t i = 0; i < values.size(); ++i) {
      if (!values[i].is_string()) {
        return TypeError(absl::StrCat("sequence item ", i, ": expected str instance, ",
                                      values[i].TypeName(), " found"));
      }
      absl::StrAppend(&out, i ? s : "", values[i].as_string());
    }
    return Value(std::move(out));
  }
  return TypeError(absl::StrCat("str has no method '", name, "'"));
}

constexpr std::string_view kStrMethods[] = {
    "strip",      "lstrip",  "rstrip",  "startswith", "endswith", "split", "rsplit",
    "replace",    "find",    "rfind",   "count",      "lower",    "upper", "title",
    "capitalize", "isdigit", "isalpha", "isalnum",    "isspace",  "join"};

absl::StatusOr<Value> CallDictMethod(const Value& d, const std::string& name,
                                     const CallArgs& args) {
  ArgReader a(args, absl::StrCat("dict.", name, "()"));
  if (name == "get") {
    KV_RETURN_IF_ERROR(a.Check(2, {}));
    KV_ASSIGN_OR_RETURN(std::string key, a.String(0, ""));
    const Value* v = d.Find(key);
    return v != nullptr ? *v : a.GetOr(1, "", None{});
  }
  KV_RETURN_IF_ERROR(a.Check(0, {}));
  List out;
  for (const auto& [k, v] : d.as_dict()) {
    if (name == "keys") {
      out.emplace_back(k);
    } else if (name == "values") {
      out.push_back(v);
    } else {
      out.push_back(Value::Tuple({Value(k), v}));
    }
  }
  return Value(std::move(out));
}

Value Bound(std::string name, std::function<absl::StatusOr<Value>(CallArgs&)> fn) {
  return Value(Callable{std::move(name), std::move(fn)});
}

// Normalizes a Python index against `size`; false when out of range.
bool NormalizeIndex(int64_t* i, size_t size) {
  if (*i < 0) *i += static_cast<int64_t>(size);
  return *i >= 0 && *i < static_cast<int64_t>(size);
}

}  // namespace

absl::Status ArgReader::Check(size_t max_positional,
                              std::initializer_list<std::string_view> names) const {
  if (args_.positional.size() > max_positional) {
    return TypeError(absl::StrCat(what_, " takes at most ", max_positional,
                                  " positional arguments (", args_.positional.size(), " given)"));
  }
  for (const auto& [k, v] : args_.named) {
    bool known = false;
    for (std::string_view n : names) known = known || n == k;
    if (!known)
      return TypeError(absl::StrCat(what_, " got an unexpected keyword argument '", k, "'"));
  }
  return absl::OkStatus();
}

const Value* ArgReader::Get(size_t index, std::string_view name) const {
  if (index < args_.positional.size()) return &args_.positional[index];
  for (const auto& [k, v] : args_.named) {
    if (!name.empty() && k == name) return &v;
  }
  return nullptr;
}

Value ArgReader::GetOr(size_t index, std::string_view name, Value fallback) const {
  const Value* v = Get(index, name);
  return v != nullptr ? *v : fallback;
}

absl::StatusOr<std::string> ArgReader::String(size_t index, std::string_view name) const {
  const Value* v = Get(index, name);
  if (v == nullptr) return TypeError(absl::StrCat(what_, ": missing argument ", index + 1));
  if (!v->is_string()) {
    return TypeError(
        absl::StrCat(what_, ": argument ", index + 1, " must be str, not ", v->TypeName()));
  }
  return v->as_string();
}

absl::StatusOr<int64_t> ArgReader::Int(size_t index, std::string_view name,
                                       int64_t fallback) const {
  const Value* v = Get(index, name);
  if (v == nullptr || v->is_none()) return fallback;
  if (!v->is_int() && !v->is_bool()) {
    return TypeError(
        absl::StrCat(what_, ": argument ", index + 1, " must be int, not ", v->TypeName()));
  }
  return v->as_int();
}

std::string Lower(std::string_view s) { return MapCodePoints(s, ToLower); }
std::string Upper(std::string_view s) { return MapCodePoints(s, ToUpper); }

absl::StatusOr<std::string> Strip(const std::string& s, const Value& chars, bool left, bool right) {
  if (!chars.is_none() && !chars.is_string() && !chars.is_undefined()) {
    return TypeError(absl::StrCat("strip arg must be None or str, not ", chars.TypeName()));
  }
  std::vector<std::string_view> set;
  if (chars.is_string()) set = CodePoints(chars.as_string());
  auto strip_it = [&](std::string_view cp) {
    if (!chars.is_string()) return IsPyWhitespace(Decode(cp));
    for (std::string_view c : set) {
      if (c == cp) return true;
    }
    return false;
  };
  std::vector<std::string_view> cps = CodePoints(s);
  size_t begin = 0, end = cps.size();
  while (left && begin < end && strip_it(cps[begin])) ++begin;
  while (right && end > begin && strip_it(cps[end - 1])) --end;
  std::string out;
  for (size_t i = begin; i < end; ++i) out.append(cps[i]);
  return out;
}

absl::StatusOr<Value> GetAttr(const Value& obj, const std::string& name) {
  if (obj.is_undefined()) return TypeError(obj.as_undefined().reason);
  if (obj.is_string()) {
    for (std::string_view m : kStrMethods) {
      if (m != name) continue;
      const std::string s = obj.as_string();
      return Bound("str." + name,
                   [s, name](CallArgs& args) { return CallStrMethod(s, name, args); });
    }
  }
  if (obj.is_dict()) {
    if (name == "get" || name == "items" || name == "keys" || name == "values") {
      return Bound("dict." + name,
                   [obj, name](CallArgs& args) { return CallDictMethod(obj, name, args); });
    }
    if (const Value* v = obj.Find(name)) return *v;
  }
  if (obj.is_namespace()) {
    for (const auto& [k, v] : obj.as_namespace().attrs) {
      if (k == name) return v;
    }
  }
  return Value(
      Undefined{absl::StrCat("'", obj.TypeName(), " object' has no attribute '", name, "'")});
}

absl::StatusOr<Value> GetItem(const Value& obj, const Value& key) {
  if (obj.is_undefined()) return TypeError(obj.as_undefined().reason);
  if ((obj.is_list() || obj.is_string()) && (key.is_int() || key.is_bool())) {
    int64_t i = key.as_int();
    if (obj.is_list()) {
      if (NormalizeIndex(&i, obj.as_list().size())) return obj.as_list()[i];
    } else {
      std::vector<std::string_view> cps = CodePoints(obj.as_string());
      if (NormalizeIndex(&i, cps.size())) return Value(cps[i]);
    }
  } else if (obj.is_dict() && key.is_string()) {
    if (const Value* v = obj.Find(key.as_string())) return *v;
  }
  if (key.is_string()) return GetAttr(obj, key.as_string());
  return Value(Undefined{absl::StrCat("'", obj.TypeName(), " object' has no item ", key.Repr())});
}

absl::StatusOr<Value> GetSlice(const Value& obj, const Value& start, const Value& stop,
                               const Value& step) {
  if (obj.is_undefined()) return TypeError(obj.as_undefined().reason);
  for (const Value* v : {&start, &stop, &step}) {
    if (!v->is_none() && !v->is_int() && !v->is_bool()) {
      return TypeError("slice indices must be integers or None");
    }
  }
  if (!obj.is_list() && !obj.is_string()) {
    return TypeError(absl::StrCat("'", obj.TypeName(), "' object is not subscriptable"));
  }
  std::vector<std::string_view> cps;
  if (obj.is_string()) cps = CodePoints(obj.as_string());
  const int64_t n =
      obj.is_list() ? static_cast<int64_t>(obj.as_list().size()) : static_cast<int64_t>(cps.size());
  const int64_t st = step.is_none() ? 1 : step.as_int();
  if (st == 0) return TypeError("slice step cannot be zero");
  auto bound = [&](const Value& v, int64_t dflt) {
    if (v.is_none()) return dflt;
    int64_t i = v.as_int();
    if (i < 0) i += n;
    if (st > 0) return std::clamp<int64_t>(i, 0, n);
    return std::clamp<int64_t>(i, -1, n - 1);
  };
  const int64_t b = bound(start, st > 0 ? 0 : n - 1);
  const int64_t e = bound(stop, st > 0 ? n : -1);
  List items;
  std::string text;
  for (int64_t i = b; st > 0 ? i < e : i > e; i += st) {
    if (obj.is_list()) {
      items.push_back(obj.as_list()[i]);
    } else {
      text.append(cps[i]);
    }
  }
  if (obj.is_string()) return Value(std::move(text));
  return obj.is_tuple() ? Value::Tuple(std::move(items)) : Value(std::move(items));
}

absl::StatusOr<std::vector<Value>> Iterate(const Value& v) {
  std::vector<Value> out;
  if (v.is_undefined()) return out;
  if (v.is_list()) return v.as_list();
  if (v.is_dict()) {
    for (const auto& [k, unused] : v.as_dict()) out.emplace_back(k);
    return out;
  }
  if (v.is_string()) {
    for (std::string_view cp : CodePoints(v.as_string())) out.emplace_back(cp);
    return out;
  }
  return TypeError(absl::StrCat("'", v.TypeName(), "' object is not iterable"));
}

absl::StatusOr<bool> Contains(const Value& haystack, const Value& needle) {
  if (haystack.is_string()) {
    if (!needle.is_string()) {
      return TypeError(
          absl::StrCat("'in <string>' requires string as left operand, not ", needle.TypeName()));
    }
    return haystack.as_string().find(needle.as_string()) != std::string::npos;
  }
  if (haystack.is_dict()) return needle.is_string() && haystack.Find(needle.as_string()) != nullptr;
  KV_ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(haystack));
  for (const Value& v : items) {
    if (Equal(v, needle)) return true;
  }
  return false;
}

namespace {

absl::StatusOr<Value> RaiseException(CallArgs& args) {
  ArgReader a(args, "raise_exception()");
  const Value* msg = a.Get(0, "message");
  return absl::InvalidArgumentError(msg != nullptr ? msg->Str() : "raise_exception()");
}

absl::StatusOr<Value> StrftimeNow(CallArgs& args) {
  ArgReader a(args, "strftime_now()");
  KV_RETURN_IF_ERROR(a.Check(1, {"format"}));
  KV_ASSIGN_OR_RETURN(std::string format, a.String(0, "format"));
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  localtime_r(&now, &tm);
  char buf[512];
  const size_t n = std::strftime(buf, sizeof(buf), format.c_str(), &tm);
  return Value(std::string(buf, n));
}

// dict(mapping, **kwargs); namespace() also rejects underscore names, as transformers does.
absl::StatusOr<Dict> MakeDict(const CallArgs& args, bool namespace_names) {
  Dict d;
  if (args.positional.size() > 1) return TypeError("expected at most 1 positional argument");
  if (!args.positional.empty()) {
    if (!args.positional[0].is_dict()) return TypeError("positional argument must be a dict");
    d = args.positional[0].as_dict();
  }
  for (const auto& [k, v] : args.named) {
    if (namespace_names && !k.empty() && k[0] == '_') {
      return TypeError(absl::StrCat("namespace attribute '", k, "' starts with an underscore"));
    }
    bool replaced = false;
    for (auto& kv : d) {
      if (kv.first == k) kv.second = v, replaced = true;
    }
    if (!replaced) d.emplace_back(k, v);
  }
  return d;
}

absl::StatusOr<Value> NamespaceFn(CallArgs& args) {
  KV_ASSIGN_OR_RETURN(Dict d, MakeDict(args, true));
  auto ns = std::make_shared<Namespace>();
  ns->attrs = std::move(d);
  return Value(std::move(ns));
}

absl::StatusOr<Value> DictFn(CallArgs& args) {
  KV_ASSIGN_OR_RETURN(Dict d, MakeDict(args, false));
  return Value(std::move(d));
}

absl::StatusOr<Value> Range(CallArgs& args) {
  ArgReader a(args, "range()");
  KV_RETURN_IF_ERROR(a.Check(3, {}));
  if (args.positional.empty()) return TypeError("range expected at least 1 argument, got 0");
  KV_ASSIGN_OR_RETURN(int64_t first, a.Int(0, "", 0));
  int64_t start = 0, stop = first;
  if (args.positional.size() > 1) {
    start = first;
    KV_ASSIGN_OR_RETURN(stop, a.Int(1, "", 0));
  }
  KV_ASSIGN_OR_RETURN(int64_t step, a.Int(2, "", 1));
  if (step == 0) return TypeError("range() arg 3 must not be zero");
  List out;
  for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) {
    if (static_cast<int64_t>(out.size()) >= kMaxRange) {
      return TypeError(absl::StrCat("range too big, maximum size for range is ", kMaxRange));
    }
    out.emplace_back(i);
  }
  return Value(std::move(out));
}

}  // namespace

Dict Globals() {
  return {{"raise_exception", Bound("raise_exception", RaiseException)},
          {"strftime_now", Bound("strftime_now", StrftimeNow)},
          {"namespace", Bound("namespace", NamespaceFn)},
          {"dict", Bound("dict", DictFn)},
          {"range", Bound("range", Range)}};
}

}  // namespace kvasir::jinja
