// absl::StrCat that also takes std::string_view: Debian's Abseil is built with its own
// absl::string_view, which std::string_view does not convert to. Internal to engine/weights.
#ifndef KVASIR_ENGINE_WEIGHTS_STR_UTIL_H_
#define KVASIR_ENGINE_WEIGHTS_STR_UTIL_H_

#include <string>
#include <string_view>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace kvasir::weights_internal {

template <typename T>
const T& ToAbsl(const T& v) {
  return v;
}
inline absl::string_view ToAbsl(std::string_view v) {
  return absl::string_view(v.data(), v.size());
}

template <typename... Args>
std::string Cat(const Args&... args) {
  return absl::StrCat(ToAbsl(args)...);
}

}  // namespace kvasir::weights_internal

#endif  // KVASIR_ENGINE_WEIGHTS_STR_UTIL_H_
