//===- ModelSource.h - planned kiln IR -> model source ----------*- C++ -*-===//
#ifndef KILN_CODEGEN_MODELSOURCE_H
#define KILN_CODEGEN_MODELSOURCE_H

#include "mlir/IR/BuiltinOps.h"
#include "llvm/Support/raw_ostream.h"

#include "Weights.h"

#include <optional>
#include <string>
#include <vector>

namespace kiln {

/// The x86-64 instruction sets a CPU model is built for (kiln compile --cpu),
/// each level all of the one before: AVX2/FMA/F16C; AVX-512 F/BW/VL (the f32
/// dense kernels in 16 lanes); AVX-512 VNNI (the int8 dense kernel
/// multiplies with vpdpbusd); AVX-512 BF16 (--precision bf16 multiplies with
/// vdpbf16ps).
enum class CpuIsa { Avx2, Avx512, Avx512Vnni, Avx512Bf16 };

/// The --cpu name of each level, and its CpuIsa.
CpuIsa cpuIsaNamed(llvm::StringRef name);

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
  /// Embedded weights: the file name the generated source's `.incbin`
  /// reads them from, found through the assembler's include path.
  std::string embeddedWeightsFile = "kiln_weights.bin";
  /// Weights in a file beside the .so instead (kiln compile --weights-file):
  /// its name, which the descriptor records; empty to embed them.
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
  /// --precision bf16 on the CPU: dense layers with bf16 weights round their
  /// inputs to bf16 too (HalfFormat::Bf16Dot), instead of taking them in f32.
  bool bf16Inputs = false;
  /// Set for a CUDA model (kernels.cuh, session.cuh), unset for the CPU.
  std::optional<CudaOptions> cuda;
};

/// Translates a module of planned `@main_b<N>` functions into one
/// translation unit: an entry point per bucket calling the target's kernels
/// at the planned arena offsets, and the exported model descriptor (with the
/// device hooks of session.cuh for CUDA). Constants are laid out in
/// `weights` (64-byte aligned, each once, a CUDA model's host tables last);
/// with `info.weightsFile` set, `weightsHash` is their hash, which the
/// descriptor records and the weights file's header must carry.
mlir::LogicalResult emitModel(mlir::ModuleOp module, const ModelInfo &info, llvm::raw_ostream &os,
                              WeightImage &weights, uint64_t &weightsHash);

} // namespace kiln

#endif
