//===- KilnOps.td - kiln operations ------------------------*- tablegen -*-===//
//
// Every op infers its result type (InferTypeOpInterface). The verifier accepts
// a declared result type that is *compatible* with the inferred one (a `?`
// may stand for a static size), which lets the importer keep dynamic batch
// sizes and lets kiln-infer-shapes refine them later.
//
//===----------------------------------------------------------------------===//

#ifndef KILN_OPS_TD
#define KILN_OPS_TD

include "KilnDialect.td"
include "mlir/IR/BuiltinAttributeInterfaces.td"
include "mlir/Interfaces/InferTypeOpInterface.td"
include "mlir/Interfaces/SideEffectInterfaces.td"

def Kiln_InferType : InferTypeOpAdaptorBase<[{
  static bool isCompatibleReturnTypes(::mlir::TypeRange l, ::mlir::TypeRange r) {
    return ::kiln::areCompatibleTypes(l, r);
  }
}]>;

class Kiln_Op<string mnemonic, list<Trait> traits = []>
    : Op<Kiln_Dialect, mnemonic, !listconcat(traits, [Pure, Kiln_InferType])>;

// Ops whose result type is their operand's: ODS derives the inference.
class Kiln_SameTypeOp<string mnemonic>
    : Op<Kiln_Dialect, mnemonic, [Pure, SameOperandsAndResultType, InferTypeOpInterface]> {
  let extraClassDeclaration = [{
    static bool isCompatibleReturnTypes(::mlir::TypeRange l, ::mlir::TypeRange r) {
      return ::kiln::areCompatibleTypes(l, r);
    }
  }];
}

def Kiln_Tensor : RankedTensorOf<[F32, F64, F16, BF16, I1, I8, I16, I32, I64, UI8, UI16, UI32, UI64]>;
def Kiln_FloatTensor : RankedTensorOf<[F32, F64, F16, BF16]>;
def Kiln_IndexTensor : RankedTensorOf<[I32, I64]>;
def Kiln_IntegerTensor : RankedTensorOf<[I8, I16, I32, I64, UI8, UI16, UI32, UI64]>;

//===----------------------------------------------------------------------===//
// Constants
//===----------------------------------------------------------------------===//

def Kiln_ConstantOp : Kiln_Op<"constant", [ConstantLike]> {
  let summary = "a constant tensor (weights live in resource blobs)";
  let description = [{
    Large initialisers are held as `dense_resource` blobs so that their bytes
    are stored once, outside the MLIRContext's uniqued attribute storage.
  }];
  let arguments = (ins ElementsAttr:$value);
  // f8E4M3FN only as quantised dense weights.
  let results = (outs RankedTensorOf<[F32, F64, F16, BF16, F8E4M3FN, I1, I8, I16, I32, I64, UI8, UI16, UI32,
                                      UI64]>:$result);
  let hasFolder = 1;
  let assemblyFormat = "attr-dict $value";
}

//===----------------------------------------------------------------------===//
// Linear algebra
//===----------------------------------------------------------------------===//

def Kiln_GemmOp : Kiln_Op<"gemm"> {
  let summary = "Y = alpha * op(A) * op(B) + beta * C, C broadcast to [M, N]";
  let arguments = (ins Kiln_FloatTensor:$a, Kiln_FloatTensor:$b,
                   Optional<Kiln_FloatTensor>:$c,
                   DefaultValuedAttr<F32Attr, "1.0f">:$alpha,
                   DefaultValuedAttr<F32Attr, "1.0f">:$beta,
                   DefaultValuedAttr<BoolAttr, "false">:$trans_a,
                   DefaultValuedAttr<BoolAttr, "false">:$trans_b);
  let results = (outs Kiln_FloatTensor:$result);
  let hasVerifier = 1;
  let assemblyFormat = "$a `,` $b (`,` $c^)? attr-dict `:` functional-type(operands, results)";
}

def Kiln_MatMulOp : Kiln_Op<"matmul"> {
  let summary = "batched matrix product of rank >= 2 tensors, batch dims broadcast";
  let arguments = (ins Kiln_FloatTensor:$lhs, Kiln_FloatTensor:$rhs);
  let results = (outs Kiln_FloatTensor:$result);
  let hasVerifier = 1;
  let assemblyFormat = "$lhs `,` $rhs attr-dict `:` functional-type(operands, results)";
}

