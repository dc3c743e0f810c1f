#!/usr/bin/env python3
"""The GPU half of bench/gpu_check.sh: checks every compiled model's CUDA
builds against its CPU build and times kiln-cuda against PyTorch (eager and
CUDA-graph replay) running the same ONNX graph with the same weights
(bench/onnx_torch.py).

    python3 bench/gpu_check.py WORK [--out DIR] [--no-timing]

WORK is the folder gpu_check.sh compiled into: WORK/jobs.txt lists the
compiles (WORK/compile_failures.txt those that failed), WORK/so/ holds the
libraries (<model>.cpu.so, <model>.cuda.so, <model>.cuda-<precision>.so,
<model>.cuda-host.so with tables in host memory, <model>.cpu-fp8.so, the
CPU's emulation of the fp8 arithmetic; real exports as real_<model>.*),
WORK/zoo/<model>/ and WORK/real/<model>/ the models.

Every check and timing is a task. The tasks run in a child process, which
reports each task's result as one JSON line; a task that raises, crashes
the process or runs past TASK_TIMEOUT_S is recorded as failed, and a fresh
child goes on with the rest (after a timeout, without the other tasks of
the library that hung). A CUDA error that poisons the process's
context, or a hang, thus costs one row, not the run. The report is
rewritten after every task, so a run cut short still leaves what it did.

Latency is the median wall time of one synchronous request (kiln:
kiln_run_device on device tensors; PyTorch: the forward or the graph
replay, then a device synchronisation), inputs already on the device.
"""
import argparse
import json
import os
import selectors
import statistics
import subprocess
import sys
import time

import numpy as np
import onnx
from onnx import numpy_helper

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [os.path.join(ROOT, "python"), os.path.join(ROOT, "bench"),
                os.path.join(ROOT, "bench", "models")]
import kiln  # noqa: E402
import zoo  # noqa: E402

RTOL, ATOL = 1e-4, 1e-5
# Documented tolerances of the reduced-precision builds against the f32 CPU
# build, as max |diff| / (max |ref| + 1e-6) over an output.
PRECISION_TOLERANCE = {"tf32": 5e-3, "bf16": 3e-2, "fp16": 5e-3, "fp8": 5e-2}
# An fp8 build against the CPU's emulation of its arithmetic (--precision fp8
# on the CPU): the same E4M3 roundings, summed in another order.
FP8_EMULATION_TOLERANCE = 5e-3
TASK_TIMEOUT_S = 90
torch = None  # imported by the child only: the parent never touches the GPU


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


def max_close(got, want):
    """close() over every output: the largest |diff|, and whether all are within."""
    results = [close(got[k], want[k]) for k in want]
    return max(d for d, _ in results), all(ok for _, ok in results)


def device_tensors(feeds):
    return {k: torch.from_numpy(np.array(v, order="C")).cuda() for k, v in feeds.items()}


def device_outputs(model, batch):
    return {o.name: torch.empty([batch if d is None else d for d in o.shape],
                                dtype=getattr(torch, str(o.dtype)), device="cuda")
            for o in model.outputs}


def run_both_ways(gpu, feeds):
    """Outputs through host pointers, and whether device pointers (the other
    captured graph) give the same."""
    got = gpu.run(feeds)
    outs = device_outputs(gpu, int(next(iter(feeds.values())).shape[0]))
    gpu.bind_device(device_tensors(feeds), outs).run()
    return got, all(np.array_equal(outs[k].cpu().numpy(), got[k]) for k in got)


class Case:
    """A model of the run: its folder, the prefix of its libraries and the
    inputs it is checked on (a real export's shipped inputs and reference,
    else 64 generated rows)."""

    def __init__(self, work, name):
        self.name, real = name, name.startswith("real/")
        base = name.split("/")[-1]
        self.folder = os.path.join(work, "real" if real else "zoo", base)
        self.so = os.path.join(work, "so", ("real_" if real else "") + base)
        self.model = onnx.load(os.path.join(self.folder, "model.onnx"), load_external_data=False)
        self.reference = None
        if real:
            data = os.path.join(self.folder, "test_data_set_0")
            self.feeds = {i.name: numpy_helper.to_array(onnx.load_tensor(os.path.join(data, f"input_{n}.pb")))
                          for n, i in enumerate(self.model.graph.input)}
            self.reference = numpy_helper.to_array(onnx.load_tensor(os.path.join(data, "output_0.pb")))
        else:
            self.feeds = zoo.random_inputs(self.model, 64, seed=1)

    def cpu_outputs(self, build="cpu"):
        with kiln.load(f"{self.so}.{build}.so") as cpu:
            return cpu.run(self.feeds)


