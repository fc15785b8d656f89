"""Image files in and out: Pillow reads PNG, JPEG, WebP, BMP, GIF and TIFF, a small writer makes 8-bit grey PNGs.

Why Pillow: it is maintained, fuzzed continuously, ships aarch64 wheels and refuses
decompression bombs; a hand-written decoder is code to maintain and an attack surface.
Before any pixel is decoded, the file must be a regular file within the byte budget and its
header must declare at most ``max_pixels`` pixels (:mod:`compressor.limits`), so a small
file that declares a huge image costs a header read, not gigabytes.

Colour is reduced to grey as Pillow's ``convert("L")`` does (ITU-R BT.601 luma); alpha is
ignored; 16-bit samples keep their high byte; float samples (32-bit TIFF) follow the rules of
float arrays (finite, 0..1); JPEG/WebP/TIFF EXIF orientation is applied.
Every refusal is an :class:`~compressor.errors.InvalidImageError` naming the file.
"""

from __future__ import annotations

import functools
import io
import logging
import os
import struct
import warnings
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from compressor import limits
from compressor import names as name_rules
from compressor.errors import InvalidImageError
from compressor.io.arrays import ARRAY_SUFFIXES, as_uint8_image, hw, open_regular_file, read_array_file
from compressor.io.atomic import atomic_write_bytes

__all__ = [
    "IMAGE_SUFFIXES",
    "decode_image",
    "png_bytes",
    "read_bytes_limited",
    "read_image",
    "read_images",
    "write_png",
]

#: File suffixes (lower case) that :func:`read_images` picks up from a folder.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")
#: The Pillow formats of those suffixes: the only ones a file is sniffed as, whatever its name.
#: Pillow knows ~40 more (DDS, PSD, FITS, EPS run through Ghostscript, ...): each is parser code
#: a hostile file could reach, for no image a camera makes.
IMAGE_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "GIF", "TIFF")

StrPath = str | os.PathLike[str]


def read_bytes_limited(path: StrPath, *, max_bytes: int = limits.MAX_INPUT_BYTES, what: str = "file") -> bytes:
    """The bytes of a regular file of at most ``max_bytes``, or an ``InvalidImageError``.

    Devices (``/dev/zero``), FIFOs and folders are refused before reading, so no input can
    make a read run forever or grow without bound.
    """
    name = os.fspath(path)
    try:
        with open_regular_file(path, what) as f:
            st = os.fstat(f.fileno())
            if st.st_size > max_bytes:
                raise InvalidImageError(
                    f"{name} is {st.st_size} bytes; the limit for a {what} is {max_bytes} (--max-input-bytes)"
                )
            data = f.read(max_bytes + 1)
    except OSError as e:
        raise InvalidImageError(f"cannot read {what} {name}: {e.strerror or e}") from e
    if len(data) > max_bytes:
        raise InvalidImageError(f"{name} grew past the {max_bytes}-byte limit while being read")
    return data


def read_image(
    path: StrPath, *, max_pixels: int = limits.MAX_IMAGE_PIXELS, max_bytes: int = limits.MAX_INPUT_BYTES
) -> np.ndarray:
    """Read one image file (any format Pillow reads) as ``uint8 (H, W)`` grayscale."""
    return decode_image(read_bytes_limited(path, max_bytes=max_bytes, what="image file"), os.fspath(path), max_pixels)


