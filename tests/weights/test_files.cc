#include "tests/weights/test_files.h"

#include <sstream>

#include "nlohmann/json.hpp"

namespace kvasir::testing {

std::string SafetensorsFile(const std::vector<StEntry>& entries) {
  nlohmann::json header = nlohmann::json::object();
  header["__metadata__"] = {{"format", "pt"}};
  std::string data;
  for (const StEntry& e : entries) {
    header[e.name] = {{"dtype", e.dtype},
                      {"shape", e.shape},
                      {"data_offsets", {data.size(), data.size() + e.data.size()}}};
    data += e.data;
  }
  std::string h = header.dump();
  while ((8 + h.size()) % 8 != 0) h.push_back(' ');
  return SafetensorsBytes(h, data);
}

std::string F32Data(int n, float start) {
  Bytes b;
  for (int i = 0; i < n; ++i) b.Put<float>(start + static_cast<float>(i));
  return b.str();
}

std::string U16Data(int n, uint16_t start) {
  Bytes b;
  for (int i = 0; i < n; ++i) b.Put<uint16_t>(static_cast<uint16_t>(start + i));
  return b.str();
}

std::filesystem::path TestDir() {
  const ::testing::TestInfo* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::filesystem::path dir = std::filesystem::path(::testing::TempDir()) / "kvasir_weights" /
                              (std::string(info->test_suite_name()) + "." + info->name());
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

void WriteFile(const std::filesystem::path& path, const std::string& bytes) {
  // Unlink first: truncating an existing file makes ext4 flush it on close (slow in loops).
  std::error_code ec;
  std::filesystem::remove(path, ec);
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << "cannot write " << path;
}

std::string ReadFile(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace kvasir::testing
