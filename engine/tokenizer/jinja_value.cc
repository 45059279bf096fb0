#include "engine/tokenizer/jinja_value.h"

#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "engine/tokenizer/utf8.h"
#include "utf8proc.h"

namespace kvasir::jinja {

using tokenizer_internal::AppendCodePoint;
using tokenizer_internal::NextUtf8;
using tokenizer_internal::Utf8Step;

namespace {

char32_t DecodeOne(std::string_view cp) {
  if (cp.size() == 1) return static_cast<unsigned char>(cp[0]);
  size_t len = 0;
  return tokenizer_internal::DecodeCodePoint(cp, &len);
}

// Python str.isprintable() for one code point: not Other (Cc, Cf, Cs, Co, Cn) or Separator
// (Zl, Zp, Zs), except the space.
bool IsPyPrintable(char32_t cp) {
  if (cp == ' ') return true;
  switch (utf8proc_category(static_cast<utf8proc_int32_t>(cp))) {
    case UTF8PROC_CATEGORY_CC:
    case UTF8PROC_CATEGORY_CF:
    case UTF8PROC_CATEGORY_CS:
    case UTF8PROC_CATEGORY_CO:
    case UTF8PROC_CATEGORY_CN:
    case UTF8PROC_CATEGORY_ZL:
    case UTF8PROC_CATEGORY_ZP:
    case UTF8PROC_CATEGORY_ZS:
      return false;
    default:
      return true;
  }
}

std::string PyStringRepr(const std::string& s) {
  const bool has_single = s.find('\'') != std::string::npos;
  const char quote = has_single && s.find('"') == std::string::npos ? '"' : '\'';
  std::string out(1, quote);
  for (std::string_view cp_bytes : CodePoints(s)) {
    const char32_t cp = DecodeOne(cp_bytes);
    char buf[16];
    if (cp == '\\' || cp == static_cast<char32_t>(quote)) {
      out.push_back('\\');
      out.push_back(static_cast<char>(cp));
    } else if (cp == '\n') {
      out += "\\n";
    } else if (cp == '\r') {
      out += "\\r";
    } else if (cp == '\t') {
      out += "\\t";
    } else if (IsPyPrintable(cp)) {
      out.append(cp_bytes);
    } else {
      const char* fmt = cp < 0x100 ? "\\x%02x" : cp < 0x10000 ? "\\u%04x" : "\\U%08x";
      std::snprintf(buf, sizeof(buf), fmt, static_cast<unsigned>(cp));
      out += buf;
    }
  }
  out.push_back(quote);
  return out;
}

void AppendJsonString(const std::string& s, std::string* out) {
  out->push_back('"');
  for (char c : s) {
    const unsigned char u = static_cast<unsigned char>(c);
    switch (c) {
      case '"':
        *out += "\\\"";
        break;
      case '\\':
        *out += "\\\\";
        break;
      case '\n':
        *out += "\\n";
        break;
      case '\r':
        *out += "\\r";
        break;
      case '\t':
        *out += "\\t";
        break;
      case '\b':
        *out += "\\b";
        break;
      case '\f':
        *out += "\\f";
        break;
      default:
        if (u < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof(buf), "\\u%04x", u);
          *out += buf;
        } else {
          out->push_back(c);
        }
    }
  }
  out->push_back('"');
}

struct JsonWriter {
  const JsonOptions& options;
  std::string indent_unit;
  std::string item_sep;
  std::string key_sep;

  explicit JsonWriter(const JsonOptions& o) : options(o) {
    const bool indented = o.indent >= 0 || o.indent_string.has_value();
    indent_unit = o.indent_string.value_or(std::string(std::max(o.indent, 0), ' '));
    item_sep = indented ? "," : ", ";
    key_sep = ": ";
    if (o.separators.has_value()) std::tie(item_sep, key_sep) = *o.separators;
  }
  bool indented() const { return options.indent >= 0 || options.indent_string.has_value(); }

  void NewLine(int depth, std::string* out) const {
    if (!indented()) return;
    out->push_back('\n');
    for (int i = 0; i < depth; ++i) *out += indent_unit;
  }

