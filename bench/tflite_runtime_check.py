"""Do the bundle's .tflite files load and agree in tflite-runtime 2.14?

    python -m bench.tflite_runtime_check BUNDLE IMAGES.npy REFERENCE.npz --runtime litert --write-reference
    python -m bench.tflite_runtime_check BUNDLE IMAGES.npy REFERENCE.npz      # in the tflite-runtime venv

tflite-runtime 2.14 is the last release and needs its own environment with numpy<2,
so this script runs there and compares against reference outputs that an ai-edge-litert
environment wrote (``--write-reference``): one JSON line per file with load status,
output shape, max abs difference (float files) or the fraction of differing int8 values.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from compressor.bundle import load_part
from compressor.runtime import sessions as runtimes
from compressor.runtime.network import Network


def outputs(bundle: str, images: np.ndarray, runtime: str) -> dict[str, np.ndarray]:
    x = (images.astype(np.float32) / 255.0)[..., None]
    out = {}
    for role in ("encoder", "decoder"):
        part = load_part(bundle, role)
        for f in part.files:
            if f.format != "tflite":
                continue
            net = Network(part, runtime=runtime, precision=f.precision, batch=f.batch)
            inp = x if role == "encoder" else np.linspace(-2, 2, len(x) * part.latent_dim).reshape(len(x), -1)
            out[f.path] = net.run_native(net.quantize_input(inp))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("bundle")
    p.add_argument("images")
    p.add_argument("reference", help=".npz of reference outputs (written first with --write-reference)")
    p.add_argument("--runtime", default="tflite", help="runtime to run the files in (default: %(default)s)")
    p.add_argument("--write-reference", action="store_true", help="write REFERENCE with this runtime instead")
    args = p.parse_args(argv)
    images = np.load(args.images)[:64]
    got = outputs(args.bundle, images, args.runtime)
    if args.write_reference:
        np.savez(args.reference, **got)
        return 0
    ref = np.load(args.reference)
    version = runtimes.available().get(args.runtime)
    for name, y in got.items():
        r = ref[name]
        row = {"file": name, "runtime": args.runtime, "version": version, "shape": list(y.shape)}
        if y.dtype == np.int8:
            row["int8_values_differing_%"] = round(100 * float(np.mean(y != r)), 4)
            row["max_int8_step_difference"] = int(np.max(np.abs(y.astype(int) - r.astype(int))))
        else:
            row["max_abs_diff"] = float(np.max(np.abs(y - r)))
        print(json.dumps(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
