"""kiln models served by the real Triton Inference Server (the pinned
nvidia-pytriton wheel's tritonserver) through kiln's backend, on free loopback
ports: a zoo DLRM and the real DIN export, requests over HTTP and gRPC from
threads, compared with onnxruntime's outputs; dynamic batching, a bad request
failing alone, a config contradicting the descriptor, a new version loaded
under load, a corrupt version, the metrics, and a clean stop."""
import os
import shutil
import signal
import threading
import time
import urllib.request

import numpy as np
import onnx
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from onnx import numpy_helper
from tritonclient.utils import InferenceServerException

import kiln
import kiln.serving
import zoo
from conftest import GPU, SHARED_MODELS, needs_nvcc

BUCKETS = [1, 16, 64]
RTOL, ATOL = 1e-4, 1e-5


CLIENTS = []


def client_of(module, url):
    """A client, closed before the server stops (Triton waits for open connections)."""
    CLIENTS.append(module.InferenceServerClient(url))
    return CLIENTS[-1]


def case(folder):
    model = onnx.load(os.path.join(folder, "model.onnx"), load_external_data=False)
    data = os.path.join(folder, "test_data_set_0")
    load = lambda kind, n: numpy_helper.to_array(onnx.load_tensor(os.path.join(data, f"{kind}_{n}.pb")))
    inputs = {i.name: load("input", n) for n, i in enumerate(model.graph.input)}
    outputs = {o.name: load("output", n) for n, o in enumerate(model.graph.output)}
    return inputs, outputs


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """name -> (model.so, reference inputs, onnxruntime's outputs)."""
    out = str(tmp_path_factory.mktemp("served"))
    folders = {"dlrm_kaggle": zoo.write("dlrm_kaggle", out, batch=24),
               "din": os.path.join(SHARED_MODELS, "din")}
    built = {}
    for name, folder in folders.items():
        so = os.path.join(out, f"{name}.so")
        kiln.compile(os.path.join(folder, "model.onnx"), so, batch=BUCKETS)
        built[name] = (so, *case(folder))
    return built


@pytest.fixture(scope="module")
def server(models, tmp_path_factory):
    repo = str(tmp_path_factory.mktemp("repo"))
    for name, (so, _, _) in models.items():
        kiln.serving.package(so, repo, name=name, instances=2, max_queue_delay_us=2000)
    # One instance and a long queue delay: concurrent requests share a batch.
    kiln.serving.package(models["dlrm_kaggle"][0], repo, name="batchy", instances=1,
                         max_queue_delay_us=200000)
    srv = kiln.serving.Server(repo, model_control="explicit")
    srv.repo_path = repo
    srv.start()
    yield srv
    srv.stop()


def infer(client, module, model, feeds):
    """One request of `feeds` (numpy arrays), through an http or grpc client."""
    inputs = []
    for name, value in feeds.items():
        if value.ndim == 1:  # one value per row: Triton's dims [1]
            value = value.reshape(-1, 1)
        i = module.InferInput(name, list(value.shape), _triton_dtype(value.dtype))
        i.set_data_from_numpy(np.ascontiguousarray(value))
        inputs.append(i)
    return client.infer(model, inputs)


def _triton_dtype(dtype):
    return {np.dtype(np.float32): "FP32", np.dtype(np.int64): "INT64",
            np.dtype(np.int32): "INT32"}[np.dtype(dtype)]


def stats(url, model):
    c = client_of(httpclient, url)
    s = c.get_inference_statistics(model)["model_stats"]
    return {int(m["version"]): m for m in s}


def test_config_is_completed_from_the_descriptor(server, models):
    c = client_of(httpclient, server.http)
    config = c.get_model_config("dlrm_kaggle")
    assert config["max_batch_size"] == 64
    assert config["dynamic_batching"]["preferred_batch_size"] == [16, 64]
    assert config["dynamic_batching"]["max_queue_delay_microseconds"] == 2000
    assert {i["name"]: (i["data_type"], i["dims"]) for i in config["input"]} == {
        "dense": ("TYPE_FP32", [13]), "sparse": ("TYPE_INT64", [26])}
    assert [(o["name"], o["dims"]) for o in config["output"]] == [("click_prob", [1])]
    assert config["instance_group"][0]["count"] == 2


