//===- Driver.h - ONNX file -> model .so ------------------------*- C++ -*-===//
#ifndef KILN_COMPILER_PIPELINE_DRIVER_H
#define KILN_COMPILER_PIPELINE_DRIVER_H

#include "Pipeline.h"

namespace kiln {

/// Imports, runs the pipeline and writes what `options.emit` asks for.
/// Errors are printed to stderr with the node or file they concern.
mlir::LogicalResult compileModel(const CompileOptions &options);

/// Checks the target options (--target, --sm, --precision) and what they
/// exclude; prints the error.
mlir::LogicalResult checkTargetOptions(const CompileOptions &options);

} // namespace kiln

#endif
