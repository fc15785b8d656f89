"""Images in memory: validation of caller arrays and ``.npy``/``.npz`` files, numpy only.

Contracts:

* In memory, a batch is ``float32 (N, H, W)`` in ``[0, 1]`` (:func:`as_batch`); on disk and
  for display an image is ``uint8 (H, W)`` grayscale.
* Every refusal is an :class:`~compressor.errors.InvalidImageError` (also a ``ValueError``)
  whose message says what was expected, what was found, and what to do.
* Array files are read without pickles, and the shape their header declares is checked
  against :mod:`compressor.limits` before the data is read, so a small file declaring a huge
  array costs nothing.
"""

from __future__ import annotations

import os
import tokenize
import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from compressor import limits
from compressor.errors import InvalidImageError
from compressor.io.regular import NotRegularFile, open_regular

__all__ = [
    "ARRAY_SUFFIXES",
    "as_batch",
    "as_uint8_image",
    "checked_batch",
    "image_count",
    "read_array_file",
    "to_uint8",
]

#: File suffixes read as arrays by :func:`read_array_file`.
ARRAY_SUFFIXES = (".npy", ".npz")
BATCH_AXES = ("image", "row", "column")
IMAGE_AXES = ("row", "column")


def as_batch(images: Any, *, shape: tuple[int, int] | None = None) -> np.ndarray:
    """Validate caller images and return a fresh ``float32 (N, H, W)`` array in ``[0, 1]``.

    Accepts ``(N, H, W)``, ``(N, H, W, 1)`` or a single ``(H, W)`` image, as ``uint8``
    (0..255, divided by 255) or any float dtype already in ``[0, 1]``; a list of equally
    shaped arrays is stacked. ``shape`` is the ``(H, W)`` the model expects, if known.
    The result never aliases the input, so callers may keep mutating their array.

    Raises:
        InvalidImageError: not array-like or ragged, object/bool/other-integer dtype, empty,
            wrong number of dimensions, more than one channel, NaN/inf, floats outside
            ``[0, 1]``, or ``(H, W)`` different from ``shape``.
        ValueError: ``shape`` itself is not a positive ``(height, width)`` pair (a caller bug).
    """
    batch = checked_batch(images, shape=shape)
    if batch.dtype == np.uint8:
        return batch.astype(np.float32) / np.float32(255)
    return np.array(batch, dtype=np.float32, order="C", copy=True)


def checked_batch(images: Any, *, shape: tuple[int, int] | None = None) -> np.ndarray:
    """What :func:`as_batch` checks, without its conversion: a ``(N, H, W)`` view of the
    caller's ``uint8`` or float array (not a copy: do not write to it), every value valid.

    For callers that go straight to another representation (the encoder turns binarized
    images directly into the network's int8 input levels).
    """
    expected = _check_shape_argument(shape)
    what = "images"
    arr = _as_ndarray(images, what)
    _check_dtype(arr, what)
    batch = _as_nhw(arr, what)
    if expected is not None and batch.shape[1:] != expected:
        raise InvalidImageError(_shape_mismatch_message(arr, batch, expected))
    _check_values(batch, what, BATCH_AXES)
    return batch


def image_count(images: Any) -> int | None:
    """How many images :func:`checked_batch` would find in ``images``, from its shape alone (or,
    for a list, its length and first item): nothing is converted or copied, so a budget can be
    held against a zero-stride view of millions of images (``np.broadcast_to``) before any of
    them costs memory or time. None when only the conversion can tell (a generator, a ragged
    list): the conversion then refuses it or counts it.
    """
    shape = getattr(images, "shape", None)
    if isinstance(shape, tuple):  # numpy, and any array type that says its shape
        return 1 if len(shape) <= 2 else int(shape[0])
    try:
        n = len(images)
        if n == 0:
            return 0
        inner = np.ndim(images[0])  # a list of images, or one image's rows
    except (TypeError, KeyError, IndexError, ValueError):
        return None
    return n if inner >= 2 else 1


