//===- KilnOps.h - kiln operations ------------------------------*- C++ -*-===//
#ifndef KILN_DIALECTS_KILNOPS_H
#define KILN_DIALECTS_KILNOPS_H

#include "KilnDialect.h"
#include "mlir/Bytecode/BytecodeOpInterface.h"
#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/OpDefinition.h"
#include "mlir/Interfaces/InferTypeOpInterface.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"

namespace kiln {

/// True when every pair of types has the same element type and shapes that
/// agree wherever both are static.
bool areCompatibleTypes(mlir::TypeRange lhs, mlir::TypeRange rhs);

/// The result types `op` infers from its current operands and attributes;
/// errors are emitted at the op's location.
mlir::FailureOr<llvm::SmallVector<mlir::Type>> inferResultTypes(mlir::Operation *op);

/// The value of a constant one-element floating-point tensor, if it is one.
std::optional<double> getConstantFloat(mlir::Value value);

/// Above this many elements folders leave an op for generated code, and
/// resource constants are not expanded for them.
constexpr int64_t kMaxFoldElements = 4096;

/// A constant's value as DenseElementsAttr: resource blobs (how the importer
/// keeps initializers) of at most kMaxFoldElements elements are expanded, so
/// that folders and pattern matchers see small initializers' values.
mlir::DenseElementsAttr denseElements(mlir::Attribute value);

/// Bytes of one element in the runtime's layout (i1 as one byte).
inline int64_t elementBytes(mlir::Type element) {
  return element.isInteger(1) ? 1 : element.getIntOrFloatBitWidth() / 8;
}

/// Bytes of the static part of `type` (its static dims times an element's
/// bytes), or nullopt when that overflows int64_t: every type kiln infers is
/// checked with it, so getNumElements() of an op's result cannot wrap.
std::optional<int64_t> staticByteSize(mlir::ShapedType type);

/// The values of a constant integer tensor operand, if it is one.
std::optional<llvm::SmallVector<int64_t>> getConstantInts(mlir::Value value);

/// Raw bytes of a constant in the runtime's layout (i1 as one byte).
std::vector<char> constantBytes(mlir::ElementsAttr attr);

/// The same without a copy where the constant is a resource blob (every
/// weight and table): a view of the blob, else of `storage`, which is filled.
llvm::ArrayRef<char> constantData(mlir::ElementsAttr attr, std::vector<char> &storage);

/// Constants up to this size are inline dense attributes; larger ones are
/// resource blobs, so that their bytes are held once.
constexpr size_t kInlineConstantBytes = 256;

/// A constant holding `bytes` (in the runtime's layout) as `type`; above
/// kInlineConstantBytes it is a 64-byte aligned dense_resource blob named `name`.
mlir::ElementsAttr makeConstant(mlir::RankedTensorType type, llvm::ArrayRef<char> bytes,
                                llvm::StringRef name);

/// makeConstant of a vector of `type`'s elements.
template <typename T>
mlir::ElementsAttr makeConstant(mlir::RankedTensorType type, const std::vector<T> &values,
                                llvm::StringRef name) {
  return makeConstant(type,
                      llvm::ArrayRef(reinterpret_cast<const char *>(values.data()),
                                     values.size() * sizeof(T)),
                      name);
}

/// kiln.dense's activation as the kernels' kiln::cpu::Activation value, or
/// -1 for an unknown name.
int32_t denseActivationCode(llvm::StringRef name);

} // namespace kiln

#define GET_OP_CLASSES
#include "KilnOps.h.inc"

namespace kiln {

/// True for ops whose result is their input's bytes under another shape.
inline bool isReshapeLike(mlir::Operation *op) {
  return mlir::isa<ReshapeOp, FlattenOp, SqueezeOp, UnsqueezeOp>(op);
}

/// The value at the top of a chain of single-use reshape-like ops ending in
/// `v` (`v` itself when it is not such a view).
inline mlir::Value throughSingleUseReshapes(mlir::Value v) {
  while (v.hasOneUse() && v.getDefiningOp() && isReshapeLike(v.getDefiningOp()))
    v = v.getDefiningOp()->getOperand(0);
  return v;
}

/// True for ops whose CPU kernel can write its result as rows of the last
/// dim any number of elements apart (`kiln.row_stride`), so that the result
/// can be a column block of a concat's buffer.
inline bool writesStridedRows(mlir::Operation *op) {
  if (auto g = mlir::dyn_cast<GatherOp>(op))
    return g.getAxis() == 0 && g.getData().getType().getRank() == 2;
  return mlir::isa<DenseOp, EmbeddingBagOp, EmbeddingBagsOp, InteractionOp, AddOp, SubOp, MulOp,
                   DivOp, MaxOp, MinOp, PowOp>(op);
}

/// True for ops that compute each result element only from the operand
/// elements at the same position (numpy broadcasting aside), so that the
/// result may overwrite an operand of the same size and ops of this kind can
/// run fused in one loop: unary ops, broadcasting arithmetic, and such a
/// fused loop. Not copies: a copy exists to give an output its own bytes.
inline bool isElementwise(mlir::Operation *op) {
  if (mlir::isa<CopyOp>(op))
    return false;
  return op->hasTrait<mlir::OpTrait::SameOperandsAndResultType>() ||
         mlir::isa<AddOp, SubOp, MulOp, DivOp, MaxOp, MinOp, PowOp, FusedElementwiseOp>(op);
}

/// True for ops that only move, select or convert elements (and constants):
/// the ops generated code runs on f16 and bf16 tensors. kiln-widen-half
/// gives every other op f32 operands and results.
inline bool movesDataOnly(mlir::Operation *op) {
  return isReshapeLike(op) ||
         mlir::isa<ConstantOp, CastOp, TransposeOp, ConcatOp, GatherOp, SliceOp, ExpandOp,
                   GatherElementsOp, GatherNDOp, PadOp, WhereOp, CopyOp, ShapeOp, TriluOp,
                   ConstantOfShapeOp>(
             op);
}

/// One sliced axis after ONNX clamping: `count` elements from `start` by `step`.
struct SliceRange {
  int64_t start, step, count;
};

/// Every axis of a slice resolved, or nothing while a bound or size is unknown.
std::optional<llvm::SmallVector<SliceRange>> getSliceRanges(SliceOp op);

/// The flat element offset of a slice's result in its input when the result
/// is one contiguous run of the input's elements (whole trailing axes, one
/// partial axis of step 1, single indices before it), else nothing.
std::optional<int64_t> contiguousSliceOffset(SliceOp op);

/// Data-movement ops (reshapes, copies, casts, transposes, slices, expands,
/// gathers with constant indices) on static shapes: for each result element,
/// the flat index of the operand-0 element it takes. Nothing for other ops,
/// unresolved parameters, or results over kMaxTrackedElements.
constexpr int64_t kMaxTrackedElements = int64_t(1) << 22;
std::optional<llvm::SmallVector<int64_t>> getSourceIndices(mlir::Operation *op);

/// The value of an i64 or i32 tensor that follows from constants through data
/// movement, Add, Sub, Mul and Range, however large its static type (up to
/// kMaxTrackedElements): index arithmetic the folders leave unevaluated above
/// kMaxFoldElements, such as a mask re-expanded per row of a large bucket.
/// Gathers in getSourceIndices take their indices from it.
std::optional<llvm::SmallVector<int64_t>> evaluateInts(mlir::Value value);

} // namespace kiln

#endif
