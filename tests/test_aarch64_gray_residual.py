"""Grayscale residual codes (mode 3) made on x86_64 decode on an emulated Raspberry Pi 4 and 5.

Lossless codes must give the exact pixels and near-lossless codes (E = 8) the very image the
x86 decoder gives (every pixel within 8), for digits (table set 0: the int8 decoder's
prediction, so every level must match bit for bit) and for photo crops (table set 1: the
reconstructed neighbours alone). Setup as in tests/test_aarch64_decode.py (qemu user mode,
Debian 12 arm64 Python 3.11 with the edge wheels, no TensorFlow; cached under .cache/aarch64).
"""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest

from compressor import Decoder, Encoder
from tests.aarch64 import emulator as emu_mod
from tests.support import ROOT, mnist5k_test, skip_or_fail, to_uint8

DIGITS = 12
CROPS = 8
NEAR = 8


@pytest.fixture(scope="module")
def x86(gray_bundle_dir, tmp_path_factory):
    from export.photo_crops import training_crops

    digits = to_uint8(mnist5k_test(DIGITS, binarize=False)).reshape(DIGITS, 28, 28)
    crops = training_crops()[::131][:CROPS]
    enc = Encoder.load(gray_bundle_dir / "encoder", runtime="litert", precision="int8")
    dec = Decoder.load(gray_bundle_dir / "decoder", runtime="litert", precision="int8")
    codes = {
        "gray0": enc.compress(digits, max_error=0),
        "gray8": enc.compress(digits, max_error=NEAR),
        "photo0": enc.compress(crops, max_error=0),
        "photo8": enc.compress(crops, max_error=NEAR),
    }
    sets = {k: sorted({m[2] >> 6 & 1 for m in v}) for k, v in codes.items()}
    assert 1 in sets["photo0"], sets  # the photo crops exercise table set 1
    arrays = {"stream": np.frombuffer(enc.compress_stream(digits), np.uint8), **_pack("messages", enc.compress(digits))}
    for key, messages in codes.items():
        arrays |= _pack(key, messages)
    folder = tmp_path_factory.mktemp("x86-gray")
    np.savez(folder / "codes.npz", **arrays)
    return {
        "codes": folder / "codes.npz",
        "originals": {"gray": digits, "photo": crops},
        "decoded": {key: dec.decompress(m) for key, m in codes.items()},
    }


def _pack(key: str, messages: list[bytes]) -> dict:
    lengths = np.array([len(m) for m in messages], np.int64)
    return {key: np.frombuffer(b"".join(messages), np.uint8), key + "_lengths": lengths}


@pytest.fixture(scope="module")
def device(x86, gray_bundle_dir, tmp_path_factory):
    try:
        emu, sites = emu_mod.build()
    except emu_mod.UnavailableError as e:
        skip_or_fail(f"aarch64 emulation unavailable: {e}")
    work = tmp_path_factory.mktemp("aarch64-gray")
    shutil.copytree(ROOT / "compressor", work / "pkg" / "compressor", ignore=shutil.ignore_patterns("__pycache__"))
    script = str(ROOT / "tests" / "aarch64" / "device_decode.py")
    combos = [f"{key}:litert:int8" for key in ("gray0", "gray8", "photo0", "photo8")]
    procs = {}
    for name, cpu in (("pi4", emu_mod.PI4_CPU), ("pi5", emu_mod.PI5_CPU)):
        args = [script, str(x86["codes"]), str(gray_bundle_dir / "decoder"), str(work / f"{name}.npz"), *combos]
        procs[name] = subprocess.Popen(
            emu.command(*args, cpu=cpu),
            env=emu.env(work / "pkg", sites["edge"], home=work),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    out = {}
    try:
        for name, proc in procs.items():
            stdout, stderr = proc.communicate(timeout=900)
            assert proc.returncode == 0, f"{name}: emulated decode failed:\n{stderr[-3000:]}"
            info = json.loads(stdout.strip().splitlines()[-1])
            assert set(info["results"].values()) == {"ok"}, info["results"]
            out[name] = dict(np.load(work / f"{name}.npz"))
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("cpu", ["pi4", "pi5"])
def test_lossless_grayscale_codes_decode_to_the_exact_pixels_on_a_pi(device, x86, cpu):
    for key, content in (("gray0", "gray"), ("photo0", "photo")):
        np.testing.assert_array_equal(device[cpu][f"{key}_litert_int8"], x86["originals"][content], err_msg=key)


@pytest.mark.slow
@pytest.mark.parametrize("cpu", ["pi4", "pi5"])
def test_near_lossless_grayscale_codes_decode_within_e_and_as_on_x86(device, x86, cpu):
    for key, content in (("gray8", "gray"), ("photo8", "photo")):
        got = device[cpu][f"{key}_litert_int8"]
        np.testing.assert_array_equal(got, x86["decoded"][key], err_msg=key)
        assert np.abs(got.astype(int) - x86["originals"][content].astype(int)).max() <= NEAR
