//===- Driver.h - ONNX file -> model .so ------------------------*- C++ -*-===//
#ifndef KILN_COMPILER_PIPELINE_DRIVER_H
#define KILN_COMPILER_PIPELINE_DRIVER_H

#include "Pipeline.h"

namespace kiln {

/// Imports, runs the pipeline and writes what `options.emit` asks for.
/// Errors are printed to stderr with the node or file they concern.
mlir::LogicalResult compileModel(const CompileOptions &options);

/// What a quantised compile can keep f32, in the order CompileOptions'
/// keepLayers / keepTables index: the dense layers of options.weightPrecision
/// (int8 when empty) and, with options.tableBits below 32, the embedding
/// tables; each named as in the ONNX model (its node or initializer), with
/// its f32 bytes.
struct QuantizationUnits {
  struct Unit {
    std::string name;
    uint64_t bytes;
  };
  std::vector<Unit> layers, tables;
};
mlir::FailureOr<QuantizationUnits> listQuantizationUnits(const CompileOptions &options);

/// Checks the target options (--target, --cpu, --sm, --precision) and what
/// they exclude; prints the error.
mlir::LogicalResult checkTargetOptions(const CompileOptions &options);

/// --cpu native: the instruction sets of this machine ("avx512-vnni" where
/// it has AVX-512 F/BW/VL and VNNI, "avx512" where it has F/BW/VL only, else
/// "avx2"; "avx512-bf16" for --precision bf16 where it has AVX-512 BF16).
/// Other values are kept.
std::string resolveNativeCpu(const std::string &cpu, const std::string &precision);

} // namespace kiln

#endif
