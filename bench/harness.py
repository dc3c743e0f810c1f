#!/usr/bin/env python3
"""kiln against onnxruntime on the same models, inputs and thread count.

For every zoo model and real export and every batch, kiln and onnxruntime
(one intra-op thread, ORT_ENABLE_ALL, outputs preallocated through
IOBinding) run alternately in one process, so both see the same machine
state. Reports median and p99 latency and their ratio (kiln / onnxruntime;
below 1 is kiln faster), as JSON and as a markdown table.

    python bench/harness.py --out docs/perf.md --json bench/results.json \\
        [--models dlrm_kaggle din] [--batches 1 16 64 256 1024] [--runs 50]
"""
import argparse
import json
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


def measure(model_path, feeds_for, batches, runs, workdir):
    so = os.path.join(workdir, "model.so")
    kiln.compile(model_path, so, batch=batches)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(model_path, options, providers=["CPUExecutionProvider"])
    rows = []
    with kiln.load(so) as compiled:
        for batch in batches:
            feeds = feeds_for(batch)
            binding = session.io_binding()
            for name, value in feeds.items():
                binding.bind_cpu_input(name, value)
            for out in session.get_outputs():
                binding.bind_output(out.name)
            session.run_with_iobinding(binding)  # warm-up both
            compiled.run(feeds)
            times = {"kiln": [], "ort": []}
            for _ in range(runs):
                t = time.perf_counter()
                compiled.run(feeds)
                times["kiln"].append(time.perf_counter() - t)
                t = time.perf_counter()
                session.run_with_iobinding(binding)
                times["ort"].append(time.perf_counter() - t)
            stats = {k: (float(np.median(v)) * 1e6, float(np.percentile(v, 99)) * 1e6) for k, v in times.items()}
            rows.append({"batch": batch,
                         "kiln_median_us": stats["kiln"][0], "kiln_p99_us": stats["kiln"][1],
                         "ort_median_us": stats["ort"][0], "ort_p99_us": stats["ort"][1],
                         "median_ratio": stats["kiln"][0] / stats["ort"][0],
                         "p99_ratio": stats["kiln"][1] / stats["ort"][1]})
            print(f"  batch {batch}: kiln {stats['kiln'][0]:.0f} us, ort {stats['ort'][0]:.0f} us, "
                  f"ratio {rows[-1]['median_ratio']:.2f}", file=sys.stderr)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="*", default=list(zoo.MODELS) + ["dlrm_bag", "bert_rel", "din_export"])
    parser.add_argument("--batches", nargs="*", type=int, default=[1, 16, 64, 256, 1024])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--out", help="markdown report")
    parser.add_argument("--json", help="JSON results")
    args = parser.parse_args()
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
            results[name] = measure(os.path.join(folder, "model.onnx"), feeds_for, args.batches, args.runs, work)
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, onnxruntime {ort.__version__}"
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine, "results": results}, f, indent=1)
    if args.out:
        lines = ["# kiln vs onnxruntime, one thread", "",
                 f"Measured by `bench/harness.py` on {machine}: kiln and onnxruntime alternate in one",
                 "process on the same inputs; ratio = kiln / onnxruntime (below 1: kiln is faster).", "",
                 "| model | batch | kiln median us | ORT median us | median ratio | p99 ratio |",
                 "|---|---|---|---|---|---|"]
        for name, rows in results.items():
            for r in rows:
                lines.append(f"| {name} | {r['batch']} | {r['kiln_median_us']:.0f} | {r['ort_median_us']:.0f} | "
                             f"{r['median_ratio']:.2f} | {r['p99_ratio']:.2f} |")
        with open(args.out, "w") as f:
            f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
