//===- WidenHalf.cpp - f16 and bf16 computed in f32 -------------------------===//
//
// f16 and bf16 are storage types in kiln: the kernels move, gather and
// convert them, and compute in f32. This pass rebuilds each op that
// computes on them with f32 operands and results (see Passes.td).
//
//===----------------------------------------------------------------------===//

#include "compiler/transforms/Passes.h"
#include "runtime/kernels/scalar.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/IRMapping.h"

using namespace mlir;

namespace kiln {
#define GEN_PASS_DEF_WIDENHALF
#include "compiler/transforms/Passes.h.inc"

namespace {

bool isHalf(Type t) {
  Type e = getElementTypeOrSelf(t);
  return e.isF16() || e.isBF16();
}

Type withElement(Type t, Type element) {
  return cast<RankedTensorType>(t).clone(element);
}

/// A 16-bit float constant's values at f32.
ElementsAttr widenedConstant(ElementsAttr attr, Type f32) {
  std::vector<char> storage;
  ArrayRef<char> bytes = constantData(attr, storage);
  const bool bf16 = attr.getElementType().isBF16();
  std::vector<float> values(bytes.size() / 2);
  for (size_t i = 0; i < values.size(); ++i) {
    uint16_t h;
    std::memcpy(&h, bytes.data() + 2 * i, 2);
    values[i] = bf16 ? scalar::bf16ToFloat(h) : scalar::fp16ToFloat(h);
  }
  return makeConstant(cast<RankedTensorType>(withElement(attr.getType(), f32)), values,
                      "widened");
}

struct WidenHalfPass : impl::WidenHalfBase<WidenHalfPass> {
  void runOnOperation() override {
    Block &body = getOperation().getBody().front();
    Type f32 = Float32Type::get(&getContext());
    // The f32 value standing for each 16-bit value an op computed on.
    DenseMap<Value, Value> wide;
    SmallVector<CastOp> narrowing;
    SmallVector<ConstantOp> widenedConstants;
    auto widen = [&](Value v, OpBuilder &b) -> Value {
      if (Value w = wide.lookup(v))
        return w;
      Value w;
      if (auto c = v.getDefiningOp<ConstantOp>()) {
        w = b.create<ConstantOp>(c.getLoc(), widenedConstant(c.getValue(), f32));
        widenedConstants.push_back(c);
      } else
        w = b.create<CastOp>(v.getLoc(), v, TypeAttr::get(f32));
      return wide[v] = w;
    };
    for (Operation &op : llvm::make_early_inc_range(body.without_terminator())) {
      if (movesDataOnly(&op) || op.getNumRegions() ||
          (llvm::none_of(op.getOperandTypes(), isHalf) &&
           llvm::none_of(op.getResultTypes(), isHalf)))
        continue;
      OpBuilder b(&op);
      IRMapping mapping;
      for (Value v : op.getOperands())
        if (isHalf(v.getType()))
          mapping.map(v, widen(v, b));
      Operation *computed = b.clone(op, mapping);
      b.setInsertionPointAfter(computed);
      for (auto [old, result] : llvm::zip(op.getResults(), computed->getResults())) {
        if (!isHalf(old.getType())) {
          old.replaceAllUsesWith(result);
          continue;
        }
        result.setType(withElement(old.getType(), f32));
        auto narrow = b.create<CastOp>(op.getLoc(), result,
                                       TypeAttr::get(getElementTypeOrSelf(old.getType())));
        old.replaceAllUsesWith(narrow.getResult());
        wide[narrow] = result;
        narrowing.push_back(narrow);
      }
      op.erase();
    }
    // Narrowings only computing ops read, and constants only they read.
    for (CastOp c : narrowing)
      if (c->use_empty())
        c.erase();
    for (ConstantOp c : widenedConstants)
      if (c->use_empty())
        c.erase();
  }
};

} // namespace
} // namespace kiln
