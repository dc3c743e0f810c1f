//===- FormDense.cpp - matmul/gemm against constant weights -> dense ------===//
//
// A product whose right operand is a constant matrix is a layer: it becomes
// kiln.dense with op(B) scaled by alpha as a [K, N] weight, and a Gemm's
// constant row-vector C (times beta) as its bias, or a full [M, N] C as its
// residual. Weights shared by several ops (or by the bucket functions) are
// transformed once.
//
//===----------------------------------------------------------------------===//

#include "compiler/transforms/Passes.h"

#include "mlir/IR/PatternMatch.h"
#include "llvm/ADT/bit.h"

#include <cstring>

using namespace mlir;

namespace kiln {
#define GEN_PASS_DEF_FORMDENSE
#include "compiler/transforms/Passes.h.inc"

namespace {

std::vector<float> floatsOf(ElementsAttr attr) {
  std::vector<char> bytes = constantBytes(attr);
  std::vector<float> out(bytes.size() / sizeof(float));
  std::memcpy(out.data(), bytes.data(), out.size() * sizeof(float));
  return out;
}

bool isF32(Value v) { return cast<ShapedType>(v.getType()).getElementType().isF32(); }

struct FormDensePass : impl::FormDenseBase<FormDensePass> {
  /// Transformed weights, by source attribute and transformation.
  DenseMap<std::tuple<Attribute, int, uint32_t>, ElementsAttr> weights;
  DenseMap<std::tuple<Attribute, int64_t, uint32_t>, ElementsAttr> biases;

  ElementsAttr weightFor(ElementsAttr b, bool transB, float alpha) {
    auto &slot = weights[{b, int(transB), llvm::bit_cast<uint32_t>(alpha)}];
    if (slot)
      return slot;
    if (!transB && alpha == 1.0f)
      return slot = b;
    auto type = cast<RankedTensorType>(b.getType());
    int64_t k = type.getDimSize(transB ? 1 : 0), n = type.getDimSize(transB ? 0 : 1);
    std::vector<char> storage;
    ArrayRef<char> bytes = constantData(b, storage);
    const float *in = reinterpret_cast<const float *>(bytes.data());
    std::vector<float> out(k * n);
    for (int64_t i = 0; i < k; ++i)
      for (int64_t j = 0; j < n; ++j)
        out[i * n + j] = alpha * (transB ? in[j * k + i] : in[i * n + j]);
    return slot = makeConstant(RankedTensorType::get({k, n}, type.getElementType()), out,
                               "dense_weight");
  }

  /// beta * C as [n], for a constant C that broadcasts along rows only.
  ElementsAttr biasFor(ElementsAttr c, int64_t n, float beta) {
    auto &slot = biases[{c, n, llvm::bit_cast<uint32_t>(beta)}];
    if (slot)
      return slot;
    std::vector<float> in = floatsOf(c), out(n);
    for (int64_t j = 0; j < n; ++j)
      out[j] = beta * in[in.size() == 1 ? 0 : j];
    return slot = makeConstant(RankedTensorType::get({n}, Float32Type::get(c.getContext())), out,
                               "dense_bias");
  }

  void runOnOperation() override {
    // A pass instance may run on several modules (kiln-opt's split input).
    weights.clear();
    biases.clear();
    IRRewriter rewriter(&getContext());
    getOperation().walk([&](Operation *op) {
      if (auto mm = dyn_cast<MatMulOp>(op))
        formFromMatMul(rewriter, mm);
      else if (auto g = dyn_cast<GemmOp>(op))
        formFromGemm(rewriter, g);
    });
  }

  void formFromMatMul(IRRewriter &rewriter, MatMulOp mm) {
    auto rhs = mm.getRhs().getDefiningOp<ConstantOp>();
    if (!rhs || mm.getRhs().getType().getRank() != 2 || !isF32(mm.getLhs()))
      return;
    rewriter.setInsertionPoint(mm);
    int64_t n = mm.getRhs().getType().getDimSize(1);
    rewriter.replaceOpWithNewOp<DenseOp>(
        mm, mm.getType(), mm.getLhs(), mm.getRhs(), Value(), Value(), Value(), Value(), Value(),
        rewriter.getI64IntegerAttr(n), rewriter.getStringAttr("none"), FloatAttr(), IntegerAttr(),
        FloatAttr(), IntegerAttr());
  }

  void formFromGemm(IRRewriter &rewriter, GemmOp g) {
    auto b = g.getB().getDefiningOp<ConstantOp>();
    if (!b || g.getTransA() || !isF32(g.getA()))
      return;
    int64_t n = g.getType().getDimSize(1);
    float beta = g.getBeta().convertToFloat();
    Value bias, residual;
    rewriter.setInsertionPoint(g);
    if (Value c = g.getC(); c && beta != 0.0f) {
      auto ct = cast<RankedTensorType>(c.getType());
      bool row =
          ct.getNumElements() == 1 || (ct.getShape().back() == n && ct.getNumElements() == n);
      if (auto cc = c.getDefiningOp<ConstantOp>(); cc && row)
        bias = ConstantOp::create(rewriter, cc.getLoc(), biasFor(cc.getValue(), n, beta));
      else if (ct == g.getType() && beta == 1.0f)
        residual = c;
      else
        return;
    }
    ElementsAttr weight = weightFor(b.getValue(), g.getTransB(), g.getAlpha().convertToFloat());
    Value w = weight == b.getValue() ? g.getB()
                                     : ConstantOp::create(rewriter, b.getLoc(), weight).getResult();
    // The constants the dense no longer reads, erased once g is gone.
    Operation *replaced[] = {b, g.getC() ? g.getC().getDefiningOp<ConstantOp>() : nullptr};
    if (replaced[1] == replaced[0])
      replaced[1] = nullptr;
    rewriter.replaceOpWithNewOp<DenseOp>(g, g.getType(), g.getA(), w, bias, Value(), residual,
                                         Value(), Value(), rewriter.getI64IntegerAttr(n),
                                         rewriter.getStringAttr("none"), FloatAttr(), IntegerAttr(),
                                         FloatAttr(), IntegerAttr());
    for (Operation *c : replaced)
      if (c && c->use_empty())
        rewriter.eraseOp(c);
  }
};
} // namespace
} // namespace kiln
