"""Each supported op as a one-node model with a dynamic batch, compiled and
run at a padded batch, against onnxruntime."""
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import kiln

F, I64, B = TensorProto.FLOAT, TensorProto.INT64, TensorProto.BOOL
BATCH = 3
rng = np.random.default_rng(7)


def f32(*shape):
    return rng.standard_normal(shape).astype(np.float32)


def i64(*values):
    return np.array(values, dtype=np.int64)


# name: (op, attrs, [(input name, dtype, shape without batch)], {initialisers}, output shape, opset)
CASES = {
    "gemm_trans_b": ("Gemm", dict(transB=1, alpha=0.5, beta=2.0), [("x", F, [5])],
                     {"w": f32(4, 5), "c": f32(4)}, [4], 17),
    "matmul_batched": ("MatMul", {}, [("x", F, [2, 3, 5])], {"w": f32(5, 4)}, [2, 3, 4], 17),
    "matmul_broadcast_batch": ("MatMul", {}, [("x", F, [1, 3, 5])], {"w": f32(2, 5, 4)}, [2, 3, 4], 17),
    "add_broadcast": ("Add", {}, [("x", F, [3, 4])], {"y": f32(1, 4)}, [3, 4], 17),
    "sub": ("Sub", {}, [("x", F, [4])], {"y": f32(4)}, [4], 17),
    "mul_scalar": ("Mul", {}, [("x", F, [4])], {"y": np.float32(3.0)}, [4], 17),
    "div": ("Div", {}, [("x", F, [4])], {"y": f32(4) + 4.0}, [4], 17),
    "div_int": ("Div", {}, [("x", I64, [4])], {"y": i64(3, -2, 5, 7)}, [4], 17),
    "relu": ("Relu", {}, [("x", F, [6])], {}, [6], 17),
    "sigmoid": ("Sigmoid", {}, [("x", F, [6])], {}, [6], 17),
    "tanh": ("Tanh", {}, [("x", F, [6])], {}, [6], 17),
    "exp": ("Exp", {}, [("x", F, [6])], {}, [6], 17),
    "erf": ("Erf", {}, [("x", F, [6])], {}, [6], 17),
    "neg": ("Neg", {}, [("x", F, [6])], {}, [6], 17),
    "abs": ("Abs", {}, [("x", F, [6])], {}, [6], 17),
    "cast_to_int": ("Cast", dict(to=I64), [("x", F, [6])], {}, [6], 17),
    "softmax_last": ("Softmax", {}, [("x", F, [3, 5])], {}, [3, 5], 17),
    "softmax_middle": ("Softmax", dict(axis=1), [("x", F, [3, 5])], {}, [3, 5], 17),
    "softmax_opset11_coerced": ("Softmax", dict(axis=1), [("x", F, [3, 5])], {}, [3, 5], 11),
    "concat": ("Concat", dict(axis=1), [("x", F, [2, 3])], {"y": f32(1, 4, 3)[0:1].repeat(BATCH, 0)}, [6, 3], 17),
    "transpose": ("Transpose", dict(perm=[0, 3, 1, 2]), [("x", F, [2, 3, 4])], {}, [4, 2, 3], 17),
    "gather_axis1": ("Gather", dict(axis=1), [("x", F, [5, 3])], {"i": i64(4, -1, 0)}, [3, 3], 17),
    "reduce_sum": ("ReduceSum", dict(keepdims=0), [("x", F, [3, 4])], {"axes": i64(1)}, [4], 17),
    "reduce_mean_keep": ("ReduceMean", dict(axes=[-1]), [("x", F, [3, 4])], {}, [3, 1], 17),
    "slice_step": ("Slice", {}, [("x", F, [10])], {"s": i64(8), "e": i64(1), "a": i64(1), "st": i64(-3)}, [3], 17),
    "flatten": ("Flatten", dict(axis=1), [("x", F, [2, 3])], {}, [6], 17),
    "unsqueeze": ("Unsqueeze", {}, [("x", F, [4])], {"a": i64(-1)}, [4, 1], 17),
    "squeeze": ("Squeeze", {}, [("x", F, [1, 4])], {"a": i64(1)}, [4], 17),
}


