"""Decode on the device: codes -> symbols and probabilities, saved for the host to compare.

    python3.11 device_decode.py CODES.npz DECODER_DIR OUT.npz RUNTIME:PRECISION[:COUNT] [...]

Each RUNTIME:PRECISION decodes the stream (its first COUNT images if given) into ``probs_RUNTIME_PRECISION``;
``lossless:RUNTIME:PRECISION[:COUNT]`` decodes the lossless messages into ``lossless_RUNTIME_PRECISION``,
``context:...`` the binary residual (mode 3) messages into ``context_RUNTIME_PRECISION``, and any
other ``KEY:RUNTIME:PRECISION`` the messages stored under ``KEY`` (grayscale residual codes).

Meant for the emulated aarch64 interpreter, with only ``compressor/`` and the edge wheels on
its path. TensorFlow imports are blocked (as in bench/tf_free.py) so a pass proves the
device side needs none. A runtime that cannot load the files is recorded, not fatal: the
host decides what that means. Prints one JSON object.
"""

import sys


class _Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("tensorflow", "keras", "tf2onnx", "export"):
            raise ImportError("not available on the device side: " + name)


sys.meta_path.insert(0, _Block())

import json  # noqa: E402
import platform  # noqa: E402

import numpy as np  # noqa: E402

from compressor import Decoder  # noqa: E402
from compressor.runtime import sessions as runtimes  # noqa: E402


def _split(codes, key: str) -> list[bytes]:
    flat, ends = codes[key].tobytes(), np.cumsum(codes[key + "_lengths"]).tolist()
    return [flat[a:b] for a, b in zip([0] + ends[:-1], ends)]


def main(argv) -> int:
    codes_path, decoder, out_path, *combos = argv
    codes = np.load(codes_path)
    stream = codes["stream"].tobytes()
    messages = _split(codes, "messages")
    arrays, results = {}, {}
    for combo in combos:
        first = combo.split(":")[0]
        kind = first if first not in ("litert", "onnx", "tflite") else None  # a key of pixel-exact messages
        runtime, precision, *count = combo.removeprefix(f"{kind}:").split(":")
        try:
            dec = Decoder.load(decoder, runtime=runtime, precision=precision)
            if kind:
                exact = dec.decompress(_split(codes, kind)[: int(count[0]) if count else None])
                arrays[f"{kind}_{runtime}_{precision}"] = exact
                results[combo] = "ok"
                continue
            if not arrays:  # symbols depend on no runtime: read them once
                from_stream, from_messages = dec.read(stream), dec.read(messages)
                arrays.update(stream_symbols=from_stream.symbols, message_symbols=from_messages.symbols)
                arrays.update(steps=from_stream.steps)
            n = int(count[0]) if count else len(arrays["steps"])
            symbols, steps = arrays["stream_symbols"][:n], arrays["steps"][:n]
            arrays[f"probs_{runtime}_{precision}"] = dec.decode_symbols(symbols, steps)
            results[f"{runtime}:{precision}"] = "ok"
        except Exception as e:  # recorded for the host: which runtime fails, and how
            results[f"{runtime}:{precision}"] = f"{type(e).__name__}: {e}"
    np.savez(out_path, **arrays)
    with open("/proc/cpuinfo") as f:
        model = [line.split(":", 1)[1].strip() for line in f if line.startswith("Model")]
    info = {
        "machine": platform.machine(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "runtimes": runtimes.available(),
        "results": results,
        "cpuinfo_model": model[0] if model else None,
        "tensorflow_imported": "tensorflow" in sys.modules,
    }
    print(json.dumps(info))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
