// A whole file mapped read-only into memory (POSIX mmap). Shared by a SafeTensorsFile and every
// tensor viewing it: the mapping is released when the last std::shared_ptr owner goes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace kvprime {

class MappedFile {
 public:
  // Throws kvprime::Error naming `path` if it cannot be opened, is not a regular file or cannot be
  // mapped. An empty file is allowed (data() is then nullptr): callers decide whether it is valid.
  static std::shared_ptr<MappedFile> open(const std::string& path);

  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const std::string& path() const { return path_; }
  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  MappedFile(std::string path, const uint8_t* data, size_t size)
      : path_(std::move(path)), data_(data), size_(size) {}

  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace kvprime
