#include "server/cli_args.h"

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"

namespace kvasir::server {

std::string ParsedArgs::GetString(const std::string& name, const std::string& fallback) const {
  auto it = values_.find(name);
  return it == values_.end() ? fallback : it->second;
}

absl::StatusOr<int64_t> ParsedArgs::GetInt(const std::string& name, int64_t fallback, int64_t min,
                                           int64_t max) const {
  auto it = values_.find(name);
  if (it == values_.end()) return fallback;
  int64_t value = 0;
  if (!absl::SimpleAtoi(it->second, &value) || value < min || value > max) {
    return absl::InvalidArgumentError(absl::StrCat("--", name, ": expected an integer in [", min,
                                                   ", ", max, "], got '", it->second, "'"));
  }
  return value;
}

absl::StatusOr<double> ParsedArgs::GetDouble(const std::string& name, double fallback) const {
  auto it = values_.find(name);
  if (it == values_.end()) return fallback;
  double value = 0;
  if (!absl::SimpleAtod(it->second, &value)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", name, ": expected a number, got '", it->second, "'"));
  }
  return value;
}

absl::StatusOr<int64_t> ParsedArgs::GetBytes(const std::string& name, int64_t fallback) const {
  auto it = values_.find(name);
  if (it == values_.end()) return fallback;
  absl::string_view v = it->second;
  int shift = 0;
  if (!v.empty()) {
    switch (v.back()) {
      case 'K':
      case 'k':
        shift = 10;
        break;
      case 'M':
      case 'm':
        shift = 20;
        break;
      case 'G':
      case 'g':
        shift = 30;
        break;
      case 'T':
      case 't':
        shift = 40;
        break;
    }
  }
  if (shift > 0) v.remove_suffix(1);
  int64_t value = 0;
  if (!absl::SimpleAtoi(v, &value) || value < 0 || value > (INT64_MAX >> shift)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", name, ": expected a byte count such as 1073741824, 512M or 2G, got '",
                     it->second, "'"));
  }
  return value << shift;
}

absl::StatusOr<ParsedArgs> ParseArgs(absl::Span<const FlagSpec> specs,
                                     absl::Span<const char* const> args) {
  ParsedArgs parsed;
  for (size_t i = 0; i < args.size(); ++i) {
    absl::string_view arg = args[i];
    if (arg == "-h" || arg == "--help") {
      parsed.help = true;
      continue;
    }
    if (arg.size() < 3 || arg.substr(0, 2) != "--") {
      return absl::InvalidArgumentError(absl::StrCat("unexpected argument '", arg, "'"));
    }
    absl::string_view body = arg.substr(2);
    std::optional<std::string> inline_value;
    if (size_t eq = body.find('='); eq != absl::string_view::npos) {
      inline_value = std::string(body.substr(eq + 1));
      body = body.substr(0, eq);
    }
    const FlagSpec* spec = nullptr;
    for (const FlagSpec& s : specs) {
      if (s.name == body) spec = &s;
    }
    if (spec == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("unknown flag '--", body, "'"));
    }
    std::string value;
    if (spec->takes_value) {
      if (inline_value.has_value()) {
        value = *inline_value;
      } else if (i + 1 < args.size()) {
        value = args[++i];
      } else {
        return absl::InvalidArgumentError(absl::StrCat("flag '--", body, "' needs a value"));
      }
    } else if (inline_value.has_value()) {
      return absl::InvalidArgumentError(absl::StrCat("flag '--", body, "' takes no value"));
    }
    if (!parsed.values_.emplace(spec->name, std::move(value)).second) {
      return absl::InvalidArgumentError(absl::StrCat("flag '--", body, "' given twice"));
    }
  }
  return parsed;
}

std::string FlagsHelp(absl::Span<const FlagSpec> specs) {
  std::string out;
  for (const FlagSpec& s : specs) {
    std::string left = absl::StrCat("--", s.name);
    if (s.takes_value) absl::StrAppend(&left, " ", s.value_name);
    absl::StrAppendFormat(&out, "  %-24s %s\n", left, s.help);
  }
  return out;
}

}  // namespace kvasir::server
