//===- Accuracy.h - what a quantised compile costs in accuracy --*- C++ -*-===//
#ifndef KILN_TOOLS_KILN_ACCURACY_H
#define KILN_TOOLS_KILN_ACCURACY_H

#include "compiler/pipeline/Pipeline.h"

#include <string>

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

/// Compiles the quantised model `options` asks for and its f32 twin, runs
/// both on the validation rows and reports, per output, the max and mean
/// absolute difference and, for an output of one value in [0, 1] per row
/// (a probability), the AUC of both models against labels drawn from the
/// f32 probabilities. Outside the bounds the compile fails and the model is
/// removed, unless allowLoss. Returns the exit code.
int compileQuantized(const CompileOptions &options, const AccuracyOptions &accuracy);

} // namespace kiln

#endif
