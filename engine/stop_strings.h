// Stop strings matched on the generated text across token boundaries. Text that might be the
// start of a stop string is held back until the next tokens decide; a matched stop string (and
// whatever follows it) is never emitted, unless include_stop is set, which emits the stop string
// itself and nothing after it.
#ifndef KVASIR_ENGINE_STOP_STRINGS_H_
#define KVASIR_ENGINE_STOP_STRINGS_H_

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace kvasir {

class StopStringMatcher {
 public:
  StopStringMatcher(std::vector<std::string> stops, bool include_stop);

  // Takes newly decoded text; returns what may be emitted now. When a stop string completes,
  // *matched is set to it and the returned text is the last the request emits.
  std::string Push(std::string_view text, std::optional<std::string>* matched);
  // The request ended for another reason: everything held back.
  std::string Flush();
  bool empty() const { return stops_.empty(); }

 private:
  std::vector<std::string> stops_;
  bool include_stop_;
  std::string held_;
};

}  // namespace kvasir

#endif  // KVASIR_ENGINE_STOP_STRINGS_H_
