// The engine's command-line flags, shared by `kvasir serve` and `kvasir generate`: compute
// threads, scheduler limits and the paged KV cache.
#ifndef KVASIR_SERVER_ENGINE_FLAGS_H_
#define KVASIR_SERVER_ENGINE_FLAGS_H_

#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "engine/engine.h"
#include "server/cli_args.h"

namespace kvasir::server {

// command_flags followed by the engine's flags.
std::vector<FlagSpec> WithEngineFlags(absl::Span<const FlagSpec> command_flags);
// Overrides the fields of *options whose flags were given. InvalidArgument naming the flag for a
// malformed or out-of-range value; Engine::Create checks the options against each other.
absl::Status ReadEngineFlags(const ParsedArgs& args, EngineOptions* options);

}  // namespace kvasir::server

#endif  // KVASIR_SERVER_ENGINE_FLAGS_H_
