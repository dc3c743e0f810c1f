#!/usr/bin/env python3
"""The ads model zoo: generators for the models ads teams ship, written the
way exporters write them (MatMul + Add next to Gemm, Gather + ReduceSum
embedding bags, decomposed LayerNorm before opset 17, erf GELU as
Div/Erf/Add/Mul, masks as Cast/Sub/Mul, Shape chains feeding Reshape).

    python bench/models/zoo.py OUT [--models dlrm_kaggle din ...] [--batch 8]

writes OUT/<model>/model.onnx and OUT/<model>/test_data_set_0 with reference
outputs from onnxruntime. Weights are random; embedding tables are capped at
4096 rows so generation and compilation stay fast. Generated files are build
outputs, not committed.
"""
import argparse
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROWS = 4096


class Graph:
    """A small builder that names values and initialisers uniquely."""

    def __init__(self, name, seed):
        self.name, self.rng = name, np.random.default_rng(seed)
        self.nodes, self.inits, self.inputs, self.outputs, self.count = [], [], [], [], 0

    def fresh(self, base):
        self.count += 1
        return f"{base}_{self.count}"

    def input(self, name, dtype, shape):
        self.inputs.append(helper.make_tensor_value_info(name, dtype, shape))
        return name

    def output(self, name, value, dtype, shape):
        self.node("Identity", [value], name=name)
        self.outputs.append(helper.make_tensor_value_info(name, dtype, shape))

    def const(self, value, base="c"):
        name = self.fresh(base)
        self.inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def weight(self, shape, scale=None, base="w"):
        scale = scale if scale is not None else 1.0 / np.sqrt(shape[0])
        return self.const(self.rng.uniform(-scale, scale, shape).astype(np.float32), base)

    def node(self, op, inputs, name=None, **attrs):
        out = name or self.fresh(op.lower())
        self.nodes.append(helper.make_node(op, inputs, [out], name=self.fresh(f"/{op}"), **attrs))
        return out

    # Layers, in exporter forms.
    def linear(self, x, k, n, form="gemm"):
        if form == "gemm":
            return self.node("Gemm", [x, self.weight((n, k)), self.weight((n,), 0.1)], transB=1)
        y = self.node("MatMul", [x, self.weight((k, n))])
        return self.node("Add", [y, self.weight((n,), 0.1)])

    def mlp(self, x, sizes, last_activation=True, form="gemm"):
        for i, (k, n) in enumerate(zip(sizes, sizes[1:])):
            x = self.linear(x, k, n, form if i % 2 == 0 else "gemm")
            if last_activation or i < len(sizes) - 2:
                x = self.node("Relu", [x])
        return x

    def table(self, rows, dim, base="emb"):
        return self.weight((rows, dim), 0.05, base)

    def bag(self, table, ids, axis=1):
        """Gather + ReduceSum over the hotness axis: [B, hot] ids -> [B, dim]."""
        rows = self.node("Gather", [table, ids])
        return self.node("ReduceSum", [rows, self.const(np.array([axis], np.int64))], keepdims=0)

    def column(self, x, i, axis=1):
        return self.node("Gather", [x, self.const(np.int64(i))], axis=axis)

    def columns(self, x, start, end, axis=1):
        return self.node("Slice", [x, self.const(np.array([start], np.int64)),
                                   self.const(np.array([end], np.int64)),
                                   self.const(np.array([axis], np.int64))])

    def flatten_batch(self, x):
        """Reshape to [batch, -1] through the exporter's Shape chain."""
        shape = self.node("Shape", [x])
        batch = self.node("Slice", [shape, self.const(np.array([0], np.int64)),
                                    self.const(np.array([1], np.int64))])
        target = self.node("Concat", [batch, self.const(np.array([-1], np.int64))], axis=0)
        return self.node("Reshape", [x, target])

    def layer_norm(self, x, dim, opset):
        scale, bias = self.weight((dim,), 0.1), self.weight((dim,), 0.1)
        if opset >= 17:
            return self.node("LayerNormalization", [x, scale, bias], axis=-1, epsilon=1e-12)
        mean = self.node("ReduceMean", [x], axes=[-1])
        centred = self.node("Sub", [x, mean])
        var = self.node("ReduceMean", [self.node("Pow", [centred, self.const(np.float32(2.0))])], axes=[-1])
        std = self.node("Sqrt", [self.node("Add", [var, self.const(np.float32(1e-12))])])
        return self.node("Add", [self.node("Mul", [self.node("Div", [centred, std]), scale]), bias])

    def gelu(self, x):
        inner = self.node("Erf", [self.node("Div", [x, self.const(np.float32(np.sqrt(2.0)))])])
        half = self.node("Mul", [x, self.node("Add", [inner, self.const(np.float32(1.0))])])
        return self.node("Mul", [half, self.const(np.float32(0.5))])

    def model(self, opset=17):
        graph = helper.make_graph(self.nodes, self.name, self.inputs, self.outputs, self.inits)
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="kiln-zoo")
        m.ir_version = 8
        onnx.checker.check_model(m)
        return m


