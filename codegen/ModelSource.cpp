//===- ModelSource.cpp - planned kiln IR -> C++ or CUDA model source ------===//
//
// A translation, not a pass: every decision (shapes, buffer offsets, which op
// runs) has been made in the IR; this file spells each op as one kernel call
// with its static shapes and pointers into the arena or the weights. Both
// targets' kernels take the same arguments (runtime/kernels/cpu/kernels.h,
// runtime/kernels/cuda/kernels.cuh); the generated source names them through
// the alias `kernels`, and only the spelling of element functions and fused
// loops, and the descriptor, differ between the two.
//
//===----------------------------------------------------------------------===//

#include "ModelSource.h"

#include "compiler/transforms/Passes.h"
#include "dialects/KilnOps.h"

#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/DialectResourceBlobManager.h"
#include "llvm/ADT/StringSwitch.h"
#include "llvm/ADT/TypeSwitch.h"

#include <cmath>

using namespace mlir;

namespace kiln {

CpuIsa cpuIsaNamed(StringRef name) {
  return llvm::StringSwitch<CpuIsa>(name)
      .Case("avx512", CpuIsa::Avx512)
      .Case("avx512-vnni", CpuIsa::Avx512Vnni)
      .Case("avx512-bf16", CpuIsa::Avx512Bf16)
      .Default(CpuIsa::Avx2);
}

namespace {

/// The element types generated code handles: C++ type and kiln_dtype code
/// (kiln/runtime.h).
struct ElementInfo {
  const char *cType;
  int dtype;
};

std::optional<ElementInfo> elementInfo(Type t) {
  if (t.isF32())
    return ElementInfo{"float", 1};
  if (t.isF64())
    return ElementInfo{"double", 2};
  if (t.isInteger(1))
    return ElementInfo{"bool", 7};
  if (t.isF16())
    return ElementInfo{"kernels::Half", 12};
  if (t.isBF16())
    return ElementInfo{"kernels::BFloat16", 13};
  if (isa<Float8E4M3FNType>(t)) // CUDA dense weights only
    return ElementInfo{"uint8_t", 0};
  auto i = dyn_cast<IntegerType>(t);
  if (!i)
    return std::nullopt;
  bool u = i.isUnsigned();
  switch (i.getWidth()) {
  case 8:
    return u ? ElementInfo{"uint8_t", 6} : ElementInfo{"int8_t", 5};
  case 16:
    return u ? ElementInfo{"uint16_t", 9} : ElementInfo{"int16_t", 8};
  case 32:
    return u ? ElementInfo{"uint32_t", 10} : ElementInfo{"int32_t", 4};
  case 64:
    return u ? ElementInfo{"uint64_t", 11} : ElementInfo{"int64_t", 3};
  }
  return std::nullopt;
}

std::string cType(Type t) {
  auto info = elementInfo(t);
  return info ? info->cType : "";
}

int dtypeCode(Type t) {
  auto info = elementInfo(t);
  return info ? info->dtype : 0;
}

std::string cString(StringRef s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (c < 32 || c >= 127) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\%03o", c);
      out += buf;
    } else {
      out += c;
    }
  }
  return out + "\"";
}

/// The descriptor's target string and ISA bits of a CPU model.
std::string cpuTarget(CpuIsa cpu) {
  std::string name = "\"x86_64-avx2-fma-f16c",
              bits = "KILN_ISA_AVX2 | KILN_ISA_FMA | KILN_ISA_F16C";
  if (cpu >= CpuIsa::Avx512) {
    name += "-avx512";
    bits += " | KILN_ISA_AVX512";
  }
  if (cpu >= CpuIsa::Avx512Vnni) {
    name += cpu >= CpuIsa::Avx512Bf16 ? "vnni-bf16" : "vnni";
    bits += " | KILN_ISA_AVX512_VNNI";
  }
  if (cpu >= CpuIsa::Avx512Bf16)
    bits += " | KILN_ISA_AVX512_BF16";
  return name + "\",\n    " + bits;
}

std::string list(ArrayRef<int64_t> values) {
  std::string s;
  llvm::raw_string_ostream os(s);
  llvm::interleaveComma(values, os);
  return s;
}

int64_t product(ArrayRef<int64_t> dims) {
  int64_t p = 1;
  for (int64_t d : dims)
    p *= d;
  return p;
}

/// "outer, size, inner": a shape seen as [before axis, axis, after axis].
std::string around(ArrayRef<int64_t> dims, int64_t axis) {
  return std::to_string(product(dims.take_front(axis))) + ", " + std::to_string(dims[axis]) + ", " +
         std::to_string(product(dims.drop_front(axis + 1)));
}

/// A C++ expression of type `type` for `v`, infinities and NaN included.
std::string numberLiteral(double v, const std::string &type) {
  // Through float's limits: the 16-bit types have no numeric_limits.
  if (std::isnan(v))
    return type + "(std::numeric_limits<float>::quiet_NaN())";
  if (std::isinf(v))
    return type + "(" + (v < 0 ? "-" : "") + "std::numeric_limits<float>::infinity())";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return type + "(" + buf + ")";
}

class Emitter {
public:
  Emitter(raw_ostream &os, WeightImage &weights, bool profile, bool device, bool bf16Inputs)
      : os(os), weights(weights), profile(profile), device(device), bf16Inputs(bf16Inputs) {}

  LogicalResult emitFunction(func::FuncOp func);
  /// The constants a CUDA model keeps in host memory (`kiln.on_host`), which
  /// the generated code reads at exec->hostWeights + offset.
  WeightImage &hostWeightImage() { return hostWeights; }
  /// The largest input of a CUDA dense layer with 16- or 8-bit weights, in
  /// bytes at that width (it is converted before cuBLASLt).
  int64_t operandScratchBytes() const { return operandScratch; }
  /// The bytes the uploaded weights would take with 16-bit and fp8 ones at
  /// f32.
  uint64_t f32WeightsBytes() const { return f32Layout; }

private:
  LogicalResult emitOp(Operation *op);
  LogicalResult emitFused(FusedElementwiseOp f);
  /// `v`'s address as a pointer to its element type, or to `as`.
  std::string ptr(Value v, std::string as = "");
  std::string dimsArray(ArrayRef<int64_t> dims, StringRef name);
  std::string shape(Value v, StringRef name);
  std::string elt(Value v) { return cType(getElementTypeOrSelf(v)); }
  /// Where `attr` is in the weights, or in the host tables.
  int64_t weightOffset(ElementsAttr attr, bool host);
  /// Whether `v` is a table the device code reads from host memory.
  bool onHost(Value v) const {
    auto c = v.getDefiningOp<ConstantOp>();
    return device && c && c->hasAttr("kiln.on_host");
  }
  /// The opening of an element function: device code's lambdas are marked,
  /// except inside a fused loop's body, which is device code already.
  std::string lambda() const { return device && !capture ? "[] __device__ (" : "[]("; }
  /// The failure branch of a checked kernel call; a device kernel reports
  /// through the session's error word, so the message is registered first.
  std::string failBranch(const std::string &what) {
    if (device)
      os << "    exec->reason = " << cString(what) << ";\n";
    return "      return kernels::fail(message, message_size, " + cString(what) + ");\n";
  }

