"""Read a model bundle and hand out verified model bytes (format: docs/bundle.md).

A bundle directory holds ``manifest.json`` plus two self-sufficient sub-bundles,
``encoder/`` (for the camera) and ``decoder/`` (for the gateway). Each sub-bundle has its own
``manifest.json`` that lists every file with its SHA-256 and size, and ``coding.json`` with
the step sizes and integer entropy tables that decide the bytes. Copying only ``decoder/``
to a device is enough to decode.

Opening a bundle verifies all of it before any runtime exists (:func:`load_part`): the
top-level manifest's hash of the sub-manifest, the size and SHA-256 of every file listed, the
model id recomputed from the decoder files and coding.json, and coding.json's values. Every
JSON document is read within a byte and nesting budget. A model file is hashed again when it
is read for a runtime, so the bytes that were checked are the bytes that run.
"""

from __future__ import annotations

import hashlib
import math
import stat
from dataclasses import dataclass, replace
from pathlib import Path

from compressor import limits
from compressor.coding import coding_file
from compressor.errors import BundleNotFoundError, IntegrityError, ManifestError, UnsupportedBundleVersionError
from compressor.io import jsonfile
from compressor.runtime.sessions import TensorSpec

FORMAT = "vae-compressor-bundle"
FORMAT_VERSION = 1
ROLES = ("encoder", "decoder")
FORMATS = ("tflite", "onnx")
PRECISIONS = ("fp32", "int8")
MAX_FILE_BYTES = 64 * 1024 * 1024
MAX_FILES = 64
DTYPES = ("float32", "int8", "uint8")


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
    coding_json: dict | None = None  # validated at load (None only for parts built by hand at export)

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
        """coding.json (steps and entropy tables), verified and validated when the part was loaded."""
        if self.coding_json is not None:
            return self.coding_json
        raw = _read_verified(self.root, "coding.json", self.coding_sha256, self.coding_size)
        coding = jsonfile.parse(raw, error=ManifestError, where=f"{self.root}/coding.json")
        coding_file.check(coding, latent_dim=self.latent_dim, where=f"{self.root}/coding.json")
        return coding


def load_part(path: str | Path, role: str | None = None) -> Part:
    """Open ``path`` as a sub-bundle; a top-level bundle is accepted when ``role`` says which half.

    Everything is verified here, before any runtime exists: the hash chain from the top-level
    manifest (when one is opened) to the sub-manifest, every file the sub-manifest lists
    (size and SHA-256), the model id recomputed from the decoder files and coding.json, and
    coding.json's contents (:mod:`compressor.coding.coding_file`).
    """
    root = Path(path)
    if not root.is_dir():
        raise BundleNotFoundError(f"bundle directory not found: {root}")
    manifest = _read_manifest(root)
    if "parts" in manifest:  # a top-level bundle: descend into the requested half
        if role is None:
            raise ManifestError(f"{root} is a full bundle; open {root}/encoder or {root}/decoder")
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, got {role!r}")
        return _load_from_top(root, manifest, role)
    part = _load_checked(root, manifest)
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


def model_id_of(coding_sha256: str, decoder_files: dict[str, str]) -> str:
    """The model id: 16 hex digits of SHA-256 over coding.json's and every decoder file's SHA-256.

    Derived from exactly what a receiver runs to turn codes into images, so a retrained or
    re-quantized decoder, or re-estimated tables, get a new id (old codes are refused, not
    mis-decoded), and a device can recompute it from the files it holds.
    """
    h = hashlib.sha256(b"vae-compressor model id 1\n")
    h.update(f"coding.json {coding_sha256}\n".encode())
    for path in sorted(decoder_files):
        h.update(f"{path} {decoder_files[path]}\n".encode())
    return h.hexdigest()[:16]


def _read_json(path: Path, what: str) -> tuple[bytes, object]:
    raw = jsonfile.read_limited(path, max_bytes=limits.MAX_JSON_BYTES, error=ManifestError, what=what)
    return raw, jsonfile.parse(raw, error=ManifestError, where=str(path))


def _read_manifest(root: Path, raw: bytes | None = None) -> dict:
    mpath = root / "manifest.json"
    if raw is None:
        if not mpath.is_file():
            raise BundleNotFoundError(
                f"{root} has no manifest.json: not a model bundle (make one with 'python -m export export')"
            )
        raw, manifest = _read_json(mpath, "bundle manifest")
    else:
        manifest = jsonfile.parse(raw, error=ManifestError, where=str(mpath))
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