def dlrm_mlperf():
    g = Graph("dlrm_mlperf", 1)
    hot = [3, 2, 1, 2, 6, 1, 1, 1, 1, 7, 3, 8, 1, 6, 9, 5, 1, 1, 1, 12, 100, 27, 10, 3, 1, 1]
    dense = g.input("dense", TensorProto.FLOAT, ["batch", 13])
    sparse = g.input("sparse", TensorProto.INT64, ["batch", sum(hot)])
    bottom = g.mlp(dense, [13, 512, 256, 128])
    feats, start = [bottom], 0
    for h in hot:
        feats.append(g.bag(g.table(ROWS, 128), g.columns(sparse, start, start + h)))
        start += h
    x0 = g.node("Concat", feats, axis=1)  # [B, 27 * 128 = 3456]
    x = x0
    for _ in range(3):  # DCN-v2 low-rank cross: x0 * (V (U x) + b) + x
        low = g.node("MatMul", [x, g.weight((3456, 512))])
        up = g.node("Add", [g.node("MatMul", [low, g.weight((512, 3456))]), g.weight((3456,), 0.1)])
        x = g.node("Add", [g.node("Mul", [x0, up]), x])
    logit = g.mlp(x, [3456, 1024, 1024, 512, 256, 1], last_activation=False, form="matmul")
    g.output("click_prob", g.node("Sigmoid", [logit]), TensorProto.FLOAT, ["batch", 1])
    return g.model()


def dlrm_kaggle():
    g = Graph("dlrm_kaggle", 2)
    dense = g.input("dense", TensorProto.FLOAT, ["batch", 13])
    sparse = g.input("sparse", TensorProto.INT64, ["batch", 26])
    bottom = g.mlp(dense, [13, 512, 256, 64, 16])
    feats = [g.node("Unsqueeze", [bottom, g.const(np.array([1], np.int64))])]
    for t in range(26):
        rows = g.node("Gather", [g.table(ROWS, 16), g.column(sparse, t)])
        feats.append(g.node("Unsqueeze", [rows, g.const(np.array([1], np.int64))]))
    t = g.node("Concat", feats, axis=1)  # [B, 27, 16]
    z = g.node("MatMul", [t, g.node("Transpose", [t], perm=[0, 2, 1])])  # [B, 27, 27]
    flat = g.flatten_batch(z)
    lower = [i * 27 + j for i in range(27) for j in range(i)]
    tri = g.node("Gather", [flat, g.const(np.array(lower, np.int64))], axis=1)  # [B, 351]
    top = g.node("Concat", [bottom, tri], axis=1)  # [B, 367]
    logit = g.mlp(top, [367, 512, 256, 1], last_activation=False)
    g.output("click_prob", g.node("Sigmoid", [logit]), TensorProto.FLOAT, ["batch", 1])
    return g.model()


