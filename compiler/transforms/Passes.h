//===- Passes.h - kiln compiler passes --------------------------*- C++ -*-===//
#ifndef KILN_COMPILER_TRANSFORMS_PASSES_H
#define KILN_COMPILER_TRANSFORMS_PASSES_H

#include "dialects/KilnOps.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Pass/Pass.h"

namespace kiln {

#define GEN_PASS_DECL
#include "compiler/transforms/Passes.h.inc"

#define GEN_PASS_REGISTRATION
#include "compiler/transforms/Passes.h.inc"

/// Whether kiln-quantize-dense{precision=int8} stores this layer at int8:
/// an unpacked constant f32 weight no deeper than the int8 kernel allows.
bool isInt8Candidate(DenseOp d);

/// The layers of `f` kiln-quantize-dense{precision} changes (int8:
/// isInt8Candidate; fp16, bf16: every unpacked layer of finite constant f32
/// weights), in order: what its keep-layers and input-ranges index.
llvm::SmallVector<DenseOp> quantizableLayers(mlir::func::FuncOp f, llvm::StringRef precision);

/// Turns `f`'s row gathers from constant tables whose rows shrink at `bits`
/// into unpooled embedding_bags (rowGatherAsEmbeddingBags), then returns
/// the distinct constant tables of its embedding_bags that
/// kiln-quantize-tables{bits} stores row-wise, in order of first use: what
/// its keep-tables indexes.
llvm::SmallVector<ConstantOp> quantizableTables(mlir::func::FuncOp f, int bits,
                                                mlir::RewriterBase &rewriter);

/// Rewrites a gather of rows (axis 0) from a constant f32 [rows, dim] table
/// as an unpooled kiln.embedding_bags (mode 3) and a reshape: the lookup
/// form whose tables can be stored row-wise quantised or in host memory.
/// Fails, changing nothing, for any other gather.
mlir::FailureOr<EmbeddingBagsOp> rowGatherAsEmbeddingBags(GatherOp gather,
                                                          mlir::RewriterBase &rewriter);

/// kiln-expose-dense-inputs names the i-th exposed input this prefix + i.
constexpr llvm::StringLiteral kCalibrationOutputPrefix = "kiln.calibration.";

} // namespace kiln

#endif
