#!/usr/bin/env python3
"""kiln's modes against onnxruntime on the same models, inputs and thread count.

For every zoo model and real export and every batch, each kiln mode (f32 for
AVX2 and for this machine's best instruction set, int8, --quantize auto),
onnxruntime f32 and onnxruntime's quantize_dynamic int8 (same thread count,
ORT_ENABLE_ALL, outputs preallocated through IOBinding) run round-robin in
one process, so all see the same machine state. Reports median and p99
latency, the ratios to onnxruntime (below 1 is kiln faster) and their
geometric means per batch, each mode's compile time, weight bytes and
accuracy verdict, and with --threads-check the throughput of a 2-thread kiln
session over a 1-thread one at the largest batches. Writes JSON, a markdown
report with the machine description, and a PNG plot next to the report.

    python bench/harness.py --out docs/perf.md --json bench/results.json \\
        [--models dlrm_kaggle din] [--batches 1 16 64 256 1024] [--modes avx2 int8] \\
        [--runs 30] [--budget 20] [--threads-check] [--kernels bench/kernels.json] \\
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
import subprocess
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


def round_robin(runners, runs, budget):
    """Warms every runner up once, then times them in turn for `runs` rounds,
    fewer (at least 3) where they would take more than `budget` seconds.
    Returns the rounds and each runner's latencies in seconds."""
    warm = time.perf_counter()
    for run in runners.values():
        run()
    once = time.perf_counter() - warm
    n = max(3, min(runs, int(min(budget / max(once, 1e-9), runs))))
    times = {name: [] for name in runners}
    for _ in range(n):
        for name, run in runners.items():
            t = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - t)
    return n, times


def ort_runner(session, feeds):
    """One onnxruntime run on `feeds` through IOBinding, outputs preallocated."""
    binding = session.io_binding()
    for key, value in feeds.items():
        binding.bind_cpu_input(key, value)
    for out in session.get_outputs():
        binding.bind_output(out.name)
    return lambda: session.run_with_iobinding(binding)


def ort_session(model_path, threads):
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(model_path, options, providers=["CPUExecutionProvider"])


# kiln's modes: the `kiln compile` arguments of each. f32 modes are the float
# model for one instruction set; int8 is every dense layer and table int8
# (kept even where it is outside the accuracy bound, which the report marks);
# auto is --quantize auto, inside the bound by construction; bf16 is
# --precision bf16 (AVX-512 BF16 machines only; elsewhere "not built").
MODES = {
    "avx2": ["--cpu", "avx2"],
    "native": ["--cpu", "native"],
    "int8": ["--cpu", "native", "--quantize", "int8,int8-embeddings", "--allow-accuracy-loss"],
    "auto": ["--cpu", "native", "--quantize", "auto"],
    "bf16": ["--cpu", "native", "--precision", "bf16", "--allow-accuracy-loss"],
}
F32_MODES = ("avx2", "native")
QUANTISED_MODES = ("int8", "auto")
CHECKED_MODES = QUANTISED_MODES + ("bf16",)  # compiled with an accuracy report


def inspect(so):
    out = subprocess.run([kiln._find_binary(), "inspect", so, "--json"], check=True, capture_output=True,
                         text=True).stdout
    return json.loads(out)


def compile_modes(model_path, batches, modes, workdir):
    """Builds each mode's library. Returns {mode: info} with the .so path, the
    compile seconds, the target, the weight bytes and, for quantised modes,
    whether the model is inside the accuracy bound. A native build whose target
    is the same as avx2's is not built twice (its info says `same_as`)."""
    built = {}
    for mode in modes:
        so, report = os.path.join(workdir, f"{mode}.so"), os.path.join(workdir, f"{mode}.json")
        start = time.perf_counter()
        args = MODES[mode] + (["--report", report] if mode in CHECKED_MODES else [])
        try:
            kiln.compile(model_path, so, batch=batches, extra_args=args)
        except kiln.Error as e:
            built[mode] = {"error": str(e).splitlines()[-1]}
            print(f"  {mode}: not built: {built[mode]['error']}", file=sys.stderr)
            continue
        info = {"so": so, "compile_s": time.perf_counter() - start}
        info.update({key: inspect(so)[key] for key in ("target", "weights_bytes")})
        if mode in CHECKED_MODES:
            with open(report) as f:
                data = json.load(f)
            info["within_bound"] = data["within_bound"]
            if "auto" in data:
                info["kept_f32"] = len(data["auto"]["kept_f32"])
                info["units"] = len(data["auto"]["sensitivity"])
        same = next((m for m in F32_MODES if mode in F32_MODES and built.get(m, {}).get("target") == info["target"]),
                    None)
        if same:  # --cpu native is avx2 on this machine: one library, timed once
            info = {"same_as": same, "target": info["target"]}
        built[mode] = info
        print(f"  {mode}: {info}", file=sys.stderr)
    return built