def to_uint8(probabilities: Any, binarize: bool = False) -> np.ndarray:
    """Turn decoder output (floats in ``[0, 1]``, any shape) into displayable ``uint8``.

    ``binarize=False`` maps ``x`` to ``rint(255 x)``; ``binarize=True`` maps ``x >= 0.5`` to
    255 and the rest to 0 (for MNIST-like digits, whose model outputs are pixel
    probabilities). NaN/inf are refused rather than silently turned into black pixels,
    because they mean the model or runtime is broken.

    Raises:
        InvalidImageError: not a float array, empty, NaN/inf, or values outside ``[0, 1]``.
    """
    what = "probabilities"
    arr = _as_ndarray(probabilities, what)
    if not np.issubdtype(arr.dtype, np.floating):
        raise InvalidImageError(f"{what}: expected floats in [0, 1], got dtype {arr.dtype}")
    if arr.size == 0:
        raise InvalidImageError(f"{what} is empty: got shape {arr.shape}")
    _check_values(arr, what, BATCH_AXES if arr.ndim == 3 else IMAGE_AXES if arr.ndim == 2 else None)
    if binarize:
        return np.where(arr >= 0.5, np.uint8(255), np.uint8(0))
    return _float_to_uint8(arr)


def as_uint8_image(image: Any, what: str = "image", *, fix: str | None = None) -> np.ndarray:
    """Validate one image for writing: ``uint8 (H, W)`` as is, float ``[0, 1]`` as ``rint(255 x)``.

    ``(H, W, 1)`` is accepted too. ``fix``: what a refusal of its float values says to do,
    instead of the advice for an array (an image file's float samples need other advice).
    """
    arr = _as_ndarray(image, what)
    _check_dtype(arr, what)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim != 2:
        hint = "; grayscale only: convert RGB first" if arr.ndim == 3 and arr.shape[-1] in (3, 4) else ""
        raise InvalidImageError(
            f"{what}: expected one grayscale image of shape (H, W) or (H, W, 1), got {arr.shape}{hint}"
        )
    if arr.size == 0:
        raise InvalidImageError(f"{what} is empty: got shape {arr.shape}")
    check_side(arr.shape[0], arr.shape[1], what)
    _check_values(arr, what, IMAGE_AXES, fix)
    return arr if arr.dtype == np.uint8 else _float_to_uint8(arr)


def _check_shape_argument(shape: tuple[int, int] | None) -> tuple[int, int] | None:
    if shape is None:
        return None
    try:
        h, w = (int(s) for s in shape)
    except (TypeError, ValueError):
        raise ValueError(f"shape must be (height, width), got {shape!r}") from None
    if h <= 0 or w <= 0:
        raise ValueError(f"shape must be positive (height, width), got {shape!r}")
    return h, w


def _as_ndarray(images: Any, what: str) -> np.ndarray:
    if isinstance(images, np.ndarray):
        arr = images
    else:
        try:
            arr = np.asarray(images)
        except (ValueError, TypeError) as e:
            raise InvalidImageError(
                f"{what}: could not make one array from a {type(images).__name__} ({e}); "
                "pass a numpy array, or a list of images that all have the same shape"
            ) from e
    if arr.dtype == object:
        raise InvalidImageError(
            f"{what}: expected a numeric numpy array, got dtype object from a {type(images).__name__} "
            "(ragged list, None, or mixed types?); pass uint8 0..255 or float 0..1 arrays"
        )
    return arr


def _check_dtype(arr: np.ndarray, what: str) -> None:
    dtype = arr.dtype
    if dtype == np.uint8 or dtype.kind == "f":
        return
    if dtype == np.bool_:
        raise InvalidImageError(
            f"{what}: dtype bool is not accepted; convert to uint8 0..255 or float 0..1 "
            "(e.g. mask.astype(np.uint8) * 255)"
        )
    if np.issubdtype(dtype, np.integer):
        raise InvalidImageError(
            f"{what}: dtype {dtype} is not accepted; convert to uint8 0..255 or float 0..1 "
            "(only uint8 has an unambiguous 0..255 scale)"
        )
    raise InvalidImageError(f"{what}: dtype {dtype} is not an image dtype; expected uint8 0..255 or float 0..1")


def _as_nhw(arr: np.ndarray, what: str) -> np.ndarray:
    if arr.size == 0:
        raise InvalidImageError(f"{what} is empty: got shape {arr.shape}; pass at least one image of non-zero size")
    if arr.ndim == 2:
        return arr[np.newaxis]
    if arr.ndim == 4:
        if arr.shape[-1] != 1:
            raise InvalidImageError(
                f"{what}: grayscale only; convert RGB first. Expected (N, H, W, 1) with 1 channel, "
                f"got shape {arr.shape} with {arr.shape[-1]} channels"
            )
        return arr[..., 0]
    if arr.ndim != 3:
        raise InvalidImageError(
            f"{what}: expected shape (H, W), (N, H, W) or (N, H, W, 1), got {arr.ndim}-D {arr.shape}"
        )
    return arr


