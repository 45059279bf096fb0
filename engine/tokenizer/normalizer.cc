#include "engine/tokenizer/normalizer.h"

#include <utility>

#include "utf8proc.h"

namespace kvasir::tokenizer_internal {

void Normalizer::AddNormalForm(NormalForm form) {
  steps_.push_back(Step{Step::kNormalForm, form, {}, nullptr});
}

void Normalizer::AddPrepend(std::string prefix) {
  steps_.push_back(Step{Step::kPrepend, NormalForm::kNfc, std::move(prefix), nullptr});
}

void Normalizer::AddReplace(std::unique_ptr<Regex> pattern, std::string content) {
  steps_.push_back(Step{Step::kReplace, NormalForm::kNfc, std::move(content), std::move(pattern)});
}

void Normalizer::AddLowercase() {
  steps_.push_back(Step{Step::kLowercase, NormalForm::kNfc, {}, {}});
}

namespace {

std::string ReplaceAll(std::string_view text, const Regex& regex, std::string_view content) {
  std::vector<std::pair<size_t, size_t>> matches;
  regex.FindAll(text, &matches);
  std::string out;
  size_t prev = 0;
  for (auto [begin, end] : matches) {
    if (begin == end) continue;
    out.append(text.substr(prev, begin - prev));
    out.append(content);
    prev = end;
  }
  out.append(text.substr(prev));
  return out;
}

std::string Lowercase(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  size_t i = 0;
  while (i < text.size()) {
    size_t len;
    const char32_t cp = DecodeCodePoint(text.substr(i), &len);
    AppendCodePoint(static_cast<char32_t>(utf8proc_tolower(static_cast<utf8proc_int32_t>(cp))),
                    &out);
    i += len;
  }
  return out;
}

}  // namespace

std::string Normalizer::Apply(std::string_view text) const {
  std::string s(text);
  for (const Step& step : steps_) {
    switch (step.kind) {
      case Step::kNormalForm:
        s = Normalize(s, step.form);
        break;
      case Step::kPrepend:
        if (!s.empty()) s.insert(0, step.text);
        break;
      case Step::kReplace:
        s = ReplaceAll(s, *step.regex, step.text);
        break;
      case Step::kLowercase:
        s = Lowercase(s);
        break;
    }
  }
  return s;
}

}  // namespace kvasir::tokenizer_internal