  raw_ostream &os;
  WeightImage &weights;
  WeightImage hostWeights;
  DenseMap<Attribute, int64_t> weightOffsets, hostWeightOffsets;
  int64_t operandScratch = 0;
  uint64_t f32Layout = 0;
  /// Set while the constants an f32 build would not have are placed (fp8
  /// weight scales), which f32Layout then leaves out.
  bool notInF32Model = false;
  bool profile;
  /// CUDA (kernels.cuh) rather than CPU code.
  bool device;
  bool bf16Inputs; // ModelInfo::bf16Inputs
  std::string functionName, nodeName;
  /// Set while a fused loop's body is emitted: emitOp then stores the op's
  /// element function here instead of emitting a kernel call.
  std::string *capture = nullptr;
};

int64_t Emitter::weightOffset(ElementsAttr attr, bool host) {
  WeightImage &image = host ? hostWeights : weights;
  DenseMap<Attribute, int64_t> &offsets = host ? hostWeightOffsets : weightOffsets;
  auto it = offsets.find(attr);
  if (it != offsets.end())
    return it->second;
  std::vector<char> storage;
  ArrayRef<char> bytes = constantData(attr, storage);
  const int64_t offset = storage.empty() ? image.appendView(bytes)
                                         : image.appendOwned(std::move(storage));
  offsets[attr] = offset;
  if (!host && !notInF32Model) {
    Type element = attr.getElementType();
    const size_t widen = element.isF16() || element.isBF16() ? 2
                         : isa<Float8E4M3FNType>(element)    ? 4
                                                             : 1;
    f32Layout = llvm::alignTo(f32Layout, kWeightAlignment) + bytes.size() * widen;
  }
  return offset;
}

std::string Emitter::ptr(Value v, std::string as) {
  std::string t = as.empty() ? elt(v) : as;
  if (auto c = v.getDefiningOp<ConstantOp>()) {
    const bool host = onHost(v);
    return "reinterpret_cast<const " + t + " *>(" + (host ? "exec->hostWeights" : "W") + " + " +
           std::to_string(weightOffset(c.getValue(), host)) + ")";
  }
  IntegerAttr offset;
  if (auto arg = dyn_cast<BlockArgument>(v))
    offset = cast<func::FuncOp>(arg.getOwner()->getParentOp())
                 .getArgAttrOfType<IntegerAttr>(arg.getArgNumber(), "kiln.arena_offset");
  else
    offset = v.getDefiningOp()->getAttrOfType<IntegerAttr>("kiln.arena_offset");
  return "reinterpret_cast<" + t + " *>(A + " + std::to_string(offset.getInt()) + ")";
}

/// Declares `name` as a constant array of `dims`; returns the expression
/// (nullptr for no dims).
std::string Emitter::dimsArray(ArrayRef<int64_t> dims, StringRef name) {
  if (dims.empty())
    return "nullptr";
  os << "    static constexpr int64_t " << name << "[] = {" << list(dims) << "};\n";
  return name.str();
}

/// Declares `name` as the static shape of `v`; returns the expression.
std::string Emitter::shape(Value v, StringRef name) {
  return dimsArray(cast<RankedTensorType>(v.getType()).getShape(), name);
}

/// The row stride the planner gave `op`'s result (`kiln.row_stride`, set
/// when it is written into a concat's buffer), else `dense`.
static int64_t rowStride(Operation *op, int64_t dense) {
  auto stride = op->getAttrOfType<IntegerAttr>("kiln.row_stride");
  return stride ? stride.getInt() : dense;
}

