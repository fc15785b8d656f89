"""Export to a bundle: real TFLite/ONNX files, validated, verified on load."""

import json
import re
import shutil

import numpy as np
import pytest

from compressor import bundle as B
from compressor.errors import BundleNotFoundError, IntegrityError, ManifestError, UnsupportedBundleVersionError
from tests.conftest import ROOT, run_without_tensorflow

EXPECTED_FILES = {f"{role}_{p}_b{b}.tflite" for role in B.ROLES for p in B.PRECISIONS for b in (1, 64)} | {
    f"{role}_{p}.onnx" for role in B.ROLES for p in B.PRECISIONS
}


def test_bundle_holds_every_format_precision_and_batch(bundle_dir):
    names = {p.name for part in B.ROLES for p in (bundle_dir / part).iterdir()}
    assert EXPECTED_FILES <= names
    assert {"manifest.json", "validation.json", "validation.md"} <= {p.name for p in bundle_dir.iterdir()}


def test_every_validation_check_passed_and_is_recorded(bundle_dir):
    report = json.loads((bundle_dir / "validation.json").read_text())
    files = {c["file"] for c in report["checks"]}
    assert EXPECTED_FILES <= files
    assert all(c["ok"] for c in report["checks"])
    assert "✓" in (bundle_dir / "validation.md").read_text()


def test_both_parts_share_one_model_id_and_identical_coding(bundle_dir):
    enc, dec = (B.load_part(bundle_dir / r) for r in B.ROLES)
    top = json.loads((bundle_dir / "manifest.json").read_text())
    assert enc.model_id == dec.model_id == top["model_id"]
    assert enc.coding() == dec.coding()


def test_int8_tflite_files_have_int8_tensors_and_record_both_latent_scales(bundle_dir):
    enc, dec = (B.load_part(bundle_dir / r) for r in B.ROLES)
    e = enc.select("tflite", "int8")[0]
    d = dec.select("tflite", "int8")[0]
    assert e.input.dtype == e.output.dtype == d.input.dtype == d.output.dtype == "int8"
    assert e.input.scale == pytest.approx(1 / 255) and e.input.zero_point == -128
    assert enc.manifest["latent_quantization"]["scale"] == e.output.scale
    assert dec.manifest["latent_quantization"]["scale"] == d.input.scale


DEVICE_SCRIPT = r"""
import json, sys
import numpy as np
from compressor.bundle import load_part
from compressor.runtime.network import Network
root = sys.argv[1]
x = np.load(sys.argv[2])
out = {}
for role in ("encoder", "decoder"):
    part = load_part(root + "/" + role)
    inp = x if role == "encoder" else np.zeros((len(x), part.latent_dim), np.float32)
    for f in part.files:
        runtime = "litert" if f.format == "tflite" else "onnx"
        y = Network(part, runtime=runtime, precision=f.precision, batch=f.batch).run(inp)
        out[f.path] = [list(y.shape), float(np.abs(y).sum())]
assert "tensorflow" not in sys.modules
print(json.dumps(out))
"""


def test_every_file_runs_in_its_runtime_in_a_process_without_tensorflow(bundle_dir, tmp_path):
    from export import datasets

    x = datasets.load("mnist5k").test[:70]
    np.save(tmp_path / "x.npy", x)
    proc = run_without_tensorflow(DEVICE_SCRIPT, str(bundle_dir), str(tmp_path / "x.npy"))
    assert proc.returncode == 0, proc.stderr
    shapes = json.loads(proc.stdout.splitlines()[-1])
    assert set(shapes) == EXPECTED_FILES
    for name, (shape, total) in shapes.items():
        assert shape[0] == 70 and total > 0, name
        assert shape[1:] == ([16] if name.startswith("encoder") else [28, 28, 1]), name


