#!/usr/bin/env python3
"""ONNX backend node tests against kiln.

Each test folder of the pip onnx package (onnx/backend/test/data/node/*) holds
model.onnx and test_data_set_*/{input,output}_N.pb. A test is compiled at its
static shapes, run on every data set, and ends as one of:

  pass         every output matches (rtol 1e-3, atol 1e-5: the suite's own)
  mismatch     kiln ran it and got other numbers
  unsupported  kiln refused it with a compile error (an op, dtype or form)
  crash        the compiler or runtime died, hung or failed without a message

kiln plans everything at compile time, so values that fix shapes (axes, pads,
split sizes, reshape targets) must be constants. Where a test feeds them as
graph inputs and kiln refuses it for that reason, the test is compiled again
with its integer and scalar inputs frozen to the data set's values (`kiln
compile --freeze`, as a user would) and reported as "frozen" in the pass count.

Each test runs in a child process, so a crash cannot take the runner down.

    python test/e2e/onnx_node_tests.py                 # all, summary
    python test/e2e/onnx_node_tests.py --report docs/ops.md --json out.json
    python test/e2e/onnx_node_tests.py test_relu test_gemm_default_no_bias
"""
import argparse
import collections
import concurrent.futures
import glob
import json
import os
import re
import subprocess
import sys
import tempfile

import numpy as np
import onnx
from onnx import numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
NODE_DIR = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "node")
KILN = os.environ.get("KILN_BIN") or os.path.join(ROOT, "build", "bin", "kiln")
RTOL, ATOL = 1e-3, 1e-5
TIMEOUT = 120


def all_tests():
    return sorted(os.path.basename(p) for p in glob.glob(os.path.join(NODE_DIR, "test_*")))


NEEDS_CONSTANTS = ("must be a constant", "known only at run time", "must be constant")


