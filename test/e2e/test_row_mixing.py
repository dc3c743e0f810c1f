"""Models whose rows depend on other rows of the batch, with shapes that do
not show it: kiln refuses them by default, naming the op, since padding a
request to its bucket would change the answer; with
--row-mixing=exact-buckets they compile and run only at bucket batch sizes,
matching onnxruntime there."""
import subprocess

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import kiln

F = TensorProto.FLOAT
WIDTH = 6
rng = np.random.default_rng(19)


def model(nodes, inits=()):
    graph = helper.make_graph(
        nodes, "rows", [helper.make_tensor_value_info("x", F, ["N", WIDTH])],
        [helper.make_tensor_value_info("y", F, ["N", WIDTH])],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in inits])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


# name: (nodes, initialisers, the node and op the refusal names, how)
MIXING = {
    # Softmax over the batch (axis 0).
    "softmax_batch": ([helper.make_node("Softmax", ["x"], ["y"], name="over_batch", axis=0)], (),
                      "over_batch", "kiln.softmax' normalises along the batch axis"),
    # BatchNorm in training form: centred and scaled by the batch's statistics.
    "batch_norm_training": (
        [helper.make_node("ReduceMean", ["x"], ["m"], name="batch_mean", axes=[0]),
         helper.make_node("Sub", ["x", "m"], ["d"]),
         helper.make_node("Mul", ["d", "d"], ["d2"]),
         helper.make_node("ReduceMean", ["d2"], ["v"], axes=[0]),
         helper.make_node("Add", ["v", "eps"], ["ve"]),
         helper.make_node("Sqrt", ["ve"], ["s"]),
         helper.make_node("Div", ["d", "s"], ["y"])],
        [("eps", np.float32(1e-5))], "batch_mean", "kiln.reduce_mean' reduces along the batch axis"),
    # In-batch similarity: (x x^T) x, each row a mix of all.
    "matmul_across_batch": (
        [helper.make_node("Transpose", ["x"], ["xt"], perm=[1, 0]),
         helper.make_node("MatMul", ["x", "xt"], ["g"], name="similarity"),
         helper.make_node("MatMul", ["g", "x"], ["y"])],
        (), "similarity", "multiplies rows of the batch by other rows of the batch"),
}


def save(tmp_path, m):
    path = tmp_path / "model.onnx"
    onnx.save(m, path)
    return path


def reference(m, x):
    return ort.InferenceSession(m.SerializeToString(),
                                providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


@pytest.mark.parametrize("case", sorted(MIXING))
def test_refused_by_default_naming_the_op(case, tmp_path):
    nodes, inits, node, why = MIXING[case]
    with pytest.raises(kiln.Error) as e:
        kiln.compile(save(tmp_path, model(nodes, inits)), tmp_path / "m.so", batch=[1, 4])
    message = str(e.value)
    assert f"node '{node}'" in message and why in message, message
    assert "--row-mixing=exact-buckets" in message


@pytest.mark.parametrize("case", sorted(MIXING))
def test_exact_buckets_runs_only_at_buckets(case, tmp_path):
    nodes, inits, _, _ = MIXING[case]
    m = model(nodes, inits)
    so = kiln.compile(save(tmp_path, m), tmp_path / "m.so", batch=[1, 4],
                      extra_args=["--row-mixing", "exact-buckets"])
    with kiln.load(so) as compiled:
        assert compiled.exact_buckets
        for n in (1, 4):
            x = rng.standard_normal((n, WIDTH)).astype(np.float32)
            np.testing.assert_allclose(compiled.run({"x": x})["y"], reference(m, x),
                                       rtol=1e-4, atol=1e-5)
        # Batch 3 would run padded in the batch-4 bucket: refused.
        with pytest.raises(kiln.Error, match="exact-buckets"):
            compiled.run({"x": rng.standard_normal((3, WIDTH)).astype(np.float32)})


def test_padding_would_change_the_answer(tmp_path):
    # Why the refusal matters: at batch 3 the softmax over the batch differs
    # from the one over the 4 rows of the padded bucket.
    nodes, inits, _, _ = MIXING["softmax_batch"]
    m = model(nodes, inits)
    x = rng.standard_normal((3, WIDTH)).astype(np.float32)
    padded = np.concatenate([x, np.zeros((1, WIDTH), np.float32)])
    assert not np.allclose(reference(m, x), reference(m, padded)[:3], atol=1e-3)


def test_per_row_model_still_pads(tmp_path):
    # Softmax over features, a per-row normalisation and a product with a
    # weight: proved per row, compiled by default, padded batches allowed.
    m = model([helper.make_node("Softmax", ["x"], ["s"], axis=1),
               helper.make_node("ReduceMean", ["s"], ["m"], axes=[1]),
               helper.make_node("Sub", ["s", "m"], ["d"]),
               helper.make_node("MatMul", ["d", "w"], ["y"])],
              [("w", rng.standard_normal((WIDTH, WIDTH)).astype(np.float32))])
    so = kiln.compile(save(tmp_path, m), tmp_path / "m.so", batch=[1, 4])
    x = rng.standard_normal((3, WIDTH)).astype(np.float32)
    with kiln.load(so) as compiled:
        assert not compiled.exact_buckets
        np.testing.assert_allclose(compiled.run({"x": x})["y"], reference(m, x), rtol=1e-4, atol=1e-5)


def test_inspect_and_package_see_the_flag(kiln_bin, tmp_path):
    nodes, inits, _, _ = MIXING["softmax_batch"]
    so = kiln.compile(save(tmp_path, model(nodes, inits)), tmp_path / "m.so", batch=[2],
                      extra_args=["--row-mixing", "exact-buckets"])
    inspect = subprocess.run([kiln_bin, "inspect", so, "--json"], capture_output=True, text=True)
    assert inspect.returncode == 0 and '"exact_buckets": true' in inspect.stdout, inspect.stdout
    # A Triton model repository would let the dynamic batcher combine
    # requests into a padded batch: refused.
    package = subprocess.run([kiln_bin, "package", so, "--repo", tmp_path / "repo"],
                             capture_output=True, text=True)
    assert package.returncode != 0 and "exact-buckets" in package.stderr, package.stderr
