"""ONNX backend node tests of every op the ads zoo and the real exports use
(the whole suite: `python test/e2e/onnx_node_tests.py`, see docs/ops.md).

Each must pass, except tests whose tensors have an element type kiln does
not support (float16, bfloat16, the float8/float4/int4 families, strings) or
that are not tensors (optional, sequence): those must end in a clean compile
error naming the type -- never a crash or a wrong answer."""
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
}

SUPPORTED_TYPES = {onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.BOOL,
                   onnx.TensorProto.INT8, onnx.TensorProto.INT16, onnx.TensorProto.INT32,
                   onnx.TensorProto.INT64, onnx.TensorProto.UINT8, onnx.TensorProto.UINT16,
                   onnx.TensorProto.UINT32, onnx.TensorProto.UINT64}


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


@pytest.mark.parametrize("name", zoo_op_tests())
def test_node(name):
    _, status, detail = node.run_isolated(name)
    if uses_unsupported_type(load(name)):
        assert status == "unsupported", f"{status}: {detail}"
        assert "element type" in detail or "is not a tensor" in detail, detail
    else:
        assert status in ("pass", "frozen"), f"{status}: {detail}"
