//===- MixedPrecision.cpp - int8 where the accuracy bound allows ----------===//
//
// A unit is one dense layer or one embedding table, indexed as
// listQuantizationUnits lists them (CompileOptions::keepLayers /
// keepTables). Sensitivities are not additive, but close enough to order
// the units and to say when to check; every model written was checked.
//
//===----------------------------------------------------------------------===//

#include "MixedPrecision.h"

#include "TensorIO.h"

#include "compiler/pipeline/Driver.h"
#include "kiln/runtime.hpp"

#include "llvm/ADT/ScopeExit.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/Format.h"
#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/raw_ostream.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>

namespace kiln {
namespace {

int fail(const std::string &message) {
  llvm::errs() << "kiln: error: " << message << "\n";
  return 1;
}

struct Unit {
  bool table;
  int64_t index;
  QuantizationUnits::Unit what;
  double sensitivity = 0;

  std::string label() const { return (table ? "table '" : "layer '") + what.name + "'"; }
  /// Accuracy bought per f32 byte kept: the order in which units are kept,
  /// so that a small sensitive layer goes before a large one of about the
  /// same sensitivity (the f32 bytes are what keeping it costs in size and,
  /// for a dense layer, in time).
  double gainPerByte() const {
    return std::isfinite(sensitivity) ? sensitivity / double(std::max<int64_t>(what.bytes, 1))
                                      : HUGE_VAL;
  }
};

/// Median latency (us, one thread) of each model at `batch`, the two run
/// alternately on the same inputs so that both see the same machine.
std::pair<double, double> latencies(const std::string &a, const std::string &b, int64_t batch) {
  Model ma(a), mb(b);
  Session sa(ma, 1), sb(mb, 1);
  std::vector<HostTensor> inputs = randomInputs(ma.get(), batch, 1);
  std::vector<kiln_tensor> in = views(inputs);
  auto outA = outputBuffers(ma.get(), batch), outB = outputBuffers(mb.get(), batch);
  std::vector<kiln_tensor> va = views(outA), vb = views(outB);
  std::vector<double> ta, tb;
  auto time = [&](Session &s, std::vector<kiln_tensor> &out, std::vector<double> &times) {
    auto start = std::chrono::steady_clock::now();
    s.run(batch, in.data(), int32_t(in.size()), out.data(), int32_t(out.size()));
    times.push_back(
        std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start)
            .count());
  };
  // 41 pairs, or as many as fit in about two seconds (at least 3): a large
  // bucket of a large model takes seconds per run.
  double spent = 0;
  for (int r = 0; r < 41 && (r < 3 || spent < 2e6); ++r) {
    time(sa, va, ta);
    time(sb, vb, tb);
    spent += ta.back() + tb.back();
  }
  auto median = [](std::vector<double> &t) {
    std::sort(t.begin(), t.end());
    return t[t.size() / 2];
  };
  return {median(ta), median(tb)};
}

} // namespace