def measure(model_path, feeds_for, batches, runs, budget, threads_check, workdir, modes):
    """Per batch, median and p99 latency of every built kiln mode, onnxruntime
    f32 and (with a quantised mode) onnxruntime's quantize_dynamic int8, run
    round-robin in one process. Each batch gets `runs` rounds, fewer (at least
    3) where they would take more than `budget` seconds."""
    start = time.perf_counter()
    built = compile_modes(model_path, batches, modes, workdir)
    compile_s = time.perf_counter() - start
    sessions = {"ort": ort_session(model_path, 1)}
    if any(m in built for m in QUANTISED_MODES):
        from onnxruntime.quantization import QuantType, quantize_dynamic
        ort_int8 = os.path.join(workdir, "ort_int8.onnx")
        quantize_dynamic(model_path, ort_int8, weight_type=QuantType.QInt8)
        sessions["ort_int8"] = ort_session(ort_int8, 1)
    libraries = {m: kiln.load(info["so"]) for m, info in built.items() if "so" in info}
    rows = []
    try:
        for batch in batches:
            feeds = feeds_for(batch)
            # kiln's bound model: each run is one runtime call
            runners = {mode: library.bind(feeds).run for mode, library in libraries.items()}
            runners.update({name: ort_runner(session, feeds) for name, session in sessions.items()})
            n, times = round_robin(runners, runs, budget)
            row = {"batch": batch, "runs": n,
                   "median_us": {k: float(np.median(v)) * 1e6 for k, v in times.items()},
                   "p99_us": {k: float(np.percentile(v, 99)) * 1e6 for k, v in times.items()}}
            f32 = best_f32(row)
            if threads_check and batch >= 256 and f32:
                with kiln.load(built[f32]["so"], num_threads=2) as two:
                    _, pair = round_robin({"one": runners[f32], "two": two.bind(feeds).run}, n, math.inf)
                row["two_thread_speedup"] = float(np.median(pair["one"]) / np.median(pair["two"]))
            rows.append(row)
            print(f"  batch {batch}: " + ", ".join(f"{k} {v:.0f} us" for k, v in row["median_us"].items())
                  + (f", 2 threads {row['two_thread_speedup']:.2f}x" if "two_thread_speedup" in row else ""),
                  file=sys.stderr)
    finally:
        for library in libraries.values():
            library.close()
    for info in built.values():
        info.pop("so", None)
    return {"compile_s": compile_s, "model_bytes": os.path.getsize(model_path), "modes": built, "rows": rows}


def best_f32(row):
    """The faster kiln f32 mode of a row (the best instruction set of the machine)."""
    timed = [m for m in F32_MODES if m in row["median_us"]]
    return min(timed, key=lambda m: row["median_us"][m]) if timed else None


def ratio(row, mode, baseline="ort"):
    us = row["median_us"]
    return us[mode] / us[baseline] if mode in us and baseline in us else None


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


def series(row, modes):
    """The ratios of one row, by name: kiln's best f32 build, each quantised
    mode and the best quantised mode inside the accuracy bound against
    onnxruntime f32, and the quantised modes against onnxruntime int8."""
    out = {}
    f32 = best_f32(row)
    if f32:
        out["kiln f32 / ORT"] = ratio(row, f32)
    inside = [m for m in QUANTISED_MODES if m in row["median_us"] and modes[m].get("within_bound")]
    if inside:
        out["kiln quantised in bound / ORT"] = min(ratio(row, m) for m in inside)
    for m in QUANTISED_MODES:
        if m in row["median_us"]:
            out[f"kiln {m} / ORT"] = ratio(row, m)
            out[f"kiln {m} / ORT int8"] = ratio(row, m, "ort_int8")
    if "ort_int8" in row["median_us"]:
        out["ORT int8 / ORT"] = ratio(row, "ort_int8")
    return out


def geomeans(results):
    """Geometric mean of each ratio series per batch, over the models."""
    by = {}
    for data in results.values():
        for r in data["rows"]:
            for name, value in series(r, data["modes"]).items():
                by.setdefault(name, {}).setdefault(r["batch"], []).append(value)
    return {name: {b: math.exp(sum(map(math.log, v)) / len(v)) for b, v in sorted(batches.items())}
            for name, batches in by.items()}


