#!/usr/bin/env python3
"""What quantisation costs and buys on the ads zoo: accuracy, size, speed.

For every zoo model:
- every `kiln compile --quantize` mode with its accuracy report (kiln's own
  synthetic validation rows), the weight bytes and the .so size against the
  f32 compile;
- speed at batch 1, 64 and 256: kiln f32, kiln int8 (`--quantize
  int8,int8-embeddings`: like quantize_dynamic, dense layers and tables)
  built for AVX2 and for this machine (`--cpu native`: AVX-512 VNNI where
  it has it, as onnxruntime's MLAS picks its kernels at run time), and
  onnxruntime on the same model quantised by its own `quantize_dynamic`
  (int8 weights, uint8 activations, uint8 tables), alternating in one
  process (one thread, IOBinding for onnxruntime, a bound kiln model).

    python bench/quantization.py --out docs/quantization.md --json bench/quantization.json \\
        [--models dlrm_kaggle din] [--runs 30] [--budget 5] [--modes-from OLD.json] \\
        [--kernels bench/kernels.json] [--notes docs/quantization-notes.md]

--modes-from keeps the accuracy and size results of the models in OLD.json
and measures only the speed.

--kernels adds the f32 / int8 / bf16 dense kernel table from
`build/bench/kiln_kernel_bench --benchmark_format=json`; --notes puts that
hand-written markdown (the user guide) before the tables; --from-json
re-renders a report from saved results.
"""
import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np
import onnx

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import harness  # noqa: E402
from harness import kiln, zoo  # noqa: E402

MODES = ["int8", "int8-embeddings", "int4-embeddings", "bf16-weights", "fp16-weights",
         "int8,int8-embeddings"]
BATCHES = [1, 64, 256]


def compile_modes(model_path, work):
    """Per mode: the accuracy report, weight bytes and .so bytes (f32 under 'f32')."""
    f32 = os.path.join(work, "f32.so")
    kiln.compile(model_path, f32, batch=[64])
    rows = {"f32": {"weights_bytes": harness.inspect(f32)["weights_bytes"], "so_bytes": os.path.getsize(f32)}}
    for mode in MODES:
        so, report = os.path.join(work, "q.so"), os.path.join(work, "report.json")
        start = time.perf_counter()
        kiln.compile(model_path, so, batch=[64], quantize=mode.split(","), report=report,
                     extra_args=["--allow-accuracy-loss"])
        with open(report) as f:
            data = json.load(f)
        rows[mode] = {"report": data, "weights_bytes": harness.inspect(so)["weights_bytes"],
                      "so_bytes": os.path.getsize(so), "compile_s": time.perf_counter() - start}
        print(f"  {mode}: within bound {data['within_bound']}, "
              f"{rows['f32']['so_bytes'] / rows[mode]['so_bytes']:.2f}x smaller .so", file=sys.stderr)
    return rows


def speed(model_path, model, work, runs, budget):
    """Per batch: median latency of kiln f32, kiln int8 and onnxruntime int8."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    ort_int8 = os.path.join(work, "ort_int8.onnx")
    quantize_dynamic(model_path, ort_int8, weight_type=QuantType.QInt8)
    f32_so = os.path.join(work, "f32_speed.so")
    kiln.compile(model_path, f32_so, batch=BATCHES)
    int8_so = {}
    for cpu in ["avx2", "native"]:
        int8_so[cpu] = os.path.join(work, f"int8_{cpu}.so")
        kiln.compile(model_path, int8_so[cpu], batch=BATCHES, quantize=["int8", "int8-embeddings"],
                     extra_args=["--allow-accuracy-loss", "--validation-rows", "256", "--cpu", cpu])
    target = harness.inspect(int8_so["native"])["target"]
    session = harness.ort_session(ort_int8, 1)
    rows = []
    with kiln.load(f32_so) as f32, kiln.load(int8_so["avx2"]) as avx2, kiln.load(int8_so["native"]) as int8:
        for batch in BATCHES:
            feeds = zoo.random_inputs(model, batch)
            runners = {"kiln_f32": f32.bind(feeds).run, "kiln_int8_avx2": avx2.bind(feeds).run,
                       "kiln_int8": int8.bind(feeds).run, "ort_int8": harness.ort_runner(session, feeds)}
            n, times = harness.round_robin(runners, runs, budget)
            row = {"batch": batch, "runs": n, "kiln_int8_target": target}
            row.update({f"{name}_us": float(np.median(v)) * 1e6 for name, v in times.items()})
            rows.append(row)
            print(f"  batch {batch}: kiln f32 {row['kiln_f32_us']:.0f} us, kiln int8 avx2 "
                  f"{row['kiln_int8_avx2_us']:.0f} us, {target} {row['kiln_int8_us']:.0f} us, "
                  f"ort int8 {row['ort_int8_us']:.0f} us", file=sys.stderr)
    return rows


def kernel_rows(path):
    """(shape, f32 us, int8 us, bf16 us) from the kernel benchmarks' JSON."""
    with open(path) as f:
        data = json.load(f)
    times = {b["name"]: b["real_time"] for b in data["benchmarks"]}
    out = []
    for name, t in times.items():
        if name.startswith("Dense/"):
            shape = name[len("Dense/"):]
            out.append((shape, t, times.get("DenseInt8/" + shape), times.get("DenseBf16/" + shape)))
    return out


def fmt_diff(o):
    if o["probability"]:
        return f"mean {o['mean_abs_diff']:.2g}, AUC drop {o['auc_drop']:+.4f}"
    return f"relative {o['relative_mean_abs_diff']:.2g}"


