"""The export corpus (test/exports/corpus, made by test/exports/export_torch.py,
export_torchrec.py and export_keras.py with the real exporters: torch 2.15's
TorchScript and dynamo exporters, torchrec through dynamo, tf2onnx): every
export compiles at buckets 1, 16, 64 and matches its stored references at
each of those batches, at the tolerance its case.json gives (fp32 against
onnxruntime, fp16 against the framework's own fp16 result).

Exports kiln cannot compile yet are listed in UNSUPPORTED with the error they
must stop with: the node, its op and what is missing. An entry that starts
compiling fails the test, so the list stays what kiln really lacks."""
import json
import os
import re
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import kiln
from conftest import ROOT

CORPUS = os.path.join(ROOT, "test", "exports", "corpus")
CASES = sorted(os.listdir(CORPUS))

UNSUPPORTED = {
    # nn.EmbeddingBag(padding_idx=...) by the dynamo exporter: a Loop per bag
    # nested in the Loop over bags (the TorchScript exporter refuses it).
    "torch-dlrm_mean_max_pad-dynamo-default-op20-fp32":
        r"node '[^']+' \(#\d+, Loop\): this Loop is not a recognised idiom: its body holds a nested Loop",
    # Jagged bags (1-D ids and per-request offsets): the dynamo exporter's
    # mean/max bags special-case the last bag with an If; the TorchScript
    # export concatenates the batch-sized offsets with the id count.
    "torch-dlrm_jagged-dynamo-default-op20-fp32":
        r"node '[^']+' \(#\d+, Loop\): this Loop is not a recognised idiom: its body node #\d+ \(If\)",
    "torch-dlrm_jagged-torchscript-default-op20-fp32": r"node '[^']+' \(#\d+\): output 'score' mixes rows of the batch",
}
# TorchRec's KeyedJaggedTensor input (flat values, key-major lengths): its
# values are split per key by sizes summed from the lengths at run time.
KJT_SPLIT = r"node '[^']+' \(#\d+, Split\): a Split into parts whose sizes are computed at run time .*KeyedJaggedTensor"
UNSUPPORTED.update({case: KJT_SPLIT for case in CASES if case.startswith("torchrec-")})


def meta(case):
    with open(os.path.join(CORPUS, case, "case.json")) as f:
        return json.load(f)


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    """Compiles the whole corpus once, two cases at a time: case -> the
    library's path, or the kiln.Error it stopped with."""
    out = tmp_path_factory.mktemp("corpus")

    def build(case):
        try:
            return kiln.compile(os.path.join(CORPUS, case, "model.onnx"), out / f"{case}.so",
                                batch=meta(case)["batches"])
        except kiln.Error as e:
            return e

    with ThreadPoolExecutor(max(2, os.cpu_count() or 1)) as pool:
        return dict(zip(CASES, pool.map(build, CASES)))


def test_the_corpus_is_large_enough():
    exporters = {meta(c)["exporter"].split()[0] + " " + meta(c)["exporter"].split()[-1] for c in CASES}
    assert len(CASES) >= 30, CASES
    assert {"torch.onnx torchscript", "torch.onnx dynamo", "tf2onnx 1.17.0"} <= exporters, exporters
    assert any(meta(c)["model"].startswith("torchrec ") for c in CASES)
    assert {meta(c)["dtype"] for c in CASES} == {"float32", "float16"}
    assert set(UNSUPPORTED) <= set(CASES)


@pytest.mark.parametrize("case", [c for c in CASES if c not in UNSUPPORTED])
def test_export_compiles_and_matches_its_references(compiled, case):
    so = compiled[case]
    if isinstance(so, Exception):
        pytest.fail(f"{case} does not compile: {so}")
    info = meta(case)
    tol = info["tolerance"]
    ref = np.load(os.path.join(CORPUS, case, "reference.npz"))
    with kiln.load(so) as model:
        for batch in info["batches"]:
            got = model.run({name: ref[f"b{batch}.in.{name}"] for name in info["inputs"]})
            for name in info["outputs"]:
                want = ref[f"b{batch}.{tol['against']}.{name}"]
                assert got[name].dtype == want.dtype, (batch, name)
                np.testing.assert_allclose(got[name].astype(np.float32), want.astype(np.float32),
                                           rtol=tol["rtol"], atol=tol["atol"], err_msg=f"{case} batch {batch} {name}")


@pytest.mark.parametrize("case", sorted(UNSUPPORTED))
def test_unsupported_export_stops_with_an_error_naming_the_node(compiled, case):
    error = compiled[case]
    assert isinstance(error, kiln.Error), f"{case} compiles now: move it out of UNSUPPORTED"
    assert re.search(UNSUPPORTED[case], str(error)), str(error)
