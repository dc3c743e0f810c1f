//===- Passes.td - kiln compiler passes --------------------*- tablegen -*-===//

#ifndef KILN_PASSES_TD
#define KILN_PASSES_TD

include "mlir/Pass/PassBase.td"

def WidenHalf : Pass<"kiln-widen-half", "mlir::func::FuncOp"> {
  let summary = "Compute in f32 what the model computes in f16 or bf16";
  let description = [{
    Generated code stores f16 and bf16 tensors but computes only in f32 and
    f64. Every op that is not data movement (movesDataOnly) and has a 16-bit
    float operand or result is rebuilt on f32: its operands are widened
    (constants converted at compile time, other values by a kiln.cast), its
    results narrowed again by a kiln.cast where a data-movement op, a cast of
    the model or a function result reads them. Chains of such ops pass f32
    values to each other, so the only roundings to 16 bits are those of the
    model's storage: its inputs, outputs, the tensors data movement reads,
    and its own Casts.
  }];
}

def SpecializeShapes : Pass<"kiln-specialize-shapes", "mlir::ModuleOp"> {
  let summary = "Clone @main once per batch bucket with the batch dim fixed";
  let description = [{
    Replaces the dynamic-batch `@main` by `@main_b<N>` for each bucket N:
    inputs marked `kiln.batched` get N as their leading dim and the function
    records `kiln.batch = N`. Any other dynamic input dim is an error, since
    kiln plans every buffer ahead of time.
  }];
  let options = [
    ListOption<"batches", "batch", "int64_t", "Batch sizes of the buckets">
  ];
  let dependentDialects = ["::kiln::KilnDialect"];
}

def InferShapes : Pass<"kiln-infer-shapes", "mlir::func::FuncOp"> {
  let summary = "Refine result types from operands, folding shape sub-graphs on the way";
  let description = [{
    Re-derives every kiln op's result type from its operands, top-down, and
    folds ops whose operands became constant, so a reshape target computed by
    Shape -> Gather -> Concat resolves as soon as its input shape is static.
    A shape still unknown then depends on run-time values and is an error.
    Finally the function's result types are refined and every batched output
    is checked to have the bucket's batch as its leading dim.
  }];
}

def CheckBucketRows : Pass<"kiln-check-bucket-rows", "mlir::ModuleOp"> {
  let summary = "Check that every bucket computes rows of the same shape";
  let description = [{
    A bucketed model runs a request in the smallest bucket that holds it,
    rows past the request's batch padded, so its rows must not depend on the
    batch size. After shape inference, every output must have the same shape
    in every bucket function (its leading dim aside when it is batched). An
    output whose row shape changes with the batch (an in-batch product such
    as [N, 1, 8] * [N, 8] -> [N, N, 8]) is an error naming it and both
    shapes. This catches batch mixing that changes shapes; one that keeps
    them (a softmax over the batch axis) is not detected.
  }];
}

def CheckRowIndependence : Pass<"kiln-check-row-independence", "mlir::ModuleOp"> {
  let summary = "Prove that every output row depends only on the same row of the inputs";
  let description = [{
    A request smaller than its bucket runs with its rows padded, which is
    only right when no row of an output depends on another row of the batch.
    In every bucket function with a batch above 1 each value is followed as
    uniform (no batched input in it), rows (element [outer][b][inner] of its
    flat order depends only on row b of the inputs) or mixed, op by op:
    elementwise ops with broadcasting, reshapes, transposes, reductions,
    softmax, layer norm, concat, slice, gather, matmul, gemm, dense,
    attention, interaction and embedding bags each have their rule, and an
    op kiln has no rule for mixes. A batched output must be rows along dim 0,
    any other output uniform. Otherwise the compile fails naming the output,
    the op that mixes rows and how; with `exact-buckets` it warns instead and
    marks the module `kiln.exact_buckets`: the runtime then runs only
    batches equal to a bucket, never padding one.
  }];
  let options = [
    Option<"exactBuckets", "exact-buckets", "bool", "false",
           "Accept a model that mixes rows, to run only at its bucket sizes">
  ];
}

def RaiseQuantizedMatMul : Pass<"kiln-raise-quantized-matmul", "mlir::func::FuncOp"> {
  let summary = "Fold imported int8 products (MatMulInteger, QDQ) into int8 kiln.dense";
  let description = [{
    The importer writes onnxruntime's quantised products (DynamicQuantizeLinear
    + MatMulInteger + rescale, or QuantizeLinear/DequantizeLinear around a
    MatMul, QLinearMatMul) as f32 arithmetic. Where the weight is an int8
    constant without zero point and its scale a constant scalar or one per
    column, the product becomes a kiln.dense with that int8 weight, which
    quantises its input itself. Other forms keep the f32 arithmetic.
  }];
}

