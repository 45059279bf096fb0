// Writers for small GGUF and safetensors files, and temp-dir helpers, for the weights tests.
#ifndef KVASIR_TESTS_WEIGHTS_TEST_FILES_H_
#define KVASIR_TESTS_WEIGHTS_TEST_FILES_H_

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "engine/weights/gguf.h"
#include "gtest/gtest.h"

namespace kvasir::testing {

// Little-endian byte builder.
class Bytes {
 public:
  template <typename T>
  Bytes& Put(T v) {
    char b[sizeof(T)];
    std::memcpy(b, &v, sizeof(T));
    s_.append(b, sizeof(T));
    return *this;
  }
  Bytes& Str(const std::string& s) {
    Put<uint64_t>(s.size());
    s_ += s;
    return *this;
  }
  Bytes& Raw(const std::string& s) {
    s_ += s;
    return *this;
  }
  Bytes& PadTo(uint64_t alignment) {
    while (s_.size() % alignment != 0) s_.push_back('\0');
    return *this;
  }
  const std::string& str() const { return s_; }
  size_t size() const { return s_.size(); }

 private:
  std::string s_;
};

// Builds a GGUF file. Values are added pre-encoded; tensors with ne innermost first, as stored.
class GgufWriter {
 public:
  uint32_t version = 3;
  uint64_t alignment = 32;  // data section alignment (add general.alignment yourself if not 32)

  void Kv(const std::string& key, GgufType type, const std::string& encoded) {
    Bytes b;
    b.Str(key).Put<uint32_t>(static_cast<uint32_t>(type)).Raw(encoded);
    kvs_.push_back(b.str());
  }
  void String(const std::string& key, const std::string& v) {
    Kv(key, GgufType::kString, Bytes().Str(v).str());
  }
  template <typename T>
  void Scalar(const std::string& key, GgufType type, T v) {
    Kv(key, type, Bytes().Put<T>(v).str());
  }
  void U32(const std::string& key, uint32_t v) { Scalar(key, GgufType::kU32, v); }
  void I32(const std::string& key, int32_t v) { Scalar(key, GgufType::kI32, v); }
  void F32(const std::string& key, float v) { Scalar(key, GgufType::kF32, v); }
  void Bool(const std::string& key, bool v) { Scalar<uint8_t>(key, GgufType::kBool, v ? 1 : 0); }
  void StringArray(const std::string& key, const std::vector<std::string>& v) {
    Bytes b;
    b.Put<uint32_t>(static_cast<uint32_t>(GgufType::kString)).Put<uint64_t>(v.size());
    for (const std::string& s : v) b.Str(s);
    Kv(key, GgufType::kArray, b.str());
  }
  template <typename T>
  void Array(const std::string& key, GgufType elem, const std::vector<T>& v) {
    Bytes b;
    b.Put<uint32_t>(static_cast<uint32_t>(elem)).Put<uint64_t>(v.size());
    for (T x : v) b.Put<T>(x);
    Kv(key, GgufType::kArray, b.str());
  }
  void Tensor(const std::string& name, uint32_t ggml_type, std::vector<uint64_t> ne,
              const std::string& data) {
    tensors_.push_back({name, ggml_type, std::move(ne), data});
  }

  std::string Build() const {
    Bytes b;
    b.Raw("GGUF").Put<uint32_t>(version).Put<uint64_t>(tensors_.size()).Put<uint64_t>(kvs_.size());
    for (const std::string& kv : kvs_) b.Raw(kv);
    uint64_t offset = 0;
    for (const T& t : tensors_) {
      b.Str(t.name).Put<uint32_t>(t.ne.size());
      for (uint64_t n : t.ne) b.Put<uint64_t>(n);
      b.Put<uint32_t>(t.type).Put<uint64_t>(offset);
      offset += (t.data.size() + alignment - 1) / alignment * alignment;
    }
    b.PadTo(alignment);
    for (const T& t : tensors_) b.Raw(t.data).PadTo(alignment);
    return b.str();
  }

 private:
  struct T {
    std::string name;
    uint32_t type;
    std::vector<uint64_t> ne;
    std::string data;
  };
  std::vector<std::string> kvs_;
  std::vector<T> tensors_;
};

struct StEntry {
  std::string name;
  std::string dtype;
  std::vector<int64_t> shape;
  std::string data;
};

// A safetensors file from a raw JSON header and data section.
inline std::string SafetensorsBytes(const std::string& header, const std::string& data) {
  return Bytes().Put<uint64_t>(header.size()).Raw(header).Raw(data).str();
}

// A well-formed safetensors file holding `entries` back to back.
std::string SafetensorsFile(const std::vector<StEntry>& entries);

// bytes of n floats / halves with values start, start+1, ...
std::string F32Data(int n, float start = 0);
std::string U16Data(int n, uint16_t start = 0);

// A fresh empty directory under the test temp dir, named after the running test.
std::filesystem::path TestDir();
void WriteFile(const std::filesystem::path& path, const std::string& bytes);
std::string ReadFile(const std::filesystem::path& path);

// Asserts that `status` is not OK and its message contains every one of `parts`.
#define EXPECT_ERROR_HAS(status_expr, ...)                                             \
  do {                                                                                 \
    const ::absl::Status kv_st_ = (status_expr);                                       \
    EXPECT_FALSE(kv_st_.ok());                                                         \
    for (const char* kv_part_ : {__VA_ARGS__}) {                                       \
      EXPECT_NE(std::string(kv_st_.message()).find(kv_part_), std::string::npos)       \
          << "message: " << kv_st_.message() << "\nexpected to contain: " << kv_part_; \
    }                                                                                  \
  } while (0)

}  // namespace kvasir::testing

#endif  // KVASIR_TESTS_WEIGHTS_TEST_FILES_H_
