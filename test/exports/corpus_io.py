"""Writes one case of the export corpus: test/exports/corpus/<case>/ holds
model.onnx, reference.npz and case.json.

reference.npz has, for each batch B of BATCHES, the inputs (`b<B>.in.<name>`),
onnxruntime's outputs (`b<B>.ort.<name>`) and the framework's own outputs
(`b<B>.fw.<name>`), output names in the model's order. case.json records
the model, the exporter, the opset, the dtype and the tolerance the test
holds kiln to, against which reference. Only numpy, onnx and onnxruntime are
used here, so every export venv can import it.
"""
import json
import os

import numpy as np
import onnx
import onnxruntime as ort

BATCHES = (1, 16, 64)
CORPUS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")

# fp32 exports are held to onnxruntime's fp32 result; fp16 exports to the
# framework's own fp16 result, at a tolerance that covers fp16 rounding of
# intermediate values (kiln computes f16 graphs in f32, as onnxruntime's CPU
# kernels do for most ops, while PyTorch rounds after every op).
TOLERANCE = {"float32": {"against": "ort", "rtol": 1e-4, "atol": 1e-5},
             "float16": {"against": "fw", "rtol": 2e-2, "atol": 2e-3}}


def write_case(name, model_bytes, feeds_by_batch, framework_outputs, meta):
    """feeds_by_batch: {B: {input: array}}; framework_outputs: {B: [array]}."""
    folder = os.path.join(CORPUS, name)
    os.makedirs(folder, exist_ok=True)
    model = onnx.load_from_string(model_bytes)
    onnx.checker.check_model(model)
    with open(os.path.join(folder, "model.onnx"), "wb") as f:
        f.write(model_bytes)
    session = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    outputs = [o.name for o in session.get_outputs()]
    arrays = {}
    for batch, feeds in feeds_by_batch.items():
        for key, value in feeds.items():
            arrays[f"b{batch}.in.{key}"] = value
        for key, value in zip(outputs, session.run(None, feeds)):
            arrays[f"b{batch}.ort.{key}"] = value
        for key, value in zip(outputs, framework_outputs[batch]):
            arrays[f"b{batch}.fw.{key}"] = np.asarray(value)
    np.savez_compressed(os.path.join(folder, "reference.npz"), **arrays)
    meta = dict(meta, inputs=[i.name for i in session.get_inputs()], outputs=outputs,
                batches=list(feeds_by_batch), tolerance=TOLERANCE[meta["dtype"]])
    with open(os.path.join(folder, "case.json"), "w") as f:
        json.dump(meta, f, indent=1, sort_keys=True)
        f.write("\n")
    size = os.path.getsize(os.path.join(folder, "model.onnx"))
    print(f"corpus: {name}: {size / 1024:.0f} KiB, {len(model.graph.node)} nodes", flush=True)