int compileMixedPrecision(const CompileOptions &requested, const AccuracyOptions &accuracy) {
  llvm::SmallString<128> dir;
  if (llvm::sys::fs::createUniqueDirectory("kiln-auto", dir))
    return fail("cannot create a temporary folder");
  llvm::scope_exit cleanup([&] { llvm::sys::fs::remove_directories(dir); });
  const bool progress = !requested.quiet;
  auto say = [&](const llvm::Twine &line) {
    if (progress)
      llvm::errs() << "kiln: auto: " << line << "\n";
  };

  CompileOptions reference = f32Options(requested);
  reference.output = (dir + "/f32.so").str();
  reference.quiet = true;
  say("compiling the f32 model");
  if (mlir::failed(compileModel(reference)))
    return 1;
  mlir::FailureOr<QuantizationUnits> listed = listQuantizationUnits(requested);
  if (mlir::failed(listed))
    return 1;
  std::vector<Unit> units;
  for (auto [i, l] : llvm::enumerate(listed->layers))
    units.push_back(Unit{false, int64_t(i), l});
  for (auto [i, t] : llvm::enumerate(listed->tables))
    units.push_back(Unit{true, int64_t(i), t});
  if (units.empty())
    return fail("--quantize auto: the model has no dense layer or embedding table int8 can "
                "store; compile it without --quantize");

  // A probe: the model with `kept` f32, at the largest bucket, checked.
  CompileOptions probe = requested;
  probe.batches = {*std::max_element(requested.batches.begin(), requested.batches.end())};
  probe.output = (dir + "/probe.so").str();
  probe.quiet = true;
  int probes = 0;
  std::string error;
  auto keep = [&](CompileOptions &options, const std::vector<const Unit *> &kept) {
    options.keepLayers.clear();
    options.keepTables.clear();
    for (const Unit *u : kept)
      (u->table ? options.keepTables : options.keepLayers).push_back(u->index);
    llvm::sort(options.keepLayers);
    llvm::sort(options.keepTables);
  };
  auto check = [&](const std::vector<const Unit *> &kept, Verdict &verdict) {
    keep(probe, kept);
    ++probes;
    Comparison comparison;
    if (mlir::failed(compileModel(probe)) ||
        !compareModels(probe.output, reference.output, accuracy, comparison, error))
      return false;
    verdict = judge(comparison, accuracy);
    return true;
  };

  std::vector<const Unit *> all, kept;
  for (const Unit &u : units)
    all.push_back(&u);
  Verdict verdict;
  say("checking " + llvm::Twine(listed->layers.size()) + " layers and " +
      llvm::Twine(listed->tables.size()) + " tables all quantised");
  if (!check({}, verdict))
    return error.empty() ? 1 : fail(error);
  const double allQuantized = verdict.worst;
  const bool measured = !verdict.withinBound; // sensitivities are only measured when needed
  if (measured) {
    say("outside the bound (worst " + llvm::formatv("{0:f2}", verdict.worst) +
        "x of it): measuring each one's sensitivity");
    for (Unit &u : units) {
      std::vector<const Unit *> others;
      for (const Unit *v : all)
        if (v != &u)
          others.push_back(v);
      Verdict alone;
      if (!check(others, alone))
        return error.empty() ? 1 : fail(error);
      u.sensitivity = alone.worst;
      say("  " + u.label() + " alone: " + llvm::formatv("{0:f3}", u.sensitivity) +
          "x of the bound");
    }
    std::vector<const Unit *> order = all;
    std::stable_sort(order.begin(), order.end(), [](const Unit *a, const Unit *b) {
      return a->gainPerByte() > b->gainPerByte();
    });
    double left = 0;
    for (const Unit *u : order)
      left += std::isfinite(u->sensitivity) ? u->sensitivity : 1e300;
    const double total = left;
    size_t next = 0;
    while (!verdict.withinBound) {
      // Keep the most sensitive per byte f32 until what is left predicts
      // the bound with a margin, then check.
      do {
        left -= std::isfinite(order[next]->sensitivity) ? order[next]->sensitivity : 1e300;
        kept.push_back(order[next++]);
      } while (next < order.size() && total > 0 && allQuantized * left / total > 0.8);
      if (next == order.size())
        return fail("--quantize auto: the model is inside the accuracy bound only with every "
                    "layer and table f32; compile it without --quantize (or loosen the bound)");
      say("keeping " + llvm::Twine(kept.size()) + " f32, checking");
      if (!check(kept, verdict))
        return error.empty() ? 1 : fail(error);
    }
  }

  // The model itself, at every bucket, checked once more.
  CompileOptions options = requested;
  keep(options, kept);
  say("inside the bound after " + llvm::Twine(probes) + " probe compiles; building " +
      options.output);
  if (!compileBesideF32(options, reference.output))
    return 1;
  bool written = false;
  llvm::scope_exit removeUnchecked([&] {
    if (!written)
      removeModel(options.output);
  });
  Comparison comparison;
  if (!compareModels(options.output, reference.output, accuracy, comparison, error))
    return fail(error);
  verdict = judge(comparison, accuracy);
  if (!verdict.withinBound) // the probe was inside: the same rows, the same numbers
    return fail("--quantize auto: the model built is outside the bound its probe was inside:" +
                verdict.violations);

  uint64_t bytes = 0;
  std::pair<double, double> latency;
  try {
    bytes = modelWeightsBytes(options.output);
    latency = latencies(reference.output, options.output, probe.batches[0]);
  } catch (const Error &e) {
    return fail(e.what());
  }
  llvm::json::Array keptJson, sensitivities;
  std::string keptNames;
  for (const Unit *u : kept) {
    keptJson.push_back(llvm::json::Object{{"kind", u->table ? "table" : "layer"},
                                          {"name", u->what.name},
                                          {"f32_bytes", u->what.bytes}});
    keptNames += (keptNames.empty() ? "" : ", ") + u->label();
  }
  for (const Unit &u : units)
    sensitivities.push_back(llvm::json::Object{{"kind", u.table ? "table" : "layer"},
                                               {"name", u.what.name},
                                               {"f32_bytes", u.what.bytes},
                                               {"worst_ratio_alone",
                                                // null: not measured, or no finite ratio
                                                measured && std::isfinite(u.sensitivity)
                                                    ? llvm::json::Value(u.sensitivity)
                                                    : llvm::json::Value(nullptr)}});
  llvm::outs() << "accuracy against the f32 model on " << comparison.rows
               << (accuracy.validationPath.empty() ? " synthetic" : " validation")
               << " rows (int8 activations: " << accuracy.activations << "):\n"
               << verdict.summary << "quantised " << units.size() - kept.size() << " of "
               << units.size()
               << " layers and tables; f32: " << (kept.empty() ? std::string("none") : keptNames)
               << "\n"
               << "weights " << llvm::format("%.2f", bytes / 1048576.0) << " MiB vs f32 "
               << llvm::format("%.2f", options.f32WeightsBytes / 1048576.0)
               << " MiB; latency at batch " << probe.batches[0]
               << ", one thread: " << llvm::format("%.1f", latency.second) << " us vs f32 "
               << llvm::format("%.1f", latency.first) << " us (ratio "
               << llvm::format("%.2f", latency.second / latency.first) << ")\n";
  llvm::json::Object report = reportOf(options, accuracy, comparison.rows, verdict);
  report["auto"] =
      llvm::json::Object{{"all_quantized_worst_ratio", allQuantized},
                         {"kept_f32", std::move(keptJson)},
                         {"sensitivity", std::move(sensitivities)},
                         {"probe_compiles", probes},
                         {"weights_bytes", bytes},
                         {"f32_weights_bytes", options.f32WeightsBytes},
                         {"latency_us", llvm::json::Object{{"batch", probe.batches[0]},
                                                           {"quantized", latency.second},
                                                           {"f32", latency.first}}}};
  if (!writeReport(accuracy, std::move(report), error))
    return fail(error);
  written = true;
  return 0;
}

} // namespace kiln
