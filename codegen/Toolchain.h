//===- Toolchain.h - building a model .so -----------------------*- C++ -*-===//
#ifndef KILN_CODEGEN_TOOLCHAIN_H
#define KILN_CODEGEN_TOOLCHAIN_H

#include "ModelSource.h"

#include "mlir/Support/LLVM.h"

#include <string>

namespace kiln {

/// Writes the kernel and ABI headers the generated source includes into `dir`.
mlir::LogicalResult writeSupportHeaders(llvm::StringRef dir, std::string &error);

/// Compiles `dir`/`source` (which .incbin's files from `dir`) into the shared
/// library `output`: C++ with $CXX (default c++), or with `cudaSm` > 0 CUDA
/// with $NVCC (default nvcc, else /usr/local/cuda/bin/nvcc) for sm_<cudaSm>
/// plus PTX for newer GPUs, cudart linked statically and cuBLASLt
/// dynamically; C++ for the instruction sets `cpu`. On failure `error`
/// holds the compiler's diagnostics.
mlir::LogicalResult buildSharedLibrary(llvm::StringRef dir, llvm::StringRef source,
                                       llvm::StringRef output, int cudaSm, CpuIsa cpu,
                                       std::string &error);

} // namespace kiln

#endif