LogicalResult Emitter::emitOp(Operation *op) {
  if (isa<ConstantOp>(op) || isReshapeLike(op) || op->hasAttr("kiln.alias"))
    return success(); // no code: a view the planner placed over its source
  if (capture && (!isElementwise(op) || isa<FusedElementwiseOp>(op)))
    return op->emitError("not a scalar elementwise op");
  if (!isa<EmbeddingBagsOp>(op) &&
      llvm::any_of(op->getOperands(), [&](Value v) { return onHost(v); }))
    return op->emitError("reads a table kept in host memory (kiln.on_host); only "
                         "kiln.embedding_bags pools from host memory");
  if (!capture) { // a fused loop's body ops keep the loop's node name
    nodeName = "op";
    if (auto name = dyn_cast<NameLoc>(op->getLoc()))
      nodeName = name.getName().str();
    os << "  { // " << op->getName().getStringRef() << " '" << nodeName << "'\n";
  }
  if (profile && !capture)
    os << "    static const int site = kiln::cpu::profile::site(" << cString(functionName) << ", "
       << cString(nodeName) << ", " << cString(op->getName().getStringRef()) << ");\n"
       << "    kiln::cpu::profile::Scope timer(site);\n";
  Value out = op->getNumResults() ? op->getResult(0) : Value();
  auto outType = out ? cast<RankedTensorType>(out.getType()) : RankedTensorType();
  std::string T = out ? elt(out) : "";
  int64_t n = outType ? outType.getNumElements() : 0;
  auto rank = [](Value v) { return std::to_string(cast<RankedTensorType>(v.getType()).getRank()); };

  // `x` and `y` are the operands' elements, of type In. (In capture mode
  // the element function is kept instead of emitting a kernel call.)
  auto binary = [&](StringRef expr) {
    Value l = op->getOperand(0), r = op->getOperand(1);
    std::string In = elt(l);
    std::string fn = lambda() + In + " x, " + In + " y) { return " + T + "(" + expr.str() + "); }";
    if (capture) {
      *capture = fn;
      return;
    }
    std::string ls = shape(l, "ls"), rs = shape(r, "rs"), outShape = shape(out, "os");
    os << "    kernels::binary<" << In << ", " << T << ">(" << ptr(l) << ", " << ls << ", "
       << rank(l) << ", " << ptr(r) << ", " << rs << ", " << rank(r) << ", " << ptr(out) << ", "
       << outShape << ", " << rank(out) << ", " << fn << ", " << rowStride(op, 0) << ", exec);\n";
  };
  // `x` is the element; `alpha` and `beta` the op's parameters, if any.
  auto unary = [&](StringRef expr) {
    std::string params;
    if (auto alpha = op->getAttrOfType<FloatAttr>("alpha"))
      params =
          "const " + T + " alpha = " + numberLiteral(alpha.getValueAsDouble(), T) + "; const " + T +
          " beta = " + numberLiteral(op->getAttrOfType<FloatAttr>("beta").getValueAsDouble(), T) +
          "; (void)alpha; (void)beta; ";
    std::string fn = lambda() + elt(op->getOperand(0)) + " x) { " + params + "return " + T + "(" +
                     expr.str() + "); }";
    if (capture) {
      *capture = fn;
      return;
    }
    os << "    kernels::unary(" << ptr(op->getOperand(0)) << ", " << ptr(out) << ", " << n << ", "
       << fn << ", exec);\n";
  };
  // f32 ops with a vectorised kernel (`call` taking in, out, n), others `expr`.
  auto vectorUnary = [&](StringRef call, StringRef expr) {
    if (T != "float" || capture || device)
      return unary(expr);
    os << "    kernels::inBlocks(" << n << ", exec, [&](int64_t b, int64_t e) { " << call << "("
       << ptr(op->getOperand(0)) << " + b, " << ptr(out) << " + b, e - b); });\n";
  };
  auto activation = [&](StringRef name, StringRef expr) {
    if (T != "float" || capture || device)
      return unary(expr);
    os << "    kernels::inBlocks(" << n << ", exec, [&](int64_t b, int64_t e) { "
       << "kernels::activate(" << ptr(op->getOperand(0)) << " + b, " << ptr(out)
       << " + b, e - b, kernels::Activation::" << name << "); });\n";
  };
  auto reduce = [&](Value input, ArrayRef<int64_t> axes, StringRef init, StringRef combine,
                    bool mean) {
    auto in = cast<RankedTensorType>(input.getType());
    SmallVector<int64_t> flags;
    for (int64_t d = 0; d < in.getRank(); ++d)
      flags.push_back(llvm::is_contained(axes, d));
    std::string is = shape(input, "is");
    os << "    static constexpr bool reduced[] = {" << list(flags) << "};\n"
       << "    kernels::reduce<" << T << ">(" << ptr(input) << ", " << is << ", reduced, "
       << in.getRank() << ", " << ptr(out) << ", " << init << ", " << lambda() << T << " a, " << T
       << " b) { return " << T << "(" << combine << "); }, " << (mean ? "true" : "false")
       << ", exec);\n";
  };
  // The identities of max and min: infinities for floats (an empty max is -inf).
  bool isFloat = outType && isa<FloatType>(outType.getElementType());
  std::string limits = "std::numeric_limits<" + T + ">::";
  std::string lowest = isFloat ? "-" + limits + "infinity()" : limits + "lowest()";
  std::string highest = isFloat ? limits + "infinity()" : limits + "max()";

  LogicalResult result =
      TypeSwitch<Operation *, LogicalResult>(op)
          .Case([&](AddOp) {
            binary("x + y");
            return success();
          })
          .Case([&](SubOp) {
            binary("x - y");
            return success();
          })
          .Case([&](MulOp) {
            binary("x * y");
            return success();
          })
          .Case([&](DivOp) {
            binary(isa<FloatType>(outType.getElementType()) ? "x / y" : "kernels::divide(x, y)");
            return success();
          })
          .Case([&](MaxOp) {
            binary("x > y ? x : y");
            return success();
          })
          .Case([&](MinOp) {
            binary("x < y ? x : y");
            return success();
          })
          .Case([&](PowOp) {
            binary("std::pow(x, y)");
            return success();
          })
          .Case([&](ModOp) {
            binary("kernels::mod(x, y)");
            return success();
          })
          .Case([&](PReluOp) {
            binary("x < 0 ? x * y : x");
            return success();
          })
          .Case([&](AndOp) {
            binary("x && y");
            return success();
          })
          .Case([&](OrOp) {
            binary("x || y");
            return success();
          })
          .Case([&](XorOp) {
            binary("x != y");
            return success();
          })
          .Case([&](EqualOp) {
            binary("x == y");
            return success();
          })
          .Case([&](LessOp) {
            binary("x < y");
            return success();
          })
          .Case([&](LessEqualOp) {
            binary("x <= y");
            return success();
          })
          .Case([&](GreaterOp) {
            binary("x > y");
            return success();
          })
          .Case([&](GreaterEqualOp) {
            binary("x >= y");
            return success();
          })
          .Case([&](ReluOp) {
            unary("x > 0 ? x : 0");
            return success();
          })
          .Case([&](FloorOp) {
            unary("std::floor(x)");
            return success();
          })
          .Case([&](CeilOp) {
            unary("std::ceil(x)");
            return success();
          })
          .Case([&](RoundOp) {
            unary("std::nearbyint(x)");
            return success();
          })
          .Case([&](ReciprocalOp) {
            unary("1 / x");
            return success();
          })
          .Case([&](SinOp) {
            unary("std::sin(x)");
            return success();
          })
          .Case([&](CosOp) {
            unary("std::cos(x)");
            return success();
          })
          .Case([&](TanOp) {
            unary("std::tan(x)");
            return success();
          })
          .Case([&](AsinOp) {
            unary("std::asin(x)");
            return success();
          })
          .Case([&](AcosOp) {
            unary("std::acos(x)");
            return success();
          })
          .Case([&](AtanOp) {
            unary("std::atan(x)");
            return success();
          })
          .Case([&](SinhOp) {
            unary("std::sinh(x)");
            return success();
          })
          .Case([&](CoshOp) {
            unary("std::cosh(x)");
            return success();
          })
          .Case([&](AsinhOp) {
            unary("std::asinh(x)");
            return success();
          })
          .Case([&](AcoshOp) {
            unary("std::acosh(x)");
            return success();
          })
          .Case([&](AtanhOp) {
            unary("std::atanh(x)");
            return success();
          })
          .Case([&](IsNaNOp) {
            unary("std::isnan(x)");
            return success();
          })
          .Case([&](IsInfOp i) {
            unary(std::string("std::isinf(x) && ") +
                  (i.getPositive() && i.getNegative() ? "true"
                   : i.getPositive()                  ? "x > 0"
                   : i.getNegative()                  ? "x < 0"
                                                      : "false"));
            return success();
          })
          .Case([&](BitNotOp) {
            unary("~x");
            return success();
          })
          .Case([&](BitAndOp) {
            binary("x & y");
            return success();
          })
          .Case([&](BitOrOp) {
            binary("x | y");
            return success();
          })
          .Case([&](BitXorOp) {
            binary("x ^ y");
            return success();
          })
          .Case([&](ShiftLeftOp) {
            binary("kernels::shiftLeft(x, y)");
            return success();
          })
          .Case([&](ShiftRightOp) {
            binary("kernels::shiftRight(x, y)");
            return success();
          })
          .Case([&](SoftplusOp) {
            unary("std::log1p(std::exp(x))");
            return success();
          })
          .Case([&](SoftsignOp) {
            unary("x / (1 + std::fabs(x))");
            return success();
          })
          .Case([&](SignOp) {
            unary("(x > 0) - (x < 0)");
            return success();
          })
          .Case([&](NotOp) {
            unary("!x");
            return success();
          })
          .Case([&](LeakyReluOp) {
            unary("x < 0 ? alpha * x : x");
            return success();
          })
          .Case([&](EluOp) {
            unary("x < 0 ? alpha * (std::exp(x) - 1) : x");
            return success();
          })
          .Case([&](HardSigmoidOp) {
            unary("std::max(" + T + "(0), std::min(" + T + "(1), alpha * x + beta))");
            return success();
          })
          .Case([&](ClipOp) {
            unary("std::min(std::max(x, alpha), beta)");
            return success();
          })
          .Case([&](GeluOp g) {
            activation(g.getAlpha().convertToDouble() != 0 ? "GeluTanh" : "GeluErf",
                       "kernels::gelu(x, alpha != 0)");
            return success();
          })
          .Case([&](WhereOp w) {
            std::string cs = shape(w.getCond(), "cs"), xs = shape(w.getX(), "xs"),
                        ys = shape(w.getY(), "ys"), o = shape(out, "os");
            os << "    kernels::select<" << T << ">(" << ptr(w.getCond()) << ", " << cs << ", "
               << rank(w.getCond()) << ", " << ptr(w.getX()) << ", " << xs << ", " << rank(w.getX())
               << ", " << ptr(w.getY()) << ", " << ys << ", " << rank(w.getY()) << ", " << ptr(out)
               << ", " << o << ", " << rank(out) << ", exec);\n";
            return success();
          })
          .Case([&](ExpandOp e) {
            std::string is = shape(e.getInput(), "is"), o = shape(out, "os");
            os << "    kernels::broadcastTo<" << T << ">(" << ptr(e.getInput()) << ", " << is
               << ", " << rank(e.getInput()) << ", " << o << ", " << rank(out) << ", " << ptr(out)
               << ", exec);\n";
            return success();
          })
          .Case([&](LayerNormOp l) {
            int64_t axis = l.getAxis();
            auto dims = outType.getShape();
            auto size = [](Value v) {
              return cast<RankedTensorType>(v.getType()).getNumElements();
            };
            os << "    kernels::layerNorm<" << T << ">(" << ptr(l.getInput()) << ", "
               << ptr(l.getScale()) << ", " << size(l.getScale()) << ", "
               << (l.getBias() ? ptr(l.getBias()) : "nullptr") << ", "
               << (l.getBias() ? size(l.getBias()) : 0) << ", " << ptr(out) << ", "
               << product(dims.take_front(axis)) << ", " << product(dims.drop_front(axis)) << ", "
               << numberLiteral(l.getEpsilon().convertToDouble(), "double") << ", "
               << (l.getRms() ? "true" : "false") << ", exec);\n";
            return success();
          })
          .Case([&](FusedElementwiseOp f) { return emitFused(f); })
          .Case([&](InteractionOp i) {
            auto in = i.getInput().getType();
            int64_t count = outType.getDimSize(1);
            os << "    static constexpr int64_t pairs[] = {" << list(i.getPairs()) << "};\n"
               << "    kernels::interaction(" << ptr(i.getInput()) << ", " << in.getDimSize(0)
               << ", " << in.getDimSize(1) << ", " << in.getDimSize(2) << ", pairs, " << count
               << ", " << ptr(out) << ", " << rowStride(i, count) << ", exec);\n";
            return success();
          })
          .Case([&](EmbeddingBagsOp e) {
            auto ids = e.getIds().getType();
            std::string fail = failBranch("embedding_bags '" + nodeName + "': index out of range");
            os << "    static constexpr int64_t columns[] = {" << list(e.getColumns()) << "};\n"
               << "    const kernels::BagTable<" << T << "> tables[] = {\n";
            for (auto [table, hotness] : llvm::zip(e.getTables(), e.getHotness())) {
              auto type = cast<RankedTensorType>(table.getType());
              if (e.getBits() == 32)
                os << "        {" << ptr(table) << ", " << type.getDimSize(0) << ", "
                   << type.getDimSize(1) << ", " << hotness
                   << (onHost(table) ? ", nullptr, 0, true" : "") << "},\n";
              else // row-wise quantised: the rows in place of data
                os << "        {nullptr, " << type.getDimSize(0) << ", " << e.getTableDim(type)
                   << ", " << hotness << ", " << ptr(table) << ", " << e.getBits() << "},\n";
            }
            os << "    };\n"
               << "    if (!kernels::embeddingBags<" << T << ", " << elt(e.getIds()) << ">("
               << ptr(e.getIds()) << ", " << ids.getDimSize(0) << ", "
               << ids.getNumElements() / std::max<int64_t>(ids.getDimSize(0), 1) << ", tables, "
               << e.getTables().size() << ", columns, " << e.getMode() << ", "
               << (e.getWrapNegative() ? "true" : "false") << ", " << ptr(out) << ", "
               << rowStride(e, outType.getDimSize(1)) << ", exec))\n"
               << fail;
            return success();
          })
          .Case([&](EmbeddingBagOp e) {
            auto table = e.getTable().getType();
            std::string fail =
                failBranch("embedding_bag '" + nodeName + "': index or offset out of range");
            os << "    if (!kernels::embeddingBag<" << T << ", " << elt(e.getIndices()) << ">("
               << ptr(e.getTable()) << ", " << table.getDimSize(0) << ", " << table.getDimSize(1)
               << ", " << ptr(e.getIndices()) << ", " << e.getIndices().getType().getNumElements()
               << ", " << ptr(e.getBegin()) << ", " << ptr(e.getEnd()) << ", "
               << outType.getDimSize(0) << ", "
               << (e.getWeights() ? ptr(e.getWeights()) : "nullptr") << ", " << e.getMode() << ", "
               << (e.getWrapNegative() ? "true" : "false") << ", " << ptr(out) << ", "
               << rowStride(e, table.getDimSize(1)) << ", exec))\n"
               << fail;
            return success();
          })
          .Case([&](SigmoidOp) {
            activation("Sigmoid", "kernels::sigmoid(x)");
            return success();
          })
          .Case([&](TanhOp) {
            activation("Tanh", "std::tanh(x)");
            return success();
          })
          .Case([&](ExpOp) {
            vectorUnary("kernels::exp", "std::exp(x)");
            return success();
          })
          .Case([&](LogOp) {
            unary("std::log(x)");
            return success();
          })
          .Case([&](SqrtOp) {
            unary("std::sqrt(x)");
            return success();
          })
          .Case([&](ErfOp) {
            vectorUnary("kernels::erf", "std::erf(x)");
            return success();
          })
          .Case([&](NegOp) {
            unary("-x");
            return success();
          })
          .Case([&](AbsOp) {
            unary("x < 0 ? -x : x");
            return success();
          })
          .Case([&](CopyOp c) {
            os << "    kernels::copy(" << ptr(out) << ", " << ptr(c.getInput()) << ", " << n
               << " * sizeof(" << T << "), exec);\n";
            return success();
          })
          .Case([&](CastOp c) {
            os << "    kernels::cast<" << elt(c.getInput()) << ", " << T << ">("
               << ptr(c.getInput()) << ", " << ptr(out) << ", " << n << ", exec);\n";
            return success();
          })
          .Case([&](GemmOp g) {
            auto a = g.getA().getType();
            int64_t m = outType.getDimSize(0), nn = outType.getDimSize(1);
            int64_t k = a.getDimSize(g.getTransA() ? 0 : 1);
            std::string c = "nullptr";
            int64_t cRows = 0, cCols = 0;
            if (Value cv = g.getC()) {
              auto ct = cast<RankedTensorType>(cv.getType());
              c = ptr(cv);
              cRows = ct.getRank() == 2 ? ct.getDimSize(0) : 1;
              cCols = ct.getRank() >= 1 ? ct.getShape().back() : 1;
            }
            os << "    kernels::gemm<" << T << ">(" << ptr(g.getA()) << ", " << ptr(g.getB())
               << ", " << c << ", " << cRows << ", " << cCols << ", " << ptr(out) << ", " << m
               << ", " << nn << ", " << k << ", " << (g.getTransA() ? "true" : "false") << ", "
               << (g.getTransB() ? "true" : "false") << ", "
               << numberLiteral(g.getAlpha().convertToDouble(), T) << ", "
               << numberLiteral(g.getBeta().convertToDouble(), T) << ", exec);\n";
            return success();
          })
          .Case([&](DenseOp d) {
            if (device && (d.isPacked() || d.isInt8()))
              return d.emitOpError("the CUDA target takes unpacked f32, 16-bit or fp8 weights "
                                   "(kiln.dense is packed or int8)"),
                     failure();
            if (!device && !d.isPacked() && !d.isFp8())
              return d.emitOpError("weight is not packed (run kiln-pack-weights)"), failure();
            int64_t k = d.getDepth(), units = d.getUnits();
            os << "    kernels::Epilogue ep;\n";
            if (Value b = d.getBias())
              os << "    ep.bias = " << ptr(b) << ";\n";
            if (Value m = d.getMultiplier())
              os << "    ep.multiplier = " << ptr(m) << ";\n";
            if (Value r = d.getResidual())
              os << "    ep.residual = " << ptr(r) << ";\n";
            if (d.getMultiplier() || d.getResidual())
              os << "    ep.stride = " << units << ";\n";
            os << "    ep.activation = kernels::Activation("
               << denseActivationCode(d.getActivation()) << ");\n";
            Type w = d.getWeight().getType().getElementType();
            // 16-bit weights as the bit patterns the kernels take.
            std::string weights =
                ptr(d.getWeight(), w.isF16() || w.isBF16() ? "uint16_t" : "");
            std::string inputScale; // fp8's, before the epilogue
            if (d.isInt8()) {
              os << "    const kernels::Int8Weights w{" << weights << ", "
                 << ptr(d.getWeightScale()) << ", " << ptr(d.getWeightSum());
              // The static input range, and the output range of a requantising layer.
              auto range = [&](std::optional<APFloat> scale, std::optional<int32_t> zeroPoint) {
                os << ", " << (scale ? numberLiteral(scale->convertToDouble(), "float") : "0")
                   << ", " << zeroPoint.value_or(0);
              };
              if (d.getInputScale() || d.getOutputScale())
                range(d.getInputScale(), d.getInputZeroPoint());
              if (d.getOutputScale())
                range(d.getOutputScale(), d.getOutputZeroPoint());
              os << "};\n";
              os << "    kernels::denseInt8(";
              weights = "w";
            } else if (d.isFp8()) { // scratch: kernels.cuh's fp8ScratchBytes
              const int64_t rows = llvm::alignTo(n / units, 16);
              operandScratch = std::max<int64_t>(
                  operandScratch, int64_t(llvm::alignTo(rows * k, 256)) + rows * units * 4);
              notInF32Model = true;
              weights += ", " + ptr(d.getWeightScale());
              notInF32Model = false;
              inputScale = numberLiteral(d.getInputScale()->convertToDouble(), "float") + ", ";
              os << "    kernels::denseFp8(";
            } else if (w.isF16() || w.isBF16()) {
              operandScratch = std::max<int64_t>(operandScratch, n / units * k * 2);
              os << "    kernels::denseHalf<kernels::HalfFormat::"
                 << (w.isF16()    ? "Fp16"
                     : bf16Inputs ? "Bf16Dot"
                                  : "Bf16")
                 << ">(";
            } else {
              os << "    kernels::dense(";
            }
            os << ptr(d.getInput()) << ", " << k << ", " << weights << ", " << k << ", " << units
               << ", " << ptr(out) << ", " << rowStride(d, units) << ", " << n / units << ", "
               << inputScale << "ep, exec);\n";
            return success();
          })
          .Case([&](AttentionOp a) {
            auto q = a.getQuery().getType(), k = a.getKey().getType();
            std::string mask = "nullptr", strides = "nullptr";
            if (Value m = a.getMask()) {
              // The mask's strides over [batch, heads, query, key].
              auto mt = cast<RankedTensorType>(m.getType());
              SmallVector<int64_t> full = {q.getDimSize(0), q.getDimSize(2), q.getDimSize(1),
                                           k.getDimSize(1)};
              SmallVector<int64_t> st(4, 0);
              int64_t stride = 1;
              for (int64_t d = 3, md = mt.getRank() - 1; d >= 0 && md >= 0; --d, --md) {
                st[d] = mt.getDimSize(md) == 1 && full[d] != 1 ? 0 : stride;
                stride *= mt.getDimSize(md);
              }
              mask = ptr(m);
              strides = dimsArray(st, "ms");
            }
            os << "    kernels::attention(" << ptr(a.getQuery()) << ", " << ptr(a.getKey()) << ", "
               << ptr(a.getValue()) << ", " << mask << ", " << strides << ", " << ptr(out) << ", "
               << q.getDimSize(0) << ", " << q.getDimSize(1) << ", " << k.getDimSize(1) << ", "
               << q.getDimSize(2) << ", " << q.getDimSize(3) << ", " << outType.getDimSize(3)
               << ", " << numberLiteral(a.getScale().convertToDouble(), "float") << ", exec);\n";
            return success();
          })
          .Case([&](MatMulOp mm) {
            auto l = mm.getLhs().getType(), r = mm.getRhs().getType();
            int64_t batchRank = outType.getRank() - 2;
            std::string lb = dimsArray(l.getShape().drop_back(2), "lb"),
                        rb = dimsArray(r.getShape().drop_back(2), "rb"),
                        ob = dimsArray(outType.getShape().drop_back(2), "ob");
            os << "    kernels::matmul<" << T << ">(" << ptr(mm.getLhs()) << ", " << lb << ", "
               << l.getRank() - 2 << ", " << ptr(mm.getRhs()) << ", " << rb << ", "
               << r.getRank() - 2 << ", " << ptr(out) << ", " << ob << ", " << batchRank << ", "
               << l.getDimSize(l.getRank() - 2) << ", " << r.getShape().back() << ", "
               << l.getShape().back() << ", exec);\n";
            return success();
          })
          .Case<SoftmaxOp, LogSoftmaxOp>([&](auto s) {
            os << "    kernels::softmax<" << T << ">(" << ptr(s.getInput()) << ", " << ptr(out)
               << ", " << around(outType.getShape(), s.getAxis()) << ", "
               << (isa<LogSoftmaxOp>(op) ? "true" : "false") << ", exec);\n";
            return success();
          })
          .Case<ArgMaxOp, ArgMinOp>([&](auto a) {
            auto in = a.getInput().getType();
            os << "    kernels::argExtreme<" << elt(a.getInput()) << ">(" << ptr(a.getInput())
               << ", " << ptr(out) << ", " << around(in.getShape(), a.getAxis()) << ", "
               << (isa<ArgMaxOp>(op) ? "true" : "false") << ", "
               << (a.getSelectLastIndex() ? "true" : "false") << ", exec);\n";
            return success();
          })
          .Case([&](CumSumOp c) {
            os << "    kernels::cumsum<" << T << ">(" << ptr(c.getInput()) << ", " << ptr(out)
               << ", " << around(outType.getShape(), c.getAxis()) << ", "
               << (c.getExclusive() ? "true" : "false") << ", "
               << (c.getReverse() ? "true" : "false") << ", exec);\n";
            return success();
          })
          .Case([&](TriluOp t) {
            auto dims = outType.getShape();
            int64_t rows = dims[dims.size() - 2], cols = dims.back();
            os << "    kernels::trilu<" << T << ">(" << ptr(t.getInput()) << ", " << ptr(out)
               << ", " << product(dims.drop_back(2)) << ", " << rows << ", " << cols << ", "
               << (t.getUpper() ? "true" : "false") << ", " << t.getK() << ", exec);\n";
            return success();
          })
          .Case([&](GatherElementsOp g) {
            std::string ds = shape(g.getData(), "ds"), is = shape(g.getIndices(), "is");
            std::string fail = failBranch("gather_elements '" + nodeName + "': index out of range");
            os << "    if (!kernels::gatherElements<" << T << ", " << elt(g.getIndices()) << ">("
               << ptr(g.getData()) << ", " << ds << ", " << ptr(g.getIndices()) << ", " << is
               << ", " << outType.getRank() << ", " << g.getAxis() << ", " << ptr(out)
               << ", exec))\n"
               << fail;
            return success();
          })
          .Case([&](GatherNDOp g) {
            auto data = g.getData().getType().getShape();
            auto idx = g.getIndices().getType().getShape();
            int64_t b = g.getBatchDims(), k = idx.back();
            std::string fail = failBranch("gather_nd '" + nodeName + "': index out of range");
            os << "    static constexpr int64_t dims[] = {" << list(data.slice(b, k)) << "};\n"
               << "    if (!kernels::gatherND<" << T << ", " << elt(g.getIndices()) << ">("
               << ptr(g.getData()) << ", dims, " << k << ", " << product(data.drop_front(b + k))
               << ", " << ptr(g.getIndices()) << ", " << product(data.take_front(b)) << ", "
               << product(idx.slice(b, idx.size() - b - 1)) << ", " << ptr(out) << ", exec))\n"
               << fail;
            return success();
          })
          .Case([&](PadOp p) {
            auto pads = p.getPads();
            std::string is = shape(p.getInput(), "is"), o = shape(out, "os");
            os << "    static constexpr int64_t begin[] = {"
               << list(pads.take_front(outType.getRank())) << "};\n"
               << "    kernels::pad<" << T << ">(" << ptr(p.getInput()) << ", " << is << ", begin, "
               << o << ", " << outType.getRank() << ", "
               << numberLiteral(p.getValue().convertToDouble(), T) << ", " << ptr(out)
               << ", exec);\n";
            return success();
          })
          .Case([&](TransposeOp t) {
            std::string in = shape(t.getInput(), "is");
            os << "    static constexpr int64_t perm[] = {" << list(t.getPerm()) << "};\n"
               << "    kernels::transpose<" << T << ">(" << ptr(t.getInput()) << ", " << in
               << ", perm, " << outType.getRank() << ", " << ptr(out) << ", exec);\n";
            return success();
          })
          .Case([&](ConcatOp c) {
            int64_t axis = c.getAxis();
            auto dims = outType.getShape();
            int64_t outer = product(dims.take_front(axis)), row = product(dims.drop_front(axis));
            auto inPlace = c->getAttrOfType<DenseBoolArrayAttr>("kiln.in_place");
            int64_t offset = 0;
            for (auto [i, in] : llvm::enumerate(c.getInputs())) {
              int64_t chunk =
                  product(cast<RankedTensorType>(in.getType()).getShape().drop_front(axis));
              if (!inPlace || !inPlace[i]) // else its producer wrote it there
                os << "    kernels::concatPart<" << T << ">(" << ptr(in) << ", " << ptr(out) << ", "
                   << outer << ", " << chunk << ", " << row << ", " << offset << ", exec);\n";
              offset += chunk;
            }
            return success();
          })
          .Case([&](GatherOp g) {
            auto data = g.getData().getType();
            int64_t axis = g.getAxis();
            std::string fail = failBranch("gather '" + nodeName + "': index out of range");
            os << "    if (!kernels::gather<" << T << ", " << elt(g.getIndices()) << ">("
               << ptr(g.getData()) << ", " << ptr(g.getIndices()) << ", " << ptr(out) << ", "
               << product(data.getShape().take_front(axis)) << ", " << data.getDimSize(axis) << ", "
               << g.getIndices().getType().getNumElements() << ", "
               << product(data.getShape().drop_front(axis + 1)) << ", "
               << rowStride(g, product(data.getShape().drop_front(axis + 1))) << ", exec))\n"
               << fail;
            return success();
          })
          .Case([&](SliceOp s) -> LogicalResult {
            auto ranges = getSliceRanges(s);
            if (!ranges)
              return s.emitError("slice bounds are not constant at code generation");
            SmallVector<int64_t> starts, steps;
            for (const SliceRange &r : *ranges) {
              starts.push_back(r.start);
              steps.push_back(r.step);
            }
            std::string in = shape(s.getInput(), "is"), o = shape(out, "os");
            os << "    static constexpr int64_t starts[] = {" << list(starts) << "};\n"
               << "    static constexpr int64_t steps[] = {" << list(steps) << "};\n"
               << "    kernels::slice<" << T << ">(" << ptr(s.getInput()) << ", " << in
               << ", starts, steps, " << o << ", " << outType.getRank() << ", " << ptr(out)
               << ", exec);\n";
            return success();
          })
          .Case([&](ReduceSumOp r) {
            reduce(r.getInput(), r.getAxes(), "0", "a + b", false);
            return success();
          })
          .Case([&](ReduceMeanOp r) {
            reduce(r.getInput(), r.getAxes(), "0", "a + b", true);
            return success();
          })
          .Case([&](ReduceProdOp r) {
            reduce(r.getInput(), r.getAxes(), "1", "a * b", false);
            return success();
          })
          .Case([&](ReduceMaxOp r) {
            reduce(r.getInput(), r.getAxes(), lowest, "a > b ? a : b", false);
            return success();
          })
          .Case([&](ReduceMinOp r) {
            reduce(r.getInput(), r.getAxes(), highest, "a < b ? a : b", false);
            return success();
          })
          .Default([&](Operation *other) {
            return other->emitError("'") << other->getName()
                                         << "' has no CPU kernel (it should have folded to a "
                                            "constant; is a shape still dynamic?)";
          });
  if (!capture)
    os << "  }\n";
  return result;
}

