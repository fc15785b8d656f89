"""Getting images into the compressor and back out, on devices that may have only numpy.

Contracts:

* In memory, a batch is ``float32 (N, H, W)`` in ``[0, 1]`` (:func:`as_batch`); on disk and
  for display an image is ``uint8 (H, W)`` grayscale (:func:`read_image`, :func:`write_png`).
* Every refusal is an :class:`~compressor.errors.InvalidImageError` (also a ``ValueError``)
  whose message says what was expected, what was found, and what to do.
* PNG is read and written in pure Python (``zlib`` + ``struct`` + numpy) so that an edge
  device without Pillow can still compress files, and so that a PNG decodes to the same
  pixels on every device. Other formats (JPEG, WebP, BMP, GIF, TIFF) and Adam7-interlaced
  PNGs go through Pillow when it is installed.

Colour is reduced to gray the way Pillow's ``convert("L")`` does it: ITU-R BT.601 luma in
16-bit fixed point, ``(19595 R + 38470 G + 7471 B + 32768) >> 16``. This equals
``(299 R + 587 G + 114 B) / 1000`` up to rounding; the fixed-point form is used so that a
colour PNG gives bit-identical gray whether it is decoded here or by Pillow. Alpha is
ignored (the colour channels are used as if the image were opaque; no compositing).
Samples deeper than 8 bits keep their high byte (``>> 8``); shallower gray samples are
scaled to 0..255 as the PNG spec says (a 1-bit 1 becomes 255).
"""

from __future__ import annotations

import io
import os
import struct
import zipfile
import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from compressor.atomic import atomic_write_bytes
from compressor.errors import InvalidImageError

__all__ = [
    "IMAGE_SUFFIXES",
    "MAX_IMAGE_SIDE",
    "as_batch",
    "decode_image",
    "png_bytes",
    "read_image",
    "read_images",
    "to_uint8",
    "unique_names",
    "write_png",
]

#: Width and height above this are refused before any pixel memory is allocated.
MAX_IMAGE_SIDE = 16384

#: File suffixes (lower case) that :func:`read_images` picks up from a folder.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")

_ARRAY_SUFFIXES = (".npy", ".npz")
_BATCH_AXES = ("image", "row", "column")
_IMAGE_AXES = ("row", "column")

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_DEPTHS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}

StrPath = str | os.PathLike[str]


# --- arrays --------------------------------------------------------------------------
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
    expected = _check_shape_argument(shape)
    what = "images"
    arr = _as_ndarray(images, what)
    _check_dtype(arr, what)
    batch = _as_nhw(arr, what)
    if expected is not None and batch.shape[1:] != expected:
        raise InvalidImageError(_shape_mismatch_message(arr, batch, expected))
    _check_values(batch, what, _BATCH_AXES)
    if batch.dtype == np.uint8:
        return batch.astype(np.float32) / np.float32(255)
    return np.array(batch, dtype=np.float32, order="C", copy=True)


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
    _check_values(arr, what, _BATCH_AXES if arr.ndim == 3 else _IMAGE_AXES if arr.ndim == 2 else None)
    if binarize:
        return np.where(arr >= 0.5, np.uint8(255), np.uint8(0))
    return _float_to_uint8(arr)


