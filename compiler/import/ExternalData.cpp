//===- ExternalData.cpp - ONNX external data, mapped safely ---------------===//
//
// A location is opened relative to a descriptor of the model's folder, so
// that what is checked is what is read: the kernel resolves the path beneath
// that folder and refuses symbolic links on the way (openat2), and fstat of
// the opened descriptor decides what kind of file it is. Pre-checks of the
// string (absolute, `..`) give the clearer message for the common attacks.
//
//===----------------------------------------------------------------------===//

#include "ExternalData.h"

#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/Path.h"

#include <onnx/onnx_pb.h>

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

using namespace mlir;

namespace kiln {

struct ExternalData::Mapping {
  const char *data = nullptr;
  uint64_t size = 0;
  ~Mapping() {
    if (data)
      munmap(const_cast<char *>(data), size);
  }
};

namespace {

std::string errnoText(int error) {
  switch (error) {
  case ELOOP:
    return "the path goes through a symbolic link";
  case EXDEV:
    return "the path leaves the model's folder";
  case ENOENT:
    return "no such file in the model's folder";
  case ENOTDIR:
    return "a component of the path is not a folder";
  default:
    return std::strerror(error);
  }
}

/// Opens `location` beneath `folderFd` without following any symbolic link,
/// non-blocking (so that a FIFO cannot hang the compile); -1 with errno set.
int openBeneath(int folderFd, const std::string &location) {
  open_how how{};
  how.flags = O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK;
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
  int fd = int(syscall(SYS_openat2, folderFd, location.c_str(), &how, sizeof how));
  if (fd >= 0 || errno != ENOSYS)
    return fd;
  // Kernels before 5.6: one component at a time, none of them a link.
  SmallVector<StringRef> parts;
  StringRef(location).split(parts, '/', -1, /*KeepEmpty=*/false);
  int dir = folderFd;
  for (size_t i = 0; i < parts.size(); ++i) {
    const bool last = i + 1 == parts.size();
    int next = openat(dir, parts[i].str().c_str(),
                      last ? how.flags | O_NOFOLLOW : O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    int saved = errno;
    if (dir != folderFd)
      close(dir);
    if (next < 0) {
      errno = saved;
      return -1;
    }
    dir = next;
  }
  return dir;
}

/// A non-negative decimal integer, or nullopt.
std::optional<uint64_t> parseSize(const std::string &text) {
  uint64_t v = 0;
  if (text.empty() || StringRef(text).getAsInteger(10, v))
    return std::nullopt;
  return v;
}

} // namespace

ExternalData::ExternalData(const std::string &modelPath)
    : folder(llvm::sys::path::parent_path(modelPath).str()) {
  if (folder.empty())
    folder = ".";
  folderFd = open(folder.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
}

ExternalData::~ExternalData() {
  if (folderFd >= 0)
    close(folderFd);
}

FailureOr<std::shared_ptr<ExternalData::Mapping>> ExternalData::map(const std::string &location,
                                                                    std::string &error) {
  auto it = files.find(location);
  if (it != files.end())
    return it->second;
  if (location.empty())
    return error = "the location is empty", failure();
  if (location.front() == '/')
    return error = "the location is an absolute path; external data must lie in the model's "
                   "folder",
           failure();
  SmallVector<StringRef> parts;
  StringRef(location).split(parts, '/');
  if (llvm::is_contained(parts, ".."))
    return error = "the location has a '..' component; external data must lie in the model's "
                   "folder",
           failure();
  if (folderFd < 0)
    return error = "cannot open the model's folder '" + folder + "': " + std::strerror(errno),
           failure();

  int fd = openBeneath(folderFd, location);
  if (fd < 0)
    return error = errnoText(errno), failure();
  struct stat st;
  if (fstat(fd, &st) != 0) {
    error = std::strerror(errno);
    close(fd);
    return failure();
  }
  auto refuse = [&](std::string why) {
    close(fd);
    error = std::move(why);
    return failure();
  };
  if (S_ISDIR(st.st_mode))
    return refuse("the location is a folder, not a file");
  if (!S_ISREG(st.st_mode))
    return refuse("the location is not a regular file (a device, FIFO or socket)");
  if (st.st_nlink != 1)
    return refuse("the file has " + std::to_string(st.st_nlink) +
                  " hard links; kiln reads external data only from a file with one, which "
                  "cannot be a second name of a file outside the model's folder");
  auto mapping = std::make_shared<Mapping>();
  mapping->size = uint64_t(st.st_size);
  if (mapping->size) {
    void *data = mmap(nullptr, mapping->size, PROT_READ, MAP_SHARED, fd, 0);
    if (data == MAP_FAILED)
      return refuse(std::string("cannot map the file: ") + std::strerror(errno));
    mapping->data = static_cast<const char *>(data);
    // Passes and the emitter read each table front to back, once or twice.
    madvise(data, mapping->size, MADV_SEQUENTIAL);
  }
  close(fd);
  files[location] = mapping;
  return mapping;
}

FailureOr<AsmResourceBlob> ExternalData::read(const onnx::TensorProto &tensor, uint64_t bytes,
                                              size_t alignment, std::string &error) {
  std::string location;
  std::optional<uint64_t> offset = 0, length;
  bool hasLocation = false;
  for (const auto &entry : tensor.external_data()) {
    if (entry.key() == "location") {
      location = entry.value();
      hasLocation = true;
    } else if (entry.key() == "offset") {
      if (!(offset = parseSize(entry.value())))
        return error = "offset '" + entry.value() + "' is not a non-negative integer", failure();
    } else if (entry.key() == "length") {
      if (!(length = parseSize(entry.value())))
        return error = "length '" + entry.value() + "' is not a non-negative integer", failure();
    } else if (entry.key() != "checksum") {
      return error = "unknown external_data key '" + entry.key() + "'", failure();
    }
  }
  if (!hasLocation)
    return error = "external data without a location", failure();
  std::string where = "location '" + location + "'";
  FailureOr<std::shared_ptr<Mapping>> file = map(location, error);
  if (failed(file))
    return error = where + ": " + error, failure();
  const uint64_t size = (*file)->size;
  if (*offset > size)
    return error = where + ": offset " + std::to_string(*offset) + " is past the end of the " +
                   std::to_string(size) + "-byte file",
           failure();
  if (!length)
    length = size - *offset;
  if (*length > size - *offset)
    return error = where + ": offset " + std::to_string(*offset) + " + length " +
                   std::to_string(*length) + " is past the end of the " + std::to_string(size) +
                   "-byte file",
           failure();
  if (*length != bytes)
    return error = where + ": length " + std::to_string(*length) + " differs from the " +
                   std::to_string(bytes) + " bytes the tensor's dims and type need",
           failure();

  ArrayRef<char> data((*file)->data ? (*file)->data + *offset : nullptr, bytes);
  if (!data.empty() && reinterpret_cast<uintptr_t>(data.data()) % alignment)
    return HeapAsmResourceBlob::allocateAndCopyWithAlign(data, alignment); // a rare exporter
  return AsmResourceBlob(
      data, alignment, [keep = *file](void *, size_t, size_t) {}, /*dataIsMutable=*/false);
}

} // namespace kiln
