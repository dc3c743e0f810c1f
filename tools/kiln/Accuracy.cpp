//===- Accuracy.cpp - what a quantised compile costs in accuracy ----------===//
//
// Both models run through the runtime's C ABI, as a serving host runs them,
// on the same rows in chunks of the largest bucket.
//
//===----------------------------------------------------------------------===//

#include "Accuracy.h"

#include "TensorIO.h"

#include "compiler/pipeline/Driver.h"
#include "kiln/runtime.hpp"

#include "llvm/ADT/ScopeExit.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/Format.h"
#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/JSON.h"
#include "llvm/Support/raw_ostream.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <thread>

namespace kiln {
namespace {

int fail(const std::string &message) {
  llvm::errs() << "kiln: error: " << message << "\n";
  return 1;
}

/// Area under the ROC curve of `scores` for `labels`, ties counted half;
/// NaN without both classes.
double auc(const std::vector<double> &scores, const std::vector<bool> &labels) {
  std::vector<size_t> order(scores.size());
  for (size_t i = 0; i < order.size(); ++i)
    order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return scores[a] < scores[b]; });
  double positiveRanks = 0;
  size_t positives = 0;
  for (size_t i = 0; i < order.size();) {
    size_t j = i;
    while (j < order.size() && scores[order[j]] == scores[order[i]])
      ++j;
    const double rank = (double(i) + double(j - 1)) / 2 + 1; // average rank of the tie
    for (size_t k = i; k < j; ++k)
      if (labels[order[k]]) {
        positiveRanks += rank;
        ++positives;
      }
    i = j;
  }
  const size_t negatives = scores.size() - positives;
  if (!positives || !negatives)
    return NAN;
  return (positiveRanks - double(positives) * (positives + 1) / 2) /
         (double(positives) * double(negatives));
}

std::string number(const char *format, double v) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, format, v);
  return buffer;
}

} // namespace

bool compareModels(const std::string &quantizedPath, const std::string &referencePath,
                   const AccuracyOptions &accuracy, Comparison &comparison, std::string &error) {
  constexpr int64_t kAucRows = 10000, kDiffRows = 1024;
  int64_t rows = accuracy.rows ? accuracy.rows : kAucRows;
  std::vector<OutputStats> &stats = comparison.outputs;
  stats.clear();
  try {
    Model quantizedModel(quantizedPath), referenceModel(referencePath);
    const int threads = int(std::max(1u, std::thread::hardware_concurrency()));
    Session quantizedSession(quantizedModel, threads), referenceSession(referenceModel, threads);
    const kiln_model *m = quantizedModel.get();
    int64_t chunk = 1;
    for (int32_t b = 0; b < kiln_model_num_buckets(m); ++b)
      chunk = std::max<int64_t>(chunk, kiln_model_bucket_batch(m, b));
    std::vector<HostTensor> validation;
    if (!accuracy.validationPath.empty() &&
        !readInputRows(m, accuracy.validationPath, validation, rows, error))
      return false;
    for (const kiln_tensor_info &info : tensorInfos(m, false))
      stats.push_back(OutputStats{info.name});
    for (int64_t begin = 0; begin < rows; begin += chunk) {
      const int64_t batch = std::min(chunk, rows - begin);
      std::vector<HostTensor> inputs = validation.empty()
                                           ? randomInputs(m, batch, uint64_t(begin) + 1)
                                           : inputRows(m, validation, begin, batch);
      std::vector<kiln_tensor> in = views(inputs);
      auto run = [&](Session &session, std::vector<HostTensor> &outputs) {
        std::vector<kiln_tensor> out = views(outputs);
        session.run(batch, in.data(), int32_t(in.size()), out.data(), int32_t(out.size()));
      };
      auto got = outputBuffers(m, batch), want = outputBuffers(referenceModel.get(), batch);
      run(quantizedSession, got);
      run(referenceSession, want);
      bool probabilities = false;
      for (size_t o = 0; o < stats.size(); ++o) {
        OutputStats &s = stats[o];
        const int64_t n = want[o].elements();
        s.perRowScalar &= n == batch;
        for (int64_t i = 0; i < n; ++i) {
          const double a = got[o].value(i), b = want[o].value(i), d = std::fabs(a - b);
          s.maxAbs = std::max(s.maxAbs, std::isnan(d) ? INFINITY : d);
          s.sumAbs += d;
          s.sumAbsReference += std::fabs(b);
          s.inUnitInterval &= b >= 0 && b <= 1;
          if (s.perRowScalar) {
            s.reference.push_back(b);
            s.quantized.push_back(a);
          }
        }
        s.count += n;
        probabilities |= s.perRowScalar && s.inUnitInterval;
      }
      if (!probabilities && !accuracy.rows && validation.empty())
        rows = std::min(rows, std::max(kDiffRows, begin + batch));
    }
  } catch (const Error &e) {
    error = e.what();
    return false;
  }
  comparison.rows = rows;
  return true;
}

