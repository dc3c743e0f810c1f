//===- Toolchain.h - building a model .so with the system compiler -*- C++ -*-===//
#ifndef KILN_CODEGEN_CPU_TOOLCHAIN_H
#define KILN_CODEGEN_CPU_TOOLCHAIN_H

#include "mlir/Support/LLVM.h"

#include <string>

namespace kiln {

/// Writes the kernel and ABI headers the generated source includes into `dir`.
mlir::LogicalResult writeSupportHeaders(llvm::StringRef dir, std::string &error);

/// Compiles `dir`/`source` (which .incbin's files from `dir`) into the shared
/// library `output` with $CXX (default c++). On failure `error` holds the
/// compiler's diagnostics.
mlir::LogicalResult buildSharedLibrary(llvm::StringRef dir, llvm::StringRef source,
                                       llvm::StringRef output, std::string &error);

} // namespace kiln

#endif