def Kiln_DenseOp : Kiln_Op<"dense", [AttrSizedOperandSegments]> {
  let summary = "result = act(input * W + bias) * multiplier + residual";
  let description = [{
    A layer against constant weights, formed from matmul/gemm by
    kiln-form-dense, with its bias, activation and residual add fused by
    kiln-fuse-epilogues. `weight` is op(B) as [K, `units`], or after
    kiln-pack-weights the packed layout of the CPU kernels (see
    runtime/kernels/cpu/gemm.h and quantized.h): [ceil(units / 16), K, 16]
    for f32, f16 and bf16 weights, [ceil(units / 16), ceil(K / 4), 64] for
    i8. `activation` is one of none, relu, sigmoid, tanh, gelu (erf form),
    gelu_tanh; the multiplier (elementwise, as in a DCN cross layer
    x0 * (W x + b) + x) and then the residual are applied after it. Both
    have the result's shape.

    Quantised weights (kiln-quantize): f16 and bf16 weights are widened to
    f32 as they are read. i8 weights are q in [-127, 127] with W = q *
    `weight_scale`[n] per column, `weight_sum`[n] being the column sums of
    q; the input is then quantised per row inside the kernel, or, with
    `input_scale` and `input_zero_point` (static calibration), with that one
    range for every row.

    fp8 (kiln-quantize-dense{precision=fp8}, the CUDA target): f8E4M3FN
    weights are stored transposed, [`units`, K], with W = q * `weight_scale`
    ([1], one scale for the tensor); the input is quantised to E4M3 with
    `input_scale` (x / input_scale, saturating), calibrated per tensor.

    Requantisation (kiln-fuse-requantize): with `output_scale` and
    `output_zero_point` an int8 layer's result is ui8, its f32 values (after
    the epilogue) quantised with that range as the next layer would quantise
    them; a ui8 input is such a result, already quantised with the layer's
    input_scale and input_zero_point (its depth a multiple of 4).
  }];
  let arguments = (ins TensorOf<[F32, UI8]>:$input,
                   TensorOf<[F32, F16, BF16, I8, F8E4M3FN]>:$weight,
                   Optional<F32Tensor>:$bias,
                   Optional<F32Tensor>:$multiplier, Optional<F32Tensor>:$residual,
                   Optional<F32Tensor>:$weight_scale, Optional<TensorOf<[I32]>>:$weight_sum,
                   I64Attr:$units,
                   DefaultValuedStrAttr<StrAttr, "none">:$activation,
                   OptionalAttr<F32Attr>:$input_scale, OptionalAttr<I32Attr>:$input_zero_point,
                   OptionalAttr<F32Attr>:$output_scale, OptionalAttr<I32Attr>:$output_zero_point);
  let results = (outs TensorOf<[F32, UI8]>:$result);
  let hasVerifier = 1;
  let extraClassDeclaration = [{
    /// The depth K of the product.
    int64_t getDepth() { return getInput().getType().getShape().back(); }
    bool isPacked() { return getWeight().getType().getRank() == 3; }
    bool isInt8() { return getWeight().getType().getElementType().isInteger(8); }
    bool isFp8() { return ::llvm::isa<::mlir::Float8E4M3FNType>(getWeight().getType().getElementType()); }
  }];
  let assemblyFormat = [{
    $input `,` $weight (`bias` $bias^)? (`multiplier` $multiplier^)?
    (`residual` $residual^)? (`scale` $weight_scale^)? (`sums` $weight_sum^)? attr-dict `:`
    functional-type(operands, results)
  }];
}

def Kiln_AttentionOp : Kiln_Op<"attention"> {
  let summary = "softmax(scale * q k^T + mask) v per batch and head, in [batch, seq, heads, dim]";
  let description = [{
    Scaled dot-product attention in the layout the projections produce, so
    no head transposes are materialised: query [B, Sq, H, D], key [B, Sk, H,
    D], value [B, Sk, H, Dv], an optional additive mask that broadcasts to
    [B, H, Sq, Sk]; the result is [B, Sq, H, Dv]. Formed by
    kiln-fuse-attention.
  }];
  let arguments = (ins F32Tensor:$query, F32Tensor:$key, F32Tensor:$value,
                   Optional<F32Tensor>:$mask, F64Attr:$scale);
  let results = (outs F32Tensor:$result);
  let hasVerifier = 1;
  let assemblyFormat = [{
    $query `,` $key `,` $value (`mask` $mask^)? attr-dict `:` functional-type(operands, results)
  }];
}