  absl::Status Write(const Value& v, int depth, std::string* out) const {
    if (depth > 512) return absl::InvalidArgumentError("tojson: value nested too deeply");
    switch (v.kind()) {
      case Value::Kind::kNone:
        *out += "null";
        return absl::OkStatus();
      case Value::Kind::kBool:
        *out += v.as_bool() ? "true" : "false";
        return absl::OkStatus();
      case Value::Kind::kInt:
        *out += std::to_string(v.as_int());
        return absl::OkStatus();
      case Value::Kind::kFloat: {
        const double d = v.as_float();
        *out += std::isnan(d)   ? "NaN"
                : std::isinf(d) ? (d > 0 ? "Infinity" : "-Infinity")
                                : PyFloatRepr(d);
        return absl::OkStatus();
      }
      case Value::Kind::kString:
        AppendJsonString(v.as_string(), out);
        return absl::OkStatus();
      case Value::Kind::kList:
        return WriteList(v.as_list(), depth, out);
      case Value::Kind::kDict:
        return WriteDict(v.as_dict(), depth, out);
      default:
        return absl::InvalidArgumentError(
            absl::StrCat("tojson: Object of type ", v.TypeName(), " is not JSON serializable"));
    }
  }

  absl::Status WriteList(const List& l, int depth, std::string* out) const {
    if (l.empty()) {
      *out += "[]";
      return absl::OkStatus();
    }
    out->push_back('[');
    for (size_t i = 0; i < l.size(); ++i) {
      if (i > 0) *out += item_sep;
      NewLine(depth + 1, out);
      if (absl::Status s = Write(l[i], depth + 1, out); !s.ok()) return s;
    }
    NewLine(depth, out);
    out->push_back(']');
    return absl::OkStatus();
  }

  absl::Status WriteDict(const Dict& d, int depth, std::string* out) const {
    if (d.empty()) {
      *out += "{}";
      return absl::OkStatus();
    }
    std::vector<const std::pair<std::string, Value>*> items;
    for (const auto& kv : d) items.push_back(&kv);
    if (options.sort_keys) {
      std::stable_sort(items.begin(), items.end(),
                       [](const auto* a, const auto* b) { return a->first < b->first; });
    }
    out->push_back('{');
    for (size_t i = 0; i < items.size(); ++i) {
      if (i > 0) *out += item_sep;
      NewLine(depth + 1, out);
      AppendJsonString(items[i]->first, out);
      *out += key_sep;
      if (absl::Status s = Write(items[i]->second, depth + 1, out); !s.ok()) return s;
    }
    NewLine(depth, out);
    out->push_back('}');
    return absl::OkStatus();
  }
};

}  // namespace

double Value::as_float() const {
  if (is_float()) return std::get<double>(v_);
  return static_cast<double>(as_int());
}

const Value* Value::Find(std::string_view key) const {
  if (!is_dict()) return nullptr;
  for (const auto& [k, v] : as_dict()) {
    if (k == key) return &v;
  }
  return nullptr;
}

bool Value::Truthy() const {
  switch (kind()) {
    case Kind::kUndefined:
    case Kind::kNone:
      return false;
    case Kind::kBool:
      return as_bool();
    case Kind::kInt:
      return as_int() != 0;
    case Kind::kFloat:
      return as_float() != 0.0;
    case Kind::kString:
      return !as_string().empty();
    case Kind::kList:
      return !as_list().empty();
    case Kind::kDict:
      return !as_dict().empty();
    default:
      return true;
  }
}

std::string Value::Str() const {
  switch (kind()) {
    case Kind::kUndefined:
      return "";
    case Kind::kString:
      return as_string();
    default:
      return Repr();
  }
}

std::string Value::Repr() const {
  switch (kind()) {
    case Kind::kUndefined:
      return "";
    case Kind::kNone:
      return "None";
    case Kind::kBool:
      return as_bool() ? "True" : "False";
    case Kind::kInt:
      return std::to_string(as_int());
    case Kind::kFloat:
      return PyFloatRepr(as_float());
    case Kind::kString:
      return PyStringRepr(as_string());
    case Kind::kList: {
      std::string out = tuple_ ? "(" : "[";
      const List& l = as_list();
      for (size_t i = 0; i < l.size(); ++i) absl::StrAppend(&out, i ? ", " : "", l[i].Repr());
      if (tuple_ && l.size() == 1) out += ",";
      return out + (tuple_ ? ")" : "]");
    }
    case Kind::kDict:
    case Kind::kNs: {
      const Dict& d = is_dict() ? as_dict() : as_namespace().attrs;
      std::string out = is_dict() ? "{" : "<Namespace {";
      for (size_t i = 0; i < d.size(); ++i) {
        absl::StrAppend(&out, i ? ", " : "", PyStringRepr(d[i].first), ": ", d[i].second.Repr());
      }
      return out + (is_dict() ? "}" : "}>");
    }
    case Kind::kCallable:
      return absl::StrCat("<function ", as_callable().name, ">");
  }
  return "";
}

