"""One half of the model, loaded in one runtime and precision, driven with float arrays.

:class:`Network` hides what differs between files: int8 TFLite files take and give int8
tensors (quantized here with the scale/zero-point from the manifest), fixed-batch files need
inputs cut into batches of exactly that size (XNNPACK only takes TRANSPOSE_CONV with static
shapes, which makes fixed-batch decoders ~3x faster), and ONNX files take any batch.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from compressor import limits
from compressor.bundle import FileEntry, Part
from compressor.errors import ManifestError, UsageError
from compressor.runtime import sessions as runtimes

_MAX_LEVEL_TABLE = 1 << 16  # symbols per step table; a finer step falls back to arithmetic


def check_tensors(part: Part, entry: FileEntry, session: runtimes.Session) -> None:
    """Refuse a model file whose tensors differ from what its manifest entry says.

    Everything here (batching, int8 scale and zero point) trusts the manifest, and a
    self-consistent bundle (every hash and the model id recomputed) may still hold a model
    file of another bundle or role: run, it raises deep in the runtime (a traceback), or, with
    equal shapes but other quantization, decodes wrong pixels without an error.
    """
    for what, listed, actual in (("input", entry.input, session.input), ("output", entry.output, session.output)):
        if not (listed.shape == actual.shape and listed.quantized_alike(actual)):
            raise ManifestError(
                f"{part.root}/{entry.path}: the model's {what} is {actual.describe()}, but the manifest says "
                f"{listed.describe()}: a model file from another bundle or role; re-export or re-copy the bundle"
            )


class Network:
    """Runs ``part`` (encoder or decoder) with ``runtime`` ('auto', 'litert', 'tflite', 'onnx').

    ``batch='all'`` lets it pick among the part's fixed-batch files per call; an int (or None
    for a dynamic-batch file) pins one file.
    """

    def __init__(
        self,
        part: Part,
        *,
        runtime: str = "auto",
        precision: str = "int8",
        threads: int | None = 1,
        providers: list[str] | None = None,
        batch: int | None | str = "all",
    ):
        if threads is not None and (
            not isinstance(threads, numbers.Integral)
            or isinstance(threads, bool)
            or not 1 <= threads <= limits.MAX_THREADS
        ):
            raise UsageError(
                f"threads must be a whole number 1..{limits.MAX_THREADS} (threads=, --threads), got {threads!r}"
            )
        self.part = part
        self.runtime = runtimes.resolve(runtime)
        self.precision = precision
        self.file_format = runtimes.FILE_FORMAT[self.runtime]
        self.files: list[FileEntry] = part.select(self.file_format, precision)
        if batch != "all":  # pin one file, e.g. to measure or validate it alone
            self.files = [f for f in self.files if f.batch == batch]
            if not self.files:
                raise ValueError(f"no {precision} {self.file_format} {part.role} file with batch {batch}")
        self._threads, self._providers = (None if threads is None else int(threads)), providers
        self._sessions: dict[int | None, runtimes.Session] = {}
        self.session(self.files[0])  # load (and verify) the smallest batch now: fail early
        # Constants of the per-call conversions, read once (the everyday path is batch 1).
        inp, out = self.input_spec, self.output_spec
        self._in_int8, self._in_scale, self._in_zp = inp.dtype == "int8", float(inp.scale), float(inp.zero_point)
        self._out_int8 = out.dtype == "int8"
        # int8 level v -> (float32(v) - zero_point) * scale, indexed by v itself (negative v wraps)
        levels = np.arange(256, dtype=np.int16).astype(np.int8).astype(np.float32)
        self._out_table = (levels - out.zero_point) * np.float32(out.scale)
        self._single = next((f for f in self.files if f.batch in (1, None)), None)
        self._single_session: runtimes.Session | None = None
        self._level_tables: dict[float, tuple[int, np.ndarray]] = {}

    def session(self, entry: FileEntry) -> runtimes.Session:
        if entry.batch not in self._sessions:
            session = runtimes.open_session(
                self.part.read(entry), entry.format, self.runtime, threads=self._threads, providers=self._providers
            )
            check_tensors(self.part, entry, session)
            self._sessions[entry.batch] = session
        return self._sessions[entry.batch]

    @property
    def threads(self) -> int | None:
        return self._threads

    @property
    def input_spec(self) -> runtimes.TensorSpec:
        return self.files[0].input

    @property
    def output_spec(self) -> runtimes.TensorSpec:
        return self.files[0].output

    @property
    def output_level_values(self) -> np.ndarray:
        """float32 (256,): the dequantized value of each int8 output level, indexed by the level
        itself (a negative level wraps), computed once at load. Shared so that the batch-1
        decoder turns levels into probabilities with :meth:`dequantize_output`'s very table.
        Read only; do not modify."""
        return self._out_table

    def quantize_input(self, x: np.ndarray) -> np.ndarray:
        """Float input -> the file's input dtype (int8 via the manifest's scale/zero-point)."""
        if not self._in_int8:
            return np.ascontiguousarray(x, dtype=np.float32)
        q = np.rint(np.asarray(x, np.float64) / self._in_scale)
        q += self._in_zp
        np.minimum(q, 127.0, out=q)
        np.maximum(q, -128.0, out=q)
        return q.astype(np.int8)

    def quantize_symbols(self, symbols: np.ndarray, step: float) -> np.ndarray:
        """``quantize_input(symbols * step)`` for integer symbols, the same numbers, by table.

        Per step, the int8 level of every symbol up to where the levels saturate is computed
        once with :meth:`quantize_input` itself; symbols beyond are clamped to the table's
        ends, whose levels are already -128 and 127. The decoder's everyday input.
        """
        table = self._level_tables.get(step) if self._in_int8 else None
        if table is None:
            table = self._level_table(step) if self._in_int8 else None
            if table is None:
                return self.quantize_input(np.asarray(symbols, np.float64) * step)
        lo, levels = table
        return np.take(levels, np.asarray(symbols, np.int64) - lo, mode="clip")

    def _level_table(self, step: float) -> tuple[int, np.ndarray] | None:
        scale, zp = self._in_scale, self._in_zp
        if not (step > 0 and scale > 0):
            return None
        lo = math.floor((-128.5 - zp) * scale / step) - 1
        hi = math.ceil((127.5 - zp) * scale / step) + 1
        if hi - lo > _MAX_LEVEL_TABLE:
            return None
        levels = self.quantize_input(np.arange(lo, hi + 1, dtype=np.float64) * step)
        if levels[0] != -128 or levels[-1] != 127:  # not saturated at the ends: no table
            return None
        self._level_tables[step] = (lo, levels)
        return lo, levels

    def dequantize_output(self, y: np.ndarray) -> np.ndarray:
        if not self._out_int8:
            return y.astype(np.float32, copy=False)
        return self._out_table[y]  # the same float32 arithmetic, done once per level at load

    def run(self, x: np.ndarray) -> np.ndarray:
        """Float in, float out, any batch size."""
        return self.dequantize_output(self.run_native(self.quantize_input(x)))

    def run_native(self, x: np.ndarray) -> np.ndarray:
        """Input already in the file's dtype; output in the file's dtype (int8 stays int8)."""
        n = len(x)
        if n == 1 and self._single is not None:  # the everyday path: no planning, padding or copies
            return (self._single_session or self.single_session()).run(np.ascontiguousarray(x))
        if n == 0:
            raise ValueError("empty batch")
        plan = self._plan(n)
        outs, pos = [], 0
        for entry, count in plan:
            sess = self.session(entry)
            b = entry.batch
            if b is None:
                outs.append(sess.run(x[pos : pos + count]))
                pos += count
                continue
            for _ in range(count):
                chunk = x[pos : pos + b]
                real = len(chunk)
                if real < b:  # pad the last chunk of a fixed-batch file
                    chunk = np.concatenate([chunk, np.repeat(chunk[-1:], b - real, axis=0)])
                out = sess.run(np.ascontiguousarray(chunk))  # a fresh array (get_tensor copies)
                outs.append(out if real == b else out[:real])
                pos += real
        return np.concatenate(outs) if len(outs) > 1 else outs[0]

    def single_session(self) -> runtimes.Session | None:
        """The session that runs one image as it is (a batch-1 or dynamic-batch file), or None."""
        if self._single_session is None and self._single is not None:
            self._single_session = self.session(self._single)
        return self._single_session

    def levels(self, latents: np.ndarray) -> np.ndarray:
        """The int8 output levels for ``latents``, always from the smallest-batch file, one image
        per invoke: the canonical levels that lossless codes are predicted with.

        Batch-1 and batch-64 int8 files are converted and calibrated separately and may differ
        in a few levels, so a level must not depend on how images happen to be grouped in a
        call; the sender and the receiver both run this.
        """
        entry = min(self.files, key=lambda f: f.batch or 0)
        sess = self.session(entry)
        x = self.quantize_input(latents)
        if entry.batch is None:
            return sess.run(x)
        out = [sess.run(np.ascontiguousarray(x[i : i + 1]))[:1].copy() for i in range(len(x))]
        return np.concatenate(out) if len(out) > 1 else out[0]

    def _plan(self, n: int) -> list[tuple[FileEntry, int]]:
        """Which file runs how many times: the large batch while at least half full, batch 1 after."""
        dynamic = [f for f in self.files if f.batch is None]
        if dynamic:
            return [(dynamic[0], n)]
        plan, left = [], n
        for entry in sorted(self.files, key=lambda f: -f.batch):
            b = entry.batch
            if b == 1:
                if left:
                    plan.append((entry, left))
                left = 0
                break
            full, rest = divmod(left, b)
            if rest * 2 >= b:
                full, rest = full + 1, 0
            if full:
                plan.append((entry, full))
            left = rest
        if left:  # no batch-1 file: pad into the smallest batch
            smallest = min(self.files, key=lambda f: f.batch)
            plan.append((smallest, -(-left // smallest.batch)))
        return plan
