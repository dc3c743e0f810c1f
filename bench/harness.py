#!/usr/bin/env python3
"""kiln against onnxruntime on the same models, inputs and thread count.

For every zoo model and real export and every batch, kiln and onnxruntime
(same thread count, ORT_ENABLE_ALL, outputs preallocated through
IOBinding) run alternately in one process, so both see the same machine
state. Reports median and p99 latency and their ratio (kiln / onnxruntime;
below 1 is kiln faster), the geometric means per batch, kiln's compile time
(all buckets), and with --threads-check the throughput of a 2-thread kiln
session over a 1-thread one at the largest batches. Writes JSON, a markdown
report with the machine description, and a PNG plot next to the report.

    python bench/harness.py --out docs/perf.md --json bench/results.json \\
        [--models dlrm_kaggle din] [--batches 1 16 64 256 1024] [--runs 30] \\
        [--budget 20] [--threads-check] [--kernels bench/kernels.json] \\
        [--notes docs/perf-notes.md]

--kernels takes the JSON of `build/bench/kiln_kernel_bench --benchmark_format=json`
and adds its table; --notes appends a hand-written analysis; --from-json
re-renders a report from saved results without measuring.
"""
import argparse
import json
import math
import os
import platform
import sys
import tempfile
import time

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(HERE, "models"))
sys.path.insert(0, os.path.join(ROOT, "python"))
import kiln  # noqa: E402
import zoo  # noqa: E402

SHARED = os.path.join(os.path.dirname(ROOT), "shared", "models")


