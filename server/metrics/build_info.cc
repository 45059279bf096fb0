// Kept apart so that a new revision recompiles this file only.
#include "server/metrics/engine_metrics.h"

#ifndef KVASIR_VERSION
#error "KVASIR_VERSION is set by server/metrics/CMakeLists.txt"
#endif

namespace kvasir {

BuildInfo CompiledBuildInfo() { return {.version = KVASIR_VERSION, .revision = KVASIR_REVISION}; }

}  // namespace kvasir