Verdict judge(const Comparison &comparison, const AccuracyOptions &accuracy) {
  Verdict verdict;
  // A NaN ratio (a NaN output) counts as infinitely far.
  auto weigh = [&](double value, double bound) {
    const double ratio = value / bound;
    verdict.worst = std::max(verdict.worst, std::isnan(ratio) ? INFINITY : ratio);
    return value <= bound;
  };
  for (const OutputStats &s : comparison.outputs) {
    const double mean = s.count ? s.sumAbs / s.count : 0;
    llvm::json::Object o{{"name", s.name},
                         {"max_abs_diff", s.maxAbs},
                         {"mean_abs_diff", mean},
                         {"elements", s.count}};
    llvm::raw_string_ostream line(verdict.summary);
    line << "  " << s.name << ": max |diff| " << llvm::format("%.3g", s.maxAbs) << ", mean |diff| "
         << llvm::format("%.3g", mean);
    const bool probability = s.perRowScalar && s.inUnitInterval && !s.reference.empty();
    if (probability) {
      // Labels drawn from the f32 probabilities, the same for every compile.
      std::mt19937_64 rng(7);
      std::uniform_real_distribution<double> u(0, 1);
      std::vector<bool> labels;
      for (double p : s.reference)
        labels.push_back(u(rng) < p);
      const double aucReference = auc(s.reference, labels), aucQuantized = auc(s.quantized, labels);
      const double drop = std::isnan(aucReference) ? 0 : aucReference - aucQuantized;
      o["probability"] = true;
      o["auc_f32"] = std::isnan(aucReference) ? llvm::json::Value(nullptr) : aucReference;
      o["auc_quantized"] = std::isnan(aucQuantized) ? llvm::json::Value(nullptr) : aucQuantized;
      o["auc_drop"] = drop;
      line << ", AUC " << llvm::format("%.5f", aucQuantized) << " vs f32 "
           << llvm::format("%.5f", aucReference) << " (drop " << llvm::format("%.5f", drop) << ")";
      const bool meanWithin = weigh(mean, accuracy.maxMeanDiff),
                 dropWithin = weigh(drop, accuracy.maxAucDrop);
      if (!meanWithin || !dropWithin) {
        verdict.withinBound = false;
        verdict.violations += " '" + s.name + "' (mean |dp| " + number("%.3g", mean) +
                              ", AUC drop " + number("%.5f", drop) + ")";
      }
    } else {
      const double relative = s.sumAbsReference > 0 ? s.sumAbs / s.sumAbsReference : s.sumAbs;
      o["probability"] = false;
      o["relative_mean_abs_diff"] = relative;
      line << ", relative " << llvm::format("%.3g", relative);
      if (!weigh(relative, accuracy.maxRelativeDiff)) {
        verdict.withinBound = false;
        verdict.violations +=
            " '" + s.name + "' (relative mean |diff| " + number("%.3g", relative) + ")";
      }
    }
    line << "\n";
    verdict.outputs.push_back(std::move(o));
  }
  return verdict;
}

