"""Random small ONNX graphs over one batched input x [N, 8], for differential
tests of the whole pipeline against onnxruntime (test_random_graphs.py).

Each graph is a chain of 3-9 random steps, each reading one or two earlier
values: elementwise arithmetic (same shape, or broadcast with a [N, 1]
column sliced from the operand itself, a row constant or a scalar), unary
activations, division by a value kept from 0, slices of the last axis,
concats, keep-dims sums, matmuls and Gemms against constant weights,
softmax, transposes and reshapes. What they exercise is the interplay of
passes: fusion, epilogues, and above all the memory plan's views and
in-place writes (a column of a buffer read while the buffer is
overwritten). The graph's outputs are its last value and one earlier value.
"""
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

WIDTH = 8


def graph(seed):
    """The ONNX model of `seed`."""
    rng = np.random.default_rng(seed)
    nodes, inits = [], []
    values = [("x0", (WIDTH,))]  # name, shape without the batch dim
    counter = iter(range(1, 1000))

    def name(prefix="v"):
        return f"{prefix}{next(counter)}"

    def const(array):
        n = name("c")
        inits.append(numpy_helper.from_array(np.asarray(array), n))
        return n

    def ints(*v):
        return const(np.array(v, dtype=np.int64))

    def node(op, inputs, shape, **attrs):
        out = name()
        nodes.append(helper.make_node(op, inputs, [out], **attrs))
        values.append((out, shape))
        return out

    def weights(rows, cols):
        return const((rng.standard_normal((rows, cols)) / np.sqrt(rows)).astype(np.float32))

    def same_shape(shape, fallback):
        candidates = [n for n, s in values if s == shape]
        return candidates[rng.integers(len(candidates))] if candidates else fallback

    # An intermediate first: the graph input itself is never overwritten.
    nodes.append(helper.make_node("Add", ["x", const(np.float32(0.5))], ["x0"]))
    for _ in range(rng.integers(3, 10)):
        a, shape = values[rng.integers(len(values))]
        rank = len(shape)
        step = rng.choice(["binary", "binary", "broadcast", "broadcast", "unary", "divide", "slice",
                           "concat", "sum", "matmul", "gemm", "softmax", "transpose", "reshape"])
        if step == "binary":
            op = str(rng.choice(["Add", "Sub", "Mul", "Max", "Min"]))
            node(op, [a, same_shape(shape, a)], shape)
        elif step == "broadcast":
            kind = rng.integers(4)
            if kind < 2:  # a column of the operand itself
                c = int(rng.integers(shape[-1]))
                other = node("Slice", [a, ints(c), ints(c + 1), ints(rank)], shape[:-1] + (1,))
            elif kind == 2:
                other = const(rng.standard_normal(shape[-1]).astype(np.float32))
            else:
                other = const(np.float32(rng.standard_normal()))
            operands = [a, other] if rng.integers(2) else [other, a]
            node(str(rng.choice(["Add", "Sub", "Mul"])), operands, shape)
        elif step == "unary":
            node(str(rng.choice(["Relu", "Sigmoid", "Neg", "Abs", "Tanh"])), [a], shape)
        elif step == "divide":
            positive = node("Sigmoid", [same_shape(shape, a)], shape)
            node("Div", [a, node("Add", [positive, const(np.float32(0.5))], shape)], shape)
        elif step == "slice" and shape[-1] > 1:
            begin = int(rng.integers(shape[-1] - 1))
            end = int(rng.integers(begin + 1, shape[-1] + 1))
            node("Slice", [a, ints(begin), ints(end), ints(rank)], shape[:-1] + (end - begin,))
        elif step == "concat":
            b = [n for n, s in values if s[:-1] == shape[:-1]]
            b = b[rng.integers(len(b))]
            width = dict(values)[b][-1]
            node("Concat", [a, b], shape[:-1] + (shape[-1] + width,), axis=-1)
        elif step == "sum":
            node("ReduceSum", [a, ints(-1)], shape[:-1] + (1,), keepdims=1)
        elif step == "matmul":
            units = int(rng.choice([1, 3, 8, 16]))
            node("MatMul", [a, weights(shape[-1], units)], shape[:-1] + (units,))
        elif step == "gemm" and rank == 1:
            units = int(rng.choice([1, 4, 16]))
            bias = const(rng.standard_normal(units).astype(np.float32))
            node("Gemm", [a, weights(shape[0], units), bias], (units,))
        elif step == "softmax":
            node("Softmax", [a], shape, axis=-1)
        elif step == "transpose" and rank == 2:
            node("Transpose", [a], (shape[1], shape[0]), perm=[0, 2, 1])
        elif step == "reshape" and rank == 1 and shape[0] % 2 == 0:
            node("Reshape", [a, ints(0, 2, shape[0] // 2)], (2, shape[0] // 2))
        elif step == "reshape" and rank == 2:
            node("Reshape", [a, ints(0, -1)], (shape[0] * shape[1],))

    outputs = [values[-1]]
    if len(values) > 1:
        extra = values[rng.integers(1, len(values))]
        if extra[0] != outputs[0][0]:
            outputs.append(extra)
    g = helper.make_graph(
        nodes, f"random_{seed}", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", WIDTH])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["N", *s]) for n, s in outputs], inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model
