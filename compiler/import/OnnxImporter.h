//===- OnnxImporter.h - ONNX ModelProto -> kiln dialect ---------*- C++ -*-===//
#ifndef KILN_COMPILER_IMPORT_ONNXIMPORTER_H
#define KILN_COMPILER_IMPORT_ONNXIMPORTER_H

#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/OwningOpRef.h"

#include <string>

namespace onnx {
class ModelProto;
class TensorProto;
} // namespace onnx

namespace kiln {

/// Reads a model from a binary `.onnx` file or, for a `.onnxtxt` file, from
/// ONNX's text syntax. Errors are reported through `context`'s diagnostics.
mlir::FailureOr<onnx::ModelProto> readOnnxModel(mlir::MLIRContext &context,
                                                const std::string &path);

/// Turns the graph input `name` into an initialiser holding the TensorProto
/// in `path` (so its values are known at compile time).
mlir::LogicalResult freezeInput(mlir::MLIRContext &context, onnx::ModelProto &model,
                                const std::string &name, const std::string &path);

/// Imports the main graph into a module holding one `func.func @main`. Graph
/// inputs and outputs keep their names (`kiln.name`) and a dynamic leading
/// dim marks them batched (`kiln.batched`). An unsupported op, dtype or
/// attribute is an error naming the node.
mlir::OwningOpRef<mlir::ModuleOp> importOnnxModel(mlir::MLIRContext &context,
                                                  const onnx::ModelProto &model,
                                                  const std::string &modelPath);

/// Little-endian bytes of an ONNX tensor's `count` elements of `width` bytes
/// each (bool as one byte), from raw_data or the typed fields. On a size
/// mismatch or unsupported type, `error` says why.
std::vector<char> tensorBytes(const onnx::TensorProto &tensor, size_t count, size_t width,
                              std::string &error);

} // namespace kiln

#endif
