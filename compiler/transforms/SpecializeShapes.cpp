//===- SpecializeShapes.cpp - one static function per batch bucket --------===//
//
// kiln plans all memory ahead of time, so each batch bucket becomes its own
// function with static input shapes; kiln-infer-shapes then propagates them.
//
//===----------------------------------------------------------------------===//

#include "compiler/transforms/Passes.h"

#include "mlir/IR/Builders.h"

using namespace mlir;

namespace kiln {
#define GEN_PASS_DEF_SPECIALIZESHAPES
#include "compiler/transforms/Passes.h.inc"

namespace {
struct SpecializeShapesPass : impl::SpecializeShapesBase<SpecializeShapesPass> {
  using SpecializeShapesBase::SpecializeShapesBase;

  void runOnOperation() override {
    ModuleOp module = getOperation();
    auto main = module.lookupSymbol<func::FuncOp>("main");
    if (!main) {
      module.emitError("no @main function to specialise");
      return signalPassFailure();
    }
    SmallVector<int64_t> buckets(batches.begin(), batches.end());
    if (buckets.empty())
      buckets.push_back(1);
    llvm::sort(buckets);
    buckets.erase(std::unique(buckets.begin(), buckets.end()), buckets.end());
    if (buckets.front() < 1) {
      module.emitError("batch sizes must be positive");
      return signalPassFailure();
    }

    OpBuilder builder(main);
    for (int64_t batch : buckets) {
      auto func = cast<func::FuncOp>(builder.clone(*main));
      func.setSymName(("main_b" + Twine(batch)).str());
      func->setAttr("kiln.batch", builder.getI64IntegerAttr(batch));
      Block &body = func.getBody().front();
      SmallVector<Type> inputs;
      for (BlockArgument arg : body.getArguments()) {
        auto type = cast<RankedTensorType>(arg.getType());
        SmallVector<int64_t> dims(type.getShape());
        bool batched = func.getArgAttr(arg.getArgNumber(), "kiln.batched") != nullptr;
        for (auto [i, d] : llvm::enumerate(dims)) {
          if (!ShapedType::isDynamic(d))
            continue;
          if (i == 0 && batched) {
            d = batch;
            continue;
          }
          auto name = func.getArgAttrOfType<StringAttr>(arg.getArgNumber(), "kiln.name");
          func.emitError() << "input '" << (name ? name.getValue() : "?") << "' has dynamic dim "
                           << i << ": only the leading (batch) dim may be dynamic";
          return signalPassFailure();
        }
        auto specialized = RankedTensorType::get(dims, type.getElementType());
        if (!staticByteSize(specialized)) {
          auto name = func.getArgAttrOfType<StringAttr>(arg.getArgNumber(), "kiln.name");
          func.emitError() << "input '" << (name ? name.getValue() : "?") << "' at batch "
                           << batch << " would be " << specialized
                           << ", whose size overflows 64 bits";
          return signalPassFailure();
        }
        arg.setType(specialized);
        inputs.push_back(arg.getType());
      }
      // An output that is an input directly takes its specialised type now;
      // kiln-infer-shapes refines the others.
      auto ret = cast<func::ReturnOp>(func.getBody().front().getTerminator());
      func.setType(builder.getFunctionType(inputs, ret.getOperandTypes()));
    }
    main.erase();
  }
};
} // namespace
} // namespace kiln