def _load_from_top(root: Path, top: dict, role: str) -> Part:
    """The ``role`` half of a full bundle, its sub-manifest checked against the top-level hash."""
    where = f"{root}/manifest.json"
    entry = _get(_get(top, "parts", dict, where), role, dict, where)
    if _get(entry, "manifest", str, where) != f"{role}/manifest.json":
        raise ManifestError(f"{where}: parts.{role}.manifest must be {role}/manifest.json")
    expected = _get(entry, "sha256", str, where)
    sub = root / role / "manifest.json"
    if not sub.is_file():
        raise BundleNotFoundError(f"{sub} is listed in {where} but missing; copy the whole bundle")
    raw = jsonfile.read_limited(sub, max_bytes=limits.MAX_JSON_BYTES, error=ManifestError, what="bundle manifest")
    if sha256_hex(raw) != expected:
        raise IntegrityError(
            f"{sub} does not match its SHA-256 in {where}: the {role} was modified after export; "
            "re-export or re-copy the bundle"
        )
    part = _load_checked(root / role, _read_manifest(root / role, raw))
    if part.role != role:
        raise ManifestError(f"{sub} is the {part.role} sub-bundle, but {where} lists it as the {role}")
    for key in ("model_id", "image_shape", "latent_dim", "binarize"):
        if top.get(key) != part.manifest.get(key):
            raise IntegrityError(f"{where} and {sub} disagree on {key!r}: a mixed or modified bundle; re-export it")
    return part


def _load_checked(root: Path, manifest: dict) -> Part:
    """Parse a sub-manifest, verify every file it lists, recompute the model id, check coding.json."""
    part = _parse_part(root, manifest)
    where = f"{root}/manifest.json"
    for entry in part.files:
        _verify_file(root, entry.path, entry.sha256, entry.size)
    raw = _read_verified(root, "coding.json", part.coding_sha256, part.coding_size)
    coding = jsonfile.parse(raw, error=ManifestError, where=f"{root}/coding.json")
    coding_file.check(coding, latent_dim=part.latent_dim, where=f"{root}/coding.json")
    listed = manifest.get("decoder_files")
    if listed is not None and not (
        isinstance(listed, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in listed.items())
    ):
        raise ManifestError(f"{where}: 'decoder_files' must map file names to SHA-256 hex digests")
    if part.role == "decoder":
        own = {f.path: f.sha256 for f in part.files}
        if listed is not None and listed != own:
            raise IntegrityError(f"{where}: 'decoder_files' differs from the files it lists: a modified bundle")
        listed = own
    if listed is None:
        raise ManifestError(f"{where}: missing required key 'decoder_files' (a bundle from an older export; re-export)")
    if model_id_of(part.coding_sha256, listed) != part.model_id:
        raise IntegrityError(
            f"{where}: model_id {part.model_id} is not the one its decoder files and coding.json give "
            f"({model_id_of(part.coding_sha256, listed)}): the model was modified after export; re-export it"
        )
    return replace(part, coding_json=coding)


