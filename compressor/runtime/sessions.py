"""Run one model file in one inference runtime, with no TensorFlow.

Three runtimes are supported, tried in this order by ``runtime="auto"``:

- ``litert``: ai-edge-litert, the maintained TFLite runtime (x86_64 and aarch64 wheels);
- ``tflite``: tflite-runtime 2.14, the last release, still common on Raspberry Pi images
  (needs an environment with numpy<2);
- ``onnx``:  onnxruntime (CPU, or CUDA/TensorRT execution providers when present).

Models are handed over as bytes that :mod:`compressor.bundle` already verified, never as
paths, so the file that was hashed is the file that runs.
"""

from __future__ import annotations

import importlib
import math
import threading
from dataclasses import dataclass

import numpy as np

from compressor.errors import RuntimeUnavailableError
from compressor.runtime.quiet import quiet

RUNTIMES = ("litert", "tflite", "onnx")
FILE_FORMAT = {"litert": "tflite", "tflite": "tflite", "onnx": "onnx"}
_MODULES = {"litert": "ai_edge_litert.interpreter", "tflite": "tflite_runtime.interpreter", "onnx": "onnxruntime"}
DISTRIBUTIONS = {"litert": "ai-edge-litert", "tflite": "tflite-runtime", "onnx": "onnxruntime"}
#: The command that installs each runtime on a device (the one home of these hints).
INSTALL = {
    "litert": "pip install 'ai-edge-litert==2.3.0'",
    "tflite": "pip install 'tflite-runtime==2.14.0' 'numpy<2' (in its own venv)",
    "onnx": "pip install 'onnxruntime==1.32.0'",
}


@dataclass(frozen=True)
class TensorSpec:
    """Name, shape (batch first; None where dynamic), dtype and affine int8 parameters."""

    name: str
    shape: tuple
    dtype: str
    scale: float = 0.0
    zero_point: int = 0

    @property
    def shape_text(self) -> str:
        """``64x16``, ``?x28x28x1`` (``?`` a dynamic dimension), as error messages show a shape."""
        return "x".join("?" if s is None else str(s) for s in self.shape)

    def quantized_alike(self, other: TensorSpec) -> bool:
        """Same dtype and, for int8/uint8, the same zero point and scale (to 1e-6 relative: the
        export calibrates each batch file on its own, and their scales agree to ~1e-7)."""
        if self.dtype != other.dtype:
            return False
        if self.dtype not in ("int8", "uint8"):
            return True
        return self.zero_point == other.zero_point and math.isclose(self.scale, other.scale, rel_tol=1e-6)

    def describe(self) -> str:
        """``int8 1x16 (scale 0.032, zero point -1)``, as error messages show a tensor."""
        quant = f" (scale {self.scale:g}, zero point {self.zero_point})" if self.dtype in ("int8", "uint8") else ""
        return f"{self.dtype} {self.shape_text}{quant}"


def _import(runtime: str):
    try:
        return importlib.import_module(_MODULES[runtime])
    except ImportError:
        return None
    except Exception:  # a broken install (e.g. tflite-runtime beside numpy 2) must not kill "auto"
        return None


def available() -> dict[str, str | None]:
    """{runtime: version or None}, without raising for runtimes that are not installed."""
    out = {}
    for name in RUNTIMES:
        mod = _import(name)
        out[name] = _version(name, mod) if mod is not None else None
    return out


def _version(name: str, mod) -> str:
    if name == "onnx":
        return mod.__version__
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(DISTRIBUTIONS[name])
    except PackageNotFoundError:  # pragma: no cover
        return "unknown"


def resolve(runtime: str = "auto") -> str:
    """The runtime to use: the requested one if installed, or the first installed for 'auto'."""
    if runtime not in RUNTIMES + ("auto",):
        raise ValueError(f"unknown runtime {runtime!r}; choose one of auto, {', '.join(RUNTIMES)}")
    candidates = RUNTIMES if runtime == "auto" else (runtime,)
    for name in candidates:
        if _import(name) is not None:
            return name
    hint = "; or ".join(INSTALL[n] for n in candidates)
    raise RuntimeUnavailableError(f"no inference runtime installed for {runtime!r}: {hint}")


