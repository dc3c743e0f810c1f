#!/usr/bin/env python3
"""Load test of kiln's Triton backend, side by side in one run with
(b) the same ONNX model served by Triton's Python backend running onnxruntime
(what a user of the nvidia-pytriton wheel would do instead) and (c) in-process
kiln with no server, as the floor.

One tritonserver (the pinned wheel's, through `kiln serve`) serves both
(a) and (b) on loopback; their model instances have the same thread count.
Requests are batch-1 rows sent open-loop by Poisson arrivals at a fixed rate
over gRPC (async, so a slow answer does not slow the arrivals), bounded in
request count and seconds. For each model and server it measures:
  - low load: p50/p99/p99.9 latency at a rate far below capacity; the server's
    added latency is its p50 minus in-process kiln's batch-1 p50;
  - saturation: the throughput achieved when arrivals far exceed capacity, and
    the mean batch Triton formed (from its statistics endpoint);
  - 70% of the saturation rate: p50/p99 and errors;
  - a latency-against-load sweep for the plot.
Levels alternate (a), (b) at each rate. (c) runs in this process at batch 1
and at the mean batch (a) formed at saturation. Results go to
bench/serve_load.json, the load-test section of docs/serving.md and
docs/serving_load.png.

    .venv/bin/python bench/serve_load.py [--models dlrm_kaggle,dcnv2] [--seconds 6]

The client shares the machine with the server (2 cores here): at saturation
the numbers are those of client and server together, for both servers alike.
"""
import argparse
import json
import os
import platform
import queue
import shutil
import sys
import tempfile
import threading
import time
import urllib.request

import numpy as np
import onnx
import tritonclient.grpc as grpcclient

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench", "models"))
sys.path.insert(0, os.path.join(ROOT, "python"))
import kiln  # noqa: E402
import kiln.serving  # noqa: E402
import zoo  # noqa: E402

BUCKETS = [1, 16, 64]
PY_MODEL = '''import json, os
import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(os.environ.get("KILN_BENCH_THREADS", "1"))
        options.inter_op_num_threads = 1
        path = os.path.join(args["model_repository"], args["model_version"], "model.onnx")
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.outputs = [o.name for o in self.session.get_outputs()]

    def execute(self, requests):
        feeds = {n: np.concatenate([pb_utils.get_input_tensor_by_name(r, n).as_numpy()
                                    for r in requests]) for n in self.inputs}
        rows = [pb_utils.get_input_tensor_by_name(r, self.inputs[0]).as_numpy().shape[0]
                for r in requests]
        results = self.session.run(self.outputs, feeds)
        responses, start = [], 0
        for n in rows:
            responses.append(pb_utils.InferenceResponse(
                [pb_utils.Tensor(o, v[start:start + n]) for o, v in zip(self.outputs, results)]))
            start += n
        return responses
'''


def ort_config(name, model, max_queue_delay_us, threads):
    """config.pbtxt of the Python-backend entry: what kiln's backend completes itself."""
    kinds = {onnx.TensorProto.FLOAT: "TYPE_FP32", onnx.TensorProto.INT64: "TYPE_INT64"}

    def io(values):
        return ", ".join(
            f'{{ name: "{v.name}" data_type: {kinds[v.type.tensor_type.elem_type]} dims: '
            f'[ {", ".join(str(d.dim_value) for d in v.type.tensor_type.shape.dim[1:])} ] }}'
            for v in values)

    return (f'name: "{name}"\nbackend: "python"\nmax_batch_size: {BUCKETS[-1]}\n'
            f'input [ {io(model.graph.input)} ]\noutput [ {io(model.graph.output)} ]\n'
            f'dynamic_batching {{ preferred_batch_size: [ {", ".join(map(str, BUCKETS[1:]))} ] '
            f'max_queue_delay_microseconds: {max_queue_delay_us} }}\n'
            f'instance_group [ {{ count: 1 kind: KIND_CPU }} ]\n')


