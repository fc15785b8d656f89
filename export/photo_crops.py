"""Natural photo crops to learn the spatial residual table set from, offline.

The digit-trained network predicts photo content poorly, so grayscale residual codes carry
a second table set for it (:mod:`compressor.coding.residual_spatial`). Its tables are
learned from crops of the two sample photos scikit-learn ships inside its wheel
(``china.jpg``, ``flower.jpg``; scikit-learn is in the training stack already, pinned in
the ``train`` extra), at full and half scale, so export needs no download. They are never
the benchmark's test photo (matplotlib's ``grace_hopper.jpg``).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

PHOTOS = ("china.jpg", "flower.jpg")


def photo_dir() -> Path:
    """scikit-learn's sample image folder, found without importing scikit-learn."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "scikit-learn is not installed; it ships the sample photos the spatial residual tables are learned "
            "from: pip install -c constraints.txt -e '.[train]'"
        )
    return Path(spec.submodule_search_locations[0]) / "datasets" / "images"


def training_crops(shape: tuple[int, int] = (28, 28), stride: int | None = None) -> np.ndarray:
    """uint8 (N, H, W) crops of the sample photos in grayscale, at full and half scale."""
    from PIL import Image

    h, w = shape
    stride = stride or max(1, min(h, w) // 2)
    out = []
    for name in PHOTOS:
        with Image.open(photo_dir() / name) as im:
            gray = im.convert("L")
            for scale in (1, 2):
                img = gray if scale == 1 else gray.resize((gray.width // 2, gray.height // 2), Image.LANCZOS)
                a = np.asarray(img)
                out.extend(
                    a[r : r + h, c : c + w]
                    for r in range(0, a.shape[0] - h + 1, stride)
                    for c in range(0, a.shape[1] - w + 1, stride)
                )
    return np.stack(out).astype(np.uint8)
