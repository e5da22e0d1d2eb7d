// A file that appears whole or not at all (cache files, reports). Bytes go to `<path>.tmp`;
// commit() flushes it to disk (fsync: else a crash could leave `path` naming data that never
// reached the disk), closes it (close() reports deferred write errors, e.g. on NFS) and renames it
// over `path`. Destroyed without commit() (an error on the way), the temporary is removed and
// `path` is untouched. Errors are kvprime::Error naming `what` (the caller), the file and a hint
// (disk full, file size limit, permissions).
#pragma once

#include <cstddef>
#include <string>

namespace kvprime {

class AtomicFile {
 public:
  AtomicFile(std::string path, std::string what);
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  void write(const void* data, size_t n);
  void commit();

 private:
  std::string path_, tmp_, what_;
  int fd_ = -1;
  bool committed_ = false;
};

// `data` as the whole content of `path`, atomically.
void write_file_atomically(const std::string& path, const std::string& data, const std::string& what);

}  // namespace kvprime