/// One loop over the result: each input's element (the only one for a
/// one-element input) goes through the body's element functions in order.
LogicalResult Emitter::emitFused(FusedElementwiseOp f) {
  Block &body = f.getBody().front();
  DenseMap<Value, std::string> names;
  std::string loop;
  llvm::raw_string_ostream code(loop);
  for (auto [i, in] : llvm::enumerate(f.getInputs())) {
    std::string name = "a" + std::to_string(i);
    names[body.getArgument(i)] = name;
    bool single = cast<RankedTensorType>(in.getType()).getNumElements() == 1;
    code << "        const " << elt(in) << " " << name << " = " << ptr(in) << "["
         << (single ? "0" : "i") << "];\n";
  }
  for (auto [j, op] : llvm::enumerate(body.without_terminator())) {
    std::string fn;
    capture = &fn;
    LogicalResult captured = emitOp(&op);
    capture = nullptr;
    if (failed(captured) || fn.empty())
      return op.emitError("has no element function for a fused loop");
    std::string name = "v" + std::to_string(j);
    code << "        const " << elt(op.getResult(0)) << " " << name << " = " << fn << "(";
    llvm::interleaveComma(op.getOperands(), code, [&](Value v) { code << names[v]; });
    code << ");\n";
    names[op.getResult(0)] = name;
  }
  Value result = body.getTerminator()->getOperand(0);
  std::string store = "        " + ptr(f.getResult()) + "[i] = " + names[result] + ";\n";
  if (device) // one thread per element
    os << "    kernels::forEach(" << f.getType().getNumElements()
       << ", exec, [=] __device__ (int64_t i) {\n"
       << loop << store << "    });\n";
  else
    os << "    kernels::inBlocks(" << f.getType().getNumElements()
       << ", exec, [&](int64_t b, int64_t e) {\n"
       << "      for (int64_t i = b; i < e; ++i) {\n"
       << loop << store << "      }\n    });\n";
  return success();
}

