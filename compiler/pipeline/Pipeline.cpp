//===- Pipeline.cpp - the kiln pass pipeline, declared once ---------------===//

#include "Pipeline.h"

#include "compiler/transforms/Passes.h"

#include "mlir/Transforms/Passes.h"

using namespace mlir;

namespace kiln {

namespace {
struct Stage {
  std::string name;
  std::function<void(PassManager &, const CompileOptions &)> add;
};

const std::vector<Stage> &stages() {
  static const std::vector<Stage> all = {
      {"import", nullptr},
      {"widen-half",
       [](PassManager &pm, const CompileOptions &) {
         pm.addNestedPass<func::FuncOp>(createWidenHalf());
       }},
      {"specialize-shapes",
       [](PassManager &pm, const CompileOptions &o) {
         SpecializeShapesOptions options;
         options.batches.assign(o.batches.begin(), o.batches.end());
         pm.addPass(createSpecializeShapes(options));
       }},
      {"infer-shapes",
       [](PassManager &pm, const CompileOptions &) {
         pm.addNestedPass<func::FuncOp>(createInferShapes());
         pm.addPass(createCheckBucketRows());
       }},
      {"canonicalize",
       [](PassManager &pm, const CompileOptions &) {
         pm.addPass(createCanonicalizerPass());
         pm.addPass(createCSEPass());
       }},
      {"raise-idioms",
       [](PassManager &pm, const CompileOptions &) {
         pm.addNestedPass<func::FuncOp>(createRaiseQuantizedMatMul());
         pm.addNestedPass<func::FuncOp>(createRaiseEmbeddingBags());
         pm.addNestedPass<func::FuncOp>(createGroupEmbeddingBags());
         pm.addNestedPass<func::FuncOp>(createRaiseLayerIdioms());
         pm.addNestedPass<func::FuncOp>(createFuseAttention());
         pm.addNestedPass<func::FuncOp>(createFuseInteraction());
       }},
      {"check-rows",
       [](PassManager &pm, const CompileOptions &o) {
         pm.addPass(createCheckRowIndependence(
             CheckRowIndependenceOptions{o.rowMixing == "exact-buckets"}));
       }},
      {"form-dense",
       [](PassManager &pm, const CompileOptions &) { pm.addPass(createFormDense()); }},
      {"fuse-epilogues",
       [](PassManager &pm, const CompileOptions &) {
         pm.addNestedPass<func::FuncOp>(createFuseEpilogues());
       }},
      {"factor-broadcast",
       [](PassManager &pm, const CompileOptions &) {
         pm.addNestedPass<func::FuncOp>(createFactorBroadcastDense());
       }},
      {"fuse-elementwise",
       [](PassManager &pm, const CompileOptions &) {
         pm.addNestedPass<func::FuncOp>(createFuseElementwise());
       }},
      {"quantize",
       [](PassManager &pm, const CompileOptions &o) {
         if (o.exposeDenseInputs) // a calibration observer stays f32
           return pm.addPass(createExposeDenseInputs());
         // --precision bf16|fp16|fp8 (CUDA; fp8 also emulated on the CPU)
         // stores the dense weights at 16 or 8 bits.
         const bool narrow = o.precision != "fp32" && o.precision != "tf32";
         if (!o.weightPrecision.empty() || narrow) {
           QuantizeDenseOptions options;
           options.precision = narrow ? o.precision : o.weightPrecision;
           options.inputRanges.assign(o.inputRanges.begin(), o.inputRanges.end());
           options.keepLayers.assign(o.keepLayers.begin(), o.keepLayers.end());
           pm.addPass(createQuantizeDense(options));
           if (!o.inputRanges.empty())
             pm.addNestedPass<func::FuncOp>(createFuseRequantize());
         }
         if (o.tableBits != 32) {
           QuantizeTablesOptions options;
           options.bits = o.tableBits;
           options.keepTables.assign(o.keepTables.begin(), o.keepTables.end());
           pm.addPass(createQuantizeTables(options));
         }
       }},
      {"place-host-tables",
       [](PassManager &pm, const CompileOptions &o) {
         if (o.target == "cuda" && o.hostTablesOver >= 0)
           pm.addPass(createPlaceHostTables(PlaceHostTablesOptions{o.hostTablesOver}));
       }},
      {"pack-weights",
       [](PassManager &pm, const CompileOptions &o) {
         if (o.target == "cpu") // cuBLASLt reads the weights as they are
           pm.addPass(createPackWeights());
       }},
      {"bound-index-inputs",
       [](PassManager &pm, const CompileOptions &) {
         pm.addNestedPass<func::FuncOp>(createBoundIndexInputs());
       }},
      {"order-for-memory",
       [](PassManager &pm, const CompileOptions &) {
         pm.addNestedPass<func::FuncOp>(createOrderForMemory());
       }},
      {"plan-memory",
       [](PassManager &pm, const CompileOptions &) {
         pm.addNestedPass<func::FuncOp>(createPlanMemory());
       }},
      {"emit-cpp", nullptr},
  };
  return all;
}
} // namespace

CompileOptions f32Options(const CompileOptions &options) {
  CompileOptions f32 = options;
  f32.weightPrecision.clear();
  f32.tableBits = 32;
  f32.inputRanges.clear();
  f32.keepLayers.clear();
  f32.keepTables.clear();
  f32.target = "cpu";
  f32.cpu = "avx2";
  f32.precision = "fp32";
  f32.hostTablesOver = -1;
  return f32;
}

std::string weightsFilePath(const std::string &output) {
  llvm::StringRef base(output);
  base.consume_back(".so");
  return (base + ".weights").str();
}

const std::vector<std::string> &pipelineStages() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> out;
    for (const Stage &s : stages())
      out.push_back(s.name);
    return out;
  }();
  return names;
}

void buildPipeline(PassManager &pm, const CompileOptions &options) {
  for (const Stage &stage : stages()) {
    if (stage.add)
      stage.add(pm, options);
    if (stage.name == options.stopAfter)
      break;
  }
}

} // namespace kiln