std::string Value::TypeName() const {
  static constexpr const char* kNames[] = {"Undefined", "NoneType", "bool", "int",
                                           "float",     "str",      "list", "dict",
                                           "Namespace", "function"};
  if (is_tuple()) return "tuple";
  return kNames[static_cast<int>(kind())];
}

bool Equal(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) {
    if (a.is_float() || b.is_float()) return a.as_float() == b.as_float();
    return a.as_int() == b.as_int();
  }
  if (a.kind() != b.kind()) return false;
  switch (a.kind()) {
    case Value::Kind::kUndefined:
    case Value::Kind::kNone:
      return true;
    case Value::Kind::kString:
      return a.as_string() == b.as_string();
    case Value::Kind::kList: {
      if (a.is_tuple() != b.is_tuple() || a.as_list().size() != b.as_list().size()) return false;
      for (size_t i = 0; i < a.as_list().size(); ++i) {
        if (!Equal(a.as_list()[i], b.as_list()[i])) return false;
      }
      return true;
    }
    case Value::Kind::kDict: {
      if (a.as_dict().size() != b.as_dict().size()) return false;
      for (const auto& [k, v] : a.as_dict()) {
        const Value* other = b.Find(k);
        if (other == nullptr || !Equal(v, *other)) return false;
      }
      return true;
    }
    case Value::Kind::kNs:
      return &a.as_namespace() == &b.as_namespace();
    case Value::Kind::kCallable:
      return &a.as_callable() == &b.as_callable();
    default:
      return false;
  }
}

absl::StatusOr<bool> Less(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) {
    if (a.is_float() || b.is_float()) return a.as_float() < b.as_float();
    return a.as_int() < b.as_int();
  }
  if (a.is_string() && b.is_string()) return a.as_string() < b.as_string();  // UTF-8 order
  if (a.is_list() && b.is_list() && a.is_tuple() == b.is_tuple()) {
    const List& x = a.as_list();
    const List& y = b.as_list();
    for (size_t i = 0; i < x.size() && i < y.size(); ++i) {
      if (Equal(x[i], y[i])) continue;
      return Less(x[i], y[i]);
    }
    return x.size() < y.size();
  }
  return absl::InvalidArgumentError(absl::StrCat("'<' not supported between instances of '",
                                                 a.TypeName(), "' and '", b.TypeName(), "'"));
}

absl::StatusOr<std::string> ToJson(const Value& v, const JsonOptions& options) {
  std::string out;
  JsonWriter writer(options);
  if (absl::Status s = writer.Write(v, 0, &out); !s.ok()) return s;
  return out;
}

std::string PyFloatRepr(double d) {
  if (std::isnan(d)) return "nan";
  if (std::isinf(d)) return d > 0 ? "inf" : "-inf";
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof(buf), d, std::chars_format::scientific);
  const std::string sci(buf, res.ptr);  // "-d.ddde+XX"
  const size_t e_pos = sci.find('e');
  const bool negative = sci[0] == '-';
  std::string digits;
  for (size_t i = negative ? 1 : 0; i < e_pos; ++i) {
    if (sci[i] != '.') digits.push_back(sci[i]);
  }
  const int exp = std::atoi(sci.c_str() + e_pos + 1);
  std::string out = negative ? "-" : "";
  if (exp >= -4 && exp < 16) {
    if (exp < 0) {
      out += "0." + std::string(-exp - 1, '0') + digits;
    } else if (static_cast<int>(digits.size()) <= exp + 1) {
      out += digits + std::string(exp + 1 - digits.size(), '0') + ".0";
    } else {
      out += digits.substr(0, exp + 1) + "." + digits.substr(exp + 1);
    }
    return out;
  }
  out += digits.substr(0, 1);
  if (digits.size() > 1) out += "." + digits.substr(1);
  std::snprintf(buf, sizeof(buf), "e%c%02d", exp < 0 ? '-' : '+', std::abs(exp));
  return out + buf;
}

bool IsPyWhitespace(char32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20) || cp == 0x85 || cp == 0xA0 ||
         cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 ||
         cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

std::vector<std::string_view> CodePoints(std::string_view s) {
  std::vector<std::string_view> out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    const Utf8Step step = NextUtf8(s.substr(i));
    const size_t len = step.kind == Utf8Step::kValid ? step.length : 1;
    out.push_back(s.substr(i, len));
    i += len;
  }
  return out;
}

}  // namespace kvasir::jinja
