//===- PackWeights.cpp - dense weights into the CPU kernels' layout -------===//
//
// Rewrites every kiln.dense's [K, N] weight into the panel layout of
// runtime/kernels/cpu/gemm.h, with that header's packWeights, so the layout
// has one definition. A weight shared by several layers or bucket functions
// is packed once.
//
//===----------------------------------------------------------------------===//

#include "compiler/transforms/Passes.h"

#include "runtime/kernels/cpu/gemm.h"

#include "mlir/IR/PatternMatch.h"

using namespace mlir;

namespace kiln {
#define GEN_PASS_DEF_PACKWEIGHTS
#include "compiler/transforms/Passes.h.inc"

namespace {
struct PackWeightsPass : impl::PackWeightsBase<PackWeightsPass> {
  void runOnOperation() override {
    DenseMap<Attribute, ElementsAttr> packed;
    DenseMap<Operation *, Value> packedValues; // per original constant op
    IRRewriter rewriter(&getContext());
    getOperation().walk([&](DenseOp d) {
      auto w = d.getWeight().getDefiningOp<ConstantOp>();
      if (d.isPacked() || !w)
        return;
      int64_t k = d.getDepth(), n = d.getUnits();
      ElementsAttr &slot = packed[w.getValue()];
      if (!slot) {
        std::vector<char> bytes = constantBytes(w.getValue());
        std::vector<float> out(cpu::panelCount(n) * k * cpu::kPanelWidth);
        cpu::packWeights(reinterpret_cast<const float *>(bytes.data()), false, k, n, 1.0f,
                         out.data());
        auto type = RankedTensorType::get({cpu::panelCount(n), k, cpu::kPanelWidth},
                                          rewriter.getF32Type());
        slot = makeConstant(
            type, ArrayRef(reinterpret_cast<const char *>(out.data()), out.size() * sizeof(float)),
            "packed_weight");
      }
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