@pytest.mark.parametrize("name", ["dlrm_kaggle", "din"])
def test_concurrent_http_and_grpc_requests_match_onnxruntime(server, models, name):
    _, inputs, expected = models[name]
    rows = next(iter(inputs.values())).shape[0]
    failures, checked = [], [0]

    def client_thread(protocol, seed):
        rng = np.random.default_rng(seed)
        module = httpclient if protocol == "http" else grpcclient
        client = client_of(module, server.http if protocol == "http" else server.grpc)
        for _ in range(12):
            start = int(rng.integers(0, rows))
            stop = int(rng.integers(start + 1, rows + 1))
            try:
                result = infer(client, module, name, {k: v[start:stop] for k, v in inputs.items()})
                for out, want in expected.items():
                    np.testing.assert_allclose(result.as_numpy(out).reshape(want[start:stop].shape),
                                               want[start:stop],
                                               rtol=RTOL, atol=ATOL)
                checked[0] += 1
            except Exception as e:  # reported below, with the request
                failures.append(f"{protocol} rows {start}:{stop}: {e}")

    threads = [threading.Thread(target=client_thread, args=(p, s))
               for s, p in enumerate(["http", "grpc"] * 4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures, failures[:3]
    assert checked[0] == 8 * 12


def test_dynamic_batching_forms_batches(server, models):
    _, inputs, _ = models["dlrm_kaggle"]
    before = stats(server.http, "batchy").get(1, {"inference_count": 0, "execution_count": 0})
    barrier = threading.Barrier(8)

    def one(i):
        client = client_of(httpclient, server.http)
        barrier.wait()
        infer(client, httpclient, "batchy", {k: v[i:i + 1] for k, v in inputs.items()})

    threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    after = stats(server.http, "batchy")[1]
    inferences = after["inference_count"] - before["inference_count"]
    executions = after["execution_count"] - before["execution_count"]
    assert inferences == 8
    assert executions < inferences, after


def test_a_bad_request_in_a_batch_fails_alone(server, models):
    _, inputs, expected = models["dlrm_kaggle"]
    before = stats(server.http, "batchy")[1]["execution_count"]
    barrier = threading.Barrier(6)
    results = {}

    def one(i):
        client = client_of(httpclient, server.http)
        feeds = {k: v[i:i + 1].copy() for k, v in inputs.items()}
        if i == 3:
            feeds["sparse"][0, 5] = 10 ** 9  # no table has that row
        barrier.wait()
        try:
            results[i] = infer(client, httpclient, "batchy", feeds).as_numpy("click_prob")
        except InferenceServerException as e:
            results[i] = e

    threads = [threading.Thread(target=one, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert isinstance(results[3], InferenceServerException)
    assert "input 'sparse'" in str(results[3]) and "outside the valid ids" in str(results[3])
    for i in (0, 1, 2, 4, 5):
        np.testing.assert_allclose(results[i], expected["click_prob"][i:i + 1], rtol=RTOL, atol=ATOL)
    # They did share batches with the bad one.
    assert stats(server.http, "batchy")[1]["execution_count"] - before < 6


def test_wrong_dtype_and_shape_fail_with_a_message(server, models):
    _, inputs, _ = models["dlrm_kaggle"]
    client = client_of(httpclient, server.http)
    bad = {"dense": inputs["dense"][:2].astype(np.int32), "sparse": inputs["sparse"][:2]}
    with pytest.raises(InferenceServerException, match="dense"):
        infer(client, httpclient, "dlrm_kaggle", bad)
    bad = {"dense": inputs["dense"][:2, :12], "sparse": inputs["sparse"][:2]}
    with pytest.raises(InferenceServerException, match="dense"):
        infer(client, httpclient, "dlrm_kaggle", bad)


def test_a_config_contradicting_the_descriptor_is_refused(server, models):
    entry = os.path.join(server.repo_path, "contradicts")
    kiln.serving.package(models["dlrm_kaggle"][0], server.repo_path, name="contradicts")
    with open(os.path.join(entry, "config.pbtxt"), "a") as f:
        f.write('input [ { name: "dense" data_type: TYPE_FP32 dims: [ 12 ] },'
                ' { name: "sparse" data_type: TYPE_INT64 dims: [ 26 ] } ]\n')
    client = client_of(httpclient, server.http)
    with pytest.raises(InferenceServerException) as e:
        client.load_model("contradicts")
    assert "input 'dense': dims [12], the model's (without the batch) are [13]" in str(e.value)
    shutil.rmtree(entry)


def test_a_minimal_config_is_completed_with_the_buckets(server, models):
    entry = os.path.join(server.repo_path, "minimal")
    os.makedirs(os.path.join(entry, "1"))
    shutil.copy(models["din"][0], os.path.join(entry, "1", "model.so"))
    with open(os.path.join(entry, "config.pbtxt"), "w") as f:
        f.write('backend: "kiln"\n')
    client = client_of(httpclient, server.http)
    client.load_model("minimal")
    config = client.get_model_config("minimal")
    assert config["max_batch_size"] == 64
    assert config["dynamic_batching"]["preferred_batch_size"] == [16, 64]
    assert [(i["name"], i["dims"], i.get("reshape")) for i in config["input"]][:2] == [
        ("profile", [16], None), ("cand_item", [1], {"shape": []})]
    client.unload_model("minimal")
    shutil.rmtree(entry)


def test_metrics_show_kiln_counters(server):
    with urllib.request.urlopen(server.metrics, timeout=10) as r:
        text = r.read().decode()
    assert 'nv_inference_count{model="dlrm_kaggle",version="1"}' in text
    rows = [l for l in text.splitlines() if l.startswith('kiln_rows_total{model="dlrm_kaggle"')]
    assert rows and float(rows[0].split()[-1]) > 0
    assert "kiln_padding_rows_total" in text
    rejected = [l for l in text.splitlines() if l.startswith('kiln_rejected_requests_total{model="batchy"')]
    assert rejected and float(rejected[0].split()[-1]) >= 1


def test_new_version_loads_under_load_without_errors(server, models):
    so, inputs, expected = models["din"]
    errors, versions, stop = [], [], threading.Event()

    def client_thread(seed):
        client = client_of(grpcclient, server.grpc)
        rng = np.random.default_rng(seed)
        while not stop.is_set():
            start = int(rng.integers(0, 8))
            try:
                r = infer(client, grpcclient, "din", {k: v[start:start + 1] for k, v in inputs.items()})
                for out, want in expected.items():
                    np.testing.assert_allclose(r.as_numpy(out).reshape(want[start:start + 1].shape),
                                               want[start:start + 1],
                                               rtol=RTOL, atol=ATOL)
                versions.append(r.get_response().model_version)
            except Exception as e:
                errors.append(str(e))

    threads = [threading.Thread(target=client_thread, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    kiln.serving.package(so, server.repo_path, name="din", version=2, instances=2)
    client_of(httpclient, server.http).load_model("din")
    time.sleep(1.0)
    stop.set()
    for t in threads:
        t.join()
    assert not errors, errors[:3]
    assert "1" in versions and versions[-1] == "2"
    assert set(versions) == {"1", "2"}


def test_a_corrupt_version_fails_to_load_and_the_old_one_keeps_serving(server, models):
    so, inputs, expected = models["din"]
    broken = os.path.join(server.repo_path, "din", "3")
    os.makedirs(broken)
    with open(so, "rb") as f:
        half = f.read()[: os.path.getsize(so) // 2]
    with open(os.path.join(broken, "model.so"), "wb") as f:  # half-copied
        f.write(half)
    client = client_of(httpclient, server.http)
    with pytest.raises(InferenceServerException) as e:
        client.load_model("din")
    assert "kiln: " in str(e.value) and "model.so" in str(e.value)
    r = infer(client, httpclient, "din", {k: v[:4] for k, v in inputs.items()})
    for out, want in expected.items():
        np.testing.assert_allclose(r.as_numpy(out).reshape(want[:4].shape), want[:4],
                                   rtol=RTOL, atol=ATOL)
    assert r.get_response()["model_version"] == "2"
    shutil.rmtree(broken)


def test_stop_leaves_no_process_behind(server):
    pid = server.triton_pid
    assert pid and os.path.exists(f"/proc/{pid}")
    for c in CLIENTS:
        c.close()
    assert server.stop() == 0  # SIGINT: Triton shuts down cleanly
    assert not kiln.serving._alive(pid)


def test_killing_kiln_serve_takes_triton_down(models, tmp_path):
    repo = str(tmp_path / "repo")
    kiln.serving.package(models["din"][0], repo, name="din")
    srv = kiln.serving.Server(repo).start()
    pid = srv.triton_pid
    srv.process.send_signal(signal.SIGKILL)
    srv.process.wait()
    deadline = time.monotonic() + 30
    while kiln.serving._alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not kiln.serving._alive(pid)
    srv.process = None


@pytest.fixture(scope="module")
def cuda_model(tmp_path_factory):
    """A zoo DLRM built for the CUDA target, and its reference case."""
    out = str(tmp_path_factory.mktemp("cuda"))
    folder = zoo.write("dlrm_kaggle", out, batch=8)
    so = os.path.join(out, "dlrm_gpu.so")
    kiln.compile(os.path.join(folder, "model.onnx"), so, batch=[1, 8], target="cuda")
    return (so, *case(folder))


@needs_nvcc
def test_a_cuda_model_is_packaged_for_gpu_instances(cuda_model, tmp_path):
    repo = str(tmp_path / "repo")
    kiln.serving.package(cuda_model[0], repo, name="dlrm_gpu", instances=2)
    with open(os.path.join(repo, "dlrm_gpu", "config.pbtxt")) as f:
        config = f.read()
    assert "count: 2 kind: KIND_GPU gpus: [ 0 ]" in config, config


@pytest.mark.skipif(not GPU, reason="no GPU on this machine")
@needs_nvcc
def test_a_cuda_model_serves_on_a_gpu_instance(cuda_model, tmp_path):
    so, inputs, expected = cuda_model
    repo = str(tmp_path / "repo")
    kiln.serving.package(so, repo, name="dlrm_gpu")
    with kiln.serving.Server(repo) as srv:
        client = grpcclient.InferenceServerClient(srv.grpc)
        result = infer(client, grpcclient, "dlrm_gpu", inputs)
        for out, want in expected.items():
            np.testing.assert_allclose(result.as_numpy(out).reshape(want.shape), want,
                                       rtol=RTOL, atol=ATOL)
        client.close()
