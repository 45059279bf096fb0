#include "engine/tokenizer/pre_tokenizer.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "engine/tokenizer/utf8.h"
#include "engine/util/status_macros.h"

namespace kvasir::tokenizer_internal {

absl::StatusOr<SplitBehavior> ParseSplitBehavior(std::string_view name) {
  if (name == "Removed") return SplitBehavior::kRemoved;
  if (name == "Isolated") return SplitBehavior::kIsolated;
  if (name == "MergedWithPrevious") return SplitBehavior::kMergedWithPrevious;
  if (name == "MergedWithNext") return SplitBehavior::kMergedWithNext;
  if (name == "Contiguous") return SplitBehavior::kContiguous;
  return absl::InvalidArgumentError(absl::StrCat("unknown split behavior \"", AsAbsl(name), "\""));
}

void PreTokenizer::AddSplit(std::unique_ptr<Regex> regex, SplitBehavior behavior, bool invert) {
  Step step{Step::kSplit, std::move(regex)};
  step.behavior = behavior;
  step.invert = invert;
  steps_.push_back(std::move(step));
}

absl::Status PreTokenizer::AddDigits(bool individual_digits) {
  // Rust's char::is_numeric is \p{N}; each digit is a match, merged into runs unless individual.
  KV_ASSIGN_OR_RETURN(auto regex, Regex::Compile(R"(\p{N})"));
  AddSplit(std::move(regex),
           individual_digits ? SplitBehavior::kIsolated : SplitBehavior::kContiguous, false);
  return absl::OkStatus();
}

absl::Status PreTokenizer::AddByteLevel(bool add_prefix_space, bool use_regex) {
  Step step{Step::kByteLevel, nullptr};
  step.add_prefix_space = add_prefix_space;
  if (use_regex) {
    KV_ASSIGN_OR_RETURN(step.regex, Regex::Compile(kGpt2Pattern));
  }
  steps_.push_back(std::move(step));
  return absl::OkStatus();
}

void PreTokenizer::ApplySplit(const Step& step, const std::string& piece,
                              std::vector<std::string>* out) {
  // (begin, end, is_match) over the whole piece, as HF's Pattern::find_matches.
  struct Part {
    size_t begin, end;
    bool is_match;
  };
  std::vector<std::pair<size_t, size_t>> matches;
  step.regex->FindAll(piece, &matches);
  std::vector<Part> parts;
  size_t prev = 0;
  for (auto [begin, end] : matches) {
    if (prev != begin) parts.push_back({prev, begin, step.invert});
    parts.push_back({begin, end, !step.invert});
    prev = end;
  }
  if (prev != piece.size()) parts.push_back({prev, piece.size(), step.invert});

  std::vector<std::pair<size_t, size_t>> kept;
  bool previous_match = false;
  switch (step.behavior) {
    case SplitBehavior::kIsolated:
      for (const Part& p : parts) kept.emplace_back(p.begin, p.end);
      break;
    case SplitBehavior::kRemoved:
      for (const Part& p : parts) {
        if (!p.is_match) kept.emplace_back(p.begin, p.end);
      }
      break;
    case SplitBehavior::kMergedWithPrevious:
    case SplitBehavior::kContiguous:
      for (const Part& p : parts) {
        const bool merge = step.behavior == SplitBehavior::kContiguous
                               ? p.is_match == previous_match
                               : p.is_match && !previous_match;
        if (merge && !kept.empty()) {
          kept.back().second = p.end;
        } else {
          kept.emplace_back(p.begin, p.end);
        }
        previous_match = p.is_match;
      }
      break;
    case SplitBehavior::kMergedWithNext:
      for (auto it = parts.rbegin(); it != parts.rend(); ++it) {
        if (it->is_match && !previous_match && !kept.empty()) {
          kept.back().first = it->begin;
        } else {
          kept.emplace_back(it->begin, it->end);
        }
        previous_match = it->is_match;
      }
      std::reverse(kept.begin(), kept.end());
      break;
  }
  for (auto [begin, end] : kept) {
    if (end > begin) out->push_back(piece.substr(begin, end - begin));
  }
}

void PreTokenizer::PreTokenize(std::string_view text, std::vector<std::string>* pieces) const {
  std::vector<std::string> current;
  if (!text.empty()) current.emplace_back(text);
  std::vector<std::string> next;
  for (const Step& step : steps_) {
    next.clear();
    if (step.kind == Step::kSplit) {
      for (const std::string& piece : current) ApplySplit(step, piece, &next);
    } else {
      std::vector<std::string> split;
      for (std::string& piece : current) {
        if (step.add_prefix_space && piece[0] != ' ') piece = " " + piece;
        split.clear();
        if (step.regex != nullptr) {
          ApplySplit(step, piece, &split);
        } else {
          split.push_back(std::move(piece));
        }
        for (const std::string& s : split) next.push_back(ByteLevelEncode(s));
      }
    }
    current.swap(next);
  }
  for (std::string& piece : current) pieces->push_back(std::move(piece));
}

}  // namespace kvasir::tokenizer_internal
