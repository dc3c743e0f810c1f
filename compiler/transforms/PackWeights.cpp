//===- PackWeights.cpp - dense weights into the CPU kernels' layout -------===//
//
// Rewrites every kiln.dense's [K, N] weight into the layout of its kernel,
// with the kernels' own packing functions (gemm.h's packWeights for f32,
// f16 and bf16, quantized.h's packWeightsInt8 for i8), so each layout has
// one definition. A weight shared by several layers or bucket functions
// is packed once.
//
//===----------------------------------------------------------------------===//

#include "compiler/transforms/Passes.h"

#include "runtime/kernels/cpu/quantized.h"

#include "mlir/IR/PatternMatch.h"

using namespace mlir;

namespace kiln {
#define GEN_PASS_DEF_PACKWEIGHTS
#include "compiler/transforms/Passes.h.inc"

namespace {

/// The [K, N] weight `attr` in its kernel's layout.
ElementsAttr pack(ElementsAttr attr, int64_t k, int64_t n) {
  Type element = attr.getElementType();
  std::vector<char> storage;
  ArrayRef<char> bytes = constantData(attr, storage);
  const int64_t panels = cpu::panelCount(n);
  if (element.isInteger(8)) {
    std::vector<int8_t> out(panels * cpu::int8GroupCount(k) * 64);
    cpu::packWeightsInt8(reinterpret_cast<const int8_t *>(bytes.data()), k, n, out.data());
    return makeConstant(RankedTensorType::get({panels, cpu::int8GroupCount(k), 64}, element), out,
                        "packed_weight");
  }
  if (element.isF32()) {
    std::vector<float> out(panels * k * cpu::kPanelWidth);
    cpu::packWeights(reinterpret_cast<const float *>(bytes.data()), false, k, n, 1.0f, out.data());
    return makeConstant(RankedTensorType::get({panels, k, cpu::kPanelWidth}, element), out,
                        "packed_weight");
  }
  // fp16 / bf16: the f32 layout, moved as 16-bit patterns.
  std::vector<uint16_t> out(panels * k * cpu::kPanelWidth);
  cpu::packWeights(reinterpret_cast<const uint16_t *>(bytes.data()), false, k, n, uint16_t(1),
                   out.data());
  return makeConstant(RankedTensorType::get({panels, k, cpu::kPanelWidth}, element), out,
                      "packed_weight");
}

struct PackWeightsPass : impl::PackWeightsBase<PackWeightsPass> {
  void runOnOperation() override {
    DenseMap<Attribute, ElementsAttr> packed;
    DenseMap<Operation *, Value> packedValues; // per original constant op
    IRRewriter rewriter(&getContext());
    getOperation().walk([&](DenseOp d) {
      auto w = d.getWeight().getDefiningOp<ConstantOp>();
      if (d.isPacked() || d.isFp8() || !w) // fp8 weights are [N, K] as they are
        return;
      int64_t k = d.getDepth(), n = d.getUnits();
      ElementsAttr &slot = packed[w.getValue()];
      if (!slot)
        slot = pack(w.getValue(), k, n);
      Value &p = packedValues[w];
      if (!p) {
        rewriter.setInsertionPoint(w);
        p = ConstantOp::create(rewriter, w.getLoc(), slot);
      }
      rewriter.modifyOpInPlace(d, [&] { d.getWeightMutable().assign(p); });
    });
    for (auto [w, p] : packedValues)
      if (w->use_empty())
        rewriter.eraseOp(w);
  }
};
} // namespace
} // namespace kiln