def decode_image(data: bytes, name: str, max_pixels: int = limits.MAX_IMAGE_PIXELS) -> np.ndarray:
    """The bytes of one image file -> ``uint8 (H, W)`` grey, as :func:`read_image` reads them.

    For images that do not come from a file of their own (a Parquet column of PNG bytes);
    ``name`` is what error messages call the image.
    """
    try:
        from PIL import Image, ImageOps
    except ImportError:  # pragma: no cover - Pillow is a declared dependency
        raise InvalidImageError(f"reading {name} needs Pillow: pip install pillow") from None
    _quiet_pillow_logs()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow warns of damaged metadata on stderr; errors say enough
            with Image.open(io.BytesIO(data), formats=IMAGE_FORMATS) as im:
                height, width = im.height, im.width
                limits_side = limits.MAX_IMAGE_SIDE
                if height > limits_side or width > limits_side or height * width > max_pixels:
                    raise InvalidImageError(
                        f"{name}: image is {hw((height, width))} pixels (height x width); the limit is "
                        f"{max_pixels} pixels and {limits_side} per side (raise it with --max-pixels)"
                    )
                # bounded: the file is at most --max-input-bytes. A camera JPEG that carries a
                # preview or a gain map opens as MPO: its first frame is the photo itself.
                frames = 1 if im.format == "MPO" else getattr(im, "n_frames", 1)
                if frames > 1:  # an animated GIF/WebP or a multi-page TIFF: which frame is meant?
                    raise InvalidImageError(
                        f"{name} holds {frames} frames (an animation or pages); save the frame to code as "
                        "an image of its own"
                    )
                im.load()
                im = ImageOps.exif_transpose(im)
                return _to_gray(im, name)
    except InvalidImageError:
        raise
    except Image.UnidentifiedImageError:  # its own text names our in-memory buffer, not the file
        kind = "an empty file" if not data else f"not in a format read here ({', '.join(IMAGE_FORMATS)})"
        raise InvalidImageError(f"{name} is not a readable image: {kind}") from None
    except Image.DecompressionBombError as e:  # Pillow's own guard fires in open() for absurd sizes
        raise InvalidImageError(f"{name}: {e}; the limit is {max_pixels} pixels (raise it with --max-pixels)") from None
    # Pillow signals a bad file with any of these, depending on the format plugin (fuzzed TIFFs
    # raised OverflowError for sizes that overflow, TypeError "Missing dimensions" for others).
    except (
        OSError,
        SyntaxError,
        ValueError,
        EOFError,
        struct.error,
        zlib.error,
        OverflowError,
        IndexError,
        TypeError,
        KeyError,
    ) as e:
        raise InvalidImageError(f"{name} is not a readable image: {e}") from e


@functools.cache  # once per process: decode_image runs per image
def _quiet_pillow_logs() -> None:
    """Keep Pillow's log records of a damaged file ("More samples per pixel than can be
    decoded") off stderr when the application has not set up logging: the error raised says
    it in one line. Records still reach any handler the application installs."""
    logger = logging.getLogger("PIL")
    if not any(isinstance(h, logging.NullHandler) for h in logger.handlers):
        logger.addHandler(logging.NullHandler())


def _to_gray(im: Any, name: str) -> np.ndarray:
    if im.mode.startswith("I;16"):
        return (np.array(im).astype(np.uint16) >> 8).astype(np.uint8)
    if im.mode == "I":  # 16-bit grey opened as 32-bit ints; values are 0..65535
        pixels = np.array(im)
        if pixels.min() < 0 or pixels.max() > 65535:
            raise InvalidImageError(
                f"{name}: 32-bit integer samples from {pixels.min()} to {pixels.max()}; expected 16-bit grey "
                "(0..65535): save it as an 8- or 16-bit image"
            )
        return (pixels >> 8).astype(np.uint8)
    if im.mode == "F":
        # Float samples (a 32-bit TIFF) follow the rules of float arrays: 0..1, finite. Pillow's
        # convert("L") would clip them to 0..255 unscaled: a 0..1 image all black, NaN black.
        fix = " (32-bit float samples); save the image with 8-bit samples, or scale its samples to 0..1"
        return as_uint8_image(np.array(im, dtype=np.float32), name, fix=fix)
    return np.array(im.convert("L"), dtype=np.uint8)


