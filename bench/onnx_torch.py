"""Runs an ONNX graph with PyTorch operators: the PyTorch side of
bench/gpu_check.py, so that kiln-cuda is timed against the same architecture
and the same weights in PyTorch eager mode and under CUDA-graph replay.

Values that do not depend on a graph input (initialisers, shapes and what is
computed from them) are computed once when the graph is built for a batch,
as a PyTorch model holds its parameters; `forward` runs the rest, one PyTorch
call per ONNX node. The operators are those of the ads zoo (bench/models/zoo.py);
another op raises NotImplementedError with its name.
"""
import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import numpy_helper

_DTYPES = {1: torch.float32, 6: torch.int32, 7: torch.int64, 9: torch.bool, 11: torch.float64}


def _attrs(node):
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _ints(t):
    return [int(v) for v in t.reshape(-1).tolist()]


def _reshape_target(x, shape):
    return [x.shape[i] if s == 0 else s for i, s in enumerate(shape)]


def _slice(x, starts, ends, axes=None, steps=None):
    axes = axes if axes is not None else list(range(len(starts)))
    steps = steps if steps is not None else [1] * len(starts)
    index = [slice(None)] * x.dim()
    for s, e, a, st in zip(starts, ends, axes, steps):
        if st != 1:
            raise NotImplementedError("Slice with a step other than 1")
        index[a] = slice(s, min(e, x.shape[a]))
    return x[tuple(index)]


def _reduce(fn):
    def run(a, x, axes=None):
        axes = _ints(axes) if axes is not None else a.get("axes")
        keep = bool(a.get("keepdims", 1))
        if axes is None:
            return fn(x, dim=tuple(range(x.dim())), keepdim=keep)
        return fn(x, dim=tuple(axes), keepdim=keep)
    return run


def _gemm(a, x, w, c=None):
    if a.get("transA", 0):
        x = x.t()
    if a.get("transB", 0):
        w = w.t()
    alpha, beta = a.get("alpha", 1.0), a.get("beta", 1.0)
    if c is None:
        return alpha * (x @ w) if alpha != 1 else x @ w
    return torch.addmm(c, x, w, beta=beta, alpha=alpha)


def _unsqueeze(a, x, axes=None):
    for axis in sorted(_ints(axes) if axes is not None else a["axes"]):
        x = x.unsqueeze(axis if axis >= 0 else axis + x.dim() + 1)
    return x


def _squeeze(a, x, axes=None):
    axes = _ints(axes) if axes is not None else a.get("axes")
    if axes is None:
        return x.squeeze()
    for axis in sorted((d if d >= 0 else d + x.dim() for d in axes), reverse=True):
        x = x.squeeze(axis)
    return x


def _layer_norm(a, x, scale, bias=None):
    axis = a.get("axis", -1)
    axis = axis if axis >= 0 else axis + x.dim()
    return F.layer_norm(x, x.shape[axis:], scale, bias, a.get("epsilon", 1e-5))


