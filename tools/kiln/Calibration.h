//===- Calibration.h - static ranges for int8 activations -------*- C++ -*-===//
#ifndef KILN_TOOLS_KILN_CALIBRATION_H
#define KILN_TOOLS_KILN_CALIBRATION_H

#include "compiler/pipeline/Pipeline.h"

#include <string>

namespace kiln {

struct CalibrationOptions {
  /// An .npz of calibration inputs (keys: input names, rows along the batch dim).
  std::string path;
  /// "minmax": each layer's input range is the observed [min, max];
  /// "percentile": [the (100 - p)th, the pth] percentile of its values.
  std::string method = "minmax";
  double percentile = 99.99;
};

/// Compiles the f32 model with every int8 layer's input exposed
/// (kiln-expose-dense-inputs), runs it on the calibration rows through the
/// runtime and sets `options.inputRanges` from what each layer saw.
/// `summary` says what was done; false with `error` on failure.
bool calibrate(CompileOptions &options, const CalibrationOptions &calibration, std::string &summary,
               std::string &error);

} // namespace kiln

#endif
