#!/usr/bin/env python3
"""Generates a production-size DLRM with its tables in ONNX external data.

Dense features go through a bottom MLP; each of 26 tables is looked up with
one id per sample (Gather of the id column, Gather of the rows); the rows and
the bottom output are concatenated and go through a top MLP to a sigmoid
click probability. The first table holds a share of the bytes (`big_share`)
and the other 25 split the rest, as in production, where a few id spaces
dominate.

The tables are written to OUT/model.data as they are generated, a table at a
time, so a model of any size is made in bounded memory; OUT/model.onnx holds
the graph and the small MLP weights and refers to the data by offset. The
reference (`reference`) reads the rows it needs back through a memory map.

    python bench/models/dlrm_large.py OUT --gigabytes 2.7
"""
import argparse
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

TABLES, DIM, DENSE = 26, 64, 13
BOTTOM = [(DENSE, 128), (128, DIM)]
TOP = [(DIM * (TABLES + 1), 256), (256, 1)]


def table_rows(gigabytes, big_share=0.4):
    """Rows of each table for a model of about `gigabytes` (1e9 bytes) of tables."""
    row_bytes = DIM * 4
    total = int(gigabytes * 1e9) // row_bytes
    big = int(total * big_share)
    rest = (total - big) // (TABLES - 1)
    return [big] + [rest] * (TABLES - 1)


def mlp_weights(seed=0):
    rng = np.random.default_rng(seed)
    weights = {}
    for prefix, layers in (("bot", BOTTOM), ("top", TOP)):
        for i, (k, n) in enumerate(layers):
            weights[f"{prefix}_w{i}"] = (rng.uniform(-1, 1, (k, n)) / np.sqrt(k)).astype(np.float32)
            weights[f"{prefix}_b{i}"] = rng.uniform(-0.1, 0.1, (n,)).astype(np.float32)
    return weights


def write(out, gigabytes, seed=0, chunk_rows=1 << 20):
    """Writes OUT/model.onnx and OUT/model.data; returns the tables' rows."""
    os.makedirs(out, exist_ok=True)
    rows = table_rows(gigabytes)
    rng = np.random.default_rng(seed + 1)
    inits, nodes = [], []
    offset = 0
    with open(os.path.join(out, "model.data"), "wb") as data:
        for t, n in enumerate(rows):
            for start in range(0, n, chunk_rows):
                block = rng.standard_normal((min(chunk_rows, n - start), DIM), np.float32)
                block *= 0.05
                data.write(block.tobytes())
            tensor = TensorProto(name=f"table_{t}", data_type=TensorProto.FLOAT, dims=[n, DIM])
            tensor.data_location = TensorProto.EXTERNAL
            for key, value in (("location", "model.data"), ("offset", str(offset)),
                               ("length", str(n * DIM * 4))):
                entry = tensor.external_data.add()
                entry.key, entry.value = key, value
            inits.append(tensor)
            offset += n * DIM * 4
    for name, value in mlp_weights(seed).items():
        inits.append(numpy_helper.from_array(value, name))

    x = "dense"
    for i in range(len(BOTTOM)):
        nodes += [helper.make_node("Gemm", [x, f"bot_w{i}", f"bot_b{i}"], [f"bot_g{i}"],
                                   name=f"bottom_gemm_{i}"),
                  helper.make_node("Relu", [f"bot_g{i}"], [f"bot_r{i}"], name=f"bottom_relu_{i}")]
        x = f"bot_r{i}"
    pooled = [x]
    for t in range(TABLES):
        inits.append(numpy_helper.from_array(np.int64(t), f"col_{t}"))
        nodes += [helper.make_node("Gather", ["ids", f"col_{t}"], [f"ids_{t}"],
                                   name=f"ids_of_table_{t}", axis=1),
                  helper.make_node("Gather", [f"table_{t}", f"ids_{t}"], [f"rows_{t}"],
                                   name=f"lookup_{t}")]
        pooled.append(f"rows_{t}")
    nodes.append(helper.make_node("Concat", pooled, ["features"], name="interaction", axis=1))
    x = "features"
    for i in range(len(TOP)):
        nodes.append(helper.make_node("Gemm", [x, f"top_w{i}", f"top_b{i}"], [f"top_g{i}"],
                                      name=f"top_gemm_{i}"))
        x = f"top_g{i}"
        if i + 1 < len(TOP):
            nodes.append(helper.make_node("Relu", [x], [f"top_r{i}"], name=f"top_relu_{i}"))
            x = f"top_r{i}"
    nodes.append(helper.make_node("Sigmoid", [x], ["click_prob"], name="click"))
    graph = helper.make_graph(
        nodes, "dlrm_large",
        [helper.make_tensor_value_info("dense", TensorProto.FLOAT, ["batch", DENSE]),
         helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", TABLES])],
        [helper.make_tensor_value_info("click_prob", TensorProto.FLOAT, ["batch", 1])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    with open(os.path.join(out, "model.onnx"), "wb") as f:
        f.write(model.SerializeToString())
    return rows


def inputs(rows, batch, seed=0):
    """Random inputs whose ids include the first and last row of every table."""
    rng = np.random.default_rng(seed)
    ids = np.stack([rng.integers(0, n, batch) for n in rows], axis=1).astype(np.int64)
    ids[0, :] = 0
    ids[-1, :] = np.array(rows) - 1
    return {"dense": rng.standard_normal((batch, DENSE)).astype(np.float32), "ids": ids}


def reference(out, rows, feeds, seed=0):
    """The model's output in numpy, reading the looked-up rows from the data file's map."""
    data = np.memmap(os.path.join(out, "model.data"), dtype=np.float32, mode="r")
    w = mlp_weights(seed)
    x = feeds["dense"]
    for i in range(len(BOTTOM)):
        x = np.maximum(x @ w[f"bot_w{i}"] + w[f"bot_b{i}"], 0)
    parts, start = [x], 0
    for t, n in enumerate(rows):
        table = data[start * DIM:(start + n) * DIM].reshape(n, DIM)
        parts.append(np.asarray(table[feeds["ids"][:, t]]))
        start += n
    x = np.concatenate(parts, axis=1)
    for i in range(len(TOP)):
        x = x @ w[f"top_w{i}"] + w[f"top_b{i}"]
        if i + 1 < len(TOP):
            x = np.maximum(x, 0)
    return 1 / (1 + np.exp(-x))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out")
    parser.add_argument("--gigabytes", type=float, default=2.7, help="bytes of tables, in 1e9")
    args = parser.parse_args()
    rows = write(args.out, args.gigabytes)
    print(f"wrote {args.out}/model.onnx and model.data: {len(rows)} tables, "
          f"{sum(rows) * DIM * 4 / 1e9:.2f} GB")
