"""The Parquet files of dataset jobs (layout: docs/format.md) and the writers that make them.

Two layouts, one row per input, in input order:

* **codes** (``encode-dataset``): ``index`` int64, ``name`` string, ``code`` binary (the
  self-contained message of :meth:`compressor.Encoder.compress`, null on error), ``bytes``
  int32, ``mode`` string, ``step`` float64, ``error`` string (null on success);
* **images** (``decode-dataset``): ``index``, ``name``, ``image`` binary (an 8-bit grayscale
  PNG, null on error), ``error``.

The file's key-value metadata ``vae_compressor`` holds JSON: format name and version, kind,
model id, image shape. A codes file is refused by a decoder of another model before any
row is decoded.

The writers check what the engines deliver: row ``index`` values must be exactly
``0, 1, 2, ...`` -- a lost, repeated or reordered row (a worker that died and was retried
badly) stops the job with :class:`~compressor.errors.DatasetError` and nothing is written.
The Parquet file appears atomically when the job ends (:func:`compressor.io.atomic.atomic_open`).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from compressor.errors import DatasetError, InvalidImageError, ModelMismatchError
from compressor.io.arrays import open_regular_file
from compressor.jobs.sources import MAX_LOADED_BYTES, Plan, Unit, require_pyarrow
from compressor.names import Numbering

FORMAT = "vae-compressor-dataset"
VERSION = 1
METADATA_KEY = b"vae_compressor"
#: Rows per Parquet row group written (also the most rows a writer buffers).
ROW_GROUP_ROWS = 65536
#: A message longer than this is reported, not decoded (a lossless 28x28 digit is ~25 bytes).
MAX_CODE_BYTES = 1024 * 1024
#: Errors kept in memory for the summary (all of them are in the file).
SHOWN_ERRORS = 20


def codes_schema(pa):
    return pa.schema(
        [
            ("index", pa.int64()),
            ("name", pa.string()),
            ("code", pa.binary()),
            ("bytes", pa.int32()),
            ("mode", pa.string()),
            ("step", pa.float64()),
            ("error", pa.string()),
        ]
    )


def images_schema(pa):
    return pa.schema([("index", pa.int64()), ("name", pa.string()), ("image", pa.binary()), ("error", pa.string())])


def codes_table(pa, *, index, names, codes, modes, steps, errors):
    sizes = [None if c is None else len(c) for c in codes]
    return pa.Table.from_arrays(
        [
            pa.array(index, pa.int64()),
            pa.array(names, pa.string()),
            pa.array(codes, pa.binary()),
            pa.array(sizes, pa.int32()),
            pa.array(modes, pa.string()),
            pa.array(steps, pa.float64()),
            pa.array(errors, pa.string()),
        ],
        schema=codes_schema(pa),
    )


def images_table(pa, *, index, names, images, errors):
    return pa.Table.from_arrays(
        [pa.array(index, pa.int64()), pa.array(names, pa.string()), pa.array(images, pa.binary()), pa.array(errors)],
        schema=images_schema(pa),
    )


def metadata(kind: str, **fields) -> dict[bytes, bytes]:
    return {METADATA_KEY: json.dumps({"format": FORMAT, "version": VERSION, "kind": kind, **fields}).encode()}


# --- reading a codes file ---------------------------------------------------------------
def plan_codes(path: str | os.PathLike[str], *, model_id: bytes, unit_rows: int) -> Plan:
    """Units over a codes file (slices of its row groups), after checking it is one for this model."""
    pa, pq = require_pyarrow("Codes files")
    try:
        # The footer is read from the file checked to be regular (a FIFO would block the open
        # until a writer comes), not from whatever the path names a moment later.
        with open_regular_file(path, "codes file") as f:
            pf = pq.ParquetFile(f)
            schema, meta = pf.schema_arrow, pf.metadata
    except InvalidImageError as e:
        raise DatasetError(str(e)) from None
    except (OSError, pa.ArrowException) as e:
        raise DatasetError(f"cannot read {path} as Parquet: {e}") from e
    missing = {"name", "code"} - set(schema.names)
    if missing:
        raise DatasetError(
            f"{path} is not a codes file: it lacks column(s) {sorted(missing)} (make one with encode-dataset)"
        )
    text = (pa.string(), pa.large_string(), pa.null())  # null: a column with no value at all
    wanted = {"name": text, "code": (pa.binary(), pa.large_binary()), "error": text}
    for column, types in wanted.items():
        if column in schema.names and schema.field(column).type not in types:
            raise DatasetError(
                f"{path} is not a codes file: its column {column!r} holds {schema.field(column).type}, "
                f"not {types[0]} (make one with encode-dataset)"
            )
    info = _file_info(schema, path)
    if info.get("kind", "codes") != "codes":
        raise DatasetError(f"{path} holds {info['kind']}, not codes; decode-dataset reads encode-dataset's output")
    if "model_id" in info and info["model_id"] != model_id.hex():
        raise ModelMismatchError(
            f"{path} was coded with model {info['model_id']}, this bundle is {model_id.hex()}: "
            "decode it with the bundle that made it"
        )
    units, row = [], 0
    for g in range(meta.num_row_groups):
        n = meta.row_group(g).num_rows
        size = meta.row_group(g).total_byte_size
        if size > MAX_LOADED_BYTES:  # a row group is read whole
            raise DatasetError(
                f"{path}: row group {g} is {size / 2**20:.0f} MiB, over the {MAX_LOADED_BYTES / 2**20:.0f} MiB "
                "limit; encode-dataset writes row groups of 65,536 rows (a few MiB)"
            )
        for s in range(0, n, unit_rows):
            units.append(Unit("codes", str(Path(path).resolve()), row + s, min(unit_rows, n - s), start=s, group=g))
        row += n
    if row == 0:
        raise DatasetError(f"{path} has no rows")
    return Plan(units, row)


def _file_info(schema, path) -> dict:
    raw = (schema.metadata or {}).get(METADATA_KEY)
    if raw is None:
        return {}
    try:
        info = json.loads(raw)
    except ValueError as e:
        raise DatasetError(f"{path}: its vae_compressor metadata is not JSON ({e})") from e
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        raise DatasetError(f"{path}: its vae_compressor metadata does not name the {FORMAT} format")
    if not isinstance(info.get("version"), int) or info["version"] > VERSION:
        raise DatasetError(f"{path} uses dataset format version {info.get('version')}; upgrade vae-compressor")
    return info


def read_codes(unit: Unit, chunk: int):
    """The rows of a ``codes`` unit as dicts of lists, ``chunk`` rows at a time; ``index`` is the
    row's position in the codes file."""
    _, pq = require_pyarrow("Codes files")
    pf = pq.ParquetFile(unit.path)
    columns = ["name", "code"] + (["error"] if "error" in pf.schema_arrow.names else [])
    rows = pf.read_row_group(unit.group, columns=columns).slice(unit.start, unit.count)
    for s in range(0, unit.count, chunk):
        piece = rows.slice(s, chunk)
        n = piece.num_rows
        names = piece.column("name").to_pylist()
        yield {
            "index": list(range(unit.first + s, unit.first + s + n)),
            "name": [name if isinstance(name, str) else f"row[{unit.first + s + i}]" for i, name in enumerate(names)],
            "code": piece.column("code").to_pylist(),
            "error": piece.column("error").to_pylist() if "error" in columns else [None] * n,
        }


