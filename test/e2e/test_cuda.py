"""The CUDA target (kiln compile --target cuda): every zoo model and real
export builds with nvcc into a library exporting the kiln descriptor of a
device model. Without a GPU (as in CI) opening it fails cleanly, naming the
target; with one, its outputs match the CPU build's. bench/gpu_check.sh is
the fuller check and benchmark for a GPU machine."""
import ctypes
import json
import os
import re
import subprocess

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import kiln
import zoo
from conftest import GPU, NVCC, SHARED_MODELS, needs_nvcc

CASES = sorted(zoo.MODELS) + [f"real/{m}" for m in ["bert_rel", "din", "dlrm_bag"]]
BUCKETS = [1, 8]
KILN_ISA_CUDA = 1 << 3


class AbiModel(ctypes.Structure):
    """The leading fields of kiln_abi_model (runtime/include/kiln/model_abi.h)."""
    _fields_ = [("magic", ctypes.c_uint32), ("abi_major", ctypes.c_uint16),
                ("abi_minor", ctypes.c_uint16), ("compiler_version", ctypes.c_char_p),
                ("target", ctypes.c_char_p), ("isa", ctypes.c_uint32)]


def inspect_json(so):
    return json.loads(subprocess.run([kiln._find_binary(), "inspect", str(so), "--json"],
                                     check=True, capture_output=True, text=True).stdout)


@pytest.fixture(scope="module", params=CASES)
def built(request, tmp_path_factory):
    if NVCC is None:
        pytest.skip("nvcc (the CUDA toolkit) is not installed")
    out = tmp_path_factory.mktemp("cuda")
    if request.param.startswith("real/"):
        folder = os.path.join(SHARED_MODELS, request.param[5:])
        if not os.path.isdir(folder):
            pytest.skip(f"{folder} is not present")
    else:
        folder = zoo.write(request.param, str(out), batch=8)
    so = os.path.join(out, "model.cuda.so")
    kiln.compile(os.path.join(folder, "model.onnx"), so, batch=BUCKETS, target="cuda")
    return folder, so


@needs_nvcc
def test_builds_a_device_model(built):
    _, so = built
    lib = ctypes.CDLL(so)
    abi = AbiModel.in_dll(lib, "kiln_model_descriptor")
    assert abi.magic == 0x4E4C494B
    assert abi.target == b"cuda-sm90"
    assert abi.isa & KILN_ISA_CUDA


@pytest.mark.skipif(GPU, reason="a GPU is present")
@needs_nvcc
def test_opening_without_a_gpu_fails_naming_the_target(built):
    _, so = built
    with pytest.raises(kiln.Error, match=r"compiled for target 'cuda-sm90', and no CUDA device"):
        kiln.load(so)


@needs_nvcc
def test_inspect_reads_it_on_any_machine(built):
    """kiln inspect needs neither a GPU nor the runtime's device hooks."""
    folder, so = built
    info = inspect_json(so)
    assert info["target"] == "cuda-sm90"
    assert [b["batch"] for b in info["buckets"]] == BUCKETS
    names = [i.name for i in onnx.load(os.path.join(folder, "model.onnx"),
                                       load_external_data=False).graph.input]
    assert [i["name"] for i in info["inputs"]] == names


def assert_matches_the_cpu_build(folder, so, tmp_path):
    model = onnx.load(os.path.join(folder, "model.onnx"), load_external_data=False)
    cpu_so = tmp_path / "model.cpu.so"
    kiln.compile(os.path.join(folder, "model.onnx"), cpu_so, batch=BUCKETS)
    case = os.path.join(folder, "test_data_set_0")
    feeds = {i.name: numpy_helper.to_array(onnx.load_tensor(os.path.join(case, f"input_{n}.pb")))
             for n, i in enumerate(model.graph.input)}
    with kiln.load(cpu_so) as cpu, kiln.load(so) as gpu:
        want, got = cpu.run(feeds), gpu.run(feeds)
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-4, atol=1e-5)


@pytest.mark.skipif(not GPU, reason="no GPU on this machine")
@needs_nvcc
def test_matches_the_cpu_build(built, tmp_path):
    assert_matches_the_cpu_build(*built, tmp_path)


# Models whose tables straddle the size: some stay on the device (deepfm,
# din), and one with every table in host memory.
HOST_TABLES = [("deepfm", "300KiB", 1), ("din", "300KiB", 2), ("dlrm_kaggle", "0", 26)]


