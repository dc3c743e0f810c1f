//===- ExternalData.h - ONNX external data, mapped safely -------*- C++ -*-===//
#ifndef KILN_COMPILER_IMPORT_EXTERNALDATA_H
#define KILN_COMPILER_IMPORT_EXTERNALDATA_H

#include "mlir/IR/AsmState.h"
#include "mlir/Support/LLVM.h"
#include "llvm/ADT/StringMap.h"

#include <memory>
#include <string>

namespace onnx {
class TensorProto;
} // namespace onnx

namespace kiln {

/// The tensors of a model stored as ONNX external data (`location`,
/// `offset`, `length` in the tensor's external_data), read through read-only
/// memory maps of the files in the model's folder. Each file is mapped once
/// and its bytes are never copied: a blob views the map and keeps it alive.
///
/// Safe by construction, as ONNX's security guidance asks: a location must
/// be a relative path that stays inside the model's folder, with no `..`
/// component and no symbolic link anywhere on it (openat2 with
/// RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS, or O_NOFOLLOW per component where
/// the kernel lacks openat2), naming a regular file with one hard link; the
/// offset and length must lie inside the file and the length must be what
/// the tensor's dims and element type need.
class ExternalData {
public:
  /// `modelPath` is the .onnx file; locations are relative to its folder.
  explicit ExternalData(const std::string &modelPath);
  ~ExternalData();
  ExternalData(const ExternalData &) = delete;
  ExternalData &operator=(const ExternalData &) = delete;

  /// The `bytes` bytes of `tensor`, whose elements are `alignment` bytes
  /// wide. On a refusal, fails with `error` saying why.
  mlir::FailureOr<mlir::AsmResourceBlob> read(const onnx::TensorProto &tensor, uint64_t bytes,
                                              size_t alignment, std::string &error);

private:
  struct Mapping;
  mlir::FailureOr<std::shared_ptr<Mapping>> map(const std::string &location, std::string &error);

  std::string folder;
  int folderFd = -1;
  llvm::StringMap<std::shared_ptr<Mapping>> files;
};

} // namespace kiln

#endif
