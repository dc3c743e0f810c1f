//===- Driver.h - ONNX file -> model .so ------------------------*- C++ -*-===//
#ifndef KILN_COMPILER_PIPELINE_DRIVER_H
#define KILN_COMPILER_PIPELINE_DRIVER_H

#include "Pipeline.h"

namespace kiln {

/// Imports, runs the pipeline and writes what `options.emit` asks for.
/// Errors are printed to stderr with the node or file they concern.
mlir::LogicalResult compileModel(const CompileOptions &options);

/// Checks the target options (--target, --cpu, --sm, --precision) and what
/// they exclude; prints the error.
mlir::LogicalResult checkTargetOptions(const CompileOptions &options);

/// --cpu native: the instruction sets of this machine ("avx512-vnni" where
/// it has AVX-512 F/BW/VL and VNNI, else "avx2"). Other values are kept.
std::string resolveNativeCpu(const std::string &cpu);

} // namespace kiln

#endif
