#!/usr/bin/env python3
"""The GPU half of bench/gpu_check.sh: checks every compiled model's CUDA
build against its CPU build and times kiln-cuda against PyTorch (eager and
CUDA-graph replay) running the same ONNX graph with the same weights
(bench/onnx_torch.py).

    python3 bench/gpu_check.py WORK [--out DIR]

WORK is the folder gpu_check.sh compiled into: WORK/zoo/<model>/model.onnx
with WORK/so/<model>.{cpu,cuda}.so, WORK/so/<model>.cuda-<precision>.so
for the reduced-precision builds and WORK/so/<model>.cuda-host.so for the
builds with tables in host memory (--host-tables-over); the real exports in
WORK/real/<model>/.
Latency is the median wall time of one synchronous request (kiln:
kiln_run_device on device tensors; PyTorch: the forward or the graph
replay, then a device synchronisation), inputs already on the device.
"""
import argparse
import glob
import json
import os
import statistics
import sys
import time

import numpy as np
import onnx
import torch
from onnx import numpy_helper

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [os.path.join(ROOT, "python"), os.path.join(ROOT, "bench"),
                os.path.join(ROOT, "bench", "models")]
import kiln  # noqa: E402
import zoo  # noqa: E402
from onnx_torch import TorchGraph  # noqa: E402

RTOL, ATOL = 1e-4, 1e-5
# Documented tolerances of the reduced-precision builds against the f32 CPU
# build, as max |diff| / (max |ref| + 1e-6) over an output.
PRECISION_TOLERANCE = {"tf32": 5e-3, "bf16": 3e-2, "fp16": 5e-3, "fp8": 5e-2}
# An fp8 build against the CPU's emulation of its arithmetic (--precision fp8
# on the CPU): the same E4M3 roundings, summed in another order.
FP8_EMULATION_TOLERANCE = 5e-3


def timed_batches(name):
    return [1, 64, 512] if name.startswith("minilm") else [1, 64, 1024, 8192]


def median_us(fn, budget_s=0.25):
    for _ in range(3):
        fn()
    start = time.perf_counter()
    fn()
    once = max(time.perf_counter() - start, 1e-6)
    times = []
    for _ in range(int(min(max(budget_s / once, 20), 500))):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e6


def close(got, want, rtol=RTOL, atol=ATOL):
    """Max |got - want| and whether every element is within atol + rtol |want|."""
    diff = np.abs(got.astype(np.float64) - want.astype(np.float64))
    return float(diff.max(initial=0)), bool(np.all(diff <= atol + rtol * np.abs(want)))


def relative(got, want):
    return float(np.max(np.abs(got - want), initial=0) / (np.max(np.abs(want), initial=0) + 1e-6))


def device_tensors(feeds):
    return {k: torch.from_numpy(np.array(v, order="C")).cuda() for k, v in feeds.items()}


def run_both_ways(gpu, feeds):
    """Outputs through host pointers, and whether device pointers (the other
    captured graph) give the same."""
    got = gpu.run(feeds)
    batch = int(next(iter(feeds.values())).shape[0])
    outs = {o.name: torch.empty([batch if d is None else d for d in o.shape],
                                dtype=getattr(torch, str(o.dtype)), device="cuda")
            for o in gpu.outputs}
    gpu.bind_device(device_tensors(feeds), outs).run()
    return got, all(np.array_equal(outs[k].cpu().numpy(), got[k]) for k in got)


def max_close(got, want):
    """close() over every output: the largest |diff|, and whether all are within."""
    results = [close(got[k], want[k]) for k in want]
    return max(d for d, _ in results), all(ok for _, ok in results)


