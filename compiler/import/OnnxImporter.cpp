//===- OnnxImporter.cpp - ONNX ModelProto -> kiln dialect -----------------===//
//
// A thin, faithful importer: it resolves ONNX's quirks once (opset-dependent
// operand/attribute forms, negative axes, defaults, 1-D matmul operands) so
// that every kiln op has a single meaning. Initialisers larger than a few
// hundred bytes become resource blobs, so weight bytes are held once; those
// stored as external data view a read-only map of their file (ExternalData).
//
//===----------------------------------------------------------------------===//

#include "OnnxImporter.h"

#include "ExternalData.h"
#include "LoopIdioms.h"

#include "dialects/KilnOps.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/DialectResourceBlobManager.h"
#include "mlir/IR/Matchers.h"
#include "mlir/IR/Verifier.h"
#include "llvm/ADT/StringSet.h"

#include <onnx/defs/parser.h>
#include <onnx/onnx_pb.h>

#include <fstream>
#include <sstream>

using namespace mlir;

namespace kiln {
namespace {

/// Reported as "node 'name' (#index, OpType): message".
struct ImportError {
  std::string message;
};

class Importer {
public:
  Importer(MLIRContext &context, const onnx::ModelProto &model, const std::string &path)
      : ctx(context), model(model), builder(&context), path(path), externalData(path) {}

  OwningOpRef<ModuleOp> run();

private:
  void importGraph(func::FuncOp &func);
  void importNode(const onnx::NodeProto &node);
  bool importConstantsAndShapes(const onnx::NodeProto &n, const std::string &op);
  bool importElementwise(const onnx::NodeProto &n, const std::string &op);
  bool importLinearAlgebra(const onnx::NodeProto &n, const std::string &op);
  bool importDataMovement(const onnx::NodeProto &n, const std::string &op);
  bool importReductions(const onnx::NodeProto &n, const std::string &op);
  bool importEmbeddingBagLoops(const onnx::NodeProto &n, const std::string &op);
  bool importQuantization(const onnx::NodeProto &n, const std::string &op);
  Value dequantize(Value x, Value scale, Value zeroPoint, int64_t axis);
  Value quantize(Value x, Value scale, Value zeroPoint, Type to, int64_t axis);
  Value alongAxis(Value v, int64_t axis, int64_t rank);
  Type elementType(int32_t onnxType, const std::string &what);
  RankedTensorType valueType(const onnx::ValueInfoProto &info, bool &batched);
  ElementsAttr tensorAttr(const onnx::TensorProto &tensor);
  std::string describeTensor(const std::string &name) const;

  // Node helpers.
  Value input(int i);
  bool hasInput(int i) const;
  const onnx::AttributeProto *attr(const std::string &name) const;
  int64_t intAttr(const std::string &name, int64_t fallback) const;
  float floatAttr(const std::string &name, float fallback) const;
  std::optional<SmallVector<int64_t>> intsAttr(const std::string &name) const;
  SmallVector<int64_t> constantInts(int i, const char *what);
  int64_t normalizeAxis(int64_t axis, int64_t rank);
  SmallVector<int64_t> normalizeAxes(ArrayRef<int64_t> axes, int64_t rank);
  Value constI64(ArrayRef<int64_t> values);
  int64_t rankOf(Value v) { return cast<RankedTensorType>(v.getType()).getRank(); }
  [[noreturn]] void fail(const std::string &message);
  void define(int output, Value value);
  bool isUsed(const std::string &name) const;
  template <typename Op, typename... Args> Value make(Args &&...args);

