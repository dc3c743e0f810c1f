"""The real PyTorch exports in ../shared/models (TorchScript exporter: Loop-based
EmbeddingBag, LayerNormalization, Where/Expand mask chains, Shape chains),
compiled at buckets 1, 16, 64, 256 and compared with their shipped reference
outputs at batch 8, and with onnxruntime on other batches."""
import os

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

import kiln
from conftest import SHARED_MODELS

MODELS = ["dlrm_bag", "bert_rel", "din"]
BUCKETS = [1, 16, 64, 256]


def load_case(folder):
    case = os.path.join(folder, "test_data_set_0")
    model = onnx.load(os.path.join(folder, "model.onnx"), load_external_data=False)
    names = [i.name for i in model.graph.input]
    inputs, outputs = {}, []
    for i, name in enumerate(names):
        inputs[name] = numpy_helper.to_array(onnx.load_tensor(os.path.join(case, f"input_{i}.pb")))
    i = 0
    while os.path.exists(os.path.join(case, f"output_{i}.pb")):
        outputs.append(numpy_helper.to_array(onnx.load_tensor(os.path.join(case, f"output_{i}.pb"))))
        i += 1
    return inputs, outputs


@pytest.fixture(scope="module", params=MODELS)
def compiled(request, tmp_path_factory):
    folder = os.path.join(SHARED_MODELS, request.param)
    if not os.path.isdir(folder):
        pytest.skip(f"{folder} is not present")
    out = tmp_path_factory.mktemp(request.param) / "model.so"
    kiln.compile(os.path.join(folder, "model.onnx"), out, batch=BUCKETS)
    return folder, out


def test_matches_the_shipped_reference_at_batch_8(compiled):
    folder, so = compiled
    inputs, expected = load_case(folder)
    with kiln.load(so) as model:
        got = model.run(inputs)
        for info, want in zip(model.outputs, expected):
            np.testing.assert_allclose(got[info.name], want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("batch", [1, 3])
def test_matches_onnxruntime_on_other_batches(compiled, batch):
    folder, so = compiled
    inputs, _ = load_case(folder)
    feeds = {k: v[:batch] for k, v in inputs.items()}
    session = ort.InferenceSession(os.path.join(folder, "model.onnx"), providers=["CPUExecutionProvider"])
    expected = session.run(None, feeds)
    with kiln.load(so) as model:
        got = model.run(feeds)
        for info, want in zip(model.outputs, expected):
            np.testing.assert_allclose(got[info.name], want, rtol=1e-4, atol=1e-5)