def dcnv2():
    g = Graph("dcnv2", 3)
    dense = g.input("dense", TensorProto.FLOAT, ["batch", 13])
    sparse = g.input("sparse", TensorProto.INT64, ["batch", 26])
    embs = [g.node("Gather", [g.table(ROWS, 16), g.column(sparse, t)]) for t in range(26)]
    x0 = g.node("Concat", [dense] + embs, axis=1)  # [B, 429]
    x = x0
    for _ in range(3):  # full-rank cross: x0 * (x W + b) + x
        x = g.node("Add", [g.node("Mul", [x0, g.linear(x, 429, 429, "matmul")]), x])
    deep = g.mlp(x0, [429, 512, 256])
    logit = g.linear(g.node("Concat", [x, deep], axis=1), 685, 1)
    g.output("click_prob", g.node("Sigmoid", [logit]), TensorProto.FLOAT, ["batch", 1])
    return g.model()


def deepfm():
    g = Graph("deepfm", 4)
    fields, dim, per_field = 39, 10, 1000
    ids = g.input("ids", TensorProto.INT64, ["batch", fields])
    shifted = g.node("Add", [ids, g.const(np.arange(fields, dtype=np.int64) * per_field)])
    emb = g.node("Gather", [g.table(fields * per_field, dim), shifted])  # [B, 39, 10]
    first = g.node("ReduceSum", [g.node("Gather", [g.table(fields * per_field, 1), shifted]),
                                 g.const(np.array([1, 2], np.int64))], keepdims=0)  # [B]
    axis1 = g.const(np.array([1], np.int64))
    sum_sq = g.node("Pow", [g.node("ReduceSum", [emb, axis1], keepdims=0), g.const(np.float32(2.0))])
    sq_sum = g.node("ReduceSum", [g.node("Mul", [emb, emb]), axis1], keepdims=0)
    fm = g.node("Mul", [g.node("ReduceSum", [g.node("Sub", [sum_sq, sq_sum]), axis1], keepdims=0),
                        g.const(np.float32(0.5))])  # [B]
    deep = g.mlp(g.flatten_batch(emb), [390, 400, 400, 400, 1], last_activation=False)
    logit = g.node("Add", [g.node("Unsqueeze", [g.node("Add", [first, fm]), axis1]), deep])
    g.output("click_prob", g.node("Sigmoid", [logit]), TensorProto.FLOAT, ["batch", 1])
    return g.model()


def wide_deep():
    g = Graph("wide_deep", 5)
    dense = g.input("dense", TensorProto.FLOAT, ["batch", 13])
    sparse = g.input("sparse", TensorProto.INT64, ["batch", 26])
    crossed = g.input("crossed", TensorProto.INT64, ["batch", 20])
    wide = g.bag(g.table(ROWS, 1), crossed)  # [B, 1]
    embs = [g.node("Gather", [g.table(ROWS, 32), g.column(sparse, t)]) for t in range(26)]
    deep = g.mlp(g.node("Concat", embs + [dense], axis=1), [845, 1024, 512, 256, 1], last_activation=False)
    g.output("click_prob", g.node("Sigmoid", [g.node("Add", [wide, deep])]), TensorProto.FLOAT, ["batch", 1])
    return g.model()


