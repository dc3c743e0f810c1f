//===- main.cpp - the kiln command line -----------------------------------===//
//
// kiln compile | inspect | run | verify. Compilation goes through the
// pipeline driver; inspect/run/verify use the runtime's C ABI exactly as a
// serving host does.
//
//===----------------------------------------------------------------------===//

#include "Accuracy.h"
#include "Calibration.h"
#include "MixedPrecision.h"
#include "Serve.h"
#include "TensorIO.h"

#include "codegen/Weights.h"
#include "compiler/pipeline/Driver.h"
#include "kiln/model_abi.h"
#include "kiln/runtime.h"
#include "kiln/runtime.hpp"

#include "llvm/ADT/ScopeExit.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Program.h"
#include "llvm/Support/raw_ostream.h"

#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>

using namespace kiln;

namespace {

int fail(const std::string &message) {
  llvm::errs() << "kiln: error: " << message << "\n";
  return 1;
}

std::string shapeString(const int64_t *shape, int rank) {
  std::string s = "[";
  for (int i = 0; i < rank; ++i)
    s += (i ? ", " : "") + (shape[i] < 0 ? std::string("batch") : std::to_string(shape[i]));
  return s + "]";
}

/// The widest [lo, hi] over a row's positions.
std::pair<int64_t, int64_t> boundsSpan(const kiln_tensor_info &t) {
  int64_t lo = INT64_MAX, hi = INT64_MIN;
  for (int64_t p = 0; p < t.row_elements; ++p) {
    lo = std::min(lo, t.index_bounds[2 * p]);
    hi = std::max(hi, t.index_bounds[2 * p + 1]);
  }
  return {lo, hi};
}

bool uniformBounds(const kiln_tensor_info &t) {
  for (int64_t p = 1; p < t.row_elements; ++p)
    if (t.index_bounds[2 * p] != t.index_bounds[0] ||
        t.index_bounds[2 * p + 1] != t.index_bounds[1])
      return false;
  return true;
}

void inspect(const kiln_model *m, bool json) {
  kiln_model_info info;
  kiln_model_get_info(m, &info);
  auto inputs = tensorInfos(m, true), outputs = tensorInfos(m, false);
  auto &os = llvm::outs();
  if (!json) {
    os << "kiln model (ABI " << info.abi_major << "." << info.abi_minor << ", compiler "
       << info.compiler_version << ")\n  target: " << info.target << "\n  hash: " << info.model_hash
       << "\n  weights: " << info.weights_bytes << " bytes";
    const uint64_t f32Bytes = kiln_model_f32_weights_bytes(m);
    if (std::string(kiln_model_quantization(m)) != "none")
      os << " (quantized " << kiln_model_quantization(m) << "; " << f32Bytes << " bytes at f32, "
         << llvm::format("%.2f", info.weights_bytes ? double(f32Bytes) / info.weights_bytes : 1.0)
         << "x smaller)";
    if (const char *file = kiln_model_weights_path(m))
      os << "\n  weights file: " << file << " (mapped read-only)";
    if (kiln_model_exact_buckets(m))
      os << "\n  rows: depend on each other (--row-mixing=exact-buckets); runs only batches "
            "equal to a bucket";
    if (uint64_t host = kiln_model_host_weights_bytes(m))
      os << "\n  in host memory: " << host << " bytes of embedding tables; "
         << info.weights_bytes - host << " bytes on the device";
    os << "\n";
    for (auto [label, list] : {std::pair{"input", &inputs}, std::pair{"output", &outputs}})
      for (const auto &t : *list) {
        os << "  " << label << " " << t.name << ": " << kiln_dtype_name(t.dtype) << " "
           << shapeString(t.shape, t.rank);
        if (t.index_bounds) {
          auto [lo, hi] = boundsSpan(t);
          os << " ids in [" << lo << ", " << hi << "]";
          if (!uniformBounds(t))
            os << " (bounded per position of a row)";
        }
        os << "\n";
      }
    for (int32_t b = 0; b < kiln_model_num_buckets(m); ++b) {
      uint64_t arena = kiln_model_bucket_arena_bytes(m, b),
               bound = kiln_model_bucket_arena_lower_bound(m, b);
      os << "  bucket batch=" << kiln_model_bucket_batch(m, b) << ": arena " << arena
         << " bytes, liveness lower bound " << bound << " bytes ("
         << llvm::format("%.2f", bound ? double(arena) / bound : 1.0) << "x)\n";
    }
    return;
  }
  auto str = [](const char *s) {
    std::string out = "\"";
    for (const char *p = s; *p; ++p) {
      if (*p == '"' || *p == '\\')
        out += '\\';
      out += *p;
    }
    return out + "\"";
  };
  os << "{\n  \"abi\": \"" << info.abi_major << "." << info.abi_minor
     << "\",\n  \"compiler_version\": " << str(info.compiler_version)
     << ",\n  \"target\": " << str(info.target) << ",\n  \"model_hash\": " << str(info.model_hash)
     << ",\n  \"weights_bytes\": " << info.weights_bytes
     << ",\n  \"quantization\": " << str(kiln_model_quantization(m))
     << ",\n  \"f32_weights_bytes\": " << kiln_model_f32_weights_bytes(m)
     << ",\n  \"host_weights_bytes\": " << kiln_model_host_weights_bytes(m)
     << ",\n  \"exact_buckets\": " << (kiln_model_exact_buckets(m) ? "true" : "false")
     << ",\n  \"weights_file\": "
     << (kiln_model_weights_path(m) ? str(kiln_model_weights_path(m)) : std::string("null"));
  for (auto [label, list] : {std::pair{"inputs", &inputs}, std::pair{"outputs", &outputs}}) {
    os << ",\n  \"" << label << "\": [";
    for (size_t i = 0; i < list->size(); ++i) {
      const auto &t = (*list)[i];
      os << (i ? ", " : "") << "{\"name\": " << str(t.name) << ", \"dtype\": \""
         << kiln_dtype_name(t.dtype) << "\", \"shape\": [";
      for (int d = 0; d < t.rank; ++d)
        os << (d ? ", " : "") << t.shape[d];
      os << "]";
      if (t.index_bounds) {
        os << ", \"index_bounds\": [";
        for (int64_t p = 0; p < t.row_elements; ++p)
          os << (p ? ", " : "") << "[" << t.index_bounds[2 * p] << ", " << t.index_bounds[2 * p + 1]
             << "]";
        os << "]";
      }
      os << "}";
    }
    os << "]";
  }
  os << ",\n  \"buckets\": [";
  for (int32_t b = 0; b < kiln_model_num_buckets(m); ++b)
    os << (b ? ", " : "") << "{\"batch\": " << kiln_model_bucket_batch(m, b)
       << ", \"arena_bytes\": " << kiln_model_bucket_arena_bytes(m, b)
       << ", \"arena_lower_bound\": " << kiln_model_bucket_arena_lower_bound(m, b) << "}";
  os << "]\n}\n";
}

/// kiln inspect --verify-weights: the whole weights file against the hash in
/// its header, which opening the model checked against the descriptor.
int verifyWeights(const kiln_model *m) {
  const char *path = kiln_model_weights_path(m);
  if (!path) {
    llvm::outs() << "weights: embedded in the .so (checked by the loader with the code)\n";
    return 0;
  }
  auto file = llvm::MemoryBuffer::getFile(path, /*IsText=*/false, /*RequiresNullTerminator=*/false);
  if (!file)
    return fail(std::string(path) + ": " + file.getError().message());
  llvm::ArrayRef<char> bytes((*file)->getBufferStart(), (*file)->getBufferSize());
  kiln_weights_header header;
  std::memcpy(&header, bytes.data(), sizeof header); // the open checked its size
  auto start = std::chrono::steady_clock::now();
  WeightsHasher hasher;
  hasher.update(bytes.drop_front(header.header_bytes));
  const uint64_t hash = hasher.finish();
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (hash != header.data_hash)
    return fail(std::string(path) + ": the weights do not match their hash (" +
                llvm::utohexstr(hash, true, 16) + ", the model was built with " +
                llvm::utohexstr(header.data_hash, true, 16) +
                "): the file was modified after the compile");
  llvm::outs() << "weights: " << path << ": " << header.data_bytes << " bytes match hash "
               << llvm::utohexstr(hash, true, 16) << " (" << llvm::format("%.2f", seconds)
               << " s)\n";
  return 0;
}

/// Orders `given` like the model's inputs: by name for .npz, by position for
/// a test-case folder (whose names may be empty).
bool matchInputs(const kiln_model *m, std::vector<HostTensor> &given, bool byName,
                 std::string &error) {
  auto infos = tensorInfos(m, true);
  if (given.size() != infos.size()) {
    error = "the model has " + std::to_string(infos.size()) + " inputs, " +
            std::to_string(given.size()) + " were given";
    return false;
  }
  if (!byName)
    return true;
  std::vector<HostTensor> ordered;
  for (const auto &info : infos) {
    auto it = std::find_if(given.begin(), given.end(),
                           [&](const HostTensor &t) { return t.name == info.name; });
    if (it == given.end()) {
      error = std::string("no input named '") + info.name + "'";
      return false;
    }
    ordered.push_back(std::move(*it));
  }
  given = std::move(ordered);
  return true;
}

bool loadInputs(const kiln_model *m, const std::string &path, std::vector<HostTensor> &inputs,
                std::string &error) {
  bool npz = llvm::sys::fs::is_regular_file(path);
  if (!(npz ? readNpz(path, inputs, error) : readTestCase(path, "input", inputs, error)))
    return false;
  return matchInputs(m, inputs, npz, error);
}

int64_t batchOf(const kiln_model *m, const std::vector<HostTensor> &inputs) {
  auto infos = tensorInfos(m, true);
  for (size_t i = 0; i < infos.size(); ++i)
    if (infos[i].rank > 0 && infos[i].shape[0] < 0 && !inputs[i].shape.empty())
      return inputs[i].shape[0];
  return 1;
}

/// Runs `repeat` times; returns the median latency in microseconds.
double runModel(Session &session, int64_t batch, std::vector<HostTensor> &inputs,
                std::vector<HostTensor> &outputs, int repeat) {
  std::vector<kiln_tensor> in = views(inputs), out = views(outputs);
  std::vector<double> times;
  for (int r = 0; r < std::max(repeat, 1); ++r) {
    auto start = std::chrono::steady_clock::now();
    session.run(batch, in.data(), in.size(), out.data(), out.size());
    times.push_back(
        std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start)
            .count());
  }
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

void printOutputs(const std::vector<HostTensor> &outputs) {
  for (const auto &t : outputs) {
    llvm::outs() << t.name << " " << kiln_dtype_name(t.dtype) << " "
                 << shapeString(t.shape.data(), t.shape.size()) << ":";
    int64_t n = std::min<int64_t>(t.elements(), 8);
    for (int64_t i = 0; i < n; ++i)
      llvm::outs() << " " << llvm::format("%.6g", t.value(i));
    llvm::outs() << (t.elements() > n ? " ...\n" : "\n");
  }
}

/// Reference outputs from onnxruntime through the kiln Python package.
bool onnxruntimeReference(const std::string &model, const std::string &dir,
                          const std::vector<HostTensor> &inputs, std::vector<HostTensor> &outputs,
                          std::string &error) {
  std::string in = dir + "/inputs.npz", out = dir + "/reference.npz";
  if (!writeNpz(in, inputs, error))
    return false;
  // The project's virtualenv has onnxruntime; elsewhere KILN_PYTHON says which.
  const char *env = std::getenv("KILN_PYTHON");
  std::string python = env && *env                               ? env
                       : llvm::sys::fs::exists(KILN_VENV_PYTHON) ? KILN_VENV_PYTHON
                                                                 : "python3";
  auto program = llvm::sys::findProgramByName(python);
  if (!program) {
    error = "cannot find '" + python + "' for the onnxruntime reference (set KILN_PYTHON)";
    return false;
  }
  llvm::SmallVector<llvm::StringRef> args = {*program, "-m", "kiln.reference", model, in, out};
  std::string message;
  if (llvm::sys::ExecuteAndWait(*program, args, std::nullopt, {}, 0, 0, &message) != 0) {
    error = "the onnxruntime reference failed" + (message.empty() ? "" : ": " + message);
    return false;
  }
  return readNpz(out, outputs, error);
}

int verify(const std::string &modelPath, const std::string &inputsPath, int64_t batch, double rtol,
           double atol) {
  llvm::SmallString<128> dir;
  if (llvm::sys::fs::createUniqueDirectory("kiln-verify", dir))
    return fail("cannot create a temporary folder");
  llvm::scope_exit cleanup([&] { llvm::sys::fs::remove_directories(dir); });

  std::vector<HostTensor> inputs, expected;
  std::string error;
  bool haveOutputs = false;
  if (!inputsPath.empty()) {
    if (!readTestCase(inputsPath, "input", inputs, error))
      return fail(error);
    haveOutputs = readTestCase(inputsPath, "output", expected, error);
    for (const auto &t : inputs)
      if (!t.shape.empty()) {
        batch = t.shape[0];
        break;
      }
  }
  CompileOptions options;
  options.input = modelPath;
  options.output = (dir + "/model.so").str();
  options.batches = {batch};
  options.quiet = true;
  if (mlir::failed(compileModel(options)))
    return 1;
  try {
    Model model(options.output);
    if (inputs.empty())
      inputs = randomInputs(model.get(), batch, 1234);
    else if (!matchInputs(model.get(), inputs, false, error))
      return fail(error);
    if (!haveOutputs && !onnxruntimeReference(modelPath, dir.str().str(), inputs, expected, error))
      return fail(error);
    Session session(model);
    auto outputs = outputBuffers(model.get(), batchOf(model.get(), inputs));
    runModel(session, batchOf(model.get(), inputs), inputs, outputs, 1);
    if (expected.size() != outputs.size())
      return fail("the reference has " + std::to_string(expected.size()) + " outputs, the model " +
                  std::to_string(outputs.size()));
    bool ok = true;
    llvm::outs() << "verify " << modelPath << " at batch " << batch << " against "
                 << (haveOutputs ? "the test case's outputs" : "onnxruntime") << "\n";
    for (size_t i = 0; i < outputs.size(); ++i) {
      const HostTensor &got = outputs[i], &want = expected[i];
      if (got.elements() != want.elements())
        return fail("output '" + got.name + "' has " + std::to_string(got.elements()) +
                    " elements, the reference " + std::to_string(want.elements()));
      double maxAbs = 0, maxRel = 0;
      int64_t bad = 0;
      for (int64_t k = 0; k < got.elements(); ++k) {
        double a = got.value(k), b = want.value(k);
        double diff = std::fabs(a - b);
        if (std::isnan(a) != std::isnan(b))
          diff = INFINITY;
        else if (std::isnan(a))
          diff = 0;
        maxAbs = std::max(maxAbs, diff);
        maxRel = std::max(maxRel, diff / std::max(std::fabs(b), 1e-30));
        bad += diff > atol + rtol * std::fabs(b);
      }
      llvm::outs() << "  " << got.name << ": max abs error " << llvm::format("%.3g", maxAbs)
                   << ", max rel error " << llvm::format("%.3g", maxRel) << ", "
                   << (bad ? "FAIL" : "ok") << " (" << bad << " of " << got.elements()
                   << " beyond rtol " << llvm::format("%g", rtol) << ", atol "
                   << llvm::format("%g", atol) << ")\n";
      ok &= bad == 0;
    }
    return ok ? 0 : 1;
  } catch (const Error &e) {
    return fail(e.what());
  }
}

} // namespace

