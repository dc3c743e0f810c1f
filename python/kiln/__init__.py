"""Python bindings for kiln: compile ONNX models and run the compiled library.

    import kiln
    kiln.compile("model.onnx", "model.so", batch=[1, 8, 64])
    m = kiln.load("model.so")
    outputs = m.run({"dense": dense, "ids": ids})   # {"click_prob": ndarray}
    bound = m.bind({"dense": dense, "ids": ids})     # validate once; each
    bound.run()                                      # run is one runtime call

The runtime is reached through its C ABI with ctypes; nothing is built here.
The kiln binary and libkiln_runtime.so are found through KILN_BIN and
KILN_RUNTIME_LIB, else in the build folder of the source tree this package
lives in, else on PATH / the loader's search path.
"""
import ctypes
import os
import shutil
import subprocess

import numpy as np

__all__ = ["Binding", "Error", "Model", "TensorInfo", "compile", "load"]

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_BUILD = os.path.join(_ROOT, "build")

# kiln_dtype codes of kiln/runtime.h. numpy has no bfloat16: ml_dtypes' is
# used where it is installed (a bf16 tensor is refused without it).
_DTYPES = {1: np.float32, 2: np.float64, 3: np.int64, 4: np.int32, 5: np.int8, 6: np.uint8,
           7: np.bool_, 8: np.int16, 9: np.uint16, 10: np.uint32, 11: np.uint64, 12: np.float16}
try:
    import ml_dtypes

    _DTYPES[13] = ml_dtypes.bfloat16
except ImportError:
    pass
_CODES = {np.dtype(v): k for k, v in _DTYPES.items()}


class Error(RuntimeError):
    """A kiln compile or runtime failure, carrying kiln's message."""


class _TensorInfo(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("dtype", ctypes.c_int), ("rank", ctypes.c_int32),
                ("shape", ctypes.POINTER(ctypes.c_int64)),
                ("index_bounds", ctypes.POINTER(ctypes.c_int64)), ("row_elements", ctypes.c_int64)]


class _Tensor(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("dtype", ctypes.c_int), ("rank", ctypes.c_int32),
                ("shape", ctypes.POINTER(ctypes.c_int64))]


def _find_binary():
    path = os.environ.get("KILN_BIN") or os.path.join(_BUILD, "bin", "kiln")
    if os.path.exists(path):
        return path
    found = shutil.which("kiln")
    if not found:
        raise Error("cannot find the kiln binary (build it, or set KILN_BIN)")
    return found


class _SessionOptions(ctypes.Structure):
    _fields_ = [("num_threads", ctypes.c_int32), ("arena", ctypes.c_void_p),
                ("arena_bytes", ctypes.c_uint64)]


class _ModelInfo(ctypes.Structure):
    _fields_ = [("abi_major", ctypes.c_uint32), ("abi_minor", ctypes.c_uint32),
                ("compiler_version", ctypes.c_char_p), ("target", ctypes.c_char_p),
                ("model_hash", ctypes.c_char_p), ("weights_bytes", ctypes.c_uint64)]


