// kvasir: the command-line entry point (serve | generate | tokenize | bench).
#include <cstdio>
#include <string_view>

#include "absl/types/span.h"
#include "server/commands.h"

namespace {

constexpr char kUsage[] =
    "usage: kvasir <command> [flags]\n"
    "\n"
    "commands:\n"
    "  serve      serve a model over gRPC (kvasir.v1.Kvasir, health, reflection)\n"
    "  generate   generate text offline with the engine in-process\n"
    "  tokenize   print the token ids of a text\n"
    "  bench      load-test a running server (latency, TTFT, inter-token latency)\n"
    "\n"
    "Run 'kvasir <command> --help' for the flags of a command.\n";

}  // namespace

int main(int argc, char** argv) {
  using kvasir::server::kExitUsage;
  if (argc < 2) {
    std::fputs(kUsage, stderr);
    return kExitUsage;
  }
  const std::string_view command = argv[1];
  const absl::Span<const char* const> args(argv + 2, argc - 2);
  if (command == "-h" || command == "--help" || command == "help") {
    std::fputs(kUsage, stdout);
    return kvasir::server::kExitOk;
  }
  if (command == "serve") return kvasir::server::RunServe(args);
  if (command == "generate") return kvasir::server::RunGenerate(args);
  if (command == "tokenize") return kvasir::server::RunTokenize(args);
  if (command == "bench") return kvasir::server::RunBench(args);
  std::fprintf(stderr, "kvasir: unknown command '%s'\n\n%s", argv[1], kUsage);
  return kExitUsage;
}
