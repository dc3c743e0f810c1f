//===- DataMovement.cpp - ONNX import: data movement ---------------------===//
//
// Ops that move or select elements: reshapes, transposes, slices, gathers, concats.
//
//===----------------------------------------------------------------------===//
#include "../Importer.h"

#include "mlir/IR/Matchers.h"

namespace kiln::import {

/// Ops that move or select elements. Returns false for other ops.
bool Importer::importDataMovement(const onnx::NodeProto &n, const std::string &op) {
  OpBuilder &b = builder;
  if (op == "Expand") {
    define(0, make<ExpandOp>(input(0), input(1)));
  } else if (op == "GatherElements") {
    Value data = input(0);
    int64_t axis = normalizeAxis(intAttr("axis", 0), rankOf(data));
    define(0, make<GatherElementsOp>(data, input(1), b.getI64IntegerAttr(axis)));
  } else if (op == "Trilu") {
    int64_t k = 0;
    if (hasInput(1)) {
      auto ks = constantInts(1, "k");
      if (ks.size() != 1)
        fail("k must be a scalar");
      k = ks[0];
    }
    define(0, make<TriluOp>(input(0), b.getBoolAttr(intAttr("upper", 1)), b.getI64IntegerAttr(k)));
  } else if (op == "CumSum") {
    Value x = input(0);
    auto axes = constantInts(1, "axis");
    if (axes.size() != 1)
      fail("axis must be a scalar");
    define(0, make<CumSumOp>(x, b.getI64IntegerAttr(normalizeAxis(axes[0], rankOf(x))),
                             b.getBoolAttr(intAttr("exclusive", 0)),
                             b.getBoolAttr(intAttr("reverse", 0))));
  } else if (op == "Pad") {
    Value x = input(0);
    int64_t rank = rankOf(x);
    const auto *mode = attr("mode");
    if (mode && mode->s() != "constant")
      fail("only constant padding is supported, not '" + mode->s() + "'");
    SmallVector<int64_t> pads;
    double value = 0;
    if (opset < 11) {
      if (auto p = intsAttr("pads"))
        pads = *p;
      value = floatAttr("value", 0.0f);
    } else {
      pads = constantInts(1, "pads");
      if (hasInput(2)) {
        DenseElementsAttr v;
        if (!matchPattern(input(2), m_Constant(&v)) || v.getNumElements() != 1)
          fail("the pad value must be a constant scalar");
        Attribute e = *v.getValues<Attribute>().begin();
        value = isa<FloatAttr>(e) ? cast<FloatAttr>(e).getValueAsDouble()
                                  : double(cast<IntegerAttr>(e).getInt());
      }
    }
    // Pads may list only some axes (opset 18); spread them over every dim.
    SmallVector<int64_t> axes;
    if (opset >= 18 && hasInput(3))
      axes = constantInts(3, "axes");
    else
      for (int64_t i = 0; i < rank; ++i)
        axes.push_back(i);
    if (pads.size() != 2 * axes.size())
      fail("pads must hold a begin and an end per axis");
    SmallVector<int64_t> all(2 * rank, 0);
    for (auto [i, a] : llvm::enumerate(axes)) {
      int64_t axis = normalizeAxis(a, rank);
      all[axis] = pads[i];
      all[axis + rank] = pads[i + axes.size()];
    }
    define(0, make<PadOp>(x, b.getDenseI64ArrayAttr(all), b.getF64FloatAttr(value)));
  } else if (op == "Split") {
    Value x = input(0);
    int64_t rank = rankOf(x);
    int64_t axis = normalizeAxis(intAttr("axis", 0), rank);
    int64_t size = cast<RankedTensorType>(x.getType()).getDimSize(axis);
    SmallVector<int64_t> sizes;
    if (opset >= 13 && hasInput(1)) {
      auto split = getConstantInts(input(1));
      if (!split)
        fail(
            "a Split into parts whose sizes are computed at run time (data-dependent parts, "
            "as a torchrec KeyedJaggedTensor's values split per key exports) is not supported: "
            "kiln needs constant split sizes, and takes sparse features as ids of a fixed bag size "
            "per table ([batch, bag] or [batch, tables, bag]); KeyedJaggedTensor "
            "values/lengths inputs are not supported yet");
      sizes = *split;
    } else if (auto a = intsAttr("split"); a && opset < 13)
      sizes = *a;
    if (sizes.empty()) {
      if (ShapedType::isDynamic(size))
        fail("Split of a dynamic dim needs explicit sizes");
      int64_t parts = n.output_size();
      int64_t chunk = (size + parts - 1) / parts;
      for (int64_t i = 0; i < parts; ++i)
        sizes.push_back(std::max<int64_t>(0, std::min(chunk, size - i * chunk)));
    }
    if (int64_t(sizes.size()) != n.output_size())
      fail("Split sizes do not match the number of outputs");
    int64_t start = 0;
    for (auto [i, len] : llvm::enumerate(sizes)) {
      define(i, make<SliceOp>(x, constI64({start}), constI64({start + len}), constI64({1}),
                              b.getDenseI64ArrayAttr({axis})));
      start += len;
    }
  } else if (op == "Concat") {
    SmallVector<Value> ins;
    for (int i = 0; i < n.input_size(); ++i)
      ins.push_back(input(i));
    if (ins.empty())
      fail("Concat without inputs");
    int64_t axis = normalizeAxis(intAttr("axis", 0), rankOf(ins[0]));
    define(0, make<ConcatOp>(ins, b.getI64IntegerAttr(axis)));
  } else if (op == "Reshape") {
    Value shape;
    if (opset >= 5)
      shape = input(1);
    else if (auto dims = intsAttr("shape"))
      shape = constI64(*dims);
    else
      fail("Reshape without a shape attribute");
    define(0, make<ReshapeOp>(input(0), shape,
                              intAttr("allowzero", 0) ? b.getUnitAttr() : UnitAttr()));
  } else if (op == "Flatten") {
    Value x = input(0);
    int64_t axis = intAttr("axis", 1);
    if (axis < 0)
      axis += rankOf(x);
    if (axis < 0 || axis > rankOf(x))
      fail("axis out of range");
    define(0, make<FlattenOp>(x, b.getI64IntegerAttr(axis)));
  } else if (op == "Transpose") {
    Value x = input(0);
    SmallVector<int64_t> perm;
    if (auto p = intsAttr("perm"))
      perm = *p;
    else
      for (int64_t i = rankOf(x) - 1; i >= 0; --i)
        perm.push_back(i);
    define(0, make<TransposeOp>(x, b.getDenseI64ArrayAttr(perm)));
  } else if (op == "Gather") {
    Value data = input(0);
    int64_t axis = normalizeAxis(intAttr("axis", 0), rankOf(data));
    define(0, make<GatherOp>(data, input(1), b.getI64IntegerAttr(axis)));
  } else if (op == "GatherND") {
    Value data = input(0), indices = input(1);
    auto idx = cast<RankedTensorType>(indices.getType());
    int64_t batchDims = intAttr("batch_dims", 0);
    if (batchDims < 0 || idx.getRank() < batchDims + 1 || idx.isDynamicDim(idx.getRank() - 1))
      fail("needs 0 <= batch_dims < the rank of indices and a static last dim of indices");
    int64_t k = idx.getShape().back();
    if (k < 1 || rankOf(data) < batchDims + k)
      fail("index tuples of " + std::to_string(k) + " need data of rank >= " +
           std::to_string(batchDims + k) + " past batch_dims " + std::to_string(batchDims));
    define(0, make<GatherNDOp>(data, indices, b.getI64IntegerAttr(batchDims)));
  } else if (op == "Squeeze") {
    Value x = input(0);
    SmallVector<int64_t> axes;
    if (opset >= 13) {
      if (hasInput(1))
        axes = constantInts(1, "axes");
    } else if (auto a = intsAttr("axes")) {
      axes = *a;
    }
    auto t = cast<RankedTensorType>(x.getType());
    if (axes.empty()) {
      for (int64_t i = 0; i < t.getRank(); ++i) {
        if (t.isDynamicDim(i))
          fail("Squeeze without axes needs static dims");
        if (t.getDimSize(i) == 1)
          axes.push_back(i);
      }
    }
    axes = normalizeAxes(axes, t.getRank());
    define(0, make<SqueezeOp>(x, b.getDenseI64ArrayAttr(axes)));
  } else if (op == "Unsqueeze") {
    Value x = input(0);
    SmallVector<int64_t> axes;
    if (opset >= 13)
      axes = constantInts(1, "axes");
    else if (auto a = intsAttr("axes"))
      axes = *a;
    else
      fail("Unsqueeze without axes");
    axes = normalizeAxes(axes, rankOf(x) + axes.size());
    define(0, make<UnsqueezeOp>(x, b.getDenseI64ArrayAttr(axes)));
  } else if (op == "Slice") {
    Value x = input(0);
    int64_t rank = rankOf(x);
    Value starts, ends, steps;
    SmallVector<int64_t> axes;
    if (opset < 10) {
      auto s = intsAttr("starts"), e = intsAttr("ends");
      if (!s || !e)
        fail("Slice needs starts and ends");
      starts = constI64(*s);
      ends = constI64(*e);
      if (auto a = intsAttr("axes"))
        axes = *a;
    } else {
      starts = input(1);
      ends = input(2);
      if (hasInput(3))
        axes = constantInts(3, "axes");
    }
    if (rankOf(starts) != 1)
      fail("Slice starts must be a 1-D tensor");
    int64_t count = cast<RankedTensorType>(starts.getType()).getDimSize(0);
    if (count == ShapedType::kDynamic)
      fail("Slice starts must have a known length");
    if (count > rank)
      fail("Slice has " + std::to_string(count) + " starts but its input has rank " +
           std::to_string(rank));
    if (!axes.empty() && static_cast<int64_t>(axes.size()) != count)
      fail("Slice has " + std::to_string(count) + " starts but " + std::to_string(axes.size()) +
           " axes");
    if (axes.empty())
      for (int64_t i = 0; i < count; ++i)
        axes.push_back(i);
    for (int64_t &a : axes)
      a = normalizeAxis(a, rank);
    steps = opset >= 10 && hasInput(4) ? input(4) : constI64(SmallVector<int64_t>(count, 1));
    auto toI64 = [&](Value v) {
      if (getElementTypeOrSelf(v).isInteger(64))
        return v;
      return make<CastOp>(v, TypeAttr::get(b.getI64Type()));
    };
    define(0, make<SliceOp>(x, toI64(starts), toI64(ends), toI64(steps),
                            b.getDenseI64ArrayAttr(axes)));
  } else {
    return false;
  }
  return true;
}

} // namespace kiln::import
