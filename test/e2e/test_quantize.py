"""Quantised compiles (kiln compile --quantize): every zoo model and real
export in int8 + int8-embeddings with its accuracy report, each mode on one
model, the accuracy bound failing a compile, validation inputs from a file,
static calibration, and models quantised by onnxruntime."""
import json
import os
import subprocess

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import kiln
import zoo
from conftest import SHARED_MODELS

REAL = ["dlrm_bag", "bert_rel", "din"]


def model_path(name, tmp):
    if name in zoo.MODELS:
        return os.path.join(zoo.write(name, str(tmp), batch=8), "model.onnx")
    return os.path.join(SHARED_MODELS, name, "model.onnx")


def inspect(so):
    return json.loads(subprocess.run([kiln._find_binary(), "inspect", so, "--json"], check=True,
                                     capture_output=True, text=True).stdout)


def check_report(report, model):
    names = [o.name for o in onnx.load(model, load_external_data=False).graph.output]
    assert [o["name"] for o in report["outputs"]] == names
    for o in report["outputs"]:
        assert np.isfinite(o["max_abs_diff"]) and o["mean_abs_diff"] <= o["max_abs_diff"]
        if o["probability"]:
            assert 0 <= o["auc_f32"] <= 1 and 0 <= o["auc_quantized"] <= 1
            assert o["auc_drop"] == pytest.approx(o["auc_f32"] - o["auc_quantized"])
        else:
            assert o["relative_mean_abs_diff"] >= 0


@pytest.mark.parametrize("name", sorted(zoo.MODELS) + REAL)
def test_int8_with_int8_embeddings(name, tmp_path):
    model = model_path(name, tmp_path)
    so, report = str(tmp_path / "q.so"), tmp_path / "report.json"
    kiln.compile(model, so, batch=[16], quantize=["int8", "int8-embeddings"], report=report,
                 extra_args=["--validation-rows", "64", "--allow-accuracy-loss"])
    data = json.loads(report.read_text())
    assert data["quantize"] == {"weights": "int8", "table_bits": 8} and data["rows"] == 64
    check_report(data, model)
    info = inspect(so)
    assert info["quantization"] == "int8,int8-embeddings"
    assert info["f32_weights_bytes"] > 2 * info["weights_bytes"], info
    # The quantised model stays close to the f32 one: within 3% of the
    # outputs' scale on average, whatever the model.
    for o in data["outputs"]:
        if not o["probability"]:
            assert o["relative_mean_abs_diff"] < 0.03, o
        else:
            assert o["mean_abs_diff"] < 0.01, o


@pytest.mark.parametrize("modes,weights,bits,smaller", [
    (["int8"], "int8", 32, 1.1),
    (["bf16-weights"], "bf16", 32, 1.05),
    (["fp16-weights"], "fp16", 32, 1.05),
    (["int8-embeddings"], "f32", 8, 2.0),
    (["int4-embeddings"], "f32", 4, 2.5),
])
def test_each_mode(modes, weights, bits, smaller, tmp_path):
    model = model_path("dlrm_kaggle", tmp_path)
    so, report = str(tmp_path / "q.so"), tmp_path / "report.json"
    kiln.compile(model, so, batch=[1, 64], quantize=modes, report=report,
                 extra_args=["--validation-rows", "512", "--allow-accuracy-loss"])
    data = json.loads(report.read_text())
    assert data["quantize"] == {"weights": weights, "table_bits": bits}
    check_report(data, model)
    out = data["outputs"][0]
    assert out["probability"] and out["mean_abs_diff"] < 2e-3, out
    info = inspect(so)
    assert info["f32_weights_bytes"] / info["weights_bytes"] > smaller, info
    # The compiled model serves requests like any other.
    with kiln.load(so) as m:
        feeds = zoo.random_inputs(onnx.load(model, load_external_data=False), 3)
        (prob,) = m.run(feeds).values()
        assert prob.shape == (3, 1) and np.all((prob >= 0) & (prob <= 1))


def test_the_bound_fails_the_compile(tmp_path):
    model = model_path("dlrm_kaggle", tmp_path)
    so = tmp_path / "q.so"
    cmd = [kiln._find_binary(), "compile", model, "-o", str(so), "--batch", "64", "-q",
           "--quantize", "int8", "--validation-rows", "256", "--max-mean-diff", "1e-9",
           "--report", str(tmp_path / "r.json")]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 1
    assert "exceeds the accuracy bound: 'click_prob' (mean |dp|" in proc.stderr
    assert not so.exists()
    assert json.loads((tmp_path / "r.json").read_text())["within_bound"] is False
    proc = subprocess.run(cmd + ["--allow-accuracy-loss"], capture_output=True, text=True)
    assert proc.returncode == 0 and so.exists()
    assert "kept (--allow-accuracy-loss)" in proc.stdout