LogicalResult Emitter::emitFunction(func::FuncOp func) {
  for (Operation &op : func.getBody().front().without_terminator())
    if (op.getNumResults() && cType(getElementTypeOrSelf(op.getResult(0))).empty())
      return op.emitError("element type has no C++ representation");
  functionName = func.getSymName().str();
  os << "int " << func.getSymName() << "(uint8_t *A, const uint8_t *W, "
     << (device ? "kiln::cuda::Exec" : "const kiln_abi_exec") << " *exec, char *message, "
     << "size_t message_size) {\n"
     << "  (void)A; (void)W; (void)exec; (void)message; (void)message_size;\n";
  for (Operation &op : func.getBody().front().without_terminator())
    if (failed(emitOp(&op)))
      return failure();
  os << "  return 0;\n}\n\n";
  return success();
}

std::string tensorSpecs(func::FuncOp func, bool inputs, raw_ostream &os) {
  std::string prefix = inputs ? "input" : "output";
  unsigned count = inputs ? func.getNumArguments() : func.getNumResults();
  std::string table;
  llvm::raw_string_ostream t(table);
  for (unsigned i = 0; i < count; ++i) {
    auto type =
        cast<RankedTensorType>(inputs ? func.getArgumentTypes()[i] : func.getResultTypes()[i]);
    auto attr = [&](StringRef name) {
      return inputs ? func.getArgAttr(i, name) : func.getResultAttr(i, name);
    };
    bool batched = attr("kiln.batched") != nullptr;
    SmallVector<int64_t> dims(type.getShape());
    if (batched)
      dims[0] = -1;
    std::string shapeName = "kNone";
    if (!dims.empty()) {
      shapeName = prefix + std::to_string(i) + "_shape";
      os << "const int64_t " << shapeName << "[] = {" << list(dims) << "};\n";
    }
    auto name = dyn_cast_if_present<StringAttr>(attr("kiln.name"));
    std::string boundsName = "kNone";
    if (auto bounds = dyn_cast_if_present<DenseI64ArrayAttr>(attr("kiln.index_bounds"))) {
      boundsName = prefix + std::to_string(i) + "_bounds";
      // INT64_MIN has no literal; unbounded ends are written as expressions.
      os << "const int64_t " << boundsName << "[] = {";
      llvm::interleaveComma(bounds.asArrayRef(), os, [&](int64_t v) {
        if (v == std::numeric_limits<int64_t>::min())
          os << "INT64_MIN";
        else
          os << v;
      });
      os << "};\n";
    }
    t << "    {" << cString(name ? name.getValue() : prefix + std::to_string(i)) << ", "
      << dtypeCode(type.getElementType()) << ", " << type.getRank() << ", " << shapeName << ", "
      << (batched ? 1 : 0) << ", " << boundsName << "},\n";
  }
  return table;
}

} // namespace