# --- writing ------------------------------------------------------------------------------
@dataclass
class Tally:
    """What a writer saw: rows, rows with an error, code bytes, and the first errors."""

    rows: int = 0
    failed: int = 0
    code_bytes: int = 0
    errors: list[tuple[str, str]] = field(default_factory=list)

    def add(self, names: list, errors: list) -> None:
        for name, error in zip(names, errors):
            if error is not None:
                self.failed += 1
                if len(self.errors) < SHOWN_ERRORS:
                    self.errors.append((name, error))


class _OrderCheck:
    """Rows must arrive as index 0, 1, 2, ... and stop at ``total``: nothing lost, nothing twice."""

    def __init__(self, total: int):
        self.total, self.next = total, 0

    def take(self, index: list[int]) -> None:
        expected = range(self.next, self.next + len(index))
        if list(index) != list(expected):
            first_bad = next(i for i, (a, b) in enumerate(zip(index, expected)) if a != b) if index else 0
            raise DatasetError(
                f"rows arrived out of order: expected index {expected[first_bad]}, got {index[first_bad]} "
                "(a retried worker repeated or lost rows); nothing was written"
            )
        self.next += len(index)
        if self.next > self.total:
            raise DatasetError(f"more rows than inputs ({self.next} > {self.total}); nothing was written")

    def finish(self) -> None:
        if self.next != self.total:
            raise DatasetError(f"{self.total - self.next} of {self.total} rows never arrived; nothing was written")