def _parse_part(root: Path, m: dict) -> Part:
    where = f"{root}/manifest.json"
    role = _get(m, "role", str, where)
    if role not in ROLES:
        raise ManifestError(f"{where}: role must be one of {ROLES}, got {role!r}")
    model_id = _get(m, "model_id", str, where)
    if len(model_id) != 16 or any(c not in "0123456789abcdef" for c in model_id):
        raise ManifestError(f"{where}: model_id must be 16 lowercase hex digits, got {model_id!r}")
    shape = _get(m, "image_shape", list, where)
    if len(shape) != 2 or not all(_is_int(v) and 4 <= v <= 4096 and v % 4 == 0 for v in shape):
        raise ManifestError(f"{where}: image_shape must be [H, W], multiples of 4, got {shape!r}")
    if shape[0] * shape[1] > limits.MAX_MODEL_PIXELS:
        raise ManifestError(
            f"{where}: image_shape {shape[0]}x{shape[1]} exceeds this library's budget of "
            f"{limits.MAX_MODEL_PIXELS} pixels per model image"
        )
    latent = _get(m, "latent_dim", int, where)
    if not 1 <= latent <= 1024:
        raise ManifestError(f"{where}: latent_dim out of range: {latent}")
    coding = _get(m, "coding", dict, where)
    if coding.get("path", "coding.json") != "coding.json":
        raise ManifestError(f"{where}: coding.path must be coding.json")
    entries = _get(m, "files", list, where)
    if not 1 <= len(entries) <= MAX_FILES:
        raise ManifestError(f"{where}: must list 1..{MAX_FILES} model files, lists {len(entries)}")
    files = tuple(parse_file(e, where) for e in entries)
    if len({f.path for f in files}) != len(files):
        raise ManifestError(f"{where}: a file is listed twice")
    if any(f.role != role for f in files):
        raise ManifestError(f"{where}: a file of another role is listed in the {role} sub-bundle")
    for f in files:
        _check_tensor_shapes(f, role, (shape[0], shape[1]), latent, where)
    _check_same_quantization(files, where)
    return Part(
        root=root,
        role=role,
        model_id=model_id,
        image_shape=(shape[0], shape[1]),
        latent_dim=latent,
        binarize=_get(m, "binarize", bool, where),
        files=files,
        coding_sha256=_sha(coding, where),
        coding_size=_size(coding, where),
        manifest=m,
    )


def parse_file(e, where: str) -> FileEntry:
    if not isinstance(e, dict):
        raise ManifestError(f"{where}: each entry of 'files' must be an object")
    path = _get(e, "path", str, where)
    if len(path.encode("utf-8", "surrogatepass")) > 200:
        raise ManifestError(f"{where}: file path {path[:40]!r}... is longer than 200 bytes")
    if "/" in path or "\\" in path or "\0" in path or path in ("", ".", "..", "coding.json", "manifest.json"):
        raise ManifestError(f"{where}: file path must be a plain file name, got {path!r}")
    fmt, prec = _get(e, "format", str, where), _get(e, "precision", str, where)
    if fmt not in FORMATS or prec not in PRECISIONS:
        raise ManifestError(f"{where}: {path}: unknown format/precision {fmt}/{prec}")
    batch = e.get("batch")
    if batch is not None and not (_is_int(batch) and 1 <= batch <= 4096):
        raise ManifestError(f"{where}: {path}: batch must be null or 1..4096")
    return FileEntry(
        path=path,
        role=_get(e, "role", str, where),
        format=fmt,
        precision=prec,
        batch=batch,
        input=_spec(_get(e, "input", dict, where), f"{where}: {path} input"),
        output=_spec(_get(e, "output", dict, where), f"{where}: {path} output"),
        sha256=_sha(e, where),
        size=_size(e, where),
    )


def _check_tensor_shapes(f: FileEntry, role: str, image_shape: tuple[int, int], latent: int, where: str) -> None:
    """A model file's tensors must be the part's: (batch, latent) on one side and (batch, H, W, 1) on
    the other, with the batch the entry names; the network feeds them arrays of exactly these shapes."""
    image, code = (f.batch, *image_shape, 1), (f.batch, latent)
    expected = (image, code) if role == "encoder" else (code, image)
    for what, spec, want in (("input", f.input, expected[0]), ("output", f.output, expected[1])):
        if tuple(spec.shape) != want:
            shown, got = replace(spec, shape=want).shape_text, list(spec.shape)
            raise ManifestError(f"{where}: {f.path} {what} shape must be {shown} for this {role}, got {got}")


def _check_same_quantization(files: tuple[FileEntry, ...], where: str) -> None:
    """Files of one format and precision (the batch-1 and batch-64 int8 TFLite files) must take
    and give the same dtypes and int8 scales: a Network quantizes every call with the first
    file's, so another batch file's own scale would decode wrong pixels without an error. (The
    export calibrates each batch separately; their scales agree to ~1e-7.)"""
    first: dict[tuple[str, str], FileEntry] = {}
    for f in files:
        ref = first.setdefault((f.format, f.precision), f)
        for what, a, b in (("input", ref.input, f.input), ("output", ref.output, f.output)):
            if not a.quantized_alike(b):
                raise ManifestError(
                    f"{where}: {f.path} and {ref.path} differ in their {what}'s dtype or quantization "
                    f"({b.describe()} against {a.describe()}); one format and precision must share them: "
                    "re-export the bundle"
                )


