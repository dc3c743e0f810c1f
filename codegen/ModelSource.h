//===- ModelSource.h - planned kiln IR -> model source ----------*- C++ -*-===//
#ifndef KILN_CODEGEN_MODELSOURCE_H
#define KILN_CODEGEN_MODELSOURCE_H

#include "mlir/IR/BuiltinOps.h"
#include "llvm/Support/raw_ostream.h"

#include <optional>
#include <string>
#include <vector>

namespace kiln {

/// The x86-64 instruction sets a CPU model is built for (kiln compile --cpu):
/// AVX2/FMA/F16C, or those plus AVX-512 (F, BW, VL) and VNNI, which the
/// int8 dense kernel then multiplies with.
enum class CpuIsa { Avx2, Avx512Vnni };

/// What the CUDA target adds to a model (kiln compile --target cuda).
struct CudaOptions {
  /// The oldest compute capability the code runs on, e.g. 90 (sm_90).
  int sm = 90;
  /// The arithmetic of dense layers: a kiln::cuda::Precision enumerator
  /// (Fp32, Tf32, Bf16 or Fp16).
  std::string precision = "Fp32";
};

struct ModelInfo {
  std::string compilerVersion;
  std::string modelHash;
  /// File name the generated source's `.incbin` reads the weights from,
  /// found through the assembler's include path.
  std::string weightsFile;
  /// Time every op (`profile.h`, CPU only); the model prints the table when unloaded.
  bool profile = false;
  /// The --quantize modes ("none" for f32) and the weight bytes of the same
  /// model at f32 (0: these weights, with any 16-bit dense weights of a
  /// CUDA model counted at f32).
  std::string quantization = "none";
  uint64_t f32WeightsBytes = 0;
  /// The instruction sets of a CPU model.
  CpuIsa cpu = CpuIsa::Avx2;
  /// Set for a CUDA model (kernels.cuh, session.cuh), unset for the CPU.
  std::optional<CudaOptions> cuda;
};

/// Translates a module of planned `@main_b<N>` functions into one
/// translation unit: an entry point per bucket calling the target's kernels
/// at the planned arena offsets, and the exported model descriptor (with the
/// device hooks of session.cuh for CUDA). Constant bytes are appended to
/// `weights` (64-byte aligned, each constant once).
mlir::LogicalResult emitModel(mlir::ModuleOp module, const ModelInfo &info, llvm::raw_ostream &os,
                              std::vector<char> &weights);

} // namespace kiln

#endif
