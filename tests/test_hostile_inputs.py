"""Hostile and unlucky inputs (issue 11): each is refused with its documented error, in bounded
memory, without touching the output folder, and the CLI never prints a traceback.

The first half needs no model (JSON budgets, coding.json validation, image and array bombs);
the second half uses the session's trained bundle (marked slow): decompression-bomb streams,
tampered bundles, and every CLI command given the wrong kind of path.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from compressor import limits, wire
from compressor.bundle import load_part, model_id_of, sha256_hex
from compressor.coding import coding_file
from compressor.coding.entropy import build_table
from compressor.errors import BundleError, IntegrityError, InvalidImageError, ManifestError
from compressor.io import jsonfile
from compressor.io.files import read_bytes_limited, read_image, read_images
from tests.support import ROOT, mnist5k_test, npz_bomb, png_bomb, run_cli, snapshot, to_uint8

# --- JSON budgets ----------------------------------------------------------------------------


def test_a_deeply_nested_manifest_is_a_manifest_error_not_a_recursion_error(tmp_path):
    (tmp_path / "manifest.json").write_text("[" * 200_000 + "]" * 200_000)
    with pytest.raises(ManifestError, match="nests 200000 levels deep"):
        load_part(tmp_path)


def test_nesting_inside_strings_does_not_count_towards_the_depth():
    assert jsonfile.depth(b'{"a": "[[[[[[[[\\"]]]]", "b": [[1]]}') == 3


def test_an_unterminated_string_of_escaped_quotes_is_skipped_in_one_match_not_one_scan_per_quote():
    # With a closing quote required, each escaped quote restarted a scan to the end: an 80 kB
    # manifest (or a 64 kB MQTT uplink) of them took ~40 s, 8 MB days.
    raw = b'[["' + b'\\"' * 1000 + b"[[["
    assert jsonfile.depth(raw) == 2
    assert jsonfile._STRING.search(raw).span() == (2, len(raw))
    with pytest.raises(ManifestError, match="not valid JSON"):
        jsonfile.parse(raw, error=ManifestError, where="manifest.json")


@pytest.mark.parametrize(
    "text, message",
    [
        ('{"format": NaN}', "NaN is not a number JSON allows"),
        ('{"format": -1e999}', "-1e999 is too large for a number"),  # valid JSON, float('-inf') to Python
        ('{"format": 1, "format": 2}', "'format' appears twice"),
        ('{"format": "vae', "not valid JSON"),
        ("\xff\xfe", "not valid JSON"),
        ("1" * 5000, "not valid JSON"),  # an integer too long to convert
    ],
)
def test_json_that_python_would_accept_or_choke_on_is_a_manifest_error(tmp_path, text, message):
    (tmp_path / "manifest.json").write_bytes(text.encode("latin-1"))
    with pytest.raises(ManifestError, match=message):
        load_part(tmp_path)


def test_an_oversized_manifest_is_refused_before_it_is_read(tmp_path):
    with open(tmp_path / "manifest.json", "wb") as f:
        f.truncate(limits.MAX_JSON_BYTES + 1)
    with pytest.raises(ManifestError, match="may be at most"):
        load_part(tmp_path)


MINIMAL_PART = {
    "format": "vae-compressor-bundle",
    "format_version": 1,
    "role": "decoder",
    "model_id": "0123456789abcdef",
    "image_shape": [28, 28],
    "latent_dim": 16,
    "binarize": True,
    "coding": {"path": "coding.json", "sha256": "0" * 64, "bytes": 10},
    "files": [
        {
            "path": "decoder_int8_b1.tflite",
            "role": "decoder",
            "format": "tflite",
            "precision": "int8",
            "batch": 1,
            "input": {"name": "latent", "shape": [1, 16], "dtype": "int8", "quantization": {"scale": 0.1}},
            "output": {"name": "probs", "shape": [1, 28, 28, 1], "dtype": "int8", "quantization": {"scale": 0.004}},
            "sha256": "0" * 64,
            "bytes": 10,
        }
    ],
}


def _edit(path: str, value):
    def apply(m):
        *keys, last = path.split(".")
        target = m
        for k in keys:
            target = target[int(k)] if k.isdigit() else target[k]
        target[int(last) if last.isdigit() else last] = value

    return apply


@pytest.mark.parametrize(
    "edit, message",
    [
        (_edit("files", {"a": 1}), "'files' must be list"),
        (_edit("files.0", 7), "each entry of 'files' must be an object"),
        (_edit("files.0.input", "latent"), "'input' must be dict"),
        (_edit("files.0.input.shape", ["1", 16]), "shape must be"),
        (_edit("files.0.input.quantization", [0.1]), "quantization must be an object"),
        (_edit("files.0.input.quantization", {"scale": 0}), "needs a quantization scale > 0"),
        (_edit("files.0.input.quantization", {"scale": -1.0}), "finite number >= 0"),
        (_edit("files.0.input.quantization", {"scale": 0.1, "zero_point": "0"}), "zero_point"),
        (_edit("files.0.input.dtype", "float16"), "dtype"),
        (_edit("files.0.batch", True), "batch"),
        (_edit("files.0.bytes", -5), "bytes must be"),
        (_edit("files.0.sha256", "xyz"), "sha256 must be 64"),
        (_edit("files.0.path", "manifest.json"), "plain file name"),
        (_edit("coding", ["coding.json"]), "'coding' must be dict"),
        (_edit("coding.path", "../coding.json"), "coding.path"),
        (_edit("image_shape", [4096, 4096]), "exceeds this library's budget"),
        (_edit("image_shape", [28.0, 28]), "image_shape"),
        (_edit("latent_dim", 1e9), "'latent_dim' must be int"),
        (_edit("binarize", "yes"), "'binarize' must be bool"),
        (lambda m: m["files"].append(copy.deepcopy(m["files"][0])), "listed twice"),
        (_edit("files.0.input.shape", [1, 8]), "input shape must be 1x16 for this decoder"),
        (_edit("files.0.output.shape", [1, 28, 28, 3]), "output shape must be 1x28x28x1"),
        (_edit("files.0.batch", 64), "input shape must be 64x16"),
    ],
)
def test_an_oddly_typed_manifest_is_a_manifest_error_naming_the_key(tmp_path, edit, message):
    manifest = copy.deepcopy(MINIMAL_PART)
    edit(manifest)
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ManifestError, match=message):
        load_part(tmp_path)


# --- coding.json ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def coding():
    rng = np.random.default_rng(0)
    table = build_table(np.rint(rng.normal(size=(2000, 16)) * 3).astype(np.int64)).to_json()
    lossless = {"p1_freq": [1000] * 256, "runtime": "litert", "precision": "int8", "step_index": 1}
    return {"precision": 16, "steps": [0.1, 0.2], "tables": [table, table], "default_step_index": 0} | {
        "lossless": lossless
    }


def test_a_sound_coding_file_passes(coding):
    coding_file.check(coding, latent_dim=16, where="coding.json")


@pytest.mark.parametrize(
    "edit, message",
    [
        (_edit("steps.0", 0), "step 0 must be a finite positive number"),
        (_edit("steps.0", -0.1), "finite positive"),
        (_edit("steps.0", float("nan")), "finite positive"),
        (_edit("steps.1", float("inf")), "finite positive"),
        (_edit("steps.1", "0.2"), "finite positive"),
        (_edit("steps.1", 0.1), "same step twice"),
        (_edit("steps", []), "1..16 numbers"),
        (_edit("steps", [0.1] * 17), "1..16 numbers"),
        (_edit("default_step_index", 2), "default_step_index"),
        (_edit("default_step_index", True), "default_step_index"),
        (_edit("tables", []), "one per step"),
        (_edit("tables.1", {"precision": 16, "lo": [0], "freqs": [[1]]}), "table 1"),
        (_edit("tables.0.freqs.0.0", 0), "table 0"),
        (_edit("lossless.step_index", 2), "lossless.step_index"),
        (_edit("lossless.runtime", "tensorflow"), "lossless.runtime"),
        (_edit("lossless.precision", "int4"), "lossless.precision"),
        (_edit("lossless.p1_freq", [1000] * 255), "256 integers"),
        (_edit("lossless.p1_freq.3", 0), "p1_freq"),
        (_edit("lossless", [1]), "'lossless' must be an object"),
        (_edit("precision", 12), "'precision' must be 16"),
    ],
)
def test_nonsense_in_coding_json_is_refused_with_the_value_named(coding, edit, message):
    bad = copy.deepcopy(coding)
    edit(bad)
    with pytest.raises(ManifestError, match=message):
        coding_file.check(bad, latent_dim=16, where="coding.json")


def test_a_table_for_another_latent_size_is_refused(coding):
    with pytest.raises(ManifestError, match="has 16 dimensions, the model's latent has 8"):
        coding_file.check(coding, latent_dim=8, where="coding.json")


# --- image and array bombs ----------------------------------------------------------------------
#: Reads one input in a child, reporting the read's own seconds and peak memory above the start.
PROBE = """
import json, sys, time
from pathlib import Path
from PIL import Image
Image.init()
from compressor.errors import CompressorError
from compressor.io.files import read_images

