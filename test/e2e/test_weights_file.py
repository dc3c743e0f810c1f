"""The weights file beside the .so (kiln compile --weights-file): the same
results as embedded weights, a file the runtime refuses when it is missing,
truncated, tampered with or from another compile, and pages shared by every
process that opens the model."""
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import onnx
import pytest

import dlrm_mlp
import kiln

HEADER = 4096  # KILN_WEIGHTS_HEADER_BYTES


@pytest.fixture(scope="module")
def built(tmp_path_factory, kiln_bin):
    out = tmp_path_factory.mktemp("weights_file")
    onnx.save(dlrm_mlp.build(), out / "model.onnx")
    for name, flags in (("embedded", []), ("file", ["--weights-file"])):
        subprocess.run([kiln_bin, "compile", str(out / "model.onnx"), "-o", str(out / f"{name}.so"),
                        "--batch", "1,8,64", "-q", *flags], check=True)
    return out


def feeds(batch, seed=0):
    rng = np.random.default_rng(seed)
    return {"dense": rng.standard_normal((batch, 13)).astype(np.float32),
            "ids": rng.integers(0, 1000, (batch, 8, 4)).astype(np.int64)}


def test_results_are_those_of_embedded_weights(built):
    assert not (built / "embedded.weights").exists()
    assert (built / "file.weights").stat().st_size > HEADER
    assert (built / "file.so").stat().st_size < (built / "embedded.so").stat().st_size - 400_000
    with kiln.load(built / "embedded.so") as a, kiln.load(built / "file.so") as b:
        for batch in (1, 5, 64):
            np.testing.assert_array_equal(a.run(feeds(batch))["click_prob"],
                                          b.run(feeds(batch))["click_prob"])


def test_inspect_shows_and_verifies_the_file(built, kiln_bin):
    out = subprocess.run([kiln_bin, "inspect", str(built / "file.so"), "--verify-weights"],
                         capture_output=True, text=True, check=True).stdout
    assert f"weights file: {built}/file.weights (mapped read-only)" in out
    assert "bytes match hash" in out


def copy_model(built, folder):
    folder.mkdir()
    shutil.copy(built / "file.so", folder / "file.so")
    shutil.copy(built / "file.weights", folder / "file.weights")
    return folder / "file.so"


def open_error(path):
    with pytest.raises(kiln.Error) as e:
        kiln.load(path)
    return str(e.value)


def test_a_missing_file_is_refused(built, tmp_path):
    so = copy_model(built, tmp_path / "m")
    os.remove(tmp_path / "m" / "file.weights")
    assert "cannot open its weights file" in open_error(so)
    assert "No such file" in open_error(so)


def test_a_truncated_file_is_refused(built, tmp_path):
    so = copy_model(built, tmp_path / "m")
    size = (tmp_path / "m" / "file.weights").stat().st_size
    os.truncate(tmp_path / "m" / "file.weights", size - 64)
    assert f"holds {size - 64} bytes, the model was built with {size}" in open_error(so)


def test_a_tampered_header_is_refused(built, tmp_path):
    so = copy_model(built, tmp_path / "m")
    with open(tmp_path / "m" / "file.weights", "r+b") as f:
        f.seek(24)  # data_hash
        byte = f.read(1)
        f.seek(24)
        f.write(bytes([byte[0] ^ 1]))
    assert "is from another compile" in open_error(so)


def test_weights_of_another_compile_are_refused(built, tmp_path, kiln_bin):
    so = copy_model(built, tmp_path / "m")
    other = tmp_path / "other"
    other.mkdir()
    onnx.save(dlrm_mlp.build(seed=1), other / "model.onnx")
    subprocess.run([kiln_bin, "compile", str(other / "model.onnx"), "-o", str(other / "file.so"),
                    "--batch", "1,8,64", "-q", "--weights-file"], check=True)
    shutil.copy(other / "file.weights", tmp_path / "m" / "file.weights")
    assert "is from another compile" in open_error(so)


def test_tampered_data_is_found_by_verify_weights(built, tmp_path, kiln_bin):
    so = copy_model(built, tmp_path / "m")
    with open(tmp_path / "m" / "file.weights", "r+b") as f:
        f.seek(HEADER + 100)
        f.write(b"\x7f")
    kiln.load(so).close()  # opening checks size and header, not every byte
    run = subprocess.run([kiln_bin, "inspect", str(so), "--verify-weights"],
                         capture_output=True, text=True)
    assert run.returncode == 1
    assert "the weights do not match their hash" in run.stderr


CHILD = textwrap.dedent("""
    import sys, numpy as np, kiln
    m = kiln.load(sys.argv[1])
    ids = np.arange(1000, dtype=np.int64)
    ids = np.resize(ids, (64, 8, 4))  # every row of every table: all their pages
    for _ in range(3):
        m.run({"dense": np.zeros((64, 13), np.float32), "ids": ids})
    rss = pss = 0
    lines = open("/proc/self/smaps").read().splitlines()
    mapped = False
    for line in lines:
        if line[0] in "0123456789abcdef" and " " in line:
            mapped = line.endswith(".weights")
        elif mapped and line.startswith(("Rss:", "Pss:")):
            kb = int(line.split()[1])
            rss, pss = (rss + kb, pss) if line.startswith("Rss") else (rss, pss + kb)
    print(rss, pss, flush=True)
    sys.stdin.readline()  # stay alive until the other process has measured too
""")


def test_two_processes_share_the_weights_pages(built):
    so = str(built / "file.so")
    procs, measured = [], []
    try:
        for _ in range(2):  # the second starts once the first has measured, and stays
            procs.append(subprocess.Popen([sys.executable, "-c", CHILD, so],
                                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True))
            measured.append([int(v) for v in procs[-1].stdout.readline().split()])
        first, second = measured
    finally:
        for p in procs:
            p.communicate("\n", timeout=30)
    tables_kb = 8 * 1000 * 16 * 4 // 1024
    assert first[0] >= tables_kb and second[0] >= tables_kb  # the tables are resident
    # The process that measured second shares every page with the first:
    # its proportional share is half of what it maps.
    assert second[1] <= 0.6 * second[0], second
    print(f"weights map: rss {second[0]} KiB, pss {second[1]} KiB")