def backends_with_python(folder):
    """A backend folder with kiln's backend and the wheel's Python backend and stub."""
    import importlib.util  # found, not imported: pytriton's Python API is not installed whole
    wheel = os.path.join(os.path.dirname(importlib.util.find_spec("pytriton").origin), "tritonserver")
    py = os.path.join(folder, "python")
    shutil.copytree(os.path.join(wheel, "backends", "python"), py)
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    shutil.copy(os.path.join(wheel, "python_backend_stubs", version, "triton_python_backend_stub"), py)
    os.symlink(os.path.join(ROOT, "build", "serving", "backends", "kiln"), os.path.join(folder, "kiln"))
    return folder


def one_row_inputs(feeds, i):
    inputs = []
    for name, value in feeds.items():
        row = np.ascontiguousarray(value[i:i + 1])
        t = grpcclient.InferInput(name, list(row.shape), "FP32" if row.dtype == np.float32 else "INT64")
        t.set_data_from_numpy(row)
        inputs.append(t)
    return inputs


def load_level(url, model, requests, rate, count, seconds, seed):
    """Open-loop Poisson arrivals at `rate`/s; returns latencies (s), errors, wall time."""
    client = grpcclient.InferenceServerClient(url)
    rng = np.random.default_rng(seed)
    gaps = rng.exponential(1.0 / rate, count)
    done, latencies, errors = threading.Semaphore(0), [], [0]

    def callback(start, result, error):
        if error is not None:
            errors[0] += 1
        else:
            latencies.append(time.perf_counter() - start)
        done.release()

    begin = time.perf_counter()
    due, sent = begin, 0
    for gap in gaps:
        due += gap
        now = time.perf_counter()
        if due > now:
            time.sleep(due - now)
        if now - begin > seconds:
            break
        start = time.perf_counter()
        client.async_infer(model, requests[sent % len(requests)],
                           lambda r, e, s=start: callback(s, r, e))
        sent += 1
    for _ in range(sent):
        if not done.acquire(timeout=60):
            errors[0] += 1
    wall = time.perf_counter() - begin
    client.close()
    return np.array(latencies), errors[0], sent, wall


def batch_stats(http, model):
    with urllib.request.urlopen(f"http://{http}/v2/models/{model}/stats", timeout=10) as r:
        s = json.load(r)["model_stats"][0]
    return s["inference_count"], s["execution_count"]


def summary(lat, errors, sent, wall):
    us = lambda q: float(np.quantile(lat, q) * 1e6) if len(lat) else float("nan")
    return {"p50_us": us(0.5), "p99_us": us(0.99), "p999_us": us(0.999),
            "throughput": len(lat) / wall, "errors": int(errors), "sent": int(sent)}


def measured(server, name, requests, rate, count, seconds, seed):
    before = batch_stats(server.http, name)
    result = summary(*load_level(server.grpc, name, requests, rate, count, seconds, seed))
    after = batch_stats(server.http, name)
    executions = after[1] - before[1]
    result["mean_batch"] = (after[0] - before[0]) / executions if executions else 0.0
    result["offered_rate"] = rate
    return result