def RaiseEmbeddingBags : Pass<"kiln-raise-embedding-bags", "mlir::func::FuncOp"> {
  let summary = "Raise Gather + ReduceSum/Mean over the hotness axis to embedding_bag";
  let description = [{
    `reduce_sum(gather(table, ids), axis = rank(ids) - 1)` (or reduce_mean)
    with static shapes pools each row of ids: it becomes one embedding_bag
    over the flattened ids with fixed-size bags, which never materialises the
    [..., hotness, dim] rows.
  }];
}

def GroupEmbeddingBags : Pass<"kiln-group-embedding-bags", "mlir::func::FuncOp"> {
  let summary = "Group side-by-side fixed-hotness lookups of many tables into kiln.embedding_bags";
  let description = [{
    Consecutive inputs of a concat that are (through single-use reshapes)
    unweighted fixed-hotness embedding_bags or one-row-per-sample gathers of
    tables, whose ids are the same columns of every sample's row of one id
    tensor, become one `kiln.embedding_bags` over all their tables. The id
    columns are found by following data movement element by element; the
    per-table slices and reshapes of the ids disappear.
  }];
}

def RaiseLayerIdioms : Pass<"kiln-raise-layer-idioms", "mlir::func::FuncOp"> {
  let summary = "Raise decomposed GELU and LayerNorm to kiln.gelu and kiln.layer_norm";
  let description = [{
    `x * 0.5 * (1 + erf(x / sqrt(2)))` (any multiplication order, or
    `x * (1/sqrt 2)`) becomes `kiln.gelu`. `(x - mean(x)) / sqrt(mean((x -
    mean(x))^2) + eps)` over the last dim, with an optional following
    multiply and add by constant vectors, becomes `kiln.layer_norm`. Both
    then run as one vectorised loop, and a GELU after a dense can fuse into
    its epilogue.
  }];
}

def FuseAttention : Pass<"kiln-fuse-attention", "mlir::func::FuncOp"> {
  let summary = "Fuse the exporters' multi-head attention block into kiln.attention";
  let description = [{
    `transpose(matmul(softmax(scale(matmul(transpose(q), transpose(k))) +
    mask), transpose(v)))` with the head permutations [0, 2, 1, 3] (and [0,
    2, 3, 1] for k), a scale by a constant (div or mul, or none) and an
    optional additive mask becomes one `kiln.attention` on q, k, v in
    [batch, seq, heads, dim] layout. Every intermediate must have no other
    user; one head's keys must fit the kernel's stack buffer (seq x dim <=
    16384).
  }];
}

def FuseInteraction : Pass<"kiln-fuse-interaction", "mlir::func::FuncOp"> {
  let summary = "Fuse DLRM's dot interaction (Gram matrix + triangle selection) into one op";
  let description = [{
    `matmul(Z, transpose(Z))` on Z [batch, features, dim], followed by a
    single-use chain of data movement (reshapes, transposes, slices, gathers
    with constant indices) that ends in [batch, P] rows taking the same P
    Gram entries of each sample, becomes `kiln.interaction` on Z with those
    P (i, j) pairs. The chain is tracked element by element, so any
    exporter's way of selecting the triangle is recognised.
  }];
}

def FormDense : Pass<"kiln-form-dense", "mlir::ModuleOp"> {
  let summary = "Turn matmul/gemm against constant matrices into kiln.dense";
  let description = [{
    A product whose right operand is a constant 2-D f32 matrix becomes
    `kiln.dense` with weight alpha * op(B) as [K, N]. A Gemm's constant C
    that broadcasts along rows becomes the bias (times beta); a C of the
    result's shape with beta = 1 becomes the residual. A weight used by
    several ops or bucket functions is transformed once.
  }];
}

def FuseEpilogues : Pass<"kiln-fuse-epilogues", "mlir::func::FuncOp"> {
  let summary = "Fuse bias add, activation and residual add into kiln.dense";
  let description = [{
    When a dense's only user is an add of a constant vector along its last
    dim, it becomes the bias; then relu, sigmoid, tanh or gelu, the
    activation; then an add of a same-shaped tensor, the residual. The
    fused op computes act(x W + bias) + residual in the kernel's epilogue.
  }];
}

def FactorBroadcastDense : Pass<"kiln-factor-broadcast-dense", "mlir::func::FuncOp"> {
  let summary = "Compute a layer's per-sample inputs once per sample, not per row";
  let description = [{
    A dense over a [B, rows, K] concat (last axis) of per-row values and of
    per-sample values broadcast along the rows ([B, 1, D], or an expand of
    one), as DIN's attention unit over [query, key, query - key,
    query * key]: x W is the sum of each part times its rows of W, a sum or
    difference with a broadcast operand splits into its operands, and the
    broadcast values' product is the same on every row of a sample. The
    layer becomes a dense over the distinct row values (the rows of W of
    their parts summed with their signs), a dense over the broadcast ones at
    [B, 1, N], their broadcasting add and the activation (none, relu,
    sigmoid or tanh; the bias stays with the per-row dense). Layers with a
    multiplier or residual, or without a broadcast or a row part, are left
    alone. Runs after kiln-fuse-epilogues, before kiln-fuse-elementwise.
  }];
}

