"""f16 and bf16 tensors end to end: graph inputs, outputs, initialisers and
tables stored at 16 bits, the arithmetic in f32 (kiln-widen-half), compiled
with a dynamic batch and run at a padded batch.

kiln rounds to 16 bits only where the model stores a tensor, so it is
checked tightly against numpy computing the same graph in f32 from the
16-bit inputs and rounding the outputs (one 16-bit rounding apart), and
loosely against onnxruntime, which rounds after every op."""
import ml_dtypes
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import kiln

BF16 = ml_dtypes.bfloat16
rng = np.random.default_rng(11)


def ulps(have, want, dtype):
    """Largest difference in units of the 16-bit type's spacing at `want`."""
    want32 = want.astype(np.float32)
    spacing = np.maximum(np.abs(want32), np.float32(ml_dtypes.finfo(dtype).tiny))
    eps = np.float32(ml_dtypes.finfo(dtype).eps)
    return float(np.max(np.abs(have.astype(np.float32) - want32) / (spacing * eps)))


def save(model, tmp_path, name="model.onnx"):
    onnx.checker.check_model(model)
    path = str(tmp_path / name)
    onnx.save(model, path)
    return path


def mlp(dtype):
    """x @ W + b, ReLU, a layer norm, then softmax and a concat of two stages."""
    onnx_type = TensorProto.FLOAT16 if dtype == np.float16 else TensorProto.BFLOAT16
    w = rng.standard_normal((8, 6)).astype(dtype)
    b = rng.standard_normal(6).astype(dtype)
    scale = (rng.random(6) + 0.5).astype(dtype)
    inits = [numpy_helper.from_array(np.asarray(v), n) for v, n in
             [(w, "W"), (b, "b"), (scale, "scale")]]
    if dtype == BF16:  # numpy_helper stores ml_dtypes' bf16 as its bits
        for t, v in zip(inits, [w, b, scale]):
            t.CopyFrom(helper.make_tensor(t.name, onnx_type, v.shape, v.view(np.uint16).tobytes(),
                                          raw=True))
    nodes = [
        helper.make_node("MatMul", ["x", "W"], ["m"]),
        helper.make_node("Add", ["m", "b"], ["a"]),
        helper.make_node("Relu", ["a"], ["r"]),
        helper.make_node("LayerNormalization", ["r", "scale"], ["n"], axis=-1, epsilon=1e-5),
        helper.make_node("Softmax", ["n"], ["s"], axis=1),
        helper.make_node("Concat", ["s", "a"], ["y"], axis=1),
    ]
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", onnx_type, ["N", 8])],
                              [helper.make_tensor_value_info("y", onnx_type, ["N", 12])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)

    def reference(x):
        f = lambda v: v.astype(np.float32)
        a = f(x) @ f(w) + f(b)
        r = np.maximum(a, 0)
        mu, var = r.mean(1, keepdims=True), r.var(1, keepdims=True)
        n = (r - mu) / np.sqrt(var + 1e-5) * f(scale)
        e = np.exp(n - n.max(1, keepdims=True))
        return np.concatenate([e / e.sum(1, keepdims=True), a], 1).astype(dtype)

    return model, reference


@pytest.mark.parametrize("dtype", [np.float16, BF16], ids=["f16", "bf16"])
def test_mlp_at_16_bits(tmp_path, dtype):
    model, reference = mlp(dtype)
    so = kiln.compile(save(model, tmp_path), str(tmp_path / "m.so"), batch=[1, 4])
    x = rng.standard_normal((3, 8)).astype(dtype)  # padded into bucket 4
    with kiln.load(so) as m:
        assert m.inputs[0].dtype == np.dtype(dtype) and m.outputs[0].dtype == np.dtype(dtype)
        y = m.run({"x": x})["y"]
    assert y.dtype == np.dtype(dtype) and y.shape == (3, 12)
    assert ulps(y, reference(x), dtype) <= 1.0
    if dtype == np.float16:  # onnxruntime rounds every op's result to f16
        want = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]
        np.testing.assert_allclose(y.astype(np.float32), want.astype(np.float32), rtol=1e-2,
                                   atol=2e-3)


def test_bf16_table_lookup_pooled_in_f32(tmp_path):
    """Rows gathered from a bf16 table stay bf16; their sum over the bag is
    f32 arithmetic, returned both as f32 and rounded to bf16."""
    table = rng.standard_normal((50, 4)).astype(BF16)
    init = helper.make_tensor("table", TensorProto.BFLOAT16, table.shape,
                              table.view(np.uint16).tobytes(), raw=True)
    nodes = [
        helper.make_node("Gather", ["table", "ids"], ["rows"], axis=0),
        helper.make_node("ReduceSum", ["rows", "axes"], ["pooled"], keepdims=0),
        helper.make_node("Cast", ["pooled"], ["pooled_f32"], to=TensorProto.FLOAT),
    ]
    graph = helper.make_graph(
        nodes, "bag", [helper.make_tensor_value_info("ids", TensorProto.INT64, ["N", 3])],
        [helper.make_tensor_value_info("pooled", TensorProto.BFLOAT16, ["N", 4]),
         helper.make_tensor_value_info("pooled_f32", TensorProto.FLOAT, ["N", 4]),
         helper.make_tensor_value_info("rows", TensorProto.BFLOAT16, ["N", 3, 4])],
        [init, numpy_helper.from_array(np.array([1], np.int64), "axes")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    so = kiln.compile(save(model, tmp_path), str(tmp_path / "m.so"), batch=[8])
    ids = rng.integers(0, 50, (5, 3)).astype(np.int64)
    with kiln.load(so) as m:
        out = m.run({"ids": ids})
    np.testing.assert_array_equal(out["rows"].view(np.uint16), table[ids].view(np.uint16))
    exact = table[ids].astype(np.float32).sum(1)
    pooled = out["pooled"].astype(np.float32)
    assert ulps(out["pooled"], exact.astype(BF16), BF16) <= 1.0
    np.testing.assert_allclose(out["pooled_f32"], pooled)  # the bf16 result, widened


def test_f16_casts_round_to_nearest_even(tmp_path):
    """Cast to f16 and bf16 of values at ties, past the range, subnormal, NaN."""
    values = np.array([1.0 + 2.0**-11, 1.0 + 3 * 2.0**-11, 65520.0, -70000.0, 2.0**-25,
                       3 * 2.0**-25, 1e-8, np.nan, np.inf, -0.0, 1.00390625, 1.01171875],
                      np.float32)
    nodes = [helper.make_node("Cast", ["x"], ["h"], to=TensorProto.FLOAT16),
             helper.make_node("Cast", ["x"], ["b"], to=TensorProto.BFLOAT16)]
    graph = helper.make_graph(
        nodes, "casts", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 12])],
        [helper.make_tensor_value_info("h", TensorProto.FLOAT16, ["N", 12]),
         helper.make_tensor_value_info("b", TensorProto.BFLOAT16, ["N", 12])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    so = kiln.compile(save(model, tmp_path), str(tmp_path / "m.so"), batch=[2])
    with kiln.load(so) as m:
        out = m.run({"x": values[None]})
    with np.errstate(over="ignore"):  # the values past the range are the point
        want = values.astype(np.float16)
    np.testing.assert_array_equal(out["h"][0].view(np.uint16), want.view(np.uint16))
    np.testing.assert_array_equal(out["b"][0].view(np.uint16), values.astype(BF16).view(np.uint16))