def _spec(d: dict, where: str) -> TensorSpec:
    shape = _get(d, "shape", list, where)
    if not 1 <= len(shape) <= 8 or not all(v is None or (_is_int(v) and 1 <= v <= 1 << 20) for v in shape):
        raise ManifestError(f"{where}: shape must be 1..8 positive sizes or null, got {shape!r}")
    dtype = _get(d, "dtype", str, where)
    if dtype not in DTYPES:
        raise ManifestError(f"{where}: dtype must be one of {DTYPES}, got {dtype!r}")
    q = d.get("quantization", {})
    if q is None:
        q = {}
    if not isinstance(q, dict):
        raise ManifestError(f"{where}: quantization must be an object")
    scale, zero_point = q.get("scale", 0.0), q.get("zero_point", 0)
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale) or scale < 0:
        raise ManifestError(f"{where}: quantization scale must be a finite number >= 0, got {scale!r}")
    if not _is_int(zero_point) or not -128 <= zero_point <= 255:
        raise ManifestError(f"{where}: quantization zero_point must be an integer -128..255, got {zero_point!r}")
    if dtype in ("int8", "uint8") and scale <= 0:
        raise ManifestError(f"{where}: an {dtype} tensor needs a quantization scale > 0, got {scale!r}")
    return TensorSpec(
        name=_get(d, "name", str, where), shape=tuple(shape), dtype=dtype, scale=float(scale), zero_point=zero_point
    )


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _sha(d: dict, where: str) -> str:
    digest = _get(d, "sha256", str, where)
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise ManifestError(f"{where}: sha256 must be 64 lowercase hex digits, got {digest[:80]!r}")
    return digest


def _size(d: dict, where: str) -> int:
    size = _get(d, "bytes", int, where)
    if not 0 <= size <= MAX_FILE_BYTES:
        raise ManifestError(f"{where}: bytes must be 0..{MAX_FILE_BYTES}, got {size}")
    return size


def _get(d: dict, key: str, kind: type, where: str):
    if not isinstance(d, dict):
        raise ManifestError(f"{where}: expected an object holding {key!r}, got {type(d).__name__}")
    if key not in d:
        raise ManifestError(f"{where}: missing required key {key!r}")
    v = d[key]
    ok = isinstance(v, kind) and not (kind is int and isinstance(v, bool))
    if not ok:
        raise ManifestError(f"{where}: {key!r} must be {kind.__name__}, got {type(v).__name__}")
    return v


def _check_size(path: Path, size: int) -> None:
    try:
        st = path.stat()
    except OSError as e:
        raise BundleNotFoundError(
            f"{path} is listed in the manifest but missing ({e.strerror}); copy the whole sub-bundle"
        ) from None
    if not stat.S_ISREG(st.st_mode):
        raise BundleNotFoundError(f"{path} is listed in the manifest but is not a regular file")
    actual = st.st_size
    if actual != size:
        raise IntegrityError(f"{path} is {actual} bytes, the manifest says {size}: damaged or replaced")


def _mismatch(path: Path, digest: str, sha256: str) -> IntegrityError:
    return IntegrityError(
        f"{path} does not match its SHA-256 in the manifest (got {digest[:16]}…, expected {sha256[:16]}…): "
        "the file was modified; re-export or re-copy the bundle"
    )


def _verify_file(root: Path, name: str, sha256: str, size: int) -> None:
    """Check a listed file's size and SHA-256 in bounded memory (1 MiB at a time)."""
    path = root / name
    _check_size(path, size)
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
                if f.tell() > size:
                    break
    except OSError as e:
        raise BundleNotFoundError(f"cannot read {path}: {e.strerror or e}") from None
    if h.hexdigest() != sha256:
        raise _mismatch(path, h.hexdigest(), sha256)


def _read_verified(root: Path, name: str, sha256: str, size: int) -> bytes:
    path = root / name
    _check_size(path, size)
    try:
        with open(path, "rb") as f:
            data = f.read(size + 1)
    except OSError as e:
        raise BundleNotFoundError(f"cannot read {path}: {e.strerror or e}") from None
    digest = sha256_hex(data)
    if digest != sha256:
        raise _mismatch(path, digest, sha256)
    return data