def build(op, attrs, inputs, inits, out_shape, opset):
    graph_inputs = [helper.make_tensor_value_info(n, t, ["batch", *s]) for n, t, s in inputs]
    names = [n for n, _, _ in inputs] + list(inits)
    out_type = I64 if op == "Cast" or inputs[0][1] == I64 else F
    if op == "Gather":
        names = [inputs[0][0], "i"]
    node = helper.make_node(op, names, ["out"], name=f"{op.lower()}_node", **attrs)
    graph = helper.make_graph(
        [node], op, graph_inputs,
        [helper.make_tensor_value_info("out", out_type, ["batch", *out_shape])],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


@pytest.mark.parametrize("case", sorted(CASES))
def test_op_matches_onnxruntime(case, tmp_path):
    op, attrs, inputs, inits, out_shape, opset = CASES[case]
    if case == "concat":
        # The second operand is batched too: make it an input.
        inputs = inputs + [("y", F, [4, 3])]
        inits = {}
    model = build(op, attrs, inputs, inits, out_shape, opset)
    onnx.save(model, tmp_path / "model.onnx")
    kiln.compile(tmp_path / "model.onnx", tmp_path / "model.so", batch=[1, 4])
    feeds = {}
    for name, dtype, shape in inputs:
        feeds[name] = (rng.integers(-9, 10, (BATCH, *shape)).astype(np.int64) if dtype == I64
                       else f32(BATCH, *shape))
    expected = ort.InferenceSession(model.SerializeToString(),
                                    providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    with kiln.load(tmp_path / "model.so") as compiled:
        got = compiled.run(feeds)["out"]
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def compile_chain(nodes, inits, width, out_width, tmp_path):
    """A graph x [N, width] -> out [N, out_width] of `nodes`, compiled with
    buckets 1 and 4."""
    graph = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", F, ["N", width])],
                              [helper.make_tensor_value_info("out", F, ["N", out_width])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, tmp_path / "model.onnx")
    kiln.compile(tmp_path / "model.onnx", tmp_path / "model.so", batch=[1, 4])
    return tmp_path / "model.so"


@pytest.mark.parametrize("batch", [1, 3])
def test_a_slice_feeding_a_kernel(batch, tmp_path):
    # Exp -> Slice(columns 1:4) -> Relu. In the batch-1 bucket the slice is one
    # contiguous run of the exp's buffer and runs as a view (no copy); in the
    # batch-4 bucket it is strided and copied.
    nodes = [helper.make_node("Exp", ["x"], ["e"]),
             helper.make_node("Slice", ["e", "s", "t", "a"], ["c"]),
             helper.make_node("Relu", ["c"], ["out"])]
    inits = [numpy_helper.from_array(i64(*v), n) for n, v in [("s", [1]), ("t", [4]), ("a", [1])]]
    x = f32(batch, 6)
    with kiln.load(compile_chain(nodes, inits, 6, 3, tmp_path)) as compiled:
        got = compiled.run({"x": x})["out"]
    np.testing.assert_allclose(got, np.maximum(np.exp(x[:, 1:4]), 0), rtol=1e-6)


def test_a_product_with_a_view_of_its_operand(tmp_path):
    # t = x + 1; y = t * t[:, 3:4]. At batch 1 the slice is a view into t's
    # buffer; the product must not overwrite t while it still reads the view
    # (it used to, and every element after the fourth came out wrong).
    nodes = [helper.make_node("Add", ["x", "one"], ["t"]),
             helper.make_node("Slice", ["t", "s", "e", "a"], ["c"]),
             helper.make_node("Mul", ["t", "c"], ["out"])]
    inits = [numpy_helper.from_array(np.float32(1), "one")] + [
        numpy_helper.from_array(i64(v), n) for n, v in [("s", 3), ("e", 4), ("a", 1)]]
    with kiln.load(compile_chain(nodes, inits, 8, 8, tmp_path)) as compiled:
        for batch in [1, 3]:
            x = f32(batch, 8)
            t = x + 1
            np.testing.assert_allclose(compiled.run({"x": x})["out"], t * t[:, 3:4], rtol=1e-6)