def report(results, machine, path, kernels=None, notes=None, modes_machine=None):
    lines = []
    if notes:
        with open(notes) as f:
            lines += [f.read().rstrip(), ""]
    lines += ["## Measured", "",
              f"Generated by `bench/quantization.py` on {machine}." +
              (f" The accuracy and size tables are from an earlier run (`--modes-from`) on {modes_machine}."
               if modes_machine else ""), "",
              "### Accuracy and size per mode", "",
              "Each cell: the accuracy report of `kiln compile --quantize MODE` against the f32 compile",
              "on kiln's synthetic validation rows (probability outputs: mean |p - p_f32| and AUC drop;",
              "other outputs: mean |y - y_f32| / mean |y_f32|), then the .so size reduction. **bold**:",
              "outside the default bound (mean |dp| <= 1e-3, AUC drop <= 0.001, relative <= 1e-2).", "",
              "| model | " + " | ".join(MODES) + " |", "|---|" + "---|" * len(MODES)]
    for name, data in results.items():
        cells = []
        for mode in MODES:
            r = data["modes"][mode]
            text = "; ".join(fmt_diff(o) for o in r["report"]["outputs"])
            if not r["report"]["within_bound"]:
                text = f"**{text}**"
            cells.append(f"{text}; {data['modes']['f32']['so_bytes'] / r['so_bytes']:.2f}x")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "### Weight bytes", "",
              "Bytes of weights in the model (`kiln inspect`) and of the whole .so.", "",
              "| model | f32 weights | int8 | int8-embeddings | int4-embeddings | int8,int8-embeddings | "
              "f32 .so | int8-embeddings .so | ratio |", "|---|---|---|---|---|---|---|---|---|"]
    for name, data in results.items():
        m = data["modes"]
        lines.append(f"| {name} | {m['f32']['weights_bytes']} | {m['int8']['weights_bytes']} | "
                     f"{m['int8-embeddings']['weights_bytes']} | {m['int4-embeddings']['weights_bytes']} | "
                     f"{m['int8,int8-embeddings']['weights_bytes']} | {m['f32']['so_bytes']} | "
                     f"{m['int8-embeddings']['so_bytes']} | "
                     f"{m['f32']['so_bytes'] / m['int8-embeddings']['so_bytes']:.2f}x |")
    lines += ["", "### Speed", "",
              "Median latency, one thread, the four alternating in one process. kiln int8 is",
              "`--quantize int8,int8-embeddings` (int8 dense layers and tables), built with `--cpu avx2`",
              "and with `--cpu native` (target in the table); onnxruntime int8 is the model after",
              "`onnxruntime.quantization.quantize_dynamic(weight_type=QInt8)`, which quantises the",
              "MatMuls and the Gather tables, and picks its kernels for this CPU at run time.", "",
              "| model | batch | runs | kiln f32 us | kiln int8 avx2 us | kiln int8 native us | native target | "
              "ORT int8 us | native / kiln f32 | native / ORT int8 |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for name, data in results.items():
        for r in data["speed"]:
            lines.append(f"| {name} | {r['batch']} | {r['runs']} | {r['kiln_f32_us']:.0f} | {r['kiln_int8_avx2_us']:.0f} | "
                         f"{r['kiln_int8_us']:.0f} | {r['kiln_int8_target']} | {r['ort_int8_us']:.0f} | "
                         f"{r['kiln_int8_us'] / r['kiln_f32_us']:.2f} | "
                         f"{r['kiln_int8_us'] / r['ort_int8_us']:.2f} |")
    if kernels:
        lines += ["", "### Dense kernels", "",
                  "`build/bench/kiln_kernel_bench` (one thread, f32 / int8 / bf16 weights of each shape run",
                  "one after the other): time in us and the int8 speed-up over f32.", "",
                  "| M/N/K | f32 us | int8 us | bf16 us | int8 speed-up |", "|---|---|---|---|---|"]
        for shape, f32, int8, bf16 in kernel_rows(kernels):
            lines.append(f"| {shape} | {f32:.1f} | {int8:.1f} | {bf16:.1f} | {f32 / int8:.2f}x |")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="*", default=list(zoo.MODELS))
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--budget", type=float, default=5.0, help="seconds of timed runs per model and batch")
    parser.add_argument("--out", help="markdown report")
    parser.add_argument("--json", help="JSON results")
    parser.add_argument("--from-json", help="render --out from this JSON instead of measuring")
    parser.add_argument("--kernels", help="kiln_kernel_bench JSON output for the kernel table")
    parser.add_argument("--notes", help="markdown to put before the tables")
    parser.add_argument("--modes-from", help="keep the accuracy and size results of this JSON; measure speed")
    args = parser.parse_args()
    if args.from_json:
        with open(args.from_json) as f:
            saved = json.load(f)
        report(saved["results"], saved["machine"], args.out, args.kernels, args.notes,
               saved.get("modes_machine"))
        return
    results, kept, modes_machine = {}, {}, None
    if args.modes_from:
        with open(args.modes_from) as f:
            saved = json.load(f)
        kept, modes_machine = saved["results"], saved.get("modes_machine", saved["machine"])
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            print(name, file=sys.stderr)
            work = os.path.join(tmp, name)
            os.makedirs(work)
            folder = zoo.write(name, work, batch=1)
            path = os.path.join(folder, "model.onnx")
            model = onnx.load(path, load_external_data=False)
            results[name] = {"modes": kept[name]["modes"] if name in kept else compile_modes(path, work),
                             "speed": speed(path, model, work, args.runs, args.budget)}
    machine = harness.machine_description()
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine, "modes_machine": modes_machine, "results": results}, f, indent=1)
    if args.out:
        report(results, machine, args.out, args.kernels, args.notes, modes_machine)


if __name__ == "__main__":
    main()