class ParquetSink:
    """Write tables of one schema to ``path``: atomically, checked, in row groups."""

    def __init__(self, path, schema, meta: dict[bytes, bytes], total: int):
        self.pa, self.pq = require_pyarrow()
        self.path, self.schema = Path(path), schema.with_metadata(meta)
        self.check, self.tally = _OrderCheck(total), Tally()
        self._pending, self._pending_rows = [], 0
        self._stack = contextlib.ExitStack()

    def __enter__(self):
        from compressor.io.atomic import atomic_open

        f = self._stack.enter_context(atomic_open(self.path))
        self._writer = self.pq.ParquetWriter(f, self.schema, compression="zstd")
        return self

    def write(self, t) -> None:
        t = t.cast(self.schema) if t.schema != self.schema else t
        self.check.take(t.column("index").to_pylist())
        self.tally.rows += t.num_rows
        self.tally.add(t.column("name").to_pylist(), t.column("error").to_pylist())
        if "bytes" in t.schema.names:
            self.tally.code_bytes += int(self.pa.compute.sum(t.column("bytes")).as_py() or 0)
        self._pending.append(t)
        self._pending_rows += t.num_rows
        if self._pending_rows >= ROW_GROUP_ROWS:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            self._writer.write_table(self.pa.concat_tables(self._pending), row_group_size=ROW_GROUP_ROWS)
            self._pending, self._pending_rows = [], 0

    def __exit__(self, kind, value, tb):
        error = value
        if kind is None:
            try:
                self.check.finish()
                self._flush()
                self._writer.close()
            except BaseException as e:
                error = e
        if error is None:
            return self._stack.__exit__(None, None, None)  # fsync, rename: the file appears
        with contextlib.suppress(Exception):
            self._writer.close()
        self._stack.__exit__(type(error), error, error.__traceback__)  # removes the temporary file
        if error is not value:
            raise error
        return False


class FolderSink:
    """Write decoded images as ``DIR/NAME.png`` (each atomically); names become safe paths.

    A name with ``/`` makes subfolders; a name that would leave ``DIR`` (``..``, absolute,
    ``\\``, NUL) is an error row, and a repeated name gets ``-1``, ``-2``, ... (case-insensitive).
    """

    def __init__(self, folder, total: int):
        self.folder = Path(folder)
        self.check, self.tally = _OrderCheck(total), Tally()
        self._names = Numbering()  # a repeated name (case or Unicode composition too) is numbered

    def __enter__(self):
        self.folder.mkdir(parents=True, exist_ok=True)
        return self

    def write(self, t) -> None:
        from compressor.io.atomic import atomic_write_bytes

        self.check.take(t.column("index").to_pylist())
        names, images, errors = (t.column(c).to_pylist() for c in ("name", "image", "error"))
        for i, (name, png) in enumerate(zip(names, images)):
            if png is None:
                continue
            problem = _path_problem(name)
            if problem:
                errors[i] = f"name {name!r} {problem}: not written"
                continue
            target = self.folder / self._names.take(name)
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                atomic_write_bytes(target.with_name(target.name + ".png"), png)
            except OSError as e:  # a name this file system cannot hold is the row's error, not the job's
                if e.errno not in _NAME_ERRNOS:
                    raise
                errors[i] = f"name {name!r:.120} cannot be a file in {self.folder} ({e.strerror}): not written"
        self.tally.rows += t.num_rows
        self.tally.add(names, errors)

    def __exit__(self, kind, value, tb):
        if kind is None:
            self.check.finish()
        return False


#: What a name alone can cause: a folder made for ``a.png/b`` in the way of ``a``, a file ``a/b.png``
#: in the way of the folder ``a/b.png/``, a component over the file system's 255 bytes.
_NAME_ERRNOS = frozenset({errno.EISDIR, errno.ENOTDIR, errno.EEXIST, errno.ENAMETOOLONG})


def _path_problem(name: str) -> str | None:
    if not name or len(name) > 1000:
        return "is empty or longer than 1000 characters"
    if "\\" in name or "\0" in name or name.startswith("/"):
        return "has a backslash, a NUL or a leading /"
    if any(part in ("", ".", "..") for part in name.split("/")):
        return "has an empty, '.' or '..' path component"
    return None
