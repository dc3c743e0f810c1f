#!/usr/bin/env python3
"""Compile time, compiler memory, open time and latency against model size.

For each size (GB of embedding tables) it generates bench/models/dlrm_large.py's
26-table DLRM with its tables in ONNX external data, compiles it with the
weights in a file beside the .so, and measures:
  - compile wall time and peak RSS of `kiln compile` (getrusage of the child);
  - open time: kiln_model_open of the model (the median of 20; a map, not a read);
  - first request: a fresh process opens the model after its weights' pages were
    dropped from the page cache (posix_fadvise DONTNEED) and times its first
    batch-1 request, which faults in the pages it reads;
  - steady latency: median batch-1 and batch-64 latency over 300 runs;
  - the result at batch 64, on ids that include the first and last row of every
    table, against numpy (the run stops if it differs).
Where the weights fit in a .so (up to 1 GiB), the same model with embedded
weights is measured beside it, alternating in one process. Then it fits
time and memory linearly in size and writes the table, the slopes and a plot
(docs/scale.md, docs/scale.png).

    .venv/bin/python bench/scale.py --sizes 0.25,1,4,8
"""
import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench", "models"))
import dlrm_large  # noqa: E402

KILN = os.path.join(ROOT, "build", "bin", "kiln")
EMBED_LIMIT = 1 << 30

PROBE = """
import resource, subprocess, sys, time
start = time.perf_counter()
r = subprocess.run(sys.argv[1:], capture_output=True, text=True)
took = time.perf_counter() - start
sys.stderr.write(r.stderr)
print(took, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024)
sys.exit(r.returncode)
"""

FIRST_REQUEST = """
import os, sys, time, numpy as np
sys.path.insert(0, sys.argv[3])
import kiln, dlrm_large
so, weights = sys.argv[1], sys.argv[2]
fd = os.open(weights, os.O_RDONLY)
os.fsync(fd)
os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
os.close(fd)
start = time.perf_counter()
m = kiln.load(so)
opened = time.perf_counter()
feeds = dlrm_large.inputs(dlrm_large.table_rows(float(sys.argv[4])), 1, seed=1)
m.run(feeds)
done = time.perf_counter()
print((opened - start) * 1e3, (done - opened) * 1e6)
"""


def compile_model(src, so, flags):
    run = subprocess.run([sys.executable, "-c", PROBE, KILN, "compile", src, "-o", so,
                          "--batch", "1,64", "-q", *flags], capture_output=True, text=True)
    if run.returncode:
        raise SystemExit(run.stderr)
    seconds, rss = run.stdout.split()
    return float(seconds), int(rss)


def open_ms(so):
    import ctypes
    import kiln
    lib = kiln._lib()
    times = []
    for _ in range(20):
        handle, error = ctypes.c_void_p(), ctypes.create_string_buffer(512)
        start = time.perf_counter()
        if lib.kiln_model_open(os.fsencode(so), ctypes.byref(handle), error, len(error)) != 0:
            raise SystemExit(error.value.decode())
        times.append(time.perf_counter() - start)
        lib.kiln_model_close(handle)
    return float(np.median(times)) * 1e3


def first_request(so, weights, gigabytes):
    out = subprocess.run([sys.executable, "-c", FIRST_REQUEST, so, weights,
                          os.path.join(ROOT, "bench", "models"), str(gigabytes)],
                         capture_output=True, text=True, check=True).stdout.split()
    return float(out[0]), float(out[1])


def steady(models, rows, batch, runs=300):
    """Median latency (us) of each model, alternating run by run."""
    feeds = dlrm_large.inputs(rows, batch, seed=batch)
    bound = [m.bind(feeds) for m in models]
    for b in bound:
        b.run()
    times = [[] for _ in models]
    for _ in range(runs):
        for i, b in enumerate(bound):
            start = time.perf_counter()
            b.run()
            times[i].append(time.perf_counter() - start)
    return [float(np.median(t)) * 1e6 for t in times]


def measure(gigabytes, work):
    import kiln
    folder = os.path.join(work, f"dlrm_{gigabytes}gb")
    shutil.rmtree(folder, ignore_errors=True)
    rows = dlrm_large.write(folder, gigabytes)
    src = os.path.join(folder, "model.onnx")
    so = os.path.join(folder, "file.so")
    seconds, rss = compile_model(src, so, ["--weights-file"])
    weights = os.path.join(folder, "file.weights")
    row = {"gigabytes": gigabytes, "weights_bytes": os.path.getsize(weights) - 4096,
           "compile_s": seconds, "peak_rss_bytes": rss, "so_bytes": os.path.getsize(so),
           "open_ms": open_ms(so)}
    row["first_open_ms"], row["first_request_us"] = first_request(so, weights, gigabytes)
    models = [kiln.load(so)]
    # The result on the first and last row of every table, against numpy.
    feeds = dlrm_large.inputs(rows, 64, seed=3)
    expected = dlrm_large.reference(folder, rows, feeds)
    row["max_abs_diff"] = float(np.abs(models[0].run(feeds)["click_prob"] - expected).max())
    if row["max_abs_diff"] > 1e-5 + 1e-4 * float(np.abs(expected).max()):
        raise SystemExit(f"{gigabytes} GB: kiln differs from numpy by {row['max_abs_diff']}")
    if row["weights_bytes"] <= EMBED_LIMIT:
        embedded = os.path.join(folder, "embedded.so")
        row["embedded_compile_s"], row["embedded_peak_rss_bytes"] = compile_model(
            src, embedded, ["--embed-weights"])
        row["embedded_open_ms"] = open_ms(embedded)
        row["embedded_first_open_ms"], row["embedded_first_request_us"] = first_request(
            embedded, embedded, gigabytes)
        models.append(kiln.load(embedded))
    for batch in (1, 64):
        times = steady(models, rows, batch)
        row[f"steady_b{batch}_us"] = times[0]
        if len(times) > 1:
            row[f"embedded_steady_b{batch}_us"] = times[1]
    for m in models:
        m.close()
    shutil.rmtree(folder, ignore_errors=True)
    print(json.dumps(row), flush=True)
    return row