def in_process(so, feeds, batch, runs):
    with kiln.load(so) as model:
        rows = {k: np.ascontiguousarray(np.resize(v, (batch,) + v.shape[1:])) for k, v in feeds.items()}
        binding = model.bind(rows)
        for _ in range(20):
            binding.run()
        times = []
        for _ in range(runs):
            t = time.perf_counter()
            binding.run()
            times.append(time.perf_counter() - t)
    times = np.array(times)
    return {"p50_us": float(np.median(times) * 1e6), "throughput": batch / float(np.mean(times))}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="dlrm_kaggle,dcnv2")
    ap.add_argument("--seconds", type=float, default=6.0, help="bound of each load level")
    ap.add_argument("--count", type=int, default=6000, help="bound of requests per level")
    ap.add_argument("--low-rate", type=float, default=100.0)
    ap.add_argument("--flood-rate", type=float, default=20000.0, help="rate beyond capacity")
    ap.add_argument("--max-queue-delay-us", type=int, default=500)
    ap.add_argument("--json", default=os.path.join(ROOT, "bench", "serve_load.json"))
    ap.add_argument("--docs", default=os.path.join(ROOT, "docs"))
    args = ap.parse_args()

    work = tempfile.mkdtemp(prefix="kiln-serve-load-")
    repo = os.path.join(work, "repo")
    os.makedirs(repo)
    cases = {}
    for name in args.models.split(","):
        folder = zoo.write(name, work, batch=64)
        onnx_path = os.path.join(folder, "model.onnx")
        so = os.path.join(work, f"{name}.so")
        kiln.compile(onnx_path, so, batch=BUCKETS)
        kiln.serving.package(so, repo, name=f"kiln_{name}", instances=1, threads=1,
                             max_queue_delay_us=args.max_queue_delay_us)
        entry = os.path.join(repo, f"ort_{name}")
        os.makedirs(os.path.join(entry, "1"))
        shutil.copy(onnx_path, os.path.join(entry, "1", "model.onnx"))
        with open(os.path.join(entry, "1", "model.py"), "w") as f:
            f.write(PY_MODEL)
        with open(os.path.join(entry, "config.pbtxt"), "w") as f:
            f.write(ort_config(f"ort_{name}", onnx.load(onnx_path), args.max_queue_delay_us, 1))
        feeds = zoo.random_inputs(onnx.load(onnx_path), 64, seed=1)
        cases[name] = (so, feeds, [one_row_inputs(feeds, i) for i in range(64)])

    os.environ["KILN_TRITON_BACKENDS"] = backends_with_python(os.path.join(work, "backends"))
    site = next(p for p in sys.path if p.endswith("site-packages"))
    os.environ["PYTHONPATH"] = site  # the Python backend's stub imports onnxruntime from .venv
    libs = os.path.join(site, "nvidia_pytriton.libs")  # the stub's libcudart, outside its folder
    os.environ["LD_LIBRARY_PATH"] = libs + ":" + os.environ.get("LD_LIBRARY_PATH", "")
    results = {"machine": platform.processor() or platform.machine(), "cores": os.cpu_count(),
               "bound_seconds": args.seconds, "bound_requests": args.count, "models": {}}
    with kiln.serving.Server(repo) as server:
        for name, (so, feeds, requests) in cases.items():
            print(f"== {name}", flush=True)
            r = {"kiln": {}, "ort": {}}
            for kind in ("kiln", "ort"):  # warm-up
                load_level(server.grpc, f"{kind}_{name}", requests, 500, 300, 2, 0)
            for kind in ("kiln", "ort"):
                r[kind]["low"] = measured(server, f"{kind}_{name}", requests, args.low_rate,
                                          min(args.count, int(args.low_rate * args.seconds)),
                                          args.seconds, 1)
                r[kind]["saturation"] = measured(server, f"{kind}_{name}", requests,
                                                 args.flood_rate, args.count, args.seconds, 2)
                sat = r[kind]["saturation"]["throughput"]
                r[kind]["at70"] = measured(server, f"{kind}_{name}", requests, 0.7 * sat,
                                           args.count, args.seconds, 3)
                print(f"  {kind}: low p50 {r[kind]['low']['p50_us']:.0f} us, saturation "
                      f"{sat:.0f}/s (mean batch {r[kind]['saturation']['mean_batch']:.1f}), 70%: "
                      f"p50 {r[kind]['at70']['p50_us']:.0f} p99 {r[kind]['at70']['p99_us']:.0f} us",
                      flush=True)
            sweep_top = max(r["kiln"]["saturation"]["throughput"], r["ort"]["saturation"]["throughput"])
            r["sweep"] = {"kiln": [], "ort": []}
            for fraction in (0.1, 0.3, 0.5, 0.7, 0.9):
                for kind in ("kiln", "ort"):  # alternating at each rate
                    rate = fraction * sweep_top
                    if rate > 1.2 * r[kind]["saturation"]["throughput"]:
                        continue
                    r["sweep"][kind].append(measured(server, f"{kind}_{name}", requests, rate,
                                                     args.count, args.seconds / 2, 4))
            batch = max(1, round(r["kiln"]["saturation"]["mean_batch"]))
            r["in_process"] = {"batch1": in_process(so, feeds, 1, 2000),
                               f"batch{batch}": in_process(so, feeds, batch, 500), "batch": batch}
            results["models"][name] = r
    shutil.rmtree(work, ignore_errors=True)
    with open(args.json, "w") as f:
        json.dump(results, f, indent=1)
    write_docs(results, args.docs)


