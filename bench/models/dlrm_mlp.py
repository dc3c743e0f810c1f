#!/usr/bin/env python3
"""Generates a small DLRM-style click-through-rate model, the bundled example.

Dense features go through a bottom MLP; sparse ids of several tables are
pooled by Gather + ReduceSum (the exporter's EmbeddingBag(sum) form); the
pooled rows and the bottom output are concatenated and go through a top MLP
(written as MatMul + Add, as exporters do) to a sigmoid click probability.
A Shape -> Slice -> Concat -> Reshape chain flattens the interaction input,
the way traced exporters keep the batch dimension dynamic.

Writes OUT/model.onnx and OUT/test_data_set_0/{input,output}_N.pb with
reference outputs from onnxruntime.
"""
import argparse
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def build(num_tables=8, rows=1000, dim=16, hotness=4, dense=13, seed=0):
    rng = np.random.default_rng(seed)
    inits, nodes = [], []

    def weight(name, shape, scale=None):
        scale = scale if scale is not None else 1.0 / np.sqrt(shape[0])
        inits.append(numpy_helper.from_array(
            rng.uniform(-scale, scale, shape).astype(np.float32), name))
        return name

    def const(name, value):
        inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    # Bottom MLP: Gemm + Relu.
    x = "dense"
    for i, (k, n) in enumerate([(dense, 64), (64, dim)]):
        nodes.append(helper.make_node("Gemm", [x, weight(f"bot_w{i}", (n, k)), weight(f"bot_b{i}", (n,))],
                                      [f"bot_g{i}"], name=f"bottom_gemm_{i}", transB=1))
        nodes.append(helper.make_node("Relu", [f"bot_g{i}"], [f"bot_r{i}"], name=f"bottom_relu_{i}"))
        x = f"bot_r{i}"

    # Embedding bags: Gather the table's ids, Gather the rows, ReduceSum over hotness.
    pooled = []
    for t in range(num_tables):
        table = weight(f"table_{t}", (rows, dim), scale=0.05)
        nodes.append(helper.make_node("Gather", ["ids", const(f"t_idx_{t}", np.int64(t))],
                                      [f"ids_{t}"], name=f"ids_of_table_{t}", axis=1))
        nodes.append(helper.make_node("Gather", [table, f"ids_{t}"], [f"rows_{t}"], name=f"lookup_{t}"))
        nodes.append(helper.make_node("ReduceSum", [f"rows_{t}", const(f"axes_{t}", np.array([1], np.int64))],
                                      [f"bag_{t}"], name=f"pool_{t}", keepdims=0))
        pooled.append(f"bag_{t}")

    # Interaction input: stack and flatten through a dynamic shape chain.
    nodes.append(helper.make_node("Concat", [x] + pooled, ["features"], name="concat_features", axis=1))
    nodes.append(helper.make_node("Shape", ["features"], ["features_shape"], name="shape"))
    nodes.append(helper.make_node("Slice", ["features_shape", const("s0", np.array([0], np.int64)),
                                            const("s1", np.array([1], np.int64))],
                                  ["batch_dim"], name="batch_dim"))
    nodes.append(helper.make_node("Concat", ["batch_dim", const("minus1", np.array([-1], np.int64))],
                                  ["flat_shape"], name="flat_shape", axis=0))
    nodes.append(helper.make_node("Reshape", ["features", "flat_shape"], ["flat"], name="flatten"))

    # Top MLP: MatMul + Add (+ Relu), then a Gemm to one logit and a sigmoid.
    width = dim * (num_tables + 1)
    y = "flat"
    for i, (k, n) in enumerate([(width, 64), (64, 32)]):
        nodes.append(helper.make_node("MatMul", [y, weight(f"top_w{i}", (k, n))], [f"top_mm{i}"], name=f"top_matmul_{i}"))
        nodes.append(helper.make_node("Add", [f"top_mm{i}", weight(f"top_b{i}", (n,))], [f"top_add{i}"], name=f"top_add_{i}"))
        nodes.append(helper.make_node("Relu", [f"top_add{i}"], [f"top_r{i}"], name=f"top_relu_{i}"))
        y = f"top_r{i}"
    nodes.append(helper.make_node("Gemm", [y, weight("head_w", (32, 1)), weight("head_b", (1,))], ["logit"], name="head"))
    nodes.append(helper.make_node("Sigmoid", ["logit"], ["click_prob"], name="sigmoid"))

    graph = helper.make_graph(
        nodes, "dlrm_mlp",
        [helper.make_tensor_value_info("dense", TensorProto.FLOAT, ["batch", dense]),
         helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", num_tables, hotness])],
        [helper.make_tensor_value_info("click_prob", TensorProto.FLOAT, ["batch", 1])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                              producer_name="kiln-bench")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def reference_case(model, out_dir, batch, seed=1):
    import onnxruntime as ort
    rng = np.random.default_rng(seed)
    ids_shape = [d.dim_value for d in model.graph.input[1].type.tensor_type.shape.dim[1:]]
    rows = next(i for i in model.graph.initializer if i.name == "table_0").dims[0]
    inputs = {"dense": rng.standard_normal((batch, 13)).astype(np.float32),
              "ids": rng.integers(0, rows, (batch, *ids_shape)).astype(np.int64)}
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    outputs = sess.run(None, inputs)
    case = os.path.join(out_dir, "test_data_set_0")
    os.makedirs(case, exist_ok=True)
    for i, name in enumerate(["dense", "ids"]):
        with open(os.path.join(case, f"input_{i}.pb"), "wb") as f:
            f.write(numpy_helper.from_array(inputs[name], name).SerializeToString())
    with open(os.path.join(case, "output_0.pb"), "wb") as f:
        f.write(numpy_helper.from_array(outputs[0], "click_prob").SerializeToString())


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", help="output folder")
    parser.add_argument("--batch", type=int, default=8, help="batch of the reference test case")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    model = build()
    onnx.save(model, os.path.join(args.out, "model.onnx"))
    reference_case(model, args.out, args.batch)
    print(f"wrote {args.out}/model.onnx and test_data_set_0 (batch {args.batch})")


if __name__ == "__main__":
    main()
