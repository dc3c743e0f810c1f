//===- OnnxImporter.cpp - ONNX ModelProto -> kiln dialect -----------------===//
//
// A thin, faithful importer: it resolves ONNX's quirks once (opset-dependent
// operand/attribute forms, negative axes, defaults, 1-D matmul operands) so
// that every kiln op has a single meaning. Initialisers larger than a few
// hundred bytes become resource blobs, so weight bytes are held once; those
// stored as external data view a read-only map of their file (ExternalData).
// This file walks the graph and holds the node helpers; ops/ imports each op
// family (Importer.h).
//
//===----------------------------------------------------------------------===//

#include "OnnxImporter.h"

#include "Importer.h"

#include "kiln/checked.h"

#include "mlir/IR/DialectResourceBlobManager.h"

#include <onnx/defs/parser.h>

#include <cmath>
#include <fstream>
#include <sstream>

using namespace mlir;

namespace kiln {
namespace import {

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
  case TP::FLOAT16:
    return builder.getF16Type();
  case TP::BFLOAT16:
    return builder.getBF16Type();
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
  auto type = RankedTensorType::get(dims, element);
  if (!staticByteSize(type))
    fail("'" + info.name() + "' has dims whose product overflows 64 bits");
  return type;
}

} // namespace import

std::vector<char> tensorBytes(const onnx::TensorProto &t, size_t count, size_t width,
                              std::string &error) {
  using TP = onnx::TensorProto;
  // The data's size is checked against the dims' before anything is
  // allocated: declared dims need not be backed by data.
  std::optional<int64_t> need = checkedMul(int64_t(count), int64_t(width));
  if (!need) {
    error = "its byte size overflows 64 bits";
    return {};
  }
  std::vector<char> bytes;
  if (t.has_raw_data()) {
    if (t.raw_data().size() != uint64_t(*need)) {
      error = "raw_data holds " + std::to_string(t.raw_data().size()) + " bytes, the shape needs " +
              std::to_string(*need);
      return {};
    }
    return std::vector<char>(t.raw_data().begin(), t.raw_data().end());
  }
  auto fill = [&](const auto &field, auto convert) {
    if (size_t(field.size()) != count) {
      error = "holds " + std::to_string(field.size()) + " values, the shape needs " +
              std::to_string(count);
      return;
    }
    bytes.resize(*need);
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
  case TP::FLOAT16: // 16-bit floats: their bit patterns, one per int32
  case TP::BFLOAT16:
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

namespace import {

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
  const int64_t width = elementBytes(element);
  auto type = RankedTensorType::get(dims, element);
  std::optional<int64_t> sized = staticByteSize(type);
  if (!sized)
    fail(what + ": its dims' product overflows 64 bits");
  const uint64_t count = type.getNumElements(), bytes = *sized;
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

const onnx::AttributeProto *Importer::typedAttr(const std::string &name,
                                                onnx::AttributeProto::AttributeType type) {
  const auto *a = attr(name);
  // UNDEFINED: hand-made models of old IR versions leave the type out.
  if (a && a->type() != type && a->type() != onnx::AttributeProto::UNDEFINED)
    fail("attribute '" + name + "' is " + onnx::AttributeProto::AttributeType_Name(a->type()) +
         ", not the " + onnx::AttributeProto::AttributeType_Name(type) + " the op takes");
  return a;
}

int64_t Importer::intAttr(const std::string &name, int64_t fallback) {
  const auto *a = typedAttr(name, onnx::AttributeProto::INT);
  return a ? a->i() : fallback;
}

float Importer::floatAttr(const std::string &name, float fallback) {
  const auto *a = typedAttr(name, onnx::AttributeProto::FLOAT);
  return a ? a->f() : fallback;
}

std::optional<SmallVector<int64_t>> Importer::intsAttr(const std::string &name) {
  const auto *a = typedAttr(name, onnx::AttributeProto::INTS);
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

Value Importer::foldAsImported(Operation *op) {
  Value result = op->getResult(0);
  SmallVector<OpFoldResult> folded;
  if (op->getNumResults() != 1 || failed(op->fold(folded)) || folded.size() != 1)
    return result;
  Value value;
  if (auto attr = dyn_cast<Attribute>(folded[0])) {
    auto elements = dyn_cast<ElementsAttr>(attr);
    if (!elements || elements.getType() != result.getType())
      return result;
    value = ConstantOp::create(builder, op->getLoc(), elements);
  } else {
    value = cast<Value>(folded[0]);
    if (value == result || value.getType() != result.getType())
      return result; // folded in place, or to a value of a less precise type
  }
  op->erase();
  return value;
}

Value Importer::scalarLike(Value like, double value) {
  Type element = getElementTypeOrSelf(like);
  auto type = RankedTensorType::get({}, element);
  if (isa<FloatType>(element))
    return ConstantOp::create(
        builder, loc, DenseElementsAttr::get(type, builder.getFloatAttr(element, value)));
  if (!(value >= -0x1p63 && value < 0x1p63) || value != std::trunc(value))
    fail("a parameter of " + std::to_string(value) + " has no value of the integer input's type");
  return integerLike(like, int64_t(value)).value();
}

std::optional<Value> Importer::integerLike(Value like, int64_t value) {
  auto element = dyn_cast<IntegerType>(getElementTypeOrSelf(like));
  if (!element)
    return std::nullopt;
  const unsigned width = element.getWidth();
  const bool fits = width >= 64 || (element.isUnsigned() ? value >= 0 && value >> width == 0
                                                         : value >= -(int64_t(1) << (width - 1)) &&
                                                               value < (int64_t(1) << (width - 1)));
  if (!fits)
    return std::nullopt;
  auto type = RankedTensorType::get({}, element);
  return ConstantOp::create(builder, loc,
                            DenseElementsAttr::get(type, builder.getIntegerAttr(element, value)));
}

bool Importer::isUsed(const std::string &name) const {
  const onnx::GraphProto &graph = model.graph();
  for (const auto &n : graph.node())
    if (llvm::is_contained(n.input(), name))
      return true;
  return llvm::any_of(graph.output(), [&](const auto &o) { return o.name() == name; });
}

void Importer::define(int output, Value value) {
  if (output >= node->output_size() || node->output(output).empty())
    return;
  if (!values.try_emplace(node->output(output), value).second)
    fail("output '" + node->output(output) +
         "' is already defined (by a graph input, an initialiser or an earlier node): an ONNX "
         "graph assigns each value once");
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
      !importFunctionActivations(n, op) && !importLosses(n, op) &&
      !importAttention(n, op) &&
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
  llvm::StringSet<> outputNames;
  for (const auto &out : graph.output()) {
    if (!outputNames.insert(out.name()).second)
      fail("graph output '" + out.name() + "' is listed twice");
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

} // namespace import

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
  return import::Importer(context, model, modelPath).run();
}

} // namespace kiln
