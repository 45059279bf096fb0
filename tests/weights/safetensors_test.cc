#include "engine/weights/safetensors.h"

#include "gtest/gtest.h"
#include "tests/weights/test_files.h"

namespace kvasir {
namespace {

using testing::StEntry;

std::vector<StEntry> SmallEntries() {
  return {{"model.embed_tokens.weight", "F32", {2, 3}, testing::F32Data(6)},
          {"model.norm.weight", "BF16", {3}, testing::U16Data(3, 100)},
          {"lm_head.weight", "F16", {2, 3}, testing::U16Data(6, 7)},
          {"position_ids", "I64", {2}, std::string(16, '\0')}};
}

std::string WriteSt(const std::string& bytes, const char* name = "model.safetensors") {
  const auto path = testing::TestDir() / name;
  testing::WriteFile(path, bytes);
  return path.string();
}

TEST(SafetensorsTest, ReadsASingleFile) {
  const std::string path = WriteSt(testing::SafetensorsFile(SmallEntries()), "x.safetensors");
  auto s = OpenSafetensors(path);
  ASSERT_TRUE(s.ok()) << s.status();
  const WeightSource& w = **s;
  EXPECT_EQ(w.Describe(), path);
  EXPECT_EQ(w.TensorNames().size(), 4u);
  EXPECT_TRUE(w.Has("model.norm.weight"));
  EXPECT_FALSE(w.Has("__metadata__"));
  auto e = w.Get("model.embed_tokens.weight");
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->dtype, DType::kF32);
  EXPECT_EQ(e->shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(e->nbytes, 24);
  EXPECT_EQ(std::string(static_cast<const char*>(e->data), 24), testing::F32Data(6));
  auto n = w.Get("model.norm.weight");
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(n->dtype, DType::kBF16);
  EXPECT_EQ(std::string(static_cast<const char*>(n->data), 6), testing::U16Data(3, 100));
  auto h = w.Get("lm_head.weight");
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(h->dtype, DType::kF16);
  EXPECT_EQ(std::string(static_cast<const char*>(h->data), 12), testing::U16Data(6, 7));
}

TEST(SafetensorsTest, UnsupportedDtypeIsReportedOnGet) {
  const std::string path = WriteSt(testing::SafetensorsFile(SmallEntries()));
  auto s = OpenSafetensors(path);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_TRUE((*s)->Has("position_ids"));
  EXPECT_ERROR_HAS((*s)->Get("position_ids").status(), "position_ids", "I64", "not supported",
                   path.c_str());
  auto missing = (*s)->Get("model.layers.0.mlp.up_proj.weight");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_ERROR_HAS(missing.status(), "model.layers.0.mlp.up_proj.weight", path.c_str());
}

TEST(SafetensorsTest, ReadsADirectoryWithModelSafetensors) {
  const std::string path = WriteSt(testing::SafetensorsFile(SmallEntries()));
  const std::string dir = std::filesystem::path(path).parent_path().string();
  auto s = OpenSafetensors(dir);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ((*s)->Describe(), dir);
  EXPECT_TRUE((*s)->Get("lm_head.weight").ok());
}

TEST(SafetensorsTest, ReadsAShardedDirectory) {
  const auto dir = testing::TestDir();
  testing::WriteFile(dir / "model-00001-of-00002.safetensors",
                     testing::SafetensorsFile({{"a", "F32", {2}, testing::F32Data(2, 1)},
                                               {"b", "F16", {1}, testing::U16Data(1, 9)}}));
  testing::WriteFile(dir / "model-00002-of-00002.safetensors",
                     testing::SafetensorsFile({{"c", "BF16", {2, 2}, testing::U16Data(4, 3)}}));
  testing::WriteFile(dir / "model.safetensors.index.json", R"({
    "metadata": {"total_size": 20},
    "weight_map": {"a": "model-00001-of-00002.safetensors",
                   "b": "model-00001-of-00002.safetensors",
                   "c": "model-00002-of-00002.safetensors"}})");
  auto s = OpenSafetensors(dir.string());
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ((*s)->TensorNames(), (std::vector<std::string>{"a", "b", "c"}));
  auto c = (*s)->Get("c");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->shape, (std::vector<int64_t>{2, 2}));
  EXPECT_EQ(std::string(static_cast<const char*>(c->data), 8), testing::U16Data(4, 3));
  auto a = (*s)->Get("a");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(std::string(static_cast<const char*>(a->data), 8), testing::F32Data(2, 1));
  EXPECT_ERROR_HAS((*s)->Get("zz").status(), "zz", "model-00001-of-00002.safetensors",
                   "model-00002-of-00002.safetensors");
}