def test_validation_fails_against_a_deliberately_perturbed_decoder(bundle_dir, trained_run):
    from export import datasets, validate
    from export.model import mean_encoder, probability_decoder
    from export.train import load_run

    _, _, enc, dec = load_run(trained_run[0])
    good_enc = mean_encoder(enc)
    weights = dec.get_weights()
    rng = np.random.default_rng(0)
    dec.set_weights([w + rng.normal(0, 0.05, w.shape).astype(w.dtype) for w in weights])
    broken = probability_decoder(dec)
    parts = {r: B.load_part(bundle_dir / r) for r in B.ROLES}
    x = datasets.load("mnist5k").test[:100]
    checks = validate.validate(
        parts, lambda v: good_enc.predict(v, verbose=0), lambda z: broken.predict(z, verbose=0), x
    )
    failed = {c.file for c in checks if not c.ok}
    assert {"decoder_fp32_b1.tflite", "decoder_fp32.onnx"} <= failed
    with pytest.raises(validate.ValidationFailedError, match="decoder_fp32"):
        validate.raise_on_failure(checks)


@pytest.fixture
def bundle_copy(bundle_dir, tmp_path):
    dst = tmp_path / "b"
    shutil.copytree(bundle_dir, dst)
    return dst


def test_a_tampered_model_file_is_refused_before_it_reaches_a_runtime(bundle_copy):
    from compressor.runtime.network import Network

    f = bundle_copy / "decoder" / "decoder_int8_b1.tflite"
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0x01
    f.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="SHA-256"):  # verified when the bundle opens
        Network(B.load_part(bundle_copy / "decoder"), runtime="litert", precision="int8")


def test_a_replaced_file_of_another_size_is_refused(bundle_copy):
    (bundle_copy / "encoder" / "coding.json").write_text("{}")
    with pytest.raises(IntegrityError, match="bytes"):
        B.load_part(bundle_copy / "encoder").coding()


def test_a_missing_model_file_is_named(bundle_copy):
    from compressor.runtime.network import Network

    (bundle_copy / "decoder" / "decoder_fp32.onnx").unlink()
    with pytest.raises(BundleNotFoundError, match="decoder_fp32.onnx"):
        Network(B.load_part(bundle_copy / "decoder"), runtime="onnx", precision="fp32")


def test_a_newer_bundle_version_is_refused_with_upgrade_advice(bundle_copy):
    m = bundle_copy / "decoder" / "manifest.json"
    d = json.loads(m.read_text())
    d["format_version"] = 2
    m.write_text(json.dumps(d))
    with pytest.raises(UnsupportedBundleVersionError, match="Upgrade"):
        B.load_part(bundle_copy / "decoder")


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d: d.pop("model_id"), "model_id"),
        (lambda d: d.update(image_shape=[30, 28]), "image_shape"),
        (lambda d: d["files"][0].update(path="../evil.tflite"), "plain file name"),
        (lambda d: d["files"][0].update(precision="int4"), "precision"),
        (lambda d: d.update(role="camera"), "role"),
    ],
)
def test_a_malformed_manifest_names_the_key_at_fault(bundle_copy, edit, message):
    m = bundle_copy / "encoder" / "manifest.json"
    d = json.loads(m.read_text())
    edit(d)
    m.write_text(json.dumps(d))
    with pytest.raises(ManifestError, match=message):
        B.load_part(bundle_copy / "encoder")


def test_a_directory_without_manifest_is_not_a_bundle(tmp_path):
    with pytest.raises(BundleNotFoundError, match="python -m export export"):
        B.load_part(tmp_path)


def _documented_keys(heading: str) -> set[str]:
    text = (ROOT / "docs" / "bundle.md").read_text()
    section = text.split(heading, 1)[1].split("\n## ", 1)[0]
    keys = set()
    for cell in re.findall(r"^\| (`[^|]+) \|", section, flags=re.M):
        keys |= set(re.findall(r"`([^`]+)`", cell))
    return keys


def test_manifests_match_their_documented_schema(bundle_dir):
    part = json.loads((bundle_dir / "decoder" / "manifest.json").read_text())
    documented = _documented_keys("## Sub-bundle manifest")
    assert set(part) | set(part["files"][0]) == documented
    top = json.loads((bundle_dir / "manifest.json").read_text())
    assert set(top) == _documented_keys("## Top-level manifest")
    coding = json.loads((bundle_dir / "decoder" / "coding.json").read_text())
    documented = _documented_keys("## coding.json")
    assert set(coding) <= documented and documented - set(coding) == {"residual"}  # a binary model's bundle