def check_model(name, feeds, so, reference=None):
    """CPU build vs CUDA build (host and device pointers) on `feeds`."""
    row = {"model": name, "batch": int(next(iter(feeds.values())).shape[0])}
    with kiln.load(so + ".cpu.so") as cpu, kiln.load(so + ".cuda.so") as gpu:
        want = cpu.run(feeds)
        got, row["device_pointers_equal"] = run_both_ways(gpu, feeds)
        row["max_abs_diff"], row["ok"] = max_close(got, want)
        row["ok"] &= row["device_pointers_equal"]
        if reference is not None:
            d, ok = close(got[next(iter(got))], reference, 1e-4, 1e-5)
            row["vs_shipped_reference"] = d
            row["ok"] &= ok
    for precision in PRECISION_TOLERANCE:
        path = f"{so}.cuda-{precision}.so"
        if os.path.exists(path):
            with kiln.load(path) as m:
                out = m.run(feeds)
            r = max(relative(out[k], want[k]) for k in want)
            row[precision] = r
            row["ok"] &= r <= PRECISION_TOLERANCE[precision]
            if precision == "fp8" and os.path.exists(so + ".cpu-fp8.so"):
                with kiln.load(so + ".cpu-fp8.so") as m:
                    emulated = m.run(feeds)
                row["fp8_vs_cpu_emulation"] = max(relative(out[k], emulated[k]) for k in emulated)
                row["ok"] &= row["fp8_vs_cpu_emulation"] <= FP8_EMULATION_TOLERANCE
    if os.path.exists(so + ".cuda-host.so"):  # tables pooled on the CPU: f32 too
        with kiln.load(so + ".cuda-host.so") as m:
            out, same = run_both_ways(m, feeds)
        row["host_tables_max_abs_diff"], ok = max_close(out, want)
        row["ok"] &= ok and same
    return row


def check_bad_id(path, feeds):
    """An id out of range through device pointers fails with the op's name."""
    bad = {k: v.copy() for k, v in feeds.items()}
    key = next(k for k, v in bad.items() if v.dtype == np.int64)
    bad[key].reshape(-1)[0] = 1 << 40
    with kiln.load(path) as gpu:
        outs = {o.name: torch.empty([bad[key].shape[0] if d is None else d for d in o.shape],
                                    device="cuda") for o in gpu.outputs}
        try:
            gpu.bind_device(device_tensors(bad), outs).run()
            return {"ok": False, "message": "no error"}
        except kiln.Error as e:
            # And the session still runs a good request afterwards.
            good = gpu.run(feeds)
            return {"ok": "out of range" in str(e) and all(np.isfinite(v).all() for v in good.values()),
                    "message": str(e)}


def time_model(name, folder, so):
    rows = []
    model = onnx.load(os.path.join(folder, "model.onnx"), load_external_data=False)
    with kiln.load(so + ".cuda.so") as gpu:
        for batch in timed_batches(name):
            feeds = zoo.random_inputs(model, batch, seed=batch)
            inputs = device_tensors(feeds)
            graph = TorchGraph(os.path.join(folder, "model.onnx"), feeds, "cuda")
            outs = {o.name: torch.empty([batch if d is None else d for d in o.shape], device="cuda")
                    for o in gpu.outputs}
            binding = gpu.bind_device(inputs, outs)

            def run_kiln():
                binding.run()

            def run_eager():
                graph.forward(inputs)
                torch.cuda.synchronize()

            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                for _ in range(3):
                    graph.forward(inputs)
            torch.cuda.current_stream().wait_stream(stream)
            captured = torch.cuda.CUDAGraph()
            with torch.cuda.graph(captured):
                replayed = graph.forward(inputs)

            def run_graph():
                captured.replay()
                torch.cuda.synchronize()

            row = {"model": name, "batch": batch, "kiln_us": median_us(run_kiln),
                   "eager_us": median_us(run_eager), "graph_us": median_us(run_graph)}
            binding.run()
            run_graph()
            row["vs_torch"] = max(relative(outs[o.name].cpu().numpy(), r.float().cpu().numpy())
                                  for o, r in zip(gpu.outputs, replayed))
            row["ratio"] = row["kiln_us"] / row["graph_us"]
            rows.append(row)
            print(f"  {name:16} b{batch:<5} kiln {row['kiln_us']:9.1f} us  eager {row['eager_us']:9.1f}"
                  f"  graph {row['graph_us']:9.1f}  kiln/graph {row['ratio']:.2f}", flush=True)
            del captured, replayed, graph
    return rows


