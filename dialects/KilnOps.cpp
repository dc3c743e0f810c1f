//===- KilnOps.cpp - result types and verifiers of kiln ops ---------------===//
//
// Each op derives its result type from its operands; a dim the operands do not
// determine is left dynamic. Constant integer operands (reshape targets, slice
// bounds) are read when present so that shapes resolve as soon as the shape
// sub-graph that feeds them has folded.
//
//===----------------------------------------------------------------------===//

#include "KilnOps.h"
#include "kiln/checked.h"

#include "mlir/Dialect/Traits.h"
#include "mlir/IR/DialectResourceBlobManager.h"
#include "mlir/IR/Matchers.h"

using namespace mlir;

namespace kiln {

static constexpr int64_t kDyn = ShapedType::kDynamic;

bool areCompatibleTypes(TypeRange lhs, TypeRange rhs) {
  if (lhs.size() != rhs.size())
    return false;
  for (auto [l, r] : llvm::zip(lhs, rhs))
    if (failed(verifyCompatibleShape(l, r)) || getElementTypeOrSelf(l) != getElementTypeOrSelf(r))
      return false;
  return true;
}

FailureOr<SmallVector<Type>> inferResultTypes(Operation *op) {
  auto iface = dyn_cast<InferTypeOpInterface>(op);
  if (!iface)
    return failure();
  SmallVector<Type> types;
  if (failed(iface.inferReturnTypes(op->getContext(), op->getLoc(), op->getOperands(),
                                    op->getRawDictionaryAttrs(), op->getPropertiesStorage(),
                                    op->getRegions(), types)))
    return failure();
  return types;
}

std::optional<double> getConstantFloat(Value value) {
  DenseFPElementsAttr attr;
  if (!matchPattern(value, m_Constant(&attr)) || attr.getNumElements() != 1)
    return std::nullopt;
  return (*attr.getValues<APFloat>().begin()).convertToDouble();
}

DenseElementsAttr denseElements(Attribute value) {
  if (auto dense = dyn_cast_if_present<DenseElementsAttr>(value))
    return dense;
  auto resource = dyn_cast_if_present<DenseResourceElementsAttr>(value);
  if (!resource || resource.getType().getElementType().isInteger(1) ||
      resource.getType().getNumElements() > kMaxFoldElements || !resource.getRawHandle().getBlob())
    return {};
  ArrayRef<char> data = resource.getRawHandle().getBlob()->getData();
  bool splat = false;
  if (!DenseElementsAttr::isValidRawBuffer(resource.getType(), data, splat))
    return {};
  return DenseElementsAttr::getFromRawBuffer(resource.getType(), data);
}

std::optional<SmallVector<int64_t>> getConstantInts(Value value) {
  Attribute constant;
  if (!matchPattern(value, m_Constant(&constant)))
    return std::nullopt;
  auto attr = dyn_cast_if_present<DenseIntElementsAttr>(denseElements(constant));
  if (!attr)
    return std::nullopt;
  SmallVector<int64_t> out;
  for (const APInt &v : attr.getValues<APInt>())
    out.push_back(v.getSExtValue());
  return out;
}

static RankedTensorType shapeOf(Value v) { return cast<RankedTensorType>(v.getType()); }

/// The product of dims, kDyn when one is dynamic; INT64_MAX on an overflow,
/// which the size check of the result's type then refuses.
static int64_t product(ArrayRef<int64_t> dims) {
  if (llvm::is_contained(dims, kDyn))
    return kDyn;
  return checkedProduct(dims).value_or(std::numeric_limits<int64_t>::max());
}

std::optional<int64_t> staticByteSize(ShapedType type) {
  std::optional<int64_t> bytes = elementBytes(type.getElementType());
  if (type.hasRank())
    for (int64_t d : type.getShape())
      if (d != kDyn && bytes)
        bytes = checkedMul(*bytes, d);
  return bytes;
}

/// Refuses an inferred type whose size overflows (dims near 2^62, say): no
/// later element count or byte size can then wrap around.
static LogicalResult checkSizes(std::optional<Location> loc, ArrayRef<Type> types) {
  for (auto [i, type] : llvm::enumerate(types))
    if (auto shaped = dyn_cast<ShapedType>(type); shaped && !staticByteSize(shaped))
      return emitOptionalError(loc, "result ", i, " would be ", type,
                               ", whose size overflows 64 bits");
  return success();
}

/// Merges two sizes that must agree: a static size wins over a dynamic one.
static LogicalResult mergeDim(int64_t a, int64_t b, int64_t &out) {
  if (a != kDyn && b != kDyn && a != b)
    return failure();
  out = a == kDyn ? b : a;
  return success();
}

static LogicalResult push(SmallVectorImpl<Type> &types, ArrayRef<int64_t> shape, Type element) {
  types.push_back(RankedTensorType::get(shape, element));
  return success();
}

/// Defines OP's result type inference; every inferred type then goes
/// through checkSizes.
#define KILN_INFER(OP)                                                                             \
  static LogicalResult infer##OP(MLIRContext *context, std::optional<Location> loc,                \
                                 OP::Adaptor adaptor, SmallVectorImpl<Type> &types);               \
  LogicalResult OP::inferReturnTypes(MLIRContext *context, std::optional<Location> loc,            \
                                     Adaptor adaptor, SmallVectorImpl<Type> &types) {              \
    size_t first = types.size();                                                                   \
    if (failed(infer##OP(context, loc, adaptor, types)))                                           \
      return failure();                                                                            \
    return checkSizes(loc, ArrayRef<Type>(types).drop_front(first));                               \
  }                                                                                                \
  static LogicalResult infer##OP(MLIRContext *context, std::optional<Location> loc,                \
                                 OP::Adaptor adaptor, SmallVectorImpl<Type> &types)

KILN_INFER(ConstantOp) {
  types.push_back(adaptor.getValue().getType());
  return success();
}

static LogicalResult inferGemm(std::optional<Location> loc, Value a, Value b, Value c, bool transA,
                               bool transB, SmallVectorImpl<Type> &types) {
  auto at = shapeOf(a), bt = shapeOf(b);
  if (at.getRank() != 2 || bt.getRank() != 2)
    return emitOptionalError(loc, "gemm operands must be 2-D");
  int64_t m = at.getDimSize(transA ? 1 : 0), ka = at.getDimSize(transA ? 0 : 1);
  int64_t kb = bt.getDimSize(transB ? 1 : 0), n = bt.getDimSize(transB ? 0 : 1);
  int64_t k;
  if (failed(mergeDim(ka, kb, k)))
    return emitOptionalError(loc, "gemm inner dims differ: ", ka, " vs ", kb);
  if (c) {
    SmallVector<int64_t> out;
    if (shapeOf(c).getRank() > 2 ||
        !OpTrait::util::getBroadcastedShape({m, n}, shapeOf(c).getShape(), out))
      return emitOptionalError(loc, "gemm C does not broadcast to [M, N]");
  }
  return push(types, {m, n}, at.getElementType());
}

KILN_INFER(GemmOp) {
  return inferGemm(loc, adaptor.getA(), adaptor.getB(), adaptor.getC(), adaptor.getTransA(),
                   adaptor.getTransB(), types);
}

LogicalResult GemmOp::verify() {
  if (getA().getType().getElementType() != getB().getType().getElementType())
    return emitOpError("element types of A and B differ");
  return success();
}

KILN_INFER(MatMulOp) {
  auto l = shapeOf(adaptor.getLhs()), r = shapeOf(adaptor.getRhs());
  if (l.getRank() < 2 || r.getRank() < 2)
    return emitOptionalError(loc, "matmul operands must have rank >= 2");
  int64_t k;
  if (failed(mergeDim(l.getShape().back(), r.getShape()[r.getRank() - 2], k)))
    return emitOptionalError(loc, "matmul inner dims differ");
  SmallVector<int64_t> batch;
  if (!OpTrait::util::getBroadcastedShape(l.getShape().drop_back(2), r.getShape().drop_back(2),
                                          batch))
    return emitOptionalError(loc, "matmul batch dims do not broadcast");
  batch.push_back(l.getShape()[l.getRank() - 2]);
  batch.push_back(r.getShape().back());
  return push(types, batch, l.getElementType());
}

LogicalResult MatMulOp::verify() {
  if (getLhs().getType().getElementType() != getRhs().getType().getElementType())
    return emitOpError("element types of operands differ");
  return success();
}

/// A dense attribute's bytes in the runtime's layout, splats expanded.
static std::vector<char> denseBytes(DenseElementsAttr dense) {
  auto type = dense.getType();
  Type e = type.getElementType();
  std::vector<char> bytes;
  if (e.isInteger(1)) {
    for (bool b : dense.getValues<bool>())
      bytes.push_back(b ? 1 : 0);
    return bytes;
  }
  size_t width = e.getIntOrFloatBitWidth() / 8;
  ArrayRef<char> raw = dense.getRawData();
  if (dense.isSplat()) {
    for (int64_t i = 0; i < type.getNumElements(); ++i)
      bytes.insert(bytes.end(), raw.begin(), raw.begin() + width);
    return bytes;
  }
  return {raw.begin(), raw.end()};
}

ArrayRef<char> constantData(ElementsAttr attr, std::vector<char> &storage) {
  if (auto resource = dyn_cast<DenseResourceElementsAttr>(attr))
    return resource.getRawHandle().getBlob()->getData();
  storage = denseBytes(cast<DenseElementsAttr>(attr));
  return storage;
}

std::vector<char> constantBytes(ElementsAttr attr) {
  if (auto dense = dyn_cast<DenseElementsAttr>(attr))
    return denseBytes(dense);
  std::vector<char> unused;
  ArrayRef<char> data = constantData(attr, unused);
  return {data.begin(), data.end()};
}

ElementsAttr makeConstant(RankedTensorType type, ArrayRef<char> bytes, StringRef name) {
  if (type.getElementType().isInteger(1)) {
    SmallVector<bool> bits(bytes.begin(), bytes.end());
    return DenseElementsAttr::get(type, ArrayRef<bool>(bits));
  }
  if (bytes.size() <= kInlineConstantBytes)
    return DenseElementsAttr::getFromRawBuffer(type, bytes);
  return DenseResourceElementsAttr::get(type, name,
                                        HeapAsmResourceBlob::allocateAndCopyWithAlign(bytes, 64));
}

KILN_INFER(DenseOp) {
  auto in = shapeOf(adaptor.getInput());
  if (in.getRank() < 1)
    return emitOptionalError(loc, "dense input must have rank >= 1");
  SmallVector<int64_t> shape(in.getShape());
  shape.back() = adaptor.getUnits();
  // f32, or ui8 when the layer requantises its result.
  Type element = adaptor.getOutputScale()
                     ? Type(IntegerType::get(context, 8, IntegerType::Unsigned))
                     : Type(Float32Type::get(context));
  return push(types, shape, element);
}

/// The activations kiln.dense accepts, in the order of the kernels'
/// kiln::cpu::Activation enum.
static constexpr StringLiteral kDenseActivations[] = {"none", "relu", "sigmoid",
                                                      "tanh", "gelu", "gelu_tanh"};

int32_t denseActivationCode(StringRef name) {
  for (auto [i, a] : llvm::enumerate(kDenseActivations))
    if (a == name)
      return int32_t(i);
  return -1;
}

LogicalResult DenseOp::verify() {
  int64_t k = getDepth(), n = getUnits();
  auto w = getWeight().getType();
  if (n < 1)
    return emitOpError("units must be positive");
  const bool int8 = isInt8(), fp8 = isFp8();
  if (fp8) { // transposed, one scale
    if (w.getRank() != 2 || w.getDimSize(0) != n || w.getDimSize(1) != k)
      return emitOpError("f8E4M3FN weight must be [") << n << ", " << k << "], got " << w;
    auto scale = getWeightScale();
    if (!scale || cast<RankedTensorType>(scale.getType()).getShape() != ArrayRef<int64_t>{1} ||
        getWeightSum())
      return emitOpError("f8E4M3FN weights take a weight scale of [1] and no weight sums");
    if (!getInputScale() || getInputZeroPoint() || getOutputScale() ||
        !(getInputScale()->convertToFloat() > 0 &&
          std::isfinite(getInputScale()->convertToFloat())))
      return emitOpError("f8E4M3FN weights take a positive finite input_scale, and no zero point "
                         "or output range");
  } else if (w.getRank() == 2) {
    if (w.getDimSize(0) != k || w.getDimSize(1) != n)
      return emitOpError("weight must be [") << k << ", " << n << "], got " << w;
  } else if (w.getRank() == 3) {
    SmallVector<int64_t, 3> packed = {(n + 15) / 16, k, 16};
    if (int8)
      packed = {(n + 15) / 16, (k + 3) / 4, 64};
    if (w.getShape() != ArrayRef(packed))
      return emitOpError("packed weight must be [")
             << packed[0] << ", " << packed[1] << ", " << packed[2] << "], got " << w;
  } else {
    return emitOpError("weight must be [K, units] or packed [ceil(units/16), K, 16]");
  }
  if (!fp8 && (int8 != bool(getWeightScale()) || int8 != bool(getWeightSum())))
    return emitOpError("i8 weights, and only they, take a weight scale and weight sums");
  for (Value v : {Value(getBias()), fp8 ? Value() : getWeightScale(), Value(getWeightSum())})
    if (v && cast<RankedTensorType>(v.getType()).getShape() != ArrayRef(n))
      return emitOpError("bias, weight scale and weight sums must be [") << n << "]";
  for (Value v : {getMultiplier(), getResidual()})
    if (v && (cast<RankedTensorType>(v.getType()).getShape() != getType().getShape() ||
              !cast<RankedTensorType>(v.getType()).getElementType().isF32()))
      return emitOpError("multiplier and residual must be f32 of the result's shape");
  if (denseActivationCode(getActivation()) < 0)
    return emitOpError("unknown activation '") << getActivation() << "'";
  // A static range (input, or requantised output): both halves, on i8
  // weights, a positive finite scale and a zero point in [0, 127].
  auto checkRange = [&](std::optional<APFloat> scale, std::optional<uint32_t> zeroPoint,
                        StringRef which, StringRef what) -> LogicalResult {
    if (bool(scale) != bool(zeroPoint) || (scale && !int8))
      return emitOpError(what) << " (" << which << "_scale with " << which
                               << "_zero_point) needs i8 weights";
    if (scale && !(scale->convertToFloat() > 0 && std::isfinite(scale->convertToFloat())))
      return emitOpError(which) << "_scale must be positive and finite";
    if (zeroPoint && *zeroPoint > 127u) // a negative one wraps above too
      return emitOpError(which) << "_zero_point must be in [0, 127]";
    return success();
  };
  if (!fp8 &&
      (failed(checkRange(getInputScale(), getInputZeroPoint(), "input", "a static input range")) ||
       failed(checkRange(getOutputScale(), getOutputZeroPoint(), "output", "requantisation"))))
    return failure();
  if (getInput().getType().getElementType().isUnsignedInteger(8) && (!getInputScale() || k % 4))
    return emitOpError("a ui8 input (a requantised layer's result) needs input_scale and a depth "
                       "that is a multiple of 4");
  return success();
}

KILN_INFER(AttentionOp) {
  auto q = shapeOf(adaptor.getQuery()), v = shapeOf(adaptor.getValue());
  if (q.getRank() != 4 || v.getRank() != 4)
    return emitOptionalError(loc, "attention takes [batch, seq, heads, dim] operands");
  return push(types, {q.getDimSize(0), q.getDimSize(1), q.getDimSize(2), v.getDimSize(3)},
              q.getElementType());
}

LogicalResult AttentionOp::verify() {
  auto q = getQuery().getType(), k = getKey().getType(), v = getValue().getType();
  if (k.getRank() != 4 || k.getDimSize(0) != q.getDimSize(0) ||
      k.getDimSize(2) != q.getDimSize(2) || k.getDimSize(3) != q.getDimSize(3))
    return emitOpError("key must be [batch, key seq, heads, query dim]");
  if (v.getDimSize(0) != q.getDimSize(0) || v.getDimSize(1) != k.getDimSize(1) ||
      v.getDimSize(2) != q.getDimSize(2))
    return emitOpError("value must be [batch, key seq, heads, dim]");
  if (Value m = getMask()) {
    SmallVector<int64_t> out;
    auto mt = cast<RankedTensorType>(m.getType());
    SmallVector<int64_t> scores = {q.getDimSize(0), q.getDimSize(2), q.getDimSize(1),
                                   k.getDimSize(1)};
    if (mt.getRank() > 4 || !OpTrait::util::getBroadcastedShape(scores, mt.getShape(), out) ||
        ArrayRef<int64_t>(out) != ArrayRef<int64_t>(scores))
      return emitOpError("mask must broadcast to [batch, heads, query seq, key seq]");
  }
  return success();
}

KILN_INFER(InteractionOp) {
  auto in = shapeOf(adaptor.getInput());
  if (in.getRank() != 3)
    return emitOptionalError(loc, "interaction takes a [batch, features, dim] operand");
  return push(types, {in.getDimSize(0), int64_t(adaptor.getPairs().size() / 2)},
              in.getElementType());
}

LogicalResult InteractionOp::verify() {
  if (getPairs().size() % 2)
    return emitOpError("pairs must hold an even number of feature indices");
  int64_t features = getInput().getType().getDimSize(1);
  for (int64_t f : getPairs())
    if (f < 0 || (features != kDyn && f >= features))
      return emitOpError("pair index ") << f << " outside [0, " << features << ")";
  return success();
}

int64_t EmbeddingBagsOp::tableDim(RankedTensorType table, int64_t bits) {
  int64_t cols = table.getDimSize(1);
  if (bits == 32)
    return cols;
  return bits == 4 ? (cols - 4) * 2 : cols - 4;
}

KILN_INFER(EmbeddingBagsOp) {
  auto ids = shapeOf(adaptor.getIds());
  if (ids.getRank() < 1)
    return emitOptionalError(loc, "embedding_bags ids must be [batch, ...]");
  int64_t width = 0;
  for (Value t : adaptor.getTables()) {
    auto table = shapeOf(t);
    if (table.getRank() != 2 || table.isDynamicDim(1))
      return emitOptionalError(loc, "embedding_bags tables must be [rows, dim] with a static dim");
    width += EmbeddingBagsOp::tableDim(table, adaptor.getBits());
  }
  if (adaptor.getMode() == 3) { // rows side by side, not pooled
    width = 0;
    for (auto [t, hotness] : llvm::zip(adaptor.getTables(), adaptor.getHotness()))
      width += EmbeddingBagsOp::tableDim(shapeOf(t), adaptor.getBits()) * hotness;
  }
  return push(types, {ids.getDimSize(0), width}, Float32Type::get(context));
}

LogicalResult EmbeddingBagsOp::verify() {
  if (getTables().empty() || getHotness().size() != getTables().size())
    return emitOpError("needs one hotness per table");
  int64_t lookups = 0;
  for (int64_t h : getHotness())
    lookups += h;
  if (lookups != int64_t(getColumns().size()))
    return emitOpError("columns must list hotness[t] columns per table");
  auto ids = getIds().getType();
  if (ids.hasStaticShape() && ids.getDimSize(0) > 0) {
    int64_t row = ids.getNumElements() / ids.getDimSize(0);
    for (int64_t c : getColumns())
      if (c < 0 || c >= row)
        return emitOpError("column ") << c << " outside an id row of " << row;
  }
  if (getMode() < 0 || getMode() > 3)
    return emitOpError("mode must be 0 (sum), 1 (mean), 2 (max) or 3 (rows)");
  const int64_t bits = getBits();
  if (bits != 32 && bits != 8 && bits != 4)
    return emitOpError("bits must be 32 (f32 tables), 8 or 4 (row-wise quantised)");
  for (Value t : getTables()) {
    auto table = cast<RankedTensorType>(t.getType());
    if (table.getElementType().isF32() != (bits == 32))
      return emitOpError("tables must be f32 at 32 bits, ui8 rows when quantised");
    if (bits != 32 && table.getDimSize(1) <= 4)
      return emitOpError("a quantised row needs its values and 4 bytes of scale and bias");
  }
  return success();
}

LogicalResult FusedElementwiseOp::verify() {
  Block &body = getBody().front();
  if (body.getNumArguments() != getInputs().size())
    return emitOpError("needs one body argument per input");
  int64_t count = getType().hasStaticShape() ? getType().getNumElements() : -1;
  for (auto [in, arg] : llvm::zip(getInputs(), body.getArguments())) {
    auto type = cast<RankedTensorType>(in.getType());
    auto element = dyn_cast<RankedTensorType>(arg.getType());
    if (!element || element.getRank() != 0 || element.getElementType() != type.getElementType())
      return emitOpError("body arguments must be 0-d tensors of the inputs' element types");
    if (count >= 0 && type.hasStaticShape() && type.getNumElements() != 1 &&
        type.getNumElements() != count)
      return emitOpError("an input must have one element or the result's count");
  }
  auto yield = dyn_cast<YieldOp>(body.getTerminator());
  auto value = yield ? dyn_cast<RankedTensorType>(yield.getValue().getType()) : nullptr;
  if (!value || value.getRank() != 0 || value.getElementType() != getType().getElementType())
    return emitOpError("body must yield a 0-d tensor of the result's element type");
  return success();
}

static LogicalResult inferBinary(std::optional<Location> loc, Value lhs, Value rhs,
                                 SmallVectorImpl<Type> &types) {
  auto l = shapeOf(lhs), r = shapeOf(rhs);
  if (l.getElementType() != r.getElementType())
    return emitOptionalError(loc, "operand element types differ: ", l.getElementType(), " vs ",
                             r.getElementType());
  SmallVector<int64_t> out;
  if (!OpTrait::util::getBroadcastedShape(l.getShape(), r.getShape(), out))
    return emitOptionalError(loc, "shapes do not broadcast: ", l, " and ", r);
  return push(types, out, l.getElementType());
}

#define KILN_INFER_BINARY(OP)                                                                      \
  KILN_INFER(OP) { return inferBinary(loc, adaptor.getLhs(), adaptor.getRhs(), types); }
KILN_INFER_BINARY(AddOp)
KILN_INFER_BINARY(SubOp)
KILN_INFER_BINARY(MulOp)
KILN_INFER_BINARY(DivOp)
KILN_INFER_BINARY(MaxOp)
KILN_INFER_BINARY(MinOp)
KILN_INFER_BINARY(PowOp)
KILN_INFER_BINARY(ModOp)
KILN_INFER_BINARY(PReluOp)

static LogicalResult inferLogical(std::optional<Location> loc, Value lhs, Value rhs,
                                  SmallVectorImpl<Type> &types) {
  if (!getElementTypeOrSelf(lhs).isInteger(1))
    return emitOptionalError(loc, "logical ops take i1 operands");
  return inferBinary(loc, lhs, rhs, types);
}
KILN_INFER(AndOp) { return inferLogical(loc, adaptor.getLhs(), adaptor.getRhs(), types); }
KILN_INFER(OrOp) { return inferLogical(loc, adaptor.getLhs(), adaptor.getRhs(), types); }
KILN_INFER(XorOp) { return inferLogical(loc, adaptor.getLhs(), adaptor.getRhs(), types); }

static LogicalResult inferBitwise(std::optional<Location> loc, Value lhs, Value rhs,
                                  SmallVectorImpl<Type> &types) {
  Type element = getElementTypeOrSelf(lhs);
  if (!isa<IntegerType>(element) || element.isInteger(1))
    return emitOptionalError(loc, "bitwise ops take integer operands, not ", element);
  return inferBinary(loc, lhs, rhs, types);
}
#define KILN_INFER_BITWISE(OP)                                                                     \
  KILN_INFER(OP) { return inferBitwise(loc, adaptor.getLhs(), adaptor.getRhs(), types); }
KILN_INFER_BITWISE(BitAndOp)
KILN_INFER_BITWISE(BitOrOp)
KILN_INFER_BITWISE(BitXorOp)
KILN_INFER_BITWISE(ShiftLeftOp)
KILN_INFER_BITWISE(ShiftRightOp)

static LogicalResult inferPredicate(MLIRContext *context, Value input,
                                    SmallVectorImpl<Type> &types) {
  types.push_back(shapeOf(input).clone(IntegerType::get(context, 1)));
  return success();
}
KILN_INFER(IsNaNOp) { return inferPredicate(context, adaptor.getInput(), types); }
KILN_INFER(IsInfOp) { return inferPredicate(context, adaptor.getInput(), types); }

static LogicalResult inferCompare(MLIRContext *context, std::optional<Location> loc, Value lhs,
                                  Value rhs, SmallVectorImpl<Type> &types) {
  if (failed(inferBinary(loc, lhs, rhs, types)))
    return failure();
  types.back() = cast<RankedTensorType>(types.back()).clone(IntegerType::get(context, 1));
  return success();
}
#define KILN_INFER_COMPARE(OP)                                                                     \
  KILN_INFER(OP) { return inferCompare(context, loc, adaptor.getLhs(), adaptor.getRhs(), types); }
KILN_INFER_COMPARE(EqualOp)
KILN_INFER_COMPARE(LessOp)
KILN_INFER_COMPARE(LessEqualOp)
KILN_INFER_COMPARE(GreaterOp)
KILN_INFER_COMPARE(GreaterEqualOp)

KILN_INFER(WhereOp) {
  auto c = shapeOf(adaptor.getCond()), x = shapeOf(adaptor.getX()), y = shapeOf(adaptor.getY());
  if (x.getElementType() != y.getElementType())
    return emitOptionalError(loc, "where: x and y element types differ");
  SmallVector<int64_t> xy, out;
  if (!OpTrait::util::getBroadcastedShape(x.getShape(), y.getShape(), xy) ||
      !OpTrait::util::getBroadcastedShape(c.getShape(), xy, out))
    return emitOptionalError(loc, "where: shapes do not broadcast");
  return push(types, out, x.getElementType());
}

/// The rank a shape operand (Reshape's, Expand's, ConstantOfShape's) gives
/// its result: its length, which must be known and at most kMaxRank (no
/// model has more dims; a larger one is a damaged file, not a shape).
static constexpr int64_t kMaxRank = 64;
static FailureOr<int64_t> shapeOperandRank(std::optional<Location> loc, Value shape,
                                           StringRef op) {
  auto t = shapeOf(shape);
  if (t.getRank() != 1 || t.isDynamicDim(0))
    return emitOptionalError(loc, op, ": the shape must be a 1-D tensor of known size");
  if (t.getDimSize(0) > kMaxRank)
    return emitOptionalError(loc, op, ": a shape of ", t.getDimSize(0), " dims (at most ",
                             kMaxRank, ")");
  return t.getDimSize(0);
}

KILN_INFER(ExpandOp) {
  auto in = shapeOf(adaptor.getInput());
  FailureOr<int64_t> rank = shapeOperandRank(loc, adaptor.getShape(), "expand");
  if (failed(rank))
    return failure();
  SmallVector<int64_t> target(*rank, kDyn);
  if (auto dims = getConstantInts(adaptor.getShape()))
    target = *dims;
  else if (target.size() < size_t(in.getRank()))
    target.insert(target.begin(), in.getRank() - target.size(), kDyn);
  SmallVector<int64_t> out;
  if (!OpTrait::util::getBroadcastedShape(in.getShape(), target, out))
    return emitOptionalError(loc, "expand: ", in, " does not broadcast to the target shape");
  return push(types, out, in.getElementType());
}

KILN_INFER(LayerNormOp) {
  auto in = shapeOf(adaptor.getInput());
  int64_t axis = adaptor.getAxis();
  if (axis < 0 || axis >= in.getRank())
    return emitOptionalError(loc, "layer_norm axis out of range");
  SmallVector<int64_t> out;
  for (Value v : {adaptor.getScale(), adaptor.getBias()})
    if (v && !OpTrait::util::getBroadcastedShape(in.getShape().drop_front(axis),
                                                 shapeOf(v).getShape(), out))
      return emitOptionalError(loc,
                               "layer_norm scale/bias do not broadcast to the normalised dims");
  types.push_back(in);
  return success();
}

KILN_INFER(EmbeddingBagOp) {
  auto table = shapeOf(adaptor.getTable());
  auto indices = shapeOf(adaptor.getIndices());
  auto begin = shapeOf(adaptor.getBegin()), end = shapeOf(adaptor.getEnd());
  if (table.getRank() != 2 || indices.getRank() != 1 || begin.getRank() != 1 || end.getRank() != 1)
    return emitOptionalError(loc, "embedding_bag takes a 2-D table and 1-D indices, begin, end");
  int64_t bags;
  if (failed(mergeDim(begin.getDimSize(0), end.getDimSize(0), bags)))
    return emitOptionalError(loc, "embedding_bag begin and end differ in length");
  if (Value w = adaptor.getWeights()) {
    int64_t n;
    if (shapeOf(w).getRank() != 1 ||
        failed(mergeDim(shapeOf(w).getDimSize(0), indices.getDimSize(0), n)))
      return emitOptionalError(loc, "embedding_bag weights must align with indices");
  }
  if (adaptor.getMode() > 2)
    return emitOptionalError(loc, "embedding_bag mode must be 0 (sum), 1 (mean) or 2 (max)");
  return push(types, {bags, table.getDimSize(1)}, table.getElementType());
}

#define KILN_INFER_SAME(OP)                                                                        \
  KILN_INFER(OP) {                                                                                 \
    types.push_back(adaptor.getInput().getType());                                                 \
    return success();                                                                              \
  }
KILN_INFER_SAME(SoftmaxOp)
KILN_INFER_SAME(LogSoftmaxOp)
KILN_INFER_SAME(CumSumOp)

KILN_INFER(TriluOp) {
  if (shapeOf(adaptor.getInput()).getRank() < 2)
    return emitOptionalError(loc, "trilu needs rank >= 2");
  types.push_back(adaptor.getInput().getType());
  return success();
}

KILN_INFER(GatherElementsOp) {
  auto data = shapeOf(adaptor.getData()), idx = shapeOf(adaptor.getIndices());
  int64_t axis = adaptor.getAxis();
  if (data.getRank() != idx.getRank() || axis < 0 || axis >= data.getRank())
    return emitOptionalError(loc,
                             "gather_elements: indices must have the data's rank, axis in range");
  return push(types, idx.getShape(), data.getElementType());
}

KILN_INFER(GatherNDOp) {
  auto data = shapeOf(adaptor.getData()), idx = shapeOf(adaptor.getIndices());
  int64_t b = adaptor.getBatchDims(), k = idx.getRank() ? idx.getShape().back() : 0;
  if (b < 0 || idx.getRank() < b + 1 || ShapedType::isDynamic(k) || k < 1 ||
      data.getRank() < b + k)
    return emitOptionalError(loc, "gather_nd: needs indices of rank > batch_dims whose last dim "
                                  "(the tuple size, static) is at most the data's rank past "
                                  "batch_dims");
  for (int64_t d = 0; d < b; ++d)
    if (!ShapedType::isDynamic(data.getDimSize(d)) && !ShapedType::isDynamic(idx.getDimSize(d)) &&
        data.getDimSize(d) != idx.getDimSize(d))
      return emitOptionalError(loc, "gather_nd: the batch_dims of data and indices differ");
  SmallVector<int64_t> out(idx.getShape().drop_back());
  llvm::append_range(out, data.getShape().drop_front(b + k));
  return push(types, out, data.getElementType());
}

LogicalResult GatherNDOp::verify() {
  auto data = getData().getType();
  auto indices = getConstantInts(getIndices());
  int64_t b = getBatchDims(), k = getIndices().getType().getShape().back();
  if (!indices)
    return success();
  for (auto [n, i] : llvm::enumerate(*indices)) {
    int64_t dim = data.getDimSize(b + int64_t(n) % k);
    if (!ShapedType::isDynamic(dim) && (i < -dim || i >= dim))
      return emitOpError("constant index ") << i << " out of range [" << -dim << ", " << dim << ")";
  }
  return success();
}

static LogicalResult inferArg(MLIRContext *context, std::optional<Location> loc, Value input,
                              int64_t axis, bool keepdims, SmallVectorImpl<Type> &types) {
  auto in = shapeOf(input);
  if (axis < 0 || axis >= in.getRank())
    return emitOptionalError(loc, "arg axis out of range");
  SmallVector<int64_t> out;
  for (int64_t d = 0; d < in.getRank(); ++d)
    if (d != axis)
      out.push_back(in.getDimSize(d));
    else if (keepdims)
      out.push_back(1);
  return push(types, out, IntegerType::get(context, 64));
}
KILN_INFER(ArgMaxOp) {
  return inferArg(context, loc, adaptor.getInput(), adaptor.getAxis(), adaptor.getKeepdims(),
                  types);
}
KILN_INFER(ArgMinOp) {
  return inferArg(context, loc, adaptor.getInput(), adaptor.getAxis(), adaptor.getKeepdims(),
                  types);
}

KILN_INFER(PadOp) {
  auto in = shapeOf(adaptor.getInput());
  ArrayRef<int64_t> pads = adaptor.getPads();
  if (int64_t(pads.size()) != 2 * in.getRank())
    return emitOptionalError(loc, "pad needs a begin and an end pad per dim");
  SmallVector<int64_t> out;
  for (int64_t d = 0; d < in.getRank(); ++d) {
    int64_t size = in.getDimSize(d);
    int64_t padded = size == kDyn ? kDyn : size + pads[d] + pads[d + in.getRank()];
    if (padded != kDyn && padded < 0)
      return emitOptionalError(loc, "pad removes more than dim ", d, " holds");
    out.push_back(padded);
  }
  return push(types, out, in.getElementType());
}

KILN_INFER(CastOp) { return push(types, shapeOf(adaptor.getInput()).getShape(), adaptor.getTo()); }

LogicalResult SoftmaxOp::verify() {
  int64_t axis = getAxis();
  if (axis < 0 || axis >= getInput().getType().getRank())
    return emitOpError("axis ") << axis << " out of range";
  return success();
}

KILN_INFER(ReshapeOp) {
  auto in = shapeOf(adaptor.getInput());
  FailureOr<int64_t> rank = shapeOperandRank(loc, adaptor.getShape(), "reshape");
  if (failed(rank))
    return failure();
  auto target = getConstantInts(adaptor.getShape());
  if (!target)
    return push(types, SmallVector<int64_t>(*rank, kDyn), in.getElementType());
  SmallVector<int64_t> out;
  int inferred = -1;
  for (auto [i, d] : llvm::enumerate(*target)) {
    if (d == 0 && !adaptor.getAllowzero()) {
      if (int64_t(i) >= in.getRank())
        return emitOptionalError(loc, "reshape: 0 at position ", i, " beyond input rank");
      out.push_back(in.getDimSize(i));
    } else if (d == -1) {
      if (inferred >= 0)
        return emitOptionalError(loc, "reshape: more than one -1");
      inferred = i;
      out.push_back(kDyn);
    } else if (d < 0) {
      return emitOptionalError(loc, "reshape: invalid size ", d);
    } else {
      out.push_back(d);
    }
  }
  int64_t total = product(in.getShape());
  if (inferred >= 0 && total != kDyn) {
    SmallVector<int64_t> rest(out);
    rest.erase(rest.begin() + inferred);
    int64_t known = product(rest);
    if (known != kDyn) {
      if (known == 0 || total % known)
        return emitOptionalError(loc, "reshape: cannot infer -1 from ", total, " elements");
      out[inferred] = total / known;
    }
  }
  int64_t outTotal = product(out);
  if (total != kDyn && outTotal != kDyn && total != outTotal)
    return emitOptionalError(loc, "reshape changes the element count from ", total, " to ",
                             outTotal);
  return push(types, out, in.getElementType());
}

KILN_INFER(FlattenOp) {
  auto in = shapeOf(adaptor.getInput());
  int64_t axis = adaptor.getAxis();
  if (axis < 0 || axis > in.getRank())
    return emitOptionalError(loc, "flatten axis out of range");
  return push(types,
              {product(in.getShape().take_front(axis)), product(in.getShape().drop_front(axis))},
              in.getElementType());
}

KILN_INFER(SqueezeOp) {
  auto in = shapeOf(adaptor.getInput());
  SmallVector<int64_t> out;
  ArrayRef<int64_t> axes = adaptor.getAxes();
  for (int64_t a : axes)
    if (a < 0 || a >= in.getRank() || (!in.isDynamicDim(a) && in.getDimSize(a) != 1))
      return emitOptionalError(loc, "squeeze axis ", a, " is not a size-1 dim of ", in);
  for (int64_t i = 0; i < in.getRank(); ++i)
    if (!llvm::is_contained(axes, i))
      out.push_back(in.getDimSize(i));
  return push(types, out, in.getElementType());
}

KILN_INFER(UnsqueezeOp) {
  auto in = shapeOf(adaptor.getInput());
  ArrayRef<int64_t> axes = adaptor.getAxes();
  int64_t rank = in.getRank() + axes.size();
  SmallVector<int64_t> out;
  auto dims = in.getShape();
  for (int64_t i = 0, j = 0; i < rank; ++i) {
    if (llvm::is_contained(axes, i)) {
      out.push_back(1);
    } else {
      if (j >= in.getRank())
        return emitOptionalError(loc, "unsqueeze axes out of range");
      out.push_back(dims[j++]);
    }
  }
  for (int64_t a : axes)
    if (a < 0 || a >= rank)
      return emitOptionalError(loc, "unsqueeze axis ", a, " out of range");
  return push(types, out, in.getElementType());
}

KILN_INFER(TransposeOp) {
  auto in = shapeOf(adaptor.getInput());
  ArrayRef<int64_t> perm = adaptor.getPerm();
  if (int64_t(perm.size()) != in.getRank())
    return emitOptionalError(loc, "transpose perm has the wrong length");
  SmallVector<int64_t> out;
  for (int64_t p : perm) {
    if (p < 0 || p >= in.getRank())
      return emitOptionalError(loc, "transpose perm entry out of range");
    out.push_back(in.getDimSize(p));
  }
  return push(types, out, in.getElementType());
}

LogicalResult TransposeOp::verify() {
  SmallVector<int64_t> sorted(getPerm());
  llvm::sort(sorted);
  for (auto [i, p] : llvm::enumerate(sorted))
    if (int64_t(i) != p)
      return emitOpError("perm is not a permutation");
  return success();
}

KILN_INFER(ConcatOp) {
  auto inputs = adaptor.getInputs();
  if (inputs.empty())
    return emitOptionalError(loc, "concat needs at least one input");
  auto first = shapeOf(inputs[0]);
  int64_t axis = adaptor.getAxis();
  if (axis < 0 || axis >= first.getRank())
    return emitOptionalError(loc, "concat axis out of range");
  SmallVector<int64_t> out(first.getShape());
  out[axis] = 0;
  for (Value v : inputs) {
    auto t = shapeOf(v);
    if (t.getRank() != first.getRank() || t.getElementType() != first.getElementType())
      return emitOptionalError(loc, "concat inputs differ in rank or element type");
    for (int64_t i = 0; i < t.getRank(); ++i) {
      if (i == axis)
        out[i] = (out[i] == kDyn || t.isDynamicDim(i)) ? kDyn : out[i] + t.getDimSize(i);
      else if (failed(mergeDim(out[i], t.getDimSize(i), out[i])))
        return emitOptionalError(loc, "concat inputs differ in dim ", i);
    }
  }
  return push(types, out, first.getElementType());
}

KILN_INFER(GatherOp) {
  auto data = shapeOf(adaptor.getData()), idx = shapeOf(adaptor.getIndices());
  int64_t axis = adaptor.getAxis();
  if (axis < 0 || axis >= data.getRank())
    return emitOptionalError(loc, "gather axis out of range");
  SmallVector<int64_t> out(data.getShape().take_front(axis));
  llvm::append_range(out, idx.getShape());
  llvm::append_range(out, data.getShape().drop_front(axis + 1));
  return push(types, out, data.getElementType());
}

LogicalResult GatherOp::verify() {
  auto data = getData().getType();
  auto indices = getConstantInts(getIndices());
  if (!indices || data.isDynamicDim(getAxis()))
    return success();
  int64_t n = data.getDimSize(getAxis());
  for (int64_t i : *indices)
    if (i < -n || i >= n)
      return emitOpError("constant index ") << i << " out of range [" << -n << ", " << n << ")";
  return success();
}

static std::optional<SliceRange> clampSlice(int64_t dim, int64_t start, int64_t end, int64_t step) {
  if (step == 0)
    return std::nullopt;
  auto clamp = [&](int64_t v, int64_t lo, int64_t hi) {
    if (v < 0)
      v += dim;
    return std::min(std::max(v, lo), hi);
  };
  int64_t s, e;
  if (step > 0) {
    s = clamp(start, 0, dim);
    e = clamp(end, 0, dim);
  } else {
    s = clamp(start, -1, dim - 1);
    e = clamp(end, -1, dim - 1);
  }
  int64_t count = step > 0 ? (e - s + step - 1) / step : (s - e - step - 1) / -step;
  return SliceRange{s, step, std::max<int64_t>(count, 0)};
}

std::optional<SmallVector<SliceRange>> getSliceRanges(SliceOp op) {
  auto in = op.getInput().getType();
  auto starts = getConstantInts(op.getStarts()), ends = getConstantInts(op.getEnds()),
       steps = getConstantInts(op.getSteps());
  if (!starts || !ends || !steps || !in.hasStaticShape())
    return std::nullopt;
  SmallVector<SliceRange> ranges;
  for (int64_t d = 0; d < in.getRank(); ++d)
    ranges.push_back({0, 1, in.getDimSize(d)});
  for (auto [i, axis] : llvm::enumerate(op.getAxes())) {
    auto r = clampSlice(in.getDimSize(axis), (*starts)[i], (*ends)[i], (*steps)[i]);
    if (!r)
      return std::nullopt;
    ranges[axis] = *r;
  }
  return ranges;
}

std::optional<int64_t> contiguousSliceOffset(SliceOp op) {
  auto ranges = getSliceRanges(op);
  if (!ranges)
    return std::nullopt;
  auto shape = op.getInput().getType().getShape();
  int64_t offset = 0, stride = 1;
  bool partial = false;
  for (int64_t d = int64_t(shape.size()) - 1; d >= 0; --d) {
    const SliceRange &r = (*ranges)[d];
    if ((r.count > 1 && r.step != 1) || (partial && r.count != 1))
      return std::nullopt;
    partial |= r.count != shape[d];
    offset += r.start * stride;
    stride *= shape[d];
  }
  return offset;
}

KILN_INFER(SliceOp) {
  auto in = shapeOf(adaptor.getInput());
  ArrayRef<int64_t> axes = adaptor.getAxes();
  for (Value v : {adaptor.getStarts(), adaptor.getEnds(), adaptor.getSteps()})
    if (shapeOf(v).getRank() != 1 || shapeOf(v).getDimSize(0) != int64_t(axes.size()))
      return emitOptionalError(loc, "slice starts/ends/steps must have one entry per axis");
  for (int64_t a : axes)
    if (a < 0 || a >= in.getRank())
      return emitOptionalError(loc, "slice axis ", a, " out of range");
  auto starts = getConstantInts(adaptor.getStarts()), ends = getConstantInts(adaptor.getEnds()),
       steps = getConstantInts(adaptor.getSteps());
  SmallVector<int64_t> out(in.getShape());
  for (auto [i, axis] : llvm::enumerate(axes)) {
    if (steps && (*steps)[i] == 0)
      return emitOptionalError(loc, "slice step must not be 0");
    if (!starts || !ends || !steps || in.isDynamicDim(axis)) {
      out[axis] = kDyn;
      continue;
    }
    out[axis] = clampSlice(in.getDimSize(axis), (*starts)[i], (*ends)[i], (*steps)[i])->count;
  }
  return push(types, out, in.getElementType());
}

static LogicalResult inferReduce(std::optional<Location> loc, Value input, ArrayRef<int64_t> axes,
                                 bool keepdims, SmallVectorImpl<Type> &types) {
  auto in = shapeOf(input);
  SmallVector<int64_t> out;
  for (int64_t a : axes)
    if (a < 0 || a >= in.getRank())
      return emitOptionalError(loc, "reduce axis ", a, " out of range");
  for (int64_t i = 0; i < in.getRank(); ++i) {
    if (!llvm::is_contained(axes, i))
      out.push_back(in.getDimSize(i));
    else if (keepdims)
      out.push_back(1);
  }
  return push(types, out, in.getElementType());
}

KILN_INFER(ReduceSumOp) {
  return inferReduce(loc, adaptor.getInput(), adaptor.getAxes(), adaptor.getKeepdims(), types);
}
KILN_INFER(ReduceMeanOp) {
  return inferReduce(loc, adaptor.getInput(), adaptor.getAxes(), adaptor.getKeepdims(), types);
}
KILN_INFER(ReduceMaxOp) {
  return inferReduce(loc, adaptor.getInput(), adaptor.getAxes(), adaptor.getKeepdims(), types);
}
KILN_INFER(ReduceMinOp) {
  return inferReduce(loc, adaptor.getInput(), adaptor.getAxes(), adaptor.getKeepdims(), types);
}
KILN_INFER(ReduceProdOp) {
  return inferReduce(loc, adaptor.getInput(), adaptor.getAxes(), adaptor.getKeepdims(), types);
}

KILN_INFER(ShapeOp) {
  auto in = shapeOf(adaptor.getInput());
  int64_t start = adaptor.getStart(), end = adaptor.getEnd();
  if (start < 0 || end > in.getRank() || start > end)
    return emitOptionalError(loc, "shape: [start, end) out of range");
  return push(types, {end - start}, IntegerType::get(context, 64));
}

KILN_INFER(RangeOp) {
  auto t = shapeOf(adaptor.getStart());
  for (Value v : {adaptor.getStart(), adaptor.getLimit(), adaptor.getDelta()})
    if (shapeOf(v).getRank() != 0 || shapeOf(v).getElementType() != t.getElementType())
      return emitOptionalError(loc, "range operands must be scalars of one type");
  int64_t count = kDyn;
  auto s = getConstantInts(adaptor.getStart()), l = getConstantInts(adaptor.getLimit()),
       d = getConstantInts(adaptor.getDelta());
  auto sf = getConstantFloat(adaptor.getStart()), lf = getConstantFloat(adaptor.getLimit()),
       df = getConstantFloat(adaptor.getDelta());
  if (s && l && d) {
    if ((*d)[0] == 0)
      return emitOptionalError(loc, "range delta must not be 0");
    int64_t span = (*l)[0] - (*s)[0], delta = (*d)[0];
    count = std::max<int64_t>(0, (span + delta + (delta > 0 ? -1 : 1)) / delta);
  } else if (sf && lf && df) {
    if (*df == 0)
      return emitOptionalError(loc, "range delta must not be 0");
    count = std::max<int64_t>(0, int64_t(std::ceil((*lf - *sf) / *df)));
  }
  return push(types, {count}, t.getElementType());
}

KILN_INFER(ConstantOfShapeOp) {
  Type element = cast<TypedAttr>(adaptor.getValue()).getType();
  FailureOr<int64_t> rank = shapeOperandRank(loc, adaptor.getShape(), "constant_of_shape");
  if (failed(rank))
    return failure();
  if (auto dims = getConstantInts(adaptor.getShape())) {
    for (int64_t d : *dims)
      if (d < 0)
        return emitOptionalError(loc, "constant_of_shape: negative size ", d);
    return push(types, *dims, element);
  }
  return push(types, SmallVector<int64_t>(*rank, kDyn), element);
}

} // namespace kiln

#define GET_OP_CLASSES
#include "KilnOps.cpp.inc"