def _load_runtime():
    path = os.environ.get("KILN_RUNTIME_LIB") or os.path.join(_BUILD, "runtime", "libkiln_runtime.so")
    lib = ctypes.CDLL(path if os.path.exists(path) else "libkiln_runtime.so")
    p, i32, i64, u64 = ctypes.c_void_p, ctypes.c_int32, ctypes.c_int64, ctypes.c_uint64
    for name, res, args in [
        ("kiln_model_open", ctypes.c_int, [ctypes.c_char_p, ctypes.POINTER(p), ctypes.c_char_p, ctypes.c_size_t]),
        ("kiln_model_open_descriptor", ctypes.c_int,
         [ctypes.c_char_p, ctypes.POINTER(p), ctypes.c_char_p, ctypes.c_size_t]),
        ("kiln_model_get_info", None, [p, ctypes.POINTER(_ModelInfo)]),
        ("kiln_model_host_weights_bytes", u64, [p]),
        ("kiln_model_exact_buckets", i32, [p]),
        ("kiln_model_weights_path", ctypes.c_char_p, [p]),
        ("kiln_model_close", None, [p]),
        ("kiln_model_num_inputs", i32, [p]),
        ("kiln_model_num_outputs", i32, [p]),
        ("kiln_model_input", ctypes.c_int, [p, i32, ctypes.POINTER(_TensorInfo)]),
        ("kiln_model_output", ctypes.c_int, [p, i32, ctypes.POINTER(_TensorInfo)]),
        ("kiln_model_num_buckets", i32, [p]),
        ("kiln_model_bucket_batch", i64, [p, i32]),
        ("kiln_model_bucket_arena_bytes", u64, [p, i32]),
        ("kiln_model_bucket_arena_lower_bound", u64, [p, i32]),
        ("kiln_session_options_init", None, [ctypes.POINTER(_SessionOptions)]),
        ("kiln_session_create_with_options", ctypes.c_int,
         [p, ctypes.POINTER(_SessionOptions), ctypes.POINTER(p)]),
        ("kiln_session_num_threads", i32, [p]),
        ("kiln_session_destroy", None, [p]),
        ("kiln_session_error", ctypes.c_char_p, [p]),
        ("kiln_run", ctypes.c_int, [p, i64, ctypes.POINTER(_Tensor), i32, ctypes.POINTER(_Tensor), i32]),
        ("kiln_run_device", ctypes.c_int,
         [p, i64, ctypes.POINTER(_Tensor), i32, ctypes.POINTER(_Tensor), i32]),
        ("kiln_model_is_device", i32, [p]),
        ("kiln_last_error", ctypes.c_char_p, []),
    ]:
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = res, args
    return lib


_runtime = None


def _lib():
    global _runtime
    if _runtime is None:
        _runtime = _load_runtime()
    return _runtime