// ---- hostile input ----

absl::Status OpenStatus(const std::string& bytes) {
  return OpenSafetensors(WriteSt(bytes)).status();
}
absl::Status OpenHeader(const std::string& header, const std::string& data = "") {
  return OpenStatus(testing::SafetensorsBytes(header, data));
}

TEST(SafetensorsHostileTest, MissingPaths) {
  auto s = OpenSafetensors("/nonexistent/m.safetensors");
  EXPECT_EQ(s.status().code(), absl::StatusCode::kNotFound);
  EXPECT_ERROR_HAS(s.status(), "/nonexistent/m.safetensors");
  const auto dir = testing::TestDir();
  EXPECT_ERROR_HAS(OpenSafetensors(dir.string()).status(), "model.safetensors.index.json",
                   "model.safetensors");
}

TEST(SafetensorsHostileTest, ShortFileAndBadHeaderLength) {
  EXPECT_ERROR_HAS(OpenStatus("abc"), "too short");
  EXPECT_ERROR_HAS(OpenStatus(testing::Bytes().Put<uint64_t>(1000).Raw("{}").str()),
                   "header length 1000", "past the end");
  EXPECT_ERROR_HAS(OpenStatus(testing::Bytes().Put<uint64_t>(200'000'000).Raw("{}").str()),
                   "header length 200000000", "limit");
  EXPECT_ERROR_HAS(OpenStatus(testing::Bytes().Put<uint64_t>(~uint64_t{0}).Raw("{}").str()),
                   "header length");
}

TEST(SafetensorsHostileTest, HeaderNotJsonOrWrongShape) {
  EXPECT_ERROR_HAS(OpenHeader("{not json"), "not valid JSON");
  EXPECT_ERROR_HAS(OpenHeader("[1, 2]"), "not an object");
  EXPECT_ERROR_HAS(OpenHeader(R"({"x": 5})"), "'x'", "not an object");
  EXPECT_ERROR_HAS(OpenHeader(R"({"x": {"shape": [1], "data_offsets": [0, 4]}})"), "'x'", "dtype");
  EXPECT_ERROR_HAS(OpenHeader(R"({"x": {"dtype": "F32", "data_offsets": [0, 4]}})"), "'x'",
                   "shape");
  EXPECT_ERROR_HAS(
      OpenHeader(R"({"x": {"dtype": "F32", "shape": [1], "data_offsets": [0]}})", "abcd"), "'x'",
      "data_offsets");
  EXPECT_ERROR_HAS(
      OpenHeader(R"({"x": {"dtype": "F32", "shape": [1.5], "data_offsets": [0, 4]}})", "abcd"),
      "'x'", "not an integer");
  EXPECT_ERROR_HAS(
      OpenHeader(R"({"x": {"dtype": "Q9", "shape": [1], "data_offsets": [0, 4]}})", "abcd"), "'x'",
      "unknown dtype 'Q9'");
  EXPECT_ERROR_HAS(OpenHeader(std::string(1'000'000, '[')), "not valid JSON");
}

