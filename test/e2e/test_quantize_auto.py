"""kiln compile --quantize auto on real exports (the export corpus's
TorchScript DLRM, DCN-v2, DeepFM and Wide & Deep, fp32): each compiles inside
the default accuracy bound, keeping f32 only what its measured sensitivity
asks for, chosen on validation rows drawn like the corpus's inputs. The model
written is then checked against onnxruntime on other rows of the same kind,
independently of kiln's report."""
import json
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import onnx
import pytest

import kiln
from conftest import ROOT
from test_quantize import inspect

CORPUS = os.path.join(ROOT, "test", "exports", "corpus")
MODELS = ["dlrm", "dcnv2", "deepfm", "wide_deep"]
BATCH = 64


def case(name):
    return os.path.join(CORPUS, f"torch-{name}-torchscript-default-op20-fp32")


def rows(name, n, seed):
    """n rows like the corpus's inputs: dense features N(0, 1), ids uniform
    over the ids its references use."""
    ref = np.load(os.path.join(case(name), "reference.npz"))
    rng = np.random.default_rng(seed)
    dense, ids = ref[f"b{BATCH}.in.dense"], ref[f"b{BATCH}.in.ids"]
    return {"dense": rng.standard_normal((n,) + dense.shape[1:]).astype(np.float32),
            "ids": rng.integers(0, ids.max() + 1, (n,) + ids.shape[1:]).astype(np.int64)}


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    """name -> (.so, report), compiled two at a time (each is many compiles),
    chosen on 5,000 validation rows of the corpus's input distribution."""
    out = tmp_path_factory.mktemp("auto")

    def build(name):
        so, report, validation = out / f"{name}.so", out / f"{name}.json", out / f"{name}.npz"
        np.savez(validation, **rows(name, 5000, seed=1))
        kiln.compile(os.path.join(case(name), "model.onnx"), so, batch=[BATCH], quantize=["auto"],
                     report=report, extra_args=["--validation", str(validation)])
        return so, json.loads(report.read_text())

    with ThreadPoolExecutor(2) as pool:
        return dict(zip(MODELS, pool.map(build, MODELS)))


@pytest.mark.parametrize("name", MODELS)
def test_auto_is_inside_the_bound(compiled, name):
    so, report = compiled[name]
    auto = report["auto"]
    assert report["within_bound"] and report["quantize"] == {"weights": "int8", "table_bits": 8}
    graph = onnx.load(os.path.join(case(name), "model.onnx")).graph
    nodes = {n.name for n in graph.node}
    tables = {t.name for t in graph.initializer}
    units = auto["sensitivity"]
    assert units and all(u["name"] in (tables if u["kind"] == "table" else nodes) for u in units)
    kept = auto["kept_f32"]
    if auto["all_quantized_worst_ratio"] <= 1:
        assert kept == [] and auto["probe_compiles"] == 1
        assert all(u["worst_ratio_alone"] is None for u in units)  # nothing needed measuring
    else:
        # Kept: the most sensitive per f32 byte first, and fewer than all.
        assert 0 < len(kept) < len(units)
        gain = {(u["kind"], u["name"]): u["worst_ratio_alone"] / u["f32_bytes"] for u in units}
        gains = [gain[(k["kind"], k["name"])] for k in kept]
        assert gains == sorted(gains, reverse=True)
        assert gains[0] == max(gain.values())
        # All quantised, each unit alone, then at least one check of the kept set.
        assert auto["probe_compiles"] >= 2 + len(units)
    info = inspect(so)
    assert info["quantization"].startswith("int8,int8-embeddings")
    assert (";" in info["quantization"]) == bool(kept)
    assert info["weights_bytes"] == auto["weights_bytes"] < auto["f32_weights_bytes"]
    assert auto["latency_us"]["quantized"] > 0 and auto["latency_us"]["f32"] > 0


@pytest.mark.parametrize("name", MODELS)
def test_auto_model_stays_inside_the_bound_on_held_out_rows(compiled, name):
    """Against onnxruntime's f32 outputs on 2,048 other rows: the mean |dp|
    stays within 1.2x the default bound (1e-3), the slack a mean over other
    rows may move."""
    import onnxruntime as ort
    so, _ = compiled[name]
    feeds = rows(name, 2048, seed=2)
    session = ort.InferenceSession(os.path.join(case(name), "model.onnx"),
                                   providers=["CPUExecutionProvider"])
    diffs = []
    with kiln.load(so) as model:
        for begin in range(0, 2048, BATCH):
            chunk = {k: v[begin:begin + BATCH] for k, v in feeds.items()}
            got = model.run(chunk)["score"]
            want = session.run(["score"], chunk)[0]
            diffs.append(np.abs(got.astype(np.float64) - want))
    assert np.mean(np.concatenate(diffs)) <= 1.2e-3


@pytest.mark.parametrize("modes,message", [
    ("auto,int8", "unknown mode 'auto'"),
    ("int8,auto", "unknown mode 'auto'"),
])
def test_auto_takes_no_other_mode(modes, message, tmp_path):
    with pytest.raises(kiln.Error, match=message):
        kiln.compile(os.path.join(case("dlrm"), "model.onnx"), tmp_path / "m.so",
                     quantize=[modes])


def test_auto_refuses_allow_accuracy_loss(tmp_path):
    with pytest.raises(kiln.Error, match="--allow-accuracy-loss does not apply"):
        kiln.compile(os.path.join(case("dlrm"), "model.onnx"), tmp_path / "m.so",
                     quantize=["auto"], extra_args=["--allow-accuracy-loss"])
