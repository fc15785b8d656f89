"""The decode side on aarch64: Raspberry Pi OS 12's Python 3.11 (Debian 12 arm64), under qemu user mode.

The x86_64 side compresses the 500 held-back test digits; the emulated Pi, with only
``compressor/`` and the edge wheels (numpy, ai-edge-litert, onnxruntime; no TensorFlow),
decodes them. Symbols must be bit-identical; images must agree within int8 tolerance. The
tflite-runtime 2.14 + numpy 1.26 environment of older Pi images is checked the same way.

Needs Debian's apt-get/dpkg-deb and the package registries the first time (about 35 s of setup;
cached under .cache/aarch64 afterwards). Elsewhere it skips, saying why, unless
COMPRESSOR_REQUIRE_SYSTEM_TESTS=1 (set by .ci/run) turns the skip into a failure.
Times under emulation say nothing about a Raspberry Pi, so none are asserted or reported.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time

import numpy as np
import pytest

from compressor import Decoder, Encoder
from compressor.io.atomic import atomic_write_json
from tests.aarch64 import emulator as emu_mod
from tests.support import ROOT, mnist5k_test, skip_or_fail, to_uint8

INT8_STEP = 1 / 256  # the int8 decoders' output scale: one step of the quantized probability
FP32_TOL = 1e-4  # as the export's validation of float32 files
PIXEL_ERROR_SLACK = 0.3  # percentage points an int8 file may add to the float32 pixel error (docs/bundle.md)
SUBSET = 64  # images decoded in the slower or secondary configurations
DEVICE_TIMEOUT = 900


@pytest.fixture(scope="module")
def emulated():
    started = time.perf_counter()
    try:
        emu, sites = emu_mod.build(tflite=True)
    except emu_mod.UnavailableError as e:
        skip_or_fail(f"aarch64 emulation unavailable: {e}")
    return emu, sites, time.perf_counter() - started


@pytest.fixture(scope="module")
def x86(bundle_dir, tmp_path_factory):
    """Codes of the held-back digits and their decodes, made on this x86_64 host."""
    images = mnist5k_test()
    enc = Encoder.load(bundle_dir / "encoder", runtime="litert", precision="int8")
    stream, messages = enc.compress_stream(images), enc.compress(images)
    binary = to_uint8(images)
    assert enc.coding.lossless is not None  # the session model is trained on binarized digits
    assert enc.coding.binary_context2 is not None
    exact = enc.compress(binary, mode="lossless")
    context = enc.compress(binary[:SUBSET], band=127)
    folder = tmp_path_factory.mktemp("x86")
    arrays = {"stream": np.frombuffer(stream, np.uint8), **_pack("messages", messages), **_pack("lossless", exact)}
    arrays |= _pack("context", context)
    np.savez(folder / "codes.npz", **arrays)
    probs = {}
    for runtime in ("litert", "onnx"):
        for precision in ("int8", "fp32"):
            dec = Decoder.load(bundle_dir / "decoder", runtime=runtime, precision=precision)
            probs[f"{runtime}_{precision}"] = dec.decompress(stream)
    return {
        "codes": folder / "codes.npz",
        "symbols": enc.symbols(images),
        "images": images,
        "binary": binary,
        "has_context": bool(context),
        "probs": probs,
    }


def _pack(key: str, messages: list[bytes]) -> dict:
    lengths = np.array([len(m) for m in messages], np.int64)
    return {key: np.frombuffer(b"".join(messages), np.uint8), key + "_lengths": lengths}


@pytest.fixture(scope="module")
def device(emulated, x86, bundle_dir, tmp_path_factory):
    """Emulated decodes: a Pi 4 CPU with the edge wheels, a Pi 5 CPU (dotprod kernels), a Pi 4 with tflite 2.14."""
    emu, sites, _ = emulated
    work = tmp_path_factory.mktemp("aarch64")
    shutil.copytree(ROOT / "compressor", work / "pkg" / "compressor", ignore=shutil.ignore_patterns("__pycache__"))
    script = str(ROOT / "tests" / "aarch64" / "device_decode.py")
    lossless = ["lossless:litert:int8", "context:litert:int8"]
    lossless_subset = [f"lossless:litert:int8:{SUBSET}", "context:litert:int8"]
    runs = {  # four processes, so that both cores stay busy
        "pi4-litert": (emu_mod.PI4_CPU, "edge", ["litert:int8", f"litert:fp32:{SUBSET}"] + lossless),
        "pi4-onnx": (emu_mod.PI4_CPU, "edge", ["onnx:int8", f"onnx:fp32:{SUBSET}"]),
        "pi5": (emu_mod.PI5_CPU, "edge", [f"litert:int8:{SUBSET}", f"onnx:int8:{SUBSET}"] + lossless_subset),
        "tflite": (emu_mod.PI4_CPU, "tflite", ["tflite:int8", f"tflite:fp32:{SUBSET}"]),
    }
    procs = {}
    for name, (cpu, site, combos) in runs.items():
        args = [script, str(x86["codes"]), str(bundle_dir / "decoder"), str(work / f"{name}.npz"), *combos]
        env = emu.env(work / "pkg", sites[site], home=work)
        procs[name] = subprocess.Popen(
            emu.command(*args, cpu=cpu), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
    out = {}
    deadline = time.monotonic() + DEVICE_TIMEOUT
    try:
        for name, proc in procs.items():
            stdout, stderr = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
            assert proc.returncode == 0, f"{name}: emulated decode failed:\n{stderr[-3000:]}"
            out[name] = {"info": json.loads(stdout.strip().splitlines()[-1]), **np.load(work / f"{name}.npz")}
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)
    return out


def _pixel_error(probs: np.ndarray, images: np.ndarray) -> float:
    return 100 * float(np.mean((probs >= 0.5) != (images[: len(probs)] >= 0.5)))


def _compare(a: np.ndarray, b: np.ndarray) -> dict:
    b = b[: len(a)]
    d = np.abs(a.astype(np.float64) - b)
    return {
        "images": len(a),
        "max_abs": float(d.max()),
        "max_int8_steps": round(float(d.max()) / INT8_STEP, 2),
        "mean_abs": float(d.mean()),
        "pixels_differing": int((d > 0).sum()),
        "binarized_flips": int(((a >= 0.5) != (b >= 0.5)).sum()),
    }


def test_the_device_is_debian_12_python_3_11_on_aarch64_without_tensorflow(device):
    for name, run in device.items():
        info = run["info"]
        assert info["machine"] == "aarch64" and info["python"].startswith("3.11."), name
        assert info["cpuinfo_model"].startswith("Raspberry Pi"), name
        assert info["tensorflow_imported"] is False, name
    assert device["pi4-litert"]["info"]["numpy"].startswith("2.") and device["tflite"]["info"]["numpy"].startswith("1.")


def test_symbols_decoded_on_aarch64_are_bit_identical_to_x86(device, x86):
    for name, run in device.items():
        assert run["stream_symbols"].dtype == np.int64, name
        np.testing.assert_array_equal(run["stream_symbols"], x86["symbols"], err_msg=name)
        np.testing.assert_array_equal(run["message_symbols"], x86["symbols"], err_msg=name)


def test_every_runtime_loads_the_bundle_on_aarch64(device):
    for name, run in device.items():
        assert set(run["info"]["results"].values()) == {"ok"}, (name, run["info"]["results"])


def test_litert_int8_images_on_a_pi_4_and_pi_5_cpu_match_x86_within_one_int8_step(device, x86):
    for name in ("pi4-litert", "pi5"):
        diff = _compare(device[name]["probs_litert_int8"], x86["probs"]["litert_int8"])
        assert diff["max_abs"] <= INT8_STEP + 1e-7, (name, diff)


def test_lossless_codes_made_on_x86_decode_to_the_exact_pixels_on_a_pi_4_and_pi_5_cpu(device, x86):
    """Lossless decoding re-runs the int8 decoder and needs its every output bit: the strictest check."""
    for name in ("pi4-litert", "pi5"):
        exact = device[name]["lossless_litert_int8"]
        np.testing.assert_array_equal(exact, x86["binary"][: len(exact)], err_msg=name)


def test_binary_residual_codes_made_on_x86_decode_to_the_exact_pixels_on_a_pi_4_and_pi_5_cpu(device, x86):
    """Context-coded lossless codes (mode 3, band 127) predict from the same int8 levels: exact too."""
    for name in ("pi4-litert", "pi5"):
        exact = device[name]["context_litert_int8"]
        np.testing.assert_array_equal(exact, x86["binary"][: len(exact)], err_msg=name)


def test_float32_images_on_aarch64_match_x86_within_the_export_tolerance(device, x86):
    pairs = [("pi4-litert", "litert_fp32", "litert_fp32"), ("pi4-onnx", "onnx_fp32", "onnx_fp32")]
    pairs.append(("tflite", "tflite_fp32", "litert_fp32"))
    for name, key, ref in pairs:
        diff = _compare(device[name][f"probs_{key}"], x86["probs"][ref])
        assert diff["max_abs"] <= FP32_TOL, (name, key, diff)


def test_int8_images_on_aarch64_are_within_int8_tolerance_of_the_float_decode(device, x86):
    """As the export judges an int8 file: pixel error at most 0.3 points above float32, and close on average.

    ONNX Runtime's int8 kernels differ between x86_64 (AVX2 u8s8, which can saturate) and
    aarch64, so its images are not bit-identical across the two; both must stay within this.
    """
    reference = x86["probs"]["onnx_fp32"]
    runs = [("pi4-litert", "litert_int8"), ("pi4-onnx", "onnx_int8"), ("pi5", "onnx_int8"), ("tflite", "tflite_int8")]
    for name, key in runs:
        probs = device[name][f"probs_{key}"]
        diff = _compare(probs, reference)
        assert diff["mean_abs"] <= 0.01, (name, key, diff)
        assert _pixel_error(probs, x86["images"]) <= _pixel_error(reference, x86["images"]) + PIXEL_ERROR_SLACK


def test_figures_are_recorded(device, x86, emulated):
    """Writes .cache/aarch64/report.json: what matched how closely (no timings of the emulated device)."""
    emu, _, setup_seconds = emulated
    rows = {
        "litert int8, Pi 4 CPU vs x86": ("pi4-litert", "litert_int8", "litert_int8"),
        "litert int8, Pi 5 CPU vs x86": ("pi5", "litert_int8", "litert_int8"),
        "onnx int8, Pi 4 CPU vs x86": ("pi4-onnx", "onnx_int8", "onnx_int8"),
        "onnx int8, Pi 5 CPU vs x86": ("pi5", "onnx_int8", "onnx_int8"),
        "onnx int8 aarch64 vs x86 onnx fp32": ("pi4-onnx", "onnx_int8", "onnx_fp32"),
        "onnx int8 x86 vs x86 onnx fp32": (None, "onnx_int8", "onnx_fp32"),
        "litert int8 x86 vs x86 onnx fp32": (None, "litert_int8", "onnx_fp32"),
        "litert fp32 vs x86": ("pi4-litert", "litert_fp32", "litert_fp32"),
        "onnx fp32 vs x86": ("pi4-onnx", "onnx_fp32", "onnx_fp32"),
        "tflite-runtime 2.14 int8 vs x86 litert int8": ("tflite", "tflite_int8", "litert_int8"),
        "tflite-runtime 2.14 fp32 vs x86 litert fp32": ("tflite", "tflite_fp32", "litert_fp32"),
    }
    report = {
        "lossless_exact_on_aarch64": {
            name: bool(np.array_equal(run[key], x86["binary"][: len(run[key])]))
            for name, run in device.items()
            for key in run
            if key.startswith("lossless_")
        },
        "symbols_bit_identical": all(
            np.array_equal(r["stream_symbols"], x86["symbols"]) and np.array_equal(r["message_symbols"], x86["symbols"])
            for r in device.values()
        ),
        "images": {
            label: _compare(device[n][f"probs_{k}"] if n else x86["probs"][k], x86["probs"][ref])
            for label, (n, k, ref) in rows.items()
        },
        "device": {name: run["info"] for name, run in device.items()},
        "sysroot_packages": list(emu.packages),
        "setup_seconds_this_run": round(setup_seconds, 1),
    }
    path = emu_mod.cache_dir() / "report.json"
    atomic_write_json(path, report)
    assert report["symbols_bit_identical"] and path.is_file()