def has_avx512_vnni():
    with open("/proc/cpuinfo") as f:
        flags = next((line for line in f if line.startswith("flags")), "").split()
    return all(f in flags for f in ("avx512f", "avx512bw", "avx512vl", "avx512_vnni"))


@pytest.mark.skipif(not has_avx512_vnni(), reason="this CPU has no AVX-512 VNNI")
@pytest.mark.parametrize("name", ["dcnv2", "minilm_l6_s64"])
def test_avx512_vnni_build_computes_what_the_avx2_build_does(name, tmp_path):
    # Both int8 kernels produce the same exact int32 sums; the f32 code
    # around them is the same source.
    model = model_path(name, tmp_path)
    feeds = zoo.random_inputs(onnx.load(model, load_external_data=False), 13)
    outputs, targets = {}, {}
    for cpu in ["avx2", "avx512-vnni", "native"]:
        so = str(tmp_path / f"{cpu}.so")
        kiln.compile(model, so, batch=[1, 16], quantize=["int8"],
                     extra_args=["--cpu", cpu, "--validation-rows", "32", "--allow-accuracy-loss"])
        targets[cpu] = inspect(so)["target"]
        with kiln.load(so) as m:
            outputs[cpu] = m.run(feeds)
    assert targets == {"avx2": "x86_64-avx2-fma-f16c", "avx512-vnni": "x86_64-avx2-fma-f16c-avx512vnni",
                       "native": "x86_64-avx2-fma-f16c-avx512vnni"}
    for name, want in outputs["avx2"].items():
        np.testing.assert_allclose(outputs["avx512-vnni"][name], want, rtol=1e-6, atol=1e-7)
        np.testing.assert_array_equal(outputs["native"][name], outputs["avx512-vnni"][name])


def test_validation_inputs_from_a_file(tmp_path):
    model = model_path("wide_deep", tmp_path)
    feeds = zoo.random_inputs(onnx.load(model, load_external_data=False), 100)
    np.savez(tmp_path / "val.npz", **feeds)
    report = tmp_path / "r.json"
    kiln.compile(model, str(tmp_path / "q.so"), batch=[64], quantize=["int8"], report=report,
                 extra_args=["--validation", str(tmp_path / "val.npz"), "--allow-accuracy-loss"])
    data = json.loads(report.read_text())
    assert data["rows"] == 100 and data["validation"].endswith("val.npz")
    assert data["outputs"][0]["elements"] == 100


@pytest.mark.parametrize("args,message", [
    (["--quantize", "int2"], "--quantize: unknown mode 'int2'"),
    (["--quantize", "int8,bf16-weights"], "int8, fp16-weights and bf16-weights exclude each other"),
    (["--quantize", "int8-embeddings,int4-embeddings"], "exclude each other"),
    (["--report", "r.json"], "--report and --validation check a quantised compile: add --quantize"),
])
def test_bad_modes_are_refused(args, message, tmp_path):
    model = model_path("dlrm_kaggle", tmp_path)
    proc = subprocess.run([kiln._find_binary(), "compile", model, "-o", str(tmp_path / "q.so"), *args],
                          capture_output=True, text=True)
    assert proc.returncode == 1 and message in proc.stderr, proc.stderr


@pytest.mark.parametrize("option", ["--validation", "--calibration"])
def test_input_file_missing_an_input(option, tmp_path):
    model = model_path("wide_deep", tmp_path)
    np.savez(tmp_path / "rows.npz", nothing=np.zeros((4, 2), np.float32))
    proc = subprocess.run([kiln._find_binary(), "compile", model, "-o", str(tmp_path / "q.so"), "-q",
                           "--quantize", "int8", option, str(tmp_path / "rows.npz")],
                          capture_output=True, text=True)
    assert proc.returncode == 1 and "rows.npz: no input named" in proc.stderr, proc.stderr
    # The quantised model, compiled but not checked, is not left behind.
    assert not (tmp_path / "q.so").exists()


