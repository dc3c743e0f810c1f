//===- Accuracy.h - what a quantised compile costs in accuracy --*- C++ -*-===//
#ifndef KILN_TOOLS_KILN_ACCURACY_H
#define KILN_TOOLS_KILN_ACCURACY_H

#include "compiler/pipeline/Pipeline.h"

#include "llvm/Support/JSON.h"

#include <string>
#include <vector>

namespace kiln {

struct AccuracyOptions {
  /// Where the JSON report goes; empty: no file, the summary only.
  std::string reportPath;
  /// An .npz of validation inputs (keys: input names, rows along the batch
  /// dim); empty: synthetic rows (randomInputs).
  std::string validationPath;
  /// Synthetic rows; 0: 10,000 when an output is a probability (for the
  /// AUC), else 1,024 (the differences need fewer).
  int64_t rows = 0;
  /// Probability outputs: largest mean |p - p_f32| and AUC drop.
  double maxMeanDiff = 1e-3, maxAucDrop = 1e-3;
  /// Other outputs: largest mean |y - y_f32| / mean |y_f32|.
  double maxRelativeDiff = 1e-2;
  /// Keep a model outside the bounds (the report still says so).
  bool allowLoss = false;
  /// How int8 (or fp8) activations are quantised, for the report.
  std::string activations = "dynamic, per row";
};

/// Per output, how far a quantised model's values are from its f32 twin's.
struct OutputStats {
  std::string name;
  double maxAbs = 0, sumAbs = 0, sumAbsReference = 0;
  int64_t count = 0;
  bool perRowScalar = true, inUnitInterval = true;
  std::vector<double> reference, quantized; // per-row scalars only
};

/// The two models run on the same validation rows.
struct Comparison {
  std::vector<OutputStats> outputs;
  int64_t rows = 0;
};

/// Runs the models at `quantizedPath` and `referencePath` (the f32 twin,
/// with the same buckets or more) through the runtime on the validation rows
/// `accuracy` names (or synthetic rows); false with `error` on failure.
bool compareModels(const std::string &quantizedPath, const std::string &referencePath,
                   const AccuracyOptions &accuracy, Comparison &comparison, std::string &error);

/// What a comparison means against the bounds.
struct Verdict {
  bool withinBound = true;
  /// The largest ratio of a measured difference to its bound (<= 1 within
  /// the bound; infinite for NaN).
  double worst = 0;
  /// One line per output; the outputs beyond their bound.
  std::string summary, violations;
  llvm::json::Array outputs;
};
Verdict judge(const Comparison &comparison, const AccuracyOptions &accuracy);

/// The report's fields every quantised compile shares (model, modes,
/// activations, validation, bound, outputs).
llvm::json::Object reportOf(const CompileOptions &options, const AccuracyOptions &accuracy,
                            int64_t rows, Verdict &verdict);

/// Writes `report` as JSON to accuracy.reportPath (nothing when empty).
bool writeReport(const AccuracyOptions &accuracy, llvm::json::Object report, std::string &error);

/// The weight bytes of the compiled model at `path`; throws kiln::Error.
uint64_t modelWeightsBytes(const std::string &path);

/// Compiles `options` after recording, for its report, the weight bytes of
/// the f32 model already compiled at `f32Path`; false (the error printed) on
/// failure.
bool compileBesideF32(CompileOptions &options, const std::string &f32Path);

/// Removes the compiled model at `output` and its weights file, if any.
void removeModel(const std::string &output);

/// Compiles the quantised model `options` asks for and its f32 twin, runs
/// both on the validation rows and reports, per output, the max and mean
/// absolute difference and, for an output of one value in [0, 1] per row
/// (a probability), the AUC of both models against labels drawn from the
/// f32 probabilities. Outside the bounds the compile fails and the model is
/// removed, unless allowLoss. Returns the exit code.
int compileQuantized(const CompileOptions &options, const AccuracyOptions &accuracy);

} // namespace kiln

#endif
