//===- EmitCpp.h - planned kiln IR -> C++ model source ----------*- C++ -*-===//
#ifndef KILN_CODEGEN_CPU_EMITCPP_H
#define KILN_CODEGEN_CPU_EMITCPP_H

#include "mlir/IR/BuiltinOps.h"
#include "llvm/Support/raw_ostream.h"

#include <string>
#include <vector>

namespace kiln {

struct CpuModelInfo {
  std::string compilerVersion;
  std::string modelHash;
  /// File name the generated source's `.incbin` reads the weights from,
  /// found through the assembler's include path.
  std::string weightsFile;
  /// Time every op (`profile.h`); the model prints the table when unloaded.
  bool profile = false;
  /// The --quantize modes ("none" for f32) and the weight bytes of the same
  /// model at f32 (0: these weights are f32).
  std::string quantization = "none";
  uint64_t f32WeightsBytes = 0;
};

/// Translates a module of planned `@main_b<N>` functions into one C++
/// translation unit: an entry point per bucket calling the CPU kernels at
/// the planned arena offsets, and the exported model descriptor. Constant
/// bytes are appended to `weights` (64-byte aligned, each constant once).
mlir::LogicalResult emitCpuModel(mlir::ModuleOp module, const CpuModelInfo &info,
                                 llvm::raw_ostream &os, std::vector<char> &weights);

} // namespace kiln

#endif