def calibration_files(tmp_path, model, scale=1.0):
    """Calibration rows (dense features times `scale`) and other validation rows."""
    proto = onnx.load(model, load_external_data=False)
    calib = zoo.random_inputs(proto, 300, seed=21)
    calib = {k: v * scale if v.dtype == np.float32 else v for k, v in calib.items()}
    np.savez(tmp_path / "calib.npz", **calib)
    np.savez(tmp_path / "val.npz", **zoo.random_inputs(proto, 1000, seed=22))
    return str(tmp_path / "calib.npz"), str(tmp_path / "val.npz")


@pytest.mark.parametrize("method", ["minmax", "percentile"])
def test_static_calibration(method, tmp_path):
    model = model_path("dlrm_kaggle", tmp_path)
    calib, val = calibration_files(tmp_path, model)
    report = tmp_path / "r.json"
    so = tmp_path / "q.so"
    kiln.compile(model, str(so), batch=[64], quantize=["int8"], report=report,
                 extra_args=["--calibration", calib, "--calibration-method", method,
                             "--validation", val])
    data = json.loads(report.read_text())
    assert data["activations"].startswith("static, ") and "over 300 rows" in data["activations"]
    assert data["within_bound"], data
    # Every layer but the one-column logit (kept f32) is int8 and carries
    # its static range.
    mlir = subprocess.run([kiln._find_binary(), "compile", model, "-o", "-", "--emit", "mlir",
                           "--stop-after", "quantize", "--batch", "64", "--quantize", "int8",
                           "--calibration", calib, "--calibration-method", method, "-q"],
                          check=True, capture_output=True, text=True).stdout
    dense = [line for line in mlir.splitlines() if "kiln.dense" in line]
    layers = [line for line in dense if "units = 1 :" not in line]
    assert layers and all("input_scale" in line and "input_zero_point" in line for line in layers)
    assert all(" scale " not in line for line in dense if "units = 1 :" in line)
    # Layers feeding the next layer of an MLP requantise into its range
    # (kiln-fuse-requantize): the bottom MLP's 512 -> 256 -> 64 chain and the
    # top MLP's hidden layers pass ui8 activations.
    requantising = [line for line in layers if "output_scale" in line]
    assert len(requantising) >= 4, mlir
    assert all(line.rstrip().endswith("xui8>") for line in requantising)
    assert sum("(tensor<64x" in line and "xui8>, " in line for line in layers) == len(requantising)
    with kiln.load(so) as m:
        feeds = zoo.random_inputs(onnx.load(model, load_external_data=False), 5)
        prob = m.run(feeds)["click_prob"]
    assert np.all((prob >= 0) & (prob <= 1))


@pytest.mark.parametrize("scale", [1.0, 1e-3])
def test_the_first_layer_takes_the_range_of_the_calibration_rows(scale, tmp_path):
    """The bottom MLP's first layer reads the dense features: its static
    scale is their observed range (widened to 0) in 127 steps, a thousand
    times smaller when the calibration rows are."""
    model = model_path("dlrm_kaggle", tmp_path)
    calib, _ = calibration_files(tmp_path, model, scale)
    dense = np.load(calib)["dense"]
    want = (max(dense.max(), 0) - min(dense.min(), 0)) / 127
    mlir = subprocess.run([kiln._find_binary(), "compile", model, "-o", "-", "--emit", "mlir",
                           "--stop-after", "quantize", "--batch", "64", "--quantize", "int8",
                           "--calibration", calib, "-q"],
                          check=True, capture_output=True, text=True).stdout
    first = next(line for line in mlir.splitlines() if "kiln.dense" in line)
    assert "tensor<64x13xf32>" in first
    got = float(first.split("input_scale = ")[1].split(" ")[0])
    assert got == pytest.approx(want, rel=1e-6)


