"""Throw random, truncated and mutated bytes at every decoder entry point.

    python -m bench.fuzz_codes --n 100000

Targets (the inputs are split evenly between them):

* ``message``: ``unpack_message`` then ``decode_symbols``/``decode_raw`` by mode --
  what a device does with one received code;
* ``entropy_payload``: ``decode_symbols`` alone, without the check byte, to show how much
  the canonical-code check rejects by itself;
* ``raw_payload``: ``decode_raw`` alone;
* ``stream``: ``unpack_stream``;
* ``bundle_manifest``: ``load_part`` on a sub-bundle whose manifest.json is the input;
* ``bundle_coding``: ``load_part`` on a sub-bundle whose coding.json is the input, with the
  manifest re-hashed and the model id recomputed, so the input reaches the coding.json checks;
* ``image_file``: ``read_images`` on a file holding the input (PNG, 16-bit RGBA PNG, .npy, .npz).

The JSON targets mutate bytes half of the time and the parsed document the other half
(a value replaced by another type, an absurd number, deep nesting, a key deleted). The
bundle is synthetic (a real coding.json, placeholder model files): loading verifies hashes,
the model id and coding.json, but runs no model.

Every outcome is counted: ``decoded``, the name of the library error that refused
the input, or ``CRASH:<type>`` for anything else; the exit status is 1 on any crash.
A micro-benchmark of one 16-dimensional image (encode+frame, unframe+decode) follows.
Prints one JSON object shaped ``{"name", "description", "results"}``.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import shutil
import sys
import tempfile
import time
import traceback
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np

from compressor.bundle import load_part, model_id_of, sha256_hex
from compressor.coding.entropy import build_table, decode_raw, decode_symbols, encode_raw, encode_symbols
from compressor.errors import CompressorError
from compressor.io.files import encode_png, read_images
from compressor.wire import pack_message, pack_stream, unpack_message, unpack_stream

MODEL = bytes.fromhex("5eedc0de00000001")
DIMS = 16
STEP = 0.25
SCALES = np.array([0.02, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1, 1, 1, 1, 1, 1, 1, 1.2, 1.5])


def _symbols(n: int, seed: int) -> np.ndarray:
    """VAE-like latents: a few collapsed dimensions, most near unit scale."""
    rng = np.random.default_rng(seed)
    return np.rint(rng.normal(size=(n, DIMS)) * SCALES / STEP).astype(np.int64)


def _mutate(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    for _ in range(1 + rng.randrange(3)):
        kind = rng.randrange(5)
        if kind == 0 and out:
            out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
        elif kind == 1 and out:
            out[rng.randrange(len(out))] = rng.randrange(256)
        elif kind == 2:
            out.insert(rng.randrange(len(out) + 1), rng.randrange(256))
        elif kind == 3 and out:
            del out[rng.randrange(len(out))]
        elif out:
            i = rng.randrange(len(out))
            out[i : i + 4] = rng.randbytes(4)
    return bytes(out)


def _variant(valid: bytes, rng: random.Random, max_random: int) -> tuple[str, bytes]:
    kind = rng.choice(("random", "truncated", "mutated", "mutated"))
    if kind == "random":
        return kind, rng.randbytes(rng.randrange(max_random + 1))
    if kind == "truncated" and valid:
        return kind, valid[: rng.randrange(len(valid))]
    data = _mutate(valid, rng)
    return (kind, data) if data != valid else ("unchanged", data)


_ODD_VALUES = (None, True, -1, 0, 2**70, 1e308, -1e-9, 0.5, "", "x" * 300, [], {}, [[[[[]]]]], {"a": {"b": []}})


def _mutate_json(data: bytes, rng: random.Random) -> bytes:
    """Replace, delete or deepen one value of the parsed document."""
    doc = json.loads(data)
    holder, key = None, None
    node = doc
    for _ in range(rng.randrange(1, 6)):
        keys = list(node) if isinstance(node, dict) else list(range(len(node))) if isinstance(node, list) else []
        if not keys:
            break
        holder, key = node, rng.choice(keys)
        node = node[key]
    if holder is None:
        return json.dumps(rng.choice(_ODD_VALUES)).encode()
    choice = rng.randrange(4)
    if choice == 0 and isinstance(holder, dict):
        del holder[key]
    elif choice == 1:  # nesting deeper than json.dumps can write: spliced in as text
        depth = rng.choice((10, 40, 5000))
        holder[key] = "@DEEP@"
        return json.dumps(doc).replace('"@DEEP@"', "[" * depth + "]" * depth).encode()
    else:
        holder[key] = rng.choice(_ODD_VALUES)
    return json.dumps(doc).encode()


def _canonical(obj) -> bytes:
    return (json.dumps(obj, sort_keys=True, separators=(",", ":")) + "\n").encode()


class _SyntheticPart:
    """A decoder sub-bundle on disk: real coding.json, placeholder model bytes, consistent hashes."""

    def __init__(self, root: Path, table):
        self.root = root
        model = bytes(range(256)) * 8
        (root / "decoder_int8_b1.tflite").write_bytes(model)
        lossless = {"p1_freq": [1000] * 256, "runtime": "litert", "precision": "int8", "step_index": 1}
        coding = {"precision": 16, "steps": [0.1, 0.25], "tables": [table.to_json()] * 2, "default_step_index": 1}
        self.coding = _canonical(coding | {"lossless": lossless})
        spec = {"name": "latent", "shape": [1, DIMS], "dtype": "int8", "quantization": {"scale": 0.05, "zero_point": 0}}
        entry = {"path": "decoder_int8_b1.tflite", "role": "decoder", "format": "tflite", "precision": "int8"}
        entry |= {"batch": 1, "input": spec, "output": spec | {"name": "probs"}, "sha256": sha256_hex(model)}
        self.manifest = {
            "format": "vae-compressor-bundle",
            "format_version": 1,
            "role": "decoder",
            "image_shape": [28, 28],
            "latent_dim": DIMS,
            "binarize": True,
            "files": [entry | {"bytes": len(model)}],
            "decoder_files": {entry["path"]: entry["sha256"]},
        }
        self.manifest_bytes = self._manifest_for(self.coding)

    def _manifest_for(self, coding: bytes) -> bytes:
        m = dict(self.manifest)
        m["coding"] = {"path": "coding.json", "sha256": sha256_hex(coding), "bytes": len(coding)}
        m["model_id"] = model_id_of(m["coding"]["sha256"], m["decoder_files"])
        return _canonical(m)

    def load_manifest(self, data: bytes) -> None:
        (self.root / "coding.json").write_bytes(self.coding)
        (self.root / "manifest.json").write_bytes(data)
        load_part(self.root)

    def load_coding(self, data: bytes) -> None:
        (self.root / "coding.json").write_bytes(data)
        (self.root / "manifest.json").write_bytes(self._manifest_for(data))
        load_part(self.root)


def _image_seeds() -> list[bytes]:
    from PIL import Image

    rng = np.random.default_rng(5)
    digit = (rng.random((28, 28)) > 0.7).astype(np.uint8) * 255
    rgba16 = io.BytesIO()
    Image.fromarray(rng.integers(0, 65535, (8, 8), dtype=np.uint16)).save(rgba16, "PNG")
    npy = io.BytesIO()
    np.save(npy, digit[None])
    npz = io.BytesIO()
    with zipfile.ZipFile(npz, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("images.npy", npy.getvalue())
    return [encode_png(digit), rgba16.getvalue(), npy.getvalue(), npz.getvalue()]


def _read_image_file(folder: Path, data: bytes) -> None:
    suffix = ".npy" if data[:6] == b"\x93NUMPY" else ".npz" if data[:2] == b"PK" else ".png"
    path = folder / f"input{suffix}"
    path.write_bytes(data)
    read_images([path])


def fuzz(n: int, seed: int) -> tuple[dict, list[str]]:
    table = build_table(_symbols(20000, seed=1))
    rng = random.Random(seed)
    images = _symbols(500, seed=2)
    entropy_codes = [encode_symbols(row, table) for row in images]
    raw_codes = [encode_raw(row, table) for row in images]
    messages = [pack_message(MODEL, "entropy", 3, c) for c in entropy_codes]
    messages += [pack_message(MODEL, "raw", 3, c) for c in raw_codes]
    streams = [
        pack_stream(MODEL, "entropy", 3, entropy_codes[i : i + 8], names=[f"{j}.png" for j in range(8)])
        for i in range(0, 400, 8)
    ]

    def message(data: bytes) -> None:
        header, payload = unpack_message(MODEL, data)
        (decode_symbols if header.mode == "entropy" else decode_raw)(payload, table)

    scratch = Path(tempfile.mkdtemp(prefix="fuzz-"))
    (scratch / "part").mkdir()
    part = _SyntheticPart(scratch / "part", table)
    targets = {
        "message": (message, messages, 12),
        "entropy_payload": (lambda d: decode_symbols(d, table), entropy_codes, 12),
        "raw_payload": (lambda d: decode_raw(d, table), raw_codes, 12),
        "stream": (unpack_stream, streams, 120),
        "bundle_manifest": (part.load_manifest, [part.manifest_bytes], 200),
        "bundle_coding": (part.load_coding, [part.coding], 200),
        "image_file": (lambda d: _read_image_file(scratch, d), _image_seeds(), 200),
    }
    results: dict = {}
    crashes: list[str] = []
    per_target = -(-n // len(targets))
    for name, (call, valid, max_random) in targets.items():
        outcomes: dict[str, Counter] = {}
        start = time.perf_counter()
        for _ in range(per_target):
            kind, data = _variant(rng.choice(valid), rng, max_random)
            if name.startswith("bundle") and rng.random() < 0.5:
                kind, data = "json-mutated", _mutate_json(rng.choice(valid), rng)
            try:
                call(data)
                outcome = "decoded"
            except CompressorError as err:
                outcome = type(err).__name__
            except Exception as err:  # noqa: BLE001 - counting them is the point
                outcome = f"CRASH:{type(err).__name__}"
                if len(crashes) < 5:
                    crashes.append(f"{name} {data.hex()}\n{traceback.format_exc()}")
            outcomes.setdefault(kind, Counter())[outcome] += 1
        elapsed = time.perf_counter() - start
        results[name] = {
            "inputs": per_target,
            "seconds": round(elapsed, 3),
            "us_per_input": round(elapsed / per_target * 1e6, 2),
            "outcomes": {kind: dict(sorted(c.items())) for kind, c in sorted(outcomes.items())},
        }
    shutil.rmtree(scratch, ignore_errors=True)
    return results, crashes


def _best_us(fn, items: list, repeat: int = 7) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for item in items:
            fn(item)
        best = min(best, time.perf_counter() - start)
    return round(best / len(items) * 1e6, 2)


def micro_benchmark() -> dict:
    """Per-image microseconds, best of 7 passes over 2,000 different images."""
    table = build_table(_symbols(20000, seed=1))
    rows = _symbols(2000, seed=3).tolist()
    codes = [encode_symbols(r, table) for r in rows]
    messages = [pack_message(MODEL, "entropy", 3, c) for c in codes]
    raws = [encode_raw(r, table) for r in rows]
    return {
        "mean_payload_bytes": round(float(np.mean([len(c) for c in codes])), 3),
        "raw_payload_bytes": len(raws[0]),
        "encode_symbols_us": _best_us(lambda r: encode_symbols(r, table), rows),
        "decode_symbols_us": _best_us(lambda c: decode_symbols(c, table), codes),
        "encode_and_frame_us": _best_us(lambda r: pack_message(MODEL, "entropy", 3, encode_symbols(r, table)), rows),
        "unframe_and_decode_us": _best_us(lambda m: decode_symbols(unpack_message(MODEL, m)[1], table), messages),
        "encode_raw_us": _best_us(lambda r: encode_raw(r, table), rows),
        "decode_raw_us": _best_us(lambda c: decode_raw(c, table), raws),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=100_000, help="total inputs, split between targets")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-bench", action="store_true", help="skip the micro-benchmark")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    fuzz_results, crashes = fuzz(args.n, args.seed)
    report = {
        "name": "fuzz_codes",
        "description": f"{args.n} random/truncated/mutated inputs, seed {args.seed}; python {sys.version.split()[0]}",
        "results": {"fuzz": fuzz_results, "fuzz_seconds": round(time.perf_counter() - start, 2)},
    }
    if not args.no_bench:
        report["results"]["micro_benchmark"] = micro_benchmark()
    print(json.dumps(report, indent=2))
    for crash in crashes:
        print(crash, file=sys.stderr)
    return 1 if crashes else 0


if __name__ == "__main__":
    sys.exit(main())