def din():
    g = Graph("din", 6)
    T, d = 50, 64
    item_t, cat_t = g.table(ROWS, d), g.table(ROWS, d)
    cand_item = g.input("cand_item", TensorProto.INT64, ["batch"])
    cand_cat = g.input("cand_cat", TensorProto.INT64, ["batch"])
    hist_item = g.input("hist_item", TensorProto.INT64, ["batch", T])
    hist_cat = g.input("hist_cat", TensorProto.INT64, ["batch", T])
    hist_len = g.input("hist_len", TensorProto.INT64, ["batch"])
    q = g.node("Concat", [g.node("Gather", [item_t, cand_item]), g.node("Gather", [cat_t, cand_cat])], axis=1)
    k = g.node("Concat", [g.node("Gather", [item_t, hist_item]), g.node("Gather", [cat_t, hist_cat])], axis=2)
    axis1 = g.const(np.array([1], np.int64))
    qt = g.node("Expand", [g.node("Unsqueeze", [q, axis1]), g.node("Shape", [k])])  # [B, T, 128]
    att_in = g.node("Concat", [qt, k, g.node("Sub", [qt, k]), g.node("Mul", [qt, k])], axis=2)
    h = att_in
    for kk, n in [(512, 80), (80, 40)]:
        h = g.node("Sigmoid", [g.linear(h, kk, n, "matmul")])
    score = g.node("Squeeze", [g.linear(h, 40, 1, "matmul"), g.const(np.array([2], np.int64))])  # [B, T]
    positions = g.node("Range", [g.const(np.int64(0)), g.const(np.int64(T)), g.const(np.int64(1))])
    mask = g.node("Less", [positions, g.node("Unsqueeze", [hist_len, axis1])])  # [B, T]
    masked = g.node("Where", [mask, score, g.const(np.float32(-1e9))])
    weights = g.node("Softmax", [masked], axis=1)
    pooled = g.node("Squeeze", [g.node("MatMul", [g.node("Unsqueeze", [weights, axis1]), k]), axis1])
    logit = g.mlp(g.node("Concat", [pooled, q], axis=1), [256, 80, 40, 1], last_activation=False)
    g.output("click_prob", g.node("Sigmoid", [logit]), TensorProto.FLOAT, ["batch", 1])
    return g.model()


def two_tower():
    g = Graph("two_tower", 7)

    def tower(name, fields):
        ids = g.input(name, TensorProto.INT64, ["batch", fields])
        embs = [g.node("Gather", [g.table(ROWS, 32), g.column(ids, f)]) for f in range(fields)]
        x = g.mlp(g.node("Concat", embs, axis=1), [fields * 32, 64, 128, 64], last_activation=False)
        norm = g.node("Sqrt", [g.node("ReduceSum", [g.node("Mul", [x, x]), g.const(np.array([1], np.int64))])])
        return g.node("Div", [x, norm])

    u, i = tower("user", 8), tower("item", 6)
    dot = g.node("ReduceSum", [g.node("Mul", [u, i]), g.const(np.array([1], np.int64))])
    g.output("score", g.node("Sigmoid", [dot]), TensorProto.FLOAT, ["batch", 1])
    return g.model()


def minilm(seq, opset):
    g = Graph(f"minilm_l6_s{seq}", 8 + seq)
    hidden, heads, ffn, layers, vocab = 384, 12, 1536, 6, 8192
    head_dim = hidden // heads
    ids = g.input("input_ids", TensorProto.INT64, ["batch", seq])
    mask = g.input("attention_mask", TensorProto.INT64, ["batch", seq])
    positions = g.node("Range", [g.const(np.int64(0)), g.node("Gather", [g.node("Shape", [ids]), g.const(np.int64(1))]),
                                 g.const(np.int64(1))])
    x = g.node("Add", [g.node("Gather", [g.table(vocab, hidden), ids]),
                       g.node("Gather", [g.table(512, hidden), positions])])
    x = g.layer_norm(x, hidden, opset)
    # Additive mask: (1 - mask) * -10000, broadcast over heads and queries.
    m = g.node("Cast", [g.node("Unsqueeze", [mask, g.const(np.array([1, 2], np.int64))])], to=TensorProto.FLOAT)
    additive = g.node("Mul", [g.node("Sub", [g.const(np.float32(1.0)), m]), g.const(np.float32(-10000.0))])
    split_shape = g.const(np.array([0, 0, heads, head_dim], np.int64))
    merge_shape = g.const(np.array([0, 0, hidden], np.int64))
    for _ in range(layers):
        def heads_of(v):
            return g.node("Transpose", [g.node("Reshape", [v, split_shape])], perm=[0, 2, 1, 3])
        q = heads_of(g.linear(x, hidden, hidden, "matmul"))
        k = heads_of(g.linear(x, hidden, hidden, "matmul"))
        v = heads_of(g.linear(x, hidden, hidden, "matmul"))
        scores = g.node("Div", [g.node("MatMul", [q, g.node("Transpose", [k], perm=[0, 1, 3, 2])]),
                                g.const(np.float32(np.sqrt(head_dim)))])
        probs = g.node("Softmax", [g.node("Add", [scores, additive])], axis=-1)
        ctx = g.node("Reshape", [g.node("Transpose", [g.node("MatMul", [probs, v])], perm=[0, 2, 1, 3]),
                                 merge_shape])
        x = g.layer_norm(g.node("Add", [g.linear(ctx, hidden, hidden, "matmul"), x]), hidden, opset)
        h = g.gelu(g.linear(x, hidden, ffn, "matmul"))
        x = g.layer_norm(g.node("Add", [g.linear(h, ffn, hidden, "matmul"), x]), hidden, opset)
    # Mean pooling over the unmasked tokens.
    m2 = g.node("Cast", [g.node("Unsqueeze", [mask, g.const(np.array([2], np.int64))])], to=TensorProto.FLOAT)
    summed = g.node("ReduceSum", [g.node("Mul", [x, m2]), g.const(np.array([1], np.int64))], keepdims=0)
    count = g.node("Max", [g.node("ReduceSum", [m2, g.const(np.array([1], np.int64))], keepdims=0),
                           g.const(np.float32(1e-9))])
    g.output("embedding", g.node("Div", [summed, count]), TensorProto.FLOAT, ["batch", hidden])
    return g.model(opset)