def Kiln_InteractionOp : Kiln_Op<"interaction"> {
  let summary = "pairwise dot products of each sample's feature vectors (DLRM)";
  let description = [{
    DLRM's dot interaction: for input [B, F, D] the result is [B, P] with
    result[b, p] = input[b, pairs[2p]] . input[b, pairs[2p + 1]]. `pairs`
    lists feature indices in [0, F), so any selection of the Gram matrix
    (its strict lower triangle, with or without the diagonal, in any order)
    is one op. Formed by kiln-fuse-interaction.
  }];
  let arguments = (ins F32Tensor:$input, DenseI64ArrayAttr:$pairs);
  let results = (outs F32Tensor:$result);
  let hasVerifier = 1;
  let assemblyFormat = "$input attr-dict `:` type($input) `->` type($result)";
}

//===----------------------------------------------------------------------===//
// Elementwise
//===----------------------------------------------------------------------===//

class Kiln_BinaryOp<string mnemonic, list<Trait> traits = []>
    : Kiln_Op<mnemonic, traits> {
  let summary = "numpy-broadcasting elementwise " # mnemonic;
  let arguments = (ins Kiln_Tensor:$lhs, Kiln_Tensor:$rhs);
  let results = (outs Kiln_Tensor:$result);
  let assemblyFormat = "$lhs `,` $rhs attr-dict `:` functional-type(operands, results)";
}