def _shape_mismatch_message(original: np.ndarray, batch: np.ndarray, expected: tuple[int, int]) -> str:
    message = f"the model expects {hw(expected)} images (height x width), got {hw(batch.shape[1:])}"
    if original.ndim == 3 and original.shape[-1] in (3, 4):
        return message + f" (is shape {original.shape} one RGB image? convert it to grayscale (H, W) first)"
    return message + f"; resize or crop them to {hw(expected)} first"


def _check_values(arr: np.ndarray, what: str, axes: Sequence[str] | None, fix: str | None = None) -> None:
    """Refuse NaN/inf and floats outside [0, 1]; uint8 needs no check. ``fix`` ends a refusal
    in place of the advice for arrays."""
    if arr.dtype.kind != "f":
        return
    bits = _BITS_OF_ONE.get(arr.dtype)
    if bits is not None and arr.flags.c_contiguous:
        # One reduction instead of two: as unsigned integers, the bit patterns of +0.0 .. 1.0 are
        # exactly 0 .. bits(1.0); NaN, inf, negatives (sign bit) and values above 1 all lie
        # above. Only -0.0 (valid) does too, so anything above is checked again below.
        if arr.view(bits[0]).max() <= bits[1]:
            return
    if 0.0 <= arr.min() and arr.max() <= 1.0:  # NaN fails both comparisons (min/max propagate it)
        return
    finite = np.isfinite(arr)
    if not finite.all():
        n_nan = int(np.count_nonzero(np.isnan(arr)))
        n_inf = int(arr.size - np.count_nonzero(finite) - n_nan)
        first = tuple(int(i) for i in np.argwhere(~finite)[0])
        where = ", ".join(f"{a} {i}" for a, i in zip(axes, first, strict=True)) if axes else f"index {first}"
        raise InvalidImageError(
            f"{what}: found {n_nan} NaN and {n_inf} inf values; first at {where}; expected finite values in [0, 1]"
            + (fix or "")
        )
    low, high = float(arr.min()), float(arr.max())
    if low < 0.0 or high > 1.0:
        hint = "; looks like 0..255 data: divide by 255 or pass uint8" if low >= 0.0 and high <= 255.0 else ""
        raise InvalidImageError(
            f"{what}: float values must be in [0, 1], got min {low:g} and max {high:g}{hint if fix is None else fix}"
        )


#: Per float dtype: the unsigned integer type of its width, and the bit pattern of 1.0.
_BITS_OF_ONE = {
    np.dtype(np.float32): (np.uint32, 0x3F800000),
    np.dtype(np.float64): (np.uint64, 0x3FF0000000000000),
    np.dtype(np.float16): (np.uint16, 0x3C00),
}


def _float_to_uint8(arr: np.ndarray) -> np.ndarray:
    # float64 makes 255*x exact for float16/32 inputs, so rounding is identical everywhere.
    return np.rint(arr.astype(np.float64) * 255.0).astype(np.uint8)


def check_side(height: int, width: int, what: str) -> None:
    if height > limits.MAX_IMAGE_SIDE or width > limits.MAX_IMAGE_SIDE:
        raise InvalidImageError(
            f"{what}: image is {hw((height, width))} pixels (height x width); "
            f"the limit is {limits.MAX_IMAGE_SIDE} per side"
        )


def hw(shape: Sequence[int]) -> str:
    return f"{shape[0]}x{shape[1]}"


#: Bytes of a .npy header (a dict of dtype, order and shape; numpy writes ~128).
_MAX_NPY_HEADER = 4096
_UNREADABLE = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error, KeyError)


