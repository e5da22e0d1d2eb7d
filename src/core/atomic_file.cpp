#include "kvprime/core/atomic_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>

#include "kvprime/core/error.h"

namespace kvprime {

namespace {

std::string hint_for_write_error(int err) {
  if (err == ENOSPC || err == EDQUOT)
    return "the disk is full or over quota; free space or save somewhere else";
  if (err == EFBIG)
    return "the file is larger than allowed (ulimit -f or the filesystem's maximum file size); "
           "raise the limit or save somewhere else";
  return "check the disk and that the location is writable";
}

}  // namespace

AtomicFile::AtomicFile(std::string path, std::string what)
    : path_(std::move(path)), tmp_(path_ + ".tmp"), what_(std::move(what)) {
  fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0) {
    committed_ = true;  // nothing was created, so nothing to remove (a foreign file must not be)
    KVP_FAIL(what_, ": cannot create '", tmp_, "': ", std::strerror(errno),
             "; check that the directory exists and is writable");
  }
}

AtomicFile::~AtomicFile() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_) ::unlink(tmp_.c_str());
}

void AtomicFile::write(const void* data, size_t n) {
  KVP_ASSERT(fd_ >= 0 && !committed_, "AtomicFile::write after commit");
  const auto* p = static_cast<const uint8_t*>(data);
  while (n > 0) {
    // Large single writes are capped by the kernel anyway; loop over short writes and EINTR.
    const ssize_t w = ::write(fd_, p, std::min<size_t>(n, size_t{1} << 30));
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      const int err = w < 0 ? errno : EIO;
      KVP_FAIL(what_, ": cannot write '", tmp_, "': ", std::strerror(err), "; ", hint_for_write_error(err));
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
}

void AtomicFile::commit() {
  KVP_ASSERT(fd_ >= 0 && !committed_, "AtomicFile::commit twice");
  if (::fsync(fd_) != 0) {
    const int err = errno;
    KVP_FAIL(what_, ": flushing '", tmp_, "' to disk failed: ", std::strerror(err), "; ",
             hint_for_write_error(err));
  }
  const int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) {
    const int err = errno;
    KVP_FAIL(what_, ": closing '", tmp_, "' failed: ", std::strerror(err), "; ", hint_for_write_error(err));
  }
  if (std::rename(tmp_.c_str(), path_.c_str()) != 0) {
    const int err = errno;
    KVP_FAIL(what_, ": cannot rename '", tmp_, "' to '", path_, "': ", std::strerror(err),
             "; check that the target is not a directory and the location is writable");
  }
  committed_ = true;
}

void write_file_atomically(const std::string& path, const std::string& data, const std::string& what) {
  AtomicFile f(path, what);
  f.write(data.data(), data.size());
  f.commit();
}

}  // namespace kvprime
