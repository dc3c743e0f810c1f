//===- FuseRequantize.cpp - int8 layers feeding int8 layers in ui8 --------===//
//
// An int8 layer whose only use is the input of a calibrated int8 layer
// (static input_scale / input_zero_point) quantises its result in its
// epilogue with that range (output_scale / output_zero_point) and returns
// ui8; the next layer reads those bytes as its quantised input.
//
//===----------------------------------------------------------------------===//

#include "compiler/transforms/Passes.h"

using namespace mlir;

namespace kiln {
#define GEN_PASS_DEF_FUSEREQUANTIZE
#include "compiler/transforms/Passes.h.inc"

namespace {
struct FuseRequantizePass : impl::FuseRequantizeBase<FuseRequantizePass> {
  void runOnOperation() override {
    getOperation().walk([&](DenseOp producer) {
      if (!producer.isInt8() || producer.getOutputScale() || producer.getUnits() % 4 ||
          !producer.getResult().hasOneUse())
        return;
      OpOperand &use = *producer.getResult().getUses().begin();
      auto consumer = dyn_cast<DenseOp>(use.getOwner());
      if (!consumer || &use != &consumer.getInputMutable() || !consumer.isInt8() ||
          !consumer.getInputScale())
        return;
      producer.setOutputScaleAttr(consumer.getInputScaleAttr());
      producer.setOutputZeroPointAttr(consumer.getInputZeroPointAttr());
      auto type = cast<RankedTensorType>(producer.getType());
      producer.getResult().setType(RankedTensorType::get(
          type.getShape(), IntegerType::get(&getContext(), 8, IntegerType::Unsigned)));
    });
  }
};
} // namespace
} // namespace kiln
