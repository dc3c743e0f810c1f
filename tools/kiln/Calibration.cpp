//===- Calibration.cpp - static ranges for int8 activations ---------------===//
//
// The observer model runs in chunks of kChunk rows. A layer's input has
// rows-per-sample times the chunk's rows (a [batch * 50, K] history layer
// included); the rows of a short last chunk's padding are left out.
//
//===----------------------------------------------------------------------===//

#include "Calibration.h"

#include "TensorIO.h"

#include "compiler/pipeline/Driver.h"
#include "compiler/transforms/Passes.h"
#include "kiln/runtime.hpp"

#include "llvm/ADT/ScopeExit.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/FormatVariadic.h"

#include <algorithm>
#include <cmath>
#include <thread>

namespace kiln {
namespace {

constexpr int64_t kChunk = 64;
/// At most this many values of a layer are kept for its percentiles.
constexpr int64_t kMaxSamples = int64_t(1) << 21;

struct LayerStats {
  double lo = 0, hi = 0;
  std::vector<float> samples;
  int64_t seen = 0, stride = 1;
};

} // namespace

bool calibrate(CompileOptions &options, const CalibrationOptions &calibration, std::string &summary,
               std::string &error) {
  const bool percentile = calibration.method == "percentile";
  if (!percentile && calibration.method != "minmax") {
    error = "--calibration-method must be minmax or percentile";
    return false;
  }
  if (percentile && !(calibration.percentile > 50 && calibration.percentile <= 100)) {
    error = "--calibration-percentile must be in (50, 100]";
    return false;
  }
  llvm::SmallString<128> dir;
  if (llvm::sys::fs::createUniqueDirectory("kiln-calibration", dir)) {
    error = "cannot create a temporary folder";
    return false;
  }
  llvm::scope_exit cleanup([&] { llvm::sys::fs::remove_directories(dir); });
  CompileOptions observer = f32Options(options);
  observer.exposeDenseInputs = true;
  observer.batches = {kChunk};
  observer.output = (dir + "/observer.so").str();
  observer.emit = "so";
  observer.stopAfter.clear();
  observer.quiet = true;
  if (!options.quiet)
    llvm::errs() << "kiln: compiling the f32 model that observes the int8 layers' inputs\n";
  if (mlir::failed(compileModel(observer))) {
    error = "the calibration model did not compile";
    return false;
  }

  std::vector<LayerStats> layers;
  int64_t rows = 0;
  try {
    Model model(observer.output);
    Session session(model, int(std::max(1u, std::thread::hardware_concurrency())));
    const kiln_model *m = model.get();
    std::vector<HostTensor> given;
    if (!readInputRows(m, calibration.path, given, rows, error))
      return false;
    const auto outputInfos = tensorInfos(m, false);
    std::vector<size_t> exposed;
    for (size_t o = 0; o < outputInfos.size(); ++o)
      if (llvm::StringRef(outputInfos[o].name).starts_with(kCalibrationOutputPrefix))
        exposed.push_back(o);
    layers.resize(exposed.size());
    for (int64_t begin = 0; begin < rows; begin += kChunk) {
      const int64_t batch = std::min(kChunk, rows - begin);
      std::vector<HostTensor> inputs = inputRows(m, given, begin, batch);
      std::vector<HostTensor> outputs = outputBuffers(m, batch);
      std::vector<kiln_tensor> in = views(inputs), out = views(outputs);
      session.run(batch, in.data(), int32_t(in.size()), out.data(), int32_t(out.size()));
      for (size_t l = 0; l < exposed.size(); ++l) {
        const HostTensor &t = outputs[exposed[l]];
        // The rows of this chunk's samples: a multiple of the bucket's rows
        // is `rows per sample` times the bucket.
        int64_t n = t.elements();
        if (!t.shape.empty() && t.shape[0] % kChunk == 0)
          n = n / kChunk * batch;
        LayerStats &s = layers[l];
        if (percentile && s.seen == 0)
          s.stride = std::max<int64_t>(1, n * ((rows + kChunk - 1) / kChunk) / kMaxSamples);
        const float *x = reinterpret_cast<const float *>(t.data.data());
        for (int64_t i = 0; i < n; ++i, ++s.seen) {
          if (!std::isfinite(x[i]))
            continue;
          s.lo = std::min<double>(s.lo, x[i]);
          s.hi = std::max<double>(s.hi, x[i]);
          if (percentile && s.seen % s.stride == 0)
            s.samples.push_back(x[i]);
        }
      }
    }
  } catch (const Error &e) {
    error = e.what();
    return false;
  }

  options.inputRanges.clear();
  for (LayerStats &s : layers) {
    if (percentile && !s.samples.empty()) {
      auto at = [&](double p) {
        auto k = s.samples.begin() + int64_t(std::llround(p / 100 * double(s.samples.size() - 1)));
        std::nth_element(s.samples.begin(), k, s.samples.end());
        return double(*k);
      };
      s.lo = std::min(0.0, at(100 - calibration.percentile));
      s.hi = std::max(0.0, at(calibration.percentile));
    }
    options.inputRanges.push_back(s.lo);
    options.inputRanges.push_back(s.hi);
  }
  summary = "static, " +
            (percentile ? llvm::formatv("{0}th percentile", calibration.percentile).str()
                        : std::string("min/max")) +
            " of " + std::to_string(layers.size()) + " layers' inputs over " +
            std::to_string(rows) + " rows of " + calibration.path;
  return true;
}

} // namespace kiln