def kb(field):
    return int(next(l for l in Path("/proc/self/status").read_text().splitlines() if l.startswith(field)).split()[1])

before = kb("VmRSS")
Path("/proc/self/clear_refs").write_text("5")
t0 = time.perf_counter()
try:
    outcome = str(read_images([sys.argv[1]])[0].shape)
except CompressorError as e:
    outcome = type(e).__name__ + ": " + str(e)
print(json.dumps({"seconds": time.perf_counter() - t0, "extra_mb": (kb("VmHWM") - before) / 1024, "outcome": outcome}))
"""


def _probe(path) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(path)], capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.parametrize(
    "name, make, message",
    [
        ("rgba16.png", lambda: png_bomb(8000, 8000), "8000x8000 pixels"),
        ("grey16.png", lambda: png_bomb(16000, 16000, 16, 0), "256000000 pixels"),
        ("bomb.npz", lambda: npz_bomb((500_000, 28, 28)), "declares 392000000 bytes of array data"),
        ("floats.npz", lambda: npz_bomb((20_000, 28, 28), "<f8"), "bytes of array data"),
    ],
)
def test_a_small_file_declaring_a_huge_image_is_refused_in_bounded_memory(tmp_path, name, make, message):
    path = tmp_path / name
    path.write_bytes(make())
    assert path.stat().st_size <= 1 << 20
    result = _probe(path)
    assert result["outcome"].startswith("InvalidImageError") and message in result["outcome"]
    assert result["extra_mb"] <= 50


def test_an_npy_header_declaring_an_absurd_shape_is_refused_without_memory_error(tmp_path):
    path = tmp_path / "absurd.npy"
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "<f8", "fortran_order": False, "shape": (10**12, 1000, 1000)})
    with pytest.raises(InvalidImageError, match="declares 1000000000000 images"):
        read_images([path])
    with pytest.raises(InvalidImageError, match="declares images of 1000000 pixels"):
        read_images([path], max_images=10**13)


def test_many_small_images_cannot_add_up_past_the_byte_budget(tmp_path):
    from compressor.io.files import write_png

    for i in range(5):
        write_png(tmp_path / f"{i}.png", np.zeros((28, 28), np.uint8))
    with pytest.raises(InvalidImageError, match="more than 3000 pixels together.*--max-input-bytes"):
        read_images([tmp_path], max_bytes=3000)


def test_a_fifo_given_as_input_is_refused_at_once_not_read_forever(tmp_path):
    fifo = tmp_path / "camera.png"
    os.mkfifo(fifo)
    code = f"from compressor.io.files import read_image\nread_image({str(fifo)!r})"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=30)
    assert "is not a regular file" in done.stderr


@pytest.mark.parametrize("make", [os.mkfifo, lambda path: os.symlink("/dev/zero", path)], ids=["fifo", "dev-zero"])
def test_a_fifo_or_device_named_like_an_array_file_is_refused_at_once(tmp_path, make):
    path = tmp_path / "digits.npz"
    make(path)
    # In a child with 1 GB of address space: unchecked, the FIFO waits forever for a writer
    # and zipfile reads /dev/zero until memory runs out.
    code = (
        "import resource; resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))\n"
        f"from compressor.io.files import read_images\nread_images([{str(path)!r}])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert "digits.npz is not a regular file (a device or pipe?)" in done.stderr.splitlines()[-1]


def test_a_device_is_refused_as_a_stream_file():
    with pytest.raises(InvalidImageError, match="/dev/zero is not a regular file"):
        read_bytes_limited("/dev/zero", what="stream file")


def test_an_image_at_the_pixel_budget_is_read_in_bounded_memory(tmp_path):
    path = tmp_path / "budget.png"
    path.write_bytes(png_bomb(256, 256))
    result = _probe(path)
    assert result["outcome"] == "(1, 256, 256)" and result["extra_mb"] <= 50
    assert read_image(path).shape == (256, 256)


# --- with the trained bundle ---------------------------------------------------------------------
@pytest.fixture
def bundle_copy(bundle_dir, tmp_path):
    dst = tmp_path / "bundle"
    shutil.copytree(bundle_dir, dst)
    return dst


def _rewrite_json(path, edit) -> None:
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def _rehash_part(bundle, role, *, recompute_id=False) -> None:
    """What an attacker with write access does after changing a file: fix up the sub-manifest."""
    part = bundle / role

    def fix(m):
        for f in m["files"]:
            f["sha256"] = sha256_hex((part / f["path"]).read_bytes())
            f["bytes"] = (part / f["path"]).stat().st_size
        coding = (part / "coding.json").read_bytes()
        m["coding"].update(sha256=sha256_hex(coding), bytes=len(coding))
        if role == "decoder":
            m["decoder_files"] = {f["path"]: f["sha256"] for f in m["files"]}
        if recompute_id:
            m["model_id"] = model_id_of(m["coding"]["sha256"], m["decoder_files"])

    _rewrite_json(part / "manifest.json", fix)


def _flip_byte(path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.slow
def test_a_tampered_batch_64_file_is_refused_when_the_bundle_opens_not_when_first_used(bundle_copy):
    _flip_byte(bundle_copy / "decoder" / "decoder_int8_b64.tflite")
    with pytest.raises(IntegrityError, match="decoder_int8_b64.tflite does not match its SHA-256"):
        load_part(bundle_copy / "decoder")


@pytest.mark.slow
def test_a_modified_model_with_a_rehashed_sub_manifest_is_refused(bundle_copy):
    _flip_byte(bundle_copy / "decoder" / "decoder_int8_b1.tflite")
    _rehash_part(bundle_copy, "decoder")
    with pytest.raises(IntegrityError, match="does not match its SHA-256 in .*manifest.json"):
        load_part(bundle_copy, "decoder")  # the top-level manifest's hash of the part
    with pytest.raises(IntegrityError, match="model_id .* is not the one its decoder files"):
        load_part(bundle_copy / "decoder")  # opened alone: the recomputed model id


@pytest.mark.slow
def test_a_modified_encoder_with_a_rehashed_sub_manifest_is_refused_from_the_top(bundle_copy):
    _flip_byte(bundle_copy / "encoder" / "encoder_int8_b1.tflite")
    _rehash_part(bundle_copy, "encoder")
    with pytest.raises(IntegrityError, match="the encoder was modified after export"):
        load_part(bundle_copy, "encoder")


@pytest.mark.slow
def test_a_model_file_swapped_for_another_with_every_hash_fixed_is_refused_at_load(bundle_copy):
    import compressor

    part = bundle_copy / "decoder"
    shutil.copy(part / "decoder_int8_b64.tflite", part / "decoder_int8_b1.tflite")
    _rehash_part(bundle_copy, "decoder", recompute_id=True)
    with pytest.raises(ManifestError, match="decoder_int8_b1.tflite: the model's input is int8 64x16"):
        compressor.Decoder.load(part)


@pytest.mark.slow
def test_batch_files_of_one_precision_that_list_different_int8_scales_are_refused_at_open(bundle_copy):
    # A Network quantizes every call with its first file's scale: the batch-64 file's own would be ignored.
    part = bundle_copy / "decoder"
    manifest = json.loads((part / "manifest.json").read_text())
    entry = next(f for f in manifest["files"] if f["path"] == "decoder_int8_b64.tflite")
    entry["input"]["quantization"]["scale"] *= 1.01
    (part / "manifest.json").write_text(json.dumps(manifest))
    _rehash_part(bundle_copy, "decoder", recompute_id=True)
    with pytest.raises(ManifestError, match="decoder_int8_b64.tflite and decoder_int8_b1.tflite differ in their input"):
        load_part(part)


@pytest.mark.slow
def test_a_fully_rehashed_part_with_a_new_model_id_no_longer_matches_the_top_level(bundle_copy):
    _flip_byte(bundle_copy / "decoder" / "decoder_int8_b1.tflite")
    _rehash_part(bundle_copy, "decoder", recompute_id=True)
    top = json.loads((bundle_copy / "manifest.json").read_text())
    top["parts"]["decoder"]["sha256"] = sha256_hex((bundle_copy / "decoder" / "manifest.json").read_bytes())
    (bundle_copy / "manifest.json").write_text(json.dumps(top))
    with pytest.raises(IntegrityError, match="disagree on 'model_id'"):
        load_part(bundle_copy, "decoder")
    # Opened alone, it is a consistent bundle of *another* model: old codes are refused by id.
    assert load_part(bundle_copy / "decoder").model_id != top["model_id"]


@pytest.mark.slow
@pytest.mark.parametrize(
    "edit, message",
    [
        (_edit("steps.0", 0), "step 0 must be a finite positive number"),
        (_edit("steps.2", -0.5), "step 2 must be"),
        (_edit("lossless.step_index", 99), "lossless.step_index"),
        (_edit("lossless.runtime", "tensorflow"), "lossless.runtime"),
        (_edit("default_step_index", 16), "default_step_index"),
        (lambda c: c.update(steps={"a": [[[[1]]]]}), "'steps' must be a list"),
    ],
)
def test_nonsense_in_a_rehashed_coding_json_stops_the_bundle_before_any_runtime(bundle_copy, edit, message):
    import compressor

    for role in ("encoder", "decoder"):
        _rewrite_json(bundle_copy / role / "coding.json", edit)
        _rehash_part(bundle_copy, role, recompute_id=True)
    with pytest.raises(ManifestError, match=message):
        load_part(bundle_copy / "decoder")  # load_part creates no runtime
    with pytest.raises(ManifestError, match=message):
        compressor.Decoder.load(bundle_copy / "decoder")


@pytest.mark.slow
def test_a_deeply_nested_coding_json_is_a_manifest_error(bundle_copy):
    (bundle_copy / "decoder" / "coding.json").write_text("[" * 100_000 + "]" * 100_000)
    _rehash_part(bundle_copy, "decoder", recompute_id=True)
    with pytest.raises(ManifestError, match="nests 100000 levels deep"):
        load_part(bundle_copy / "decoder")


@pytest.mark.slow
@pytest.mark.parametrize("threads", [100_000, 0, 2.5, True])
def test_a_thread_count_beyond_the_budget_is_refused_before_a_runtime_starts_them(bundle_dir, threads):
    import compressor
    from compressor.errors import UsageError

    # 100000 threads crashed LiteRT (segfault) and stalled onnxruntime for minutes.
    with pytest.raises(UsageError, match=r"threads must be a whole number 1\.\.256"):
        compressor.Decoder.load(bundle_dir / "decoder", threads=threads)
    assert (
        compressor.Decoder.load(bundle_dir / "decoder", threads=np.int64(2)).network.threads == 2
    )  # numpy ints are ints


@pytest.fixture(scope="module")
def model(bundle_dir):
    import compressor

    dec = compressor.Decoder.load(bundle_dir / "decoder", runtime="litert")
    return {"id": dec.coding.model_id, "index": dec.coding.default_index, "dec": dec}


@pytest.mark.slow
def test_a_1mb_stream_declaring_a_million_empty_images_is_refused_up_front(bundle_dir, model, tmp_path):
    stream = tmp_path / "bomb.lzc"
    stream.write_bytes(wire.pack_stream(model["id"], "entropy", model["index"], [b""] * 1_000_000))
    assert stream.stat().st_size <= 1 << 20
    out = tmp_path / "out"
    run = run_cli("decode", stream, "-o", out, "--bundle", bundle_dir, tmp_path=tmp_path)
    assert run.code == 1 and "declares 1000000 images; the limit is 2048" in run.err and "--max-images" in run.err
    assert not out.exists()
    assert run.peak_mb <= 150


@pytest.mark.slow
def test_a_stream_at_the_image_limit_decodes_in_bounded_memory(bundle_dir, model, tmp_path):
    n = limits.MAX_DECODE_IMAGES
    stream = tmp_path / "many.lzc"
    names = [f"{i:05d}".ljust(251, "n") for i in range(n)]  # the longest names a stream may carry
    stream.write_bytes(wire.pack_stream(model["id"], "entropy", model["index"], [b""] * n, names))
    out = tmp_path / "out"
    run = run_cli("decode", stream, "-o", out, "--bundle", bundle_dir, tmp_path=tmp_path)
    assert run.code == 0, run.err
    assert len(list(out.iterdir())) == n and not list(out.glob(".*"))  # no temporary file left
    assert run.peak_mb <= 150


@pytest.mark.slow
def test_a_lossless_stream_of_cheap_payloads_over_the_limit_is_refused(bundle_dir, model, tmp_path):
    stream = tmp_path / "lossless.lzc"
    n = limits.MAX_DECODE_IMAGES + 1
    stream.write_bytes(wire.pack_stream(model["id"], "lossless", 0, [b"\0\0\0"] * n))
    run = run_cli("decode", stream, "-o", tmp_path / "out", "--bundle", bundle_dir, tmp_path=tmp_path)
    assert run.code == 1 and f"declares {n} images" in run.err


@pytest.mark.slow
def test_decode_refuses_to_replace_existing_files_and_leaves_the_folder_untouched(bundle_dir, model, tmp_path):
    stream = tmp_path / "s.lzc"
    stream.write_bytes(wire.pack_stream(model["id"], "entropy", model["index"], [b""] * 3, ["a", "b", "c"]))
    out = tmp_path / "out"
    out.mkdir()
    (out / "b.png").write_bytes(b"precious")
    before = snapshot(out)
    run = run_cli("decode", stream, "-o", out, "--bundle", bundle_dir, tmp_path=tmp_path)
    assert run.code == 1 and "1 output files exist already" in run.err and "--overwrite" in run.err
    assert snapshot(out) == before
    assert run_cli("decode", stream, "-o", out, "--bundle", bundle_dir, "--overwrite", tmp_path=tmp_path).code == 0
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.png", "c.png"]


@pytest.mark.slow
@pytest.mark.parametrize("flags", [["--lossless"], ["--max-error", "0"]], ids=["lossless", "residual"])
def test_a_decode_that_fails_on_the_last_image_leaves_no_file_of_the_first_batches(bundle_dir, tmp_path, flags):
    # Lossless and residual pixels are verified while decoding, batch by batch (256 images):
    # the stream's 300th image fails only after the first batch has been decoded.
    digits = tmp_path / "digits.npy"
    np.save(digits, to_uint8(mnist5k_test(300)))
    codes = tmp_path / "digits.lzc"
    assert run_cli("encode", digits, "-o", codes, "--bundle", bundle_dir, *flags, tmp_path=tmp_path).code == 0
    s = wire.unpack_stream(codes.read_bytes())
    payloads = [*s.payloads[:-1], s.payloads[-1] + b"\x00"]  # checksummed anew: only the pixel code tells
    codes.write_bytes(wire.pack_stream(s.model_id, s.mode, s.step_index, payloads, s.names))
    out = tmp_path / "out"
    run = run_cli("decode", codes, "-o", out, "--bundle", bundle_dir, tmp_path=tmp_path)
    assert run.code == 1 and len(run.error_lines) == 1
    assert "image 299 (digits-299):" in run.err and "nothing was written" in run.err
    assert not out.exists()  # the folder it made is gone too
    out.mkdir()
    assert run_cli("decode", codes, "-o", out, "--bundle", bundle_dir, tmp_path=tmp_path).code == 1
    assert list(out.iterdir()) == []  # no PNG and no temporary file in a folder that was there


@pytest.mark.slow
def test_decode_counts_a_dangling_link_at_an_output_name_as_taken_and_writes_nothing(bundle_dir, model, tmp_path):
    stream = tmp_path / "two.lzc"
    stream.write_bytes(wire.pack_stream(model["id"], "entropy", model["index"], [b""] * 2, ["a", "b"]))
    out = tmp_path / "out"
    out.mkdir()
    (out / "b.png").symlink_to(tmp_path / "nowhere.png")  # os.link fails on it after a.png is published
    run = run_cli("decode", stream, "-o", out, "--bundle", bundle_dir, tmp_path=tmp_path)
    assert run.code == 1 and "1 output files exist already" in run.err and "nothing was written" in run.err
    assert sorted(p.name for p in out.iterdir()) == ["b.png"]


@pytest.mark.slow
def test_decode_numbers_names_that_would_be_one_file_instead_of_writing_one_over_the_other(bundle_dir, model, tmp_path):
    # Older encoders let names that differ in Unicode composition through; a hand-made stream may
    # repeat a name in another case. Every image is written, none over another.
    names = ["img", "x", "IMG", "caf\u00e9", "cafe\u0301"]
    stream = tmp_path / "dup.lzc"
    stream.write_bytes(wire.pack_stream(model["id"], "entropy", model["index"], [b""] * 5, names))
    run = run_cli("decode", stream, "-o", tmp_path / "out", "--bundle", bundle_dir, tmp_path=tmp_path)
    assert run.code == 0 and "2 names repeat another as a file name" in run.out
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == sorted(["img.png", "x.png", "IMG-1.png", "caf\u00e9.png", "cafe\u0301-1.png"])
    # A name that numbering would make too long for a file name is refused before anything is written.
    from compressor.names import MAX_NAME_BYTES

    long = "a" * MAX_NAME_BYTES
    stream.write_bytes(wire.pack_stream(model["id"], "entropy", model["index"], [b""] * 2, [long, long.upper()]))
    run = run_cli("decode", stream, "-o", tmp_path / "out2", "--bundle", bundle_dir, tmp_path=tmp_path)
    assert run.code == 1 and len(run.error_lines) == 1 and "nothing was written" in run.err
    assert not (tmp_path / "out2").exists()


@pytest.mark.slow
def test_info_on_a_stream_of_no_images_reports_count_zero(model, tmp_path):
    stream = tmp_path / "empty.lzc"
    stream.write_bytes(wire.pack_stream(model["id"], "entropy", model["index"], []))
    run = run_cli("info", stream, tmp_path=tmp_path)
    assert run.code == 0
    info = json.loads(run.out)
    assert info["count"] == 0 and info["bytes_per_image"] is None


@pytest.fixture
def cli_case(bundle_dir, tmp_path, model):
    """A stream, an image array, a folder and a plain file to misuse."""
    arrays = tmp_path / "digits.npy"
    np.save(arrays, np.zeros((2, 28, 28), np.uint8))
    stream = tmp_path / "s.lzc"
    stream.write_bytes(wire.pack_stream(model["id"], "entropy", model["index"], [b""] * 2))
    folder = tmp_path / "folder"
    folder.mkdir()
    short = tmp_path / "short.key"
    short.write_text("secret\n")
    return {"B": bundle_dir, "npy": arrays, "lzc": stream, "dir": folder, "tmp": tmp_path, "short": short}


CLI_MISUSE = [
    (["info", "{dir}"], "is a folder, not a stream file"),
    (["info", "{npy}"], "not a compressor stream"),
    (["info", "{lzc}", "--bundle", "{dir}"], "has no manifest.json"),
    (["decode", "{dir}", "-o", "{tmp}/o", "--bundle", "{B}"], "is a folder, not a stream file"),
    (["decode", "{lzc}", "-o", "{npy}", "--bundle", "{B}"], "exists and is not a folder"),
    (["decode", "{lzc}", "-o", "{tmp}/o", "--bundle", "{npy}"], "bundle directory not found"),
    (["decode", "/dev/zero", "-o", "{tmp}/o", "--bundle", "{B}"], "not a regular file"),
    (["encode", "{npy}", "-o", "{dir}", "--bundle", "{B}"], "is a folder; name the stream file"),
    (["encode", "{dir}", "-o", "{tmp}/c.lzc", "--bundle", "{B}"], "no images in"),
    (["encode", "{lzc}", "-o", "{tmp}/c.lzc", "--bundle", "{B}"], "is not a readable image"),
    (["encode", "{npy}", "-o", "{tmp}/missing/c.lzc", "--bundle", "{B}"], "does not exist"),
    (["encode", "{npy}", "-o", "{tmp}/c.lzc", "--bundle", "{dir}"], "has no manifest.json"),
    (["send", "{npy}", "--to", "127.0.0.1:9", "--bundle", "{B}", "--key-file", "{dir}"], "key file"),
    (["send", "{npy}", "--to", "127.0.0.1:9", "--bundle", "{B}", "--key-file", "{short}"], "at least 16"),
    (["receive", "-o", "{tmp}/r", "--bundle", "{B}", "--key-file", "/dev/zero"], "regular file"),
    (["receive", "-o", "{npy}", "--bundle", "{B}"], "exists and is not a folder"),
    (["receive", "-o", "{tmp}/r", "--bundle", "{dir}"], "has no manifest.json"),
]


@pytest.mark.slow
@pytest.mark.parametrize("args, message", CLI_MISUSE, ids=[" ".join(a[:2]) for a, _ in CLI_MISUSE])
def test_the_cli_answers_misuse_with_one_line_and_no_traceback(cli_case, args, message):
    argv = [a.format(**cli_case) for a in args]
    run = run_cli(*argv, tmp_path=cli_case["tmp"])
    assert run.code == 1, run.err
    command = argv[0]
    assert len(run.error_lines) == 1 and run.error_lines[0].startswith(f"compressor {command}: error: ")
    assert message in run.err


@pytest.mark.slow
def test_the_cli_reports_a_tampered_bundle_in_one_line(bundle_copy, cli_case):
    _flip_byte(bundle_copy / "decoder" / "decoder_fp32.onnx")
    run = run_cli("decode", cli_case["lzc"], "-o", cli_case["tmp"] / "o", "--bundle", bundle_copy, tmp_path=bundle_copy)
    assert run.code == 1 and "decoder_fp32.onnx does not match its SHA-256" in run.err
    assert not (cli_case["tmp"] / "o").exists()


@pytest.mark.slow
def test_internal_errors_keep_their_traceback(tmp_path):
    """A bug is not bad input: the CLI must not turn a ValueError from our own code into one line."""
    code = (
        "import compressor.commands.codec as c, compressor.cli as cli\n"
        "def boom(args): raise ValueError('internal bug')\n"
        "c._info = boom\n"
        "import sys; sys.exit(cli.main(['info', 'x']))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode != 0 and "Traceback" in done.stderr and "internal bug" in done.stderr


@pytest.mark.slow
def test_a_full_disk_fails_in_one_line_and_leaves_no_temporary_files(bundle_dir, model, tmp_path):
    mount = tmp_path / "tiny"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)]).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        stream = tmp_path / "s.lzc"
        stream.write_bytes(wire.pack_stream(model["id"], "entropy", model["index"], [b""] * 2000))
        run = run_cli("decode", stream, "-o", mount / "out", "--bundle", bundle_dir, tmp_path=tmp_path)
        assert run.code == 1 and "No space left on device" in run.err
        assert not (mount / "out").exists()  # no PNG, no temporary file, not even the folder decode made
    finally:
        subprocess.run(["umount", str(mount)])


@pytest.mark.slow
def test_a_bundle_problem_is_a_bundle_error_for_api_callers(bundle_copy):
    (bundle_copy / "decoder" / "decoder_int8.onnx").unlink()
    with pytest.raises(BundleError, match="decoder_int8.onnx is listed in the manifest but missing"):
        load_part(bundle_copy / "decoder")


# --- found by bench/fuzz_codes.py ----------------------------------------------------------------
def test_an_npy_header_that_is_not_python_literal_syntax_is_an_invalid_image(tmp_path):
    path = tmp_path / "odd.npy"
    header = b"{'descr': '|u1', 'fortran_order': False, 'shape': (1, 28, 28\x18"
    path.write_bytes(b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header)
    with pytest.raises(InvalidImageError, match="cannot read array file"):
        read_images([path])


def test_an_npy_header_longer_than_4096_bytes_is_refused_in_one_line_without_pickle_advice(tmp_path):
    path = tmp_path / "long_header.npy"
    path.write_bytes(b"\x93NUMPY\x01\x00" + (60000).to_bytes(2, "little") + b"{" * 60000)
    with pytest.raises(InvalidImageError) as refused:
        read_images([path])
    message = str(refused.value)
    assert "header declares 60000 bytes" in message and "\n" not in message and "allow_pickle" not in message


def test_an_encrypted_npz_member_is_an_invalid_image(tmp_path):
    import io

    buf = io.BytesIO()
    np.savez(buf, images=np.zeros((1, 28, 28), np.uint8))
    data = bytearray(buf.getvalue())
    for magic, flags_at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        at = data.index(magic) + flags_at
        data[at] |= 0x01  # "encrypted"
    (tmp_path / "locked.npz").write_bytes(bytes(data))
    with pytest.raises(InvalidImageError, match="cannot read array file"):
        read_images([tmp_path / "locked.npz"])


def test_a_model_file_name_too_long_for_the_file_system_is_a_manifest_error(tmp_path):
    manifest = copy.deepcopy(MINIMAL_PART)
    manifest["files"][0]["path"] = "x" * 300
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ManifestError, match="longer than 200 bytes"):
        load_part(tmp_path)
