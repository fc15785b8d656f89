"""Where a dataset's images come from: plan the job in units, then read one unit at a time.

Sources, in any mix, given as paths:

* a folder tree: image files (``IMAGE_SUFFIXES``, any case) named by their path relative to
  the folder without the suffix (``digits/3/img001``), plus any ``.npy``/``.npz``/``.parquet``
  file inside it; hidden files and folders are skipped, entries are taken in sorted order;
* an ``.npy`` or ``.npz`` shard: ``(N, H, W)``, ``(N, H, W, 1)`` or ``(H, W)``, uint8 0..255
  or float 0..1 (as ``compressor encode`` reads them); image ``i`` is named ``stem[i]``;
* a Parquet file with an image column: PNG/JPEG/... bytes, a struct whose ``bytes`` field
  holds them (the Hugging Face ``Image`` layout), or a list (flat ``H*W`` or nested
  ``H`` x ``W``) of 0..255 integers or 0..1 floats; names from a string column if it exists,
  else ``stem[row]``.

:func:`plan` runs once in the driver and reads only headers and listings: it knows how many
images there are before any is decoded, which gives every image a global index (the output
order and the "exactly once" check) and the progress bar its total. Units are small,
picklable descriptions; :func:`read_unit` turns one into batches of at most ``chunk`` images.

Memory stays bounded: ``.npy`` shards are memory-mapped and read a chunk at a time; an
``.npz`` member or a Parquet row group is loaded whole, so its declared size is checked
against ``MAX_LOADED_BYTES`` first, and image files against ``MAX_IMAGE_FILE_BYTES``.

A bad input is a row with an error, not a failed job: an unreadable or damaged file, an
image of the wrong size, NaN pixels -- each is reported under its name and the rest goes on.
A path that does not exist, or a plan with no images at all, refuses the whole job.
"""

from __future__ import annotations

import dataclasses
import json
import os
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from compressor.errors import InvalidImageError, MissingExtraError
from compressor.io.arrays import open_regular_file
from compressor.io.files import IMAGE_SUFFIXES, decode_image
from compressor.names import unique_names

ARRAY_SUFFIXES = (".npy", ".npz")
PARQUET_SUFFIX = ".parquet"

#: Images per unit: the grain at which work is spread over workers and retried.
UNIT_IMAGES = 1024
#: An image file larger than this is reported instead of read.
MAX_IMAGE_FILE_BYTES = 64 * 1024 * 1024
#: An ``.npz`` member or a Parquet row group is loaded whole; larger ones are reported.
MAX_LOADED_BYTES = 1024 * 1024 * 1024


@dataclass(frozen=True)
class Unit:
    """One piece of work: ``count`` images with global indices ``first .. first + count - 1``.

    ``kind`` is ``files`` (``files``/``names``), ``npy``/``npz`` (rows ``start ..`` of the
    array ``key`` in ``path``), ``parquet`` (rows ``start ..`` of row group ``group``, column
    ``key``), ``codes`` (a slice of a codes Parquet file, see :mod:`compressor.jobs.table`) or
    ``failed`` (one row reporting ``error`` under ``names[0]``).
    """

    kind: str
    path: str
    first: int
    count: int
    start: int = 0
    group: int = 0
    key: str = ""
    name_column: str = ""
    prefix: str = ""
    names: tuple[str, ...] = ()
    files: tuple[str, ...] = ()
    error: str = ""

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Unit:
        raw = json.loads(text)
        raw["names"], raw["files"] = tuple(raw["names"]), tuple(raw["files"])
        return cls(**raw)

    def row_name(self, i: int) -> str:
        """Name of the unit's ``i``-th image."""
        return self.names[i] if self.names else f"{self.prefix}[{self.start + i}]"


@dataclass(frozen=True)
class Plan:
    """The units of a job, in output order, and how many rows they give."""

    units: list[Unit]
    total: int


@dataclass
class Images:
    """A batch read from a unit. ``pixels`` is uint8 (N, H, W), or float32 in [0, 1] when the
    source holds floats; rows whose ``errors`` entry is non-empty hold zeros."""

    index: np.ndarray
    names: list[str]
    pixels: np.ndarray
    errors: list[str]


def require_pyarrow(why: str = "Parquet files"):
    """``pyarrow`` and ``pyarrow.parquet``, or one line saying which extra installs them."""
    try:
        import pyarrow
        import pyarrow.parquet as pq
    except ImportError:
        raise MissingExtraError(
            f"{why} need pyarrow: pip install 'pyarrow==26.0.1' (the [parquet] extra of this checkout)"
        ) from None
    return pyarrow, pq