def FuseElementwise : Pass<"kiln-fuse-elementwise", "mlir::func::FuncOp"> {
  let summary = "Fuse trees of elementwise ops into one kiln.fused_elementwise loop";
  let description = [{
    Each f32 elementwise op (unary ops and broadcasting arithmetic whose
    operands have its element count or one element) that is not consumed by
    another such op roots a tree: a producer of the same element count whose
    result has no other user joins it, recursively. Trees of two or more
    ops become one `kiln.fused_elementwise` whose body holds the same ops on
    0-d tensors. Runs after kiln-fuse-epilogues, so a dense's epilogue keeps
    what it can take.
  }];
}

def QuantizeDense : Pass<"kiln-quantize-dense", "mlir::ModuleOp"> {
  let summary = "Store kiln.dense weights as int8, fp16, bf16 or fp8";
  let description = [{
    Rewrites each dense's [K, N] f32 constant weight at `precision`:
    `int8` quantises it symmetrically per output column (runtime/kernels/
    cpu/quantized.h: q in [-127, 127], a weight_scale and the column sums
    weight_sum) and the kernel then quantises the input per row, dynamically;
    `fp16` and `bf16` round it to that format, the arithmetic staying f32.
    Layers deeper than the int8 kernel's limit keep f32 weights. Each
    distinct weight is quantised once.

    `input-ranges` (int8, from static calibration: kiln compile
    --calibration) gives each int8 layer's input range as lo, hi pairs, for
    the layers of each function in order (the layers
    kiln-expose-dense-inputs exposes); the layer then takes input_scale and
    input_zero_point and its input is quantised with that one range.

    `fp8` (the CUDA target's --precision fp8, which needs `input-ranges`
    for the same layers) stores a layer's weight as f8E4M3FN, transposed to
    [N, K], with one weight_scale (max |W| / 448), and sets input_scale to
    max(|lo|, |hi|) / 448. Only layers whose depth and units are multiples of
    16 (cuBLASLt's fp8 kernels) and whose input range is not empty change;
    the others keep f32 weights.

    `keep-layers` lists layers that stay f32 by their index among each
    function's layers this precision changes, in order (quantizableLayers;
    kiln compile --quantize auto keeps the layers that cost the most
    accuracy). input-ranges still has one pair per layer of that order.
  }];
  let options = [
    Option<"precision", "precision", "std::string", "\"int8\"", "int8, fp16, bf16 or fp8">,
    ListOption<"inputRanges", "input-ranges", "double",
               "int8, fp8: lo, hi of each layer's input, in layer order">,
    ListOption<"keepLayers", "keep-layers", "int64_t",
               "int8, fp16, bf16: indices (quantizableLayers order) of layers that stay f32">
  ];
}

def FuseRequantize : Pass<"kiln-fuse-requantize", "mlir::func::FuncOp"> {
  let summary = "Int8 layers write the next int8 layer's quantised input";
  let description = [{
    Where an int8 kiln.dense's only use is the input of another int8 dense
    with a static input range (input_scale, input_zero_point: static
    calibration), the first layer takes that range as its output_scale and
    output_zero_point and its result becomes ui8: its epilogue quantises
    the f32 values exactly as the next layer would have, which then reads
    them as they are. The activations between the two are 4x smaller and
    the second layer's quantising pass disappears; the results do not
    change. Layers whose width is not a multiple of 4 (the kernel reads the
    input in groups of 4 bytes) are left as they are.
  }];
}

def ExposeDenseInputs : Pass<"kiln-expose-dense-inputs", "mlir::ModuleOp"> {
  let summary = "Make the inputs of the layers int8 would quantise extra results";
  let description = [{
    For static calibration: appends the input of every dense layer that
    kiln-quantize-dense would store at int8 (isInt8Candidate) to its
    function's results, in layer order, named "kiln.calibration.<i>". The
    f32 model compiled this way shows the activations each int8 layer will
    see; their ranges become kiln-quantize-dense's input-ranges.
  }];
}