let hasFolder = 1 in {
def Kiln_AddOp : Kiln_BinaryOp<"add", [Commutative]>;
def Kiln_SubOp : Kiln_BinaryOp<"sub">;
def Kiln_MulOp : Kiln_BinaryOp<"mul", [Commutative]>;
def Kiln_DivOp : Kiln_BinaryOp<"div">;
def Kiln_MaxOp : Kiln_BinaryOp<"max", [Commutative]>;
def Kiln_MinOp : Kiln_BinaryOp<"min", [Commutative]>;
def Kiln_AndOp : Kiln_BinaryOp<"and", [Commutative]>;
def Kiln_OrOp : Kiln_BinaryOp<"or", [Commutative]>;
def Kiln_XorOp : Kiln_BinaryOp<"xor", [Commutative]>;
}
def Kiln_PowOp : Kiln_BinaryOp<"pow">;
// Bitwise ops and shifts on integers (a shift by the bit width or more is 0).
def Kiln_BitAndOp : Kiln_BinaryOp<"bit_and", [Commutative]>;
def Kiln_BitOrOp : Kiln_BinaryOp<"bit_or", [Commutative]>;
def Kiln_BitXorOp : Kiln_BinaryOp<"bit_xor", [Commutative]>;
def Kiln_ShiftLeftOp : Kiln_BinaryOp<"shift_left">;
def Kiln_ShiftRightOp : Kiln_BinaryOp<"shift_right">;
def Kiln_ModOp : Kiln_BinaryOp<"mod"> {
  let description = [{ Integer remainder with the divisor's sign (ONNX Mod, fmod = 0). }];
  let hasFolder = 1;
}
def Kiln_PReluOp : Kiln_BinaryOp<"prelu"> {
  let description = [{ x < 0 ? x * slope : x, the slope broadcast to x. }];
}

// Comparisons broadcast like the arithmetic ops and produce i1.
class Kiln_CompareOp<string mnemonic, list<Trait> traits = []>
    : Kiln_BinaryOp<mnemonic, traits> {
  let summary = "numpy-broadcasting elementwise comparison " # mnemonic;
  let hasFolder = 1;
}
def Kiln_EqualOp : Kiln_CompareOp<"equal", [Commutative]>;
def Kiln_LessOp : Kiln_CompareOp<"less">;
def Kiln_LessEqualOp : Kiln_CompareOp<"less_equal">;
def Kiln_GreaterOp : Kiln_CompareOp<"greater">;
def Kiln_GreaterEqualOp : Kiln_CompareOp<"greater_equal">;

def Kiln_WhereOp : Kiln_Op<"where"> {
  let summary = "cond ? x : y with numpy broadcasting of all three";
  let arguments = (ins RankedTensorOf<[I1]>:$cond, Kiln_Tensor:$x, Kiln_Tensor:$y);
  let results = (outs Kiln_Tensor:$result);
  let hasFolder = 1;
  let assemblyFormat = "$cond `,` $x `,` $y attr-dict `:` functional-type(operands, results)";
}

class Kiln_UnaryOp<string mnemonic, Type tensorType = Kiln_FloatTensor>
    : Kiln_SameTypeOp<mnemonic> {
  let summary = "elementwise " # mnemonic;
  let arguments = (ins tensorType:$input);
  let results = (outs tensorType:$result);
  let assemblyFormat = "$input attr-dict `:` type($input)";
}

def Kiln_ReluOp : Kiln_UnaryOp<"relu">;
def Kiln_SigmoidOp : Kiln_UnaryOp<"sigmoid">;
def Kiln_TanhOp : Kiln_UnaryOp<"tanh">;
def Kiln_ExpOp : Kiln_UnaryOp<"exp">;
def Kiln_LogOp : Kiln_UnaryOp<"log">;
def Kiln_SqrtOp : Kiln_UnaryOp<"sqrt"> { let hasFolder = 1; }
def Kiln_ErfOp : Kiln_UnaryOp<"erf">;
def Kiln_FloorOp : Kiln_UnaryOp<"floor"> { let hasFolder = 1; }
def Kiln_CeilOp : Kiln_UnaryOp<"ceil"> { let hasFolder = 1; }
def Kiln_RoundOp : Kiln_UnaryOp<"round">;
def Kiln_ReciprocalOp : Kiln_UnaryOp<"reciprocal">;
def Kiln_SinOp : Kiln_UnaryOp<"sin">;
def Kiln_CosOp : Kiln_UnaryOp<"cos">;
def Kiln_TanOp : Kiln_UnaryOp<"tan">;
def Kiln_AsinOp : Kiln_UnaryOp<"asin">;
def Kiln_AcosOp : Kiln_UnaryOp<"acos">;
def Kiln_AtanOp : Kiln_UnaryOp<"atan">;
def Kiln_SinhOp : Kiln_UnaryOp<"sinh">;
def Kiln_CoshOp : Kiln_UnaryOp<"cosh">;
def Kiln_AsinhOp : Kiln_UnaryOp<"asinh">;
def Kiln_AcoshOp : Kiln_UnaryOp<"acosh">;
def Kiln_AtanhOp : Kiln_UnaryOp<"atanh">;
def Kiln_SoftplusOp : Kiln_UnaryOp<"softplus">;
def Kiln_SoftsignOp : Kiln_UnaryOp<"softsign">;
def Kiln_NegOp : Kiln_UnaryOp<"neg", Kiln_Tensor> { let hasFolder = 1; }
def Kiln_AbsOp : Kiln_UnaryOp<"abs", Kiln_Tensor> { let hasFolder = 1; }
def Kiln_SignOp : Kiln_UnaryOp<"sign", Kiln_Tensor>;
def Kiln_NotOp : Kiln_UnaryOp<"not", RankedTensorOf<[I1]>> { let hasFolder = 1; }
def Kiln_BitNotOp : Kiln_UnaryOp<"bit_not", Kiln_IntegerTensor>;

def Kiln_IsNaNOp : Kiln_Op<"is_nan"> {
  let summary = "elementwise: whether x is NaN";
  let arguments = (ins Kiln_FloatTensor:$input);
  let results = (outs RankedTensorOf<[I1]>:$result);
  let assemblyFormat = "$input attr-dict `:` type($input) `->` type($result)";
}

def Kiln_IsInfOp : Kiln_Op<"is_inf"> {
  let summary = "elementwise: whether x is +inf (positive) or -inf (negative)";
  let arguments = (ins Kiln_FloatTensor:$input, BoolAttr:$positive, BoolAttr:$negative);
  let results = (outs RankedTensorOf<[I1]>:$result);
  let assemblyFormat = "$input attr-dict `:` type($input) `->` type($result)";
}

// Elementwise activations with two scalar parameters (ONNX defaults are set
// by the importer): leaky_relu and elu use alpha; hard_sigmoid is
// max(0, min(1, alpha * x + beta)); clip is min(max(x, alpha), beta); gelu
// uses tanh's approximation when alpha != 0.
class Kiln_ParamUnaryOp<string mnemonic> : Kiln_SameTypeOp<mnemonic> {
  let summary = "elementwise " # mnemonic # " with parameters alpha, beta";
  let arguments = (ins Kiln_FloatTensor:$input, F64Attr:$alpha, F64Attr:$beta);
  let results = (outs Kiln_FloatTensor:$result);
  let assemblyFormat = "$input attr-dict `:` type($input)";
}
def Kiln_LeakyReluOp : Kiln_ParamUnaryOp<"leaky_relu">;
def Kiln_EluOp : Kiln_ParamUnaryOp<"elu">;
def Kiln_HardSigmoidOp : Kiln_ParamUnaryOp<"hard_sigmoid">;
def Kiln_ClipOp : Kiln_ParamUnaryOp<"clip">;
def Kiln_GeluOp : Kiln_ParamUnaryOp<"gelu">;

def Kiln_CastOp : Kiln_Op<"cast"> {
  let summary = "elementwise conversion to the result element type";
  let arguments = (ins Kiln_Tensor:$input, TypeAttr:$to);
  let results = (outs Kiln_Tensor:$result);
  let hasFolder = 1;
  let assemblyFormat = "$input attr-dict `:` type($input) `to` type($result)";
}

def Kiln_SoftmaxOp : Kiln_Op<"softmax"> {
  let summary = "softmax along one axis";
  let arguments = (ins Kiln_FloatTensor:$input, I64Attr:$axis);
  let results = (outs Kiln_FloatTensor:$result);
  let hasVerifier = 1;
  let assemblyFormat = "$input attr-dict `:` type($input) `->` type($result)";
}

//===----------------------------------------------------------------------===//
// Data movement (reshape-like ops are aliases after memory planning)
//===----------------------------------------------------------------------===//

def Kiln_ReshapeOp : Kiln_Op<"reshape"> {
  let summary = "reshape to a shape given as a 1-D i64 tensor";
  let description = [{
    `shape` follows ONNX Reshape: a 0 copies the input's size at that
    position (unless `allowzero`, where it is a size of 0) and one -1 is
    inferred from the element count.
  }];
  let arguments = (ins Kiln_Tensor:$input, RankedTensorOf<[I64]>:$shape, UnitAttr:$allowzero);
  let results = (outs Kiln_Tensor:$result);
  let hasFolder = 1;
  let hasCanonicalizer = 1;
  let assemblyFormat = "$input `,` $shape attr-dict `:` functional-type(operands, results)";
}

def Kiln_FlattenOp : Kiln_Op<"flatten"> {
  let summary = "collapse to 2-D: dims before `axis` and dims from `axis`";
  let arguments = (ins Kiln_Tensor:$input, I64Attr:$axis);
  let results = (outs Kiln_Tensor:$result);
  let hasFolder = 1;
  let assemblyFormat = "$input attr-dict `:` type($input) `->` type($result)";
}

def Kiln_SqueezeOp : Kiln_Op<"squeeze"> {
  let summary = "remove size-1 dims listed in `axes`";
  let arguments = (ins Kiln_Tensor:$input, DenseI64ArrayAttr:$axes);
  let results = (outs Kiln_Tensor:$result);
  let hasFolder = 1;
  let assemblyFormat = "$input attr-dict `:` type($input) `->` type($result)";
}

def Kiln_UnsqueezeOp : Kiln_Op<"unsqueeze"> {
  let summary = "insert size-1 dims at the result positions listed in `axes`";
  let arguments = (ins Kiln_Tensor:$input, DenseI64ArrayAttr:$axes);
  let results = (outs Kiln_Tensor:$result);
  let hasFolder = 1;
  let assemblyFormat = "$input attr-dict `:` type($input) `->` type($result)";
}

def Kiln_TransposeOp : Kiln_Op<"transpose"> {
  let summary = "permute dims: result dim i is input dim perm[i]";
  let arguments = (ins Kiln_Tensor:$input, DenseI64ArrayAttr:$perm);
  let results = (outs Kiln_Tensor:$result);
  let hasVerifier = 1;
  let hasFolder = 1;
  let hasCanonicalizer = 1;
  let assemblyFormat = "$input attr-dict `:` type($input) `->` type($result)";
}

def Kiln_ConcatOp : Kiln_Op<"concat"> {
  let summary = "concatenate along `axis`";
  let arguments = (ins Variadic<Kiln_Tensor>:$inputs, I64Attr:$axis);
  let results = (outs Kiln_Tensor:$result);
  let hasFolder = 1;
  let assemblyFormat = "$inputs attr-dict `:` functional-type($inputs, results)";
}

def Kiln_GatherOp : Kiln_Op<"gather"> {
  let summary = "ONNX Gather: take slices of `data` along `axis` at `indices`";
  let description = [{
    Negative indices count from the end, as in ONNX. An index outside
    [-size, size) is a run-time error of the model, never a wild read.
  }];
  let arguments = (ins Kiln_Tensor:$data, Kiln_IndexTensor:$indices, I64Attr:$axis);
  let results = (outs Kiln_Tensor:$result);
  let hasFolder = 1;
  let hasVerifier = 1;
  let assemblyFormat = "$data `,` $indices attr-dict `:` functional-type(operands, results)";
}

def Kiln_SliceOp : Kiln_Op<"slice"> {
  let summary = "ONNX Slice with starts/ends/steps per listed axis";
  let description = [{
    `starts`, `ends` and `steps` are 1-D i64 tensors aligned with `axes`
    (non-negative); out-of-range starts/ends are clamped as in ONNX. They are
    operands because exporters compute them; they must fold to constants
    before code generation.
  }];
  let arguments = (ins Kiln_Tensor:$input, RankedTensorOf<[I64]>:$starts,
                   RankedTensorOf<[I64]>:$ends, RankedTensorOf<[I64]>:$steps,
                   DenseI64ArrayAttr:$axes);
  let results = (outs Kiln_Tensor:$result);
  let hasFolder = 1;
  let assemblyFormat = "$input `,` $starts `,` $ends `,` $steps attr-dict `:` functional-type(operands, results)";
}

class Kiln_ReduceOp<string mnemonic> : Kiln_Op<mnemonic> {
  let summary = "reduce (" # mnemonic # ") over `axes`";
  let arguments = (ins Kiln_Tensor:$input, DenseI64ArrayAttr:$axes,
                   BoolAttr:$keepdims);
  let results = (outs Kiln_Tensor:$result);
  let assemblyFormat = "$input attr-dict `:` type($input) `->` type($result)";
}

def Kiln_ReduceSumOp : Kiln_ReduceOp<"reduce_sum">;
def Kiln_ReduceMeanOp : Kiln_ReduceOp<"reduce_mean">;
def Kiln_ReduceMaxOp : Kiln_ReduceOp<"reduce_max">;
def Kiln_ReduceMinOp : Kiln_ReduceOp<"reduce_min">;
let hasFolder = 1 in
def Kiln_ReduceProdOp : Kiln_ReduceOp<"reduce_prod">;

def Kiln_ExpandOp : Kiln_Op<"expand"> {
  let summary = "broadcast the input to a shape given as a 1-D i64 tensor (ONNX Expand)";
  let arguments = (ins Kiln_Tensor:$input, RankedTensorOf<[I64]>:$shape);
  let results = (outs Kiln_Tensor:$result);
  let hasFolder = 1;
  let assemblyFormat = "$input `,` $shape attr-dict `:` functional-type(operands, results)";
}

def Kiln_LogSoftmaxOp : Kiln_Op<"log_softmax"> {
  let summary = "log of softmax along one axis, computed stably";
  let arguments = (ins Kiln_FloatTensor:$input, I64Attr:$axis);
  let results = (outs Kiln_FloatTensor:$result);
  let assemblyFormat = "$input attr-dict `:` type($input) `->` type($result)";
}

def Kiln_GatherNDOp : Kiln_Op<"gather_nd"> {
  let summary = "ONNX GatherND: slices of `data` at the index tuples in the last dim of `indices`";
  let description = [{
    The first `batch_dims` dims of `data` and `indices` are shared; each
    tuple of the last dim of `indices` picks a slice of the dims after them.
    Negative indices count from the end; an index outside [-size, size) is a
    run-time error of the model, never a wild read.
  }];
  let arguments = (ins Kiln_Tensor:$data, Kiln_IndexTensor:$indices, I64Attr:$batch_dims);
  let results = (outs Kiln_Tensor:$result);
  let hasFolder = 1;
  let hasVerifier = 1;
  let assemblyFormat = "$data `,` $indices attr-dict `:` functional-type(operands, results)";
}

def Kiln_GatherElementsOp : Kiln_Op<"gather_elements"> {
  let summary = "ONNX GatherElements: out[i] = data[i with i[axis] = indices[i]]";
  let arguments = (ins Kiln_Tensor:$data, Kiln_IndexTensor:$indices, I64Attr:$axis);
  let results = (outs Kiln_Tensor:$result);
  let assemblyFormat = "$data `,` $indices attr-dict `:` functional-type(operands, results)";
}

def Kiln_TriluOp : Kiln_Op<"trilu"> {
  let summary = "keep the upper (or lower) triangle of the last two dims from diagonal k";
  let arguments = (ins Kiln_Tensor:$input, BoolAttr:$upper, I64Attr:$k);
  let results = (outs Kiln_Tensor:$result);
  let assemblyFormat = "$input attr-dict `:` type($input) `->` type($result)";
}

class Kiln_ArgOp<string mnemonic> : Kiln_Op<mnemonic> {
  let summary = "index (i64) of the extreme element along `axis`";
  let arguments = (ins Kiln_Tensor:$input, I64Attr:$axis, BoolAttr:$keepdims,
                   BoolAttr:$select_last_index);
  let results = (outs RankedTensorOf<[I64]>:$result);
  let assemblyFormat = "$input attr-dict `:` type($input) `->` type($result)";
}
def Kiln_ArgMaxOp : Kiln_ArgOp<"argmax">;
def Kiln_ArgMinOp : Kiln_ArgOp<"argmin">;

def Kiln_CumSumOp : Kiln_Op<"cumsum"> {
  let summary = "cumulative sum along `axis`, optionally exclusive and/or reversed";
  let arguments = (ins Kiln_Tensor:$input, I64Attr:$axis, BoolAttr:$exclusive, BoolAttr:$reverse);
  let results = (outs Kiln_Tensor:$result);
  let assemblyFormat = "$input attr-dict `:` type($input) `->` type($result)";
}

def Kiln_PadOp : Kiln_Op<"pad"> {
  let summary = "constant padding: `pads` holds the begin pads of every dim, then the end pads";
  let arguments = (ins Kiln_Tensor:$input, DenseI64ArrayAttr:$pads, F64Attr:$value);
  let results = (outs Kiln_Tensor:$result);
  let assemblyFormat = "$input attr-dict `:` type($input) `->` type($result)";
}

def Kiln_LayerNormOp : Kiln_Op<"layer_norm"> {
  let summary = "normalise over the dims from `axis` on, then scale and shift";
  let description = [{
    With `rms` the mean is not subtracted (RMSNormalization).
  }];
  let arguments = (ins Kiln_FloatTensor:$input, Kiln_FloatTensor:$scale,
                   Optional<Kiln_FloatTensor>:$bias, I64Attr:$axis, F64Attr:$epsilon,
                   UnitAttr:$rms);
  let results = (outs Kiln_FloatTensor:$result);
  let assemblyFormat = "$input `,` $scale (`,` $bias^)? attr-dict `:` functional-type(operands, results)";
}

def Kiln_EmbeddingBagOp : Kiln_Op<"embedding_bag"> {
  let summary = "pooled rows of a table: bag b reduces table[indices[begin[b]:end[b]]]";
  let description = [{
    `mode` is 0 (sum), 1 (mean) or 2 (max); an empty bag is zeros. When
    `weights` is given (per-sample weights, aligned with `indices`) each row
    is scaled before a sum. The result is [bags, dim]. With `wrap_negative`
    an id in [-rows, 0) counts from the end, as ONNX Gather's do.
  }];
  let arguments = (ins Kiln_FloatTensor:$table, Kiln_IndexTensor:$indices,
                   Kiln_IndexTensor:$begin, Kiln_IndexTensor:$end,
                   Optional<Kiln_FloatTensor>:$weights, I64Attr:$mode,
                   UnitAttr:$wrap_negative);
  let results = (outs Kiln_FloatTensor:$result);
  let assemblyFormat = "$table `,` $indices `,` $begin `,` $end (`,` $weights^)? attr-dict `:` functional-type(operands, results)";
}

def Kiln_EmbeddingBagsOp : Kiln_Op<"embedding_bags"> {
  let summary = "fixed-hotness bags of several tables, pooled side by side";
  let description = [{
    One lookup kernel for many tables: `ids` holds a row of ids per sample
    ([batch, ...], viewed as [batch, R]); table t pools the rows at the
    `hotness[t]` columns of that row listed next in `columns` (mode 0 sum,
    1 mean, 2 max). The result is [batch, sum of the tables' dims], the
    tables' pooled rows side by side. Mode 3 does not pool: each table
    contributes its `hotness[t]` rows side by side (a row gather). With `wrap_negative` an id in [-rows,
    0) counts from the end. Formed by kiln-group-embedding-bags.

    With `bits` 8 or 4 (kiln-quantize) every table is ui8 [rows, row bytes]
    in the row-wise format of runtime/kernels/cpu/quantized.h (values, then
    an fp16 scale and bias): dim = row bytes - 4 at 8 bits, twice that at 4.
  }];
  let arguments = (ins Kiln_IndexTensor:$ids,
                   Variadic<TensorOf<[F32, UI8]>>:$tables,
                   DenseI64ArrayAttr:$columns, DenseI64ArrayAttr:$hotness, I64Attr:$mode,
                   UnitAttr:$wrap_negative, DefaultValuedAttr<I64Attr, "32">:$bits);
  let results = (outs F32Tensor:$result);
  let hasVerifier = 1;
  let extraClassDeclaration = [{
    /// The values per row of `table` at `bits`.
    static int64_t tableDim(::mlir::RankedTensorType table, int64_t bits);
    int64_t getTableDim(::mlir::RankedTensorType table) { return tableDim(table, getBits()); }
  }];
  let assemblyFormat = "$ids `,` $tables attr-dict `:` functional-type(operands, results)";
}

def Kiln_FusedElementwiseOp : Op<Kiln_Dialect, "fused_elementwise", [Pure]> {
  let summary = "a chain of elementwise ops run as one loop";
  let description = [{
    The body computes one result element from one element of each input:
    its block arguments are 0-d tensors holding inputs' elements (an input
    of one element is broadcast; the others have the result's element
    count), its ops are elementwise kiln ops on 0-d tensors, and `kiln.yield`
    returns the result element. One pass over memory instead of one per op;
    no intermediate buffers. Formed by kiln-fuse-elementwise.
  }];
  let arguments = (ins Variadic<Kiln_Tensor>:$inputs);
  let results = (outs Kiln_Tensor:$result);
  let regions = (region SizedRegion<1>:$body);
  let hasVerifier = 1;
  let assemblyFormat = "`(` $inputs `)` attr-dict `:` functional-type($inputs, $result) $body";
}

def Kiln_YieldOp : Op<Kiln_Dialect, "yield",
                      [Pure, Terminator, HasParent<"::kiln::FusedElementwiseOp">]> {
  let summary = "the element a fused_elementwise body computes";
  let arguments = (ins AnyType:$value);
  let assemblyFormat = "$value attr-dict `:` type($value)";
}

//===----------------------------------------------------------------------===//
// Shape computations (folded away once shapes are static)
//===----------------------------------------------------------------------===//

def Kiln_ShapeOp : Kiln_Op<"shape"> {
  let summary = "the dims [start, end) of the input's shape as a 1-D i64 tensor";
  let arguments = (ins Kiln_Tensor:$input, I64Attr:$start, I64Attr:$end);
  let results = (outs RankedTensorOf<[I64]>:$result);
  let hasFolder = 1;
  let assemblyFormat = "$input attr-dict `:` type($input) `->` type($result)";
}

def Kiln_RangeOp : Kiln_Op<"range"> {
  let summary = "[start, start + delta, ...) below limit, from scalar tensors";
  let arguments = (ins Kiln_Tensor:$start, Kiln_Tensor:$limit, Kiln_Tensor:$delta);
  let results = (outs Kiln_Tensor:$result);
  let hasFolder = 1;
  let assemblyFormat = "$start `,` $limit `,` $delta attr-dict `:` functional-type(operands, results)";
}

def Kiln_ConstantOfShapeOp : Kiln_Op<"constant_of_shape"> {
  let summary = "a tensor of the given shape filled with one value";
  let arguments = (ins RankedTensorOf<[I64]>:$shape, TypedAttrInterface:$value);
  let results = (outs Kiln_Tensor:$result);
  let hasFolder = 1;
  let assemblyFormat = "$shape attr-dict `:` type($shape) `->` type($result)";
}

//===----------------------------------------------------------------------===//
// Memory
//===----------------------------------------------------------------------===//

def Kiln_CopyOp : Kiln_SameTypeOp<"copy"> {
  let summary = "a copy into a buffer of its own";
  let description = [{
    Inserted by kiln-plan-memory where a model output would otherwise alias a
    constant, an input or another output.
  }];
  let arguments = (ins Kiln_Tensor:$input);
  let results = (outs Kiln_Tensor:$result);
  let assemblyFormat = "$input attr-dict `:` type($input)";
}

#endif // KILN_OPS_TD