@pytest.mark.parametrize("args,message", [
    (["--calibration", "c.npz"], "--calibration sets the ranges of int8 layers' inputs: add --quantize int8"),
    (["--quantize", "int8-embeddings", "--calibration", "c.npz"], "add --quantize int8"),
    (["--quantize", "int8", "--calibration", "c.npz", "--calibration-method", "mean"], "calibration-method"),
])
def test_bad_calibration_options(args, message, tmp_path):
    model = model_path("dlrm_kaggle", tmp_path)
    proc = subprocess.run([kiln._find_binary(), "compile", model, "-o", str(tmp_path / "q.so"), *args],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode != 0 and message in proc.stderr, proc.stderr


class CalibrationReader:
    """A few batches of random inputs for onnxruntime's quantize_static."""

    def __init__(self, model):
        self.batches = iter([zoo.random_inputs(model, 8) for _ in range(4)])

    def get_next(self):
        return next(self.batches, None)


@pytest.mark.parametrize("name", sorted(zoo.MODELS))
@pytest.mark.parametrize("kind", ["dynamic", "static"])
def test_models_quantised_by_onnxruntime(name, kind, tmp_path):
    """onnxruntime's quantize_dynamic (MatMulInteger) and quantize_static (QDQ)
    models compile, every quantised product becomes an int8 dense layer, and
    the outputs match onnxruntime's within the int8 tolerance: no further
    from onnxruntime's int8 outputs than those are from the f32 model's,
    plus half a percent of the outputs' scale."""
    import onnxruntime as ort
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static
    source = model_path(name, tmp_path)
    model = onnx.load(source, load_external_data=False)
    quantized = str(tmp_path / f"{kind}.onnx")
    if kind == "dynamic":
        quantize_dynamic(source, quantized, weight_type=QuantType.QInt8)
    else:
        quantize_static(source, quantized, CalibrationReader(model), quant_format=QuantFormat.QDQ,
                        weight_type=QuantType.QInt8, per_channel=True)
    feeds = zoo.random_inputs(model, 16)
    f32 = ort.InferenceSession(source, providers=["CPUExecutionProvider"]).run(None, feeds)
    int8 = ort.InferenceSession(quantized, providers=["CPUExecutionProvider"]).run(None, feeds)
    so = str(tmp_path / "q.so")
    kiln.compile(quantized, so, batch=[16])
    with kiln.load(so) as m:
        got = list(m.run(feeds).values())
    for g, q, f in zip(got, int8, f32):
        allowed = np.abs(q - f).mean() + 5e-3 * np.abs(f).mean()
        assert np.abs(g - q).mean() <= allowed, (np.abs(g - q).mean(), allowed)
    mlir = subprocess.run([kiln._find_binary(), "compile", quantized, "-o", "-", "--emit", "mlir",
                           "--stop-after", "raise-idioms", "--batch", "16", "-q"],
                          check=True, capture_output=True, text=True).stdout
    # Every product on a quantised constant weight is an int8 dense layer.
    graph = onnx.load(quantized).graph
    weights = {i.name for i in graph.initializer}
    dequantized = {n.output[0] for n in graph.node if n.op_type == "DequantizeLinear" and n.input[0] in weights}
    products = sum(n.op_type == "MatMulInteger" or (n.op_type in ("MatMul", "Gemm") and n.input[1] in dequantized)
                   for n in graph.node)
    assert products >= 1 and mlir.count("xi8>, tensor<") == products, mlir


def has_avx512_bf16():
    with open("/proc/cpuinfo") as f:
        flags = next((line for line in f if line.startswith("flags")), "").split()
    return all(f in flags for f in ("avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16"))


@pytest.mark.skipif(not has_avx512_bf16(), reason="this CPU has no AVX-512 BF16")
def test_cpu_bf16_checked_against_f32(tmp_path):
    # --precision bf16 on the CPU: bf16 weights and dense-layer inputs
    # (vdpbf16ps), gated by the same accuracy check as --quantize.
    model = model_path("dcnv2", tmp_path)
    feeds = zoo.random_inputs(onnx.load(model, load_external_data=False), 13)
    so, f32, report = str(tmp_path / "bf16.so"), str(tmp_path / "f32.so"), tmp_path / "r.json"
    kiln.compile(model, so, batch=[1, 16], report=report,
                 extra_args=["--precision", "bf16", "--cpu", "native", "--validation-rows", "256"])
    kiln.compile(model, f32, batch=[1, 16])
    data = json.loads(report.read_text())
    assert data["quantize"]["weights"] == "bf16" and data["within_bound"], data
    check_report(data, model)
    info = inspect(so)
    assert info["target"] == "x86_64-avx2-fma-f16c-avx512vnni-bf16"
    assert info["weights_bytes"] < info["f32_weights_bytes"], info
    with kiln.load(so) as a, kiln.load(f32) as b:
        got, want = a.run(feeds), b.run(feeds)
    for name in want:
        diff = np.abs(got[name] - want[name]).max()
        assert 0 < diff < 0.02, (name, diff)  # rounded to bf16, and close


def test_cpu_bf16_needs_avx512_bf16(tmp_path):
    model = model_path("dcnv2", tmp_path)
    with pytest.raises(kiln.Error, match="--precision bf16 on the CPU multiplies with AVX-512 BF16"):
        kiln.compile(model, str(tmp_path / "m.so"), extra_args=["--precision", "bf16", "--cpu", "avx2"])
