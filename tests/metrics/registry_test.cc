#include "server/metrics/registry.h"

#include <cmath>
#include <cstdlib>
#include <limits>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace kvasir::metrics {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

struct FormatCase {
  double value;
  const char* text;
};

TEST(FormatValueTest, WritesWhatPrometheusParses) {
  const FormatCase cases[] = {
      {0, "0"},
      {1, "1"},
      {-3, "-3"},
      {1e6, "1000000"},
      {4294967296.0, "4294967296"},
      {0.1, "0.1"},
      {-2.5, "-2.5"},
      {0.005, "0.005"},
      {123456.789, "123456.789"},
      {1.5e-7, "1.5e-07"},
      {9007199254740992.0, "9007199254740992"},
      {1e300, "1e+300"},
      {kInf, "+Inf"},
      {-kInf, "-Inf"},
      {kNaN, "NaN"},
  };
  for (const FormatCase& c : cases) EXPECT_EQ(FormatValue(c.value), c.text) << c.value;
}

TEST(FormatValueTest, ReadsBackAsTheSameDouble) {
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<double> mantissa(-1.0, 1.0);
  std::uniform_int_distribution<int> exponent(-30, 30);
  for (int i = 0; i < 2000; ++i) {
    const double v = std::ldexp(mantissa(rng), exponent(rng));
    const std::string text = FormatValue(v);
    EXPECT_EQ(std::strtod(text.c_str(), nullptr), v) << text;
  }
}

// A registry built by a test case, and the exact text it must serialize to.
struct ExpositionCase {
  const char* name;
  void (*build)(Registry& r);
  const char* text;
};

class ExpositionTest : public ::testing::TestWithParam<ExpositionCase> {};

TEST_P(ExpositionTest, SerializesExactly) {
  Registry registry;
  GetParam().build(registry);
  EXPECT_EQ(registry.Serialize(), GetParam().text);
}

INSTANTIATE_TEST_SUITE_P(
    Families, ExpositionTest,
    ::testing::Values(
        ExpositionCase{"Empty", [](Registry&) {}, ""},
        ExpositionCase{"CounterWithoutLabels",
                       [](Registry& r) {
                         Counter& c =
                             r.AddCounter("jobs_total", "Jobs done.").value()->WithLabels({});
                         c.Increment();
                         c.Increment(2);
                         c.Increment(-5);  // ignored
                       },
                       "# HELP jobs_total Jobs done.\n"
                       "# TYPE jobs_total counter\n"
                       "jobs_total 3\n"},
        ExpositionCase{
            "GaugeSeriesSortedByLabels",
            [](Registry& r) {
              Family<Gauge>* g = r.AddGauge("temp_celsius", "T.", {"room", "floor"}).value();
              g->WithLabels({"kitchen", "1"}).Set(21.5);
              g->WithLabels({"attic", "3"}).Set(-kInf);
              g->WithLabels({"hall", "1"}).Set(1e6);
              g->WithLabels({"cellar", "0"}).Set(kNaN);
            },
            "# HELP temp_celsius T.\n"
            "# TYPE temp_celsius gauge\n"
            "temp_celsius{room=\"attic\",floor=\"3\"} -Inf\n"
            "temp_celsius{room=\"cellar\",floor=\"0\"} NaN\n"
            "temp_celsius{room=\"hall\",floor=\"1\"} 1000000\n"
            "temp_celsius{room=\"kitchen\",floor=\"1\"} 21.5\n"},
        ExpositionCase{
            "HistogramBucketsAreCumulative",
            [](Registry& r) {
              Histogram& h =
                  r.AddHistogram("wait_seconds", "W.", {}, {0.25, 1, 10}).value()->WithLabels({});
              for (double v : {0.125, 0.25, 0.5, 100.0}) h.Observe(v);
            },
            "# HELP wait_seconds W.\n"
            "# TYPE wait_seconds histogram\n"
            "wait_seconds_bucket{le=\"0.25\"} 2\n"
            "wait_seconds_bucket{le=\"1\"} 3\n"
            "wait_seconds_bucket{le=\"10\"} 3\n"
            "wait_seconds_bucket{le=\"+Inf\"} 4\n"
            "wait_seconds_sum 100.875\n"
            "wait_seconds_count 4\n"},
        ExpositionCase{"HistogramLabelsBeforeLe",
                       [](Registry& r) {
                         r.AddHistogram("size_bytes", "S.", {"op"}, {1024})
                             .value()
                             ->WithLabels({"read"})
                             .Observe(2048);
                       },
                       "# HELP size_bytes S.\n"
                       "# TYPE size_bytes histogram\n"
                       "size_bytes_bucket{op=\"read\",le=\"1024\"} 0\n"
                       "size_bytes_bucket{op=\"read\",le=\"+Inf\"} 1\n"
                       "size_bytes_sum{op=\"read\"} 2048\n"
                       "size_bytes_count{op=\"read\"} 1\n"},
        ExpositionCase{"FamiliesSortedByName",
                       [](Registry& r) {
                         r.AddGauge("b", "B.").value()->WithLabels({}).Set(2);
                         r.AddGauge("a", "A.").value()->WithLabels({}).Set(1);
                         r.AddGauge("c", "C.").value();  // no series yet: only HELP and TYPE
                       },
                       "# HELP a A.\n# TYPE a gauge\na 1\n"
                       "# HELP b B.\n# TYPE b gauge\nb 2\n"
                       "# HELP c C.\n# TYPE c gauge\n"},
        ExpositionCase{"Escaping",
                       [](Registry& r) {
                         r.AddGauge("info", "Path C:\\dir\nsecond \"line\".", {"v"})
                             .value()
                             ->WithLabels({"a\\b \"q\"\nx \xC3\xA9 \xFF end"})
                             .Set(1);
                       },
                       "# HELP info Path C:\\\\dir\\nsecond \"line\".\n"
                       "# TYPE info gauge\n"
                       "info{v=\"a\\\\b \\\"q\\\"\\nx \xC3\xA9 \xEF\xBF\xBD end\"} 1\n"}),
    [](const ::testing::TestParamInfo<ExpositionCase>& info) { return info.param.name; });

