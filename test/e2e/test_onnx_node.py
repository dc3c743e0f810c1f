"""ONNX backend node tests of every op the ads zoo and the real exports use
must pass (the whole suite: `python test/e2e/onnx_node_tests.py`, see
docs/ops.md)."""
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


def zoo_op_tests():
    names = []
    for name in node.all_tests():
        if name.endswith("_expanded") or "_expanded_" in name:
            continue
        model = onnx.load(os.path.join(node.NODE_DIR, name, "model.onnx"), load_external_data=False)
        ops = {n.op_type for n in model.graph.node}
        if len(ops) == 1 and ops <= ZOO_OPS:
            names.append(name)
    return names


@pytest.mark.parametrize("name", zoo_op_tests())
def test_node(name):
    _, status, detail = node.run_isolated(name)
    assert status in ("pass", "frozen"), f"{status}: {detail}"