def read_array_file(
    path: Path,
    *,
    max_images: int = limits.MAX_IMAGES,
    max_pixels: int = limits.MAX_IMAGE_PIXELS,
    max_bytes: int = limits.MAX_INPUT_BYTES,
) -> np.ndarray:
    """Load ``path`` (.npy/.npz, no pickles) and return validated ``uint8 (N, H, W)``.

    The shape and dtype in the array header are checked against ``max_images``,
    ``max_pixels`` (per image) and ``max_bytes`` (the whole array's data, as the header
    declares it) before the data is read, so a small ``.npz`` that inflates to gigabytes
    is refused unread.
    """
    try:
        # Our own handle: np.load(path) leaks its file when a damaged .npz fails to open.
        with open_regular_file(path, "NumPy array file") as f:
            if f.read(6) == b"\x93NUMPY":
                f.seek(0)
                _check_npy_header(f, str(path), max_images, max_pixels, max_bytes)
                f.seek(0)
                arr, what = np.load(f, allow_pickle=False), str(path)
            else:
                f.seek(0)
                with zipfile.ZipFile(f) as archive:
                    key = _pick_npz_member(archive, path)
                    with archive.open(key + ".npy") as member:
                        what = f"{path}['{key}']"
                        _check_npy_header(member, what, max_images, max_pixels, max_bytes)
                    with archive.open(key + ".npy") as member:
                        arr = np.lib.format.read_array(member, allow_pickle=False)
    except InvalidImageError:
        raise
    # numpy parses .npy headers with Python's tokenizer (SyntaxError, TokenError), zipfile refuses
    # encrypted or exotic members (NotImplementedError, RuntimeError): all mean a damaged file.
    except (*_UNREADABLE, SyntaxError, tokenize.TokenError, NotImplementedError, RuntimeError) as e:
        raise InvalidImageError(f"cannot read array file {path}: {e}") from e
    _check_dtype(arr, what)
    batch = _as_nhw(arr, what)
    _check_values(batch, what, BATCH_AXES)
    return batch if batch.dtype == np.uint8 else _float_to_uint8(batch)


def open_regular_file(path, what: str):
    """``path`` opened for binary reading, or an ``InvalidImageError`` if it is not a regular file.

    A FIFO would block the open (and the read) until a writer comes, and a device such as
    ``/dev/zero`` never ends: zipfile looking for an archive's end in it grows without bound.
    """
    try:
        return open_regular(path)[0]
    except NotRegularFile as e:
        name = os.fspath(path)
        if e.is_dir:
            raise InvalidImageError(f"{name} is a folder, not a {what}") from None
        raise InvalidImageError(f"{name} is not a regular file (a device or pipe?); save the {what} first") from None


def _check_npy_header(f, what: str, max_images: int, max_pixels: int, max_bytes: int) -> None:
    """Refuse, from the .npy header alone, an array larger than the budgets."""
    version = np.lib.format.read_magic(f)
    if version not in ((1, 0), (2, 0), (3, 0)):
        raise InvalidImageError(f"{what}: unsupported .npy version {version}")
    # The header's length, checked here: numpy's own refusal is three lines that advise
    # allow_pickle=True, the one thing an untrusted file must never get.
    start = f.tell()
    length = int.from_bytes(f.read(2 if version == (1, 0) else 4), "little")
    if length > _MAX_NPY_HEADER:
        raise InvalidImageError(
            f"{what}: its .npy header declares {length} bytes; an array's takes under {_MAX_NPY_HEADER}: "
            "a damaged file or not an array"
        )
    f.seek(start)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(f, max_header_size=_MAX_NPY_HEADER)
    else:
        shape, _, dtype = np.lib.format.read_array_header_2_0(f, max_header_size=_MAX_NPY_HEADER)
    if dtype.hasobject:
        raise InvalidImageError(f"{what}: holds Python objects; save a uint8 or float array instead")
    if len(shape) not in (2, 3, 4):
        raise InvalidImageError(f"{what}: expected shape (H, W), (N, H, W) or (N, H, W, 1), got {shape}")
    count = 1 if len(shape) == 2 else int(shape[0])
    pixels = int(shape[-2]) * int(shape[-1]) if len(shape) < 4 else int(shape[1]) * int(shape[2])
    if count > max_images:
        raise InvalidImageError(
            f"{what} declares {count} images; the limit is {max_images} (raise it with --max-images)"
        )
    if pixels > max_pixels:
        raise InvalidImageError(
            f"{what} declares images of {pixels} pixels; the limit is {max_pixels} (raise it with --max-pixels)"
        )
    if any(int(s) < 0 for s in shape):
        raise InvalidImageError(f"{what}: negative size in shape {shape}")
    size = count * pixels * dtype.itemsize * (int(shape[3]) if len(shape) == 4 else 1)
    if size > max_bytes:
        raise InvalidImageError(
            f"{what} declares {size} bytes of array data; the limit is {max_bytes} (raise it with --max-input-bytes)"
        )


def _pick_npz_member(archive: zipfile.ZipFile, path: Path) -> str:
    keys = [n[: -len(".npy")] for n in archive.namelist() if n.endswith(".npy")]
    if "images" in keys:
        return "images"
    if "x" in keys:
        return "x"
    if len(keys) == 1:
        return keys[0]
    raise InvalidImageError(
        f"{path}: cannot tell which array holds the images among {keys}; "
        "name it 'images' (or 'x'), or save only one array"
    )