def check_f32(case, build="cuda", num_threads=1):
    """A CUDA build at f32 against the CPU build, through host and device
    pointers: the all-device build, or with tables pooled on the CPU
    (build 'cuda-host', on `num_threads` threads)."""
    want = case.cpu_outputs()
    with kiln.load(f"{case.so}.{build}.so", num_threads=num_threads) as gpu:
        got, same = run_both_ways(gpu, case.feeds)
    row = {"device_pointers_equal": same}
    row["max_abs_diff"], row["ok"] = max_close(got, want)
    row["ok"] &= same
    if case.reference is not None:
        row["vs_shipped_reference"], ok = close(got[next(iter(got))], case.reference)
        row["ok"] &= ok
    return row


def check_precision(case, precision):
    """A reduced-precision build within its documented bound of the f32 CPU
    build (and an fp8 build close to the CPU's emulation of it)."""
    want = case.cpu_outputs()
    with kiln.load(f"{case.so}.cuda-{precision}.so") as gpu:
        got = gpu.run(case.feeds)
    r = max(relative(got[k], want[k]) for k in want)
    row = {"relative_diff": r, "bound": PRECISION_TOLERANCE[precision],
           "ok": r <= PRECISION_TOLERANCE[precision]}
    if precision == "fp8":
        emulated = case.cpu_outputs("cpu-fp8")
        row["vs_cpu_emulation"] = max(relative(got[k], emulated[k]) for k in emulated)
        row["ok"] &= row["vs_cpu_emulation"] <= FP8_EMULATION_TOLERANCE
    return row


def check_bad_id(case, build):
    """An id out of range through device pointers fails with the op's name,
    and the session runs a good request afterwards."""
    feeds = {k: v[:4] for k, v in case.feeds.items()}
    bad = {k: v.copy() for k, v in feeds.items()}
    key = next(k for k, v in bad.items() if v.dtype == np.int64)
    bad[key].reshape(-1)[0] = 1 << 40
    with kiln.load(f"{case.so}.{build}.so") as gpu:
        try:
            gpu.bind_device(device_tensors(bad), device_outputs(gpu, 4)).run()
            return {"ok": False, "message": "no error"}
        except kiln.Error as e:
            good = gpu.run(feeds)
            return {"ok": "out of range" in str(e) and all(np.isfinite(v).all() for v in good.values()),
                    "message": str(e)}


def time_model(case):
    """kiln-cuda against PyTorch eager and CUDA-graph replay of the same graph."""
    from onnx_torch import TorchGraph
    rows = []
    path = os.path.join(case.folder, "model.onnx")
    with kiln.load(case.so + ".cuda.so") as gpu:
        for batch in timed_batches(case.name):
            feeds = zoo.random_inputs(case.model, batch, seed=batch)
            inputs = device_tensors(feeds)
            graph = TorchGraph(path, feeds, "cuda")
            outs = device_outputs(gpu, batch)
            binding = gpu.bind_device(inputs, outs)

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

            row = {"batch": batch, "kiln_us": median_us(binding.run),
                   "eager_us": median_us(run_eager), "graph_us": median_us(run_graph)}
            binding.run()
            run_graph()
            row["vs_torch"] = max(relative(outs[o.name].cpu().numpy(), r.float().cpu().numpy())
                                  for o, r in zip(gpu.outputs, replayed))
            row["ratio"] = row["kiln_us"] / row["graph_us"]
            rows.append(row)
            log(f"  {case.name:16} b{batch:<5} kiln {row['kiln_us']:9.1f} us  eager {row['eager_us']:9.1f}"
                f"  graph {row['graph_us']:9.1f}  kiln/graph {row['ratio']:.2f}")
            del captured, replayed, graph
    return {"ok": True, "rows": rows}


def time_host_tables(case):
    """All tables on the device against the build with tables in host memory
    (pooled by 8 CPU threads), side by side."""
    rows = []
    with kiln.load(case.so + ".cuda.so") as gpu, kiln.load(case.so + ".cuda-host.so", num_threads=8) as hybrid:
        for batch in [1, 64, 1024]:
            inputs = device_tensors(zoo.random_inputs(case.model, batch, seed=batch))
            row = {"batch": batch}
            for label, m in [("device_us", gpu), ("host_tables_us", hybrid)]:
                row[label] = median_us(m.bind_device(inputs, device_outputs(m, batch)).run)
            rows.append(row)
            log(f"  host tables {case.name:12} b{batch:<5} all on device {row['device_us']:9.1f} us"
                f"  tables on host {row['host_tables_us']:9.1f} us")
    return {"ok": True, "rows": rows}


