"""End to end: the generated DLRM-style example compiled at buckets 1, 8, 64,
run through the Python package and the CLI, compared with onnxruntime."""
import os
import subprocess

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import dlrm_mlp
import kiln

RTOL, ATOL = 1e-4, 1e-5
BUCKETS = [1, 8, 64]


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    out = tmp_path_factory.mktemp("dlrm_mlp")
    model = dlrm_mlp.build()
    onnx.save(model, out / "model.onnx")
    dlrm_mlp.reference_case(model, str(out), batch=8)
    kiln.compile(out / "model.onnx", out / "model.so", batch=BUCKETS)
    return out


def inputs(batch, seed):
    rng = np.random.default_rng(seed)
    return {"dense": rng.standard_normal((batch, 13)).astype(np.float32),
            "ids": rng.integers(0, 1000, (batch, 8, 4)).astype(np.int64)}


@pytest.mark.parametrize("batch", [1, 2, 7, 8, 9, 33, 64])
def test_matches_onnxruntime_at_every_batch(example, batch):
    feeds = inputs(batch, seed=batch)
    session = ort.InferenceSession(str(example / "model.onnx"), providers=["CPUExecutionProvider"])
    (expected,) = session.run(None, feeds)
    with kiln.load(example / "model.so") as model:
        got = model.run(feeds)["click_prob"]
    assert got.shape == (batch, 1)
    np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL)


def test_describes_inputs_outputs_and_buckets(example):
    with kiln.load(example / "model.so") as model:
        assert [(i.name, i.dtype, i.shape) for i in model.inputs] == [
            ("dense", np.float32, (None, 13)), ("ids", np.int64, (None, 8, 4))]
        bounds = model.inputs[1].index_bounds
        assert bounds.shape == (8 * 4, 2)
        assert (bounds == [-1000, 999]).all()
        assert [(o.name, o.shape) for o in model.outputs] == [("click_prob", (None, 1))]
        assert model.buckets == BUCKETS
        for arena, bound in zip(model.arena_bytes, model.arena_lower_bound):
            assert bound <= arena <= 1.1 * bound


def test_a_binding_reruns_on_new_values_into_given_outputs(example):
    feeds = inputs(5, seed=3)
    out = np.full((5, 1), np.nan, np.float32)
    with kiln.load(example / "model.so") as model:
        bound = model.bind(feeds, {"click_prob": out})
        assert bound.run()["click_prob"] is out
        np.testing.assert_array_equal(out, model.run(feeds)["click_prob"])
        # New values written into the bound input arrays are what the next run reads.
        fresh = inputs(5, seed=4)
        feeds["dense"][...] = fresh["dense"]
        feeds["ids"][...] = fresh["ids"]
        bound.run()
        np.testing.assert_array_equal(out, model.run(fresh)["click_prob"])
        with pytest.raises(kiln.Error, match="output 'click_prob' must be a C-contiguous float32 array of shape \\(5, 1\\)"):
            model.bind(feeds, {"click_prob": np.empty((4, 1), np.float32)})


def test_runtime_errors_raise_with_the_runtime_message(example):
    with kiln.load(example / "model.so") as model:
        bad = inputs(2, seed=0)
        bad["ids"][1, 3, 2] = 1000
        with pytest.raises(kiln.Error, match=r"input 'ids': element 46 \(row 1, position 14\) is 1000, outside the valid ids \[-1000, 999\]"):
            model.run(bad)
        with pytest.raises(kiln.Error, match="batch 65 is outside"):
            model.run(inputs(65, seed=0))
        wrong = inputs(2, seed=0)
        wrong["dense"] = wrong["dense"].astype(np.float64)
        with pytest.raises(kiln.Error, match="dtype is f64, the model expects f32"):
            model.run(wrong)
        with pytest.raises(kiln.Error, match="missing inputs: ids"):
            model.run({"dense": wrong["dense"]})
        # The session is still usable after the failures.
        assert model.run(inputs(2, seed=0))["click_prob"].shape == (2, 1)


def test_compile_errors_raise_with_the_compiler_message(tmp_path):
    with pytest.raises(kiln.Error, match="cannot open the model file"):
        kiln.compile(tmp_path / "missing.onnx", tmp_path / "x.so")


def test_loading_a_non_model_fails_cleanly(tmp_path):
    path = tmp_path / "not_a_model.so"
    path.write_bytes(b"\x7fELF garbage")
    with pytest.raises(kiln.Error, match="not a loadable kiln model"):
        kiln.load(path)


def test_cli_run_writes_outputs_keyed_by_name(example, kiln_bin, tmp_path):
    out = tmp_path / "out.npz"
    proc = subprocess.run([kiln_bin, "run", str(example / "model.so"), "--inputs",
                           str(example / "test_data_set_0"), "--output", str(out), "--repeat", "3"],
                          capture_output=True, text=True, check=True)
    assert "latency (median of 3 runs, batch 8, 1 thread)" in proc.stdout
    expected = onnx.numpy_helper.to_array(
        onnx.load_tensor(str(example / "test_data_set_0" / "output_0.pb")))
    got = np.load(out)
    assert list(got.keys()) == ["click_prob"]
    np.testing.assert_allclose(got["click_prob"], expected, rtol=RTOL, atol=ATOL)

    # An .npz keyed by input name works too, in any key order.
    feeds = inputs(5, seed=3)
    np.savez(tmp_path / "in.npz", ids=feeds["ids"], dense=feeds["dense"])
    subprocess.run([kiln_bin, "run", str(example / "model.so"), "--inputs", str(tmp_path / "in.npz"),
                    "--output", str(out)], capture_output=True, check=True)
    session = ort.InferenceSession(str(example / "model.onnx"), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(np.load(out)["click_prob"], session.run(None, feeds)[0], rtol=RTOL, atol=ATOL)


def test_cli_verify_against_test_case_and_onnxruntime(example, kiln_bin):
    proc = subprocess.run([kiln_bin, "verify", str(example / "model.onnx"), "--inputs",
                           str(example / "test_data_set_0")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "against the test case's outputs" in proc.stdout
    assert "click_prob: max abs error" in proc.stdout
    proc = subprocess.run([kiln_bin, "verify", str(example / "model.onnx"), "--batch", "5"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "against onnxruntime" in proc.stdout


def test_cli_verify_fails_on_a_wrong_reference(example, kiln_bin, tmp_path):
    case = tmp_path / "case"
    case.mkdir()
    for name in ["input_0.pb", "input_1.pb"]:
        (case / name).write_bytes((example / "test_data_set_0" / name).read_bytes())
    expected = onnx.numpy_helper.to_array(
        onnx.load_tensor(str(example / "test_data_set_0" / "output_0.pb")))
    (case / "output_0.pb").write_bytes(
        onnx.numpy_helper.from_array(expected + 1e-3, "click_prob").SerializeToString())
    proc = subprocess.run([kiln_bin, "verify", str(example / "model.onnx"), "--inputs", str(case)],
                          capture_output=True, text=True)
    assert proc.returncode == 1
    assert "FAIL" in proc.stdout