def compile_test(folder, so, freeze):
    """Returns None on success, else (status, detail)."""
    cmd = [KILN, "compile", os.path.join(folder, "model.onnx"), "-o", so, "-q"]
    for name, path in freeze.items():
        cmd += ["--freeze", f"{name}={path}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT)
    if proc.returncode == 0:
        return None
    message = proc.stderr.strip().splitlines()
    if proc.returncode == 1 and message and "error:" in message[0]:
        return "unsupported", message[0].split("error:", 1)[1].strip()
    return "crash", f"kiln compile exited {proc.returncode}: {proc.stderr.strip()[-300:]}"


def run_one(name):
    """Compiles and runs one test in this process; returns (status, detail)."""
    sys.path.insert(0, os.path.join(ROOT, "python"))
    import kiln

    folder = os.path.join(NODE_DIR, name)
    model = onnx.load(os.path.join(folder, "model.onnx"))
    initializers = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    freeze = {}
    with tempfile.TemporaryDirectory() as tmp:
        so = os.path.join(tmp, "model.so")
        failure = compile_test(folder, so, freeze)
        if failure and failure[0] == "unsupported" and any(m in failure[1] for m in NEEDS_CONSTANTS):
            first = os.path.join(folder, "test_data_set_0")
            freeze = {i.name: os.path.join(first, f"input_{n}.pb") for n, i in enumerate(inputs)
                      if i.type.tensor_type.elem_type in (onnx.TensorProto.INT64, onnx.TensorProto.INT32)
                      or len(i.type.tensor_type.shape.dim) == 0}
            failure = compile_test(folder, so, freeze) if freeze else failure
        if failure:
            return failure
        input_names = [i.name for i in inputs]
        with kiln.load(so) as compiled:
            for case in sorted(glob.glob(os.path.join(folder, "test_data_set_*"))):
                feeds, expected = {}, []
                for i, input_name in enumerate(input_names):
                    if input_name in freeze:
                        continue
                    path = os.path.join(case, f"input_{i}.pb")
                    feeds[input_name] = numpy_helper.to_array(onnx.load_tensor(path))
                i = 0
                while os.path.exists(os.path.join(case, f"output_{i}.pb")):
                    expected.append(numpy_helper.to_array(onnx.load_tensor(os.path.join(case, f"output_{i}.pb"))))
                    i += 1
                try:
                    got = compiled.run(feeds)
                except kiln.Error as e:
                    return "mismatch", f"run failed: {e}"
                for info, want in zip(compiled.outputs, expected):
                    have = got[info.name]
                    if have.shape != want.shape:
                        return "mismatch", f"{info.name}: shape {have.shape} != {want.shape}"
                    if want.dtype.name == "bfloat16":  # ml_dtypes' type: compared at f32
                        have, want = have.astype(np.float32), want.astype(np.float32)
                    if want.dtype.kind in "fc":
                        ok = np.allclose(have, want, rtol=RTOL, atol=ATOL, equal_nan=True)
                    else:
                        ok = np.array_equal(have, want)
                    if not ok:
                        diff = np.max(np.abs(have.astype(np.float64) - want.astype(np.float64)))
                        return "mismatch", f"{info.name}: max abs diff {diff:.3g}"
    return ("frozen" if freeze else "pass"), ""


def run_isolated(name):
    """run_one in a child process; a signal or timeout is a crash."""
    try:
        proc = subprocess.run([sys.executable, __file__, "--one", name], capture_output=True,
                              text=True, timeout=TIMEOUT * 2)
    except subprocess.TimeoutExpired:
        return name, "crash", "timed out"
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        return name, "crash", f"exit {proc.returncode}: {proc.stderr.strip()[-300:]}"
    status, detail = json.loads(lines[-1])
    return name, status, detail


def op_of(name):
    model = onnx.load(os.path.join(NODE_DIR, name, "model.onnx"), load_external_data=False)
    ops = [n.op_type for n in model.graph.node]
    return ops[0] if len(ops) == 1 else (ops[-1] if ops else "?")


def dtype_of(name):
    model = onnx.load(os.path.join(NODE_DIR, name, "model.onnx"), load_external_data=False)
    t = model.graph.input[0].type if model.graph.input else None
    if t is None or not t.HasField("tensor_type"):
        return "other"
    return onnx.helper.tensor_dtype_to_np_dtype(t.tensor_type.elem_type).name


# ONNX's reference outputs for these wrap around int8 where the spec of
# QLinearMatMul saturates; onnxruntime saturates, and so does kiln.
REFERENCE_WRAPS = {f"test_qlinearmatmul_{d}_int8_{t}" for d in ("2D", "3D") for t in ("float32", "float16")}


def write_report(results, path):
    by_op = collections.defaultdict(lambda: {"pass": 0, "total": 0, "dtypes": set()})
    for name, status, _ in results:
        entry = by_op[op_of(name)]
        entry["total"] += 1
        if status in ("pass", "frozen"):
            entry["pass"] += 1
            entry["dtypes"].add(dtype_of(name))
    counts = collections.Counter(status for _, status, _ in results)
    passed = counts["pass"] + counts["frozen"]
    lines = [
        "# ONNX operator coverage",
        "",
        "Generated by `test/e2e/onnx_node_tests.py --report docs/ops.md` from the ONNX backend node",
        f"tests of onnx {onnx.__version__}: every test compiled by kiln at its static shapes, run on",
        "its data sets and compared with its reference outputs (rtol 1e-3, atol 1e-5).",
        "",
        f"**{passed} of {len(results)} tests pass** ({counts['frozen']} of them with integer or scalar "
        "inputs frozen to their test values because they fix shapes or axes); "
        f"{counts['mismatch']} mismatch, "
        f"{counts['unsupported']} are refused with a compile error, {counts['crash']} crash.",
        "",
        "| op | tests passed | dtypes seen passing |",
        "|---|---|---|",
    ]
    for op in sorted(by_op):
        e = by_op[op]
        lines.append(f"| {op} | {e['pass']}/{e['total']} | {', '.join(sorted(e['dtypes']))} |")
    mismatches = [(n, d) for n, s, d in results if s in ("mismatch", "crash")]
    if mismatches:
        lines += ["", "## Mismatches and crashes", ""]
        lines += [f"- `{n}`: {d}" + (" (the reference data wraps around int8 where the spec and "
                                      "onnxruntime saturate; kiln matches onnxruntime)"
                                      if n in REFERENCE_WRAPS else "") for n, d in mismatches]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("tests", nargs="*", help="test names (default: all)")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--report", help="write the per-op markdown table here")
    parser.add_argument("--json", help="write every result here")
    args = parser.parse_args()
    if args.one:
        try:
            print(json.dumps(run_one(args.one)))
        except subprocess.TimeoutExpired:
            print(json.dumps(["crash", "kiln compile timed out"]))
        return 0
    names = args.tests or all_tests()
    results = []
    with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        for i, result in enumerate(pool.map(run_isolated, names)):
            results.append(result)
            if (i + 1) % 100 == 0:
                print(f"{i + 1}/{len(names)}", file=sys.stderr)
    counts = collections.Counter(status for _, status, _ in results)
    for name, status, detail in results:
        if status in ("mismatch", "crash") or args.tests:
            print(f"{status:12} {name} {detail}")
    print(f"{counts['pass'] + counts['frozen']} passed ({counts['frozen']} with frozen inputs), "
          f"{counts['mismatch']} mismatched, "
          f"{counts['unsupported']} unsupported, {counts['crash']} crashed, {len(results)} total")
    if args.report:
        write_report(results, args.report)
    if args.json:
        with open(args.json, "w") as f:
            json.dump([{"test": n, "status": s, "detail": d} for n, s, d in results], f, indent=1)
    return 1 if counts["crash"] else 0


if __name__ == "__main__":
    sys.exit(main())