def plot(results, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    panels = [("kiln f32 / ORT", "kiln f32 (best ISA)"),
              ("kiln quantised in bound / ORT", "kiln int8 or auto, inside the accuracy bound")]
    fig, axes = plt.subplots(1, 2, figsize=(14, 5), sharey=True)
    for ax, (key, title) in zip(axes, panels):
        for name, data in results.items():
            points = [(r["batch"], series(r, data["modes"]).get(key)) for r in data["rows"]]
            points = [(b, v) for b, v in points if v is not None]
            if points:
                ax.plot(*zip(*points), marker="o", label=name)
        ax.axhline(1.0, color="black", linewidth=1)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("batch")
        ax.set_title(f"{title} / onnxruntime f32, one thread", fontsize=10)
    axes[0].set_ylabel("median latency ratio (below 1: kiln faster)")
    axes[0].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def targets(results, means):
    """Issue 20's single-thread targets (and issue 4's compile and thread
    targets), each with the measured figure."""
    def check(ok):
        return "met" if ok else "**missed**"

    def worst(name, keep):
        values = [m for b, m in means.get(name, {}).items() if keep(b)]
        return max(values) if values else None

    lines = []
    for name, text, keep, limit in [
            ("kiln f32 / ORT", "kiln f32 / ORT f32 geometric mean <= 0.6 at batch <= 16", lambda b: b <= 16, 0.6),
            ("kiln f32 / ORT", "kiln f32 / ORT f32 geometric mean <= 0.9 at batch >= 256", lambda b: b >= 256, 0.9),
            ("kiln quantised in bound / ORT",
             "kiln int8 or auto inside the bound / ORT f32 geometric mean <= 0.5 at batch >= 64",
             lambda b: b >= 64, 0.5)]:
        value = worst(name, keep)
        lines.append(f"- {text}: " + ("not measured." if value is None else
                                      f"worst batch {value:.2f} -> {check(value <= limit)}."))

    def over(key, limit):
        pairs = [(n, r["batch"], series(r, d["modes"]).get(key)) for n, d in results.items() for r in d["rows"]]
        pairs = [p for p in pairs if p[2] is not None]
        slow = [p for p in pairs if p[2] >= limit]
        return pairs, slow

    for key, text in [("kiln f32 / ORT", "No model's kiln f32 above ORT f32"),
                      ("kiln int8 / ORT int8", "kiln int8 faster than ORT int8 at every point")]:
        pairs, slow = over(key, 1.0)
        if pairs:
            lines.append(f"- {text}: {len(slow)} of {len(pairs)} model/batch pairs are not -> {check(not slow)}"
                         + (": " + ", ".join(f"{n} b{b} ({v:.2f})" for n, b, v in slow) if slow else "."))
    zoo_models = {n: d for n, d in results.items() if n in zoo.MODELS}
    f32_compiles = {n: next((d["modes"][m]["compile_s"] for m in F32_MODES if "compile_s" in d["modes"].get(m, {})),
                            None) for n, d in zoo_models.items()}
    f32_compiles = {n: s for n, s in f32_compiles.items() if s is not None}
    if f32_compiles:
        # The largest by file size (weights), or else the slowest to compile.
        name = max(f32_compiles, key=lambda n: (zoo_models[n].get("model_bytes", 0), f32_compiles[n]))
        lines.append(f"- f32 compile of the largest zoo model ({name}, {len(zoo_models[name]['rows'])} buckets) "
                     f"<= 60 s: {f32_compiles[name]:.1f} s -> {check(f32_compiles[name] <= 60)}.")
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


def fmt(value, digits=2):
    return "-" if value is None else f"{value:.{digits}f}"


def report(results, machine, path, kernels=None, notes=None, modes=()):
    means = geomeans(results)
    batches = sorted({r["batch"] for d in results.values() for r in d["rows"]})
    timed = [m for m in MODES if any(m in r["median_us"] for d in results.values() for r in d["rows"])]
    baselines = [b for b in ("ort", "ort_int8") if any(b in r["median_us"] for d in results.values()
                                                       for r in d["rows"])]
    lines = ["# kiln vs onnxruntime", "",
             f"Measured by `bench/harness.py` on {machine}.", "",
             "Every kiln mode, onnxruntime f32 and onnxruntime int8 (the model after",
             "`onnxruntime.quantization.quantize_dynamic(weight_type=QInt8)`) run round-robin in one",
             "process on the same inputs, one intra-op thread each (onnxruntime: ORT_ENABLE_ALL,",
             "IOBinding; kiln: a bound model, one runtime call per run). The modes are `kiln compile`",
             "with " + "; ".join(f"{m}: `{' '.join(a)}`" for m, a in MODES.items()) + ".",
             "kiln f32 is the faster of the f32 builds (the best instruction set of the machine); a",
             "native build whose target is avx2 is the avx2 library, timed once. int8 is kept even",
             "outside the accuracy bound (the modes table says which), so 'quantised in bound' takes",
             "per model the faster of int8 (where inside) and auto. Ratio: kiln / onnxruntime median",
             "latency (below 1: kiln is faster). Regenerate with `build/bench/kiln_kernel_bench",
             "--benchmark_format=json > bench/kernels.json` and then `.venv/bin/python bench/harness.py",
             "--out docs/perf.md --json bench/results.json --threads-check --kernels bench/kernels.json",
             "--notes docs/perf-notes.md`.", ""]
    missing = [m for m in modes if m not in timed]
    if missing:
        lines += ["Requested but not timed on this machine: " + ", ".join(
            f"{m} ({'; '.join(sorted({str(d['modes'][m].get('error') or 'same library as ' + d['modes'][m].get('same_as', '?')) for d in results.values() if m in d['modes']}))})"
            for m in missing) + ".", ""]
    lines += [f"![kiln / onnxruntime ratio per batch]({os.path.basename(os.path.splitext(path)[0])}.png)", "",
              "## Geometric mean ratio per batch", "",
              "| ratio | " + " | ".join(str(b) for b in batches) + " |",
              "|---|" + "---|" * len(batches)]
    lines += [f"| {name} | " + " | ".join(fmt(by.get(b)) for b in batches) + " |" for name, by in means.items()]
    lines += ["", "## Per model", "",
              "Median latency in microseconds; ratios as above.", "",
              "| model | batch | " + " | ".join(f"{n} us" for n in baselines + timed)
              + " | kiln f32 / ORT | in bound / ORT | int8 / ORT int8 | runs |",
              "|---|---|" + "---|" * (len(baselines) + len(timed)) + "---|---|---|---|"]
    for name, data in results.items():
        for r in data["rows"]:
            s = series(r, data["modes"])
            lines.append(f"| {name} | {r['batch']} | "
                         + " | ".join(fmt(r["median_us"].get(n), 0) for n in baselines + timed)
                         + f" | {fmt(s.get('kiln f32 / ORT'))} | {fmt(s.get('kiln quantised in bound / ORT'))}"
                         f" | {fmt(s.get('kiln int8 / ORT int8'))} | {r['runs']} |")
    lines += ["", "## Modes", "",
              "Per model and mode: the target `kiln inspect` reports, the compile time with every batch",
              "above as a bucket (auto: the whole search), the weight bytes, whether the quantised model",
              "is inside the default accuracy bound and, for auto, how many of its units it kept f32.", "",
              "| model | mode | target | compile s | weight bytes | inside bound | kept f32 |",
              "|---|---|---|---|---|---|---|"]
    for name, data in results.items():
        for mode, info in data["modes"].items():
            if "error" in info or "same_as" in info:
                continue
            bound = {True: "yes", False: "**no**"}.get(info.get("within_bound"), "-")
            kept = f"{info['kept_f32']} of {info['units']}" if "kept_f32" in info else "-"
            lines.append(f"| {name} | {mode} | {info['target']} | {info['compile_s']:.1f} | {info['weights_bytes']} | "
                         f"{bound} | {kept} |")
    speedups = [(name, r) for name, data in results.items() for r in data["rows"] if "two_thread_speedup" in r]
    if speedups:
        lines += ["", "## Two threads", "",
                  "Throughput of a 2-thread kiln f32 session over a 1-thread one, alternating, same batch.", "",
                  "| model | batch | speedup |", "|---|---|---|"]
        lines += [f"| {name} | {r['batch']} | {r['two_thread_speedup']:.2f}x |" for name, r in speedups]
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
    parser.add_argument("--modes", nargs="*", default=list(MODES), choices=list(MODES),
                        help="kiln modes to build and time (default: all)")
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
        report(saved["results"], saved["machine"], args.out, args.kernels, args.notes, saved.get("modes", ()))
        plot(saved["results"], os.path.splitext(args.out)[0] + ".png")
        return
    results, machine = {}, machine_description()
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
                                    args.budget, args.threads_check, work, args.modes)
            if args.json:  # after every model, so that a long run that stops keeps what it measured
                with open(args.json, "w") as f:
                    json.dump({"machine": machine, "modes": args.modes, "geomean_ratio": geomeans(results),
                               "results": results}, f, indent=1)
    if args.out:
        report(results, machine, args.out, args.kernels, args.notes, args.modes)
        plot(results, os.path.splitext(args.out)[0] + ".png")


if __name__ == "__main__":
    main()