def write_docs(results, docs):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lines = ["## Load test", "", "Generated by `bench/serve_load.py`.", "",
             f"Machine: {results['cores']} cores ({results['machine']}); client and tritonserver "
             "share it. Batch-1 requests, open-loop Poisson arrivals over gRPC on loopback, each "
             f"level bounded by {results['bound_requests']} requests and "
             f"{results['bound_seconds']} s. One model instance with one thread for each server. "
             "(a) kiln's Triton backend, (b) Triton's Python backend running onnxruntime, "
             "(c) in-process kiln, no server.", "",
             "| model | | (a) kiln backend | (b) Python + onnxruntime | (c) in-process kiln | a/b | a/c |",
             "|---|---|---|---|---|---|---|"]
    fig, axes = plt.subplots(1, len(results["models"]), figsize=(6 * len(results["models"]), 4),
                             squeeze=False)
    for ax, (name, r) in zip(axes[0], results["models"].items()):
        k, o, c = r["kiln"], r["ort"], r["in_process"]
        b = r["in_process"]["batch"]
        sat_k, sat_o = k["saturation"]["throughput"], o["saturation"]["throughput"]
        inproc = c[f"batch{b}"]["throughput"]
        lines += [
            f"| {name} | saturation throughput (req/s) | {sat_k:.0f} (mean batch "
            f"{k['saturation']['mean_batch']:.1f}) | {sat_o:.0f} (mean batch "
            f"{o['saturation']['mean_batch']:.1f}) | {inproc:.0f} (batch {b}) | "
            f"{sat_k / sat_o:.2f}x | {sat_k / inproc:.2f}x |",
            f"| | low load p50 / p99 / p99.9 (us) | {k['low']['p50_us']:.0f} / {k['low']['p99_us']:.0f}"
            f" / {k['low']['p999_us']:.0f} | {o['low']['p50_us']:.0f} / {o['low']['p99_us']:.0f} / "
            f"{o['low']['p999_us']:.0f} | {c['batch1']['p50_us']:.0f} (batch 1) | | |",
            f"| | added latency at low load, p50 (us) | {k['low']['p50_us'] - c['batch1']['p50_us']:.0f}"
            f" | {o['low']['p50_us'] - c['batch1']['p50_us']:.0f} | | | |",
            f"| | at 70% of saturation: p50 / p99 (us), errors | {k['at70']['p50_us']:.0f} / "
            f"{k['at70']['p99_us']:.0f}, {k['at70']['errors']} | {o['at70']['p50_us']:.0f} / "
            f"{o['at70']['p99_us']:.0f}, {o['at70']['errors']} | | | |"]
        for kind, label in (("kiln", "kiln backend"), ("ort", "Python + onnxruntime")):
            pts = r["sweep"][kind]
            ax.plot([p["throughput"] for p in pts], [p["p50_us"] for p in pts], "o-", label=f"{label} p50")
            ax.plot([p["throughput"] for p in pts], [p["p99_us"] for p in pts], "x--", label=f"{label} p99")
        ax.set_title(name)
        ax.set_xlabel("achieved throughput (requests/s)")
        ax.set_ylabel("latency (us)")
        ax.set_yscale("log")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(docs, "serving_load.png"), dpi=110)
    lines += ["", "![latency against load](serving_load.png)"]
    # The generated part of docs/serving.md, between its markers.
    path = os.path.join(docs, "serving.md")
    with open(path) as f:
        text = f.read()
    begin, end = "<!-- serve_load: begin -->", "<!-- serve_load: end -->"
    head, rest = text.split(begin)
    with open(path, "w") as f:
        f.write(head + begin + "\n" + "\n".join(lines) + "\n" + end + rest.split(end)[1])


if __name__ == "__main__":
    main()
