"""Models a trainer's export or a damaged file can hand kiln: sizes a model
declares but cannot have (dims near 2^62 in inputs, initialisers and
intermediates, negative dims, data that disagree with the dims), a truncated
file or one with a bit flipped, graphs out of order or with cycles, undefined or twice-defined values,
unknown dtypes, missing, mistyped or out-of-range attributes. Each is refused
with a message naming the tensor or node, never a crash, a wrapped size, an
attempt to allocate it or a silently different model."""
import subprocess

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import kiln

F, I64 = TensorProto.FLOAT, TensorProto.INT64
HUGE = 1 << 62


def compile_error(tmp_path, nodes, inputs, outputs, inits=(), truncate=False):
    graph = helper.make_graph(nodes, "malformed", inputs, outputs, list(inits))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / "model.onnx"
    data = model.SerializeToString()  # unchecked: the checker would refuse most
    path.write_bytes(data[:len(data) // 2] if truncate else data)
    with pytest.raises(kiln.Error) as e:
        kiln.compile(path, tmp_path / "model.so", batch=[1, 4])
    return str(e.value)


def vi(name, dtype, shape):
    return helper.make_tensor_value_info(name, dtype, shape)


def test_input_dims_whose_product_overflows(tmp_path):
    message = compile_error(tmp_path, [helper.make_node("Relu", ["x"], ["y"])],
                            [vi("x", F, ["N", HUGE, 4])], [vi("y", F, ["N", HUGE, 4])])
    assert "'x' has dims whose product overflows 64 bits" in message, message


def test_input_negative_dim(tmp_path):
    message = compile_error(tmp_path, [helper.make_node("Relu", ["x"], ["y"])],
                            [vi("x", F, ["N", -4])], [vi("y", F, ["N", 4])])
    assert "'x' has a negative dimension" in message, message


def test_initializer_dims_near_2_62_without_the_data(tmp_path):
    # Declares 2^62 x 4 floats and holds 16 bytes: refused before any
    # allocation of the declared size.
    w = TensorProto(name="w", data_type=F, dims=[HUGE, 4], raw_data=b"\0" * 16)
    message = compile_error(tmp_path, [helper.make_node("Add", ["x", "w"], ["y"])],
                            [vi("x", F, ["N", 4])], [vi("y", F, ["N", 4])], [w])
    assert "tensor 'w': its dims' product overflows 64 bits" in message, message
    w = TensorProto(name="w", data_type=F, dims=[1 << 40, 4], raw_data=b"\0" * 16)
    message = compile_error(tmp_path, [helper.make_node("Add", ["x", "w"], ["y"])],
                            [vi("x", F, ["N", 4])], [vi("y", F, ["N", 4])], [w])
    assert "tensor 'w': raw_data holds 16 bytes, the shape needs 17592186044416" in message, message


def test_initializer_negative_dim(tmp_path):
    w = TensorProto(name="w", data_type=F, dims=[-1, 4], raw_data=b"\0" * 16)
    message = compile_error(tmp_path, [helper.make_node("Add", ["x", "w"], ["y"])],
                            [vi("x", F, ["N", 4])], [vi("y", F, ["N", 4])], [w])
    assert "tensor 'w': negative dimension" in message, message


@pytest.mark.parametrize("field", ["raw_data", "float_data"])
def test_initializer_data_that_disagrees_with_its_dims(tmp_path, field):
    w = numpy_helper.from_array(np.ones((3, 4), np.float32), "w")
    if field == "raw_data":
        w.raw_data = w.raw_data[:-4]
    else:
        w.ClearField("raw_data")
        w.float_data.extend([1.0] * 11)
    message = compile_error(tmp_path, [helper.make_node("Add", ["x", "w"], ["y"])],
                            [vi("x", F, ["N", 3, 4])], [vi("y", F, ["N", 3, 4])], [w])
    expected = ("raw_data holds 44 bytes, the shape needs 48" if field == "raw_data"
                else "holds 11 values, the shape needs 12")
    assert f"tensor 'w': {expected}" in message, message


def test_an_intermediate_whose_size_overflows(tmp_path):
    # A constant shape makes a [2^31, 2^31, 4] float tensor out of one value:
    # its inferred type is refused at the node, before any fold materialises it.
    shape = numpy_helper.from_array(np.array([1 << 31, 1 << 31, 4], np.int64), "shape")
    message = compile_error(
        tmp_path,
        [helper.make_node("ConstantOfShape", ["shape"], ["big"], name="make_big",
                          value=numpy_helper.from_array(np.array([1.0], np.float32))),
         helper.make_node("ReduceSum", ["big"], ["s"], keepdims=0),
         helper.make_node("Add", ["x", "s"], ["y"])],
        [vi("x", F, ["N", 1])], [vi("y", F, ["N", 1])], [shape])
    assert "node 'make_big'" in message and "whose size overflows 64 bits" in message, message


def test_an_arena_past_2_63_bytes(tmp_path):
    # Each buffer fits (2^62 bytes at batch 2), the input and two outputs do not.
    wide = [vi(n, F, ["N", 1 << 59]) for n in "xyz"]
    nodes = [helper.make_node("Relu", ["x"], ["y"]), helper.make_node("Neg", ["x"], ["z"])]
    graph = helper.make_graph(nodes, "arena", wide[:1], wide[1:])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, tmp_path / "model.onnx")
    with pytest.raises(kiln.Error) as e:
        kiln.compile(tmp_path / "model.onnx", tmp_path / "model.so", batch=[2])
    assert ("the arena of bucket 2 would exceed 2^63 bytes; its largest buffer is input 'x'"
            in str(e.value)), str(e.value)


def test_a_reshape_to_an_overflowing_shape(tmp_path):
    shape = numpy_helper.from_array(np.array([-1, HUGE, 8], np.int64), "shape")
    message = compile_error(
        tmp_path, [helper.make_node("Reshape", ["x", "shape"], ["y"], name="grow")],
        [vi("x", F, ["N", 8])], [vi("y", F, ["N", HUGE, 8])], [shape])
    assert "node 'grow'" in message, message


X, Y = [vi("x", F, ["N", 4])], [vi("y", F, ["N", 4])]
relu = helper.make_node("Relu", ["x"], ["y"])

# name: (nodes, inputs, outputs, initialisers, what the message says)
GRAPHS = {
    "unsorted": ([helper.make_node("Relu", ["a"], ["y"]), helper.make_node("Relu", ["x"], ["a"])],
                 X, Y, (), "node (#0, Relu): input 'a' is not defined before use"),
    "cycle": ([helper.make_node("Add", ["x", "b"], ["a"]), helper.make_node("Relu", ["a"], ["b"]),
               helper.make_node("Relu", ["b"], ["y"])],
              X, Y, (), "node (#0, Add): input 'b' is not defined before use"),
    "undefined_input": ([helper.make_node("Add", ["x", "nowhere"], ["y"])], X, Y, (),
                        "input 'nowhere' is not defined before use"),
    "output_defined_twice": (
        [helper.make_node("Relu", ["x"], ["a"]), helper.make_node("Neg", ["x"], ["a"]),
         helper.make_node("Relu", ["a"], ["y"])],
        X, Y, (), "node (#1, Neg): output 'a' is already defined"),
    "graph_output_twice": ([relu], X, Y + Y, (), "graph output 'y' is listed twice"),
    "graph_output_never_computed": ([relu], X, Y + [vi("z", F, ["N", 4])], (),
                                    "graph output 'z' is never computed"),
    "unknown_dtype_enum": ([relu], [vi("x", 99, ["N", 4])], Y, (), "'x': unsupported element type"),
    "missing_attribute": ([helper.make_node("Cast", ["x"], ["y"])], X, Y, (),
                          "node (#0, Cast): Cast 'to': unsupported element type UNDEFINED"),
    "attribute_of_another_type": ([helper.make_node("Softmax", ["x"], ["y"], axis=1.5)], X, Y, (),
                                  "attribute 'axis' is FLOAT, not the INT the op takes"),
    "axis_out_of_range": ([helper.make_node("Softmax", ["x"], ["y"], axis=7)], X, Y, (),
                          "node (#0, Softmax): axis 7 out of range for rank 2"),
    # Found by import_fuzzer: a scalar where Slice takes a 1-D list.
    "slice_scalar_starts": ([helper.make_node("Slice", ["x", "s", "e"], ["y"])], X, Y,
                            [numpy_helper.from_array(np.array(0, np.int64), "s"),
                             numpy_helper.from_array(np.array(2, np.int64), "e")],
                            "Slice starts must be a 1-D tensor"),
    # Found by import_fuzzer: a Shrink threshold past int64 for an integer
    # input, converted to int64 (UB).
    "shrink_threshold_past_int64": (
        [helper.make_node("Shrink", ["i"], ["y"], lambd=1e30)], [vi("i", I64, ["N", 4])],
        [vi("y", I64, ["N", 4])], (), "has no value of the integer input's type"),
    # Found by import_fuzzer: causal Attention over 2^40 positions built its
    # mask as an import-time table (out of memory); now the scores' size is
    # refused.
    "causal_attention_over_2_40_positions": (
        [helper.make_node("Attention", ["q", "k", "v"], ["y"], is_causal=1)],
        [vi(n, F, ["N", 1, 1 << 40, 4]) for n in "qkv"], [vi("y", F, ["N", 1, 1 << 40, 4])], (),
        "node (#0, Attention): result 0 would be"),
    # Found by import_fuzzer: fits as declared, overflows once the batch is
    # a bucket's.
    "input_overflows_at_a_bucket": ([helper.make_node("Not", ["b"], ["c"])],
                                    [vi("b", TensorProto.BOOL, ["N", (1 << 63) - 1])],
                                    [vi("c", TensorProto.BOOL, ["N", (1 << 63) - 1])], (),
                                    "input 'b' at batch 4 would be"),
    # Found by import_fuzzer: a computed shape of 2^31 dims.
    "reshape_to_2_31_dims": ([helper.make_node("Reshape", ["x", "s"], ["y"])],
                             X + [vi("s", I64, [1 << 31])], Y, (),
                             "reshape: a shape of 2147483648 dims (at most 64)"),
    # Found by import_fuzzer: inputs whose bytes sum past 2^63 (each fits).
    "inputs_summing_past_2_63_bytes": ([], [vi("x", TensorProto.UINT8, [(1 << 63) - 1]),
                                            vi("s", I64, [])], [vi("s", I64, [])], (),
                                       "would exceed 2^63 bytes; its largest buffer is input 'x'"),
    "not_a_permutation": ([helper.make_node("Transpose", ["x"], ["y"], perm=[0, 0])], X, Y, (),
                          "perm is not a permutation"),
}


@pytest.mark.parametrize("case", sorted(GRAPHS))
def test_malformed_graph(tmp_path, case):
    nodes, inputs, outputs, inits, expected = GRAPHS[case]
    message = compile_error(tmp_path, nodes, inputs, outputs, inits)
    assert expected in message, message


def test_ignore_index_outside_the_target_type(tmp_path):
    """Found by import_fuzzer: an ignore_index of INT64_MAX went through a
    double on its way to int64 (UB). An ignore_index no target can equal
    ignores nothing."""
    nodes = [helper.make_node("NegativeLogLikelihoodLoss", ["x", "t"], ["y"], reduction="none",
                              ignore_index=(1 << 63) - 1)]
    graph = helper.make_graph(nodes, "nll", X + [vi("t", TensorProto.INT32, ["N"])],
                              [vi("y", F, ["N"])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, tmp_path / "model.onnx")
    kiln.compile(tmp_path / "model.onnx", tmp_path / "model.so", batch=[4])
    x = np.random.default_rng(3).standard_normal((3, 4)).astype(np.float32)
    t = np.array([0, 3, 2], np.int32)
    with kiln.load(tmp_path / "model.so") as m:
        y = m.run({"x": x, "t": t})["y"]
    np.testing.assert_array_equal(y, -x[np.arange(3), t])


def test_truncated_file(tmp_path):
    message = compile_error(tmp_path, [relu], X, Y, truncate=True)
    assert "not a valid ONNX model (protobuf parse failed)" in message, message


def test_an_output_that_is_an_input(tmp_path):
    # Legal ONNX (an identity): it compiles and hands the input back.
    graph = helper.make_graph([relu], "identity", X, Y + [vi("x", F, ["N", 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, tmp_path / "model.onnx")
    kiln.compile(tmp_path / "model.onnx", tmp_path / "model.so", batch=[1, 4])
    x = np.arange(12, dtype=np.float32).reshape(3, 4) - 5
    with kiln.load(tmp_path / "model.so") as compiled:
        out = compiled.run({"x": x})
    np.testing.assert_array_equal(out["x"], x)
    np.testing.assert_array_equal(out["y"], np.maximum(x, 0))


def test_bit_flipped_files(tmp_path, kiln_bin):
    # A model with an embedding bag, a dense layer and a softmax; 96 copies,
    # each with one bit flipped (fixed seed). Each compiles (up to the memory
    # plan) or is refused with kiln's message; none crashes or hangs.
    table = numpy_helper.from_array(np.arange(40, dtype=np.float32).reshape(10, 4), "table")
    w = numpy_helper.from_array(np.ones((4, 3), np.float32), "w")
    nodes = [helper.make_node("Gather", ["table", "ids"], ["rows"]),
             helper.make_node("ReduceSum", ["rows", "axes"], ["bag"], keepdims=0),
             helper.make_node("MatMul", ["bag", "w"], ["h"]),
             helper.make_node("Softmax", ["h"], ["y"], axis=1)]
    axes = numpy_helper.from_array(np.array([1], np.int64), "axes")
    graph = helper.make_graph(nodes, "flip", [vi("ids", I64, ["N", 3])], [vi("y", F, ["N", 3])],
                              [table, w, axes])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    data = bytearray(model.SerializeToString())
    rng = np.random.default_rng(19)
    outcomes = {"compiled": 0, "refused": 0}
    for bit in rng.choice(len(data) * 8, size=96, replace=False):
        flipped = bytearray(data)
        flipped[bit // 8] ^= 1 << (bit % 8)
        path = tmp_path / "flipped.onnx"
        path.write_bytes(flipped)
        proc = subprocess.run([kiln_bin, "compile", str(path), "-o", str(tmp_path / "out.mlir"),
                               "--emit", "mlir", "--stop-after", "plan-memory", "--batch", "1,4",
                               "-q"], capture_output=True, text=True, timeout=60)
        assert proc.returncode in (0, 1), f"bit {bit}: exit {proc.returncode}\n{proc.stderr}"
        if proc.returncode:
            assert "error" in proc.stderr, f"bit {bit}: refused without a message"
        outcomes["compiled" if proc.returncode == 0 else "refused"] += 1
    assert outcomes["compiled"] and outcomes["refused"], outcomes