def QuantizeTables : Pass<"kiln-quantize-tables", "mlir::ModuleOp"> {
  let summary = "Store embedding tables row-wise quantised at 8 or 4 bits";
  let description = [{
    Rewrites the constant f32 tables of each embedding_bags as ui8 rows in
    the row-wise format of runtime/kernels/cpu/quantized.h (values at `bits`
    bits, then an fp16 scale and bias per row), dequantised by the bag
    kernel as it pools. A gather of rows (axis 0) from a constant [rows,
    dim] table becomes an unpooled embedding_bags (mode 3) and a reshape
    first. A table stays f32 when a quantised row would not be smaller
    (dim 1) or cannot be stored (an odd dim at 4 bits, a NaN or Inf), or
    when `keep-tables` lists it: its index among each function's distinct
    quantisable tables in order (quantizableTables; kiln compile --quantize
    auto keeps the tables that cost the most accuracy). An op whose tables
    are partly kept is split into runs of tables at one precision whose
    results are concatenated. Each distinct table is quantised once.
  }];
  let options = [
    Option<"bits", "bits", "int64_t", "8", "8 or 4">,
    ListOption<"keepTables", "keep-tables", "int64_t",
               "indices (quantizableTables order) of tables that stay f32">
  ];
}

def PlaceHostTables : Pass<"kiln-place-host-tables", "mlir::ModuleOp"> {
  let summary = "Keep embedding tables larger than a size in host memory (CUDA target)";
  let description = [{
    For tables beyond device memory: a constant f32 table of more than
    `bytes` bytes read only by kiln.embedding_bags ops gets the unit
    attribute `kiln.on_host`. The CUDA emitter stores it outside the weights
    uploaded to the device, and its lookups are pooled on the CPU inside the
    request's graph. Row gathers from such a table become unpooled
    embedding_bags first. A table that other ops read stays on the device,
    with a warning naming the op.
  }];
  let options = [
    Option<"bytes", "bytes", "int64_t", "0", "Tables of more bytes than this go to host memory">
  ];
}

def PackWeights : Pass<"kiln-pack-weights", "mlir::ModuleOp"> {
  let summary = "Pack kiln.dense weights into the CPU kernels' panel layout";
  let description = [{
    Rewrites each dense's [K, N] constant weight as [ceil(N/16), K, 16]
    panels (runtime/kernels/cpu/gemm.h; f32, f16 or bf16 elements), or i8
    weights as [ceil(N/16), ceil(K/4), 64] (quantized.h), packing each
    distinct weight once.
  }];
}

def BoundIndexInputs : Pass<"kiln-bound-index-inputs", "mlir::func::FuncOp"> {
  let summary = "Record the valid values of id inputs, per position in a batch row";
  let description = [{
    Elements of an integer input that reach the indices of gathers or
    embedding bags through data movement (reshapes, slices, transposes,
    concats, expands, gathers with constant indices) are bounded by the
    tables they index. The input gets `kiln.index_bounds = [lo0, hi0, lo1,
    hi1, ...]`, one pair per element of a batch row (the whole tensor if it
    is not batched), so the runtime rejects a bad id before running.
  }];
}

def OrderForMemory : Pass<"kiln-order-for-memory", "mlir::func::FuncOp"> {
  let summary = "Reorder ops to lower the peak of live tensor bytes";
  let description = [{
    Greedy list scheduling: among the ops whose operands are computed, run
    next the one that adds the fewest live bytes (its result minus the
    buffers it is the last user of; reshapes are views), ties in program
    order. The new order is kept only if its live peak is below the
    program order's.
  }];
  let statistics = [
    Statistic<"programPeakBytes", "program-peak-bytes", "Live peak in program order (all buckets)">,
    Statistic<"chosenPeakBytes", "chosen-peak-bytes", "Live peak in the chosen order (all buckets)">
  ];
}

def PlanMemory : Pass<"kiln-plan-memory", "mlir::func::FuncOp"> {
  let summary = "Assign every intermediate tensor an offset in one arena";
  let description = [{
    Computes buffer lifetimes in program order (reshape-like ops alias their
    input, and a dense, embedding bag, row gather or binary arithmetic op
    whose only user is a concat along the last dim writes into that
    concat's buffer: it gets
    `kiln.row_stride`, the concat `kiln.in_place` per operand), then places
    buffers greedily at the lowest 64-byte-aligned offset
    that does not overlap a buffer alive at the same time (or the tightest
    such gap), trying a few orders (by size, lifetime, start) and keeping the
    smallest arena. Records `kiln.arena_offset` on each producing op and
    input, and `kiln.arena_bytes` and `kiln.arena_lower_bound` (the largest total of
    simultaneously live buffers) on the function. Outputs that would alias a
    constant, an input or another output get a `kiln.copy`.
  }];
  let statistics = [
    Statistic<"arenaBytes", "arena-bytes", "Arena bytes (all buckets)">,
    Statistic<"lowerBoundBytes", "lower-bound-bytes", "Liveness lower bound (all buckets)">
  ];
}

#endif // KILN_PASSES_TD
