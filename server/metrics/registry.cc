#include "server/metrics/registry.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/tokenizer/utf8.h"
#include "kernels/check.h"

namespace kvasir::metrics {
namespace {

// Debian's Abseil has its own string_view; StrCat takes that one.
using tokenizer_internal::AsAbsl;

bool IsNameStart(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool IsNameChar(char c) { return IsNameStart(c) || (c >= '0' && c <= '9'); }

// [a-zA-Z_][a-zA-Z0-9_]*: the metric name rule without colons, which is also the label name rule.
bool IsValidName(std::string_view name) {
  if (name.empty() || !IsNameStart(name[0])) return false;
  return std::all_of(name.begin() + 1, name.end(), IsNameChar);
}

const char* TypeName(MetricType type) {
  switch (type) {
    case MetricType::kCounter:
      return "counter";
    case MetricType::kGauge:
      return "gauge";
    case MetricType::kHistogram:
      return "histogram";
  }
  return "untyped";
}

// Label value escaping of the text format: backslash, double quote and line feed.
void AppendEscapedLabelValue(std::string_view value, std::string* out) {
  for (size_t i = 0; i < value.size();) {
    // Invalid UTF-8 would make the whole scrape unreadable: each ill-formed part becomes U+FFFD.
    const tokenizer_internal::Utf8Step step = tokenizer_internal::NextUtf8(value.substr(i));
    const size_t n = step.length;
    if (step.kind != tokenizer_internal::Utf8Step::kValid) {
      out->append(tokenizer_internal::kReplacementChar);
      i += n;
      continue;
    }
    const char c = value[i];
    if (c == '\\') {
      out->append("\\\\");
    } else if (c == '"') {
      out->append("\\\"");
    } else if (c == '\n') {
      out->append("\\n");
    } else {
      out->append(value.substr(i, n));
    }
    i += n;
  }
}

// HELP escaping: backslash and line feed only.
void AppendEscapedHelp(std::string_view help, std::string* out) {
  for (char c : help) {
    if (c == '\\') {
      out->append("\\\\");
    } else if (c == '\n') {
      out->append("\\n");
    } else {
      out->push_back(c);
    }
  }
}

// name{labels} value\n, or name value\n without labels.
void AppendSample(std::string_view name, std::string_view labels, double value, std::string* out) {
  out->append(name);
  if (!labels.empty()) absl::StrAppend(out, "{", AsAbsl(labels), "}");
  absl::StrAppend(out, " ", FormatValue(value), "\n");
}

}  // namespace

std::string FormatValue(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  constexpr double kExactIntegers = 9007199254740992.0;  // 2^53
  if (value == std::trunc(value) && std::fabs(value) < kExactIntegers) {
    return std::to_string(static_cast<int64_t>(value));
  }
  char buf[32];
  const std::to_chars_result r = std::to_chars(buf, buf + sizeof(buf), value);
  return std::string(buf, r.ptr);
}

void Counter::AppendSamples(std::string_view name, std::string_view labels,
                            std::string* out) const {
  AppendSample(name, labels, Value(), out);
}

void Gauge::AppendSamples(std::string_view name, std::string_view labels, std::string* out) const {
  AppendSample(name, labels, Value(), out);
}

Histogram::Histogram(std::shared_ptr<const std::vector<double>> bounds)
    : bounds_(std::move(bounds)),
      counts_(std::make_unique<std::atomic<uint64_t>[]>(bounds_->size() + 1)) {}

void Histogram::Observe(double value) {
  // The first bound >= value: `le` is an inclusive upper bound. NaN compares false everywhere
  // and so falls through to +Inf.
  const std::vector<double>& b = *bounds_;
  const size_t bucket = std::lower_bound(b.begin(), b.end(), value) - b.begin();
  counts_[bucket].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(value, std::memory_order_relaxed);
}

Histogram::Snapshot Histogram::Read() const {
  Snapshot s;
  s.cumulative.resize(bounds_->size() + 1);
  uint64_t total = 0;
  for (size_t i = 0; i < s.cumulative.size(); ++i) {
    total += counts_[i].load(std::memory_order_relaxed);
    s.cumulative[i] = total;
  }
  s.count = total;
  s.sum = sum_.load(std::memory_order_relaxed);
  return s;
}

void Histogram::AppendSamples(std::string_view name, std::string_view labels,
                              std::string* out) const {
  const Snapshot s = Read();
  const std::string bucket = absl::StrCat(AsAbsl(name), "_bucket");
  const std::string prefix = labels.empty() ? std::string() : absl::StrCat(AsAbsl(labels), ",");
  for (size_t i = 0; i < s.cumulative.size(); ++i) {
    const std::string le = i < bounds_->size() ? FormatValue((*bounds_)[i]) : "+Inf";
    AppendSample(bucket, absl::StrCat(prefix, "le=\"", le, "\""),
                 static_cast<double>(s.cumulative[i]), out);
  }
  AppendSample(absl::StrCat(AsAbsl(name), "_sum"), labels, s.sum, out);
  AppendSample(absl::StrCat(AsAbsl(name), "_count"), labels, static_cast<double>(s.count), out);
}

FamilyBase::FamilyBase(std::string name, std::string help, MetricType type,
                       std::vector<std::string> label_names)
    : name_(std::move(name)),
      help_(std::move(help)),
      type_(type),
      label_names_(std::move(label_names)) {}

void FamilyBase::Serialize(std::string* out) const {
  absl::StrAppend(out, "# HELP ", name_, " ");
  AppendEscapedHelp(help_, out);
  absl::StrAppend(out, "\n# TYPE ", name_, " ", TypeName(type_), "\n");
  SerializeSeries(out);
}

std::string FamilyBase::RenderLabels(absl::Span<const std::string_view> values) const {
  KV_CHECK_EQ(values.size(), label_names_.size())
      << "label values for metric " << name_ << " (labels: " << absl::StrJoin(label_names_, ",")
      << ")";
  std::string out;
  for (size_t i = 0; i < values.size(); ++i) {
    if (i > 0) out.push_back(',');
    absl::StrAppend(&out, label_names_[i], "=\"");
    AppendEscapedLabelValue(values[i], &out);
    out.push_back('"');
  }
  return out;
}

absl::Status Registry::CheckNew(std::string_view name, std::string_view help, MetricType type,
                                const std::vector<std::string>& label_names) const {
  if (!IsValidName(name)) {
    return absl::InvalidArgumentError(
        absl::StrCat("metric name '", AsAbsl(name),
                     "' must match [a-zA-Z_][a-zA-Z0-9_]* (no colons: they are "
                     "reserved for recording rules)"));
  }
  const bool ends_total = name.ends_with("_total");
  if (type == MetricType::kCounter && !ends_total) {
    return absl::InvalidArgumentError(
        absl::StrCat("counter '", AsAbsl(name), "' must end in _total"));
  }
  if (type != MetricType::kCounter && ends_total) {
    return absl::InvalidArgumentError(absl::StrCat("only counters end in _total, and '",
                                                   AsAbsl(name), "' is a ", TypeName(type)));
  }
  for (std::string_view suffix : {"_bucket", "_sum", "_count"}) {
    if (name.ends_with(suffix)) {
      return absl::InvalidArgumentError(absl::StrCat("metric name '", AsAbsl(name), "' ends in ",
                                                     AsAbsl(suffix),
                                                     ", which histogram series use"));
    }
  }
  if (help.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("metric '", AsAbsl(name), "' needs a help text"));
  }
  for (size_t i = 0; i < label_names.size(); ++i) {
    const std::string& label = label_names[i];
    if (!IsValidName(label) || label.starts_with("__")) {
      return absl::InvalidArgumentError(
          absl::StrCat("label name '", label, "' of metric '", AsAbsl(name),
                       "' must match [a-zA-Z_][a-zA-Z0-9_]* and not start with __ (reserved)"));
    }
    if (type == MetricType::kHistogram && label == "le") {
      return absl::InvalidArgumentError(absl::StrCat(
          "histogram '", AsAbsl(name), "' cannot have the label 'le': it names buckets"));
    }
    if (std::find(label_names.begin(), label_names.begin() + i, label) != label_names.begin() + i) {
      return absl::InvalidArgumentError(
          absl::StrCat("label name '", label, "' appears twice in metric '", AsAbsl(name), "'"));
    }
  }
  if (families_.contains(name)) {
    return absl::AlreadyExistsError(
        absl::StrCat("metric '", AsAbsl(name), "' is already registered"));
  }
  return absl::OkStatus();
}

absl::StatusOr<Family<Counter>*> Registry::AddCounter(std::string_view name, std::string_view help,
                                                      std::vector<std::string> label_names) {
  std::lock_guard<std::mutex> lock(mu_);
  if (absl::Status s = CheckNew(name, help, MetricType::kCounter, label_names); !s.ok()) return s;
  auto family = std::make_unique<Family<Counter>>(std::string(name), std::string(help),
                                                  MetricType::kCounter, std::move(label_names));
  Family<Counter>* raw = family.get();
  families_.emplace(std::string(name), std::move(family));
  return raw;
}

absl::StatusOr<Family<Gauge>*> Registry::AddGauge(std::string_view name, std::string_view help,
                                                  std::vector<std::string> label_names) {
  std::lock_guard<std::mutex> lock(mu_);
  if (absl::Status s = CheckNew(name, help, MetricType::kGauge, label_names); !s.ok()) return s;
  auto family = std::make_unique<Family<Gauge>>(std::string(name), std::string(help),
                                                MetricType::kGauge, std::move(label_names));
  Family<Gauge>* raw = family.get();
  families_.emplace(std::string(name), std::move(family));
  return raw;
}

absl::StatusOr<Family<Histogram>*> Registry::AddHistogram(std::string_view name,
                                                          std::string_view help,
                                                          std::vector<std::string> label_names,
                                                          std::vector<double> bounds) {
  if (bounds.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("histogram '", AsAbsl(name), "' needs at least one bucket bound"));
  }
  for (size_t i = 0; i < bounds.size(); ++i) {
    if (!std::isfinite(bounds[i]) || (i > 0 && !(bounds[i] > bounds[i - 1]))) {
      return absl::InvalidArgumentError(
          absl::StrCat("histogram '", AsAbsl(name),
                       "': bucket bounds must be finite and strictly increasing (+Inf "
                       "is implicit), got ",
                       FormatValue(bounds[i]), " at index ", i));
    }
  }
  std::lock_guard<std::mutex> lock(mu_);
  if (absl::Status s = CheckNew(name, help, MetricType::kHistogram, label_names); !s.ok()) {
    return s;
  }
  auto family = std::make_unique<Family<Histogram>>(
      std::string(name), std::string(help), MetricType::kHistogram, std::move(label_names),
      std::make_shared<const std::vector<double>>(std::move(bounds)));
  Family<Histogram>* raw = family.get();
  families_.emplace(std::string(name), std::move(family));
  return raw;
}

void Registry::AddCollectHook(std::function<void()> hook) {
  std::lock_guard<std::mutex> lock(mu_);
  hooks_.push_back(std::move(hook));
}

std::string Registry::Serialize() const {
  std::vector<std::function<void()>> hooks;
  {
    std::lock_guard<std::mutex> lock(mu_);
    hooks = hooks_;
  }
  for (const std::function<void()>& hook : hooks) hook();
  std::string out;
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [name, family] : families_) family->Serialize(&out);
  return out;
}

}  // namespace kvasir::metrics
