//===- KilnFolds.cpp - folders and canonicalisations of kiln ops ----------===//
//
// Folders evaluate small constant tensors, which is what removes an exporter's
// shape sub-graphs (Shape -> Gather -> Concat -> Reshape) once shapes are
// static, and turn reshape-like ops of weights into re-typed weights that
// share the same bytes. Large tensors are never evaluated here.
// Canonicalisations collapse chains of transposes and of reshapes.
//
//===----------------------------------------------------------------------===//

#include "KilnOps.h"

#include "mlir/IR/DialectResourceBlobManager.h"
#include "mlir/IR/Matchers.h"
#include "mlir/IR/PatternMatch.h"

using namespace mlir;

namespace kiln {

static bool isSmallStatic(Type type) {
  auto t = dyn_cast<RankedTensorType>(type);
  return t && t.hasStaticShape() && t.getNumElements() <= kMaxFoldElements;
}

static SmallVector<int64_t> stridesOf(ArrayRef<int64_t> shape) {
  SmallVector<int64_t> strides(shape.size(), 1);
  for (int64_t i = int64_t(shape.size()) - 2; i >= 0; --i)
    strides[i] = strides[i + 1] * shape[i + 1];
  return strides;
}

/// Calls fn(flat, index) for every element of `shape` in row-major order.
static void forEachIndex(ArrayRef<int64_t> shape,
                         function_ref<void(int64_t, ArrayRef<int64_t>)> fn) {
  int64_t total = 1;
  for (int64_t d : shape)
    total *= d;
  SmallVector<int64_t> index(shape.size(), 0);
  for (int64_t n = 0; n < total; ++n) {
    fn(n, index);
    for (int64_t d = int64_t(shape.size()) - 1; d >= 0; --d) {
      if (++index[d] < shape[d])
        break;
      index[d] = 0;
    }
  }
}

/// How deep evaluateInts follows a value's producers: index arithmetic is a
/// few ops deep, and the limit bounds the work on a long chain.
constexpr int kMaxEvaluationDepth = 32;

static std::optional<SmallVector<int64_t>> evaluateInts(Value value, int depth);

static std::optional<SmallVector<int64_t>> sourceIndices(Operation *op, int depth) {
  if (op->getNumResults() != 1 || op->getNumOperands() == 0)
    return std::nullopt;
  auto type = dyn_cast<RankedTensorType>(op->getResult(0).getType());
  auto inType = dyn_cast<RankedTensorType>(op->getOperand(0).getType());
  if (!type || !inType || !type.hasStaticShape() || !inType.hasStaticShape() ||
      type.getNumElements() > kMaxTrackedElements)
    return std::nullopt;
  auto strides = stridesOf(inType.getShape());
  SmallVector<int64_t> sources(type.getNumElements());
  auto fill = [&](auto source) {
    forEachIndex(type.getShape(),
                 [&](int64_t n, ArrayRef<int64_t> idx) { sources[n] = source(idx); });
    return sources;
  };
  if (isReshapeLike(op) || isa<CopyOp, CastOp>(op))
    return fill([&, n = int64_t(0)](ArrayRef<int64_t>) mutable { return n++; });
  if (auto t = dyn_cast<TransposeOp>(op))
    return fill([&](ArrayRef<int64_t> idx) {
      int64_t flat = 0;
      for (auto [d, i] : llvm::enumerate(idx))
        flat += i * strides[t.getPerm()[d]];
      return flat;
    });
  if (auto s = dyn_cast<SliceOp>(op)) {
    auto ranges = getSliceRanges(s);
    if (!ranges)
      return std::nullopt;
    return fill([&](ArrayRef<int64_t> idx) {
      int64_t flat = 0;
      for (auto [d, i] : llvm::enumerate(idx))
        flat += ((*ranges)[d].start + i * (*ranges)[d].step) * strides[d];
      return flat;
    });
  }
  if (isa<ExpandOp>(op)) {
    auto inShape = inType.getShape();
    int64_t offset = type.getRank() - inType.getRank();
    return fill([&](ArrayRef<int64_t> idx) {
      int64_t flat = 0;
      for (int64_t d = 0; d < inType.getRank(); ++d)
        flat += (inShape[d] == 1 ? 0 : idx[d + offset]) * strides[d];
      return flat;
    });
  }
  if (auto g = dyn_cast<GatherOp>(op)) {
    auto indices = evaluateInts(g.getIndices(), depth + 1);
    if (!indices)
      return std::nullopt;
    auto dataShape = inType.getShape();
    int64_t axis = g.getAxis(), idxRank = g.getIndices().getType().getRank();
    auto idxStrides = stridesOf(g.getIndices().getType().getShape());
    for (int64_t i : *indices)
      if (i < -dataShape[axis] || i >= dataShape[axis])
        return std::nullopt;
    return fill([&](ArrayRef<int64_t> idx) {
      int64_t flat = 0, pos = 0;
      for (int64_t d = 0; d < axis; ++d)
        flat += idx[d] * strides[d];
      for (int64_t d = 0; d < idxRank; ++d)
        pos += idx[axis + d] * idxStrides[d];
      int64_t i = (*indices)[pos];
      flat += (i < 0 ? i + dataShape[axis] : i) * strides[axis];
      for (int64_t d = axis + 1; d < int64_t(dataShape.size()); ++d)
        flat += idx[d + idxRank - 1] * strides[d];
      return flat;
    });
  }
  if (auto g = dyn_cast<GatherNDOp>(op)) {
    auto indices = evaluateInts(g.getIndices(), depth + 1);
    if (!indices)
      return std::nullopt;
    auto dataShape = inType.getShape();
    int64_t b = g.getBatchDims(), k = g.getIndices().getType().getShape().back();
    int64_t tuples = g.getIndices().getType().getNumElements() / k; // over all batch_dims
    int64_t slice = 1;
    for (int64_t d = b + k; d < int64_t(dataShape.size()); ++d)
      slice *= dataShape[d];
    int64_t perBatch = slice; // data elements per index of the batch_dims
    for (int64_t d = b; d < b + k; ++d)
      perBatch *= dataShape[d];
    int64_t tuplesPerBatch = tuples;
    for (int64_t d = 0; d < b; ++d)
      tuplesPerBatch /= dataShape[d];
    SmallVector<int64_t> starts; // the flat data offset each tuple selects
    for (int64_t t = 0; t < tuples; ++t) {
      int64_t offset = 0;
      for (int64_t c = 0; c < k; ++c) {
        int64_t i = (*indices)[t * k + c], dim = dataShape[b + c];
        if (i < -dim || i >= dim)
          return std::nullopt;
        offset = offset * dim + (i < 0 ? i + dim : i);
      }
      starts.push_back((t / tuplesPerBatch) * perBatch + offset * slice);
    }
    int64_t n = 0;
    return fill([&](ArrayRef<int64_t>) {
      int64_t source = starts[n / slice] + n % slice;
      ++n;
      return source;
    });
  }
  return std::nullopt;
}

std::optional<SmallVector<int64_t>> getSourceIndices(Operation *op) {
  return sourceIndices(op, 0);
}

// Integer arithmetic wraps in two's complement, as onnxruntime's kernels do
// (and kiln's generated code): a model's overflowing constants fold to what
// running them gives, never to undefined behaviour in the compiler.
static int64_t wrapAdd(int64_t l, int64_t r) { return int64_t(uint64_t(l) + uint64_t(r)); }
static int64_t wrapSub(int64_t l, int64_t r) { return int64_t(uint64_t(l) - uint64_t(r)); }
static int64_t wrapMul(int64_t l, int64_t r) { return int64_t(uint64_t(l) * uint64_t(r)); }

/// An i64 or i32 value as its type holds it (i32 arithmetic wraps at 32 bits).
static int64_t asWidth(int64_t v, unsigned width) { return width == 32 ? int64_t(int32_t(v)) : v; }

static std::optional<SmallVector<int64_t>> evaluateInts(Value value, int depth) {
  if (auto c = getConstantInts(value))
    return c;
  auto type = dyn_cast<RankedTensorType>(value.getType());
  Operation *def = value.getDefiningOp();
  if (!def || depth > kMaxEvaluationDepth || !type || !type.hasStaticShape() ||
      type.getNumElements() > kMaxTrackedElements || !(type.getElementType().isInteger(64) ||
                                                        type.getElementType().isInteger(32)))
    return std::nullopt;
  unsigned width = type.getElementType().getIntOrFloatBitWidth();
  SmallVector<int64_t> out;
  if (isa<AddOp, SubOp, MulOp>(def)) {
    auto l = evaluateInts(def->getOperand(0), depth + 1);
    auto r = l ? evaluateInts(def->getOperand(1), depth + 1) : std::nullopt;
    if (!r)
      return std::nullopt;
    // Numpy broadcasting: operand dims align right; size-1 dims repeat.
    auto shape = type.getShape();
    auto stridesFor = [&](Value v) {
      auto s = cast<RankedTensorType>(v.getType()).getShape();
      auto own = stridesOf(s);
      SmallVector<int64_t> st(shape.size(), 0);
      for (size_t k = 0; k < s.size(); ++k)
        st[k + shape.size() - s.size()] = s[k] == 1 ? 0 : own[k];
      return st;
    };
    auto ls = stridesFor(def->getOperand(0)), rs = stridesFor(def->getOperand(1));
    auto fn = isa<AddOp>(def) ? wrapAdd : isa<SubOp>(def) ? wrapSub : wrapMul;
    forEachIndex(shape, [&](int64_t, ArrayRef<int64_t> index) {
      int64_t a = 0, b = 0;
      for (size_t k = 0; k < shape.size(); ++k) {
        a += index[k] * ls[k];
        b += index[k] * rs[k];
      }
      out.push_back(asWidth(fn((*l)[a], (*r)[b]), width));
    });
    return out;
  }
  if (auto concat = dyn_cast<ConcatOp>(def)) {
    // Each operand's [outer, dim, inner] block in turn, for each outer index.
    int64_t rank = type.getRank(), axis = concat.getAxis() < 0 ? concat.getAxis() + rank
                                                                : concat.getAxis();
    int64_t outer = 1;
    for (int64_t d = 0; d < axis; ++d)
      outer *= type.getDimSize(d);
    SmallVector<SmallVector<int64_t>> parts;
    for (Value v : concat.getInputs()) {
      auto part = evaluateInts(v, depth + 1);
      if (!part)
        return std::nullopt;
      parts.push_back(std::move(*part));
    }
    for (int64_t o = 0; o < outer; ++o)
      for (const auto &part : parts) {
        int64_t block = int64_t(part.size()) / outer;
        out.append(part.begin() + o * block, part.begin() + (o + 1) * block);
      }
    return out;
  }
  if (auto range = dyn_cast<RangeOp>(def)) {
    auto start = evaluateInts(range.getStart(), depth + 1);
    auto delta = start ? evaluateInts(range.getDelta(), depth + 1) : std::nullopt;
    if (!delta || start->size() != 1 || delta->size() != 1)
      return std::nullopt;
    for (int64_t i = 0; i < type.getNumElements(); ++i)
      out.push_back(asWidth(wrapAdd((*start)[0], wrapMul(i, (*delta)[0])), width));
    return out;
  }
  // Data movement; a cast only from i64 or i32, whose values asWidth keeps.
  auto sources = sourceIndices(def, depth + 1);
  Type from = sources ? getElementTypeOrSelf(def->getOperand(0).getType()) : Type();
  if (sources && isa<CastOp>(def) && !from.isInteger(64) && !from.isInteger(32))
    return std::nullopt;
  auto in = sources ? evaluateInts(def->getOperand(0), depth + 1) : std::nullopt;
  if (!in)
    return std::nullopt;
  for (int64_t s : *sources)
    out.push_back(asWidth((*in)[s], width));
  return out;
}

std::optional<SmallVector<int64_t>> evaluateInts(Value value) { return evaluateInts(value, 0); }

/// Folds a data-movement op of a small constant by copying elements.
static Attribute moveElements(Operation *op, Attribute input) {
  auto in = denseElements(input);
  auto type = cast<RankedTensorType>(op->getResult(0).getType());
  if (!in || !isSmallStatic(type))
    return {};
  if (in.isSplat())
    return DenseElementsAttr::get(type, in.getSplatValue<Attribute>());
  auto sources = getSourceIndices(op);
  if (!sources)
    return {};
  auto values = llvm::to_vector(in.getValues<Attribute>());
  SmallVector<Attribute> out;
  for (int64_t i : *sources)
    out.push_back(values[i]);
  return DenseElementsAttr::get(type, out);
}

/// The same constant under another static type of equal element count:
/// resource blobs are re-typed without copying their bytes.
static Attribute retype(Attribute value, Type type) {
  auto t = dyn_cast<RankedTensorType>(type);
  if (!value || !t || !t.hasStaticShape())
    return {};
  if (auto dense = dyn_cast<DenseElementsAttr>(value))
    return dense.reshape(t);
  if (auto resource = dyn_cast<DenseResourceElementsAttr>(value))
    return DenseResourceElementsAttr::get(t, resource.getRawHandle());
  return {};
}

/// Folds a reshape-like op: identity when the type does not change, a
/// re-typed constant when the input is one.
static OpFoldResult foldReshapeLike(Operation *op, Attribute input) {
  Value in = op->getOperand(0);
  if (in.getType() == op->getResult(0).getType() &&
      cast<RankedTensorType>(in.getType()).hasStaticShape())
    return in;
  return retype(input, op->getResult(0).getType());
}

OpFoldResult ConstantOp::fold(FoldAdaptor) { return getValue(); }

OpFoldResult ReshapeOp::fold(FoldAdaptor a) { return foldReshapeLike(*this, a.getInput()); }
OpFoldResult FlattenOp::fold(FoldAdaptor a) { return foldReshapeLike(*this, a.getInput()); }
OpFoldResult SqueezeOp::fold(FoldAdaptor a) { return foldReshapeLike(*this, a.getInput()); }
OpFoldResult UnsqueezeOp::fold(FoldAdaptor a) { return foldReshapeLike(*this, a.getInput()); }

OpFoldResult ShapeOp::fold(FoldAdaptor) {
  auto in = getInput().getType();
  if (!in.hasStaticShape())
    return {};
  auto dims = in.getShape().slice(getStart(), getEnd() - getStart());
  return DenseIntElementsAttr::get(getType(), dims);
}

OpFoldResult TransposeOp::fold(FoldAdaptor a) {
  if (llvm::equal(getPerm(), llvm::seq<int64_t>(0, getPerm().size())) &&
      getInput().getType() == getType())
    return getInput();
  return moveElements(*this, a.getInput());
}

OpFoldResult ConcatOp::fold(FoldAdaptor a) {
  if (getInputs().size() == 1 && getInputs()[0].getType() == getType())
    return getInputs()[0];
  if (!isSmallStatic(getType()))
    return {};
  SmallVector<DenseElementsAttr> inputs;
  for (Attribute attr : a.getInputs()) {
    auto dense = denseElements(attr);
    if (!dense)
      return {};
    inputs.push_back(dense);
  }
  int64_t axis = getAxis();
  auto shape = getType().getShape();
  int64_t outer = 1, inner = 1;
  for (int64_t d = 0; d < axis; ++d)
    outer *= shape[d];
  for (int64_t d = axis + 1; d < int64_t(shape.size()); ++d)
    inner *= shape[d];
  SmallVector<Attribute> out;
  for (int64_t o = 0; o < outer; ++o)
    for (DenseElementsAttr in : inputs) {
      int64_t chunk = in.getType().getDimSize(axis) * inner;
      auto values = in.getValues<Attribute>();
      for (int64_t i = 0; i < chunk; ++i)
        out.push_back(values[o * chunk + i]);
    }
  return DenseElementsAttr::get(getType(), out);
}

OpFoldResult GatherOp::fold(FoldAdaptor a) { return moveElements(*this, a.getData()); }
OpFoldResult GatherNDOp::fold(FoldAdaptor a) { return moveElements(*this, a.getData()); }

OpFoldResult SliceOp::fold(FoldAdaptor a) {
  auto ranges = getSliceRanges(*this);
  if (!ranges)
    return {};
  bool identity = llvm::all_of(llvm::enumerate(*ranges), [&](auto r) {
    return r.value().start == 0 && r.value().step == 1 &&
           r.value().count == getInput().getType().getDimSize(r.index());
  });
  if (identity && getInput().getType() == getType())
    return getInput();
  return moveElements(*this, a.getInput());
}

/// One element of a constant: integers keep their exact value in `i`.
struct Scalar {
  int64_t i = 0;
  double f = 0;
};

/// Elementwise evaluation of small constant operands with numpy
/// broadcasting. `fn(values, isFloat)` gets operand 0's kind and may decline.
template <typename Fn>
static Attribute foldElementwise(ArrayRef<Attribute> operands, RankedTensorType type, Fn fn) {
  if (!isSmallStatic(type))
    return {};
  SmallVector<DenseElementsAttr> in;
  for (Attribute attr : operands) {
    auto dense = denseElements(attr);
    if (!dense)
      return {};
    in.push_back(dense);
  }
  bool isFloat = isa<FloatType>(in[0].getElementType());
  SmallVector<SmallVector<Scalar>> values;
  SmallVector<SmallVector<int64_t>> strides;
  auto shape = type.getShape();
  for (DenseElementsAttr d : in) {
    SmallVector<Scalar> v;
    for (Attribute e : d.getValues<Attribute>()) {
      if (auto f = dyn_cast<FloatAttr>(e))
        v.push_back({0, f.getValueAsDouble()});
      else if (d.getElementType().isInteger(1) || d.getElementType().isUnsignedInteger())
        v.push_back({int64_t(cast<IntegerAttr>(e).getValue().getZExtValue()), 0});
      else
        v.push_back({cast<IntegerAttr>(e).getValue().getSExtValue(), 0});
      v.back().f = isa<FloatAttr>(e) ? v.back().f : double(v.back().i);
    }
    values.push_back(std::move(v));
    // Broadcast strides: operand dims align right; size-1 dims repeat.
    auto s = d.getType().getShape();
    auto own = stridesOf(s);
    SmallVector<int64_t> st(shape.size(), 0);
    for (size_t k = 0; k < s.size(); ++k)
      st[k + shape.size() - s.size()] = s[k] == 1 ? 0 : own[k];
    strides.push_back(std::move(st));
  }
  Type element = type.getElementType();
  SmallVector<Attribute> out;
  SmallVector<Scalar> args(in.size());
  bool declined = false;
  forEachIndex(shape, [&](int64_t, ArrayRef<int64_t> index) {
    if (declined)
      return;
    for (size_t o = 0; o < in.size(); ++o) {
      int64_t flat = 0;
      for (size_t k = 0; k < shape.size(); ++k)
        flat += index[k] * strides[o][k];
      args[o] = values[o][flat];
    }
    std::optional<Scalar> v = fn(ArrayRef<Scalar>(args), isFloat);
    if (!v) {
      declined = true;
      return;
    }
    if (isa<FloatType>(element))
      out.push_back(FloatAttr::get(element, v->f));
    else
      out.push_back(IntegerAttr::get(element, element.isInteger(1) ? (v->i != 0) : v->i));
  });
  if (declined)
    return {};
  return DenseElementsAttr::get(type, out);
}

/// Folds a binary op given its integer and floating-point meanings.
template <typename IntFn, typename FloatFn>
static Attribute foldBinary(ArrayRef<Attribute> operands, RankedTensorType type, IntFn intFn,
                            FloatFn floatFn) {
  return foldElementwise(operands, type,
                         [&](ArrayRef<Scalar> v, bool isFloat) -> std::optional<Scalar> {
                           if (isFloat)
                             return Scalar{0, floatFn(v[0].f, v[1].f)};
                           std::optional<int64_t> i = intFn(v[0].i, v[1].i);
                           if (!i)
                             return std::nullopt;
                           return Scalar{*i, double(*i)};
                         });
}

/// Folds a comparison: the result is i1.
template <typename Fn>
static Attribute foldCompare(ArrayRef<Attribute> operands, RankedTensorType type, Fn fn) {
  return foldElementwise(operands, type, [&](ArrayRef<Scalar> v, bool isFloat) {
    bool r = isFloat ? fn(v[0].f, v[1].f) : fn(v[0].i, v[1].i);
    return std::optional<Scalar>(Scalar{r, double(r)});
  });
}

using OptInt = std::optional<int64_t>;

OpFoldResult AddOp::fold(FoldAdaptor a) {
  return foldBinary(
      a.getOperands(), getType(), [](int64_t l, int64_t r) -> OptInt { return wrapAdd(l, r); },
      [](double l, double r) { return l + r; });
}
OpFoldResult SubOp::fold(FoldAdaptor a) {
  return foldBinary(
      a.getOperands(), getType(), [](int64_t l, int64_t r) -> OptInt { return wrapSub(l, r); },
      [](double l, double r) { return l - r; });
}
OpFoldResult MulOp::fold(FoldAdaptor a) {
  return foldBinary(
      a.getOperands(), getType(), [](int64_t l, int64_t r) -> OptInt { return wrapMul(l, r); },
      [](double l, double r) { return l * r; });
}
OpFoldResult DivOp::fold(FoldAdaptor a) {
  // Integer division truncates toward zero, as ONNX Div does.
  return foldBinary(
      a.getOperands(), getType(),
      [](int64_t l, int64_t r) -> OptInt {
        if (r == 0 || (l == INT64_MIN && r == -1))
          return std::nullopt; // left to run: no value to fold to
        return l / r;
      },
      [](double l, double r) { return l / r; });
}
OpFoldResult MaxOp::fold(FoldAdaptor a) {
  return foldBinary(
      a.getOperands(), getType(), [](int64_t l, int64_t r) -> OptInt { return std::max(l, r); },
      [](double l, double r) { return std::max(l, r); });
}
OpFoldResult MinOp::fold(FoldAdaptor a) {
  return foldBinary(
      a.getOperands(), getType(), [](int64_t l, int64_t r) -> OptInt { return std::min(l, r); },
      [](double l, double r) { return std::min(l, r); });
}
OpFoldResult AndOp::fold(FoldAdaptor a) {
  return foldCompare(a.getOperands(), getType(), [](auto l, auto r) { return l && r; });
}
OpFoldResult OrOp::fold(FoldAdaptor a) {
  return foldCompare(a.getOperands(), getType(), [](auto l, auto r) { return l || r; });
}
OpFoldResult XorOp::fold(FoldAdaptor a) {
  return foldCompare(a.getOperands(), getType(), [](auto l, auto r) { return bool(l) != bool(r); });
}
OpFoldResult EqualOp::fold(FoldAdaptor a) {
  return foldCompare(a.getOperands(), getType(), [](auto l, auto r) { return l == r; });
}
OpFoldResult LessOp::fold(FoldAdaptor a) {
  return foldCompare(a.getOperands(), getType(), [](auto l, auto r) { return l < r; });
}
OpFoldResult LessEqualOp::fold(FoldAdaptor a) {
  return foldCompare(a.getOperands(), getType(), [](auto l, auto r) { return l <= r; });
}
OpFoldResult GreaterOp::fold(FoldAdaptor a) {
  return foldCompare(a.getOperands(), getType(), [](auto l, auto r) { return l > r; });
}
OpFoldResult GreaterEqualOp::fold(FoldAdaptor a) {
  return foldCompare(a.getOperands(), getType(), [](auto l, auto r) { return l >= r; });
}

OpFoldResult ModOp::fold(FoldAdaptor a) {
  return foldBinary(
      a.getOperands(), getType(),
      [](int64_t l, int64_t r) -> OptInt {
        if (r == 0 || (l == INT64_MIN && r == -1))
          return std::nullopt;
        int64_t m = l % r;
        return m != 0 && ((m < 0) != (r < 0)) ? m + r : m; // the divisor's sign
      },
      [](double l, double r) { return std::fmod(l, r); });
}

/// Folds a unary op given its integer and floating-point meanings.
template <typename IntFn, typename FloatFn>
static Attribute foldUnary(Attribute operand, RankedTensorType type, IntFn intFn,
                           FloatFn floatFn) {
  return foldElementwise(operand, type,
                         [&](ArrayRef<Scalar> v, bool isFloat) -> std::optional<Scalar> {
                           if (isFloat)
                             return Scalar{0, floatFn(v[0].f)};
                           int64_t i = intFn(v[0].i);
                           return Scalar{i, double(i)};
                         });
}

OpFoldResult NegOp::fold(FoldAdaptor a) {
  return foldUnary(
      a.getInput(), getType(), [](int64_t x) { return wrapSub(0, x); },
      [](double x) { return -x; });
}
OpFoldResult AbsOp::fold(FoldAdaptor a) {
  return foldUnary(
      a.getInput(), getType(), [](int64_t x) { return x < 0 ? wrapSub(0, x) : x; },
      [](double x) { return std::fabs(x); });
}
OpFoldResult NotOp::fold(FoldAdaptor a) {
  return foldUnary(
      a.getInput(), getType(), [](int64_t x) -> int64_t { return !x; },
      [](double x) { return x; });
}
OpFoldResult SqrtOp::fold(FoldAdaptor a) {
  return foldUnary(
      a.getInput(), getType(), [](int64_t x) { return x; },
      [](double x) { return std::sqrt(x); });
}
OpFoldResult FloorOp::fold(FoldAdaptor a) {
  return foldUnary(
      a.getInput(), getType(), [](int64_t x) { return x; },
      [](double x) { return std::floor(x); });
}
OpFoldResult CeilOp::fold(FoldAdaptor a) {
  return foldUnary(
      a.getInput(), getType(), [](int64_t x) { return x; },
      [](double x) { return std::ceil(x); });
}

OpFoldResult WhereOp::fold(FoldAdaptor a) {
  return foldElementwise(a.getOperands(), getType(), [](ArrayRef<Scalar> v, bool) {
    return std::optional<Scalar>(v[0].i ? v[1] : v[2]);
  });
}

OpFoldResult ExpandOp::fold(FoldAdaptor a) {
  if (getInput().getType() == getType() && getType().hasStaticShape())
    return getInput();
  return moveElements(*this, a.getInput());
}

OpFoldResult ReduceProdOp::fold(FoldAdaptor a) {
  auto in = denseElements(a.getInput());
  if (!in || !isSmallStatic(getType()) || !isSmallStatic(in.getType()) ||
      !isa<IntegerType>(in.getElementType()))
    return {};
  auto shape = in.getType().getShape();
  auto strides = stridesOf(shape);
  auto outStrides = stridesOf(getType().getShape());
  SmallVector<int64_t> out(getType().getNumElements(), 1);
  auto values = llvm::to_vector(in.getValues<APInt>());
  for (int64_t n = 0; n < in.getNumElements(); ++n) {
    int64_t dst = 0, k = 0;
    for (int64_t d = 0; d < int64_t(shape.size()); ++d) {
      int64_t i = (n / strides[d]) % shape[d];
      bool reduced = llvm::is_contained(getAxes(), d);
      if (!reduced)
        dst += i * outStrides[k++];
      else if (getKeepdims())
        ++k;
    }
    out[dst] = wrapMul(out[dst], values[n].getSExtValue());
  }
  return DenseIntElementsAttr::get(getType(), out);
}

OpFoldResult CastOp::fold(FoldAdaptor a) {
  if (getInput().getType() == getType())
    return getInput();
  auto in = denseElements(a.getInput());
  if (!in || !isSmallStatic(getType()))
    return {};
  Type from = in.getElementType(), to = getType().getElementType();
  SmallVector<Attribute> out;
  for (Attribute v : in.getValues<Attribute>()) {
    double f = 0;
    int64_t i = 0;
    if (auto fa = dyn_cast<FloatAttr>(v)) {
      f = fa.getValueAsDouble();
      if (!isa<FloatType>(to) && !to.isInteger(1)) {
        // NaN, Inf and values past int64 have no integer (the conversion
        // is undefined): such a cast is left to run.
        if (!(f >= -0x1p63 && f < 0x1p63))
          return {};
        i = int64_t(f);
      }
    } else if (from.isInteger(1) || from.isUnsignedInteger())
      f = double(i = cast<IntegerAttr>(v).getValue().getZExtValue());
    else
      f = double(i = cast<IntegerAttr>(v).getValue().getSExtValue());
    if (isa<FloatType>(to))
      out.push_back(FloatAttr::get(to, f));
    else if (to.isInteger(1))
      out.push_back(IntegerAttr::get(to, f != 0));
    else
      out.push_back(IntegerAttr::get(to, i));
  }
  return DenseElementsAttr::get(getType(), out);
}

OpFoldResult RangeOp::fold(FoldAdaptor) {
  if (!isSmallStatic(getType()))
    return {};
  Type element = getType().getElementType();
  SmallVector<Attribute> out;
  if (auto s = getConstantInts(getStart()), d = getConstantInts(getDelta()); s && d) {
    for (int64_t i = 0; i < getType().getDimSize(0); ++i)
      out.push_back(IntegerAttr::get(element, wrapAdd((*s)[0], wrapMul(i, (*d)[0]))));
  } else if (auto sf = getConstantFloat(getStart()), df = getConstantFloat(getDelta()); sf && df) {
    for (int64_t i = 0; i < getType().getDimSize(0); ++i)
      out.push_back(FloatAttr::get(element, *sf + double(i) * *df));
  } else {
    return {};
  }
  return DenseElementsAttr::get(getType(), out);
}

OpFoldResult ConstantOfShapeOp::fold(FoldAdaptor) {
  if (!getType().hasStaticShape())
    return {};
  auto value = cast<TypedAttr>(getValue());
  return DenseElementsAttr::get(getType(), value);
}

namespace {
/// transpose(transpose(x, inner), outer) -> transpose(x, inner o outer).
struct ComposeTransposes : OpRewritePattern<TransposeOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(TransposeOp op, PatternRewriter &rewriter) const override {
    auto inner = op.getInput().getDefiningOp<TransposeOp>();
    if (!inner)
      return failure();
    SmallVector<int64_t> perm;
    for (int64_t p : op.getPerm())
      perm.push_back(inner.getPerm()[p]);
    rewriter.replaceOpWithNewOp<TransposeOp>(op, op.getType(), inner.getInput(),
                                             rewriter.getDenseI64ArrayAttr(perm));
    return success();
  }
};

/// A static reshape of a reshape-like op reshapes the original input.
struct CollapseReshapes : OpRewritePattern<ReshapeOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(ReshapeOp op, PatternRewriter &rewriter) const override {
    Operation *producer = op.getInput().getDefiningOp();
    if (!producer || !isReshapeLike(producer) || !op.getType().hasStaticShape())
      return failure();
    auto shapeType = RankedTensorType::get({op.getType().getRank()}, rewriter.getI64Type());
    Value shape = ConstantOp::create(rewriter, op.getLoc(),
                                     DenseIntElementsAttr::get(shapeType, op.getType().getShape()));
    rewriter.replaceOpWithNewOp<ReshapeOp>(op, op.getType(), producer->getOperand(0), shape);
    return success();
  }
};
} // namespace

void TransposeOp::getCanonicalizationPatterns(RewritePatternSet &patterns, MLIRContext *context) {
  patterns.add<ComposeTransposes>(context);
}

void ReshapeOp::getCanonicalizationPatterns(RewritePatternSet &patterns, MLIRContext *context) {
  patterns.add<CollapseReshapes>(context);
}

} // namespace kiln