def read_images(
    paths: StrPath | Iterable[StrPath],
    *,
    max_images: int = limits.MAX_IMAGES,
    max_pixels: int = limits.MAX_IMAGE_PIXELS,
    max_bytes: int = limits.MAX_INPUT_BYTES,
) -> tuple[np.ndarray, list[str] | None]:
    """Read images from files, folders and ``.npy``/``.npz`` arrays into one ``uint8 (N, H, W)``.

    Each path may be an image file (its name is the file stem), a folder (its files ending in
    one of ``IMAGE_SUFFIXES``, any case, sorted, not recursing, skipping dot-files), or a
    ``.npy``/``.npz`` array (see :func:`compressor.io.arrays.read_array_file`).

    Returns ``(images, names)``. ``names`` is ``None`` when every input is an array file
    (arrays carry no names; decoders number the outputs), else one name per image: the file
    stem, or ``stem[i]`` for the images of an array file mixed with files. Names are unique
    case-insensitively; duplicates are refused (two files of one stem in different folders),
    because a name becomes an output file and one would overwrite the other.

    ``max_bytes`` bounds each file read and also the pixels of all images together (one byte
    each), so many small files cannot add up to unbounded memory either.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    path_list = [Path(p) for p in paths]
    if not path_list:
        raise InvalidImageError("no input paths; pass image files, folders, or .npy/.npz files")
    images: list[np.ndarray] = []
    names: list[str] = []
    sources: list[str] = []
    only_arrays, total = True, 0
    for path in path_list:
        if path.is_dir():
            only_arrays = False
            files = _image_files_in(path, len(images), max_images)
            if not files:
                raise InvalidImageError(
                    f"no images in {path} (looked for {', '.join(IMAGE_SUFFIXES)} files; subfolders are not searched)"
                )
            for file in files:
                _check_count(len(images) + 1, max_images)
                images.append(read_image(file, max_pixels=max_pixels, max_bytes=max_bytes))
                total = _check_total(total + images[-1].size, max_bytes)
                names.append(file.stem)
                sources.append(str(file))
        elif path.suffix.lower() in ARRAY_SUFFIXES:
            batch = read_array_file(
                path, max_images=max_images - len(images), max_pixels=max_pixels, max_bytes=max_bytes - total
            )
            total = _check_total(total + batch.size, max_bytes)
            for i, image in enumerate(batch):
                images.append(image)
                names.append(f"{path.stem}[{i}]")
                sources.append(f"{path}[{i}]")
        else:
            only_arrays = False
            _check_count(len(images) + 1, max_images)
            images.append(read_image(path, max_pixels=max_pixels, max_bytes=max_bytes))
            total = _check_total(total + images[-1].size, max_bytes)
            names.append(path.stem)
            sources.append(str(path))
    first = images[0].shape
    for image, source in zip(images, sources, strict=True):
        if image.shape != first:
            raise InvalidImageError(
                f"all images must have the same size: {sources[0]} is {hw(first)} but {source} is "
                f"{hw(image.shape)} (height x width); resize or crop them to one size"
            )
    if only_arrays:
        return np.stack(images), None
    name_rules.check_unique(names, sources, InvalidImageError)
    return np.stack(images), names


def _check_count(count: int, max_images: int) -> None:
    if count > max_images:
        raise InvalidImageError(f"more than {max_images} input images (raise the limit with --max-images)")


def _check_total(total: int, max_bytes: int) -> int:
    if total > max_bytes:
        raise InvalidImageError(
            f"the input images hold more than {max_bytes} pixels together (raise the limit with --max-input-bytes)"
        )
    return total


def _image_files_in(folder: Path, before: int, max_images: int) -> list[Path]:
    """The folder's image files, sorted by name. The listing is a stream: other entries are not
    kept, and past ``max_images`` images (``before`` read already) it stops, so a folder of
    millions of entries costs time for what it holds, not memory."""
    files: list[Path] = []
    try:
        with os.scandir(folder) as entries:
            for e in entries:
                if e.name.startswith(".") or os.path.splitext(e.name)[1].lower() not in IMAGE_SUFFIXES:
                    continue
                if e.is_file():
                    files.append(Path(e.path))
                    _check_count(before + len(files), max_images)
    except OSError as e:
        raise InvalidImageError(f"cannot list folder {folder}: {e.strerror or e}") from e
    return sorted(files, key=lambda e: e.name)


def write_png(path: StrPath, image: Any, *, overwrite: bool = True) -> None:
    """Write one image as an 8-bit greyscale PNG, atomically (see :mod:`compressor.io.atomic`).

    ``image`` is ``uint8 (H, W)`` or float ``(H, W)`` in ``[0, 1]`` (stored as ``rint(255 x)``).
    It reads back identically with :func:`read_image`. With ``overwrite=False`` an existing
    file is refused (``FileExistsError``) and left as it was.
    """
    atomic_write_bytes(path, png_bytes(image), overwrite=overwrite)


def png_bytes(image: Any) -> bytes:
    """The PNG file :func:`write_png` writes for ``image``, as bytes (e.g. for a Parquet column)."""
    return encode_png(as_uint8_image(image))


def encode_png(pixels: np.ndarray) -> bytes:
    """``uint8 (H, W)`` -> the bytes of a greyscale PNG (filter 0 rows, zlib level 6).

    Twenty lines of numpy, so that ``decode`` can write PNGs on a device without Pillow.
    """
    h, w = pixels.shape
    raw = np.zeros((h, w + 1), np.uint8)
    raw[:, 1:] = pixels
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", zlib.compress(raw.tobytes(), 6))
        + _chunk(b"IEND", b"")
    )


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