TEST(SafetensorsHostileTest, BadOffsetsAndShapes) {
  const std::string data(16, '\0');
  EXPECT_ERROR_HAS(
      OpenHeader(R"({"x": {"dtype": "F32", "shape": [8], "data_offsets": [0, 32]}})", data), "'x'",
      "out of range");
  EXPECT_ERROR_HAS(
      OpenHeader(R"({"x": {"dtype": "F32", "shape": [1], "data_offsets": [8, 4]}})", data), "'x'",
      "out of range");
  EXPECT_ERROR_HAS(
      OpenHeader(R"({"x": {"dtype": "F32", "shape": [1], "data_offsets": [-4, 0]}})", data), "'x'",
      "non-negative");
  EXPECT_ERROR_HAS(
      OpenHeader(R"({"x": {"dtype": "F32", "shape": [3], "data_offsets": [0, 16]}})", data), "'x'",
      "16 bytes", "needs 3 * 4");
  EXPECT_ERROR_HAS(
      OpenHeader(R"({"x": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}})", data), "'x'",
      "negative");
  EXPECT_ERROR_HAS(OpenHeader(R"({"x": {"dtype": "F32", "shape": [4294967296, 4294967296],
                                        "data_offsets": [0, 4]}})",
                              data),
                   "'x'", "overflows");
  EXPECT_ERROR_HAS(OpenHeader(R"({"x": {"dtype": "F32", "shape": [1, 4611686018427387904],
                                        "data_offsets": [0, 4]}})",
                              data),
                   "'x'");
  EXPECT_ERROR_HAS(OpenHeader(R"({"x": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                                  "y": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}})",
                              data),
                   "'y'", "overlaps", "'x'");
  EXPECT_ERROR_HAS(OpenHeader(R"({"x": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                                  "x": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}})",
                              data),
                   "duplicate key 'x'");
}

TEST(SafetensorsHostileTest, BadIndex) {
  const auto dir = testing::TestDir();
  testing::WriteFile(dir / "s1.safetensors",
                     testing::SafetensorsFile({{"a", "F32", {1}, testing::F32Data(1)}}));
  const auto index = dir / "model.safetensors.index.json";
  testing::WriteFile(index, R"({"weight_map": {"a": "s1.safetensors", "b": "s2.safetensors"}})");
  EXPECT_ERROR_HAS(OpenSafetensors(dir.string()).status(), "'b'", "s2.safetensors",
                   "does not exist", "model.safetensors.index.json");
  testing::WriteFile(index, R"({"weight_map": {"a": "s1.safetensors", "b": "s1.safetensors"}})");
  auto missing_tensor = OpenSafetensors(dir.string());
  EXPECT_EQ(missing_tensor.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_ERROR_HAS(missing_tensor.status(), "'b'", "s1.safetensors", "does not contain");
  testing::WriteFile(index, R"({"weight_map": {"a": "../s1.safetensors"}})");
  EXPECT_ERROR_HAS(OpenSafetensors(dir.string()).status(), "'a'", "same directory");
  testing::WriteFile(index, R"({"weight_map": {"a": 3}})");
  EXPECT_ERROR_HAS(OpenSafetensors(dir.string()).status(), "'a'", "not a file name");
  testing::WriteFile(index, R"({"metadata": {}})");
  EXPECT_ERROR_HAS(OpenSafetensors(dir.string()).status(), "weight_map");
  testing::WriteFile(index, "{");
  EXPECT_ERROR_HAS(OpenSafetensors(dir.string()).status(), "not valid JSON",
                   "model.safetensors.index.json");
}

TEST(SafetensorsHostileTest, SameTensorInTwoShards) {
  const auto dir = testing::TestDir();
  testing::WriteFile(dir / "s1.safetensors",
                     testing::SafetensorsFile({{"a", "F32", {1}, testing::F32Data(1)}}));
  testing::WriteFile(dir / "s2.safetensors",
                     testing::SafetensorsFile({{"a", "F32", {1}, testing::F32Data(1)}}));
  testing::WriteFile(dir / "model.safetensors.index.json",
                     R"({"weight_map": {"a": "s1.safetensors", "b": "s2.safetensors"}})");
  EXPECT_ERROR_HAS(OpenSafetensors(dir.string()).status(), "'a'", "s1.safetensors",
                   "s2.safetensors");
}

}  // namespace
}  // namespace kvasir