llvm::json::Object reportOf(const CompileOptions &options, const AccuracyOptions &accuracy,
                            int64_t rows, Verdict &verdict) {
  return llvm::json::Object{
      {"model", options.input},
      {"quantize",
       llvm::json::Object{{"weights", options.precision != "fp32"       ? options.precision
                                      : options.weightPrecision.empty() ? "f32"
                                                                        : options.weightPrecision},
                          {"table_bits", options.tableBits}}},
      {"activations", accuracy.activations},
      {"validation", accuracy.validationPath.empty() ? "synthetic" : accuracy.validationPath},
      {"rows", rows},
      {"bound", llvm::json::Object{{"max_mean_abs_diff_probability", accuracy.maxMeanDiff},
                                   {"max_auc_drop", accuracy.maxAucDrop},
                                   {"max_relative_mean_abs_diff", accuracy.maxRelativeDiff}}},
      {"within_bound", verdict.withinBound},
      {"outputs", std::move(verdict.outputs)}};
}

bool writeReport(const AccuracyOptions &accuracy, llvm::json::Object report, std::string &error) {
  if (accuracy.reportPath.empty())
    return true;
  std::error_code ec;
  llvm::raw_fd_ostream file(accuracy.reportPath, ec);
  if (ec) {
    error = "cannot write " + accuracy.reportPath + ": " + ec.message();
    return false;
  }
  file << llvm::formatv("{0:2}", llvm::json::Value(std::move(report))) << "\n";
  return true;
}

uint64_t modelWeightsBytes(const std::string &path) {
  kiln_model_info info;
  kiln_model_get_info(Model(path).get(), &info);
  return info.weights_bytes;
}

bool compileBesideF32(CompileOptions &options, const std::string &f32Path) {
  try {
    options.f32WeightsBytes = modelWeightsBytes(f32Path);
  } catch (const Error &e) {
    fail(e.what());
    return false;
  }
  return mlir::succeeded(compileModel(options));
}

void removeModel(const std::string &output) {
  llvm::sys::fs::remove(output);
  llvm::sys::fs::remove(weightsFilePath(output));
}

int compileQuantized(const CompileOptions &requested, const AccuracyOptions &accuracy) {
  llvm::SmallString<128> dir;
  if (llvm::sys::fs::createUniqueDirectory("kiln-accuracy", dir))
    return fail("cannot create a temporary folder");
  llvm::scope_exit cleanup([&] { llvm::sys::fs::remove_directories(dir); });
  CompileOptions reference = f32Options(requested);
  reference.output = (dir + "/f32.so").str();
  reference.quiet = true;
  if (!requested.quiet)
    llvm::errs() << "kiln: compiling the f32 model for the accuracy report\n";
  if (mlir::failed(compileModel(reference)))
    return 1;
  CompileOptions options = requested;
  if (!compileBesideF32(options, reference.output))
    return 1;
  // A model whose check did not pass (or could not run) is not left behind.
  bool checked = false;
  llvm::scope_exit removeUnchecked([&] {
    if (!checked)
      removeModel(options.output);
  });

  if (!options.quiet)
    llvm::errs() << "kiln: running both models on the validation rows\n";
  Comparison comparison;
  std::string error;
  if (!compareModels(options.output, reference.output, accuracy, comparison, error))
    return fail(error);
  Verdict verdict = judge(comparison, accuracy);
  llvm::outs() << "accuracy against the f32 model on " << comparison.rows
               << (accuracy.validationPath.empty() ? " synthetic" : " validation") << " rows ("
               << (options.precision == "bf16"
                       ? std::string("bf16 weights and dense-layer inputs")
                       : (options.precision == "fp8" ? "fp8" : "int8") +
                             std::string(" activations: ") + accuracy.activations)
               << "):\n"
               << verdict.summary;
  if (!writeReport(accuracy, reportOf(options, accuracy, comparison.rows, verdict), error))
    return fail(error);
  checked = verdict.withinBound || accuracy.allowLoss;
  if (verdict.withinBound)
    return 0;
  if (accuracy.allowLoss) {
    llvm::outs() << "accuracy bound exceeded by" << verdict.violations
                 << "; kept (--allow-accuracy-loss)\n";
    return 0;
  }
  return fail("the quantised model exceeds the accuracy bound:" + verdict.violations +
              "; model not written (--allow-accuracy-loss keeps it)");
}

} // namespace kiln