# Each takes the node's attributes, then its inputs (host values for shape
# operands, device tensors for data).
OPS = {
    "Identity": lambda a, x: x,
    "Add": lambda a, x, y: x + y,
    "Sub": lambda a, x, y: x - y,
    "Mul": lambda a, x, y: x * y,
    "Div": lambda a, x, y: x / y,
    "Pow": lambda a, x, y: torch.pow(x, y),
    "Max": lambda a, *xs: torch.stack(torch.broadcast_tensors(*xs)).amax(0),
    "Less": lambda a, x, y: x < y,
    "Equal": lambda a, x, y: x == y,
    "And": lambda a, x, y: x & y,
    "Where": lambda a, c, x, y: torch.where(c, x, y),
    "Relu": lambda a, x: torch.relu(x),
    "Sigmoid": lambda a, x: torch.sigmoid(x),
    "Tanh": lambda a, x: torch.tanh(x),
    "Erf": lambda a, x: torch.erf(x),
    "Sqrt": lambda a, x: torch.sqrt(x),
    "PRelu": lambda a, x, s: torch.where(x < 0, x * s, x),
    "Gemm": _gemm,
    "MatMul": lambda a, x, y: torch.matmul(x, y),
    "Gather": lambda a, d, i: torch.index_select(d, a.get("axis", 0), i.reshape(-1)).reshape(
        d.shape[:a.get("axis", 0) % d.dim()] + i.shape + d.shape[a.get("axis", 0) % d.dim() + 1:]),
    "Concat": lambda a, *xs: torch.cat(xs, a["axis"]),
    "Transpose": lambda a, x: x.permute(*a["perm"]) if "perm" in a else x.t(),
    "Softmax": lambda a, x: torch.softmax(x, a.get("axis", -1)),
    "LayerNormalization": _layer_norm,
    "ReduceSum": _reduce(torch.sum),
    "ReduceMean": _reduce(torch.mean),
    "Cast": lambda a, x: x.to(_DTYPES[a["to"]]),
    "Reshape": lambda a, x, s: x.reshape(_reshape_target(x, _ints(s))),
    "Flatten": lambda a, x: x.reshape(int(np.prod(x.shape[:a.get("axis", 1)])), -1),
    "Unsqueeze": _unsqueeze,
    "Squeeze": _squeeze,
    "Expand": lambda a, x, s: x.expand(torch.broadcast_shapes(x.shape, tuple(_ints(s)))),
    "Slice": lambda a, x, *p: _slice(x, *[_ints(v) for v in p]),
    "Shape": lambda a, x: torch.tensor(list(x.shape), dtype=torch.int64),
    "Range": lambda a, s, l, d: torch.arange(s.item(), l.item(), d.item(), dtype=s.dtype),
    "Constant": lambda a: torch.from_numpy(numpy_helper.to_array(a["value"]).copy()),
}

# Inputs read on the host (shapes, axes, slice bounds), by op and position.
HOST_OPERANDS = {"Reshape": {1}, "Expand": {1}, "Slice": {1, 2, 3, 4}, "Unsqueeze": {1},
                 "Squeeze": {1}, "ReduceSum": {1}, "ReduceMean": {1}}


class TorchGraph:
    """An ONNX model as PyTorch calls for one set of input shapes on `device`."""

    def __init__(self, model_path, inputs, device):
        model = onnx.load(model_path)
        self.device, self.outputs = device, [o.name for o in model.graph.output]
        # Host values: initialisers and what needs no graph input (shapes
        # count as known). A first run on `inputs` finds them.
        self.host = {i.name: torch.from_numpy(numpy_helper.to_array(i).copy())
                     for i in model.graph.initializer}
        self.constants, self.steps = {}, []
        values = {k: torch.as_tensor(v, device=device) for k, v in inputs.items()}
        for node in model.graph.node:
            if node.op_type not in OPS:
                raise NotImplementedError(f"ONNX op {node.op_type} (node '{node.name}')")
            dynamic = node.op_type != "Shape" and any(n and n not in self.host for n in node.input)
            step = (node, _attrs(node))
            if dynamic:
                self.steps.append(step)
                values.update(self._run(step, values))
            else:
                self.host.update(self._run(step, {**self.host, **values}, on_host=True))
        self.constants = {k: v.to(device) for k, v in self.host.items()}

    def _run(self, step, values, on_host=False):
        node, a = step
        hosted = HOST_OPERANDS.get(node.op_type, ())
        args = []
        for i, n in enumerate(node.input):
            if not n:
                args.append(None)
            elif on_host or (i in hosted and n in self.host):
                args.append(self.host.get(n, values.get(n)))
            elif n in values:
                args.append(values[n])
            else:  # a host value as a device operand
                args.append(self.constants.get(n) if n in self.constants else self.host[n].to(self.device))
        out = OPS[node.op_type](a, *args)
        return dict(zip(node.output, out if isinstance(out, tuple) else (out,)))

    def forward(self, inputs):
        """The graph's outputs for `inputs` (device tensors of the shapes it was built for)."""
        values = dict(self.constants)
        values.update(inputs)
        for step in self.steps:
            values.update(self._run(step, values))
        return [values[o] for o in self.outputs]
