// A small explicit command-line parser for `kvasir <command> [--flag value | --flag=value]...`.
// Explicit over absl::flags because flags differ per subcommand and must be rejected when unknown.
#ifndef KVASIR_SERVER_CLI_ARGS_H_
#define KVASIR_SERVER_CLI_ARGS_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace kvasir::server {

struct FlagSpec {
  std::string name;        // without the leading "--"
  bool takes_value;        // false: a switch (--json); true: --name VALUE or --name=VALUE
  std::string value_name;  // shown in help, e.g. "PATH"; empty for switches
  std::string help;        // one line, including the default
};

class ParsedArgs {
 public:
  bool help = false;  // -h / --help was given
  bool Has(const std::string& name) const { return values_.contains(name); }
  // The value of `name`, or `fallback` when absent.
  std::string GetString(const std::string& name, const std::string& fallback) const;
  // InvalidArgument naming the flag when the value is not a number in [min, max].
  absl::StatusOr<int64_t> GetInt(const std::string& name, int64_t fallback, int64_t min,
                                 int64_t max) const;
  absl::StatusOr<double> GetDouble(const std::string& name, double fallback) const;
  // A byte count: digits with an optional binary suffix K, M, G or T (KiB...), e.g. 512M.
  absl::StatusOr<int64_t> GetBytes(const std::string& name, int64_t fallback) const;

  std::map<std::string, std::string> values_;  // switches map to ""
};

// Parses `args` (after the subcommand) against `specs`. InvalidArgument naming the flag for an
// unknown flag, a missing value, a positional argument or a repeated flag.
absl::StatusOr<ParsedArgs> ParseArgs(absl::Span<const FlagSpec> specs,
                                     absl::Span<const char* const> args);

// "  --name VALUE   help" lines for `specs`.
std::string FlagsHelp(absl::Span<const FlagSpec> specs);

}  // namespace kvasir::server

#endif  // KVASIR_SERVER_CLI_ARGS_H_