# --- planning -------------------------------------------------------------------------
def plan(
    paths: Sequence[str | os.PathLike[str]],
    *,
    unit_images: int = UNIT_IMAGES,
    image_column: str = "image",
    name_column: str = "name",
) -> Plan:
    """Walk ``paths`` and cut them into units (see the module docstring)."""
    if unit_images < 1:
        raise ValueError(f"unit_images must be at least 1, got {unit_images}")
    entries: list[tuple[str, Path, str]] = []  # (kind, path, name) in input order
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            entries.extend(_walk(path))
        elif path.exists():
            entries.append((_kind_of(path, top=True), path, path.with_suffix("").name))
        else:
            raise InvalidImageError(f"{path}: no such file or folder")
    file_names = iter(unique_names([name for kind, _, name in entries if kind == "file"]))
    units: list[Unit] = []
    run: list[tuple[str, str]] = []
    first = 0

    def flush() -> None:
        nonlocal first, run
        for i in range(0, len(run), unit_images):
            part = run[i : i + unit_images]
            files, names = zip(*part)
            units.append(Unit("files", "", first, len(part), files=tuple(files), names=tuple(names)))
            first += len(part)
        run = []

    for kind, path, name in entries:
        if kind == "file":
            run.append((str(path.resolve()), next(file_names)))
            continue
        flush()
        new = (_array_units if kind == "array" else _parquet_units)(
            path, name, first, unit_images, image_column, name_column
        )
        units.extend(new)
        first += sum(u.count for u in new)
    flush()
    if first == 0:
        shown = ", ".join(map(str, paths)) or "(no paths)"
        raise InvalidImageError(
            f"no images in {shown}: looked for {', '.join(IMAGE_SUFFIXES)} files, "
            f".npy/.npz shards and .parquet files (hidden files are skipped)"
        )
    return Plan(units, first)


def _kind_of(path: Path, *, top: bool) -> str | None:
    suffix = path.suffix.lower()
    if suffix in ARRAY_SUFFIXES:
        return "array"
    if suffix == PARQUET_SUFFIX:
        return "parquet"
    if suffix in IMAGE_SUFFIXES or top:  # a file named on the command line is sniffed, whatever its suffix
        return "file"
    return None


def _walk(root: Path) -> Iterator[tuple[str, Path, str]]:
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith("."):
                continue
            path = Path(folder, name)
            kind = _kind_of(path, top=False)
            if kind is not None:
                yield kind, path, path.relative_to(root).with_suffix("").as_posix()


def _failed(path: Path | str, name: str, first: int, error: str) -> Unit:
    return Unit("failed", str(path), first, 1, names=(name,), error=error)


def _array_units(path: Path, name: str, first: int, unit_images: int, *_) -> list[Unit]:
    """Units of one shard, from its header alone (``.npz``: the member's header)."""
    try:
        if path.suffix.lower() == ".npy":
            key = ""
            with open_regular_file(path, "array file") as f:  # a FIFO named x.npy must not block the plan
                shape, dtype = _read_npy_header(f)
        else:
            with open_regular_file(path, "array file") as f, zipfile.ZipFile(f) as archive:
                key = _pick_npz_member(archive.namelist(), path)
                with archive.open(key + ".npy") as f:
                    shape, dtype = _read_npy_header(f)
    except (OSError, ValueError, zipfile.BadZipFile, InvalidImageError) as e:
        return [_failed(path, name, first, f"cannot read array file {path}: {e}")]
    problem = _array_problem(shape, dtype)
    if problem:
        return [_failed(path, name, first, f"{path}: {problem}")]
    count = 1 if len(shape) == 2 else shape[0]
    kind = "npy" if not key else "npz"
    if kind == "npz":  # a compressed member cannot be sliced without inflating it whole
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if nbytes > MAX_LOADED_BYTES:
            return [
                _failed(
                    path,
                    name,
                    first,
                    f"{path}: array {key!r} is {nbytes / 2**20:.0f} MiB, over the {MAX_LOADED_BYTES / 2**20:.0f} MiB "
                    "limit for .npz members (they are inflated whole); save it as .npy (read in slices) or split it",
                )
            ]
        unit_images = max(count, 1)
    return [
        Unit(kind, str(path.resolve()), first + s, min(unit_images, count - s), start=s, key=key, prefix=name)
        for s in range(0, count, unit_images)
    ]


def _read_npy_header(f) -> tuple[tuple[int, ...], np.dtype]:
    version = np.lib.format.read_magic(f)
    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, _, dtype = read(f)
    return tuple(int(s) for s in shape), dtype


def _pick_npz_member(members: list[str], path: Path) -> str:
    keys = [m[: -len(".npy")] for m in members if m.endswith(".npy")]
    for key in ("images", "x"):
        if key in keys:
            return key
    if len(keys) == 1:
        return keys[0]
    raise InvalidImageError(
        f"cannot tell which array holds the images among {keys}; name it 'images' (or 'x'), or save only one array"
    )


