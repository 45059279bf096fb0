// A read-only memory mapping of a whole file (RAII).
#ifndef KVASIR_ENGINE_WEIGHTS_MMAP_FILE_H_
#define KVASIR_ENGINE_WEIGHTS_MMAP_FILE_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace kvasir {

class MmapFile {
 public:
  // Maps `path` read-only (PROT_READ, MAP_PRIVATE) and hints the kernel to read it ahead.
  // NotFound when the file does not exist; InvalidArgument when it is a directory; Internal with
  // the errno text otherwise. Every message names the path. An empty file maps to size() == 0 and
  // data() == nullptr.
  static absl::StatusOr<MmapFile> Open(const std::string& path);

  MmapFile() = default;
  MmapFile(MmapFile&& other) noexcept;
  MmapFile& operator=(MmapFile&& other) noexcept;
  MmapFile(const MmapFile&) = delete;
  MmapFile& operator=(const MmapFile&) = delete;
  ~MmapFile();

  const uint8_t* data() const { return data_; }
  uint64_t size() const { return size_; }
  const std::string& path() const { return path_; }
  std::string_view bytes() const {
    return std::string_view(reinterpret_cast<const char*>(data_), size_);
  }

 private:
  void Reset();

  std::string path_;
  const uint8_t* data_ = nullptr;
  uint64_t size_ = 0;
};

}  // namespace kvasir

#endif  // KVASIR_ENGINE_WEIGHTS_MMAP_FILE_H_
