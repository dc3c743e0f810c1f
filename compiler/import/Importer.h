//===- Importer.h - the ONNX importer's state, shared by its op families -===//
//
// The importer (OnnxImporter.cpp) walks the graph and hands each node to the
// op families in ops/, one file each, as torch-mlir splits its ONNX
// conversions: each family's import function returns false for an op it does
// not know. Internal to compiler/import/.
//
//===----------------------------------------------------------------------===//
#ifndef KILN_COMPILER_IMPORT_IMPORTER_H
#define KILN_COMPILER_IMPORT_IMPORTER_H

#include "ExternalData.h"

#include "dialects/KilnOps.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/Verifier.h"
#include "llvm/ADT/StringMap.h"
#include "llvm/ADT/StringSet.h"

#include <onnx/onnx_pb.h>

#include <string>

namespace kiln::import {

using namespace mlir;

/// Reported as "node 'name' (#index, OpType): message".
struct ImportError {
  std::string message;
};

class Importer {
public:
  Importer(MLIRContext &context, const onnx::ModelProto &model, const std::string &path)
      : ctx(context), model(model), builder(&context), path(path), externalData(path) {}

  OwningOpRef<ModuleOp> run();

private:
  void importGraph(func::FuncOp &func);
  void importNode(const onnx::NodeProto &node);
  bool importConstantsAndShapes(const onnx::NodeProto &n, const std::string &op);
  bool importElementwise(const onnx::NodeProto &n, const std::string &op);
  bool importFunctionActivations(const onnx::NodeProto &n, const std::string &op);
  bool importLinearAlgebra(const onnx::NodeProto &n, const std::string &op);
  bool importDataMovement(const onnx::NodeProto &n, const std::string &op);
  bool importReductions(const onnx::NodeProto &n, const std::string &op);
  bool importEmbeddingBagLoops(const onnx::NodeProto &n, const std::string &op);
  bool importQuantization(const onnx::NodeProto &n, const std::string &op);
  bool importLosses(const onnx::NodeProto &n, const std::string &op);
  bool importAttention(const onnx::NodeProto &n, const std::string &op);
  Value negativeLogLikelihood(Value logProb, Value target, Value weight,
                              std::optional<int64_t> ignoreIndex);
  Value dequantize(Value x, Value scale, Value zeroPoint, int64_t axis);
  Value quantize(Value x, Value scale, Value zeroPoint, Type to, int64_t axis);
  Value alongAxis(Value v, int64_t axis, int64_t rank);
  Type elementType(int32_t onnxType, const std::string &what);
  RankedTensorType valueType(const onnx::ValueInfoProto &info, bool &batched);
  ElementsAttr tensorAttr(const onnx::TensorProto &tensor);
  std::string describeTensor(const std::string &name) const;

  // Node helpers.
  Value input(int i);
  bool hasInput(int i) const;
  const onnx::AttributeProto *attr(const std::string &name) const;
  /// The attribute `name` of the node, or nullptr; one of another type
  /// than `type` (where one is given) is an error naming both.
  const onnx::AttributeProto *typedAttr(const std::string &name,
                                        onnx::AttributeProto::AttributeType type);
  int64_t intAttr(const std::string &name, int64_t fallback);
  float floatAttr(const std::string &name, float fallback);
  std::optional<SmallVector<int64_t>> intsAttr(const std::string &name);
  SmallVector<int64_t> constantInts(int i, const char *what);
  int64_t normalizeAxis(int64_t axis, int64_t rank);
  SmallVector<int64_t> normalizeAxes(ArrayRef<int64_t> axes, int64_t rank);
  Value constI64(ArrayRef<int64_t> values);
  /// A 0-d constant of `like`'s element type; for an integer type, `value`
  /// must be one of its values.
  Value scalarLike(Value like, double value);
  /// A 0-d constant of `like`'s integer element type, or nothing when
  /// `value` is not one of that type's values.
  std::optional<Value> integerLike(Value like, int64_t value);
  int64_t rankOf(Value v) { return cast<RankedTensorType>(v.getType()).getRank(); }
  [[noreturn]] void fail(const std::string &message);
  void define(int output, Value value);
  bool isUsed(const std::string &name) const;
  template <typename Op, typename... Args> Value make(Args &&...args);
  /// The op's result, or its folded value where its operands fold it: shape
  /// arithmetic on static shapes resolves as it is imported, so that an op
  /// whose result type depends on such values (a Reshape to a computed
  /// shape, a ConstantOfShape, reduction axes) is typed at once.
  Value foldAsImported(Operation *op);

  MLIRContext &ctx;
  const onnx::ModelProto &model;
  OpBuilder builder;
  std::string path;
  ExternalData externalData;
  int64_t opset = 0;
  llvm::StringMap<Value> values;
  llvm::StringMap<const onnx::TensorProto *> constants;
  // Sequences exist only as embedding-bag Loop state: empty starts, and the
  // bags a Loop stacked into its output sequence.
  llvm::StringSet<> emptySequences;
  llvm::StringMap<Value> bagSequences;
  const onnx::NodeProto *node = nullptr;
  int nodeIndex = 0;
  Location loc = UnknownLoc::get(&ctx);
};

template <typename Op, typename... Args> Value Importer::make(Args &&...args) {
  // Built with a placeholder result type, then typed by the op's own
  // inference, so a shape error becomes a message about this node.
  auto op = Op::create(builder, loc, builder.getNoneType(), std::forward<Args>(args)...);
  std::string diagnostic;
  ScopedDiagnosticHandler handler(&ctx, [&](Diagnostic &d) {
    diagnostic = d.str();
    return success();
  });
  FailureOr<SmallVector<Type>> types = inferResultTypes(op);
  if (succeeded(types))
    op->getResult(0).setType((*types)[0]);
  if (failed(types) || failed(verify(op))) {
    op->erase();
    fail(diagnostic.empty() ? "invalid operands" : diagnostic);
  }
  return foldAsImported(op);
}

} // namespace kiln::import

#endif
