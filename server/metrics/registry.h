// A small Prometheus client: counters, gauges and histograms with labels, and the text exposition
// format 0.0.4. The data model is the one of the Prometheus client libraries (prometheus-cpp,
// client_golang): a Registry holds metric families; a family has a name, a help text, a type and
// label names; each distinct list of label values is one time series.
//
//   Registry registry;
//   KV_ASSIGN_OR_RETURN(Family<Counter>* requests,
//                       registry.AddCounter("kvasir_requests_total", "Requests.", {"code"}));
//   Counter& ok = requests->WithLabels({"OK"});  // resolve once, off the hot path
//   ok.Increment();                              // hot path: one relaxed atomic add
//   std::string text = registry.Serialize();     // for GET /metrics
//
// Threads: everything here is thread-safe. Increment/Set/Observe are lock-free atomics; the series
// references that WithLabels returns stay valid as long as the Registry. WithLabels itself takes
// the family's lock and looks the labels up: resolve fixed label values once and keep the
// reference where it matters.
//
// Errors: registering a family with a bad name, a bad or reserved label name, a name already in
// use or bad bucket bounds returns InvalidArgument/AlreadyExists (names can come from callers and
// tests check them). Passing WithLabels the wrong number of label values is a programmer error
// and a fatal KV_CHECK: the hot path returns a plain reference, not a StatusOr.
#ifndef KVASIR_SERVER_METRICS_REGISTRY_H_
#define KVASIR_SERVER_METRICS_REGISTRY_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace kvasir::metrics {

// Formats a sample value or a bucket bound as Prometheus expects: "+Inf", "-Inf", "NaN";
// integral values below 2^53 as plain integers ("1000000", not "1e+06"); any other value in the
// shortest form that reads back as the same double ("0.1", "1.5e-07").
std::string FormatValue(double value);

// A value that only goes up (or resets when the process restarts).
class Counter {
 public:
  Counter() = default;
  Counter(const Counter&) = delete;
  Counter& operator=(const Counter&) = delete;

  // Adds delta. A negative or NaN delta is ignored: a counter never goes down.
  void Increment(double delta = 1.0) {
    if (delta >= 0.0) value_.fetch_add(delta, std::memory_order_relaxed);
  }
  double Value() const { return value_.load(std::memory_order_relaxed); }

  // For the Registry: appends this series' sample lines.
  void AppendSamples(std::string_view name, std::string_view labels, std::string* out) const;

 private:
  std::atomic<double> value_{0.0};
};

// A value that goes up and down, set where it changes or sampled at scrape time (see
// Registry::AddCollectHook).
class Gauge {
 public:
  Gauge() = default;
  Gauge(const Gauge&) = delete;
  Gauge& operator=(const Gauge&) = delete;

  void Set(double value) { value_.store(value, std::memory_order_relaxed); }
  void Increment(double delta = 1.0) { value_.fetch_add(delta, std::memory_order_relaxed); }
  void Decrement(double delta = 1.0) { value_.fetch_sub(delta, std::memory_order_relaxed); }
  double Value() const { return value_.load(std::memory_order_relaxed); }

  void AppendSamples(std::string_view name, std::string_view labels, std::string* out) const;

 private:
  std::atomic<double> value_{0.0};
};

// Counts observations into buckets with fixed upper bounds (inclusive, as `le` says), plus their
// sum. Exposed cumulatively: name_bucket{le="b"} counts the observations <= b, le="+Inf" all of
// them; then name_sum and name_count.
class Histogram {
 public:
  // bounds: finite and strictly increasing (checked by Registry::AddHistogram); +Inf is implicit.
  explicit Histogram(std::shared_ptr<const std::vector<double>> bounds);
  Histogram(const Histogram&) = delete;
  Histogram& operator=(const Histogram&) = delete;

  // Lock-free: one atomic add on the bucket, one on the sum. NaN lands in the +Inf bucket only.
  void Observe(double value);

  // A consistent-enough snapshot: bucket counts are read one by one while others may observe.
  struct Snapshot {
    std::vector<uint64_t> cumulative;  // one per bound, then +Inf (== count)
    double sum = 0.0;
    uint64_t count = 0;
  };
  Snapshot Read() const;
  const std::vector<double>& bounds() const { return *bounds_; }

  void AppendSamples(std::string_view name, std::string_view labels, std::string* out) const;

 private:
  std::shared_ptr<const std::vector<double>> bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> counts_;  // bounds_->size() + 1, not cumulative
  std::atomic<double> sum_{0.0};
};

enum class MetricType { kCounter, kGauge, kHistogram };