def profile_kernels(case, batch, runs=20):
    """The GPU kernels of one kiln-cuda request (torch.profiler sees the
    kernels of every library in the process), slowest first."""
    from torch.profiler import ProfilerActivity, profile
    inputs = device_tensors(zoo.random_inputs(case.model, batch, seed=batch))
    with kiln.load(case.so + ".cuda.so") as gpu:
        binding = gpu.bind_device(inputs, device_outputs(gpu, batch))
        for _ in range(5):
            binding.run()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            for _ in range(runs):
                binding.run()
    events = [e for e in prof.key_averages() if getattr(e, "device_time_total", 0) > 0]
    events.sort(key=lambda e: e.device_time_total, reverse=True)
    total = sum(e.device_time_total for e in events) / runs
    operations = sum(e.count for e in events) / runs
    log(f"  {case.name} b{batch}: {operations:.0f} GPU operations, {total:.1f} us of GPU time per request")
    top = [{"us": e.device_time_total / runs, "count": e.count / runs, "name": e.key[:100]}
           for e in events[:10]]
    for t in top:
        log(f"    {t['us']:8.1f} us  x{t['count']:<4.0f} {t['name']}")
    return {"ok": True, "batch": batch, "gpu_us": total, "operations": operations, "top": top}


TASKS = {"check": check_f32, "precision": check_precision,
         "host_tables": lambda case: check_f32(case, "cuda-host", num_threads=4),
         "bad_id": check_bad_id, "time": time_model, "time_host_tables": time_host_tables,
         "profile": profile_kernels}


def log(line):
    print(line, file=sys.stderr, flush=True)


def plan(work, timing):
    """The tasks, from the compiles gpu_check.sh ran: [kind, model, *args].
    Checks first, the new builds after the f32 ones; timings last."""
    builds = {}
    with open(os.path.join(work, "jobs.txt")) as f:
        for line in f:
            out = os.path.basename(line.split()[1])[:-len(".so")]
            stem, build = out.split(".", 1)
            name = "real/" + stem[len("real_"):] if stem.startswith("real_") else stem
            builds.setdefault(name, set()).add(build)
    tasks = [["check", n] for n, b in builds.items() if "cuda" in b]
    tasks += [["precision", n, b[len("cuda-"):]] for n, bs in builds.items() for b in sorted(bs)
              if b.startswith("cuda-") and b[len("cuda-"):] in PRECISION_TOLERANCE]
    tasks += [["host_tables", n] for n, b in builds.items() if "cuda-host" in b]
    tasks += [["bad_id", "dlrm_kaggle", b] for b in ["cuda", "cuda-host"] if b in builds.get("dlrm_kaggle", ())]
    if timing:
        tasks += [["time", n] for n in builds if not n.startswith("real/")]
        tasks += [["time_host_tables", n] for n in ["deepfm", "din", "dlrm_mlperf"] if "cuda-host" in builds.get(n, ())]
        tasks += [["profile", n, b] for n, b in [("dlrm_mlperf", 1), ("deepfm", 1), ("minilm_l6_s128", 1),
                                                  ("dlrm_mlperf", 8192)] if n in builds]
    return tasks


def child(work, tasks):
    """Runs `tasks`, one JSON line each on stdout; exits after a task that
    raises, whose CUDA context may be unusable."""
    global torch
    import torch as torch_module
    torch = torch_module
    torch.backends.cuda.matmul.allow_tf32 = False  # PyTorch at f32, as kiln's default
    torch.backends.cudnn.allow_tf32 = False
    print(json.dumps({"device": torch.cuda.get_device_name(), "torch": torch.__version__}), flush=True)
    for kind, name, *args in tasks:
        try:
            result = TASKS[kind](Case(work, name), *args)
        except Exception as e:
            print(json.dumps({"ok": False, "error": f"{type(e).__name__}: {e}"}), flush=True)
            sys.exit(3)
        print(json.dumps(result), flush=True)