def time_host_tables(name, folder, so):
    """kiln-cuda with every table on the device against the build with tables
    in host memory (pooled by 8 CPU threads), side by side."""
    rows = []
    model = onnx.load(os.path.join(folder, "model.onnx"), load_external_data=False)
    with kiln.load(so + ".cuda.so") as gpu, kiln.load(so + ".cuda-host.so", num_threads=8) as hybrid:
        for batch in [1, 64, 1024]:
            inputs = device_tensors(zoo.random_inputs(model, batch, seed=batch))
            timings = {}
            for label, m in [("device_us", gpu), ("host_tables_us", hybrid)]:
                outs = {o.name: torch.empty([batch if d is None else d for d in o.shape], device="cuda")
                        for o in m.outputs}
                timings[label] = median_us(m.bind_device(inputs, outs).run)
            rows.append({"model": name, "batch": batch, **timings})
            print(f"  host tables {name:12} b{batch:<5} all on device {timings['device_us']:9.1f} us"
                  f"  tables on host {timings['host_tables_us']:9.1f} us", flush=True)
    return rows


def profile_kernels(name, folder, so, batch, runs=20):
    """The GPU kernels of one kiln-cuda request (torch.profiler sees the
    kernels of every library in the process), slowest first."""
    from torch.profiler import ProfilerActivity, profile
    model = onnx.load(os.path.join(folder, "model.onnx"), load_external_data=False)
    inputs = device_tensors(zoo.random_inputs(model, batch, seed=batch))
    with kiln.load(so + ".cuda.so") as gpu:
        outs = {o.name: torch.empty([batch if d is None else d for d in o.shape], device="cuda")
                for o in gpu.outputs}
        binding = gpu.bind_device(inputs, outs)
        for _ in range(5):
            binding.run()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            for _ in range(runs):
                binding.run()
    events = [e for e in prof.key_averages() if getattr(e, "device_time_total", 0) > 0]
    events.sort(key=lambda e: e.device_time_total, reverse=True)
    total = sum(e.device_time_total for e in events) / runs
    kernels = sum(e.count for e in events) / runs
    print(f"  {name} b{batch}: {kernels:.0f} GPU operations, {total:.1f} us of GPU time per request")
    rows = []
    for e in events[:10]:
        rows.append({"us": e.device_time_total / runs, "count": e.count / runs, "name": e.key[:100]})
        print(f"    {rows[-1]['us']:8.1f} us  x{rows[-1]['count']:<4.0f} {rows[-1]['name']}")
    return {"model": name, "batch": batch, "gpu_us": total, "operations": kernels, "top": rows}


