"""nn.EmbeddingBag as exporters write it: a Loop over ragged bags (sum, mean,
max, per-sample weights; scan output or the dynamo exporter's sequence; bag
offsets fixed in the model or given with each request), raised to one
kiln.embedding_bag, against onnxruntime."""
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import kiln

OFFSETS = np.array([0, 2, 3, 6], np.int64)  # four bags over eight ids
NUM_IDS, ROWS, DIM = 8, 10, 3


def bag_model(mode, weighted=False, sequence=False, offsets_input=False):
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.standard_normal((ROWS, DIM)).astype(np.float32), "table"),
        numpy_helper.from_array(np.array([1], np.int64), "one"),
        numpy_helper.from_array(np.array([len(OFFSETS)], np.int64), "four"),
        numpy_helper.from_array(np.array([NUM_IDS], np.int64), "total"),
        numpy_helper.from_array(np.array([0], np.int64), "zero"),
        numpy_helper.from_array(np.int64(len(OFFSETS)), "trips"),
        numpy_helper.from_array(np.array(True), "true"),
    ]
    outer = [
        helper.make_node("Slice", ["offsets", "one", "four"], ["tail"]),
        helper.make_node("Concat", ["tail", "total"], ["ends"], axis=0),
    ]
    body = [
        helper.make_node("Gather", ["offsets", "i"], ["s"], axis=0),
        helper.make_node("Gather", ["ends", "i"], ["e"], axis=0),
        helper.make_node("Unsqueeze", ["s", "zero"], ["s1"]),
        helper.make_node("Unsqueeze", ["e", "zero"], ["e1"]),
        helper.make_node("Slice", ["ids", "s1", "e1", "zero"], ["window"]),
        helper.make_node("Gather", ["table", "window"], ["rows"], axis=0),
    ]
    rows = "rows"
    if weighted:
        body += [helper.make_node("Slice", ["weights", "s1", "e1", "zero"], ["w"]),
                 helper.make_node("Unsqueeze", ["w", "one"], ["w1"]),
                 helper.make_node("Mul", ["rows", "w1"], ["scaled"])]
        rows = "scaled"
    if mode == "sum":
        body.append(helper.make_node("ReduceSum", [rows, "zero"], ["bag"], keepdims=0))
    else:
        op = "ReduceMean" if mode == "mean" else "ReduceMax"
        body.append(helper.make_node(op, [rows], ["bag"], axes=[0], keepdims=0))
    body.append(helper.make_node("Identity", ["c"], ["c_out"]))
    body_inputs = [helper.make_tensor_value_info("i", TensorProto.INT64, []),
                   helper.make_tensor_value_info("c", TensorProto.BOOL, [])]
    if sequence:
        body.append(helper.make_node("SequenceInsert", ["seq_in", "bag"], ["seq_out"]))
        body_inputs.append(helper.make_tensor_sequence_value_info("seq_in", TensorProto.FLOAT, None))
        body_outputs = [helper.make_tensor_value_info("c_out", TensorProto.BOOL, []),
                        helper.make_tensor_sequence_value_info("seq_out", TensorProto.FLOAT, None)]
        outer += [helper.make_node("SequenceEmpty", [], ["empty"], dtype=TensorProto.FLOAT),
                  helper.make_node("Loop", ["trips", "true", "empty"], ["seq"],
                                   body=helper.make_graph(body, "body", body_inputs, body_outputs)),
                  helper.make_node("ConcatFromSequence", ["seq"], ["pooled"], axis=0, new_axis=1)]
    else:
        body_outputs = [helper.make_tensor_value_info("c_out", TensorProto.BOOL, []),
                        helper.make_tensor_value_info("bag", TensorProto.FLOAT, [DIM])]
        outer.append(helper.make_node("Loop", ["trips", "true"], ["pooled"],
                                      body=helper.make_graph(body, "body", body_inputs, body_outputs)))
    inputs = [helper.make_tensor_value_info("ids", TensorProto.INT64, [NUM_IDS])]
    if offsets_input:
        inputs.append(helper.make_tensor_value_info("offsets", TensorProto.INT64, [len(OFFSETS)]))
    else:
        inits.append(numpy_helper.from_array(OFFSETS, "offsets"))
    if weighted:
        inputs.append(helper.make_tensor_value_info("weights", TensorProto.FLOAT, [NUM_IDS]))
    graph = helper.make_graph(outer, "bags", inputs,
                              [helper.make_tensor_value_info("pooled", TensorProto.FLOAT, [len(OFFSETS), DIM])],
                              inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


@pytest.mark.parametrize("mode,weighted,sequence", [
    ("sum", False, False), ("mean", False, False), ("max", False, False),
    ("sum", True, False), ("sum", False, True), ("mean", False, True)])
def test_embedding_bag_loop_matches_onnxruntime(tmp_path, mode, weighted, sequence):
    model = bag_model(mode, weighted, sequence)
    onnx.save(model, tmp_path / "model.onnx")
    kiln.compile(tmp_path / "model.onnx", tmp_path / "model.so")
    rng = np.random.default_rng(1)
    feeds = {"ids": rng.integers(0, ROWS, NUM_IDS).astype(np.int64)}
    if weighted:
        feeds["weights"] = rng.random(NUM_IDS).astype(np.float32)
    expected = ort.InferenceSession(model.SerializeToString(),
                                    providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    with kiln.load(tmp_path / "model.so") as compiled:
        assert compiled.inputs[0].index_bounds.tolist() == [[0, ROWS - 1]] * NUM_IDS
        np.testing.assert_allclose(compiled.run(feeds)["pooled"], expected, rtol=1e-5, atol=1e-6)
        bad = dict(feeds, ids=np.full(NUM_IDS, ROWS, np.int64))
        with pytest.raises(kiln.Error, match="outside the valid ids"):
            compiled.run(bad)


def test_offsets_given_with_the_request(tmp_path):
    model = bag_model("sum", offsets_input=True)
    onnx.save(model, tmp_path / "model.onnx")
    kiln.compile(tmp_path / "model.onnx", tmp_path / "model.so")
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(2)
    ids = rng.integers(0, ROWS, NUM_IDS).astype(np.int64)
    with kiln.load(tmp_path / "model.so") as compiled:
        for offsets in ([0, 1, 2, 3], [0, 4, 4, 7], [0, 0, 0, 0]):
            feeds = {"ids": ids, "offsets": np.array(offsets, np.int64)}
            expected = session.run(None, feeds)[0]
            np.testing.assert_allclose(compiled.run(feeds)["pooled"], expected, rtol=1e-5, atol=1e-6)
        # Offsets past the ids are caught by the kernel, and the session survives.
        with pytest.raises(kiln.Error, match="embedding_bag .* index or offset out of range"):
            compiled.run({"ids": ids, "offsets": np.array([0, 2, 9, 3], np.int64)})
        assert compiled.run({"ids": ids, "offsets": np.array([0, 1, 2, 3], np.int64)})["pooled"].shape == (4, DIM)


def while_bag_model(mode, empty_then_constant=False):
    """The dynamo exporter's nn.EmbeddingBag: rows gathered before a while
    loop that carries its counter and the sequence of bags (their types left
    empty, as onnxscript writes them), reads offsets[i] and offsets[i + 1],
    and gives an empty bag zeros by an If."""
    rng = np.random.default_rng(0)
    offsets = np.array([0, 2, 2, 6], np.int64)  # bag 1 is empty
    inits = [
        numpy_helper.from_array(rng.standard_normal((ROWS, DIM)).astype(np.float32), "table"),
        numpy_helper.from_array(np.concatenate([offsets, [NUM_IDS]]), "offsets_ext"),
        numpy_helper.from_array(np.int64(len(offsets)), "num_bag"),
        numpy_helper.from_array(np.int64(0), "zero"),
        numpy_helper.from_array(np.int64(1), "one"),
        numpy_helper.from_array(np.int64(2), "two"),
        numpy_helper.from_array(np.array([-1], np.int64), "flat"),
        numpy_helper.from_array(np.array([0], np.int64), "axis0"),
    ]
    zeros = numpy_helper.from_array(np.zeros((1, DIM), np.float32), "zeros")
    then = helper.make_graph([], "then", [], [helper.make_tensor_value_info("zeros", TensorProto.FLOAT, [1, DIM])],
                             [zeros])
    if empty_then_constant:
        then = helper.make_graph([helper.make_node("Constant", [], ["zeros"], value=zeros)], "then", [],
                                 [helper.make_tensor_value_info("zeros", TensorProto.FLOAT, [1, DIM])])
    reduce = {"sum": "ReduceSum", "mean": "ReduceMean", "max": "ReduceMax"}[mode]
    otherwise = helper.make_graph(
        [helper.make_node("Slice", ["rows", "start", "end"], ["window"]),
         helper.make_node(reduce, ["window", "axis0"], ["bag"])], "else", [],
        [helper.make_tensor_value_info("bag", TensorProto.FLOAT, None)])
    body = helper.make_graph([
        helper.make_node("Reshape", ["i", "flat"], ["i1"]),
        helper.make_node("CastLike", ["one", "i1"], ["one_c"]),
        helper.make_node("Add", ["i1", "one_c"], ["i_next1"]),
        helper.make_node("Add", ["i1", "two"], ["i_next2"]),
        helper.make_node("Slice", ["offsets_ext", "i1", "i_next1"], ["start"]),
        helper.make_node("Slice", ["offsets_ext", "i_next1", "i_next2"], ["end"]),
        helper.make_node("Equal", ["start", "end"], ["empty"]),
        helper.make_node("If", ["empty"], ["row"], then_branch=then, else_branch=otherwise),
        helper.make_node("SequenceInsert", ["seq_in", "row"], ["seq_out"]),
        helper.make_node("Add", ["i", "one"], ["i_out"]),
        helper.make_node("Less", ["i_out", "num_bag"], ["cond_out"]),
    ], "body",
        [helper.make_tensor_value_info("iter", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond", TensorProto.BOOL, []),
         helper.make_value_info("i", onnx.TypeProto()), helper.make_value_info("seq_in", onnx.TypeProto())],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, None),
         helper.make_value_info("i_out", onnx.TypeProto()), helper.make_value_info("seq_out", onnx.TypeProto())])
    outer = [
        helper.make_node("Gather", ["table", "ids"], ["rows"], axis=0),
        helper.make_node("Less", ["zero", "num_bag"], ["cond0"]),
        helper.make_node("SequenceEmpty", [], ["empty_seq"], dtype=TensorProto.FLOAT),
        helper.make_node("Loop", ["", "cond0", "zero", "empty_seq"], ["i_final", "seq"], body=body),
        helper.make_node("ConcatFromSequence", ["seq"], ["pooled"], axis=0),
    ]
    graph = helper.make_graph(outer, "while_bags", [helper.make_tensor_value_info("ids", TensorProto.INT64, [NUM_IDS])],
                              [helper.make_tensor_value_info("pooled", TensorProto.FLOAT, [len(offsets), DIM])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    model.ir_version = 10
    return model


@pytest.mark.parametrize("mode,constant", [("sum", False), ("mean", False), ("max", False), ("sum", True)])
def test_while_loop_bags_with_an_empty_bag_match_onnxruntime(tmp_path, mode, constant):
    model = while_bag_model(mode, constant)
    onnx.save(model, tmp_path / "model.onnx")
    kiln.compile(tmp_path / "model.onnx", tmp_path / "model.so")
    ids = np.random.default_rng(1).integers(0, ROWS, NUM_IDS).astype(np.int64)
    expected = ort.InferenceSession(model.SerializeToString(),
                                    providers=["CPUExecutionProvider"]).run(None, {"ids": ids})[0]
    assert not expected[1].any()  # the empty bag
    with kiln.load(tmp_path / "model.so") as compiled:
        np.testing.assert_allclose(compiled.run({"ids": ids})["pooled"], expected, rtol=1e-5, atol=1e-6)


def test_while_loop_whose_empty_bag_is_not_zeros_is_refused(tmp_path):
    model = while_bag_model("sum")
    then = next(n for n in model.graph.node[3].attribute[0].g.node if n.op_type == "If").attribute
    branch = next(a for a in then if a.name == "then_branch").g
    branch.initializer[0].CopyFrom(numpy_helper.from_array(np.ones((1, DIM), np.float32), "zeros"))
    onnx.save(model, tmp_path / "model.onnx")
    with pytest.raises(kiln.Error, match=r"\(#3, Loop\): this Loop is not a recognised idiom: its body node #7 \(If\)"):
        kiln.compile(tmp_path / "model.onnx", tmp_path / "model.so")