@needs_nvcc
@pytest.mark.parametrize("name,over,tables", HOST_TABLES)
def test_host_tables(name, over, tables, tmp_path):
    """--host-tables-over keeps the large tables out of the weights uploaded
    to the device; the library builds, and on a GPU computes what the CPU
    build does."""
    folder = zoo.write(name, str(tmp_path), batch=8)
    so = tmp_path / "hybrid.so"
    proc = subprocess.run([kiln._find_binary(), "compile", os.path.join(folder, "model.onnx"),
                           "-o", str(so), "--target", "cuda", "--batch", "1,8",
                           "--host-tables-over", over], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert re.search(rf"kiln: {tables} embedding tables? \(", proc.stderr), proc.stderr
    abi = AbiModel.in_dll(ctypes.CDLL(str(so)), "kiln_model_descriptor")
    assert abi.target == b"cuda-sm90" and abi.isa & KILN_ISA_CUDA
    # The descriptor counts the bytes of the tables the compile placed: the
    # `tables` largest gathered from, all larger than the threshold.
    model = onnx.load(os.path.join(folder, "model.onnx"))
    weights = {i.name: numpy_helper.to_array(i).nbytes for i in model.graph.initializer}
    gathered = sorted({n.input[0]: weights[n.input[0]] for n in model.graph.node
                       if n.op_type == "Gather" and n.input[0] in weights}.values(), reverse=True)
    info = inspect_json(so)
    assert info["host_weights_bytes"] == sum(gathered[:tables]), (info, gathered)
    assert gathered[tables - 1] > (0 if over == "0" else 300 * 1024) >= (gathered + [0])[tables]
    if GPU:
        assert_matches_the_cpu_build(folder, so, tmp_path)


OPS_MODEL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cuda_ops.onnxtxt")


def ops_inputs(batch):
    rng = np.random.default_rng(5)
    return {"x": rng.standard_normal((batch, 4, 6)).astype(np.float32),
            "m": rng.standard_normal((batch, 6, 5)).astype(np.float32),
            "idx": rng.integers(0, 6, (batch, 4, 6)).astype(np.int64),
            "ids": rng.integers(0, 5, (batch, 3)).astype(np.int64),
            "a2": rng.standard_normal((batch, 4)).astype(np.float32),
            "b2": rng.standard_normal((3, 4)).astype(np.float32)}


@needs_nvcc
def test_every_kernel_builds(tmp_path):
    """Templates only fail when instantiated: this model reaches the CUDA
    kernels that no zoo model uses."""
    so = tmp_path / "ops.cuda.so"
    kiln.compile(OPS_MODEL, so, batch=[2, 8], target="cuda")
    abi = AbiModel.in_dll(ctypes.CDLL(str(so)), "kiln_model_descriptor")
    assert abi.target == b"cuda-sm90" and abi.isa & KILN_ISA_CUDA


def test_the_ops_model_is_right_on_the_cpu(tmp_path):
    """The CPU build of cuda_ops.onnxtxt, the GPU test's reference, against onnxruntime."""
    import onnxruntime as ort
    from onnx import parser
    model = parser.parse_model(open(OPS_MODEL).read())
    feeds = ops_inputs(5)
    want = ort.InferenceSession(model.SerializeToString(),
                                providers=["CPUExecutionProvider"]).run(None, feeds)
    kiln.compile(OPS_MODEL, tmp_path / "cpu.so", batch=[2, 8])
    with kiln.load(tmp_path / "cpu.so") as cpu:
        got = cpu.run(feeds)
        for info, expected in zip(cpu.outputs, want):
            np.testing.assert_allclose(got[info.name], expected, rtol=1e-4, atol=1e-5,
                                       err_msg=info.name)


@pytest.mark.skipif(not GPU, reason="no GPU on this machine")
@needs_nvcc
def test_every_kernel_matches_the_cpu(tmp_path):
    kiln.compile(OPS_MODEL, tmp_path / "cpu.so", batch=[2, 8])
    kiln.compile(OPS_MODEL, tmp_path / "cuda.so", batch=[2, 8], target="cuda")
    feeds = ops_inputs(5)
    with kiln.load(tmp_path / "cpu.so") as cpu, kiln.load(tmp_path / "cuda.so") as gpu:
        want, got = cpu.run(feeds), gpu.run(feeds)
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-4, atol=1e-5, err_msg=name)


@needs_nvcc
def test_reduced_precision_builds(tmp_path):
    """tf32 keeps f32 weights; bf16 and fp16 store the dense weights at 16
    bits, and the descriptor says so with the f32 build's weight bytes."""
    folder = zoo.write("dcnv2", str(tmp_path), batch=8)
    sizes = {}
    for precision in ["tf32", "bf16", "fp16"]:
        so = tmp_path / f"{precision}.so"
        kiln.compile(os.path.join(folder, "model.onnx"), so, target="cuda",
                     extra_args=["--precision", precision, "--sm", "80"])
        abi = AbiModel.in_dll(ctypes.CDLL(str(so)), "kiln_model_descriptor")
        assert abi.target == b"cuda-sm80"
        sizes[precision] = inspect_json(so)
    assert sizes["tf32"]["quantization"] == "none"
    for half in ["bf16", "fp16"]:
        assert sizes[half]["quantization"] == f"{half}-weights"
        assert sizes[half]["f32_weights_bytes"] == sizes["tf32"]["weights_bytes"]
        assert sizes[half]["weights_bytes"] < sizes["tf32"]["weights_bytes"]


