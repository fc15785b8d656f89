"""What several test modules share: the checkout's root, the skip rule, and the test digits.

Test modules import from here (never from each other or from conftest.py), so a helper has
one home. Fixtures live in conftest.py.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]

#: Set by .ci/run: a test that needs the machine (root, apt, qemu, a second runtime) must run there.
REQUIRE_SYSTEM_TESTS = "COMPRESSOR_REQUIRE_SYSTEM_TESTS"


def system_tests_required() -> bool:
    return os.environ.get(REQUIRE_SYSTEM_TESTS) == "1"


def skip_or_fail(reason: str):
    """Skip, saying why; in CI (COMPRESSOR_REQUIRE_SYSTEM_TESTS=1) a skip is a failure instead.

    Every skip in this suite goes through here, so none can vanish silently from CI.
    """
    if system_tests_required():
        pytest.fail(f"required on this machine ({REQUIRE_SYSTEM_TESTS}=1), but: {reason}")
    pytest.skip(reason)


def importorskip(module: str):
    """``pytest.importorskip`` that CI turns into a failure (see :func:`skip_or_fail`)."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        skip_or_fail(f"{module} cannot be imported: {e}")


def cache_dir(name: str) -> Path:
    """A folder under the checkout's .cache/ (gitignored) or $COMPRESSOR_CACHE, for slow-to-build things."""
    root = Path(os.environ.get("COMPRESSOR_CACHE") or ROOT / ".cache")
    path = root / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def mnist5k_test(n: int | None = None, *, binarize: bool = True) -> np.ndarray:
    """The first ``n`` held-back mnist5k digits as float32 (N, 28, 28) in [0, 1] (binarized at 0.5 by default)."""
    from export import datasets

    return datasets.load("mnist5k", binarize=binarize).test[:n, ..., 0]


def to_uint8(images: np.ndarray) -> np.ndarray:
    """Float images in [0, 1] -> uint8 levels 0..255 (0/255 for binarized images), rounded."""
    return np.rint(np.asarray(images) * 255).astype(np.uint8)


def run_without_tensorflow(code: str, *args: str, timeout: int = 300):
    """Run ``code`` in a fresh interpreter that cannot import TensorFlow at all."""
    from export import isolation

    return isolation.run(code, *args, timeout=timeout)