LogicalResult emitModel(ModuleOp module, const ModelInfo &info, raw_ostream &os,
                        WeightImage &weights, uint64_t &weightsHash) {
  const bool device = info.cuda.has_value();
  if (device && info.profile)
    return module.emitError("--profile is not supported for --target cuda");
  SmallVector<func::FuncOp> funcs(module.getOps<func::FuncOp>());
  for (func::FuncOp f : funcs)
    if (!f->hasAttr("kiln.batch") || !f->hasAttr("kiln.arena_bytes"))
      return f.emitError("function is not specialised and planned");
  if (funcs.empty())
    return module.emitError("no bucket functions to emit");
  llvm::sort(funcs, [](func::FuncOp a, func::FuncOp b) {
    return a->getAttrOfType<IntegerAttr>("kiln.batch").getInt() <
           b->getAttrOfType<IntegerAttr>("kiln.batch").getInt();
  });

  // The entry points first (into `body`): the header needs the weights' size.
  std::string body;
  llvm::raw_string_ostream bodyStream(body);
  Emitter emitter(bodyStream, weights, info.profile, device, info.bf16Inputs);
  for (func::FuncOp f : funcs)
    if (failed(emitter.emitFunction(f)))
      return failure();
  // A CUDA model's host-memory tables are the last of its weights: it
  // uploads the others.
  const uint64_t hostBytes = emitter.hostWeightImage().size();
  uint64_t f32WeightsBytes = emitter.f32WeightsBytes();
  if (hostBytes) {
    weights.append(std::move(emitter.hostWeightImage()));
    f32WeightsBytes = llvm::alignTo(f32WeightsBytes, kWeightAlignment) + hostBytes;
  }
  // Weights in a file beside the .so are mapped by the runtime, which hands
  // the entry points their address; embedded ones are this section.
  const bool inFile = !info.weightsFile.empty();
  weightsHash = inFile ? weights.hash() : 0;

  os << "// Generated by kiln " << info.compilerVersion << ". Do not edit.\n"
     << "#include \"kiln/model_abi.h\"\n"
     << (device ? "#include \"session.cuh\"\nnamespace kernels = kiln::cuda;\n"
                : "#include \"kernels.h\"\nnamespace kernels = kiln::cpu;\n")
     << (info.profile ? "#include \"profile.h\"\n" : "") << "\n";
  if (!inFile)
    os << "extern \"C\" const uint8_t kiln_weights[];\n"
       << "__asm__(\".section .rodata.kiln_weights,\\\"a\\\",@progbits\\n\"\n"
       << "        \".balign 64\\n.hidden kiln_weights\\n.globl kiln_weights\\n"
          "kiln_weights:\\n\"\n"
       << "        \".incbin \\\"" << info.embeddedWeightsFile << "\\\"\\n"
       << ".byte 0\\n.previous\");\n";
  os << "\nnamespace {\n\n" << body;

  func::FuncOp first = funcs.front();
  os << "const int64_t *const kNone = nullptr;\n";
  std::string inputs = tensorSpecs(first, true, os);
  std::string outputs = tensorSpecs(first, false, os);
  os << "const kiln_abi_tensor kInputs[] = {\n"
     << inputs << "};\n"
     << "const kiln_abi_tensor kOutputs[] = {\n"
     << outputs << "};\n";
  for (func::FuncOp f : funcs) {
    SmallVector<int64_t> in, out;
    for (unsigned i = 0; i < f.getNumArguments(); ++i)
      in.push_back(f.getArgAttrOfType<IntegerAttr>(i, "kiln.arena_offset").getInt());
    auto ret = cast<func::ReturnOp>(f.getBody().front().getTerminator());
    for (Value v : ret.getOperands()) {
      Operation *def = v.getDefiningOp();
      auto offset = def ? def->getAttrOfType<IntegerAttr>("kiln.arena_offset") : IntegerAttr();
      if (!offset)
        return f.emitError("an output has no arena slot");
      out.push_back(offset.getInt());
    }
    os << "const uint64_t " << f.getSymName() << "_in[] = {" << list(in) << "};\n"
       << "const uint64_t " << f.getSymName() << "_out[] = {" << list(out) << "};\n";
  }
  os << "const kiln_abi_bucket kBuckets[] = {\n";
  for (func::FuncOp f : funcs)
    os << "    {" << f->getAttrOfType<IntegerAttr>("kiln.batch").getInt() << ", "
       << f->getAttrOfType<IntegerAttr>("kiln.arena_bytes").getInt() << "u, "
       << f->getAttrOfType<IntegerAttr>("kiln.arena_lower_bound").getInt() << "u, "
       << f.getSymName() << "_in, " << f.getSymName() << "_out, "
       << (device ? "reinterpret_cast<kiln_entry_fn>(&" + f.getSymName().str() + ")"
                  : "&" + f.getSymName().str())
       << "},\n";
  os << "};\n";
  if (device)
    os << "constexpr kiln::cuda::ModelConfig kConfig = {kiln::cuda::Precision::"
       << info.cuda->precision << ", " << info.cuda->sm << ", " << emitter.operandScratchBytes()
       << "u};\n"
       << "constexpr kiln_abi_device kDevice = kiln::cuda::deviceHooks<kConfig>();\n";
  os << "\n} // namespace\n\n"
     << "extern \"C\" __attribute__((visibility(\"default\"))) const kiln_abi_model "
        "kiln_model_descriptor = {\n"
     << "    KILN_MODEL_MAGIC, KILN_ABI_MAJOR, KILN_ABI_MINOR, " << cString(info.compilerVersion)
     << ", "
     << (device ? cString("cuda-sm" + std::to_string(info.cuda->sm)) + ",\n    KILN_ISA_CUDA"
                : cpuTarget(info.cpu))
     << ", " << cString(info.modelHash) << ",\n"
     << "    " << first.getNumArguments() << ", " << first.getNumResults()
     << ", kInputs, kOutputs, " << funcs.size() << ", kBuckets, "
     << (inFile ? "nullptr" : "kiln_weights") << ", " << weights.size() << "u,\n    "
     << cString(info.quantization) << ", "
     << (info.f32WeightsBytes ? info.f32WeightsBytes : f32WeightsBytes) << "u, "
     << (device ? "&kDevice" : "nullptr") << ", " << hostBytes << "u,\n    "
     << (inFile ? cString(info.weightsFile) : "nullptr") << ", " << weightsHash << "u, "
     << (module->hasAttr("kiln.exact_buckets") ? "KILN_MODEL_EXACT_BUCKETS" : "0u") << "};\n";
  return success();
}

} // namespace kiln
