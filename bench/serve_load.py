#!/usr/bin/env python3
"""Load test of kiln's Triton backend, side by side in one run with
(b) the same ONNX model served by Triton's Python backend running onnxruntime
(what a user of the nvidia-pytriton wheel would do instead) and (c) in-process
kiln with no server, as the floor.

One tritonserver (the pinned wheel's, through `kiln serve`) serves both
(a) and (b) on loopback; their model instances have the same thread count and
dynamic batching. Requests are sent open-loop by Poisson arrivals at a fixed
rate over gRPC from one asyncio client (a slow answer does not slow the
arrivals), bounded in request count and seconds. For each model and server:
  - low load, 1-row requests: p50/p99/p99.9 as the client saw them (gRPC,
    and HTTP through tritonclient.http), and
    Triton's own mean time of a request by phase (its statistics endpoint);
    the server's added latency is either minus in-process kiln's batch-1 p50
    (in-process kiln is also timed with the low load's mean gap before each
    run, which shows what a cold run costs);
  - saturation, 1-row requests: throughput when arrivals far exceed capacity,
    the mean batch Triton formed, and the client's CPU share (near 1 means the
    client, not the server, set the rate);
  - 70% of that saturation rate: p50/p99 and errors;
  - saturation with --rows-row requests (rows/s), where the server and not
    the client is the limit;
  - a latency-against-load sweep of 1-row requests for the plot.
Levels alternate (a), (b). (c) runs in this process at batch 1 and at the
mean batch (a) formed at the second saturation level. Results go to
bench/serve_load.json, the load-test section of docs/serving.md and
docs/serving_load.png.

    .venv/bin/python bench/serve_load.py [--models dlrm_kaggle,dcnv2] [--seconds 4]

The client shares the machine with the server (2 cores here): at saturation
the numbers are those of client and server together, for both servers alike.
"""
import argparse
import asyncio
import json
import os
import platform
import shutil
import sys
import tempfile
import time
import urllib.request

import numpy as np
import onnx
import grpc
import tritonclient.http as httpclient
from tritonclient.grpc import service_pb2, service_pb2_grpc

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench", "models"))
sys.path.insert(0, os.path.join(ROOT, "python"))
import kiln  # noqa: E402
import kiln.serving  # noqa: E402
import zoo  # noqa: E402

