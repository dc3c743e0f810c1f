//===- Pipeline.h - the kiln pass pipeline, declared once -------*- C++ -*-===//
#ifndef KILN_COMPILER_PIPELINE_PIPELINE_H
#define KILN_COMPILER_PIPELINE_PIPELINE_H

#include "mlir/Pass/PassManager.h"

#include <cstdint>
#include <string>
#include <vector>

namespace kiln {

struct CompileOptions {
  std::string input;
  std::string output;
  std::vector<int64_t> batches{1};
  /// "cpu" or "cuda".
  std::string target = "cpu";
  /// CPU: the instruction sets, "avx2", "avx512" or "avx512-vnni" ("native" is
  /// resolved by resolveNativeCpu before compiling).
  std::string cpu = "avx2";
  /// CUDA: the compute capability the code is built for (sm_90 and PTX), and
  /// the dense layers' arithmetic: fp32, tf32, bf16 or fp16.
  int cudaSm = 90;
  std::string precision = "fp32";
  /// CUDA: embedding tables of more bytes than this stay in host memory and
  /// are pooled on the CPU (kiln-place-host-tables); -1 keeps all on the
  /// device.
  int64_t hostTablesOver = -1;
  /// "so" (the model library), "cpp" (its source) or "mlir".
  std::string emit = "so";
  /// The last stage to run; empty runs them all.
  std::string stopAfter;
  bool keepTemps = false;
  bool quiet = false;
  /// Build the model with per-op timers (CPU only: profile.h).
  bool profile = false;
  /// Dense weight precision: "" (f32), "int8", "fp16" or "bf16".
  std::string weightPrecision;
  /// Embedding table bits: 32 (f32), 8 or 4 (row-wise quantised).
  int tableBits = 32;
  /// int8 with static calibration: each int8 layer's input range, lo, hi
  /// pairs in layer order (kiln-quantize-dense's input-ranges).
  std::vector<double> inputRanges;
  /// Layers and tables that stay f32 in a quantised compile: their indices
  /// in quantizableLayers / quantizableTables order (kiln-quantize-dense's
  /// keep-layers, kiln-quantize-tables' keep-tables; --quantize auto).
  std::vector<int64_t> keepLayers, keepTables;
  /// Compile the f32 calibration observer instead (kiln-expose-dense-inputs).
  bool exposeDenseInputs = false;
  /// Weight bytes of this model compiled at f32, recorded in a quantised
  /// model's descriptor (0: not known).
  uint64_t f32WeightsBytes = 0;
  /// Graph inputs to bake in as constants: name -> TensorProto file.
  std::vector<std::pair<std::string, std::string>> freeze;
  /// Where the weights go: "auto" (embedded up to kEmbedLimitBytes, else a
  /// weights file), "file" (always the weights file beside the .so) or
  /// "embed" (always embedded; refused above kEmbedLimitBytes).
  std::string weights = "auto";
  /// A model whose rows kiln cannot prove independent across the batch
  /// (kiln-check-row-independence): "refuse" it, or compile it to run only
  /// at batch sizes that are buckets ("exact-buckets").
  std::string rowMixing = "refuse";
};

/// The most weight bytes a model .so embeds: its read-only data must stay
/// within the reach of its code's 32-bit displacements, with room to spare.
constexpr uint64_t kEmbedLimitBytes = uint64_t(1) << 30;

/// Where `kiln compile -o OUTPUT` writes the weights file: OUTPUT with its
/// `.so` suffix replaced by `.weights` (appended where it has none).
std::string weightsFilePath(const std::string &output);

/// The same compile at f32 for the CPU: no quantisation, no calibrated
/// ranges, and the AVX2 build (f32 code gains nothing from AVX-512 VNNI).
/// What a quantised compile checks itself against, and what calibration
/// observes (for a CUDA compile too: the observer runs here).
CompileOptions f32Options(const CompileOptions &options);

/// The stages in order: "import", then one per pass, then "emit-cpp".
const std::vector<std::string> &pipelineStages();

/// Adds the passes of the stages after import, up to and including
/// `stopAfter` (all of them when empty).
void buildPipeline(mlir::PassManager &pm, const CompileOptions &options);

} // namespace kiln

#endif
