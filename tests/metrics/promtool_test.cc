// Runs the real `promtool check metrics` (Debian package prometheus, installed by tools/setup.sh)
// over what EngineMetrics serves. A missing promtool fails the test: it is not skipped.
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "server/metrics/engine_metrics.h"
#include "tests/metrics/metrics_fixtures.h"

namespace kvasir {
namespace {

// The promtool on PATH, or an empty path.
std::filesystem::path FindPromtool() {
  const char* path = std::getenv("PATH");
  std::stringstream dirs(path == nullptr ? "" : path);
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    const std::filesystem::path candidate = std::filesystem::path(dir) / "promtool";
    if (!dir.empty() && access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return {};
}

struct CheckResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr
};

// promtool check metrics < text
CheckResult CheckMetrics(const std::filesystem::path& promtool, const std::string& text) {
  const std::filesystem::path file =
      std::filesystem::path(::testing::TempDir()) / "kvasir_metrics_promtool_input.txt";
  std::ofstream(file) << text;
  const std::string command =
      absl::StrCat("'", promtool.string(), "' check metrics < '", file.string(), "' 2>&1");
  CheckResult result;
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return result;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), pipe)) > 0) result.output.append(buf, n);
  const int status = pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

class PromtoolTest : public ::testing::Test {
 protected:
  void SetUp() override {
    promtool_ = FindPromtool();
    ASSERT_FALSE(promtool_.empty())
        << "promtool is not on PATH. Install the Debian package 'prometheus' "
           "(bash tools/setup.sh does), then run this test again.";
  }
  std::filesystem::path promtool_;
};

TEST_F(PromtoolTest, PopulatedEngineMetricsPassCheckMetrics) {
  absl::StatusOr<std::shared_ptr<EngineMetrics>> m = EngineMetrics::Create();
  ASSERT_TRUE(m.ok()) << m.status();
  testing::RunScriptedHistory(**m);
  ModelInfo info;
  info.name = "SmolLM2 \"135M\"\\Instruct";  // quotes and backslash: escaped in the label
  info.architecture = "LlamaForCausalLM";
  info.format = "gguf";
  info.weight_dtype = "Q4_1";
  info.kernels = "avx2";
  info.kv_block_size = 16;
  info.kv_num_blocks = 512;
  ASSERT_TRUE((*m)->SetModelInfo(info).ok());
  (*m)->SetLoadsSource([] {
    EngineLoads loads;
    loads.loop_alive = true;
    return loads;
  });
  (*m)->RecordRejected("queue_full");
  (*m)->RecordGrpc("Generate", absl::StatusCode::kInvalidArgument);
  (*m)->RecordHttp("GET", "/metrics", 200);
  const std::string text = (*m)->registry().Serialize();

  const CheckResult result = CheckMetrics(promtool_, text);
  EXPECT_EQ(result.exit_code, 0) << result.output;
  EXPECT_EQ(result.output, "") << "exposition:\n" << text;
}

// The check above can fail: promtool does flag what the registry's rules keep out.
TEST_F(PromtoolTest, CheckMetricsFlagsACounterWithoutTotal) {
  const CheckResult result =
      CheckMetrics(promtool_, "# HELP jobs Jobs.\n# TYPE jobs counter\njobs 1\n");
  EXPECT_NE(result.exit_code, 0);
  EXPECT_NE(result.output.find("_total"), std::string::npos) << result.output;
}

}  // namespace
}  // namespace kvasir