MODELS = {
    "dlrm_mlperf": dlrm_mlperf,
    "dlrm_kaggle": dlrm_kaggle,
    "dcnv2": dcnv2,
    "deepfm": deepfm,
    "wide_deep": wide_deep,
    "din": din,
    "two_tower": two_tower,
    "minilm_l6_s64": lambda: minilm(64, 14),
    "minilm_l6_s128": lambda: minilm(128, 17),
}


def random_inputs(model, batch, seed=0):
    """Dense features normal, ids uniform over the rows of the tables, masks and
    lengths valid: the same rule for every zoo model."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for inp in model.graph.input:
        dims = [batch if d.dim_param else d.dim_value for d in inp.type.tensor_type.shape.dim]
        if inp.type.tensor_type.elem_type == TensorProto.FLOAT:
            feeds[inp.name] = rng.standard_normal(dims).astype(np.float32)
        elif inp.name == "attention_mask":
            lengths = rng.integers(1, dims[1] + 1, dims[0])
            feeds[inp.name] = (np.arange(dims[1])[None, :] < lengths[:, None]).astype(np.int64)
        elif inp.name == "hist_len":
            feeds[inp.name] = rng.integers(1, 51, dims).astype(np.int64)
        elif inp.name == "input_ids":
            feeds[inp.name] = rng.integers(0, 8192, dims).astype(np.int64)
        elif inp.name == "ids":  # deepfm: per-field ids below per_field
            feeds[inp.name] = rng.integers(0, 1000, dims).astype(np.int64)
        else:
            feeds[inp.name] = rng.integers(0, ROWS, dims).astype(np.int64)
    return feeds


def write(name, out_dir, batch):
    import onnxruntime as ort

    model = MODELS[name]()
    folder = os.path.join(out_dir, name)
    case = os.path.join(folder, "test_data_set_0")
    os.makedirs(case, exist_ok=True)
    onnx.save(model, os.path.join(folder, "model.onnx"))
    feeds = random_inputs(model, batch)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    outputs = session.run(None, feeds)
    for i, inp in enumerate(model.graph.input):
        with open(os.path.join(case, f"input_{i}.pb"), "wb") as f:
            f.write(numpy_helper.from_array(feeds[inp.name], inp.name).SerializeToString())
    for i, (out, value) in enumerate(zip(model.graph.output, outputs)):
        with open(os.path.join(case, f"output_{i}.pb"), "wb") as f:
            f.write(numpy_helper.from_array(value, out.name).SerializeToString())
    return folder


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out")
    parser.add_argument("--models", nargs="*", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()
    for name in args.models:
        print(write(name, args.out, args.batch))


if __name__ == "__main__":
    main()
