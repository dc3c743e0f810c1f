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

/// True for ops whose result is a view of their input's bytes.
inline bool isAliasOp(mlir::Operation *op) {
  return mlir::isa<ReshapeOp, FlattenOp, SqueezeOp, UnsqueezeOp>(op);
}

} // namespace kiln

#endif