struct BadFamily {
  const char* name;
  const char* metric;
  std::vector<std::string> labels;
  char type;  // 'c', 'g' or 'h'
  absl::StatusCode code;
};

TEST(RegistryTest, RefusesBadFamilies) {
  const BadFamily cases[] = {
      {"empty name", "", {}, 'g', absl::StatusCode::kInvalidArgument},
      {"leading digit", "1up", {}, 'g', absl::StatusCode::kInvalidArgument},
      {"dash", "a-b", {}, 'g', absl::StatusCode::kInvalidArgument},
      {"colon", "vllm:num_requests", {}, 'g', absl::StatusCode::kInvalidArgument},
      {"counter without _total", "jobs", {}, 'c', absl::StatusCode::kInvalidArgument},
      {"gauge with _total", "jobs_total", {}, 'g', absl::StatusCode::kInvalidArgument},
      {"histogram with _total", "jobs_total", {}, 'h', absl::StatusCode::kInvalidArgument},
      {"gauge named like a bucket", "x_bucket", {}, 'g', absl::StatusCode::kInvalidArgument},
      {"gauge named like a count", "x_count", {}, 'g', absl::StatusCode::kInvalidArgument},
      {"reserved label", "x", {"__name"}, 'g', absl::StatusCode::kInvalidArgument},
      {"bad label", "x", {"a-b"}, 'g', absl::StatusCode::kInvalidArgument},
      {"label twice", "x", {"a", "b", "a"}, 'g', absl::StatusCode::kInvalidArgument},
      {"le on a histogram", "h", {"le"}, 'h', absl::StatusCode::kInvalidArgument},
      {"taken name", "taken", {}, 'g', absl::StatusCode::kAlreadyExists},
  };
  Registry r;
  ASSERT_TRUE(r.AddGauge("taken", "T.").ok());
  for (const BadFamily& c : cases) {
    absl::Status s;
    if (c.type == 'c') s = r.AddCounter(c.metric, "H.", c.labels).status();
    if (c.type == 'g') s = r.AddGauge(c.metric, "H.", c.labels).status();
    if (c.type == 'h') s = r.AddHistogram(c.metric, "H.", c.labels, {1}).status();
    EXPECT_EQ(s.code(), c.code) << c.name << ": " << s;
  }
  EXPECT_EQ(r.AddGauge("nohelp", "").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(r.AddGauge("le_on_a_gauge", "Fine.", {"le"}).ok());
}

TEST(RegistryTest, RefusesBadBucketBounds) {
  const std::vector<double> cases[] = {{}, {1, 1}, {2, 1}, {1, kNaN}, {1, kInf}, {-kInf, 0}};
  Registry r;
  for (const std::vector<double>& bounds : cases) {
    EXPECT_EQ(r.AddHistogram("h", "H.", {}, bounds).status().code(),
              absl::StatusCode::kInvalidArgument)
        << ::testing::PrintToString(bounds);
  }
  EXPECT_TRUE(r.AddHistogram("h", "H.", {}, {-1, 0, 0.5}).ok());
}

TEST(RegistryTest, WithLabelsReturnsTheSameSeries) {
  Registry r;
  Family<Counter>* f = r.AddCounter("c_total", "C.", {"k"}).value();
  Counter& a = f->WithLabels({"x"});
  a.Increment(4);
  EXPECT_EQ(&f->WithLabels({"x"}), &a);
  EXPECT_NE(&f->WithLabels({"y"}), &a);
  EXPECT_EQ(f->WithLabels({"x"}).Value(), 4);
}

TEST(RegistryDeathTest, WrongNumberOfLabelValuesIsFatal) {
  Registry r;
  Family<Counter>* f = r.AddCounter("c_total", "C.", {"k"}).value();
  EXPECT_DEATH(f->WithLabels({"x", "y"}), "label values for metric c_total");
}

TEST(RegistryTest, CollectHooksRunAtEveryScrape) {
  Registry r;
  Gauge& scrapes = r.AddGauge("scrapes", "S.").value()->WithLabels({});
  r.AddCollectHook([&scrapes] { scrapes.Increment(); });
  EXPECT_EQ(r.Serialize(), "# HELP scrapes S.\n# TYPE scrapes gauge\nscrapes 1\n");
  EXPECT_EQ(r.Serialize(), "# HELP scrapes S.\n# TYPE scrapes gauge\nscrapes 2\n");
}

TEST(RegistryTest, ConcurrentUpdatesSumExactly) {
  constexpr int kThreads = 8;
  constexpr int kPerThread = 20000;
  Registry r;
  Counter& counter = r.AddCounter("n_total", "N.").value()->WithLabels({});
  Gauge& gauge = r.AddGauge("g", "G.").value()->WithLabels({});
  Family<Histogram>* hist = r.AddHistogram("h", "H.", {"t"}, {1, 2}).value();
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      // Half the threads resolve the same series concurrently; all of them observe into one.
      Histogram& h = hist->WithLabels({t % 2 == 0 ? "even" : "odd"});
      Histogram& shared = hist->WithLabels({"all"});
      for (int i = 0; i < kPerThread; ++i) {
        counter.Increment();
        gauge.Increment(2);
        gauge.Decrement();
        h.Observe(1.5);
        shared.Observe(i % 2 == 0 ? 0.5 : 3.0);
      }
    });
  }
  // Scrapes while writers run must not disturb them.
  for (int i = 0; i < 20; ++i) r.Serialize();
  for (std::thread& t : threads) t.join();
  constexpr uint64_t kTotal = uint64_t{kThreads} * kPerThread;
  EXPECT_EQ(counter.Value(), kTotal);
  EXPECT_EQ(gauge.Value(), kTotal);
  const Histogram::Snapshot even = hist->WithLabels({"even"}).Read();
  EXPECT_EQ(even.cumulative, (std::vector<uint64_t>{0, kTotal / 2, kTotal / 2}));
  EXPECT_EQ(even.sum, 1.5 * (kTotal / 2));
  const Histogram::Snapshot all = hist->WithLabels({"all"}).Read();
  EXPECT_EQ(all.cumulative, (std::vector<uint64_t>{kTotal / 2, kTotal / 2, kTotal}));
  EXPECT_EQ(all.count, kTotal);
  EXPECT_EQ(all.sum, 0.5 * (kTotal / 2) + 3.0 * (kTotal / 2));
}

}  // namespace
}  // namespace kvasir::metrics
