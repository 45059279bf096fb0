#include "engine/stop_strings.h"

#include <algorithm>
#include <utility>

namespace kvasir {

StopStringMatcher::StopStringMatcher(std::vector<std::string> stops, bool include_stop)
    : stops_(std::move(stops)), include_stop_(include_stop) {
  std::erase_if(stops_, [](const std::string& s) { return s.empty(); });
}

std::string StopStringMatcher::Push(std::string_view text, std::optional<std::string>* matched) {
  held_.append(text);
  if (stops_.empty()) return std::exchange(held_, {});
  // Emitted text never holds a stop string nor ends with a stop string's prefix (that is held),
  // so a match lies wholly inside held_. The earliest match wins; at one position, the longest.
  size_t best = std::string::npos;
  const std::string* best_stop = nullptr;
  for (const std::string& stop : stops_) {
    const size_t pos = held_.find(stop);
    if (pos == std::string::npos) continue;
    if (pos < best || (pos == best && stop.size() > best_stop->size())) {
      best = pos;
      best_stop = &stop;
    }
  }
  if (best_stop != nullptr) {
    *matched = *best_stop;
    std::string out = held_.substr(0, include_stop_ ? best + best_stop->size() : best);
    held_.clear();
    return out;
  }
  // Hold back the longest suffix that is a proper prefix of some stop string.
  size_t hold = 0;
  for (const std::string& stop : stops_) {
    const size_t max_len = std::min(stop.size() - 1, held_.size());
    for (size_t len = max_len; len > hold; --len) {
      if (held_.compare(held_.size() - len, len, stop, 0, len) == 0) {
        hold = len;
        break;
      }
    }
  }
  std::string out = held_.substr(0, held_.size() - hold);
  held_.erase(0, held_.size() - hold);
  return out;
}

std::string StopStringMatcher::Flush() { return std::exchange(held_, {}); }

}  // namespace kvasir