def _array_problem(shape: tuple[int, ...], dtype: np.dtype) -> str | None:
    if not (dtype == np.uint8 or np.issubdtype(dtype, np.floating)):
        return f"dtype {dtype} is not an image dtype; expected uint8 0..255 or float 0..1"
    if len(shape) == 4 and shape[-1] != 1:
        return f"grayscale only: shape {shape} has {shape[-1]} channels; convert to (N, H, W) first"
    if len(shape) not in (2, 3, 4):
        return f"expected shape (H, W), (N, H, W) or (N, H, W, 1), got {shape}"
    if 0 in shape:
        return f"the array is empty (shape {shape})"
    return None


def _parquet_units(
    path: Path, name: str, first: int, unit_images: int, image_column: str, name_column: str
) -> list[Unit]:
    """Units of one Parquet file: slices of its row groups, from the footer alone."""
    pa, pq = require_pyarrow("Parquet sources")
    try:
        with open_regular_file(path, "Parquet file") as f:  # a FIFO named x.parquet must not block the plan
            meta = pq.ParquetFile(f).metadata
        columns = set(meta.schema.to_arrow_schema().names)
    except InvalidImageError as e:
        return [_failed(path, name, first, str(e))]
    except (OSError, pa.ArrowException) as e:
        return [_failed(path, name, first, f"cannot read Parquet file {path}: {e}")]
    if image_column not in columns:
        return [
            _failed(
                path,
                name,
                first,
                f"{path} has no column {image_column!r} (it has {sorted(columns)}); name it with --image-column",
            )
        ]
    names = name_column if name_column in columns else ""
    units, row = [], 0
    for g in range(meta.num_row_groups):
        group = meta.row_group(g)
        n = group.num_rows
        if group.total_byte_size > MAX_LOADED_BYTES:
            units.append(
                _failed(
                    path,
                    f"{name}[{row}:{row + n}]",
                    first,
                    f"{path}: row group {g} is {group.total_byte_size / 2**20:.0f} MiB, over the "
                    f"{MAX_LOADED_BYTES / 2**20:.0f} MiB limit; rewrite the file with smaller row groups",
                )
            )
            first += 1
        else:
            for s in range(0, n, unit_images):
                count = min(unit_images, n - s)
                units.append(
                    Unit(
                        "parquet",
                        str(path.resolve()),
                        first,
                        count,
                        start=row + s,
                        group=g,
                        key=image_column,
                        name_column=names,
                        prefix=name,
                    )
                )
                first += count
        row += n
    return units


# --- reading --------------------------------------------------------------------------
def read_unit(unit: Unit, shape: tuple[int, int], chunk: int) -> Iterator[Images]:
    """The unit's images in batches of at most ``chunk``; every image of the unit appears once,
    as pixels or as an error."""
    if unit.kind == "failed":
        yield _batch(unit, 0, [None], [unit.error], shape)
        return
    readers = {"files": _read_files, "npy": _read_array, "npz": _read_array, "parquet": _read_parquet}
    done = 0
    try:
        for images in readers[unit.kind](unit, shape, chunk):
            done += len(images.names)
            yield images
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error, MemoryError) as e:
        # The rest of the unit is unreadable (a shard vanished or is damaged): report each image.
        message = f"cannot read {unit.path}: {e}"
        for s in range(done, unit.count, chunk):
            n = min(chunk, unit.count - s)
            yield _batch(unit, s, [None] * n, [message] * n, shape)


def _batch(unit: Unit, offset: int, images: list, errors: list[str], shape: tuple[int, int]) -> Images:
    """Stack per-image results; a source of floats stays float32 (what ``Encoder.compress`` sees)."""
    floats = any(img is not None and img.dtype != np.uint8 for img in images)
    pixels = np.zeros((len(images), *shape), np.float32 if floats else np.uint8)
    for i, img in enumerate(images):
        if img is not None:
            pixels[i] = img if not floats or img.dtype != np.uint8 else img.astype(np.float32) / np.float32(255)
    index = np.arange(unit.first + offset, unit.first + offset + len(images), dtype=np.int64)
    names = [unit.row_name(offset + i) for i in range(len(images))]
    return Images(index, names, pixels, errors)


