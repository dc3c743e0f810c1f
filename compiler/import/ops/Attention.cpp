//===- Attention.cpp - ONNX import: Attention (opset 23) ------------------===//
//
// Attention as the ops of its definition: heads split from 3-D inputs, the
// past keys and values concatenated (present_key/present_value), grouped
// key/value heads repeated for their query heads, then softmax(Q K^T * scale
// + bias) V, where the bias is the mask (additive, or -inf where a boolean
// mask is false) and, when causal, -inf past each query's position (and
// past each batch row's nonpad_kv_seqlen).
// (kiln-fuse-attention does not match this form yet.)
//
//===----------------------------------------------------------------------===//
#include "../Importer.h"

#include "kiln/checked.h"

#include <cmath>
#include <limits>

namespace kiln::import {

bool Importer::importAttention(const onnx::NodeProto &, const std::string &op) {
  if (op != "Attention")
    return false;
  OpBuilder &b = builder;
  Value q = input(0), k = input(1), v = input(2);
  const int64_t rank = rankOf(q);
  if (rank != 3 && rank != 4)
    fail("query, key and value must be 3-D [batch, seq, heads * size] or 4-D [batch, heads, "
         "seq, size]");
  if (rankOf(k) != rank || rankOf(v) != rank)
    fail("query, key and value must have the same rank");
  auto dim = [](Value x, int64_t d) { return cast<RankedTensorType>(x.getType()).getDimSize(d); };
  auto perm = [&](Value x, ArrayRef<int64_t> p) {
    return make<TransposeOp>(x, b.getDenseI64ArrayAttr(p));
  };
  int64_t qHeads, kvHeads;
  if (rank == 3) { // [B, S, H * D] -> [B, H, S, D]
    qHeads = intAttr("q_num_heads", 0);
    kvHeads = intAttr("kv_num_heads", 0);
    if (qHeads <= 0 || kvHeads <= 0)
      fail("3-D inputs need the q_num_heads and kv_num_heads attributes");
    auto split = [&](Value x, int64_t heads) {
      const int64_t width = dim(x, 2);
      if (ShapedType::isDynamic(width) || width % heads != 0)
        fail("the last dim of a 3-D input must be a known multiple of its heads");
      Value shape = constI64({0, 0, heads, width / heads});
      return perm(make<ReshapeOp>(x, shape, UnitAttr()), {0, 2, 1, 3});
    };
    q = split(q, qHeads);
    k = split(k, kvHeads);
    v = split(v, kvHeads);
  } else {
    qHeads = dim(q, 1);
    kvHeads = dim(k, 1);
  }
  if (ShapedType::isDynamic(qHeads) || ShapedType::isDynamic(kvHeads) || kvHeads <= 0 ||
      qHeads % kvHeads != 0)
    fail("the query heads must be a known multiple of the key/value heads");
  if (hasInput(4) != hasInput(5))
    fail("past_key and past_value come together");
  const int64_t past = hasInput(4) ? dim(input(4), 2) : 0;
  if (hasInput(4)) {
    k = make<ConcatOp>(ValueRange{input(4), k}, b.getI64IntegerAttr(2));
    v = make<ConcatOp>(ValueRange{input(5), v}, b.getI64IntegerAttr(2));
  }
  define(1, k);
  define(2, v);
  const int64_t querySeq = dim(q, 2), totalSeq = dim(k, 2), headSize = dim(q, 3);
  if (ShapedType::isDynamic(querySeq) || ShapedType::isDynamic(totalSeq) ||
      ShapedType::isDynamic(headSize))
    fail("the sequence lengths and the head size must be known at compile time");
  if (qHeads != kvHeads) { // each key/value head serves qHeads / kvHeads query heads
    auto repeat = [&](Value x) {
      Value grouped = make<UnsqueezeOp>(x, b.getDenseI64ArrayAttr({2}));
      Value shape = constI64({dim(x, 0) == ShapedType::kDynamic ? 1 : dim(x, 0), kvHeads,
                              qHeads / kvHeads, dim(x, 2), dim(x, 3)});
      Value expanded = make<ExpandOp>(grouped, shape);
      return make<ReshapeOp>(expanded, constI64({0, qHeads, dim(x, 2), dim(x, 3)}), UnitAttr());
    };
    k = repeat(k);
    v = repeat(v);
  }

  const auto *scaleAttr = typedAttr("scale", onnx::AttributeProto::FLOAT);
  const double scale = scaleAttr ? scaleAttr->f() : 1.0 / std::sqrt(double(headSize));
  Value keysT = perm(k, {0, 1, 3, 2});
  Value product = make<MatMulOp>(q, keysT);
  Value scores = make<MulOp>(product, scalarLike(product, scale));
  const int64_t mode = intAttr("qk_matmul_output_mode", 0);
  if (mode < 0 || mode > 3)
    fail("qk_matmul_output_mode must be 0 to 3");
  Value qkOutput = scores;

  const double negInf = -std::numeric_limits<double>::infinity();
  // The additive bias of a boolean mask: 0 where `keep`, else -inf.
  auto bias = [&](Value keep) {
    Value zero = scalarLike(scores, 0), masked = scalarLike(scores, negInf);
    return make<WhereOp>(keep, zero, masked);
  };
  if (hasInput(3)) {
    Value mask = input(3);
    if (getElementTypeOrSelf(mask).isInteger(1))
      mask = bias(mask);
    auto maskType = cast<RankedTensorType>(mask.getType());
    const int64_t maskKeys = maskType.getShape().back();
    if (maskKeys != totalSeq) { // a mask for fewer keys: the rest are masked out
      if (ShapedType::isDynamic(maskKeys) || maskKeys > totalSeq)
        fail("attn_mask's last dim must be at most the total sequence length");
      SmallVector<int64_t> pads(2 * maskType.getRank(), 0);
      pads.back() = totalSeq - maskKeys;
      mask = make<PadOp>(mask, b.getDenseI64ArrayAttr(pads), b.getF64FloatAttr(negInf));
    }
    scores = make<AddOp>(scores, mask);
  }
  // Key positions [0, total), computed by the model (no import-time table
  // whatever the sequence lengths).
  auto positions = [&](int64_t begin, int64_t count) {
    std::optional<int64_t> end = checkedAdd(begin, count);
    if (!end)
      fail("the sequence positions overflow int64");
    auto scalar = [&](int64_t v) -> Value {
      auto type = RankedTensorType::get({}, b.getI64Type());
      return ConstantOp::create(b, loc, DenseIntElementsAttr::get(type, ArrayRef<int64_t>{v}));
    };
    Value start = scalar(begin), limit = scalar(*end), step = scalar(1);
    return make<RangeOp>(start, limit, step);
  };
  if (hasInput(6)) { // nonpad_kv_seqlen [B]: keys from there on are padding
    Value limit = make<UnsqueezeOp>(input(6), b.getDenseI64ArrayAttr({1, 2, 3}));
    Value valid = make<LessOp>(positions(0, totalSeq), limit); // [B, 1, 1, total]
    scores = make<AddOp>(scores, bias(valid));
  }
  if (intAttr("is_causal", 0)) { // query i sees keys up to past + i
    Value queries = make<UnsqueezeOp>(positions(past, querySeq), b.getDenseI64ArrayAttr({1}));
    Value seen = make<LessEqualOp>(positions(0, totalSeq), queries); // [query, total]
    scores = make<AddOp>(scores, bias(seen));
  }
  if (mode == 1)
    qkOutput = scores;
  const float softcap = floatAttr("softcap", 0.0f);
  if (softcap > 0) { // softcap * tanh(scores / softcap)
    Value cap = scalarLike(scores, softcap);
    scores = make<MulOp>(make<TanhOp>(make<DivOp>(scores, cap)), cap);
  }
  if (mode == 2)
    qkOutput = scores;
  Value weights = make<SoftmaxOp>(scores, b.getI64IntegerAttr(3));
  if (mode == 3)
    qkOutput = weights;
  define(3, qkOutput);
  Value y = make<MatMulOp>(weights, v);
  if (rank == 3) // back to [B, S, H * D]
    y = make<ReshapeOp>(perm(y, {0, 2, 1, 3}), constI64({0, 0, qHeads * dim(v, 3)}), UnitAttr());
  define(0, y);
  return true;
}

} // namespace kiln::import