class Session:
    """One loaded model. ``run`` takes exactly the input dtype and, for fixed-batch files, the batch."""

    runtime: str
    input: TensorSpec
    output: TensorSpec

    @property
    def batch(self) -> int | None:
        return self.input.shape[0]

    def run(self, x: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError


class TFLiteSession(Session):
    def __init__(self, model: bytes, runtime: str, threads: int | None):
        mod = _import(runtime)
        if mod is None:
            raise RuntimeUnavailableError(f"{DISTRIBUTIONS[runtime]} is not installed")
        self.runtime = runtime
        self._model = model  # the interpreter reads from this buffer; keep it alive
        try:
            with quiet():  # "INFO: Created TensorFlow Lite XNNPACK delegate for CPU."
                self._it = mod.Interpreter(model_content=model, num_threads=threads)
                self._it.allocate_tensors()
        except (ValueError, RuntimeError) as e:
            raise RuntimeUnavailableError(f"{runtime} could not load this model: {e}") from e
        (inp,), (out,) = self._it.get_input_details(), self._it.get_output_details()
        self._in, self._out = inp["index"], out["index"]
        self.input = _tflite_spec(inp)
        self.output = _tflite_spec(out)
        self._calls = _direct_calls(self._it)
        self._lock = threading.Lock()

    def run(self, x: np.ndarray) -> np.ndarray:
        """One set/invoke/get, under this session's lock: an interpreter has one input and one
        output buffer and its invoke lets other threads run, so two threads sharing an Encoder or
        Decoder would otherwise read each other's outputs (wrong images, no error; a review saw
        49 in 1,000). Uncontended, the lock costs ~0.1 µs."""
        with self._lock:
            if self._calls is not None:
                set_tensor, invoke, get_tensor = self._calls
                set_tensor(self._in, x)
                invoke()
                return get_tensor(self._out, 0)
            self._it.set_tensor(self._in, x)
            self._it.invoke()
            return self._it.get_tensor(self._out)


def _direct_calls(interpreter):
    """The native SetTensor/Invoke/GetTensor under the Python Interpreter, or None.

    Interpreter.set_tensor/invoke/get_tensor only forward to these, but ``invoke`` first
    checks that no numpy view of the interpreter's memory is alive (views from ``tensor()``
    could dangle if it reallocated). This session never takes views: SetTensor copies the
    input in, GetTensor copies the output out, and tensors are allocated once. Skipping the
    wrappers saves ~2 µs per invoke, a few % of the batch-1 decoder (ai-edge-litert and
    tflite-runtime 2.14 both have them; anything else keeps the public calls).
    """
    native = getattr(interpreter, "_interpreter", None)
    calls = tuple(getattr(native, name, None) for name in ("SetTensor", "Invoke", "GetTensor"))
    return calls if all(callable(c) for c in calls) else None


def _tflite_spec(d: dict) -> TensorSpec:
    sig = d.get("shape_signature", d["shape"])
    shape = tuple(None if int(s) < 0 else int(s) for s in sig)
    scale, zp = d["quantization"]
    return TensorSpec(d["name"], shape, np.dtype(d["dtype"]).name, float(scale), int(zp))


class OnnxSession(Session):
    def __init__(self, model: bytes, threads: int | None, providers: list[str] | None):
        ort = _import("onnx")
        if ort is None:
            raise RuntimeUnavailableError(f"onnxruntime is not installed: {INSTALL['onnx']}")
        self.runtime = "onnx"
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or 0
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        wanted = providers or ["CPUExecutionProvider"]
        have = ort.get_available_providers()
        missing = [p for p in wanted if p not in have]
        if missing:
            raise RuntimeUnavailableError(f"onnxruntime lacks execution provider(s) {missing}; available: {have}")
        try:
            self._sess = ort.InferenceSession(model, opts, providers=wanted)
        except Exception as e:  # onnxruntime raises its own exception types
            raise RuntimeUnavailableError(f"onnxruntime could not load this model: {e}") from e
        self.providers = self._sess.get_providers()
        (inp,), (out,) = self._sess.get_inputs(), self._sess.get_outputs()
        self.input = _onnx_spec(inp)
        self.output = _onnx_spec(out)

    def run(self, x: np.ndarray) -> np.ndarray:
        return self._sess.run([self.output.name], {self.input.name: x})[0]


_ONNX_DTYPES = {"tensor(float)": "float32", "tensor(int8)": "int8", "tensor(uint8)": "uint8"}


def _onnx_spec(arg) -> TensorSpec:
    shape = tuple(d if isinstance(d, int) else None for d in arg.shape)
    return TensorSpec(arg.name, shape, _ONNX_DTYPES.get(arg.type, arg.type))


def open_session(
    model: bytes, file_format: str, runtime: str, *, threads: int | None = 1, providers: list[str] | None = None
) -> Session:
    """Load ``model`` bytes of ``file_format`` ('tflite' or 'onnx') in ``runtime``."""
    if FILE_FORMAT.get(runtime) != file_format:
        raise RuntimeUnavailableError(f"runtime {runtime!r} cannot run {file_format} files")
    if file_format == "tflite":
        return TFLiteSession(model, runtime, threads)
    return OnnxSession(model, threads, providers)