int main(int argc, char **argv) {
  CLI::App app{"kiln: an ahead-of-time compiler for ads ranking models.\n"
               "Compiles ONNX models into self-contained shared libraries served through\n"
               "kiln's C runtime (kiln/runtime.h)."};
  app.require_subcommand(1);

  CompileOptions options;
  std::string batches = "1";
  auto *compile = app.add_subcommand("compile", "Compile an ONNX model into a model .so");
  compile->add_option("model", options.input, "ONNX model (.onnx, or .onnxtxt in ONNX text syntax)")
      ->required();
  compile
      ->add_option("-o,--output", options.output,
                   "Output path ('-' for stdout with --emit mlir/cpp)")
      ->required();
  compile
      ->add_option("--target", options.target,
                   "Code generation target: cpu (AVX2/FMA, default) or cuda (CUDA C++ built "
                   "with nvcc into the same model ABI; runs on an NVIDIA GPU)")
      ->check(CLI::IsMember({"cpu", "cuda"}));
  compile
      ->add_option("--cpu", options.cpu,
                   "With --target cpu: the instruction sets the model may use, each level all "
                   "of the one before: avx2 (AVX2, FMA and F16C; default), avx512 (AVX-512 "
                   "F/BW/VL: f32 kernels in 16 lanes), avx512-vnni (int8 dense layers multiply "
                   "with VNNI), avx512-bf16 (what --precision bf16 needs) or native (the "
                   "highest this machine has). The runtime refuses a model on a CPU without "
                   "its instruction sets")
      ->check(CLI::IsMember({"avx2", "avx512", "avx512-vnni", "avx512-bf16", "native"}))
      ->capture_default_str();
  compile
      ->add_option("--sm", options.cudaSm,
                   "With --target cuda: the compute capability to build machine code for "
                   "(default 90, Hopper); PTX is embedded for newer GPUs")
      ->capture_default_str();
  compile->add_option("--precision", options.precision,
                      "Dense layers' arithmetic. With --target cuda: fp32 (default), tf32 (f32 "
                      "operands rounded for the tensor cores), bf16/fp16 (16-bit weights and "
                      "operands) or fp8 (E4M3 weights and operands with per-tensor scales; needs "
                      "--calibration and --sm 89 or newer). With --target cpu: fp32 (default) "
                      "or bf16 (bf16 weights and operands, vdpbf16ps; needs --cpu avx512-bf16; "
                      "checked against the f32 model like --quantize). All accumulate in f32");
  compile
      ->add_option("--host-tables-over", options.hostTablesOver,
                   "With --target cuda: keep embedding tables larger than BYTES (e.g. 2GiB, "
                   "512MB, 0 for all) in host memory, for tables beyond device memory. Their "
                   "lookups are pooled on the CPU inside the request's graph; the dense part "
                   "runs on the GPU")
      ->transform(CLI::AsSizeValue(false))
      ->type_name("BYTES");
  compile->add_option("--batch", batches,
                      "Comma-separated batch buckets, e.g. 1,8,64; a request runs in the "
                      "smallest bucket >= its batch");
  compile
      ->add_option("--row-mixing", options.rowMixing,
                   "What to do with a model whose output rows kiln cannot prove to depend only "
                   "on the same input rows (a softmax or reduction over the batch, batch norm "
                   "in training form, a product across the batch), for which padding a "
                   "request to its bucket would change the answer: refuse (default: an error "
                   "naming the op) or exact-buckets (compile it; the runtime then runs only "
                   "batches equal to a bucket, refusing others)")
      ->check(CLI::IsMember({"refuse", "exact-buckets"}))
      ->capture_default_str();
  compile->add_option("--emit", options.emit, "What to write: so (default), cpp or mlir")
      ->check(CLI::IsMember({"so", "cpp", "mlir"}));
  std::string stages;
  for (const auto &s : pipelineStages())
    stages += (stages.empty() ? "" : ", ") + s;
  compile->add_option("--stop-after", options.stopAfter, "Stop after this stage: " + stages);
  compile->add_flag("--keep-temps", options.keepTemps, "Keep the generated source and weights");
  auto *weightsFileFlag = compile->add_flag_callback(
      "--weights-file", [&] { options.weights = "file"; },
      "Write the weights to a file beside the .so (OUTPUT with .so replaced by .weights), which "
      "the runtime maps read-only when the model is opened, shared by every process on the "
      "host. The default for models over 1 GiB of weights; the .so holds code and descriptor");
  compile
      ->add_flag_callback(
          "--embed-weights", [&] { options.weights = "embed"; },
          "Always embed the weights in the .so (the default up to 1 GiB of weights); a model "
          "with more is refused with a pointer to --weights-file")
      ->excludes(weightsFileFlag);
  std::vector<std::string> freeze;
  compile->add_option("--freeze", freeze,
                      "NAME=FILE.pb: compile input NAME as the constant in that ONNX TensorProto "
                      "(for inputs that fix axes, shapes or pads); repeatable");
  compile->add_flag("--profile", options.profile,
                    "Time every op: the model prints a table of time per op (slowest first) to "
                    "stderr when it is unloaded; for finding hot spots, not for serving");
  std::string quantize;
  compile->add_option("--quantize", quantize,
                      "Comma-separated quantisation modes: int8 (int8 weights per output "
                      "channel, activations quantised per row at run time), fp16-weights or "
                      "bf16-weights (16-bit weights, f32 arithmetic), int8-embeddings or "
                      "int4-embeddings (row-wise quantised embedding tables); or auto: int8 "
                      "layers and int8 tables except the few that cost the most accuracy, kept "
                      "f32 until the model is inside the bound (each one's sensitivity measured; "
                      "the report names them). Every quantised compile also builds the f32 "
                      "model and checks the accuracy lost");
  AccuracyOptions accuracy;
  compile->add_option("--report", accuracy.reportPath,
                      "With --quantize: write the accuracy report (JSON) here");
  compile->add_option("--validation", accuracy.validationPath,
                      "With --quantize: validation inputs (.npz keyed by input name, rows along "
                      "the batch dim); default: synthetic rows");
  compile
      ->add_option("--validation-rows", accuracy.rows,
                   "With --quantize: synthetic rows (default: 10000 when an output is a "
                   "probability, for its AUC; else 1024)")
      ->check(CLI::Range(int64_t(1), int64_t(1) << 30));
  compile
      ->add_option("--max-mean-diff", accuracy.maxMeanDiff,
                   "With --quantize: largest mean |p - p_f32| of a probability output")
      ->capture_default_str();
  compile
      ->add_option("--max-auc-drop", accuracy.maxAucDrop,
                   "With --quantize: largest AUC drop of a probability output")
      ->capture_default_str();
  compile
      ->add_option("--max-relative-diff", accuracy.maxRelativeDiff,
                   "With --quantize: largest mean |y - y_f32| / mean |y_f32| of other outputs")
      ->capture_default_str();
  compile->add_flag("--allow-accuracy-loss", accuracy.allowLoss,
                    "With --quantize: keep a model that exceeds the accuracy bounds");
  CalibrationOptions calibration;
  compile->add_option("--calibration", calibration.path,
                      "With --quantize int8 or --precision fp8: calibration inputs (.npz keyed "
                      "by input name, rows along the batch dim); each int8 layer then quantises "
                      "its input with one static range observed on them instead of each row's "
                      "own range, and each fp8 layer takes its input's scale from them");
  compile
      ->add_option("--calibration-method", calibration.method,
                   "With --calibration: minmax (the observed range) or percentile (clipping "
                   "the tails)")
      ->check(CLI::IsMember({"minmax", "percentile"}))
      ->capture_default_str();
  compile
      ->add_option("--calibration-percentile", calibration.percentile,
                   "With --calibration-method percentile: the percentile kept on each side")
      ->capture_default_str();
  compile->add_flag("-q,--quiet", options.quiet, "No progress output");

  std::string modelPath;
  bool json = false;
  auto *inspectCmd = app.add_subcommand("inspect", "Print a compiled model's descriptor");
  inspectCmd->add_option("model", modelPath, "Compiled model .so")->required();
  inspectCmd->add_flag("--json", json, "Print JSON");
  bool verifyWeightsFlag = false;
  inspectCmd->add_flag("--verify-weights", verifyWeightsFlag,
                       "Also hash the whole weights file (kiln compile --weights-file) and check "
                       "it against the hash the model was built with; opening checks only its "
                       "size and header");

  std::string inputsPath, outputPath;
  int repeat = 20;
  auto *runCmd = app.add_subcommand("run", "Run a compiled model on inputs");
  runCmd->add_option("model", modelPath, "Compiled model .so")->required();
  runCmd
      ->add_option("--inputs", inputsPath,
                   "ONNX test-case folder (input_N.pb) or .npz keyed by input name")
      ->required();
  runCmd->add_option("--output", outputPath, "Write the outputs to this .npz (keys: output names)");
  runCmd->add_option("--repeat", repeat, "Runs to time (median latency is printed)");
  int threads = 1;
  runCmd->add_option("--threads", threads, "Threads of the session, the calling one included")
      ->check(CLI::Range(1, 256));

  int64_t verifyBatch = 8;
  double rtol = 1e-4, atol = 1e-5;
  auto *verifyCmd = app.add_subcommand(
      "verify", "Compile, run and compare with a test case's outputs or with onnxruntime");
  verifyCmd->add_option("model", modelPath, "ONNX model")->required();
  verifyCmd->add_option(
      "--inputs", inputsPath,
      "ONNX test-case folder; its output_N.pb are the reference if present, "
      "else onnxruntime is (run by KILN_PYTHON, default: the build's .venv, else python3)");
  verifyCmd->add_option("--batch", verifyBatch, "Batch for random inputs (without --inputs)");
  verifyCmd->add_option("--rtol", rtol, "Relative tolerance");
  verifyCmd->add_option("--atol", atol, "Absolute tolerance");

  PackageOptions package;
  auto *packageCmd = app.add_subcommand(
      "package", "Write a Triton model-repository entry (REPO/NAME/config.pbtxt, "
                 "REPO/NAME/VERSION/model.so) for a compiled model");
  packageCmd->add_option("model", package.model, "Compiled model .so")->required();
  packageCmd->add_option("--repo", package.repository, "Model repository folder")->required();
  packageCmd->add_option("--name", package.name, "Model name (default: the .so's file stem)");
  packageCmd->add_option("--version", package.version,
                         "Version folder; a new version beside the served one is how a model "
                         "is updated (default 1)");
  packageCmd->add_option("--max-queue-delay-us", package.maxQueueDelayUs,
                         "How long Triton's dynamic batcher waits to fill a bucket (default 100)");
  packageCmd->add_option("--instances", package.instances,
                         "Model instances: kiln sessions, each running one batch at a time "
                         "(default 1)");
  packageCmd->add_option("--threads", package.threads, "Threads per session (default 1)");

  ServeOptions serve;
  auto *serveCmd = app.add_subcommand(
      "serve", "Serve a model repository with Triton Inference Server and kiln's backend; "
               "arguments after -- go to tritonserver");
  serveCmd->add_option("repo", serve.repository, "Model repository folder")->required();
  serveCmd->add_option("--address", serve.address,
                       "Address Triton listens on (default 127.0.0.1; 0.0.0.0 behind a load "
                       "balancer)");
  serveCmd->add_option("--http-port", serve.httpPort, "HTTP port (default 8000)");
  serveCmd->add_option("--grpc-port", serve.grpcPort, "gRPC port (default 8001)");
  serveCmd->add_option("--metrics-port", serve.metricsPort,
                       "Prometheus metrics port (default 8002)");
  serveCmd
      ->add_option("--model-control", serve.modelControl,
                   "none: load the repository at start; poll: also pick up new versions; "
                   "explicit: load and unload through Triton's repository API")
      ->check(CLI::IsMember({"none", "poll", "explicit"}));
  serveCmd->add_option("--poll-secs", serve.pollSeconds,
                       "With --model-control poll: seconds between repository scans");
  serveCmd->add_option("triton-args", serve.tritonArgs, "Arguments for tritonserver (after --)");

  CLI11_PARSE(app, argc, argv);

  if (packageCmd->parsed())
    return packageModel(package);
  if (serveCmd->parsed())
    return serveRepository(serve);

  if (compile->parsed()) {
    options.batches.clear();
    for (llvm::StringRef rest = batches; !rest.empty();) {
      auto [item, tail] = rest.split(',');
      rest = tail;
      long long v;
      if (item.trim().getAsInteger(10, v) || v < 1)
        return fail("--batch: '" + item.str() + "' is not a positive integer");
      options.batches.push_back(v);
    }
    const bool mixed = llvm::StringRef(quantize).trim() == "auto";
    if (mixed) {
      if (accuracy.allowLoss)
        return fail("--quantize auto keeps layers f32 until the model is inside the bound; "
                    "--allow-accuracy-loss does not apply");
      options.weightPrecision = "int8";
      options.tableBits = 8;
      quantize.clear();
    }
    for (llvm::StringRef rest = quantize; !rest.empty();) {
      auto [mode, tail] = rest.split(',');
      rest = tail;
      mode = mode.trim();
      std::string *slot = nullptr, value;
      if (mode == "int8" || mode == "fp16-weights" || mode == "bf16-weights") {
        slot = &options.weightPrecision;
        value = mode.take_front(4).str();
      } else if (mode == "int8-embeddings" || mode == "int4-embeddings") {
        int bits = mode[3] - '0';
        if (options.tableBits != 32 && options.tableBits != bits)
          return fail("--quantize: int8-embeddings and int4-embeddings exclude each other");
        options.tableBits = bits;
        continue;
      } else {
        return fail("--quantize: unknown mode '" + mode.str() +
                    "' (int8, fp16-weights, bf16-weights, int8-embeddings, int4-embeddings; or "
                    "auto alone)");
      }
      if (!slot->empty() && *slot != value)
        return fail("--quantize: int8, fp16-weights and bf16-weights exclude each other");
      *slot = value;
    }
    for (const std::string &f : freeze) {
      auto [name, path] = llvm::StringRef(f).split('=');
      if (name.empty() || path.empty())
        return fail("--freeze: expected NAME=FILE.pb, got '" + f + "'");
      options.freeze.emplace_back(name.str(), path.str());
    }
    options.cpu = resolveNativeCpu(options.cpu, options.precision);
    if (mlir::failed(checkTargetOptions(options)))
      return 1;
    // A quantised CPU model is checked against the f32 one; so is the CPU's
    // emulation of fp8.
    const bool quantized =
        !options.weightPrecision.empty() || options.tableBits != 32 ||
        ((options.precision == "fp8" || options.precision == "bf16") && options.target == "cpu");
    if (!quantized && (!accuracy.reportPath.empty() || !accuracy.validationPath.empty()))
      return fail("--report and --validation check a quantised compile: add --quantize");
    if (!calibration.path.empty()) {
      if (options.weightPrecision != "int8" && options.precision != "fp8")
        return fail("--calibration sets the ranges of int8 layers' inputs: add --quantize int8 "
                    "(or, for --target cuda, --precision fp8)");
      std::string error;
      if (!calibrate(options, calibration, accuracy.activations, error))
        return fail(error);
      if (options.precision == "fp8" && !options.quiet)
        llvm::errs() << "kiln: fp8 input scales: " << accuracy.activations << "\n";
    }
    if (mixed && (options.emit != "so" || !options.stopAfter.empty()))
      return fail("--quantize auto chooses by compiling and checking models: it takes --emit so "
                  "and no --stop-after");
    if (mixed)
      return compileMixedPrecision(options, accuracy);
    if (quantized && options.emit == "so" && options.stopAfter.empty())
      return compileQuantized(options, accuracy);
    return mlir::succeeded(compileModel(options)) ? 0 : 1;
  }
  if (verifyCmd->parsed())
    return verify(modelPath, inputsPath, verifyBatch, rtol, atol);

  try {
    // inspect reads the descriptor on any machine: one without the GPU or
    // the instruction sets the model needs included.
    Model model(modelPath, /*descriptorOnly=*/inspectCmd->parsed());
    if (inspectCmd->parsed()) {
      inspect(model.get(), json);
      return verifyWeightsFlag ? verifyWeights(model.get()) : 0;
    }
    std::vector<HostTensor> inputs;
    std::string error;
    if (!loadInputs(model.get(), inputsPath, inputs, error))
      return fail(error);
    int64_t batch = batchOf(model.get(), inputs);
    auto outputs = outputBuffers(model.get(), batch);
    Session session(model, threads);
    double micros = runModel(session, batch, inputs, outputs, repeat);
    printOutputs(outputs);
    llvm::outs() << "latency (median of " << std::max(repeat, 1) << " runs, batch " << batch << ", "
                 << threads << (threads == 1 ? " thread" : " threads")
                 << "): " << llvm::format("%.1f", micros) << " us\n";
    if (!outputPath.empty() && !writeNpz(outputPath, outputs, error))
      return fail(error);
    return 0;
  } catch (const Error &e) {
    return fail(e.what());
  }
}