BUCKETS = [1, 2, 4, 8, 16, 32, 64]
PY_MODEL = '''import os, sys
sys.path.insert(0, SITE_PACKAGES)  # the stub ignores PYTHONPATH; onnxruntime is in .venv
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


def row_requests(model, feeds, rows):
    """`feeds` cut into ready ModelInferRequests of `rows` rows each: the
    protobuf is built once, so the client's cost per request is gRPC's alone."""
    requests = []
    for i in range(0, len(next(iter(feeds.values()))) - rows + 1, rows):
        request = service_pb2.ModelInferRequest(model_name=model)
        for name, value in feeds.items():
            part = np.ascontiguousarray(value[i:i + rows])
            t = request.inputs.add(name=name, shape=list(part.shape))
            t.datatype = "FP32" if part.dtype == np.float32 else "INT64"
            request.raw_input_contents.append(part.tobytes())
        requests.append(request)
    return requests


def arrivals(rate, count, seconds, seed):
    """The wait (s) before each of up to `count` Poisson arrivals at `rate`/s,
    kept on their schedule however long the sends take, for `seconds`."""
    begin = due = time.perf_counter()
    for gap in np.random.default_rng(seed).exponential(1.0 / rate, count):
        due += gap
        now = time.perf_counter()
        if now - begin > seconds:
            return
        yield max(0.0, due - now)


def load_level(url, requests, rate, count, seconds, seed):
    """Open-loop Poisson arrivals at `rate`/s from one asyncio client (gRPC's
    cheapest Python client: about 80 us of CPU a request here); returns
    latencies (s), errors, requests sent and wall time."""
    return asyncio.run(_load_level(url, requests, rate, count, seconds, seed))


async def _load_level(url, requests, rate, count, seconds, seed):
    latencies, errors = [], [0]
    async with grpc.aio.insecure_channel(url) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)

        async def one(request):
            start = time.perf_counter()
            try:
                await stub.ModelInfer(request, timeout=60)
                latencies.append(time.perf_counter() - start)
            except grpc.aio.AioRpcError:
                errors[0] += 1

        begin, tasks = time.perf_counter(), []
        for wait in arrivals(rate, count, seconds, seed):
            if wait:
                await asyncio.sleep(wait)
            tasks.append(asyncio.ensure_future(one(requests[len(tasks) % len(requests)])))
        await asyncio.gather(*tasks)
        wall = time.perf_counter() - begin
    return np.array(latencies), errors[0], len(tasks), wall


def http_low_load(url, model, feeds, rate, count, seconds, seed):
    """Low load over HTTP (tritonclient.http): 1-row requests at Poisson
    times from one thread; at a low rate each answer comes long before the next
    arrival, so the pacing stays open-loop. Returns what summary() takes."""
    client = httpclient.InferenceServerClient(url)
    rows = len(next(iter(feeds.values())))
    latencies, errors, sent = [], 0, 0
    begin = time.perf_counter()
    for wait in arrivals(rate, count, seconds, seed):
        time.sleep(wait)
        inputs = []
        for name, value in feeds.items():
            row = np.ascontiguousarray(value[sent % rows:sent % rows + 1])
            t = httpclient.InferInput(name, list(row.shape),
                                      "FP32" if row.dtype == np.float32 else "INT64")
            t.set_data_from_numpy(row)
            inputs.append(t)
        start = time.perf_counter()
        try:
            client.infer(model, inputs)
            latencies.append(time.perf_counter() - start)
        except Exception:  # counted; the level goes on
            errors += 1
        sent += 1
    wall = time.perf_counter() - begin
    client.close()
    return np.array(latencies), errors, sent, wall


def server_stats(http, model):
    with urllib.request.urlopen(f"http://{http}/v2/models/{model}/stats", timeout=10) as r:
        return json.load(r)["model_stats"][0]


def summary(lat, errors, sent, wall):
    us = lambda q: float(np.quantile(lat, q) * 1e6) if len(lat) else float("nan")
    return {"p50_us": us(0.5), "p99_us": us(0.99), "p999_us": us(0.999),
            "throughput": len(lat) / wall, "errors": int(errors), "sent": int(sent)}


PHASES = ("success", "queue", "compute_input", "compute_infer", "compute_output")


def measured(server, name, requests, rate, count, seconds, seed):
    """One load level, with what Triton's statistics say of it: the mean batch
    it formed and the mean time a request spent in the server, by phase."""
    before, cpu = server_stats(server.http, name), os.times()
    result = summary(*load_level(server.grpc, requests, rate, count, seconds, seed))
    after, cpu_after = server_stats(server.http, name), os.times()
    # The client's share of one core: near 1, the client and not the server set the rate.
    result["client_cpu"] = (cpu_after.user - cpu.user + cpu_after.system - cpu.system) / (
        cpu_after.elapsed - cpu.elapsed)
    executions = after["execution_count"] - before["execution_count"]
    inferences = after["inference_count"] - before["inference_count"]
    result["mean_batch"] = inferences / executions if executions else 0.0
    ok = after["inference_stats"]["success"]["count"] - before["inference_stats"]["success"]["count"]
    result["server_us"] = {
        k: (after["inference_stats"][k]["ns"] - before["inference_stats"][k]["ns"]) / ok / 1e3
        if ok else float("nan") for k in PHASES}
    result["offered_rate"] = rate
    return result


def in_process(so, feeds, batch, runs, gap=0.0):
    """p50 and throughput of kiln_run in this process, back to back or with
    `gap` seconds of sleep before each run (as between low-load arrivals)."""
    with kiln.load(so) as model:
        rows = {k: np.ascontiguousarray(np.resize(v, (batch,) + v.shape[1:])) for k, v in feeds.items()}
        binding = model.bind(rows)
        for _ in range(20):
            binding.run()
        times = []
        for _ in range(runs):
            if gap:
                time.sleep(gap)
            t = time.perf_counter()
            binding.run()
            times.append(time.perf_counter() - t)
    times = np.array(times)
    return {"p50_us": float(np.median(times) * 1e6), "throughput": batch / float(np.mean(times))}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="dlrm_kaggle,dcnv2")
    ap.add_argument("--seconds", type=float, default=4.0, help="bound of each load level")
    ap.add_argument("--count", type=int, default=20000, help="bound of requests per level")
    ap.add_argument("--low-rate", type=float, default=100.0)
    ap.add_argument("--flood-rate", type=float, default=20000.0, help="rate beyond capacity")
    ap.add_argument("--rows", type=int, default=8,
                    help="rows per request at the second saturation level")
    ap.add_argument("--max-queue-delay-us", type=int, default=0)
    ap.add_argument("--json", default=os.path.join(ROOT, "bench", "serve_load.json"))
    ap.add_argument("--docs", default=os.path.join(ROOT, "docs"))
    args = ap.parse_args()

    site = next(p for p in sys.path if p.endswith("site-packages"))
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
            f.write(PY_MODEL.replace("SITE_PACKAGES", repr(site)))
        with open(os.path.join(entry, "config.pbtxt"), "w") as f:
            f.write(ort_config(f"ort_{name}", onnx.load(onnx_path), args.max_queue_delay_us, 1))
        feeds = zoo.random_inputs(onnx.load(onnx_path), 64, seed=1)
        cases[name] = (so, feeds, {(kind, rows): row_requests(f"{kind}_{name}", feeds, rows)
                                   for kind in ("kiln", "ort") for rows in (1, args.rows)})

    os.environ["KILN_TRITON_BACKENDS"] = backends_with_python(os.path.join(work, "backends"))
    libs = os.path.join(site, "nvidia_pytriton.libs")  # the stub's libcudart, outside its folder
    os.environ["LD_LIBRARY_PATH"] = libs + ":" + os.environ.get("LD_LIBRARY_PATH", "")
    results = {"machine": platform.processor() or platform.machine(), "cores": os.cpu_count(),
               "bound_seconds": args.seconds, "bound_requests": args.count, "rows": args.rows,
               "max_queue_delay_us": args.max_queue_delay_us, "low_rate": args.low_rate,
               "buckets": BUCKETS, "models": {}}
    with kiln.serving.Server(repo) as server:
        for name, (so, feeds, requests) in cases.items():
            print(f"== {name}", flush=True)
            r = {"kiln": {}, "ort": {}}

            def level(kind, rows, rate, seconds, seed, count=args.count):
                return measured(server, f"{kind}_{name}", requests[kind, rows], rate, count,
                                seconds, seed)

            for kind in ("kiln", "ort"):  # warm-up
                load_level(server.grpc, requests[kind, 1], 500, 300, 2, 0)
            for kind in ("kiln", "ort"):
                r[kind]["low"] = level(kind, 1, args.low_rate, args.seconds, 1,
                                       min(args.count, int(args.low_rate * args.seconds)))
                r[kind]["low_http"] = summary(*http_low_load(
                    server.http, f"{kind}_{name}", feeds, args.low_rate,
                    min(args.count, int(args.low_rate * args.seconds)), args.seconds, 6))
                r[kind]["saturation"] = level(kind, 1, args.flood_rate, args.seconds, 2)
                sat = r[kind]["saturation"]["throughput"]
                r[kind]["at70"] = level(kind, 1, 0.7 * sat, args.seconds, 3)
                r[kind]["saturation_rows"] = level(kind, args.rows, args.flood_rate, args.seconds, 4)
                print(f"  {kind}: low p50 {r[kind]['low']['p50_us']:.0f} us, saturation {sat:.0f}/s "
                      f"(mean batch {r[kind]['saturation']['mean_batch']:.1f}), 70%: p50 "
                      f"{r[kind]['at70']['p50_us']:.0f} p99 {r[kind]['at70']['p99_us']:.0f} us; "
                      f"{args.rows}-row requests: "
                      f"{r[kind]['saturation_rows']['throughput'] * args.rows:.0f} rows/s",
                      flush=True)
            sweep_top = max(r["kiln"]["saturation"]["throughput"], r["ort"]["saturation"]["throughput"])
            r["sweep"] = {"kiln": [], "ort": []}
            for fraction in (0.1, 0.3, 0.5, 0.7, 0.9):
                for kind in ("kiln", "ort"):  # alternating at each rate
                    rate = fraction * sweep_top
                    if rate <= 1.2 * r[kind]["saturation"]["throughput"]:
                        r["sweep"][kind].append(level(kind, 1, rate, args.seconds / 2, 5))
            batch = max(1, round(r["kiln"]["saturation_rows"]["mean_batch"]))  # in rows
            r["in_process"] = {"batch1": in_process(so, feeds, 1, 2000),
                               "batch1_gapped": in_process(so, feeds, 1, 300, 1.0 / args.low_rate),
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

    rows = results["rows"]
    lines = ["## Load test", "", "Generated by `bench/serve_load.py`.", "",
             f"Machine: {results['cores']} cores ({results['machine']}); the client and "
             "tritonserver share it. Open-loop Poisson arrivals over gRPC (and HTTP at low load) on loopback from one "
             "asyncio client, each level bounded by "
             f"{results['bound_requests']} requests and {results['bound_seconds']} s. One model "
             "instance with one thread for each server, the same dynamic batching (buckets "
             f"{results['buckets']}, max queue delay {results['max_queue_delay_us']} us). "
             "(a) kiln's Triton backend, (b) Triton's Python backend running onnxruntime, "
             "(c) in-process kiln, no server. *server* is Triton's own mean time of a request "
             "(its statistics, receipt to response); *client* is what the client saw, with "
             "gRPC's Python client in it.", "",
             "| model | | (a) kiln backend | (b) Python + onnxruntime | (c) in-process kiln | a/b | a/c |",
             "|---|---|---|---|---|---|---|"]
    fig, axes = plt.subplots(1, len(results["models"]), figsize=(6 * len(results["models"]), 4),
                             squeeze=False)
    for ax, (name, r) in zip(axes[0], results["models"].items()):
        k, o, c = r["kiln"], r["ort"], r["in_process"]
        b = c["batch"]
        floor = c["batch1"]["p50_us"]
        one_k, one_o = k["saturation"]["throughput"], o["saturation"]["throughput"]
        many_k = k["saturation_rows"]["throughput"] * rows
        many_o = o["saturation_rows"]["throughput"] * rows
        inproc = c[f"batch{b}"]["throughput"]

        def lat(x):
            return f"{x['p50_us']:.0f} / {x['p99_us']:.0f} / {x['p999_us']:.0f}"

        def batch(x):  # Triton counts inferences in rows
            return f"mean batch {x['mean_batch']:.1f} rows, client CPU {x['client_cpu']:.2f}"

        lines += [
            f"| {name} | saturation, 1-row requests (requests/s) | {one_k:.0f} ({batch(k['saturation'])})"
            f" | {one_o:.0f} ({batch(o['saturation'])}) | | {one_k / one_o:.2f}x | |",
            f"| | saturation, {rows}-row requests (rows/s) | {many_k:.0f} "
            f"({batch(k['saturation_rows'])}) | {many_o:.0f} ({batch(o['saturation_rows'])})"
            f" | {inproc:.0f} (batch {b}) | {many_k / many_o:.2f}x | {many_k / inproc:.2f}x |",
            f"| | low load over gRPC, client p50 / p99 / p99.9 (us) | {lat(k['low'])} | {lat(o['low'])} | "
            f"{floor:.0f} (batch 1, p50) | | |",
            f"| | low load over HTTP, client p50 / p99 / p99.9 (us) | {lat(k['low_http'])} | "
            f"{lat(o['low_http'])} | {c['batch1_gapped']['p50_us']:.0f} (batch 1, p50, a "
            f"{1e3 / results['low_rate']:.0f} ms sleep before each run) | | |",
            f"| | low load, server mean (us): queue + compute + output | "
            f"{k['low']['server_us']['success']:.0f}: {k['low']['server_us']['queue']:.0f} + "
            f"{k['low']['server_us']['compute_infer']:.0f} + {k['low']['server_us']['compute_output']:.0f}"
            f" | {o['low']['server_us']['success']:.0f}: {o['low']['server_us']['queue']:.0f} + "
            f"{o['low']['server_us']['compute_infer']:.0f} + {o['low']['server_us']['compute_output']:.0f}"
            " | | | |",
            f"| | added latency at low load (us): client p50, server mean | "
            f"{k['low']['p50_us'] - floor:.0f}, {k['low']['server_us']['success'] - floor:.0f} | "
            f"{o['low']['p50_us'] - floor:.0f}, {o['low']['server_us']['success'] - floor:.0f} | | | |",
            f"| | at 70% of its saturation: p50 / p99 (us), p99/p50, errors | "
            f"{k['at70']['p50_us']:.0f} / {k['at70']['p99_us']:.0f}, "
            f"{k['at70']['p99_us'] / k['at70']['p50_us']:.1f}, {k['at70']['errors']} | "
            f"{o['at70']['p50_us']:.0f} / {o['at70']['p99_us']:.0f}, "
            f"{o['at70']['p99_us'] / o['at70']['p50_us']:.1f}, {o['at70']['errors']} | | | |"]
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
    lines += ["", "![latency against load](serving_load.png)", "", "Targets, from this run:", ""]
    for name, r in results["models"].items():
        k, o, c = r["kiln"], r["ort"], r["in_process"]
        floor = c["batch1"]["p50_us"]
        many = k["saturation_rows"]["throughput"] * rows
        to_ort = many / (o["saturation_rows"]["throughput"] * rows)
        to_floor = many / c[f"batch{c['batch']}"]["throughput"]
        added = k["low"]["server_us"]["success"] - floor
        spread = k["at70"]["p99_us"] / k["at70"]["p50_us"]
        verdict = lambda ok: "met" if ok else "missed"
        lines += [
            f"- {name}: throughput at saturation >= 3x Python + onnxruntime: "
            f"{verdict(to_ort >= 3)} ({to_ort:.2f}x with {rows}-row requests, "
            f"{k['saturation']['throughput'] / o['saturation']['throughput']:.2f}x with 1-row "
            f"requests, where the client sets the rate); >= 0.8x in-process kiln at the same batch: "
            f"{verdict(to_floor >= 0.8)} ({to_floor:.2f}x); added p50 at low load <= 150 us: "
            f"{verdict(added <= 150)} (server mean {added:.0f} us over the back-to-back p50, "
            f"{k['low']['server_us']['success'] - c['batch1_gapped']['p50_us']:.0f} us over the "
            f"cold one; client p50 {k['low']['p50_us'] - floor:.0f} us); "
            "at 70% p99 <= 3x p50 with zero errors: "
            f"{verdict(spread <= 3 and k['at70']['errors'] == 0)} ({spread:.1f}x, "
            f"{k['at70']['errors']} errors)."]
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