def _checked(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """One image as uint8 or float32 (N.B. floats keep their values), or InvalidImageError."""
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if image.shape != tuple(shape):
        raise InvalidImageError(
            f"image is {'x'.join(map(str, image.shape))}, the model takes {shape[0]}x{shape[1]}; "
            "resize or crop it first"
        )
    if image.dtype == np.uint8:
        return image
    if np.issubdtype(image.dtype, np.floating):
        if not np.isfinite(image).all():
            raise InvalidImageError("image has NaN or inf pixels; expected floats in [0, 1]")
        if image.min() < 0 or image.max() > 1:
            raise InvalidImageError(
                f"float pixels must be in [0, 1], got {float(image.min()):g}..{float(image.max()):g}"
            )
        return image.astype(np.float32)
    if np.issubdtype(image.dtype, np.integer):
        if image.min() < 0 or image.max() > 255:
            raise InvalidImageError(f"integer pixels must be 0..255, got {int(image.min())}..{int(image.max())}")
        return image.astype(np.uint8)
    raise InvalidImageError(f"dtype {image.dtype} is not an image dtype; expected uint8 0..255 or float 0..1")


def _read_files(unit: Unit, shape: tuple[int, int], chunk: int) -> Iterator[Images]:
    from compressor.io.files import read_image

    for s in range(0, unit.count, chunk):
        images, errors = [], []
        for path in unit.files[s : s + chunk]:
            try:
                size = os.path.getsize(path)
                if size > MAX_IMAGE_FILE_BYTES:
                    raise InvalidImageError(
                        f"{path} is {size / 2**20:.0f} MiB, over the {MAX_IMAGE_FILE_BYTES / 2**20:.0f} MiB limit "
                        "for one image file"
                    )
                images.append(_checked(read_image(path), shape))
                errors.append("")
            except (InvalidImageError, OSError) as e:
                images.append(None)
                errors.append(str(e) if isinstance(e, InvalidImageError) else f"cannot read {path}: {e}")
        yield _batch(unit, s, images, errors, shape)


def _read_array(unit: Unit, shape: tuple[int, int], chunk: int) -> Iterator[Images]:
    if unit.kind == "npy":
        arr = np.load(unit.path, mmap_mode="r", allow_pickle=False)
    else:
        with zipfile.ZipFile(unit.path) as archive, archive.open(unit.key + ".npy") as f:
            arr = np.lib.format.read_array(f, allow_pickle=False)
    if arr.ndim == 2:
        arr = arr[None]
    for s in range(0, unit.count, chunk):
        block = np.asarray(arr[unit.start + s : unit.start + min(s + chunk, unit.count)])
        images, errors = [], []
        for image in block:
            try:
                images.append(_checked(image, shape))
                errors.append("")
            except InvalidImageError as e:
                images.append(None)
                errors.append(str(e))
        yield _batch(unit, s, images, errors, shape)


def _read_parquet(unit: Unit, shape: tuple[int, int], chunk: int) -> Iterator[Images]:
    _, pq = require_pyarrow("Parquet sources")
    columns = [unit.key] + ([unit.name_column] if unit.name_column else [])
    pf = pq.ParquetFile(unit.path)
    group_start = sum(pf.metadata.row_group(g).num_rows for g in range(unit.group))
    table = pf.read_row_group(unit.group, columns=columns).slice(unit.start - group_start, unit.count)
    for s in range(0, unit.count, chunk):
        piece = table.slice(s, chunk)
        values = piece.column(unit.key).to_pylist()
        given = piece.column(unit.name_column).to_pylist() if unit.name_column else [None] * len(values)
        images, errors, names = [], [], []
        for i, (value, name) in enumerate(zip(values, given)):
            name = name if isinstance(name, str) and name else unit.row_name(s + i)
            names.append(name)
            try:
                images.append(_checked(_parquet_image(value, name, shape), shape))
                errors.append("")
            except InvalidImageError as e:
                images.append(None)
                errors.append(str(e))
        batch = _batch(unit, s, images, errors, shape)
        batch.names = names
        yield batch


def _parquet_image(value, name: str, shape: tuple[int, int]) -> np.ndarray:
    if isinstance(value, dict):  # Hugging Face datasets' Image feature: {"bytes": ..., "path": ...}
        if value.get("bytes") is None:
            raise InvalidImageError(f"{name}: the image struct has no bytes (only a path); embed the image bytes")
        value = value["bytes"]
    if value is None:
        raise InvalidImageError(f"{name}: no image (null)")
    if isinstance(value, (bytes, bytearray)):
        return decode_image(bytes(value), name)
    if isinstance(value, list):
        try:
            arr = np.asarray(value)
        except ValueError as e:
            raise InvalidImageError(f"{name}: the pixel list is ragged ({e})") from None
        if arr.ndim == 1 and arr.size == shape[0] * shape[1]:
            arr = arr.reshape(shape)
        if arr.dtype == object or arr.ndim != 2:
            raise InvalidImageError(
                f"{name}: expected {shape[0]}x{shape[1]} pixels as a flat or nested list, got shape {arr.shape}"
            )
        return arr
    raise InvalidImageError(f"{name}: an image cell of type {type(value).__name__} is not supported")