def load_case(folder):
    model = onnx.load(os.path.join(folder, "model.onnx"), load_external_data=False)
    case = os.path.join(folder, "test_data_set_0")
    feeds = {i.name: numpy_helper.to_array(onnx.load_tensor(os.path.join(case, f"input_{n}.pb")))
             for n, i in enumerate(model.graph.input)}
    ref = numpy_helper.to_array(onnx.load_tensor(os.path.join(case, "output_0.pb")))
    return model, feeds, ref


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("work")
    parser.add_argument("--out", default=None)
    parser.add_argument("--no-timing", action="store_true")
    args = parser.parse_args()
    out = args.out or args.work
    torch.backends.cuda.matmul.allow_tf32 = False  # PyTorch at f32, as kiln's default
    torch.backends.cudnn.allow_tf32 = False
    report = {"device": torch.cuda.get_device_name(), "torch": torch.__version__,
              "checks": [], "timing": []}
    print(f"device: {report['device']}, torch {torch.__version__}", flush=True)

    zoo_folders = sorted(glob.glob(os.path.join(args.work, "zoo", "*", "")))
    real_folders = sorted(glob.glob(os.path.join(args.work, "real", "*", "")))
    for folder in zoo_folders + real_folders:
        name = os.path.basename(os.path.dirname(folder))
        real = folder in real_folders
        so = os.path.join(args.work, "so", ("real_" if real else "") + name)
        model, feeds, ref = load_case(folder)
        if not real:
            feeds = zoo.random_inputs(model, 64, seed=1)
        try:
            row = check_model(("real/" if real else "") + name, feeds, so, ref if real else None)
        except Exception as e:  # a failure is a row of the report, not the end of it
            row = {"model": name, "ok": False, "error": f"{type(e).__name__}: {e}"}
        report["checks"].append(row)
        print(f"check {row['model']:22} {'ok  ' if row['ok'] else 'FAIL'} {json.dumps(row)}", flush=True)
    kaggle = os.path.join(args.work, "zoo", "dlrm_kaggle")
    kaggle_feeds = zoo.random_inputs(load_case(kaggle)[0], 4)
    bad = {}
    for build in ["cuda", "cuda-host"]:  # the check in a kernel, and on the CPU
        bad[build] = check_bad_id(os.path.join(args.work, "so", f"dlrm_kaggle.{build}.so"), kaggle_feeds)
        print(f"out-of-range id through device pointers ({build}): "
              f"{'ok' if bad[build]['ok'] else 'FAIL'}: {bad[build]['message']}")
    report["bad_id"] = bad
    bad = {"ok": all(b["ok"] for b in bad.values())}

    if not args.no_timing:
        for folder in zoo_folders:
            name = os.path.basename(os.path.dirname(folder))
            try:
                report["timing"] += time_model(name, folder, os.path.join(args.work, "so", name))
            except Exception as e:
                print(f"  {name}: timing failed: {type(e).__name__}: {e}", flush=True)
                report["timing"].append({"model": name, "error": f"{type(e).__name__}: {e}"})

        report["host_tables"] = []
        for name in ["deepfm", "din", "dlrm_mlperf"]:
            try:
                report["host_tables"] += time_host_tables(name, os.path.join(args.work, "zoo", name),
                                                          os.path.join(args.work, "so", name))
            except Exception as e:
                print(f"  host tables {name}: timing failed: {type(e).__name__}: {e}", flush=True)

        report["profile"] = []
        for name, batch in [("dlrm_mlperf", 1), ("deepfm", 1), ("minilm_l6_s128", 1), ("dlrm_mlperf", 8192)]:
            try:
                report["profile"].append(profile_kernels(name, os.path.join(args.work, "zoo", name),
                                                         os.path.join(args.work, "so", name), batch))
            except Exception as e:
                print(f"  profile {name} failed: {type(e).__name__}: {e}", flush=True)

    with open(os.path.join(out, "gpu_check.json"), "w") as f:
        json.dump(report, f, indent=1)
    print(f"\n{report['device']}: kiln-cuda (fp32) vs PyTorch {torch.__version__} on the same graph")
    print(f"{'model':16} {'batch':>6} {'kiln us':>9} {'eager us':>9} {'graph us':>9} {'kiln/graph':>10} {'|dy|/|y|':>9}")
    for r in report["timing"]:
        if "error" in r:
            print(f"{r['model']:16} {r['error']}")
            continue
        print(f"{r['model']:16} {r['batch']:6d} {r['kiln_us']:9.1f} {r['eager_us']:9.1f} {r['graph_us']:9.1f}"
              f" {r['ratio']:10.2f} {r['vs_torch']:9.1e}")
    failed = [r["model"] for r in report["checks"] if not r["ok"]] + ([] if bad["ok"] else ["bad_id"])
    print(f"checks: {len(report['checks']) - len(failed) + (0 if bad['ok'] else 1)} passed, "
          f"{len(failed)} failed {failed if failed else ''}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
