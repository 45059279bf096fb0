// The `kvasir` subcommands. Each takes the arguments after its name and returns the process exit
// code: 0 success, 1 runtime failure (message on stderr naming the problem), 2 usage error.
#ifndef KVASIR_SERVER_COMMANDS_H_
#define KVASIR_SERVER_COMMANDS_H_

#include <string>

#include "absl/types/span.h"

namespace kvasir::server {

inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;
inline constexpr int kExitUsage = 2;

// kvasir serve: the gRPC server until SIGINT/SIGTERM.
int RunServe(absl::Span<const char* const> args);
// kvasir generate: offline generation with the engine in-process.
int RunGenerate(absl::Span<const char* const> args);
// kvasir tokenize: token ids of a text.
int RunTokenize(absl::Span<const char* const> args);
// kvasir bench: load generator against a running server (TTFT, inter-token latency, ...).
int RunBench(absl::Span<const char* const> args);

// ${KVASIR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kvasir}/models/SmolLM2-135M-Instruct.Q4_1.gguf
std::string DefaultModelPath();

}  // namespace kvasir::server

#endif  // KVASIR_SERVER_COMMANDS_H_
