"""Decode a stream on the "device" and compare with the original images.

    python -m bench.decode_check CODES.bin BUNDLE/decoder ORIGINALS.npy [--runtime auto]

Prints one JSON object: runtime, images, bytes per image (all framing included), pixel
error against the originals (threshold 0.5), and whether TensorFlow was imported.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np

from compressor import Decoder
from compressor.metrics import pixel_error


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("codes")
    p.add_argument("bundle")
    p.add_argument("originals")
    p.add_argument("--runtime", default="auto")
    args = p.parse_args(argv)
    data = Path(args.codes).read_bytes()
    dec = Decoder.load(args.bundle, runtime=args.runtime)
    probs = dec.decompress(data)
    x = np.load(args.originals)
    x = x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x
    x = x.reshape(probs.shape)
    print(
        json.dumps(
            {
                "runtime": dec.runtime,
                "images": len(probs),
                "bytes_per_image": round(len(data) / len(probs), 3),
                "pixel_error_%": round(100 * pixel_error(x, probs), 3),
                "tensorflow_installed": importlib.util.find_spec("tensorflow") is not None,
                "tensorflow_imported": "tensorflow" in sys.modules,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
