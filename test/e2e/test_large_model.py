"""A production-size model: a 26-table DLRM with 2.7 GB of tables in ONNX
external data (over protobuf's 2 GB limit), compiled with its weights in a
file beside the .so (automatically, above 1 GiB), in memory that grows no
faster than the weights, and matching a numpy reference on rows that include
the first and last of every table.

The model is generated once for the module (about 15 s) and deleted after;
the module is skipped, saying so, when the disk lacks the room."""
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import dlrm_large
import kiln
from conftest import GPU, needs_nvcc

GIGABYTES = 2.7
NEEDED_FREE = 12e9  # the data, the weights file, an int8 build and its f32 reference
RTOL, ATOL = 1e-4, 1e-5


def peak_rss(cmd):
    """Runs `cmd`; returns (its peak resident set in bytes, stderr)."""
    probe = ("import resource, subprocess, sys\n"
             "r = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
             "sys.stderr.write(r.stderr)\n"
             "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
             "sys.exit(r.returncode)\n")
    run = subprocess.run([sys.executable, "-c", probe, *cmd], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    return int(run.stdout) * 1024, run.stderr


@pytest.fixture(scope="module")
def large(tmp_path_factory, kiln_bin):
    out = tmp_path_factory.mktemp("large")
    free = shutil.disk_usage(out).free
    if free < NEEDED_FREE:
        pytest.skip(f"the disk has {free / 1e9:.1f} GB free; the {GIGABYTES} GB model needs "
                    f"{NEEDED_FREE / 1e9:.0f} GB")
    try:
        rows = dlrm_large.write(str(out), GIGABYTES)
        rss, log = peak_rss([kiln_bin, "compile", str(out / "model.onnx"), "-o",
                             str(out / "model.so"), "--batch", "1,64"])
        yield {"dir": out, "rows": rows, "rss": rss, "log": log}
    finally:
        shutil.rmtree(out, ignore_errors=True)


def test_the_weights_go_to_a_file_beside_the_so(large):
    out = large["dir"]
    tables = sum(large["rows"]) * dlrm_large.DIM * 4
    assert os.path.getsize(out / "model.onnx") < 4 << 20  # the tables are external data
    assert os.path.getsize(out / "model.so") < 1 << 20
    with kiln.load(out / "model.so") as m:
        assert m.weights_path == str(out / "model.weights")
        assert os.path.getsize(m.weights_path) == 4096 + m.weights_bytes
        assert tables <= m.weights_bytes < tables + (4 << 20)
    assert "in a weights file" in large["log"]


def test_compile_memory_grows_no_faster_than_the_weights(large):
    weights = os.path.getsize(large["dir"] / "model.weights")
    print(f"peak RSS {large['rss'] / 1e9:.2f} GB for {weights / 1e9:.2f} GB of weights "
          f"({large['rss'] / weights:.2f}x)")
    assert large["rss"] <= 1.3 * weights + (1 << 30)


@pytest.mark.parametrize("batch", [1, 37, 64])
def test_matches_the_reference_on_first_and_last_rows(large, batch):
    feeds = dlrm_large.inputs(large["rows"], batch, seed=batch)
    assert (feeds["ids"][-1] == np.array(large["rows"]) - 1).all()
    expected = dlrm_large.reference(str(large["dir"]), large["rows"], feeds)
    with kiln.load(large["dir"] / "model.so") as m:
        got = m.run(feeds)["click_prob"]
    np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL)


def test_an_id_past_the_largest_table_is_refused(large):
    feeds = dlrm_large.inputs(large["rows"], 2)
    feeds["ids"][1, 0] = large["rows"][0]
    with kiln.load(large["dir"] / "model.so") as m, pytest.raises(kiln.Error, match="outside"):
        m.run(feeds)


def test_embedding_it_is_refused_with_a_pointer_to_the_weights_file(large, kiln_bin):
    out = large["dir"]
    run = subprocess.run([kiln_bin, "compile", str(out / "model.onnx"), "-o",
                          str(out / "embedded.so"), "--embed-weights", "-q"],
                         capture_output=True, text=True)
    assert run.returncode == 1
    assert "too many to embed in a .so" in run.stderr and "--weights-file" in run.stderr
    assert not (out / "embedded.so").exists()


def test_int8_tables_at_scale_go_to_the_weights_file(large, kiln_bin, tmp_path):
    out = large["dir"]
    subprocess.run([kiln_bin, "compile", str(out / "model.onnx"), "-o", str(out / "int8.so"),
                    "--batch", "64", "--quantize", "int8-embeddings", "--weights-file",
                    "--validation-rows", "2048",
                    "--report", str(tmp_path / "report.json"), "-q"], check=True)
    f32_bytes = os.path.getsize(out / "model.weights")
    int8_bytes = os.path.getsize(out / "int8.weights")
    assert int8_bytes < 0.3 * f32_bytes  # 68 of 256 bytes a row
    feeds = dlrm_large.inputs(large["rows"], 64, seed=5)
    with kiln.load(out / "int8.so") as q, kiln.load(out / "model.so") as f:
        diff = np.abs(q.run(feeds)["click_prob"] - f.run(feeds)["click_prob"])
    assert diff.max() < 0.02
    os.remove(out / "int8.so")
    os.remove(out / "int8.weights")


@needs_nvcc
def test_cuda_keeps_the_large_tables_in_the_mapped_file(large, kiln_bin):
    out = large["dir"]
    subprocess.run([kiln_bin, "compile", str(out / "model.onnx"), "-o", str(out / "cuda.so"),
                    "--target", "cuda", "--host-tables-over", "64MiB", "--batch", "1,64", "-q"],
                   check=True)
    big_table = large["rows"][0] * dlrm_large.DIM * 4
    with kiln.load(out / "cuda.so", descriptor_only=True) as m:
        assert m.weights_path == str(out / "cuda.weights")
        assert m.host_weights_bytes >= big_table
    if GPU:
        feeds = dlrm_large.inputs(large["rows"], 64, seed=9)
        with kiln.load(out / "cuda.so") as m:
            np.testing.assert_allclose(m.run(feeds)["click_prob"],
                                       dlrm_large.reference(str(out), large["rows"], feeds),
                                       rtol=RTOL, atol=ATOL)