// What Registry keeps per family, whatever its type.
class FamilyBase {
 public:
  FamilyBase(std::string name, std::string help, MetricType type,
             std::vector<std::string> label_names);
  virtual ~FamilyBase() = default;
  FamilyBase(const FamilyBase&) = delete;
  FamilyBase& operator=(const FamilyBase&) = delete;

  const std::string& name() const { return name_; }
  const std::vector<std::string>& label_names() const { return label_names_; }
  // Appends "# HELP", "# TYPE" and every series' samples.
  void Serialize(std::string* out) const;

 protected:
  // Checks the number of values (fatal) and renders `a="x",b="y"` with escaped values; bytes
  // that are not valid UTF-8 become U+FFFD so that one bad value cannot break a scrape.
  std::string RenderLabels(absl::Span<const std::string_view> values) const;
  virtual void SerializeSeries(std::string* out) const = 0;

 private:
  std::string name_;
  std::string help_;
  MetricType type_;
  std::vector<std::string> label_names_;
};

// The series of one family, by label values (in the order of the family's label names).
template <typename T>
class Family final : public FamilyBase {
 public:
  Family(std::string name, std::string help, MetricType type, std::vector<std::string> label_names,
         std::shared_ptr<const std::vector<double>> bounds = nullptr)
      : FamilyBase(std::move(name), std::move(help), type, std::move(label_names)),
        bounds_(std::move(bounds)) {}

  // The series for these label values, created at 0 on first use. Fatal if the number of values
  // differs from the number of label names. The reference lives as long as the Registry.
  T& WithLabels(std::initializer_list<std::string_view> values) {
    return WithLabels(absl::MakeConstSpan(values.begin(), values.size()));
  }
  T& WithLabels(absl::Span<const std::string_view> values) {
    std::string key = RenderLabels(values);
    std::lock_guard<std::mutex> lock(mu_);
    std::unique_ptr<T>& series = series_[std::move(key)];
    if (series == nullptr) {
      if constexpr (std::is_same_v<T, Histogram>) {
        series = std::make_unique<T>(bounds_);
      } else {
        series = std::make_unique<T>();
      }
    }
    return *series;
  }

 private:
  void SerializeSeries(std::string* out) const override {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [labels, series] : series_) series->AppendSamples(name(), labels, out);
  }

  std::shared_ptr<const std::vector<double>> bounds_;  // histograms only
  mutable std::mutex mu_;
  // Keyed by the rendered label pairs: one string per series, sorted for a stable exposition.
  std::map<std::string, std::unique_ptr<T>> series_ ABSL_GUARDED_BY(mu_);
};

class Registry {
 public:
  Registry() = default;
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  // Registers a family; the pointer lives as long as the Registry. Names follow the Prometheus
  // data model ([a-zA-Z_][a-zA-Z0-9_]*; colons are refused: they are for recording rules) and
  // the naming conventions promtool checks: counters end in "_total", nothing else does, and no
  // name ends in "_bucket", "_sum" or "_count" (histogram series use them). Label names match
  // [a-zA-Z_][a-zA-Z0-9_]*, do not start with "__", are distinct, and a histogram has no "le".
  // help must not be empty. InvalidArgument names the offending name; AlreadyExists when a
  // family of that name is registered.
  absl::StatusOr<Family<Counter>*> AddCounter(std::string_view name, std::string_view help,
                                              std::vector<std::string> label_names = {});
  absl::StatusOr<Family<Gauge>*> AddGauge(std::string_view name, std::string_view help,
                                          std::vector<std::string> label_names = {});
  // bounds: at least one, finite, strictly increasing; the +Inf bucket is added.
  absl::StatusOr<Family<Histogram>*> AddHistogram(std::string_view name, std::string_view help,
                                                  std::vector<std::string> label_names,
                                                  std::vector<double> bounds);

  // Runs hook at the start of every Serialize, on the scraping thread, to set values sampled at
  // scrape time (Gauge::Set). Hooks must be thread-safe and quick; they run in the order added.
  void AddCollectHook(std::function<void()> hook);

  // The Prometheus text exposition format 0.0.4: families sorted by name, each with # HELP and
  // # TYPE lines, series sorted by label values; ends with a newline when not empty.
  std::string Serialize() const;

 private:
  absl::Status CheckNew(std::string_view name, std::string_view help, MetricType type,
                        const std::vector<std::string>& label_names) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  mutable std::mutex mu_;
  std::map<std::string, std::unique_ptr<FamilyBase>, std::less<>> families_ ABSL_GUARDED_BY(mu_);
  std::vector<std::function<void()>> hooks_ ABSL_GUARDED_BY(mu_);
};

}  // namespace kvasir::metrics

#endif  // KVASIR_SERVER_METRICS_REGISTRY_H_
