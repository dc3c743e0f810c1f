"""Reference outputs from onnxruntime, for `kiln verify`.

    python -m kiln.reference MODEL.onnx INPUTS.npz OUTPUTS.npz
"""
import sys

import numpy as np


def main(argv):
    if len(argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    import onnxruntime as ort

    model, inputs, outputs = argv[1:]
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    feeds = dict(np.load(inputs))
    names = [o.name for o in session.get_outputs()]
    results = session.run(names, feeds)
    np.savez(outputs, **dict(zip(names, results)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