def compile(onnx_path, out_path, batch=(1,), target="cpu", freeze=None, quantize=(), report=None,
            extra_args=()):
    """Compiles `onnx_path` into the model library `out_path`; raises Error with
    the compiler's message on failure. `freeze` maps input names to paths of
    ONNX TensorProto files whose values are compiled in as constants.
    `quantize` lists `kiln compile --quantize` modes (e.g. ["int8",
    "int8-embeddings"]); a quantised compile checks its accuracy against the
    f32 model and writes the JSON report to `report` when given."""
    cmd = [_find_binary(), "compile", os.fspath(onnx_path), "-o", os.fspath(out_path),
           "--target", target, "--batch", ",".join(str(int(b)) for b in batch), "--quiet",
           *extra_args]
    if quantize:
        cmd += ["--quantize", ",".join(quantize)]
    if report:
        cmd += ["--report", os.fspath(report)]
    for name, path in (freeze or {}).items():
        cmd += ["--freeze", f"{name}={os.fspath(path)}"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise Error(proc.stderr.strip() or f"kiln compile exited with {proc.returncode}")
    return out_path


class TensorInfo:
    """Name, dtype and shape of a model input or output; shape[0] is None when
    it is the batch. index_bounds: for id inputs, an array of [lo, hi] per
    element of a batch row (None when the values are not checked)."""

    def __init__(self, info):
        self.name = info.name.decode()
        if info.dtype not in _DTYPES:
            raise Error(f"tensor '{self.name}' has kiln dtype {info.dtype}, which this binding "
                        "cannot hold (bf16 needs the ml_dtypes package)")
        self.dtype = np.dtype(_DTYPES[info.dtype])
        self.shape = tuple(None if info.shape[d] < 0 else info.shape[d] for d in range(info.rank))
        self.index_bounds = (np.ctypeslib.as_array(info.index_bounds, (info.row_elements, 2)).copy()
                             if info.index_bounds else None)

    def __repr__(self):
        return f"TensorInfo({self.name!r}, {self.dtype}, {self.shape})"


class Model:
    """A compiled model opened through the runtime, with one session of
    `num_threads` threads (the calling one included); with `descriptor_only`,
    its descriptor read on any machine (kiln_model_open_descriptor) and no
    session. weights_path is the weights file it maps, or None when its
    weights are embedded."""

    def __init__(self, path, num_threads=1, descriptor_only=False):
        lib = _lib()
        handle, error = ctypes.c_void_p(), ctypes.create_string_buffer(1024)
        opener = lib.kiln_model_open_descriptor if descriptor_only else lib.kiln_model_open
        if opener(os.fsencode(path), ctypes.byref(handle), error, len(error)) != 0:
            raise Error(error.value.decode())
        self._lib, self._model = lib, handle
        info = _ModelInfo()
        lib.kiln_model_get_info(handle, ctypes.byref(info))
        self.weights_bytes = info.weights_bytes
        self.host_weights_bytes = lib.kiln_model_host_weights_bytes(handle)
        # Rows depend on each other: runs only batches equal to a bucket.
        self.exact_buckets = bool(lib.kiln_model_exact_buckets(handle))
        path_bytes = lib.kiln_model_weights_path(handle)
        self.weights_path = path_bytes.decode() if path_bytes else None
        self.inputs = [self._info(lib.kiln_model_input, i) for i in range(lib.kiln_model_num_inputs(handle))]
        self.outputs = [self._info(lib.kiln_model_output, i) for i in range(lib.kiln_model_num_outputs(handle))]
        self.buckets = [lib.kiln_model_bucket_batch(handle, b) for b in range(lib.kiln_model_num_buckets(handle))]
        self.arena_bytes = [lib.kiln_model_bucket_arena_bytes(handle, b) for b in range(len(self.buckets))]
        self.arena_lower_bound = [lib.kiln_model_bucket_arena_lower_bound(handle, b)
                                  for b in range(len(self.buckets))]
        self._session = None
        if descriptor_only:
            return
        self._session = ctypes.c_void_p()
        options = _SessionOptions()
        lib.kiln_session_options_init(ctypes.byref(options))
        options.num_threads = num_threads
        if lib.kiln_session_create_with_options(handle, ctypes.byref(options), ctypes.byref(self._session)) != 0:
            self._session = None
            raise Error(f"cannot create a session: {lib.kiln_last_error().decode()}")
        self.is_device = bool(lib.kiln_model_is_device(handle))
        self.num_threads = lib.kiln_session_num_threads(self._session)

    def _info(self, fn, i):
        info = _TensorInfo()
        fn(self._model, i, ctypes.byref(info))
        return TensorInfo(info)

    def run(self, inputs, outputs=None):
        """Runs one request: `inputs` maps input names to arrays whose leading
        dim is the batch (any batch up to the largest bucket). Returns a dict of
        output arrays (`outputs`, when given, maps output names to arrays to
        fill instead); raises Error with the runtime's message."""
        return self.bind(inputs, outputs).run()

    def bind(self, inputs, outputs=None):
        """Binds arrays to this model's session once (as onnxruntime's
        IOBinding), so that each `Binding.run()` is a single call into the
        runtime; see Binding."""
        return Binding(self, inputs, outputs)

    def bind_device(self, inputs, outputs):
        """For a model compiled with --target cuda: binds device arrays (any
        object with `__cuda_array_interface__`, e.g. torch CUDA tensors),
        which `run()` then reads and writes in place through
        kiln_run_device. `outputs` maps every output name to such an array."""
        return Binding(self, inputs, outputs, device=True)

    def close(self):
        if getattr(self, "_session", None):
            self._lib.kiln_session_destroy(self._session)
            self._session = None
        if getattr(self, "_model", None):
            self._lib.kiln_model_close(self._model)
            self._model = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        self.close()


class Binding:
    """Input and output arrays bound to a model's session. Validation and the
    C structures are built once; `run()` then only calls the runtime, which
    reads the input arrays and fills the output arrays in place (write new
    values into the same input arrays between runs). `outputs` maps output
    names to those arrays. An input that is not a C-contiguous array is
    bound as a contiguous copy."""

    def __init__(self, model, inputs, outputs=None, device=False):
        missing = [i.name for i in model.inputs if i.name not in inputs]
        if missing:
            raise Error(f"missing inputs: {', '.join(missing)}")
        unknown = set(inputs) - {i.name for i in model.inputs}
        if unknown:
            raise Error(f"unknown inputs: {', '.join(sorted(unknown))}")
        arrays = [_DeviceArray(inputs[i.name]) if device else np.asarray(inputs[i.name], order="C")
                  for i in model.inputs]
        batch = next((a.shape[0] for a, i in zip(arrays, model.inputs) if i.shape and i.shape[0] is None), 1)
        self.outputs = {}
        for o in model.outputs:
            if device:
                if o.name not in (outputs or {}):
                    raise Error(f"output '{o.name}' needs a device array")
                self.outputs[o.name] = outputs[o.name]
                continue
            shape = tuple(batch if d is None else d for d in o.shape)
            given = (outputs or {}).get(o.name)
            if given is None:
                given = np.empty(shape, o.dtype)
            elif given.shape != shape or given.dtype != o.dtype or not given.flags.c_contiguous:
                raise Error(f"output '{o.name}' must be a C-contiguous {o.dtype} array of shape {shape}")
            self.outputs[o.name] = given
        self._keep = []

        def tensor(a):
            shape = (ctypes.c_int64 * max(a.ndim, 1))(*a.shape)
            self._keep.append(shape)
            data = a.pointer if device else a.ctypes.data
            return _Tensor(data, _CODES.get(a.dtype, 0), a.ndim, shape)

        outs = [_DeviceArray(a) for a in self.outputs.values()] if device else list(self.outputs.values())
        ins_c = (_Tensor * max(len(arrays), 1))(*[tensor(a) for a in arrays])
        outs_c = (_Tensor * max(len(outs), 1))(*[tensor(a) for a in outs])
        self._keep += [arrays, outs, ins_c, outs_c]
        self._model = model
        self._run = model._lib.kiln_run_device if device else model._lib.kiln_run
        self._args = (model._session, ctypes.c_int64(batch), ins_c, ctypes.c_int32(len(arrays)),
                      outs_c, ctypes.c_int32(len(outs)))

    def run(self):
        """Runs the bound request; returns `outputs`."""
        if self._run(*self._args) != 0:
            raise Error(self._model._lib.kiln_session_error(self._model._session).decode())
        return self.outputs


class _DeviceArray:
    """Pointer, dtype and shape of a C-contiguous device array, read from its
    `__cuda_array_interface__`."""

    def __init__(self, array):
        iface = getattr(array, "__cuda_array_interface__", None)
        if iface is None:
            raise Error(f"not a device array (no __cuda_array_interface__): {type(array).__name__}")
        if iface.get("strides") not in (None, ()) and iface["strides"] != _contiguous(iface):
            raise Error("device arrays must be C-contiguous")
        self.pointer, self.dtype = iface["data"][0], np.dtype(iface["typestr"])
        self.shape, self.ndim, self.array = tuple(iface["shape"]), len(iface["shape"]), array


def _contiguous(iface):
    size, strides = np.dtype(iface["typestr"]).itemsize, []
    for d in reversed(iface["shape"]):
        strides.insert(0, size)
        size *= d
    return tuple(strides)


def load(path, num_threads=1, descriptor_only=False):
    """Opens a compiled model .so with a session of `num_threads` threads (or,
    with `descriptor_only`, only its descriptor)."""
    return Model(path, num_threads, descriptor_only)