# Documented bounds of an fp8 build, as max |diff| / max |y| over an output
# (docs/cuda.md): against the f32 CPU build, and against the CPU's emulation
# of the same fp8 arithmetic.
FP8_TOLERANCE, FP8_EMULATION_TOLERANCE = 5e-2, 5e-3


def relative_diff(got, want):
    return max(float(np.abs(got[k] - want[k]).max() / np.abs(want[k]).max()) for k in want)


@needs_nvcc
@pytest.mark.parametrize("name", ["dcnv2", "minilm_l6_s64"])
def test_fp8_builds(name, tmp_path):
    """--precision fp8 takes its input scales from calibration: the layers
    cuBLASLt's fp8 kernels take store E4M3 weights, and the descriptor
    counts the f32 build's bytes. The CPU's emulation of the same arithmetic
    stays within the fp8 bound of the f32 model; on a GPU, the CUDA build
    matches the emulation."""
    folder = zoo.write(name, str(tmp_path), batch=8)
    onnx_path = os.path.join(folder, "model.onnx")
    model = onnx.load(onnx_path, load_external_data=False)
    calibration = tmp_path / "calibration.npz"
    np.savez(calibration, **zoo.random_inputs(model, 128, seed=3))
    fp8_args = ["--precision", "fp8", "--calibration", str(calibration)]
    f32, fp8 = tmp_path / "f32.so", tmp_path / "fp8.so"
    kiln.compile(onnx_path, f32, batch=BUCKETS, target="cuda")
    kiln.compile(onnx_path, fp8, batch=BUCKETS, target="cuda", extra_args=fp8_args)
    info, reference = inspect_json(fp8), inspect_json(f32)
    assert info["quantization"] == "fp8-weights"
    assert info["f32_weights_bytes"] == reference["weights_bytes"]
    assert info["weights_bytes"] < reference["weights_bytes"]

    cpu_f32, cpu_fp8 = tmp_path / "cpu.so", tmp_path / "cpu-fp8.so"
    kiln.compile(onnx_path, cpu_f32, batch=BUCKETS)
    kiln.compile(onnx_path, cpu_fp8, batch=BUCKETS, report=tmp_path / "report.json",
                 extra_args=fp8_args + ["--allow-accuracy-loss", "--validation-rows", "8"])
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["quantize"]["weights"] == "fp8"
    feeds = zoo.random_inputs(model, 8, seed=4)
    with kiln.load(cpu_f32) as f, kiln.load(cpu_fp8) as e:
        want, emulated = f.run(feeds), e.run(feeds)
    error = relative_diff(emulated, want)
    assert 0 < error <= FP8_TOLERANCE
    if GPU:
        with kiln.load(fp8) as gpu:
            got = gpu.run(feeds)
        assert relative_diff(got, want) <= FP8_TOLERANCE
        assert relative_diff(got, emulated) <= FP8_EMULATION_TOLERANCE


def test_fp8_needs_calibration_and_an_fp8_gpu(tmp_path):
    folder = zoo.write("dcnv2", str(tmp_path), batch=8)
    onnx_path = os.path.join(folder, "model.onnx")
    with pytest.raises(kiln.Error, match="--precision fp8 needs --calibration"):
        kiln.compile(onnx_path, tmp_path / "x.so", target="cuda", extra_args=["--precision", "fp8"])
    with pytest.raises(kiln.Error, match="--precision fp8 needs --sm 89 or newer"):
        kiln.compile(onnx_path, tmp_path / "x.so", target="cuda",
                     extra_args=["--precision", "fp8", "--sm", "80"])
    with pytest.raises(kiln.Error, match="--precision fp8 and --quantize"):
        kiln.compile(onnx_path, tmp_path / "x.so", quantize=["int8"], extra_args=["--precision", "fp8"])


def test_device_pointers_are_refused_for_a_cpu_model(tmp_path):
    """kiln_run_device on a CPU model is an error naming the CPU target (the
    arrays here only pretend to be device memory)."""
    folder = zoo.write("dlrm_kaggle", str(tmp_path), batch=8)
    so = tmp_path / "model.so"
    kiln.compile(os.path.join(folder, "model.onnx"), so, batch=[2])
    model_proto = onnx.load(os.path.join(folder, "model.onnx"), load_external_data=False)

    class Pretend:
        def __init__(self, array):
            self.array = array
            self.__cuda_array_interface__ = {"data": (array.ctypes.data, False), "shape": array.shape,
                                             "typestr": array.dtype.str, "version": 3}

    with kiln.load(so) as model:
        assert not model.is_device
        feeds = {k: Pretend(v) for k, v in zoo.random_inputs(model_proto, 2).items()}
        outs = {o.name: Pretend(np.empty((2, *o.shape[1:]), o.dtype)) for o in model.outputs}
        with pytest.raises(kiln.Error, match="runs on the CPU"):
            model.bind_device(feeds, outs).run()