# --- reading -------------------------------------------------------------------------
def read_image(path: StrPath) -> np.ndarray:
    """Read one image file as ``uint8 (H, W)`` grayscale.

    The format is recognised from the file's first bytes, not its name. PNG (bit depths 1-16,
    every colour type, every filter) is decoded in pure Python with CRC checks; other formats
    need Pillow (JPEG/WebP/TIFF get their EXIF orientation applied).

    Raises:
        InvalidImageError: the file is missing or unreadable, is a folder, is not an image,
            is a damaged or truncated PNG, is larger than ``MAX_IMAGE_SIDE`` per side, or
            needs Pillow (non-PNG, interlaced PNG) and Pillow is not installed. The message
            names the file.
    """
    name = os.fspath(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except IsADirectoryError:
        raise InvalidImageError(f"{name} is a folder, not an image file; use read_images() for folders") from None
    except OSError as e:
        raise InvalidImageError(f"cannot read image {name}: {e.strerror or e}") from e
    return decode_image(data, name)


def decode_image(data: bytes, name: str) -> np.ndarray:
    """The bytes of one image file (as :func:`read_image` reads them) -> ``uint8 (H, W)``.

    For images that do not come from a file of their own, e.g. a Parquet column of PNG bytes;
    ``name`` is what error messages call the image.
    """
    if data.startswith(_PNG_SIGNATURE):
        return _decode_png(data, name)
    return _read_with_pillow(data, name, orient=True)


def read_images(paths: StrPath | Iterable[StrPath]) -> tuple[np.ndarray, list[str]]:
    """Read images from files, folders and ``.npy``/``.npz`` arrays into one ``uint8 (N, H, W)``.

    Each path may be:

    * an image file (any format :func:`read_image` reads); its name is the file stem;
    * a folder: its files ending in one of ``IMAGE_SUFFIXES`` (any case), sorted by file
      name, not recursing, skipping hidden dot-files;
    * a ``.npy`` or ``.npz`` file holding ``(N, H, W)``, ``(N, H, W, 1)`` or ``(H, W)``
      uint8 0..255 or float 0..1 (floats become ``rint(255 x)``). In an ``.npz`` the array
      named ``images``, else ``x``, else the only array is used. Names are ``stem[i]``.

    Names are unique (compared case-insensitively, as on macOS/Windows file systems) so they
    can be used as output file names: a repeated name gets ``-1``, ``-2``, ... in input order.

    Raises:
        InvalidImageError: no paths, an empty folder, an unreadable file or array, invalid
            array contents (as :func:`as_batch`), or images of different sizes (the message
            gives the first two sizes that differ and their files).
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    path_list = [Path(p) for p in paths]
    if not path_list:
        raise InvalidImageError("read_images got no paths; pass image files, folders, or .npy/.npz files")

    images: list[np.ndarray] = []
    names: list[str] = []
    sources: list[str] = []
    for path in path_list:
        if path.is_dir():
            files = _image_files_in(path)
            if not files:
                raise InvalidImageError(
                    f"no images in {path} (looked for {', '.join(IMAGE_SUFFIXES)} files; subfolders are not searched)"
                )
            for file in files:
                images.append(read_image(file))
                names.append(file.stem)
                sources.append(str(file))
        elif path.suffix.lower() in _ARRAY_SUFFIXES:
            for i, image in enumerate(_read_array_file(path)):
                images.append(image)
                names.append(f"{path.stem}[{i}]")
                sources.append(f"{path}[{i}]")
        else:
            images.append(read_image(path))
            names.append(path.stem)
            sources.append(str(path))

    first = images[0].shape
    for image, source in zip(images, sources, strict=True):
        if image.shape != first:
            raise InvalidImageError(
                f"all images must have the same size: {sources[0]} is {_hw(first)} but {source} is "
                f"{_hw(image.shape)} (height x width); resize or crop them to one size"
            )
    return np.stack(images), unique_names(names)


# --- writing -------------------------------------------------------------------------
def write_png(path: StrPath, image: Any) -> None:
    """Write one image as an 8-bit grayscale PNG, atomically (see :mod:`compressor.atomic`).

    ``image`` is ``uint8 (H, W)`` or float ``(H, W)`` in ``[0, 1]`` (stored as ``rint(255 x)``);
    ``(H, W, 1)`` is accepted too. The file reads back identically with :func:`read_image`
    and with Pillow.

    Raises:
        InvalidImageError: wrong shape, dtype, or values (as :func:`as_batch`), or a side
            larger than ``MAX_IMAGE_SIDE``.
        FileNotFoundError: the destination folder does not exist.
        OSError: the file could not be written; an existing file is left as it was.
    """
    atomic_write_bytes(path, png_bytes(image))


def png_bytes(image: Any) -> bytes:
    """The PNG file :func:`write_png` writes for ``image``, as bytes (e.g. for a Parquet column)."""
    what = "image"
    arr = _as_ndarray(image, what)
    _check_dtype(arr, what)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim != 2:
        hint = "; grayscale only: convert RGB first" if arr.ndim == 3 and arr.shape[-1] in (3, 4) else ""
        raise InvalidImageError(
            f"write_png writes one grayscale image: expected shape (H, W) or (H, W, 1), got {arr.shape}{hint}"
        )
    if arr.size == 0:
        raise InvalidImageError(f"{what} is empty: got shape {arr.shape}")
    _check_side(arr.shape[0], arr.shape[1], what)
    _check_values(arr, what, _IMAGE_AXES)
    pixels = arr if arr.dtype == np.uint8 else _float_to_uint8(arr)
    return _encode_png(pixels)


# --- validation helpers ----------------------------------------------------------------
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
    if dtype == np.uint8 or np.issubdtype(dtype, np.floating):
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
    message = f"the model expects {_hw(expected)} images (height x width), got {_hw(batch.shape[1:])}"
    if original.ndim == 3 and original.shape[-1] in (3, 4):
        return message + f" (is shape {original.shape} one RGB image? convert it to grayscale (H, W) first)"
    return message + f"; resize or crop them to {_hw(expected)} first"


def _check_values(arr: np.ndarray, what: str, axes: Sequence[str] | None) -> None:
    """Refuse NaN/inf and floats outside [0, 1]; uint8 needs no check."""
    if not np.issubdtype(arr.dtype, np.floating):
        return
    finite = np.isfinite(arr)
    if not finite.all():
        n_nan = int(np.count_nonzero(np.isnan(arr)))
        n_inf = int(arr.size - np.count_nonzero(finite) - n_nan)
        first = tuple(int(i) for i in np.argwhere(~finite)[0])
        where = ", ".join(f"{a} {i}" for a, i in zip(axes, first, strict=True)) if axes else f"index {first}"
        raise InvalidImageError(
            f"{what}: found {n_nan} NaN and {n_inf} inf values; first at {where}; expected finite values in [0, 1]"
        )
    low, high = float(arr.min()), float(arr.max())
    if low < 0.0 or high > 1.0:
        hint = "; looks like 0..255 data: divide by 255 or pass uint8" if low >= 0.0 and high <= 255.0 else ""
        raise InvalidImageError(f"{what}: float values must be in [0, 1], got min {low:g} and max {high:g}{hint}")


def _float_to_uint8(arr: np.ndarray) -> np.ndarray:
    # float64 makes 255*x exact for float16/32 inputs, so rounding is identical everywhere.
    return np.rint(arr.astype(np.float64) * 255.0).astype(np.uint8)


def _check_side(height: int, width: int, what: str) -> None:
    if height > MAX_IMAGE_SIDE or width > MAX_IMAGE_SIDE:
        raise InvalidImageError(
            f"{what}: image is {_hw((height, width))} pixels (height x width); the limit is {MAX_IMAGE_SIDE} per side"
        )


def _hw(shape: Sequence[int]) -> str:
    return f"{shape[0]}x{shape[1]}"


# --- files and names -------------------------------------------------------------------
def _image_files_in(folder: Path) -> list[Path]:
    try:
        entries = list(folder.iterdir())
    except OSError as e:
        raise InvalidImageError(f"cannot list folder {folder}: {e.strerror or e}") from e
    files = [
        entry
        for entry in entries
        if entry.suffix.lower() in IMAGE_SUFFIXES and not entry.name.startswith(".") and entry.is_file()
    ]
    return sorted(files, key=lambda entry: entry.name)


def _read_array_file(path: Path) -> np.ndarray:
    """Load ``path`` (.npy/.npz, no pickles) and return validated ``uint8 (N, H, W)``."""
    try:
        # Our own handle: np.load(path) leaks its file when a damaged .npz fails to open.
        with open(path, "rb") as f:
            loaded = np.load(f, allow_pickle=False)
            if isinstance(loaded, np.ndarray):
                arr, what = loaded, str(path)
            else:
                with loaded:
                    arr, what = _pick_npz_array(loaded, path)
    except InvalidImageError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        raise InvalidImageError(f"cannot read array file {path}: {e}") from e
    _check_dtype(arr, what)
    batch = _as_nhw(arr, what)
    _check_values(batch, what, _BATCH_AXES)
    return batch if batch.dtype == np.uint8 else _float_to_uint8(batch)


def _pick_npz_array(archive: Any, path: Path) -> tuple[np.ndarray, str]:
    keys = list(archive.files)
    if "images" in keys:
        key = "images"
    elif "x" in keys:
        key = "x"
    elif len(keys) == 1:
        key = keys[0]
    else:
        raise InvalidImageError(
            f"{path}: cannot tell which array holds the images among {keys}; "
            "name it 'images' (or 'x'), or save only one array"
        )
    return archive[key], f"{path}['{key}']"


def unique_names(names: list[str]) -> list[str]:
    """Make names unique case-insensitively: repeats get ``-1``, ``-2``... avoiding every given name."""
    reserved = {name.casefold() for name in names}
    used: set[str] = set()
    unique = []
    for name in names:
        candidate = name
        if candidate.casefold() in used:
            k = 1
            while f"{name}-{k}".casefold() in used or f"{name}-{k}".casefold() in reserved:
                k += 1
            candidate = f"{name}-{k}"
        used.add(candidate.casefold())
        unique.append(candidate)
    return unique


# --- Pillow (optional) -----------------------------------------------------------------
def _read_with_pillow(data: bytes, name: str, *, orient: bool, why: str = "") -> np.ndarray:
    try:
        from PIL import Image, ImageOps
    except ImportError:
        if why:
            raise InvalidImageError(
                f"{name}: {why}; reading it needs Pillow: `pip install pillow`, or re-save it without interlacing"
            ) from None
        kind = _sniff_format(data)
        if kind is None:
            raise InvalidImageError(
                f"{name} is not an image this library can read: "
                "not a PNG, and its first bytes match no known image format"
            ) from None
        raise InvalidImageError(
            f"{name} is a {kind} file; reading {kind} needs Pillow: `pip install pillow`, or convert the file to PNG"
        ) from None
    try:
        with Image.open(io.BytesIO(data)) as im:
            _check_side(im.height, im.width, name)
            im.load()
            if orient:
                im = ImageOps.exif_transpose(im)
            return _pillow_to_gray(im)
    except InvalidImageError:
        raise
    # Pillow signals a bad file with any of these, depending on the format plugin.
    except (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error, Image.DecompressionBombError) as e:
        raise InvalidImageError(f"{name} is not a readable image: {e}") from e


def _pillow_to_gray(im: Any) -> np.ndarray:
    if im.mode.startswith("I;16"):
        return (np.array(im).astype(np.uint16) >> 8).astype(np.uint8)
    if im.mode == "I":  # older Pillow opens 16-bit gray this way; values are 0..65535
        return (np.clip(np.array(im), 0, 65535) >> 8).astype(np.uint8)
    return np.array(im.convert("L"), dtype=np.uint8)


def _sniff_format(data: bytes) -> str | None:
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if data.startswith(b"BM"):
        return "BMP"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF"
    return None


# --- PNG ---------------------------------------------------------------------------------
def _decode_png(data: bytes, name: str) -> np.ndarray:
    """Decode a whole PNG file to ``uint8 (H, W)`` gray; see the module docstring for the rules."""

    def bad(problem: str) -> InvalidImageError:
        return InvalidImageError(f"cannot read PNG {name}: {problem}")

    header: tuple[int, ...] | None = None
    palette: bytes | None = None
    idat: list[bytes] = []
    pos = len(_PNG_SIGNATURE)
    while True:
        if pos + 8 > len(data):
            raise bad("file ends before the IEND chunk (truncated?)")
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        label = kind.decode("latin-1")
        if not kind.isalpha():
            raise bad(f"invalid chunk type {kind!r} at byte {pos} (the file is damaged)")
        if length > 0x7FFFFFFF:
            raise bad(f"chunk {label} at byte {pos} claims {length} bytes (the file is damaged)")
        end = pos + 12 + length
        if end > len(data):
            raise bad(f"file ends inside the {label} chunk at byte {pos} (truncated?)")
        body = data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[end - 4 : end])
        if zlib.crc32(kind + body) != crc:
            raise bad(f"CRC mismatch in the {label} chunk at byte {pos} (the file is damaged)")
        if header is None and kind != b"IHDR":
            raise bad(f"first chunk is {label}, expected IHDR")
        if kind == b"IHDR":
            header = _parse_ihdr(body, name, bad)
        elif kind == b"PLTE":
            if length % 3 or not 3 <= length <= 768:
                raise bad(f"PLTE chunk has {length} bytes; expected 1 to 256 RGB entries")
            palette = body
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
        elif not kind[0] & 0x20:
            raise bad(f"unsupported critical chunk {label}")
        pos = end

    assert header is not None
    width, height, depth, colour, interlace = header
    if interlace:
        return _read_with_pillow(
            data, name, orient=False, why="Adam7-interlaced PNG is not supported by the built-in reader"
        )
    if colour == 3 and palette is None:
        raise bad("palette image without a PLTE chunk")
    if not idat:
        raise bad("no IDAT (image data) chunk")

    channels = _PNG_CHANNELS[colour]
    row_bytes = (width * channels * depth + 7) // 8
    expected = height * (row_bytes + 1)
    try:
        raw = zlib.decompressobj().decompress(b"".join(idat), expected)
    except zlib.error as e:
        raise bad(f"image data does not decompress ({e})") from e
    if len(raw) < expected:
        raise bad(f"image data holds {len(raw)} of the {expected} bytes the header announces (truncated?)")

    rows = _unfilter(raw, height, row_bytes, max(1, channels * depth // 8), bad)
    samples = _unpack_samples(rows, width * channels, depth)
    if colour == 0:
        return samples if depth >= 8 else samples * np.uint8(255 // ((1 << depth) - 1))
    if colour == 3:
        assert palette is not None
        lut = _luma(np.frombuffer(palette, dtype=np.uint8).reshape(-1, 3))
        top = int(samples.max())
        if top >= len(lut):
            raise bad(f"a pixel uses palette index {top} but the palette has only {len(lut)} entries")
        return lut[samples]
    pixels = samples.reshape(height, width, channels)
    if colour == 4:
        return np.ascontiguousarray(pixels[..., 0])
    return _luma(pixels[..., :3])


def _parse_ihdr(body: bytes, name: str, bad: Any) -> tuple[int, ...]:
    if len(body) != 13:
        raise bad(f"IHDR chunk has {len(body)} bytes, expected 13")
    width, height, depth, colour, compression, filtering, interlace = struct.unpack(">IIBBBBB", body)
    if width == 0 or height == 0:
        raise bad(f"header says {width}x{height} (width x height); both must be at least 1")
    _check_side(height, width, name)
    if colour not in _PNG_DEPTHS:
        raise bad(f"unknown colour type {colour}")
    if depth not in _PNG_DEPTHS[colour]:
        raise bad(f"bit depth {depth} is not valid for colour type {colour}")
    if compression != 0 or filtering != 0:
        raise bad(f"unknown compression method {compression} or filter method {filtering}")
    if interlace not in (0, 1):
        raise bad(f"unknown interlace method {interlace}")
    return width, height, depth, colour, interlace


def _unfilter(raw: bytes, height: int, row_bytes: int, bpp: int, bad: Any) -> np.ndarray:
    """Undo the per-row PNG filters; returns ``uint8 (height, row_bytes)``.

    None/Sub/Up are vectorised with numpy; Average and Paeth depend on the byte just
    decoded, so they run as plain Python loops (fine for MNIST-sized images).
    """
    out = np.empty((height, row_bytes), dtype=np.uint8)
    prior = np.zeros(row_bytes, dtype=np.uint8)
    stride = row_bytes + 1
    for y in range(height):
        kind = raw[y * stride]
        line = np.frombuffer(raw, dtype=np.uint8, count=row_bytes, offset=y * stride + 1)
        if kind == 0:
            out[y] = line
        elif kind == 1:
            out[y] = np.cumsum(line.reshape(-1, bpp), axis=0, dtype=np.uint8).reshape(-1)
        elif kind == 2:
            out[y] = line + prior
        elif kind == 3:
            out[y] = np.frombuffer(_unfilter_average(line.tobytes(), prior.tobytes(), bpp), dtype=np.uint8)
        elif kind == 4:
            out[y] = np.frombuffer(_unfilter_paeth(line.tobytes(), prior.tobytes(), bpp), dtype=np.uint8)
        else:
            raise bad(f"row {y} has unknown filter type {kind} (the file is damaged)")
        prior = out[y]
    return out


def _unfilter_average(line: bytes, prior: bytes, bpp: int) -> bytearray:
    cur = bytearray(line)
    for i in range(min(bpp, len(cur))):
        cur[i] = (cur[i] + (prior[i] >> 1)) & 0xFF
    for i in range(bpp, len(cur)):
        cur[i] = (cur[i] + ((cur[i - bpp] + prior[i]) >> 1)) & 0xFF
    return cur


def _unfilter_paeth(line: bytes, prior: bytes, bpp: int) -> bytearray:
    cur = bytearray(line)
    for i in range(min(bpp, len(cur))):  # no left neighbour: the predictor is the byte above
        cur[i] = (cur[i] + prior[i]) & 0xFF
    for i in range(bpp, len(cur)):
        a, b, c = cur[i - bpp], prior[i], prior[i - bpp]
        pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
        predictor = a if pa <= pb and pa <= pc else b if pb <= pc else c
        cur[i] = (cur[i] + predictor) & 0xFF
    return cur


def _unpack_samples(rows: np.ndarray, samples_per_row: int, depth: int) -> np.ndarray:
    """Split rows of packed bytes into one uint8 per sample (16-bit keeps the high byte)."""
    if depth == 8:
        return rows
    if depth == 16:
        return np.ascontiguousarray(rows.reshape(rows.shape[0], -1, 2)[:, :, 0])
    shifts = np.arange(8 - depth, -1, -depth, dtype=np.uint8)
    mask = np.uint8((1 << depth) - 1)
    unpacked = (rows[:, :, np.newaxis] >> shifts) & mask
    return np.ascontiguousarray(unpacked.reshape(rows.shape[0], -1)[:, :samples_per_row])


def _luma(rgb: np.ndarray) -> np.ndarray:
    """BT.601 luma exactly as Pillow's ``convert("L")`` computes it; ``(..., 3) uint8 -> uint8``."""
    x = rgb.astype(np.uint32)
    return ((x[..., 0] * 19595 + x[..., 1] * 38470 + x[..., 2] * 7471 + 0x8000) >> 16).astype(np.uint8)


def _encode_png(pixels: np.ndarray) -> bytes:
    """8-bit grayscale, non-interlaced, filter None on every row (``uint8 (H, W)`` in)."""
    height, width = pixels.shape
    raw = np.zeros((height, width + 1), dtype=np.uint8)
    raw[:, 1:] = pixels
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"".join(
        (
            _PNG_SIGNATURE,
            _png_chunk(b"IHDR", header),
            _png_chunk(b"IDAT", zlib.compress(raw.tobytes(), 9)),
            _png_chunk(b"IEND", b""),
        )
    )


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
