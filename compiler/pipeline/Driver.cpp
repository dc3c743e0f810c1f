//===- Driver.cpp - ONNX file -> model .so --------------------------------===//

#include "Driver.h"

#include "codegen/ModelSource.h"
#include "codegen/Toolchain.h"
#include "codegen/Weights.h"
#include "compiler/import/OnnxImporter.h"
#include "compiler/transforms/Passes.h"
#include "dialects/KilnOps.h"

#include "mlir/IR/AsmState.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/IR/PatternMatch.h"
#include "mlir/Pass/Pass.h"
#include "mlir/Pass/PassInstrumentation.h"
#include "mlir/Support/FileUtilities.h"
#include "llvm/ADT/ScopeExit.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/ToolOutputFile.h"
#include "llvm/Support/xxhash.h"

#include <onnx/onnx_pb.h>

#include <chrono>

using namespace mlir;

namespace kiln {

#ifndef KILN_VERSION
#define KILN_VERSION "0.0.0"
#endif

namespace {

/// Prints one line per pass with its wall time, for long compiles. A
/// function pass runs once per bucket and is reported after the last one.
struct ProgressInstrumentation : PassInstrumentation {
  using Clock = std::chrono::steady_clock;
  void runBeforePass(Pass *pass, Operation *) override { started.try_emplace(pass, Clock::now()); }
  void runAfterPass(Pass *pass, Operation *op) override { report(pass, op); }
  void runAfterPassFailed(Pass *pass, Operation *op) override { report(pass, op); }
  void report(Pass *pass, Operation *op) {
    if (isa<func::FuncOp>(op) && op->getNextNode())
      return;
    auto ms = std::chrono::duration<double, std::milli>(Clock::now() - started[pass]).count();
    started.erase(pass);
    // Adaptors that nest passes have no argument of their own.
    if (!pass->getArgument().empty())
      llvm::errs() << "kiln: " << pass->getArgument() << " done in " << llvm::format("%.1f", ms)
                   << " ms\n";
  }
  DenseMap<Pass *, Clock::time_point> started;
};

/// Prints "model.onnx: error: node 'name' (#index): message". The importer
/// gives each op the location NameLoc(node name, model:index+1:0).
LogicalResult printDiagnostic(Diagnostic &diag) {
  auto &os = llvm::errs();
  Location loc = diag.getLocation();
  auto name = dyn_cast<NameLoc>(loc);
  auto file = dyn_cast<FileLineColLoc>(name ? name.getChildLoc() : loc);
  if (file)
    os << file.getFilename().getValue() << ": ";
  switch (diag.getSeverity()) {
  case DiagnosticSeverity::Error:
    os << "error: ";
    break;
  case DiagnosticSeverity::Warning:
    os << "warning: ";
    break;
  case DiagnosticSeverity::Note:
    os << "note: ";
    break;
  case DiagnosticSeverity::Remark:
    os << "remark: ";
    break;
  }
  if (name) {
    os << "node '" << name.getName().getValue() << "'";
    if (file && file.getLine() > 0)
      os << " (#" << file.getLine() - 1 << ")";
    os << ": ";
  }
  os << diag.str() << "\n";
  for (const Diagnostic &note : diag.getNotes())
    os << "  note: " << note.str() << "\n";
  return success();
}

std::string modelHash(StringRef path, const CompileOptions &options) {
  auto buffer = llvm::MemoryBuffer::getFile(path);
  uint64_t h = buffer ? llvm::xxh3_64bits((*buffer)->getBuffer()) : 0;
  for (int64_t b : options.batches)
    h = llvm::xxh3_64bits(StringRef(reinterpret_cast<const char *>(&b), sizeof b)) ^ (h * 31);
  if (options.profile)
    h = ~h;
  if (options.target != "cpu")
    h = llvm::xxh3_64bits(options.target + std::to_string(options.cudaSm) + options.precision +
                          std::to_string(options.hostTablesOver)) ^
        (h * 31);
  else if (options.cpu != "avx2" || options.precision != "fp32")
    h = llvm::xxh3_64bits(options.cpu + options.precision) ^ (h * 31);
  if (!options.weightPrecision.empty() || options.tableBits != 32)
    h = llvm::xxh3_64bits(options.weightPrecision + std::to_string(options.tableBits)) ^ (h * 31);
  auto mix = [&](const auto &values) {
    if (!values.empty())
      h = llvm::xxh3_64bits(StringRef(reinterpret_cast<const char *>(values.data()),
                                      values.size() * sizeof(values[0]))) ^
          (h * 31);
  };
  mix(options.inputRanges);
  mix(options.keepLayers);
  mix(options.keepTables);
  return llvm::utohexstr(h, /*LowerCase=*/true, 16);
}

/// The --quantize modes the options stand for, "none" without any.
std::string quantizationName(const CompileOptions &options) {
  std::string name;
  if (options.precision != "fp32" && options.precision != "tf32")
    name = options.precision + "-weights"; // --precision bf16|fp16|fp8: narrow dense weights
  else if (options.weightPrecision == "int8")
    name = "int8";
  else if (!options.weightPrecision.empty())
    name = options.weightPrecision + "-weights";
  if (options.tableBits != 32)
    name += (name.empty() ? "int" : ",int") + std::to_string(options.tableBits) + "-embeddings";
  if (name.empty())
    return "none";
  auto count = [](size_t n, const char *what) {
    return std::to_string(n) + " " + what + (n == 1 ? "" : "s");
  };
  if (!options.keepLayers.empty() || !options.keepTables.empty())
    name += "; f32: " + count(options.keepLayers.size(), "layer") + ", " +
            count(options.keepTables.size(), "table");
  return name;
}

double seconds(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count();
}

/// The bytes of the module's distinct constants: what decides, before
/// emission, whether the weights are embedded (the layout adds only padding).
uint64_t distinctConstantBytes(ModuleOp module) {
  llvm::DenseSet<Attribute> seen;
  uint64_t bytes = 0;
  module.walk([&](ConstantOp c) {
    auto type = cast<RankedTensorType>(c.getType());
    if (seen.insert(c.getValue()).second)
      bytes += uint64_t(type.getNumElements()) * elementBytes(type.getElementType());
  });
  return bytes;
}

LogicalResult writeOutput(StringRef path, function_ref<void(raw_ostream &)> write) {
  std::string error;
  auto file = openOutputFile(path, &error);
  if (!file) {
    llvm::errs() << "kiln: error: " << error << "\n";
    return failure();
  }
  write(file->os());
  file->keep();
  return success();
}

} // namespace

/// The CPU target's --cpu levels (CpuIsa), "native" resolved before.
static const StringRef kCpus[] = {"avx2", "avx512", "avx512-vnni", "avx512-bf16"};

/// The CUDA target's --precision names and their kiln::cuda::Precision.
static const std::pair<StringRef, StringRef> kPrecisions[] = {
    {"fp32", "Fp32"}, {"tf32", "Tf32"}, {"bf16", "Bf16"}, {"fp16", "Fp16"}, {"fp8", "Fp8"}};

LogicalResult checkTargetOptions(const CompileOptions &options) {
  const bool cuda = options.target == "cuda";
  std::string problem;
  if (!cuda && options.target != "cpu")
    problem = "--target " + options.target + " is not a target (targets: cpu, cuda)";
  else if (llvm::none_of(kCpus, [&](StringRef c) { return c == options.cpu; }))
    problem =
        "--cpu must be avx2, avx512, avx512-vnni, avx512-bf16 or native, got '" + options.cpu + "'";
  else if (cuda && options.cpu != "avx2")
    problem = "--cpu is for the CPU target";
  else if (!cuda && options.precision != "fp32" && options.precision != "fp8" &&
           options.precision != "bf16")
    problem = "--precision " + options.precision +
              " is for the CUDA target (the CPU target takes fp32, bf16, and fp8 only to check "
              "an fp8 model's accuracy; int8 is --quantize)";
  else if (!cuda && options.precision == "bf16" && options.cpu != "avx512-bf16")
    problem = "--precision bf16 on the CPU multiplies with AVX-512 BF16 (vdpbf16ps): add --cpu "
              "avx512-bf16, or --cpu native on a machine that has it (this is --cpu " +
              options.cpu + ")";
  else if (cuda && options.cudaSm < 50)
    problem = "--sm " + std::to_string(options.cudaSm) +
              " is not a CUDA architecture kiln builds for (sm_50 and newer; 90 is Hopper)";
  else if (cuda &&
           llvm::none_of(kPrecisions, [&](const auto &p) { return p.first == options.precision; }))
    problem = "--precision must be fp32, tf32, bf16, fp16 or fp8, got '" + options.precision + "'";
  else if (cuda && options.precision == "fp8" && options.cudaSm < 89)
    problem = "--precision fp8 needs --sm 89 or newer (fp8 tensor cores: Ada, Hopper), got --sm " +
              std::to_string(options.cudaSm);
  else if (cuda && (!options.weightPrecision.empty() || options.tableBits != 32))
    problem = "--quantize is for the CPU target; the CUDA target's arithmetic is set with "
              "--precision";
  else if (cuda && options.profile)
    problem = "--profile is for the CPU target";
  else if (options.precision != "fp32" && !options.weightPrecision.empty())
    problem = "--precision " + options.precision + " and --quantize (" + options.weightPrecision +
              " weights) both set the dense weights' format: use one";
  else if (!cuda && options.hostTablesOver >= 0)
    problem = "--host-tables-over is for the CUDA target (a CPU model's tables are in host "
              "memory already)";
  if (problem.empty())
    return success();
  llvm::errs() << "kiln: error: " << problem << "\n";
  return failure();
}

std::string resolveNativeCpu(const std::string &cpu, const std::string &precision) {
  if (cpu != "native")
    return cpu;
  __builtin_cpu_init();
  if (!(__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl")))
    return "avx2";
  if (!__builtin_cpu_supports("avx512vnni"))
    return "avx512";
  // BF16 only where the model uses it: otherwise it would only narrow the
  // CPUs the model runs on.
  return precision == "bf16" && __builtin_cpu_supports("avx512bf16") ? "avx512-bf16"
                                                                     : "avx512-vnni";
}

namespace {
/// The model imported into `context` and lowered through the pipeline up to
/// options.stopAfter; null on failure, with the error printed.
OwningOpRef<ModuleOp> lower(MLIRContext &context, const CompileOptions &options) {
  context.loadDialect<KilnDialect, func::FuncDialect>();
  context.printOpOnDiagnostic(false);
  // The handler lives as long as the context: the caller's later passes
  // report through it too.
  context.getDiagEngine().registerHandler(printDiagnostic);

  FailureOr<onnx::ModelProto> model = readOnnxModel(context, options.input);
  if (failed(model))
    return nullptr;
  for (const auto &[name, path] : options.freeze)
    if (failed(freezeInput(context, *model, name, path)))
      return nullptr;
  OwningOpRef<ModuleOp> module = importOnnxModel(context, *model, options.input);
  if (!module)
    return nullptr;
  if (!options.quiet)
    llvm::errs() << "kiln: import done (" << model->graph().node_size() << " nodes)\n";
  if (options.stopAfter != "import") {
    PassManager pm(&context);
    if (!options.quiet)
      pm.addInstrumentation(std::make_unique<ProgressInstrumentation>());
    buildPipeline(pm, options);
    if (failed(pm.run(*module)))
      return nullptr;
  }
  return module;
}

/// The ONNX name a location carries (the importer's NameLoc), or "".
std::string nameOf(Location loc) {
  std::string name;
  loc->walk([&](Location l) {
    if (auto n = dyn_cast<NameLoc>(l)) {
      name = n.getName().str();
      return WalkResult::interrupt();
    }
    return WalkResult::advance();
  });
  return name;
}
} // namespace

FailureOr<QuantizationUnits> listQuantizationUnits(const CompileOptions &options) {
  CompileOptions f32 = f32Options(options);
  f32.stopAfter = "fuse-elementwise"; // the last stage before "quantize"
  f32.quiet = true;
  MLIRContext context;
  OwningOpRef<ModuleOp> module = lower(context, f32);
  if (!module)
    return failure();
  QuantizationUnits units;
  auto functions = module->getOps<func::FuncOp>();
  if (functions.empty())
    return units;
  func::FuncOp f = *functions.begin(); // every bucket has the same layers and tables
  for (DenseOp d :
       quantizableLayers(f, options.weightPrecision.empty() ? "int8" : options.weightPrecision))
    units.layers.push_back({nameOf(d.getLoc()), uint64_t(d.getDepth() * d.getUnits() * 4)});
  if (options.tableBits != 32) {
    IRRewriter rewriter(&context);
    for (ConstantOp c : quantizableTables(f, options.tableBits, rewriter)) {
      auto type = cast<RankedTensorType>(c.getType());
      units.tables.push_back({nameOf(c.getLoc()), uint64_t(type.getNumElements() * 4)});
    }
  }
  return units;
}

LogicalResult compileModel(const CompileOptions &options) {
  const auto &stages = pipelineStages();
  if (!options.stopAfter.empty() && llvm::find(stages, options.stopAfter) == stages.end()) {
    llvm::errs() << "kiln: error: --stop-after: unknown stage '" << options.stopAfter
                 << "' (stages: " << llvm::join(stages, ", ") << ")\n";
    return failure();
  }
  if (failed(checkTargetOptions(options)))
    return failure();
  const bool cuda = options.target == "cuda";
  if (!cuda && options.precision == "fp8" && !options.quiet)
    llvm::errs() << "kiln: warning: --precision fp8 on the CPU emulates the CUDA target's fp8 "
                    "arithmetic to check a model's accuracy; it is slow, not for serving\n";
  if (options.precision == "fp8" && options.inputRanges.empty()) {
    llvm::errs() << "kiln: error: --precision fp8 needs --calibration FILE.npz: the per-tensor "
                    "scales of the layers' inputs come from calibration\n";
    return failure();
  }

  MLIRContext context;
  OwningOpRef<ModuleOp> module = lower(context, options);
  if (!module)
    return failure();
  bool stopsEarly = !options.stopAfter.empty() && options.stopAfter != "emit-cpp";
  if (options.hostTablesOver >= 0 && !options.quiet) {
    llvm::DenseSet<Attribute> tables; // each bucket has its op for a table
    uint64_t bytes = 0;
    module->walk([&](ConstantOp c) {
      if (c->hasAttr("kiln.on_host") && tables.insert(c.getValue()).second)
        bytes += cast<RankedTensorType>(c.getType()).getNumElements() * sizeof(float);
    });
    llvm::errs() << "kiln: " << tables.size() << " embedding table"
                 << (tables.size() == 1 ? "" : "s") << " ("
                 << llvm::format("%.1f", bytes / 1048576.0) << " MiB) "
                 << (tables.size() == 1 ? "stays" : "stay")
                 << " in host memory, pooled on the CPU\n";
  }

  if (options.emit == "mlir" || stopsEarly) {
    if (options.emit != "mlir") {
      llvm::errs() << "kiln: error: --stop-after before emit-cpp needs --emit mlir\n";
      return failure();
    }
    return writeOutput(options.output, [&](raw_ostream &os) { module->print(os); });
  }

  // Code generation: the source and weights go to a temporary folder.
  SmallString<128> dir;
  if (std::error_code ec = llvm::sys::fs::createUniqueDirectory("kiln", dir)) {
    llvm::errs() << "kiln: error: cannot create a temporary folder: " << ec.message() << "\n";
    return failure();
  }
  llvm::scope_exit cleanup([&] {
    if (options.keepTemps)
      llvm::errs() << "kiln: kept temporary files in " << dir << "\n";
    else
      llvm::sys::fs::remove_directories(dir);
  });

  ModelInfo info;
  info.compilerVersion = KILN_VERSION;
  info.modelHash = modelHash(options.input, options);
  info.profile = options.profile;
  info.quantization = quantizationName(options);
  info.f32WeightsBytes = options.f32WeightsBytes;
  const uint64_t constantBytes = distinctConstantBytes(*module);
  if (options.weights == "embed" && constantBytes > kEmbedLimitBytes) {
    llvm::errs() << "kiln: error: " << llvm::format("%.2f", constantBytes / 1073741824.0)
                 << " GiB of weights are too many to embed in a .so (the limit is "
                 << kEmbedLimitBytes / 1073741824 << " GiB): use --weights-file, which writes "
                 << "them to " << llvm::sys::path::filename(weightsFilePath(options.output))
                 << " beside it\n";
    return failure();
  }
  const bool weightsFile =
      options.weights == "file" || (options.weights == "auto" && constantBytes > kEmbedLimitBytes);
  if (weightsFile)
    info.weightsFile = llvm::sys::path::filename(weightsFilePath(options.output)).str();
  info.cpu = cpuIsaNamed(options.cpu);
  info.bf16Inputs = !cuda && options.precision == "bf16";
  if (cuda)
    info.cuda = CudaOptions{options.cudaSm, llvm::find_if(kPrecisions, [&](const auto &p) {
                                              return p.first == options.precision;
                                            })->second.str()};
  std::string source;
  WeightImage weights;
  uint64_t weightsHash = 0;
  {
    llvm::raw_string_ostream os(source);
    if (failed(emitModel(*module, info, os, weights, weightsHash)))
      return failure();
  }
  if (options.emit == "cpp")
    return writeOutput(options.output, [&](raw_ostream &os) { os << source; });
  if (options.emit != "so") {
    llvm::errs() << "kiln: error: --emit must be so, cpp or mlir\n";
    return failure();
  }

  std::string error;
  const std::string sourceName = cuda ? "model.cu" : "model.cpp";
  if (failed(writeOutput((dir + "/" + sourceName).str(), [&](raw_ostream &os) { os << source; })))
    return failure();
  // The weights file first: a process that opens the old .so meanwhile is
  // refused by the hash, never served the new weights with the old code.
  if (weightsFile) {
    const std::string path = weightsFilePath(options.output);
    auto start = std::chrono::steady_clock::now();
    if (!writeWeightsFile(path, weights, weightsHash, info.modelHash, error)) {
      llvm::errs() << "kiln: error: " << error << "\n";
      return failure();
    }
    if (!options.quiet)
      llvm::errs() << "kiln: wrote " << path << " ("
                   << llvm::format("%.1f", weights.size() / 1048576.0) << " MiB) in "
                   << llvm::format("%.1f", seconds(start)) << " s\n";
  } else if (failed(writeOutput((dir + "/" + info.embeddedWeightsFile).str(),
                                [&](raw_ostream &os) { weights.write(os); }))) {
    return failure();
  }
  if (failed(writeSupportHeaders(dir, error))) {
    llvm::errs() << "kiln: error: " << error << "\n";
    return failure();
  }
  if (!options.quiet)
    llvm::errs() << "kiln: emit-cpp done (" << source.size() / 1024 << " KiB source, "
                 << weights.size() / 1024 << " KiB weights"
                 << (weightsFile ? " in a weights file" : "") << "); building " << options.output
                 << (cuda                    ? " with nvcc for sm_" + std::to_string(options.cudaSm)
                     : options.cpu != "avx2" ? " for " + options.cpu
                                             : "")
                 << "\n";
  auto start = std::chrono::steady_clock::now();
  if (failed(buildSharedLibrary(dir, sourceName, options.output, cuda ? options.cudaSm : 0,
                                info.cpu, error))) {
    llvm::errs() << "kiln: error: " << error << "\n";
    return failure();
  }
  if (!options.quiet)
    llvm::errs() << "kiln: wrote " << options.output << " in "
                 << llvm::format("%.1f", seconds(start)) << " s\n";
  return success();
}

} // namespace kiln
