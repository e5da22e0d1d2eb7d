#include "io/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "kvprime/core/error.h"

namespace kvprime {

std::shared_ptr<MappedFile> MappedFile::open(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  KVP_CHECK(fd >= 0, "cannot open '", path, "': ", std::strerror(errno),
            "; check that the path is right and the file is readable");
  // The descriptor is only needed until mmap returns: the mapping keeps the file itself alive.
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};

  struct stat st {};
  KVP_CHECK(::fstat(fd, &st) == 0, "cannot stat '", path, "': ", std::strerror(errno));
  KVP_CHECK(S_ISREG(st.st_mode), "'", path,
            "' is not a regular file (a directory or a device?); pass the path of a file");
  const size_t size = static_cast<size_t>(st.st_size);
  if (size == 0) {
    // mmap rejects a zero length; an empty file simply has no bytes to view.
    return std::shared_ptr<MappedFile>(new MappedFile(path, nullptr, 0));
  }

  // MAP_PRIVATE + PROT_READ: nobody in this process can write through the mapping. If another
  // process truncates the file while it is mapped, reads past the new end raise SIGBUS; that is
  // the usual mmap contract and the price of zero-copy loading.
  void* p = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  KVP_CHECK(p != MAP_FAILED, "cannot memory-map '", path, "' (", size,
            " bytes): ", std::strerror(errno), "; check free address space / ulimit -v");
  return std::shared_ptr<MappedFile>(new MappedFile(path, static_cast<const uint8_t*>(p), size));
}

MappedFile::~MappedFile() {
  if (data_) ::munmap(const_cast<uint8_t*>(data_), size_);
}

}  // namespace kvprime