def run_tasks(work, tasks, report, save):
    """Runs `tasks` in child processes (see the module's docstring); each
    result goes into the report's list for its kind."""
    while tasks:
        proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), work, "--child", json.dumps(tasks)],
                                stdout=subprocess.PIPE)
        lines, started, failure = Lines(proc.stdout.fileno()), False, None
        while tasks:
            line = lines.next(TASK_TIMEOUT_S)
            if line is None:
                failure = f"timed out after {TASK_TIMEOUT_S} s"
                break
            if not line:
                proc.kill()
                failure = f"the process died (exit status {proc.wait()})"
                break
            if not started:  # the child's first line: the device
                report.update(json.loads(line))
                started = True
                continue
            result = json.loads(line)
            record(report, tasks.pop(0), result)
            save()
            if "error" in result:  # the child exits: its context may be unusable
                break
        proc.kill()
        proc.wait()
        if failure and tasks:
            # A child that never started fails every task; else the one it was on.
            for task in (tasks if not started else tasks[:1]):
                record(report, task, {"ok": False, "error": failure})
            hung, tasks = build_of(tasks[0]), [] if not started else tasks[1:]
            if line is None:  # the other tasks of a build that hangs would hang too
                for task in [t for t in tasks if build_of(t) == hung]:
                    record(report, task, {"ok": False, "error": f"skipped: {' '.join(hung)} hung"})
                tasks = [t for t in tasks if build_of(t) != hung]
            save()


def build_of(task):
    """The builds a task runs, as a key: a hang in the new code of a
    reduced-precision or host-table build is likely in every model's, a
    hang in an f32 build in that model's."""
    kind, name, *args = task
    if kind == "precision":
        build = "cuda-" + args[0]
    elif kind == "bad_id":
        build = args[0]
    elif kind in ("host_tables", "time_host_tables"):
        build = "cuda-host"
    else:
        return (name, "cuda")
    return ("every", build)


class Lines:
    """Lines from a pipe, with a timeout (a buffered file object's readline
    cannot be combined with select)."""

    def __init__(self, fd):
        self.fd, self.buffer, self.selector = fd, b"", selectors.DefaultSelector()
        self.selector.register(fd, selectors.EVENT_READ)

    def next(self, timeout):
        """The next line; b"" at the end; None after `timeout` seconds without one."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not self.selector.select(timeout=left):
                return None
            chunk = os.read(self.fd, 1 << 16)
            if not chunk:
                return b""
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line


def record(report, task, result):
    kind, name, *args = task
    row = {"model": name, **({"args": args} if args else {}), **result}
    report.setdefault(kind, []).append(row)
    detail = {k: v for k, v in row.items() if k not in ("rows", "top", "model")}
    log(f"{kind:16} {name:22} {'ok  ' if row.get('ok') else 'FAIL'} {json.dumps(detail)}")


def summary(report):
    print(f"\n{report.get('device')}: kiln-cuda (fp32) vs PyTorch {report.get('torch')} on the same graph")
    print(f"{'model':16} {'batch':>6} {'kiln us':>9} {'eager us':>9} {'graph us':>9} {'kiln/graph':>10} {'|dy|/|y|':>9}")
    for t in report.get("time", []):
        if not t["ok"]:
            print(f"{t['model']:16} {t['error']}")
        for r in t.get("rows", []):
            print(f"{t['model']:16} {r['batch']:6d} {r['kiln_us']:9.1f} {r['eager_us']:9.1f} {r['graph_us']:9.1f}"
                  f" {r['ratio']:10.2f} {r['vs_torch']:9.1e}")
    failed = [" ".join([kind, r["model"], *map(str, r.get("args", []))])
              for kind in ["compile", *TASKS] for r in report.get(kind, []) if not r.get("ok")]
    total = sum(len(report.get(kind, [])) for kind in ["compile", *TASKS])
    print(f"tasks: {total - len(failed)} passed, {len(failed)} failed {failed if failed else ''}")
    return 1 if failed else 0


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("work")
    parser.add_argument("--out", default=None)
    parser.add_argument("--no-timing", action="store_true")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.work, json.loads(args.child))
    path = os.path.join(args.out or args.work, "gpu_check.json")
    report = {"compile": []}
    failures = os.path.join(args.work, "compile_failures.txt")
    if os.path.exists(failures):
        with open(failures) as f:
            report["compile"] = [{"model": line.strip(), "ok": False} for line in f if line.strip()]

    def save():
        with open(path, "w") as f:
            json.dump(report, f, indent=1)

    run_tasks(args.work, plan(args.work, not args.no_timing), report, save)
    return summary(report)


if __name__ == "__main__":
    sys.exit(main())
