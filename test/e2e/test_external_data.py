"""ONNX external data: tensors read through a map of files in the model's folder,
and every way a location can reach outside that folder or lie about its size
refused with a compile error naming the tensor, the node that reads it and why."""
import os
import stat
import subprocess

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import kiln

RTOL, ATOL = 1e-4, 1e-5


def graph_model(table, weight):
    """ids -> Gather(table) -> MatMul(weight): two initialisers, one graph."""
    nodes = [helper.make_node("Gather", ["table", "ids"], ["rows"], name="lookup"),
             helper.make_node("MatMul", ["rows", "weight"], ["y"], name="project")]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("ids", TensorProto.INT64, ["N"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", weight.shape[1]])],
        [numpy_helper.from_array(table, "table"), numpy_helper.from_array(weight, "weight")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


@pytest.fixture
def tables():
    rng = np.random.default_rng(0)
    return (rng.standard_normal((500, 16)).astype(np.float32),
            rng.standard_normal((16, 8)).astype(np.float32))


def test_external_data_compiles_and_matches(tmp_path, tables):
    """Two files, the second tensor at a non-zero offset, as onnx writes them."""
    model = graph_model(*tables)
    onnx.save_model(model, tmp_path / "model.onnx", save_as_external_data=True,
                    all_tensors_to_one_file=True, location="weights.bin", size_threshold=0)
    assert {e.key: e.value for e in onnx.load(tmp_path / "model.onnx", load_external_data=False)
            .graph.initializer[1].external_data}["offset"] != "0"
    kiln.compile(tmp_path / "model.onnx", tmp_path / "model.so", batch=[1, 16, 64])
    session = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    ids = np.array([0, 499, 7, 250] * 10, np.int64)
    with kiln.load(tmp_path / "model.so") as m:
        for batch in (1, 16, 40):
            feeds = {"ids": ids[:batch]}
            np.testing.assert_allclose(m.run(feeds)["y"], session.run(None, feeds)[0],
                                       rtol=RTOL, atol=ATOL)


def external_model(folder, location, offset=0, length=None, extra=()):
    """A model whose table is external data at `location`, with a valid
    `folder/table.bin` to point at."""
    table = np.arange(100 * 4, dtype=np.float32).reshape(100, 4)
    (folder / "table.bin").write_bytes(table.tobytes())
    tensor = TensorProto(name="table", data_type=TensorProto.FLOAT, dims=[100, 4])
    tensor.data_location = TensorProto.EXTERNAL
    entries = [("location", location), ("offset", str(offset)),
               ("length", str(table.nbytes if length is None else length)), *extra]
    for key, value in entries:
        e = tensor.external_data.add()
        e.key, e.value = key, value
    graph = helper.make_graph(
        [helper.make_node("Gather", ["table", "ids"], ["y"], name="lookup")], "g",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, ["N"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])], [tensor])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = folder / "model.onnx"
    path.write_bytes(model.SerializeToString())
    return path


def compile_error(kiln_bin, model):
    run = subprocess.run([kiln_bin, "compile", str(model), "-o", str(model.parent / "m.so"), "-q"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 1, run.stderr  # an error, not a crash or a hang
    assert "tensor 'table' (used by node 'lookup' (#0, Gather)): external data" in run.stderr
    return run.stderr


def test_a_valid_location_compiles(kiln_bin, tmp_path):
    model = external_model(tmp_path, "table.bin")
    subprocess.run([kiln_bin, "compile", str(model), "-o", str(tmp_path / "m.so"), "-q",
                    "--batch", "2"], check=True)
    with kiln.load(tmp_path / "m.so") as m:
        np.testing.assert_array_equal(m.run({"ids": np.array([99, 0])})["y"][0], [396, 397, 398, 399])


@pytest.mark.parametrize("location, reason", [
    ("/etc/passwd", "is an absolute path"),                       # CVE-2022-25882's target
    ("../../../../etc/passwd", "has a '..' component"),           # CVE-2022-25882
    ("sub/../../table.bin", "has a '..' component"),              # CVE-2024-27318, nested
    ("", "the location is empty"),
    ("missing.bin", "no such file in the model's folder"),
])
def test_locations_outside_the_folder_are_refused(kiln_bin, tmp_path, location, reason):
    (tmp_path / "sub").mkdir()
    assert reason in compile_error(kiln_bin, external_model(tmp_path, location))


def test_a_symlink_to_a_file_is_refused(kiln_bin, tmp_path):
    (tmp_path / "link.bin").symlink_to("table.bin")
    assert "goes through a symbolic link" in compile_error(
        kiln_bin, external_model(tmp_path, "link.bin"))


def test_a_symlinked_folder_on_the_path_is_refused(kiln_bin, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "table.bin").write_bytes(np.zeros(400, np.float32).tobytes())
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "data").symlink_to(outside)
    assert "goes through a symbolic link" in compile_error(
        kiln_bin, external_model(model_dir, "data/table.bin"))


def test_a_hard_link_is_refused(kiln_bin, tmp_path):
    model = external_model(tmp_path, "table.bin")
    os.link(tmp_path / "table.bin", tmp_path / "second_name.bin")
    assert "the file has 2 hard links" in compile_error(kiln_bin, model)


def test_a_folder_is_refused(kiln_bin, tmp_path):
    (tmp_path / "dir.bin").mkdir()
    assert "is a folder, not a file" in compile_error(kiln_bin, external_model(tmp_path, "dir.bin"))


def test_a_fifo_is_refused_without_blocking(kiln_bin, tmp_path):
    os.mkfifo(tmp_path / "fifo.bin")
    assert "not a regular file" in compile_error(kiln_bin, external_model(tmp_path, "fifo.bin"))


def test_a_device_is_refused(kiln_bin, tmp_path):
    try:
        os.mknod(tmp_path / "zero.bin", stat.S_IFCHR | 0o644, os.makedev(1, 5))  # /dev/zero
    except PermissionError:
        pytest.skip("this sandbox may not create device nodes (the FIFO case covers the check)")
    assert "not a regular file" in compile_error(kiln_bin, external_model(tmp_path, "zero.bin"))


@pytest.mark.parametrize("offset, length, reason", [
    (1601, None, "offset 1601 is past the end of the 1600-byte file"),
    (1000, 1600, "offset 1000 + length 1600 is past the end of the 1600-byte file"),
    (0, 1596, "length 1596 differs from the 1600 bytes the tensor's dims and type need"),
    (2 ** 63, 16, "past the end"),
])
def test_offsets_and_lengths_are_checked(kiln_bin, tmp_path, offset, length, reason):
    assert reason in compile_error(kiln_bin, external_model(tmp_path, "table.bin", offset, length))


@pytest.mark.parametrize("extra, reason", [
    ((("offset", "-4"),), "offset '-4' is not a non-negative integer"),
    ((("basepath", "/"),), "unknown external_data key 'basepath'"),
])
def test_malformed_entries_are_refused(kiln_bin, tmp_path, extra, reason):
    model = external_model(tmp_path, "table.bin")
    m = onnx.load(model, load_external_data=False)
    for key, value in extra:
        entry = next((e for e in m.graph.initializer[0].external_data if e.key == key), None)
        if entry is None:
            entry = m.graph.initializer[0].external_data.add()
            entry.key = key
        entry.value = value
    model.write_bytes(m.SerializeToString())
    assert reason in compile_error(kiln_bin, model)