  MLIRContext &ctx;
  const onnx::ModelProto &model;
  OpBuilder builder;
  std::string path;
  ExternalData externalData;
  int64_t opset = 0;
  llvm::StringMap<Value> values;
  llvm::StringMap<const onnx::TensorProto *> constants;
  // Sequences exist only as embedding-bag Loop state: empty starts, and the
  // bags a Loop stacked into its output sequence.
  llvm::StringSet<> emptySequences;
  llvm::StringMap<Value> bagSequences;
  const onnx::NodeProto *node = nullptr;
  int nodeIndex = 0;
  Location loc = UnknownLoc::get(&ctx);
};

void Importer::fail(const std::string &message) {
  if (!node)
    throw ImportError{message};
  std::ostringstream os;
  if (!node->name().empty())
    os << "node '" << node->name() << "' ";
  else
    os << "node ";
  os << "(#" << nodeIndex << ", " << node->op_type() << "): " << message;
  throw ImportError{os.str()};
}

Type Importer::elementType(int32_t t, const std::string &what) {
  using TP = onnx::TensorProto;
  switch (t) {
  case TP::FLOAT:
    return builder.getF32Type();
  case TP::DOUBLE:
    return builder.getF64Type();
  case TP::INT64:
    return builder.getI64Type();
  case TP::INT32:
    return builder.getI32Type();
  case TP::INT8:
    return builder.getI8Type();
  case TP::INT16:
    return builder.getI16Type();
  case TP::UINT8:
    return IntegerType::get(&ctx, 8, IntegerType::Unsigned);
  case TP::UINT16:
    return IntegerType::get(&ctx, 16, IntegerType::Unsigned);
  case TP::UINT32:
    return IntegerType::get(&ctx, 32, IntegerType::Unsigned);
  case TP::UINT64:
    return IntegerType::get(&ctx, 64, IntegerType::Unsigned);
  case TP::BOOL:
    return builder.getI1Type();
  default:
    fail(what + ": unsupported element type " + TP::DataType_Name(static_cast<TP::DataType>(t)));
  }
}

RankedTensorType Importer::valueType(const onnx::ValueInfoProto &info, bool &batched) {
  if (!info.type().has_tensor_type())
    fail("'" + info.name() + "' is not a tensor");
  const auto &tt = info.type().tensor_type();
  Type element = elementType(tt.elem_type(), "'" + info.name() + "'");
  if (!tt.has_shape())
    fail("'" + info.name() + "' has no shape: kiln needs every graph input's rank");
  SmallVector<int64_t> dims;
  for (const auto &d : tt.shape().dim()) {
    if (d.has_dim_value() && d.dim_value() < 0)
      fail("'" + info.name() + "' has a negative dimension");
    dims.push_back(d.has_dim_value() ? d.dim_value() : ShapedType::kDynamic);
  }
  batched = !dims.empty() && dims[0] == ShapedType::kDynamic;
  return RankedTensorType::get(dims, element);
}

} // namespace

std::vector<char> tensorBytes(const onnx::TensorProto &t, size_t count, size_t width,
                              std::string &error) {
  using TP = onnx::TensorProto;
  std::vector<char> bytes(count * width);
  if (t.has_raw_data()) {
    if (t.raw_data().size() != bytes.size()) {
      error = "raw_data holds " + std::to_string(t.raw_data().size()) + " bytes, the shape needs " +
              std::to_string(bytes.size());
      return {};
    }
    std::copy(t.raw_data().begin(), t.raw_data().end(), bytes.begin());
    return bytes;
  }
  auto fill = [&](const auto &field, auto convert) {
    if (size_t(field.size()) != count) {
      error = "holds " + std::to_string(field.size()) + " values, the shape needs " +
              std::to_string(count);
      return;
    }
    for (size_t i = 0; i < count; ++i) {
      auto v = convert(field.Get(i));
      std::memcpy(bytes.data() + i * width, &v, width);
    }
  };
  switch (t.data_type()) {
  case TP::FLOAT:
    fill(t.float_data(), [](float v) { return v; });
    break;
  case TP::DOUBLE:
    fill(t.double_data(), [](double v) { return v; });
    break;
  case TP::INT64:
    fill(t.int64_data(), [](int64_t v) { return v; });
    break;
  case TP::INT32:
    fill(t.int32_data(), [](int32_t v) { return v; });
    break;
  case TP::INT8:
    fill(t.int32_data(), [](int32_t v) { return int8_t(v); });
    break;
  case TP::INT16:
    fill(t.int32_data(), [](int32_t v) { return int16_t(v); });
    break;
  case TP::UINT16:
    fill(t.int32_data(), [](int32_t v) { return uint16_t(v); });
    break;
  case TP::UINT32:
    fill(t.uint64_data(), [](uint64_t v) { return uint32_t(v); });
    break;
  case TP::UINT64:
    fill(t.uint64_data(), [](uint64_t v) { return v; });
    break;
  case TP::UINT8:
    fill(t.int32_data(), [](int32_t v) { return uint8_t(v); });
    break;
  case TP::BOOL:
    fill(t.int32_data(), [](int32_t v) { return uint8_t(v != 0); });
    break;
  default:
    error = "unsupported data type";
    break;
  }
  return bytes;
}

namespace {

/// "tensor 'name' (used by node 'n' (#i, Op))", naming the first node of
/// the main graph that reads it.
std::string Importer::describeTensor(const std::string &name) const {
  std::string what = "tensor '" + name + "'";
  const auto &nodes = model.graph().node();
  for (int i = 0; i < nodes.size(); ++i)
    if (llvm::is_contained(nodes[i].input(), name))
      return what + " (used by node '" + (nodes[i].name().empty() ? "" : nodes[i].name()) +
             "' (#" + std::to_string(i) + ", " + nodes[i].op_type() + "))";
  return what;
}

ElementsAttr Importer::tensorAttr(const onnx::TensorProto &t) {
  std::string what = "tensor '" + t.name() + "'";
  const bool external = t.data_location() == onnx::TensorProto::EXTERNAL;
  if (external)
    what = describeTensor(t.name());
  Type element = elementType(t.data_type(), what);
  SmallVector<int64_t> dims(t.dims().begin(), t.dims().end());
  if (llvm::any_of(dims, [](int64_t d) { return d < 0; }))
    fail(what + ": negative dimension");
  const uint64_t width = element.isInteger(1) ? 1 : element.getIntOrFloatBitWidth() / 8;
  uint64_t count = 1, bytes = 0;
  for (int64_t d : dims)
    if (__builtin_mul_overflow(count, uint64_t(d), &count))
      fail(what + ": its dims' product overflows 64 bits");
  if (__builtin_mul_overflow(count, width, &bytes) || count > uint64_t(INT64_MAX))
    fail(what + ": its byte size overflows 64 bits");
  auto type = RankedTensorType::get(dims, element);
  StringRef name = t.name().empty() ? StringRef("weight") : StringRef(t.name());
  std::string error;
  if (external) {
    FailureOr<AsmResourceBlob> blob = externalData.read(t, bytes, width, error);
    if (failed(blob))
      fail(what + ": external data " + error);
    // Small tensors stay foldable inline attributes, as in the model file.
    if (bytes <= kInlineConstantBytes || element.isInteger(1))
      return makeConstant(type, blob->getData(), name);
    return DenseResourceElementsAttr::get(type, name, std::move(*blob));
  }
  if (t.has_raw_data() && t.raw_data().size() == bytes) // the common case, copied once
    return makeConstant(type, ArrayRef<char>(t.raw_data().data(), bytes), name);
  std::vector<char> data = tensorBytes(t, count, width, error);
  if (!error.empty())
    fail(what + ": " + error);
  return makeConstant(type, data, name);
}

bool Importer::hasInput(int i) const { return i < node->input_size() && !node->input(i).empty(); }

Value Importer::input(int i) {
  if (!hasInput(i))
    fail("missing input " + std::to_string(i));
  auto it = values.find(node->input(i));
  if (it == values.end())
    fail("input '" + node->input(i) + "' is not defined before use");
  return it->second;
}

const onnx::AttributeProto *Importer::attr(const std::string &name) const {
  for (const auto &a : node->attribute())
    if (a.name() == name)
      return &a;
  return nullptr;
}

int64_t Importer::intAttr(const std::string &name, int64_t fallback) const {
  const auto *a = attr(name);
  return a ? a->i() : fallback;
}

float Importer::floatAttr(const std::string &name, float fallback) const {
  const auto *a = attr(name);
  return a ? a->f() : fallback;
}

std::optional<SmallVector<int64_t>> Importer::intsAttr(const std::string &name) const {
  const auto *a = attr(name);
  if (!a)
    return std::nullopt;
  return SmallVector<int64_t>(a->ints().begin(), a->ints().end());
}

SmallVector<int64_t> Importer::constantInts(int i, const char *what) {
  if (auto ints = getConstantInts(input(i)))
    return *ints;
  fail(std::string(what) + " (input " + std::to_string(i) +
       ") must be a constant, not a computed tensor");
}

int64_t Importer::normalizeAxis(int64_t axis, int64_t rank) {
  if (axis < -rank || axis >= rank)
    fail("axis " + std::to_string(axis) + " out of range for rank " + std::to_string(rank));
  return axis < 0 ? axis + rank : axis;
}

SmallVector<int64_t> Importer::normalizeAxes(ArrayRef<int64_t> axes, int64_t rank) {
  SmallVector<int64_t> out;
  for (int64_t a : axes)
    out.push_back(normalizeAxis(a, rank));
  llvm::sort(out);
  if (std::adjacent_find(out.begin(), out.end()) != out.end())
    fail("repeated axis");
  return out;
}

Value Importer::constI64(ArrayRef<int64_t> v) {
  auto type = RankedTensorType::get({int64_t(v.size())}, builder.getI64Type());
  return ConstantOp::create(builder, loc, DenseIntElementsAttr::get(type, v));
}

bool Importer::isUsed(const std::string &name) const {
  const onnx::GraphProto &graph = model.graph();
  for (const auto &n : graph.node())
    if (llvm::is_contained(n.input(), name))
      return true;
  return llvm::any_of(graph.output(), [&](const auto &o) { return o.name() == name; });
}

void Importer::define(int output, Value value) {
  if (output < node->output_size() && !node->output(output).empty())
    values[node->output(output)] = value;
}

template <typename Op, typename... Args> Value Importer::make(Args &&...args) {
  // Built with a placeholder result type, then typed by the op's own
  // inference, so a shape error becomes a message about this node.
  auto op = Op::create(builder, loc, builder.getNoneType(), std::forward<Args>(args)...);
  std::string diagnostic;
  ScopedDiagnosticHandler handler(&ctx, [&](Diagnostic &d) {
    diagnostic = d.str();
    return success();
  });
  FailureOr<SmallVector<Type>> types = inferResultTypes(op);
  if (succeeded(types))
    op->getResult(0).setType((*types)[0]);
  if (failed(types) || failed(verify(op))) {
    op->erase();
    fail(diagnostic.empty() ? "invalid operands" : diagnostic);
  }
  return op.getResult();
}

/// Constants, identities and the shape computations exporters emit. Returns false for other ops.
bool Importer::importConstantsAndShapes(const onnx::NodeProto &n, const std::string &op) {
  OpBuilder &b = builder;
  if (op == "Constant") {
    ElementsAttr value;
    if (const auto *a = attr("value")) {
      value = tensorAttr(a->t());
    } else if (const auto *a = attr("value_float")) {
      value = DenseElementsAttr::get(RankedTensorType::get({}, b.getF32Type()), a->f());
    } else if (const auto *a = attr("value_int")) {
      value = DenseElementsAttr::get(RankedTensorType::get({}, b.getI64Type()), int64_t(a->i()));
    } else if (const auto *a = attr("value_ints")) {
      SmallVector<int64_t> v(a->ints().begin(), a->ints().end());
      value =
          DenseIntElementsAttr::get(RankedTensorType::get({int64_t(v.size())}, b.getI64Type()), v);
    } else if (const auto *a = attr("value_floats")) {
      SmallVector<float> v(a->floats().begin(), a->floats().end());
      value = DenseElementsAttr::get(RankedTensorType::get({int64_t(v.size())}, b.getF32Type()),
                                     ArrayRef<float>(v));
    } else {
      fail("Constant without a supported value attribute");
    }
    define(0, ConstantOp::create(b, loc, value));
  } else if (op == "Identity" || op == "Dropout") {
    if (op == "Dropout") {
      if (n.output_size() > 1 && !n.output(1).empty() && isUsed(n.output(1)))
        fail("the Dropout mask output is not supported");
      // Inference is the identity; training mode drops at random.
      auto training = hasInput(2) ? getConstantInts(input(2))
                                  : std::optional<SmallVector<int64_t>>(SmallVector<int64_t>{0});
      auto ratio = hasInput(1) ? getConstantFloat(input(1)) : std::optional<double>(0.5);
      if (!training || ((*training)[0] != 0 && (!ratio || *ratio != 0)))
        fail("Dropout in training mode is not supported");
    }
    define(0, input(0));
  } else if (op == "Size") {
    Value x = input(0);
    Value shape = make<ShapeOp>(x, b.getI64IntegerAttr(0), b.getI64IntegerAttr(rankOf(x)));
    define(0, make<ReduceProdOp>(shape, b.getDenseI64ArrayAttr({0}), b.getBoolAttr(false)));
  } else if (op == "Shape") {
    Value x = input(0);
    int64_t rank = rankOf(x);
    auto clampDim = [&](int64_t v) {
      if (v < 0)
        v += rank;
      return std::min(std::max<int64_t>(v, 0), rank);
    };
    int64_t start = clampDim(intAttr("start", 0)), end = clampDim(intAttr("end", rank));
    end = std::max(start, end);
    define(0, make<ShapeOp>(x, b.getI64IntegerAttr(start), b.getI64IntegerAttr(end)));
  } else if (op == "Range") {
    define(0, make<RangeOp>(input(0), input(1), input(2)));
  } else if (op == "ConstantOfShape") {
    TypedAttr value = b.getF32FloatAttr(0.0f);
    if (const auto *a = attr("value")) {
      auto elements = cast<DenseElementsAttr>(tensorAttr(a->t()));
      if (elements.getNumElements() != 1)
        fail("ConstantOfShape value must hold one element");
      value = cast<TypedAttr>(elements.getValues<Attribute>()[0]);
    }
    define(0, make<ConstantOfShapeOp>(input(0), value));
  } else {
    return false;
  }
  return true;
}

/// Elementwise arithmetic, comparisons, logic, activations and casts. Returns false for other ops.
bool Importer::importElementwise(const onnx::NodeProto &n, const std::string &op) {
  OpBuilder &b = builder;
  auto unary = [&](auto tag) {
    using Op = decltype(tag);
    define(0, make<Op>(input(0)));
  };
  auto binary = [&](auto tag) {
    using Op = decltype(tag);
    Value l = input(0), r = input(1);
    if (getElementTypeOrSelf(l) != getElementTypeOrSelf(r))
      fail("operand element types differ");
    define(0, make<Op>(l, r));
  };
  if (op == "Add") {
    binary(AddOp());
  } else if (op == "Sub") {
    binary(SubOp());
  } else if (op == "Mul") {
    binary(MulOp());
  } else if (op == "Div") {
    binary(DivOp());
  } else if (op == "Relu") {
    unary(ReluOp());
  } else if (op == "Sigmoid") {
    unary(SigmoidOp());
  } else if (op == "Tanh") {
    unary(TanhOp());
  } else if (op == "Exp") {
    unary(ExpOp());
  } else if (op == "Log") {
    unary(LogOp());
  } else if (op == "Sqrt") {
    unary(SqrtOp());
  } else if (op == "Erf") {
    unary(ErfOp());
  } else if (op == "Neg") {
    unary(NegOp());
  } else if (op == "Abs") {
    unary(AbsOp());
  } else if (op == "Floor") {
    unary(FloorOp());
  } else if (op == "Ceil") {
    unary(CeilOp());
  } else if (op == "Round") {
    unary(RoundOp());
  } else if (op == "Reciprocal") {
    unary(ReciprocalOp());
  } else if (op == "Sin") {
    unary(SinOp());
  } else if (op == "Cos") {
    unary(CosOp());
  } else if (op == "Softplus") {
    unary(SoftplusOp());
  } else if (op == "Softsign") {
    unary(SoftsignOp());
  } else if (op == "Sign") {
    unary(SignOp());
  } else if (op == "Not") {
    unary(NotOp());
  } else if (op == "Pow") {
    // The exponent may have another type than the base.
    Value base = input(0), exponent = input(1);
    if (getElementTypeOrSelf(exponent) != getElementTypeOrSelf(base))
      exponent = make<CastOp>(exponent, TypeAttr::get(getElementTypeOrSelf(base)));
    define(0, make<PowOp>(base, exponent));
  } else if (op == "PRelu") {
    binary(PReluOp());
  } else if (op == "Mod") {
    bool isFloat = isa<FloatType>(getElementTypeOrSelf(input(0)));
    if (isFloat != bool(intAttr("fmod", 0)))
      fail(isFloat ? "floating-point Mod needs fmod=1"
                   : "integer Mod with fmod=1 is not supported");
    binary(ModOp());
  } else if (op == "And") {
    binary(AndOp());
  } else if (op == "Or") {
    binary(OrOp());
  } else if (op == "Xor") {
    binary(XorOp());
  } else if (op == "Equal") {
    binary(EqualOp());
  } else if (op == "Less") {
    binary(LessOp());
  } else if (op == "LessOrEqual") {
    binary(LessEqualOp());
  } else if (op == "Greater") {
    binary(GreaterOp());
  } else if (op == "GreaterOrEqual") {
    binary(GreaterEqualOp());
  } else if (op == "Sum" || op == "Max" || op == "Min") {
    // Variadic forms become chains of binary ops.
    Value acc = input(0);
    for (int i = 1; i < n.input_size(); ++i) {
      if (getElementTypeOrSelf(acc) != getElementTypeOrSelf(input(i)))
        fail("operand element types differ");
      acc = op == "Sum"   ? make<AddOp>(acc, input(i))
            : op == "Max" ? make<MaxOp>(acc, input(i))
                          : make<MinOp>(acc, input(i));
    }
    define(0, acc);
  } else if (op == "Where") {
    define(0, make<WhereOp>(input(0), input(1), input(2)));
  } else if (op == "LeakyRelu" || op == "Elu" || op == "HardSigmoid" || op == "Clip" ||
             op == "Gelu") {
    Value x = input(0);
    if (!isa<FloatType>(getElementTypeOrSelf(x)))
      fail("only floating-point inputs are supported");
    double alpha = 0, beta = 0;
    if (op == "LeakyRelu") {
      alpha = floatAttr("alpha", 0.01f);
    } else if (op == "Elu") {
      alpha = floatAttr("alpha", 1.0f);
    } else if (op == "HardSigmoid") {
      alpha = floatAttr("alpha", 0.2f);
      beta = floatAttr("beta", 0.5f);
    } else if (op == "Gelu") {
      const auto *a = attr("approximate");
      alpha = a && a->s() == "tanh" ? 1.0 : 0.0;
    } else if (opset < 11) {
      alpha = floatAttr("min", -std::numeric_limits<float>::infinity());
      beta = floatAttr("max", std::numeric_limits<float>::infinity());
    } else {
      // Clip's bounds are optional scalar inputs from opset 11.
      auto bound = [&](int i, double fallback) {
        if (!hasInput(i))
          return fallback;
        std::optional<double> value = getConstantFloat(input(i));
        if (!value)
          fail("Clip bounds must be constant scalars");
        return *value;
      };
      alpha = bound(1, -std::numeric_limits<double>::infinity());
      beta = bound(2, std::numeric_limits<double>::infinity());
    }
    auto a = b.getF64FloatAttr(alpha), be = b.getF64FloatAttr(beta);
    if (op == "LeakyRelu")
      define(0, make<LeakyReluOp>(x, a, be));
    else if (op == "Elu")
      define(0, make<EluOp>(x, a, be));
    else if (op == "HardSigmoid")
      define(0, make<HardSigmoidOp>(x, a, be));
    else if (op == "Gelu")
      define(0, make<GeluOp>(x, a, be));
    else
      define(0, make<ClipOp>(x, a, be));
  } else if (op == "CastLike") {
    Type to = getElementTypeOrSelf(input(1));
    define(0, make<CastOp>(input(0), TypeAttr::get(to)));
  } else if (op == "Mean") {
    Value acc = input(0);
    for (int i = 1; i < n.input_size(); ++i)
      acc = make<AddOp>(acc, input(i));
    auto scalar = RankedTensorType::get({}, getElementTypeOrSelf(acc));
    if (!isa<FloatType>(scalar.getElementType()))
      fail("Mean of integers is not supported");
    Value count = ConstantOp::create(
        b, loc,
        DenseElementsAttr::get(scalar, b.getFloatAttr(scalar.getElementType(), n.input_size())));
    define(0, make<DivOp>(acc, count));
  } else if (op == "Cast") {
    Type to = elementType(intAttr("to", 0), "Cast 'to'");
    define(0, make<CastOp>(input(0), TypeAttr::get(to)));
  } else {
    return false;
  }
  return true;
}

/// Matrix products, normalisations and softmax. Returns false for other ops.
bool Importer::importLinearAlgebra(const onnx::NodeProto &n, const std::string &op) {
  OpBuilder &b = builder;
  if (op == "Gemm") {
    Value c = hasInput(2) ? input(2) : Value();
    define(0,
           make<GemmOp>(input(0), input(1), c, b.getF32FloatAttr(floatAttr("alpha", 1.0f)),
                        b.getF32FloatAttr(floatAttr("beta", 1.0f)),
                        b.getBoolAttr(intAttr("transA", 0)), b.getBoolAttr(intAttr("transB", 0))));
  } else if (op == "MatMul") {
    // ONNX promotes 1-D operands to matrices and drops the added dim after.
    Value l = input(0), r = input(1);
    bool vecL = rankOf(l) == 1, vecR = rankOf(r) == 1;
    if (vecL)
      l = make<UnsqueezeOp>(l, b.getDenseI64ArrayAttr({0}));
    if (vecR)
      r = make<UnsqueezeOp>(r, b.getDenseI64ArrayAttr({1}));
    Value y = make<MatMulOp>(l, r);
    int64_t rank = rankOf(y);
    SmallVector<int64_t> drop;
    if (vecL)
      drop.push_back(rank - 2);
    if (vecR)
      drop.push_back(rank - 1);
    if (!drop.empty())
      y = make<SqueezeOp>(y, b.getDenseI64ArrayAttr(drop));
    define(0, y);
  } else if (op == "LayerNormalization") {
    Value x = input(0);
    int64_t axis = normalizeAxis(intAttr("axis", -1), rankOf(x));
    double epsilon = floatAttr("epsilon", 1e-5f);
    Value bias = hasInput(2) ? input(2) : Value();
    define(0, make<LayerNormOp>(x, input(1), bias, b.getI64IntegerAttr(axis),
                                b.getF64FloatAttr(epsilon), UnitAttr()));
    if (n.output_size() > 1) {
      // The optional Mean and InvStdDev outputs, over the normalised dims.
      SmallVector<int64_t> dims;
      for (int64_t d = axis; d < rankOf(x); ++d)
        dims.push_back(d);
      auto axes = b.getDenseI64ArrayAttr(dims);
      auto keep = b.getBoolAttr(true);
      Value mean = make<ReduceMeanOp>(x, axes, keep);
      Value centred = make<SubOp>(x, mean);
      auto scalar = RankedTensorType::get({}, getElementTypeOrSelf(x));
      Value eps = ConstantOp::create(
          b, loc, DenseElementsAttr::get(scalar, b.getFloatAttr(scalar.getElementType(), epsilon)));
      Value var = make<ReduceMeanOp>(make<MulOp>(centred, centred), axes, keep);
      define(1, mean);
      define(2, make<ReciprocalOp>(make<SqrtOp>(make<AddOp>(var, eps))));
    }
  } else if (op == "LpNormalization") {
    Value x = input(0);
    int64_t p = intAttr("p", 2);
    auto axes = b.getDenseI64ArrayAttr({normalizeAxis(intAttr("axis", -1), rankOf(x))});
    auto keep = b.getBoolAttr(true);
    if (p != 1 && p != 2)
      fail("p must be 1 or 2");
    Value norm = p == 1 ? make<ReduceSumOp>(make<AbsOp>(x), axes, keep)
                        : make<SqrtOp>(make<ReduceSumOp>(make<MulOp>(x, x), axes, keep));
    define(0, make<DivOp>(x, norm));
  } else if (op == "RMSNormalization") {
    Value x = input(0);
    int64_t axis = normalizeAxis(intAttr("axis", -1), rankOf(x));
    define(0, make<LayerNormOp>(x, input(1), Value(), b.getI64IntegerAttr(axis),
                                b.getF64FloatAttr(floatAttr("epsilon", 1e-5f)), b.getUnitAttr()));
  } else if (op == "Softmax" || op == "LogSoftmax") {
    Value x = input(0);
    int64_t rank = rankOf(x);
    int64_t axis = normalizeAxis(intAttr("axis", opset < 13 ? 1 : -1), rank);
    auto softmax = [&](Value v, int64_t a) {
      return op == "Softmax" ? make<SoftmaxOp>(v, b.getI64IntegerAttr(a))
                             : make<LogSoftmaxOp>(v, b.getI64IntegerAttr(a));
    };
    if (opset >= 13 || axis == rank - 1) {
      define(0, softmax(x, axis));
    } else {
      // Before opset 13, softmax normalises over all dims from `axis` on.
      Value flat = make<FlattenOp>(x, b.getI64IntegerAttr(axis));
      Value shape = make<ShapeOp>(x, b.getI64IntegerAttr(0), b.getI64IntegerAttr(rank));
      define(0, make<ReshapeOp>(softmax(flat, 1), shape));
    }
  } else {
    return false;
  }
  return true;
}

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
    if (opset >= 13 && hasInput(1))
      sizes = constantInts(1, "split");
    else if (auto a = intsAttr("split"); a && opset < 13)
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
    int64_t count = cast<RankedTensorType>(starts.getType()).getDimSize(0);
    if (count == ShapedType::kDynamic)
      fail("Slice starts must have a known length");
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

/// Reductions and arg-reductions. Returns false for other ops.
bool Importer::importReductions(const onnx::NodeProto &n, const std::string &op) {
  OpBuilder &b = builder;
  if (op == "ArgMax" || op == "ArgMin") {
    Value x = input(0);
    auto axis = b.getI64IntegerAttr(normalizeAxis(intAttr("axis", 0), rankOf(x)));
    auto keep = b.getBoolAttr(intAttr("keepdims", 1));
    auto last = b.getBoolAttr(intAttr("select_last_index", 0));
    define(0, op == "ArgMax" ? make<ArgMaxOp>(x, axis, keep, last)
                             : make<ArgMinOp>(x, axis, keep, last));
  } else if (op == "ReduceSum" || op == "ReduceMean" || op == "ReduceMax" || op == "ReduceMin" ||
             op == "ReduceProd" || op == "ReduceL1" || op == "ReduceL2" ||
             op == "ReduceSumSquare" || op == "ReduceLogSum" || op == "ReduceLogSumExp") {
    Value x = input(0);
    // Axes moved from attribute to input in opset 13 (ReduceSum), 18 (others).
    int64_t inputSince = op == "ReduceSum" ? 13 : 18;
    SmallVector<int64_t> axes;
    if (opset >= inputSince) {
      if (hasInput(1))
        axes = constantInts(1, "axes");
    } else if (auto a = intsAttr("axes")) {
      axes = *a;
    }
    if (axes.empty()) {
      if (intAttr("noop_with_empty_axes", 0)) {
        define(0, x);
        return true;
      }
      for (int64_t i = 0; i < rankOf(x); ++i)
        axes.push_back(i);
    }
    axes = normalizeAxes(axes, rankOf(x));
    auto axesAttr = b.getDenseI64ArrayAttr(axes);
    auto keep = b.getBoolAttr(intAttr("keepdims", 1));
    // The other reductions are sums of transformed elements.
    if (op == "ReduceL1")
      define(0, make<ReduceSumOp>(make<AbsOp>(x), axesAttr, keep));
    else if (op == "ReduceL2")
      define(0, make<SqrtOp>(make<ReduceSumOp>(make<MulOp>(x, x), axesAttr, keep)));
    else if (op == "ReduceSumSquare")
      define(0, make<ReduceSumOp>(make<MulOp>(x, x), axesAttr, keep));
    else if (op == "ReduceLogSum")
      define(0, make<LogOp>(make<ReduceSumOp>(x, axesAttr, keep)));
    else if (op == "ReduceLogSumExp") {
      // log(sum(exp(x - max))) + max stays finite for large x.
      Value max = make<ReduceMaxOp>(x, axesAttr, b.getBoolAttr(true));
      Value sum = make<ReduceSumOp>(make<ExpOp>(make<SubOp>(x, max)), axesAttr, keep);
      Value maxKept = intAttr("keepdims", 1) ? max : make<ReduceMaxOp>(x, axesAttr, keep);
      define(0, make<AddOp>(make<LogOp>(sum), maxKept));
    } else if (op == "ReduceSum")
      define(0, make<ReduceSumOp>(x, axesAttr, keep));
    else if (op == "ReduceMean")
      define(0, make<ReduceMeanOp>(x, axesAttr, keep));
    else if (op == "ReduceMax")
      define(0, make<ReduceMaxOp>(x, axesAttr, keep));
    else if (op == "ReduceMin")
      define(0, make<ReduceMinOp>(x, axesAttr, keep));
    else
      define(0, make<ReduceProdOp>(x, axesAttr, keep));
  } else {
    return false;
  }
  return true;
}

/// Loops that are embedding bags, and the sequences they stack into. Returns false for other ops.
bool Importer::importEmbeddingBagLoops(const onnx::NodeProto &n, const std::string &op) {
  OpBuilder &b = builder;
  if (op == "Loop") {
    std::string why;
    auto outerInts = [&](const std::string &name) -> std::optional<std::vector<int64_t>> {
      auto it = values.find(name);
      if (it == values.end())
        return std::nullopt;
      auto ints = getConstantInts(it->second);
      if (!ints)
        return std::nullopt;
      return std::vector<int64_t>(ints->begin(), ints->end());
    };
    std::optional<EmbeddingBagLoop> bag = matchEmbeddingBagLoop(n, outerInts, why);
    if (!bag)
      fail("this Loop is not a recognised idiom: " + why);
    if (!hasInput(0))
      fail("an embedding-bag Loop needs a trip count");
    if (hasInput(1)) {
      auto cond = getConstantInts(input(1));
      if (!cond || cond->size() != 1 || (*cond)[0] == 0)
        fail("an embedding-bag Loop must start with a constant true condition");
    }
    auto outer = [&](const std::string &name) {
      auto it = values.find(name);
      if (it == values.end())
        fail("the Loop body uses '" + name + "', which is not defined before the Loop");
      return it->second;
    };
    auto toI64 = [&](Value v) {
      if (getElementTypeOrSelf(v).isInteger(64))
        return v;
      return make<CastOp>(v, TypeAttr::get(b.getI64Type()));
    };
    // Iterations 0..M-1 read begin/end from the first M entries.
    Value count = toI64(input(0));
    if (rankOf(count) == 0)
      count = make<UnsqueezeOp>(count, b.getDenseI64ArrayAttr({0}));
    auto firstM = [&](Value v) {
      return make<SliceOp>(toI64(v), constI64({0}), count, constI64({1}),
                           b.getDenseI64ArrayAttr({0}));
    };
    if (bag->sequence && !emptySequences.count(n.input(2)))
      fail("the sequence an embedding-bag Loop appends to must start empty (SequenceEmpty)");
    Value weights = bag->weights.empty() ? Value() : outer(bag->weights);
    Value bags = make<EmbeddingBagOp>(outer(bag->table), outer(bag->indices),
                                      firstM(outer(bag->begin)), firstM(outer(bag->end)), weights,
                                      b.getI64IntegerAttr(bag->mode), UnitAttr());
    if (bag->sequence)
      bagSequences[n.output(0)] = bags;
    else
      define(0, bags);
  } else if (op == "SequenceEmpty") {
    // Only the start of an embedding-bag Loop's sequence (checked there).
    emptySequences.insert(n.output(0));
  } else if (op == "ConcatFromSequence") {
    auto it = bagSequences.find(n.input(0));
    if (it == bagSequences.end())
      fail("only the sequence of an embedding-bag Loop can be concatenated");
    Value bags = it->second; // [bags, dim]: the sequence stacked on a new axis 0
    int64_t axis = intAttr("axis", 0), newAxis = intAttr("new_axis", 0);
    if (axis != 0)
      fail("only axis 0 is supported for a sequence of embedding bags");
    if (newAxis)
      define(0, bags);
    else
      define(0, make<ReshapeOp>(bags, constI64({-1})));
  } else {
    return false;
  }
  return true;
}

/// A per-axis scale or zero point (1-D, one value per index of `axis`)
/// reshaped to broadcast along that axis of a rank-`rank` tensor; scalars
/// and one-element tensors as they are.
Value Importer::alongAxis(Value v, int64_t axis, int64_t rank) {
  auto type = cast<RankedTensorType>(v.getType());
  if (type.getRank() == 0 || type.getNumElements() == 1 || axis == rank - 1)
    return v;
  if (type.getRank() != 1)
    fail("a per-axis scale or zero point must be 1-D");
  SmallVector<int64_t> shape(rank - axis, 1);
  shape[0] = type.getDimSize(0);
  return make<ReshapeOp>(v, constI64(shape), UnitAttr());
}

/// ONNX DequantizeLinear: (x - zero point) * scale, in f32.
Value Importer::dequantize(Value x, Value scale, Value zeroPoint, int64_t axis) {
  auto f32 = TypeAttr::get(builder.getF32Type());
  const int64_t rank = rankOf(x);
  Value y = make<CastOp>(x, f32);
  if (zeroPoint)
    y = make<SubOp>(y, alongAxis(make<CastOp>(zeroPoint, f32), axis, rank));
  return make<MulOp>(y, alongAxis(scale, axis, rank));
}

/// ONNX QuantizeLinear: round(x / scale) + zero point (ties to even),
/// saturated to `to` (int8 or uint8). `zeroPoint` is f32 or null.
Value Importer::quantize(Value x, Value scale, Value zeroPoint, Type to, int64_t axis) {
  const int64_t rank = rankOf(x);
  Value y = make<RoundOp>(make<DivOp>(x, alongAxis(scale, axis, rank)));
  if (zeroPoint)
    y = make<AddOp>(y, alongAxis(zeroPoint, axis, rank));
  const unsigned bits = to.getIntOrFloatBitWidth();
  const bool isSigned = !to.isUnsignedInteger();
  const double lo = isSigned ? -std::ldexp(1.0, bits - 1) : 0.0;
  const double hi = isSigned ? std::ldexp(1.0, bits - 1) - 1 : std::ldexp(1.0, bits) - 1;
  y = make<ClipOp>(y, builder.getF64FloatAttr(lo), builder.getF64FloatAttr(hi));
  return make<CastOp>(y, TypeAttr::get(to));
}

/// QuantizeLinear, DequantizeLinear, DynamicQuantizeLinear, MatMulInteger
/// and QLinearMatMul (what onnxruntime's quantisation tool writes) as f32
/// arithmetic; kiln-raise-quantized-matmul folds the products into int8
/// dense layers. Returns false for other ops.
bool Importer::importQuantization(const onnx::NodeProto &n, const std::string &op) {
  OpBuilder &b = builder;
  auto f32 = TypeAttr::get(b.getF32Type());
  auto u8 = IntegerType::get(&ctx, 8, IntegerType::Unsigned);
  // 8- and 16-bit integers; DequantizeLinear also takes int32 (biases).
  auto checkInteger = [&](Value v, const char *what) {
    Type t = getElementTypeOrSelf(v);
    if (!t.isInteger(8) && !t.isInteger(16) && !(op == "DequantizeLinear" && t.isInteger(32))) {
      std::string name;
      llvm::raw_string_ostream(name) << t;
      fail(std::string(what) + ": element type " + name + " is not supported");
    }
  };
  if ((op == "QuantizeLinear" || op == "DequantizeLinear") && intAttr("block_size", 0) != 0)
    fail("blocked quantisation (block_size) is not supported");
  // The axis of a per-axis scale; a per-tensor one ignores it.
  auto quantAxis = [&](Value x) {
    auto scale = cast<RankedTensorType>(input(1).getType());
    return scale.getRank() == 0 || scale.getNumElements() == 1
               ? 0
               : normalizeAxis(intAttr("axis", 1), rankOf(x));
  };
  if (op == "DequantizeLinear") {
    Value x = input(0);
    checkInteger(x, "the quantised input");
    define(0, dequantize(x, input(1), hasInput(2) ? input(2) : Value(), quantAxis(x)));
  } else if (op == "QuantizeLinear") {
    Value x = input(0), zp = hasInput(2) ? input(2) : Value();
    if (zp)
      checkInteger(zp, "the zero point");
    Type to = zp ? getElementTypeOrSelf(zp) : Type(u8);
    if (int64_t dtype = intAttr("output_dtype", 0); dtype && !zp)
      to = elementType(int32_t(dtype), "QuantizeLinear output_dtype");
    if (!to.isInteger(8) && !to.isInteger(16))
      fail("QuantizeLinear output element type is not supported (8- or 16-bit integers)");
    define(0, quantize(x, input(1), zp ? make<CastOp>(zp, f32) : Value(), to, quantAxis(x)));
  } else if (op == "DynamicQuantizeLinear") {
    // uint8 over the tensor's range widened to include 0.
    Value x = input(0);
    SmallVector<int64_t> all;
    for (int64_t i = 0; i < rankOf(x); ++i)
      all.push_back(i);
    auto axes = b.getDenseI64ArrayAttr(all);
    auto scalar = [&](float v) {
      return ConstantOp::create(
          b, loc, DenseElementsAttr::get(RankedTensorType::get({}, b.getF32Type()), v));
    };
    Value zero = scalar(0.0f);
    Value lo = make<MinOp>(make<ReduceMinOp>(x, axes, b.getBoolAttr(false)), zero);
    Value hi = make<MaxOp>(make<ReduceMaxOp>(x, axes, b.getBoolAttr(false)), zero);
    Value scale = make<DivOp>(make<SubOp>(hi, lo), scalar(255.0f));
    Value zp = make<ClipOp>(make<RoundOp>(make<SubOp>(zero, make<DivOp>(lo, scale))),
                            b.getF64FloatAttr(0), b.getF64FloatAttr(255));
    define(0, quantize(x, scale, zp, u8, 0));
    define(1, scale);
    define(2, make<CastOp>(zp, TypeAttr::get(u8)));
  } else if (op == "MatMulInteger") {
    // In f32: exact while the sums stay below 2^24, rounded like an f32
    // product's beyond.
    Value a = input(0), w = input(1);
    checkInteger(a, "A");
    checkInteger(w, "B");
    Value af = make<CastOp>(a, f32), wf = make<CastOp>(w, f32);
    if (hasInput(2))
      af = make<SubOp>(af, make<CastOp>(input(2), f32));
    if (hasInput(3))
      wf = make<SubOp>(wf, make<CastOp>(input(3), f32));
    Value y = make<MatMulOp>(af, wf);
    define(0, make<CastOp>(make<RoundOp>(y), TypeAttr::get(b.getI32Type())));
  } else if (op == "QLinearMatMul") {
    Value a = input(0), w = input(3);
    checkInteger(a, "a");
    checkInteger(w, "b");
    Value af = dequantize(a, input(1), input(2), std::max<int64_t>(rankOf(a) - 2, 0));
    Value wf = dequantize(w, input(4), input(5), rankOf(w) - 1);
    Value yzp = input(7);
    define(0, quantize(make<MatMulOp>(af, wf), input(6), make<CastOp>(yzp, f32),
                       getElementTypeOrSelf(yzp), 0));
  } else {
    return false;
  }
  return true;
}

void Importer::importNode(const onnx::NodeProto &n) {
  node = &n;
  // The line of a node's location is its 1-based position in the graph.
  loc = NameLoc::get(builder.getStringAttr(n.name().empty() ? n.op_type() : n.name()),
                     FileLineColLoc::get(&ctx, path, nodeIndex + 1, 0));
  if (!n.domain().empty() && n.domain() != "ai.onnx")
    fail("operator domain '" + n.domain() + "' is not supported");
  const std::string &op = n.op_type();

  if (!importConstantsAndShapes(n, op) && !importElementwise(n, op) &&
      !importLinearAlgebra(n, op) && !importDataMovement(n, op) && !importReductions(n, op) &&
      !importEmbeddingBagLoops(n, op) && !importQuantization(n, op))
    fail("unsupported operator");
}

void Importer::importGraph(func::FuncOp &func) {
  const onnx::GraphProto &graph = model.graph();
  for (const auto &init : graph.initializer())
    constants[init.name()] = &init;

  SmallVector<const onnx::ValueInfoProto *> inputs;
  SmallVector<Type> inputTypes;
  SmallVector<bool> batchedInputs;
  for (const auto &in : graph.input()) {
    if (constants.count(in.name()))
      continue; // an initialiser listed as input (old exporters)
    bool batched = false;
    inputTypes.push_back(valueType(in, batched));
    inputs.push_back(&in);
    batchedInputs.push_back(batched);
  }
  func.setType(builder.getFunctionType(inputTypes, {}));
  Block *body = func.addEntryBlock();
  builder.setInsertionPointToStart(body);
  for (auto [i, in] : llvm::enumerate(inputs)) {
    values[in->name()] = body->getArgument(i);
    func.setArgAttr(i, "kiln.name", builder.getStringAttr(in->name()));
    if (batchedInputs[i])
      func.setArgAttr(i, "kiln.batched", builder.getUnitAttr());
  }
  for (const auto &init : graph.initializer()) {
    loc = NameLoc::get(builder.getStringAttr(init.name()), FileLineColLoc::get(&ctx, path, 0, 0));
    values[init.name()] = ConstantOp::create(builder, loc, tensorAttr(init));
  }

  for (int i = 0; i < graph.node_size(); ++i) {
    nodeIndex = i;
    importNode(graph.node(i));
  }
  node = nullptr;

  SmallVector<Value> results;
  SmallVector<bool> batched;
  for (const auto &out : graph.output()) {
    auto it = values.find(out.name());
    if (it == values.end())
      fail("graph output '" + out.name() + "' is never computed");
    results.push_back(it->second);
    // The declared shape says whether the leading dim is the batch; without
    // one, a leading dim left dynamic by inference is. No batched input, no
    // batched output.
    const auto &tt = out.type().tensor_type();
    auto t = cast<RankedTensorType>(it->second.getType());
    bool leadingDynamic = tt.has_shape()
                              ? tt.shape().dim_size() > 0 && !tt.shape().dim(0).has_dim_value()
                              : t.getRank() > 0 && t.isDynamicDim(0);
    batched.push_back(leadingDynamic && llvm::is_contained(batchedInputs, true));
  }
  func::ReturnOp::create(builder, func.getLoc(), results);
  func.setType(builder.getFunctionType(body->getArgumentTypes(), ValueRange(results).getTypes()));
  for (auto [i, out] : llvm::enumerate(graph.output())) {
    func.setResultAttr(i, "kiln.name", builder.getStringAttr(out.name()));
    if (batched[i])
      func.setResultAttr(i, "kiln.batched", builder.getUnitAttr());
  }
}

OwningOpRef<ModuleOp> Importer::run() {
  ctx.loadDialect<KilnDialect, func::FuncDialect>();
  for (const auto &o : model.opset_import())
    if (o.domain().empty() || o.domain() == "ai.onnx")
      opset = o.version();
  Location fileLoc = FileLineColLoc::get(&ctx, path, 0, 0);
  OwningOpRef<ModuleOp> module = ModuleOp::create(fileLoc);
  module->getOperation()->setAttr("kiln.opset", builder.getI64IntegerAttr(opset));
  builder.setInsertionPointToEnd(module->getBody());
  auto func = func::FuncOp::create(builder, fileLoc, "main", builder.getFunctionType({}, {}));
  try {
    if (opset == 0)
      fail("the model imports no default-domain opset");
    importGraph(func);
  } catch (ImportError &e) {
    emitError(fileLoc) << e.message;
    return nullptr;
  }
  return module;
}

} // namespace

FailureOr<onnx::ModelProto> readOnnxModel(MLIRContext &context, const std::string &path) {
  Location loc = FileLineColLoc::get(&context, path, 0, 0);
  std::ifstream file(path, std::ios::binary);
  if (!file)
    return emitError(loc) << "cannot open the model file";
  onnx::ModelProto model;
  if (llvm::StringRef(path).ends_with(".onnxtxt")) {
    std::stringstream text;
    text << file.rdbuf();
    auto status = onnx::OnnxParser::Parse(model, text.str().c_str());
    if (!status.IsOK())
      return emitError(loc) << "not valid ONNX text: " << status.ErrorMessage();
  } else if (!model.ParseFromIstream(&file)) {
    return emitError(loc) << "not a valid ONNX model (protobuf parse failed)";
  }
  if (!model.has_graph())
    return emitError(loc) << "the model has no graph";
  return model;
}

LogicalResult freezeInput(MLIRContext &context, onnx::ModelProto &model, const std::string &name,
                          const std::string &path) {
  Location loc = FileLineColLoc::get(&context, path, 0, 0);
  const auto &inputs = model.graph().input();
  auto input = llvm::find_if(inputs, [&](const auto &i) { return i.name() == name; });
  if (input == inputs.end())
    return emitError(loc) << "--freeze: the model has no input '" << name << "'";
  std::ifstream file(path, std::ios::binary);
  onnx::TensorProto tensor;
  if (!file || !tensor.ParseFromIstream(&file))
    return emitError(loc) << "--freeze: not a readable ONNX TensorProto";
  if (input->type().tensor_type().elem_type() != tensor.data_type())
    return emitError(loc) << "--freeze: the tensor's data type differs from input '" << name << "'";
  tensor.set_name(name);
  *model.mutable_graph()->add_initializer() = std::move(tensor);
  return success();
}

OwningOpRef<ModuleOp> importOnnxModel(MLIRContext &context, const onnx::ModelProto &model,
                                      const std::string &modelPath) {
  return Importer(context, model, modelPath).run();
}

} // namespace kiln
