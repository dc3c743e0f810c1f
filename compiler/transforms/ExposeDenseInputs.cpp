//===- ExposeDenseInputs.cpp - int8 layers' inputs as extra results -------===//
//
// The observer of static calibration (kiln compile --calibration): the f32
// model compiled with this pass returns, after its own outputs, the input of
// every layer kiln-quantize-dense would store at int8, in layer order.
//
//===----------------------------------------------------------------------===//

#include "compiler/transforms/Passes.h"

#include "mlir/IR/Builders.h"

using namespace mlir;

namespace kiln {
#define GEN_PASS_DEF_EXPOSEDENSEINPUTS
#include "compiler/transforms/Passes.h.inc"

namespace {
struct ExposeDenseInputsPass : impl::ExposeDenseInputsBase<ExposeDenseInputsPass> {
  void runOnOperation() override {
    for (func::FuncOp f : getOperation().getOps<func::FuncOp>()) {
      SmallVector<Value> inputs;
      f.walk([&](DenseOp d) {
        if (isInt8Candidate(d))
          inputs.push_back(d.getInput());
      });
      Builder b(&getContext());
      SmallVector<Type> results(f.getResultTypes());
      SmallVector<DictionaryAttr> attrs;
      f.getAllResultAttrs(attrs);
      for (auto [i, v] : llvm::enumerate(inputs)) {
        results.push_back(v.getType());
        attrs.push_back(b.getDictionaryAttr(b.getNamedAttr(
            "kiln.name", b.getStringAttr(kCalibrationOutputPrefix + std::to_string(i)))));
      }
      cast<func::ReturnOp>(f.getBody().front().getTerminator()).getOperandsMutable().append(inputs);
      f.setType(FunctionType::get(&getContext(), f.getArgumentTypes(), results));
      f.setAllResultAttrs(attrs);
    }
  }
};
} // namespace
} // namespace kiln
