// import_fuzzer.cpp - ONNX bytes -> importer -> the pass pipeline up to the
// memory plan, in a fresh MLIR context per input. Any input may be refused
// with a diagnostic; none may crash, hang, leak or trip a sanitizer.
// The custom mutator (model_mutator.h) keeps most inputs valid ModelProtos.

#include "compiler/import/OnnxImporter.h"
#include "compiler/pipeline/Pipeline.h"
#include "compiler/transforms/Passes.h"
#include "dialects/KilnDialect.h"
#include "model_mutator.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/Pass/PassManager.h"

#include <onnx/onnx_pb.h>

using namespace mlir;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  onnx::ModelProto model;
  if (!model.ParseFromArray(data, int(size)))
    return -1; // not a ModelProto: kept out of the corpus
  MLIRContext context(MLIRContext::Threading::DISABLED);
  context.loadDialect<kiln::KilnDialect, func::FuncDialect>();
  context.printOpOnDiagnostic(false);
  ScopedDiagnosticHandler quiet(&context, [](Diagnostic &) { return success(); });
  // External data resolves beside a folder that does not exist.
  OwningOpRef<ModuleOp> module = kiln::importOnnxModel(context, model, "/nonexistent/fuzz.onnx");
  if (!module)
    return 0;
  kiln::CompileOptions options;
  options.batches = {1, 4};
  options.stopAfter = "plan-memory";
  options.quiet = true;
  PassManager pm(&context);
  kiln::buildPipeline(pm, options);
  (void)pm.run(*module);
  return 0;
}

extern "C" size_t LLVMFuzzerCustomMutator(uint8_t *data, size_t size, size_t maxSize,
                                          unsigned int seed) {
  return kiln::fuzz::ModelMutator(seed).mutate(data, size, maxSize);
}
