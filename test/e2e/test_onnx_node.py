"""ONNX backend node tests of every op the ads zoo, the real exports and their
onnxruntime-quantised forms use
(the whole suite: `python test/e2e/onnx_node_tests.py`, see docs/ops.md).

Each must pass, except tests whose tensors have an element type kiln does
not support (the float8/float4/int4 families, strings) or
that are not tensors (optional, sequence), and blocked quantisation: those
must end in a clean compile error naming the type or the feature -- never a
crash or a wrong answer."""
import os

import onnx
import pytest

import onnx_node_tests as node

# The ops of bench/models/zoo.py and ../shared/models.
ZOO_OPS = {
    "Add", "And", "Cast", "Concat", "ConstantOfShape", "Div", "Equal", "Erf", "Expand", "Flatten",
    "Gather", "Gemm", "GreaterOrEqual", "Identity", "LayerNormalization", "Less", "MatMul", "Max",
    "Mul", "Pow", "PRelu", "Range", "ReduceMean", "ReduceProd", "ReduceSum", "Relu", "Reshape",
    "Shape", "Sigmoid", "Slice", "Softmax", "Sqrt", "Squeeze", "Sub", "Tanh", "Transpose",
    "Unsqueeze", "Where",
    # What onnxruntime's quantisation tool writes.
    "QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "MatMulInteger", "QLinearMatMul",
}

SUPPORTED_TYPES = {onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.BOOL,
                   onnx.TensorProto.INT8, onnx.TensorProto.INT16, onnx.TensorProto.INT32,
                   onnx.TensorProto.INT64, onnx.TensorProto.UINT8, onnx.TensorProto.UINT16,
                   onnx.TensorProto.UINT32, onnx.TensorProto.UINT64, onnx.TensorProto.FLOAT16,
                   onnx.TensorProto.BFLOAT16}


def load(name):
    return onnx.load(os.path.join(node.NODE_DIR, name, "model.onnx"), load_external_data=False)


def uses_unsupported_type(model):
    values = list(model.graph.input) + list(model.graph.output)
    for v in values:
        if not v.type.HasField("tensor_type") or v.type.tensor_type.elem_type not in SUPPORTED_TYPES:
            return True
    for n in model.graph.node:
        for a in n.attribute:
            if a.name == "to" and a.i not in SUPPORTED_TYPES:
                return True
    return False


def zoo_op_tests():
    names = []
    for name in node.all_tests():
        if name.endswith("_expanded") or "_expanded_" in name:
            continue
        ops = {n.op_type for n in load(name).graph.node}
        if len(ops) == 1 and ops <= ZOO_OPS:
            names.append(name)
    return names


def matches_onnxruntime(name, tmp_path):
    import numpy as np
    import onnxruntime as ort
    from onnx import numpy_helper

    import kiln
    folder = os.path.join(node.NODE_DIR, name)
    model = load(name)
    inputs = {i.name: numpy_helper.to_array(onnx.load_tensor(os.path.join(folder, "test_data_set_0", f"input_{k}.pb")))
              for k, i in enumerate(model.graph.input)}
    want = ort.InferenceSession(os.path.join(folder, "model.onnx")).run(None, inputs)
    so = str(tmp_path / "model.so")
    kiln.compile(os.path.join(folder, "model.onnx"), so, batch=[next(iter(inputs.values())).shape[0]])
    with kiln.load(so) as m:
        got = list(m.run(inputs).values())
    return all(np.array_equal(g, w) for g, w in zip(got, want))


@pytest.mark.parametrize("name", zoo_op_tests())
def test_node(name, tmp_path):
    if name in node.REFERENCE_WRAPS:  # compared with onnxruntime instead
        assert matches_onnxruntime(name, tmp_path)
        return
    _, status, detail = node.run_isolated(name)
    if any(a.name == "block_size" and a.i for n in load(name).graph.node for a in n.attribute):
        assert status == "unsupported" and "blocked quantisation" in detail, f"{status}: {detail}"
    elif uses_unsupported_type(load(name)):
        assert status == "unsupported", f"{status}: {detail}"
        assert "element type" in detail or "is not a tensor" in detail, detail
    else:
        assert status in ("pass", "frozen"), f"{status}: {detail}"
