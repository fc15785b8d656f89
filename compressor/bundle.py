"""Read a model bundle and hand out verified model bytes (format: docs/bundle.md).

A bundle directory holds ``manifest.json`` plus two self-sufficient sub-bundles,
``encoder/`` (for the camera) and ``decoder/`` (for the gateway). Each sub-bundle has its own
``manifest.json`` that lists every file with its SHA-256 and size, and ``coding.json`` with
the step sizes and integer entropy tables that decide the bytes. Copying only ``decoder/``
to a device is enough to decode.

Every file is read into memory, its size and SHA-256 checked against the manifest, and only
then passed on; a tampered, truncated or missing file raises before any runtime sees it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from compressor.errors import BundleNotFoundError, IntegrityError, ManifestError, UnsupportedBundleVersionError
from compressor.runtime.sessions import TensorSpec

FORMAT = "vae-compressor-bundle"
FORMAT_VERSION = 1
ROLES = ("encoder", "decoder")
FORMATS = ("tflite", "onnx")
PRECISIONS = ("fp32", "int8")
MAX_FILE_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class FileEntry:
    """One model file as the manifest describes it."""

    path: str
    role: str
    format: str
    precision: str
    batch: int | None
    input: TensorSpec
    output: TensorSpec
    sha256: str
    size: int


@dataclass(frozen=True)
class Part:
    """A verified sub-bundle: ``encoder/`` or ``decoder/``."""

    root: Path
    role: str
    model_id: str
    image_shape: tuple[int, int]
    latent_dim: int
    binarize: bool
    files: tuple[FileEntry, ...]
    coding_sha256: str
    coding_size: int
    manifest: dict

    def select(self, file_format: str, precision: str) -> list[FileEntry]:
        """Files of one format and precision, smallest batch first (None = dynamic last)."""
        found = [f for f in self.files if f.format == file_format and f.precision == precision]
        if not found:
            have = sorted({(f.format, f.precision) for f in self.files})
            raise BundleNotFoundError(
                f"{self.root}: no {precision} {file_format} {self.role} in this bundle (it has {have})"
            )
        return sorted(found, key=lambda f: (f.batch is None, f.batch or 0))

    def read(self, entry: FileEntry) -> bytes:
        return _read_verified(self.root, entry.path, entry.sha256, entry.size)

    def coding(self) -> dict:
        """coding.json (steps and entropy tables), verified like every model file."""
        raw = _read_verified(self.root, "coding.json", self.coding_sha256, self.coding_size)
        try:
            return json.loads(raw)
        except ValueError as e:
            raise ManifestError(f"{self.root}/coding.json is not valid JSON: {e}") from e


def load_part(path: str | Path, role: str | None = None) -> Part:
    """Open ``path`` as a sub-bundle; a top-level bundle is accepted when ``role`` says which half."""
    root = Path(path)
    if not root.is_dir():
        raise BundleNotFoundError(f"bundle directory not found: {root}")
    manifest = _read_manifest(root)
    if "parts" in manifest:  # a top-level bundle: descend into the requested half
        if role is None:
            raise ManifestError(f"{root} is a full bundle; open {root}/encoder or {root}/decoder")
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, got {role!r}")
        return load_part(root / role, role)
    part = _parse_part(root, manifest)
    if role is not None and part.role != role:
        raise ManifestError(f"{root} is the {part.role} sub-bundle, but the {role} was asked for")
    return part


def load_any_part(path: str | Path) -> Part:
    """Either half of a bundle: the decoder of a full bundle, or the part ``path`` is."""
    root = Path(path)
    if not root.is_dir():
        raise BundleNotFoundError(f"bundle directory not found: {root}")
    return load_part(root, "decoder" if "parts" in _read_manifest(root) else None)


def load_manifest(path: str | Path) -> dict:
    """The checked top-level or sub-bundle manifest as a dict (for ``compressor info``)."""
    return _read_manifest(Path(path))


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _read_manifest(root: Path) -> dict:
    mpath = root / "manifest.json"
    if not mpath.is_file():
        raise BundleNotFoundError(
            f"{root} has no manifest.json: not a model bundle (make one with 'python -m export export')"
        )
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise ManifestError(f"{mpath} is not valid JSON: {e}") from e
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ManifestError(f"{mpath} is not a {FORMAT} manifest")
    version = manifest.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise ManifestError(f"{mpath}: format_version must be an integer")
    if version > FORMAT_VERSION:
        raise UnsupportedBundleVersionError(
            f"{mpath} has bundle format version {version}; this library reads up to {FORMAT_VERSION}. "
            "Upgrade vae-compressor on this device."
        )
    if version < 1:
        raise UnsupportedBundleVersionError(f"{mpath}: unknown bundle format version {version}")
    return manifest


def _parse_part(root: Path, m: dict) -> Part:
    where = f"{root}/manifest.json"
    role = _get(m, "role", str, where)
    if role not in ROLES:
        raise ManifestError(f"{where}: role must be one of {ROLES}, got {role!r}")
    model_id = _get(m, "model_id", str, where)
    if len(model_id) != 16 or any(c not in "0123456789abcdef" for c in model_id):
        raise ManifestError(f"{where}: model_id must be 16 lowercase hex digits, got {model_id!r}")
    shape = _get(m, "image_shape", list, where)
    if len(shape) != 2 or not all(isinstance(v, int) and 4 <= v <= 4096 and v % 4 == 0 for v in shape):
        raise ManifestError(f"{where}: image_shape must be [H, W], multiples of 4, got {shape!r}")
    latent = _get(m, "latent_dim", int, where)
    if not 1 <= latent <= 4096:
        raise ManifestError(f"{where}: latent_dim out of range: {latent}")
    coding = _get(m, "coding", dict, where)
    files = tuple(parse_file(e, where) for e in _get(m, "files", list, where))
    if not files:
        raise ManifestError(f"{where}: lists no model files")
    if any(f.role != role for f in files):
        raise ManifestError(f"{where}: a file of another role is listed in the {role} sub-bundle")
    return Part(
        root=root,
        role=role,
        model_id=model_id,
        image_shape=(shape[0], shape[1]),
        latent_dim=latent,
        binarize=_get(m, "binarize", bool, where),
        files=files,
        coding_sha256=_get(coding, "sha256", str, where),
        coding_size=_get(coding, "bytes", int, where),
        manifest=m,
    )


def parse_file(e, where: str) -> FileEntry:
    if not isinstance(e, dict):
        raise ManifestError(f"{where}: each entry of 'files' must be an object")
    path = _get(e, "path", str, where)
    if "/" in path or "\\" in path or path in ("", ".", ".."):
        raise ManifestError(f"{where}: file path must be a plain file name, got {path!r}")
    fmt, prec = _get(e, "format", str, where), _get(e, "precision", str, where)
    if fmt not in FORMATS or prec not in PRECISIONS:
        raise ManifestError(f"{where}: {path}: unknown format/precision {fmt}/{prec}")
    batch = e.get("batch")
    if batch is not None and not (isinstance(batch, int) and 1 <= batch <= 4096):
        raise ManifestError(f"{where}: {path}: batch must be null or 1..4096")
    return FileEntry(
        path=path,
        role=_get(e, "role", str, where),
        format=fmt,
        precision=prec,
        batch=batch,
        input=_spec(_get(e, "input", dict, where), where),
        output=_spec(_get(e, "output", dict, where), where),
        sha256=_get(e, "sha256", str, where),
        size=_get(e, "bytes", int, where),
    )


def _spec(d: dict, where: str) -> TensorSpec:
    q = d.get("quantization") or {}
    return TensorSpec(
        name=_get(d, "name", str, where),
        shape=tuple(_get(d, "shape", list, where)),
        dtype=_get(d, "dtype", str, where),
        scale=float(q.get("scale", 0.0)),
        zero_point=int(q.get("zero_point", 0)),
    )


def _get(d: dict, key: str, kind: type, where: str):
    if key not in d:
        raise ManifestError(f"{where}: missing required key {key!r}")
    v = d[key]
    ok = isinstance(v, kind) and not (kind is int and isinstance(v, bool))
    if not ok:
        raise ManifestError(f"{where}: {key!r} must be {kind.__name__}, got {type(v).__name__}")
    return v


def _read_verified(root: Path, name: str, sha256: str, size: int) -> bytes:
    path = root / name
    if not path.is_file():
        raise BundleNotFoundError(f"{path} is listed in the manifest but missing; copy the whole sub-bundle")
    actual = path.stat().st_size
    if actual != size or size > MAX_FILE_BYTES:
        raise IntegrityError(f"{path} is {actual} bytes, the manifest says {size}: damaged or replaced")
    data = path.read_bytes()
    digest = sha256_hex(data)
    if digest != sha256:
        raise IntegrityError(
            f"{path} does not match its SHA-256 in the manifest (got {digest[:16]}…, expected {sha256[:16]}…): "
            "the file was modified; re-export or re-copy the bundle"
        )
    return data
