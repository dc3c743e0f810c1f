"""Differential tests: random small graphs (random_graphs.py), compiled with
buckets 1 and 4 and run at batches 1, 3 and 4, against onnxruntime. CI runs
the first SEEDS. Measured once over more: before the memory plan's fix for
a view read under an in-place write, 4 of seeds 0-59 gave wrong answers (3
and 6 among those CI runs); after it, all of seeds 0-399 pass."""
import os

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import kiln
import random_graphs
from conftest import GPU, needs_nvcc

SEEDS = 30
CUDA_SEEDS = 6


def feeds(seed, batch):
    return {"x": np.random.default_rng(seed + 1000 + batch)
            .standard_normal((batch, random_graphs.WIDTH)).astype(np.float32)}


def reference(model, inputs):
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in session.get_outputs()], session.run(None, inputs)))


def assert_same(got, want, seed, batch):
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-4, atol=1e-5,
                                   err_msg=f"seed {seed}, batch {batch}, output {name}")


def compiled(seed, tmp_path, target="cpu"):
    model = random_graphs.graph(seed)
    path = os.path.join(tmp_path, "model.onnx")
    onnx.save(model, path)
    so = os.path.join(tmp_path, f"model.{target}.so")
    kiln.compile(path, so, batch=[1, 4], target=target)
    return model, so


@pytest.mark.parametrize("seed", range(SEEDS))
def test_matches_onnxruntime(seed, tmp_path):
    model, so = compiled(seed, tmp_path)
    with kiln.load(so) as m:
        for batch in [1, 3, 4]:
            inputs = feeds(seed, batch)
            assert_same(m.run(inputs), reference(model, inputs), seed, batch)


@needs_nvcc
@pytest.mark.parametrize("seed", range(CUDA_SEEDS))
def test_cuda_builds_and_matches_the_cpu(seed, tmp_path):
    """The CUDA build compiles; on a GPU it computes what the CPU build does."""
    _, so = compiled(seed, tmp_path, "cuda")
    if not GPU:
        return
    _, cpu_so = compiled(seed, tmp_path)
    with kiln.load(cpu_so) as cpu, kiln.load(so) as gpu:
        for batch in [1, 3]:
            inputs = feeds(seed, batch)
            assert_same(gpu.run(inputs), cpu.run(inputs), seed, batch)