def slope(xs, ys):
    a, b = np.polyfit(xs, ys, 1)
    return a, b


def write_docs(rows, doc, plot):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    gb = [r["weights_bytes"] / 1e9 for r in rows]
    t_slope, t_icpt = slope(gb, [r["compile_s"] for r in rows])
    m_slope, m_icpt = slope(gb, [r["peak_rss_bytes"] / 1e9 for r in rows])
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    a.plot(gb, [r["compile_s"] for r in rows], "o-")
    a.set(xlabel="weights (GB)", ylabel="kiln compile (s)", title=f"compile time: {t_slope:.2f} s/GB")
    b.plot(gb, [r["peak_rss_bytes"] / 1e9 for r in rows], "o-", label="kiln compile peak RSS")
    b.plot(gb, [1.3 * g + 1.074 for g in gb], "--", label="bound: 1.3 x weights + 1 GiB")
    b.set(xlabel="weights (GB)", ylabel="GB", title=f"compiler memory: {m_slope:.2f} GB/GB")
    b.legend()
    fig.tight_layout()
    fig.savefig(plot, dpi=100)

    def cell(r, key, fmt):
        return fmt.format(r[key]) if key in r else "-"

    lines = [
        "# Production-size models: scale",
        "",
        "Generated by `bench/scale.py` (do not edit by hand): `bench/models/dlrm_large.py`'s 26-table "
        "DLRM (dim 64, 40% of the bytes in the first table) with its tables in ONNX external data, "
        "compiled with `--weights-file --batch 1,64`, on one machine in one run "
        f"({platform.processor() or platform.machine()}, {os.cpu_count()} cores). Latencies are "
        "medians of 300 batch-1 or batch-64 requests on one thread; where the weights fit in a "
        ".so (up to 1 GiB), the same model with embedded weights ran beside it, alternating run by "
        "run. \"First request\": a fresh process opens the model after the weights' pages were "
        "dropped from the page cache and times its first batch-1 request, which faults in the "
        "pages it reads.",
        "",
        "Every size's result at batch 64, on ids that include each table's first and last row, "
        "matched numpy (max abs diff: " + ", ".join(f"{r['max_abs_diff']:.1e}" for r in rows) + ").",
        "",
        "| tables (GB) | weights file (GB) | compile (s) | peak RSS (GB) | RSS / weights | open (ms) "
        "| first request (us) | steady b1 (us) | steady b64 (us) | embedded: open (ms) | first (us) "
        "| b1 (us) | b64 (us) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['gigabytes']:g} | {r['weights_bytes'] / 1e9:.2f} | {r['compile_s']:.1f} | "
            f"{r['peak_rss_bytes'] / 1e9:.2f} | {r['peak_rss_bytes'] / r['weights_bytes']:.2f} | "
            f"{r['open_ms']:.3f} | {r['first_request_us']:.0f} | {r['steady_b1_us']:.1f} | "
            f"{r['steady_b64_us']:.1f} | {cell(r, 'embedded_open_ms', '{:.3f}')} | "
            f"{cell(r, 'embedded_first_request_us', '{:.0f}')} | "
            f"{cell(r, 'embedded_steady_b1_us', '{:.1f}')} | "
            f"{cell(r, 'embedded_steady_b64_us', '{:.1f}')} |")
    lines += [
        "",
        f"Linear fits over the sizes: compile time = {t_slope:.2f} s/GB x weights + "
        f"{t_icpt:.1f} s; compiler peak RSS = {m_slope:.2f} GB/GB x weights + {m_icpt:.2f} GB "
        "(the bound the compiler keeps is 1.3 GB/GB + 1 GiB).",
        "",
        "![compile time and memory against size](scale.png)",
        "",
    ]
    with open(doc, "w") as f:
        f.write("\n".join(lines))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="0.25,1,4,8", help="GB of tables, comma-separated")
    parser.add_argument("--work", default=None, help="folder for the models (default: a temporary one)")
    parser.add_argument("--doc", default=os.path.join(ROOT, "docs", "scale.md"))
    parser.add_argument("--plot", default=os.path.join(ROOT, "docs", "scale.png"))
    parser.add_argument("--json", default=os.path.join(ROOT, "bench", "scale.json"))
    args = parser.parse_args()
    work = args.work or tempfile.mkdtemp(prefix="kiln-scale-", dir="/var/tmp")
    try:
        rows = [measure(float(g), work) for g in args.sizes.split(",")]
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    with open(args.json, "w") as f:
        json.dump(rows, f, indent=1)
    write_docs(rows, args.doc, args.plot)


if __name__ == "__main__":
    main()