def real_export_inputs(folder, batch):
    """The shipped batch-8 inputs, tiled to `batch` rows."""
    model = onnx.load(os.path.join(folder, "model.onnx"), load_external_data=False)
    feeds = {}
    for i, inp in enumerate(model.graph.input):
        data = numpy_helper.to_array(onnx.load_tensor(os.path.join(folder, "test_data_set_0", f"input_{i}.pb")))
        reps = -(-batch // data.shape[0])
        feeds[inp.name] = np.concatenate([data] * reps)[:batch]
    return feeds


def alternate(run_a, run_b, runs):
    """Times run_a and run_b alternately; returns their latencies in seconds."""
    a, b = [], []
    for _ in range(runs):
        t = time.perf_counter()
        run_a()
        a.append(time.perf_counter() - t)
        t = time.perf_counter()
        run_b()
        b.append(time.perf_counter() - t)
    return a, b


def ort_session(model_path, threads):
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(model_path, options, providers=["CPUExecutionProvider"])


def measure(model_path, feeds_for, batches, runs, budget, threads_check, workdir):
    """Rows of kiln-vs-onnxruntime statistics, one per batch. Each batch gets
    `runs` alternations, fewer (at least 3) where they would take more than
    `budget` seconds."""
    so = os.path.join(workdir, "model.so")
    start = time.perf_counter()
    kiln.compile(model_path, so, batch=batches)
    compile_s = time.perf_counter() - start
    session = ort_session(model_path, 1)
    rows = []
    with kiln.load(so) as compiled:
        for batch in batches:
            feeds = feeds_for(batch)
            binding = session.io_binding()
            for name, value in feeds.items():
                binding.bind_cpu_input(name, value)
            for out in session.get_outputs():
                binding.bind_output(out.name)
            bound = compiled.bind(feeds)  # kiln's IOBinding: each run is one runtime call
            warm = time.perf_counter()
            session.run_with_iobinding(binding)  # warm-up both
            bound.run()
            once = time.perf_counter() - warm
            n = max(3, min(runs, int(budget / max(once, 1e-9))))
            k, o = alternate(bound.run, lambda: session.run_with_iobinding(binding), n)
            stats = {"kiln": k, "ort": o}
            stats = {name: (float(np.median(v)) * 1e6, float(np.percentile(v, 99)) * 1e6)
                     for name, v in stats.items()}
            row = {"batch": batch, "runs": n,
                   "kiln_median_us": stats["kiln"][0], "kiln_p99_us": stats["kiln"][1],
                   "ort_median_us": stats["ort"][0], "ort_p99_us": stats["ort"][1],
                   "median_ratio": stats["kiln"][0] / stats["ort"][0],
                   "p99_ratio": stats["kiln"][1] / stats["ort"][1]}
            if threads_check and batch >= 256:
                with kiln.load(so, num_threads=2) as two:
                    one_t, two_t = alternate(bound.run, two.bind(feeds).run, n)
                row["two_thread_speedup"] = float(np.median(one_t) / np.median(two_t))
            rows.append(row)
            print(f"  batch {batch}: kiln {stats['kiln'][0]:.0f} us, ort {stats['ort'][0]:.0f} us, "
                  f"ratio {row['median_ratio']:.2f}"
                  + (f", 2 threads {row['two_thread_speedup']:.2f}x" if "two_thread_speedup" in row else ""),
                  file=sys.stderr)
    return {"compile_s": compile_s, "model_bytes": os.path.getsize(model_path), "rows": rows}


def machine_description():
    model, flags = platform.processor() or platform.machine(), []
    try:
        with open("/proc/cpuinfo") as f:
            lines = f.readlines()
        model = next(line.split(":", 1)[1].strip() for line in lines if line.startswith("model name"))
        flags = next(line.split(":", 1)[1].split() for line in lines if line.startswith("flags"))
    except (OSError, StopIteration):
        pass
    isa = [name for name, flag in [("AVX2", "avx2"), ("AVX-512", "avx512f"), ("AVX-512 VNNI", "avx512_vnni")]
           if flag in flags]
    return (f"{model} ({', '.join(isa) or 'no AVX2'}), {os.cpu_count()} cores, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}, onnxruntime {ort.__version__}")


def geomeans(results):
    """Geometric mean of the median ratios per batch, over the models."""
    by_batch = {}
    for data in results.values():
        for r in data["rows"]:
            by_batch.setdefault(r["batch"], []).append(r["median_ratio"])
    return {b: math.exp(sum(map(math.log, v)) / len(v)) for b, v in sorted(by_batch.items())}


def plot(results, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(9, 5))
    for name, data in results.items():
        ax.plot([r["batch"] for r in data["rows"]], [r["median_ratio"] for r in data["rows"]],
                marker="o", label=name)
    ax.axhline(1.0, color="black", linewidth=1)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("batch")
    ax.set_ylabel("kiln / onnxruntime median latency (below 1: kiln faster)")
    ax.set_title("kiln vs onnxruntime, one thread")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def targets(results, means):
    """Issue 4's single-thread targets, each with the measured figure."""
    def check(ok):
        return "met" if ok else "**missed**"
    small = [m for b, m in means.items() if b <= 16]
    large = [m for b, m in means.items() if b >= 256]
    lines = []
    if small:
        worst = max(small)
        lines.append(f"- Geometric mean ratio <= 0.5 at batch <= 16: worst batch {worst:.2f} -> {check(worst <= 0.5)}.")
    if large:
        worst = max(large)
        lines.append(f"- Geometric mean ratio <= 0.8 at batch >= 256: worst batch {worst:.2f} -> {check(worst <= 0.8)}.")
    slower = [(name, r["batch"], r["median_ratio"]) for name, data in results.items() for r in data["rows"]
              if r["median_ratio"] > 1.0]
    lines.append(f"- No model slower than onnxruntime: {len(slower)} of "
                 f"{sum(len(d['rows']) for d in results.values())} model/batch pairs are slower -> {check(not slower)}"
                 + (": " + ", ".join(f"{n} b{b} ({r:.2f})" for n, b, r in slower) if slower else "."))
    zoo_models = {n: d for n, d in results.items() if n in zoo.MODELS}
    if zoo_models:
        # The largest by file size (weights), or else the slowest to compile.
        name = max(zoo_models, key=lambda n: (zoo_models[n].get("model_bytes", 0), zoo_models[n]["compile_s"]))
        seconds = zoo_models[name]["compile_s"]
        lines.append(f"- Compile of the largest zoo model ({name}, {len(zoo_models[name]['rows'])} buckets) "
                     f"<= 60 s: {seconds:.1f} s -> {check(seconds <= 60)}.")
    speedups = [r["two_thread_speedup"] for d in results.values() for r in d["rows"] if "two_thread_speedup" in r]
    if speedups:
        lines.append(f"- Two threads >= 1.8x one thread at batch >= 256: median {float(np.median(speedups)):.2f}x, "
                     f"best {max(speedups):.2f}x -> {check(min(speedups) >= 1.8)}.")
    return lines


def kernel_section(path):
    """The kernel benchmarks' JSON (kiln_kernel_bench --benchmark_format=json) as a table."""
    with open(path) as f:
        data = json.load(f)
    ctx = data["context"]
    lines = ["", "## Kernels", "",
             "`build/bench/kiln_kernel_bench --benchmark_format=json` (Google Benchmark) on the same machine,",
             f"one thread. It measures the limits itself first: FMA peak {float(ctx['fma_peak_gflops']):.1f} "
             f"GFLOP/s, read bandwidth {float(ctx['read_bandwidth_gbs']):.1f} GB/s.", "",
             "| benchmark | time us | rate | fraction of the limit |", "|---|---|---|---|"]
    for b in data["benchmarks"]:
        if "GFLOPS" in b:
            rate, frac = f"{b['GFLOPS']:.1f} GFLOP/s", b["peak_fraction"]
        else:
            rate, frac = f"{b['GB/s']:.2f} GB/s", b["bandwidth_fraction"]
        lines.append(f"| {b['name']} | {b['real_time']:.1f} | {rate} | {frac:.2f} |")
    return lines


def report(results, machine, path, kernels=None, notes=None):
    means = geomeans(results)
    lines = ["# kiln vs onnxruntime", "",
             f"Measured by `bench/harness.py` on {machine}.", "",
             "kiln and onnxruntime (one intra-op thread, ORT_ENABLE_ALL, IOBinding) alternate in one",
             "process on the same inputs; ratio = kiln / onnxruntime median latency (below 1: kiln is",
             "faster). Regenerate with `build/bench/kiln_kernel_bench --benchmark_format=json >",
             "bench/kernels.json` and then `.venv/bin/python bench/harness.py --out docs/perf.md --json",
             "bench/results.json --threads-check --kernels bench/kernels.json --notes docs/perf-notes.md`.", "",
             f"![kiln / onnxruntime ratio per batch]({os.path.basename(os.path.splitext(path)[0])}.png)", "",
             "## Geometric mean ratio per batch", "",
             "| batch | " + " | ".join(str(b) for b in means) + " |",
             "|---|" + "---|" * len(means),
             "| kiln / ORT | " + " | ".join(f"{m:.2f}" for m in means.values()) + " |", "",
             "## Per model", "",
             "| model | batch | kiln median us | ORT median us | median ratio | p99 ratio | runs |",
             "|---|---|---|---|---|---|---|"]
    for name, data in results.items():
        for r in data["rows"]:
            lines.append(f"| {name} | {r['batch']} | {r['kiln_median_us']:.0f} | {r['ort_median_us']:.0f} | "
                         f"{r['median_ratio']:.2f} | {r['p99_ratio']:.2f} | {r['runs']} |")
    speedups = [(name, r) for name, data in results.items() for r in data["rows"] if "two_thread_speedup" in r]
    if speedups:
        lines += ["", "## Two threads", "",
                  "Throughput of a 2-thread kiln session over a 1-thread one, alternating, same batch.", "",
                  "| model | batch | speedup |", "|---|---|---|"]
        lines += [f"| {name} | {r['batch']} | {r['two_thread_speedup']:.2f}x |" for name, r in speedups]
    lines += ["", "## Compile time", "",
              "Wall time of `kiln compile` with every batch above as a bucket.", "",
              "| model | buckets | seconds |", "|---|---|---|"]
    lines += [f"| {name} | {len(data['rows'])} | {data['compile_s']:.1f} |" for name, data in results.items()]
    if kernels:
        lines += kernel_section(kernels)
    lines += ["", "## Against the targets (computed from the tables above)", ""] + targets(results, means)
    if notes:
        with open(notes) as f:
            lines += ["", f.read().rstrip()]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="*", default=list(zoo.MODELS) + ["dlrm_bag", "bert_rel", "din_export"])
    parser.add_argument("--batches", nargs="*", type=int, default=[1, 16, 64, 256, 1024])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--budget", type=float, default=20.0,
                        help="seconds of alternating runs per model and batch (at least 3 runs)")
    parser.add_argument("--threads-check", action="store_true",
                        help="also time a 2-thread kiln session at batches >= 256")
    parser.add_argument("--out", help="markdown report (the PNG plot is written beside it)")
    parser.add_argument("--json", help="JSON results")
    parser.add_argument("--from-json", help="render --out from this JSON instead of measuring")
    parser.add_argument("--kernels", help="include this kiln_kernel_bench JSON output in the report")
    parser.add_argument("--notes", help="append this markdown (the hand-written analysis) to the report")
    args = parser.parse_args()
    if args.from_json:
        with open(args.from_json) as f:
            saved = json.load(f)
        report(saved["results"], saved["machine"], args.out, args.kernels, args.notes)
        plot(saved["results"], os.path.splitext(args.out)[0] + ".png")
        return
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            print(name, file=sys.stderr)
            work = os.path.join(tmp, name)
            os.makedirs(work)
            if name in zoo.MODELS:
                folder = zoo.write(name, work, batch=1)
                model = onnx.load(os.path.join(folder, "model.onnx"), load_external_data=False)
                feeds_for = lambda b, model=model: zoo.random_inputs(model, b)  # noqa: E731
            else:
                folder = os.path.join(SHARED, "din" if name == "din_export" else name)
                feeds_for = lambda b, folder=folder: real_export_inputs(folder, b)  # noqa: E731
            results[name] = measure(os.path.join(folder, "model.onnx"), feeds_for, args.batches, args.runs,
                                    args.budget, args.threads_check, work)
    machine = machine_description()
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine, "geomean_ratio": geomeans(results), "results": results}, f, indent=1)
    if args.out:
        report(results, machine, args.out, args.kernels, args.notes)
        plot(results, os.path.splitext(args.out)[0] + ".png")


if __name__ == "__main__":
    main()
