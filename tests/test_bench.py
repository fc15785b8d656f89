"""python -m bench bench: statistics, the result schema, skip paths, and a real run without TensorFlow."""

from __future__ import annotations

import json
import math
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench import classical, environment, latency, quality, runner, schema, targets
from bench.__main__ import main
from bench.stats import percentile, summarize
from compressor import errors as compressor_errors
from compressor.bundle import ROLES, load_part
from compressor.codec import Encoder
from compressor.errors import ManifestError
from compressor.runtime import sessions as runtimes
from export import isolation
from tests.support import ROOT, run_in_site, without_modules

TINY = latency.Profile("tiny", warmup_runs=1, warmup_min_secs=0.0, num_runs=3, min_secs=0.0, max_secs=2.0)


@pytest.fixture(scope="module")
def result(bench_result) -> dict:
    return bench_result


# --- statistics ------------------------------------------------------------------------------
def test_percentiles_interpolate_linearly_between_ranks():
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile([4, 1, 3, 2], 90) == pytest.approx(3.7)
    assert percentile([10, 20], 99) == pytest.approx(19.9)
    assert percentile([7], 0) == percentile([7], 100) == 7
    assert percentile(range(101), 99) == 99


@given(st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=60), st.floats(0, 100))
def test_percentiles_agree_with_numpy(values, q):
    assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)), rel=1e-9, abs=1e-6)


def test_percentile_refuses_what_has_no_answer():
    with pytest.raises(ValueError, match="no values"):
        percentile([], 50)
    with pytest.raises(ValueError, match="0..100"):
        percentile([1.0], 101)
    with pytest.raises(ValueError, match="NaN"):
        percentile([1.0, math.nan], 50)


def test_summary_uses_population_std_and_ordered_percentiles():
    s = summarize([10.0, 20.0, 30.0, 40.0])
    assert s["count"] == 4 and s["avg"] == 25.0 and s["min"] == 10.0 and s["max"] == 40.0
    assert s["std"] == pytest.approx(math.sqrt(125.0), abs=0.01)
    assert s["p50"] == 25.0 and s["p90"] == 37.0 and s["p99"] == pytest.approx(39.7)


def test_timing_makes_at_least_the_requested_runs():
    calls = []
    samples = latency.time_calls(lambda: calls.append(1), runs=7, min_secs=0.0, max_secs=10.0)
    assert len(samples) == len(calls) >= 7 and all(s >= 0 for s in samples)


# --- distortion ------------------------------------------------------------------------------
def test_distortion_numbers_are_exact_on_known_inputs():
    target = np.array([[[1.0, 0.0]]])
    half = quality.metrics(target, np.array([[[0.5, 0.5]]]))
    assert half["bce_nats"] == pytest.approx(2 * math.log(2), abs=1e-4)
    assert half["mse"] == 0.25 and half["psnr_db"] == pytest.approx(6.021, abs=1e-3)
    assert half["pixel_error_%"] == 50.0  # 0.5 counts as on, so the 0 pixel is wrong
    same = quality.metrics(target, target)
    assert same["mse"] == 0 and same["psnr_db"] is None and same["pixel_error_%"] == 0


def test_lossless_classical_codecs_reproduce_the_image(bench_images):
    x = np.load(bench_images)[:8]
    targets_ = (x > 127).astype(np.float32)
    block = classical.measure(targets_)
    assert block["status"] == "ok" and block["images"] == 8
    rows = {(c["codec"], c["setting"]): c for c in block["codecs"]}
    for key in (("png", "1-bit"), ("webp", "lossless")):
        assert rows[key]["status"] == "ok" and rows[key]["pixel_error_%"] == 0 and rows[key]["bytes_per_image"] > 0
    jpeg = [rows["jpeg", f"q{q}"]["bytes_per_image"] for q in classical.QUALITIES]
    assert jpeg == sorted(jpeg)  # higher quality, more bytes
    jxl = rows["jpeg-xl", "lossless"]  # pillow-jxl-plugin is in the bench extra
    assert jxl["status"] == "ok" and jxl["pixel_error_%"] == 0


# --- environment -----------------------------------------------------------------------------
def _write(root: Path, rel: str, text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_raspberry_pi_state_is_read_from_its_files(tmp_path):
    _write(tmp_path, "proc/device-tree/model", "Raspberry Pi 5 Model B Rev 1.0\x00")
    _write(tmp_path, "proc/cpuinfo", "processor\t: 0\nCPU implementer\t: 0x41\nCPU part\t: 0xd0b\n\nModel\t: Pi 5\n")
    _write(tmp_path, "sys/devices/system/cpu/cpu0/cpufreq/scaling_governor", "ondemand\n")
    _write(tmp_path, "sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq", "2400000\n")
    _write(tmp_path, "sys/class/thermal/thermal_zone0/temp", "61350\n")
    _write(tmp_path, "sys/devices/platform/soc/soc:firmware/get_throttled", "50005\n")
    _write(tmp_path, "etc/os-release", 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\n')
    d = environment.describe(root=tmp_path)
    assert d["name"] == "Raspberry Pi 5 Model B Rev 1.0"
    assert d["cpu_model"] == "Pi 5 (Cortex-A76)"
    assert (d["cpu_governor"], d["cpu_max_mhz"], d["temperature_c"]) == ("ondemand", 2400, 61.4)
    t = d["raspberry_pi"]["throttled"]
    assert t["raw"] == "0x50005" and t["under_voltage_now"] and t["throttled_now"]
    assert t["under_voltage_occurred"] and t["throttled_occurred"] and not t["arm_frequency_capped_now"]
    assert d["os"] == "Debian GNU/Linux 12 (bookworm)"


def test_a_machine_that_is_not_a_pi_has_no_pi_block(tmp_path):
    _write(tmp_path, "proc/cpuinfo", "model name\t: Some CPU\n")
    d = environment.describe("bench box", root=tmp_path)
    assert d["name"] == "bench box" and d["cpu_model"] == "Some CPU"
    assert d["raspberry_pi"] is None and d["temperature_c"] is None and d["cpu_governor"] is None
    assert d["runtimes"] == runtimes.available()


# --- a real run --------------------------------------------------------------------------------
def test_bench_without_tensorflow_writes_a_result_that_follows_the_schema(result):
    schema.check(result)
    assert result["profile"]["name"] == "custom" and result["profile"]["num_runs"] == 3
    assert result["images"]["count"] == 64
    assert "--num-runs 3" in result["command"] and result["command"].startswith("python -m bench bench")


def test_every_installed_runtime_format_component_and_batch_is_measured(result):
    ok = {
        (r["component"], r["runtime"], r["precision"], r["batch"])
        for r in result["latency"]
        if r["status"] == "ok" and r["device"] == "cpu"
    }
    installed = [rt for rt in ("litert", "onnx") if runtimes.available()[rt]]
    for rt in installed:
        for component in latency.COMPONENTS:
            for precision in latency.PRECISIONS:
                for batch in (1, 64):
                    assert (component, rt, precision, batch) in ok
    assert not [r for r in result["latency"] if r["status"] == "error"]


def test_each_measured_row_is_consistent(result, bundle_dir):
    sizes = {f"{role}/{f.path}": f.size for role in ROLES for f in load_part(bundle_dir, role).files}
    assert result["bundle"]["files"] == sizes
    for row in result["latency"]:
        if row["status"] != "ok":
            continue
        t = row["inference_time_us"]
        assert t["count"] >= 3 and row["warmup_time_us"]["count"] >= 1
        assert t["min"] <= t["p50"] <= t["p90"] <= t["p99"] <= t["max"]
        assert row["us_per_image"] == pytest.approx(t["avg"] / row["batch"], rel=1e-3, abs=1e-3)
        assert row["images_per_s"] == pytest.approx(row["batch"] / t["avg"] * 1e6, rel=1e-3)
        assert row["startup_latency_us"] > 0 and row["warmup_time_us"]["first"] > 0
        assert row["peak_mem_mb"] is None or row["peak_mem_mb"] > 0
        if row["component"] != "codec":
            assert row["file_bytes"] == sizes[f"{row['component']}/{row['file']}"]
            assert row["model_size_mb"] == pytest.approx(row["file_bytes"] / 1e6, abs=1e-4)


def test_missing_runtimes_and_gpus_are_recorded_as_not_available(result):
    gaps = {(r["runtime"], r["provider"]): r for r in result["latency"] if r["status"] == "not available"}
    # the test venv has numpy 2, beside which tflite-runtime 2.14 cannot run: it is checked in its own
    # environment (test_tflite_runtime_2_14_runs_every_tflite_file_like_litert)
    assert runtimes.available()["tflite"] is None
    assert "tflite-runtime is not installed" in gaps["tflite", None]["reason"]
    providers = result["device"]["onnx_providers"] or []
    for provider in latency.GPU_PROVIDERS:
        if provider not in providers:
            row = gaps["onnx", provider]
            assert provider in row["reason"] and row["device"] == "gpu"
            assert row["batch"] is None and row["num_threads"] is None


_LITERT_ONLY = without_modules("onnxruntime", "PIL", "matplotlib", "psutil", "pillow_jxl") + (
    "from bench.__main__ import main\nsys.exit(main(sys.argv[1:]))\n"
)


def test_bench_runs_on_a_device_with_litert_alone(bundle_dir, tmp_path, bench_images):
    """A Raspberry Pi with only ai-edge-litert: no TensorFlow, onnxruntime, Pillow or matplotlib."""
    out = tmp_path / "pi.json"
    proc = isolation.run(
        _LITERT_ONLY,
        *("bench", "--bundle", str(bundle_dir), "--images", str(bench_images), "-o", str(out)),
        *("--quick", "--num-runs", "2", "--min-secs", "0", "--warmup-runs", "1", "--threads", "1"),
        *("--components", "decoder", "--batches", "1"),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = schema.load(out)
    rows = {(r["runtime"], r["provider"]): r for r in result["latency"]}
    assert rows["litert", None]["status"] == "ok"
    assert rows["onnx", None]["status"] == "not available"
    assert "onnxruntime is not installed" in rows["onnx", "CUDAExecutionProvider"]["reason"]
    assert result["classical"]["status"] == "not available" and "Pillow" in result["classical"]["reason"]
    assert [r["status"] for r in result["reconstruction"] if r["runtime"] == "litert"] == ["ok", "ok"]


def test_selecting_an_execution_provider_runs_real_onnx_sessions(bundle_dir, bench_images):
    """The accelerator path, exercised on CI with the one provider it has."""
    parts = {role: load_part(bundle_dir, role) for role in ROLES}
    cases, gaps = latency.plan(
        runtime_names=("litert",),
        components=("decoder", "codec"),
        precisions=("int8",),
        batches=(1,),
        threads=(1,),
        providers=("CPUExecutionProvider", "NoSuchExecutionProvider"),
    )
    assert [c.provider for c in cases if c.runtime == "onnx"] == ["CPUExecutionProvider"] * 2
    assert {g["provider"] for g in gaps} == {"NoSuchExecutionProvider"}
    x = np.load(bench_images)
    enc = Encoder.load(bundle_dir / "encoder", precision="fp32")
    inputs = latency.Inputs(x, quality.targets_of(enc, x), enc.latents(x))
    for case in (c for c in cases if c.runtime == "onnx"):
        row = latency.measure(case, parts, inputs, TINY)
        assert row["status"] == "ok", row.get("reason")
        assert (row["provider"], row["device"], row["format"]) == ("CPUExecutionProvider", "cpu", "onnx")


def test_rate_distortion_and_reconstruction_come_from_the_real_codec(result, trained_run):
    rd = result["rate_distortion"]
    steps = rd["steps"]
    assert [s["step"] for s in steps] == sorted(s["step"] for s in steps)
    stream = [s["stream_bytes_per_image"] for s in steps]
    assert stream == sorted(stream, reverse=True)  # coarser steps, fewer bytes
    assert all(s["message_bytes_per_image"] > s["stream_bytes_per_image"] - 1 for s in steps)
    assert rd["default_step"] in [s["step"] for s in steps]
    assert rd["kl_nats"] == trained_run[1]["test_kl_nats"]
    assert rd["kl_bytes"] == pytest.approx(rd["kl_nats"] / (8 * math.log(2)), abs=1e-3)
    grid = rd["grid"]
    assert quality.unpack(grid, grid["original"]).shape == tuple(grid["shape"])
    assert rd["default_step"] in [g["step"] for g in grid["reconstructions"]]
    recon = {(r["runtime"], r["precision"]): r for r in result["reconstruction"] if r["status"] == "ok"}
    fp32, int8 = recon["litert", "fp32"], recon["litert", "int8"]
    assert 0 < fp32["pixel_error_%"] < 20 and int8["bce_nats"] < 1.1 * fp32["bce_nats"]
    assert steps[0]["pixel_error_%"] <= steps[-1]["pixel_error_%"]


def test_targets_are_read_off_the_rows(result):
    t = result["targets"]
    assert t == targets.compute(result)
    large = t["decoder_int8_us_per_image_large_batch"]
    assert large["batch"] == 64 and large["macs_per_image"] == result["bundle"]["macs"]["decoder"]
    assert large["gmac_per_s"] == pytest.approx(large["macs_per_image"] / large["value"] / 1e3, rel=1e-2)
    assert t["decoder_int8_speedup_vs_keras_b1"]["value"] is None  # no --with-keras in this run
    assert "--with-keras" in t["decoder_int8_speedup_vs_keras_b1"]["note"]


# --- schema -------------------------------------------------------------------------------------
def test_schema_check_names_the_key_at_fault(result):
    broken = json.loads(json.dumps(result))
    ok_index = next(i for i, r in enumerate(broken["latency"]) if r["status"] == "ok")
    del broken["latency"][ok_index]["inference_time_us"]["p99"]
    with pytest.raises(schema.ResultFileError, match=rf"latency\[{ok_index}\]\.inference_time_us: .*'p99'"):
        schema.check(broken)
    newer = dict(result, schema_version=schema.SCHEMA_VERSION + 1)
    with pytest.raises(schema.ResultFileError, match="upgrade"):
        schema.check(newer)
    with pytest.raises(schema.ResultFileError, match="not a vae-compressor-bench result"):
        schema.check({"latency": []})
    wrong_type = dict(result, device=dict(result["device"], cores="two"))
    with pytest.raises(schema.ResultFileError, match="'cores' must be int/null"):
        schema.check(wrong_type)


def test_docs_describe_every_key_a_result_has(result):
    doc = re.sub(r"```.*?```", "", (ROOT / "docs" / "bench.md").read_text(), flags=re.S)
    documented = {word for span in re.findall(r"`([^`]+)`", doc) for word in re.findall(r"[A-Za-z0-9_%]+", span)}
    free_maps = {"runtimes", "packages", "files", "training", "macs"}

    def keys(obj, parent=""):
        if isinstance(obj, dict) and parent not in free_maps:
            for k, v in obj.items():
                yield k
                yield from keys(v, k)
        elif isinstance(obj, list):
            for item in obj:
                yield from keys(item, parent)

    missing = sorted(set(keys(result)) - documented)
    assert not missing, f"docs/bench.md does not document {missing}"


# --- refusals -----------------------------------------------------------------------------------
def test_bench_refuses_bad_options_with_a_clear_message(bundle_dir, tmp_path, capsys):
    out = str(tmp_path / "r.json")
    assert main(["bench", "--bundle", str(bundle_dir), "-o", out, "--images", str(tmp_path / "none.npy")]) == 1
    assert "test images not found" in capsys.readouterr().err
    images = str(tmp_path / "x.npy")
    np.save(images, np.zeros((2, 28, 28), np.uint8))
    assert main(["bench", "--bundle", str(bundle_dir), "-o", out, "--images", images, "--batches", "0"]) == 1
    assert "--batches takes positive integers" in capsys.readouterr().err
    assert main(["bench", "--bundle", str(bundle_dir), "-o", out, "--images", images, "--runtimes", "tpu"]) == 1
    assert "--runtimes takes some of litert, tflite, onnx" in capsys.readouterr().err
    assert main(["bench", "--bundle", str(bundle_dir), "-o", out, "--images", images, "--with-keras", images]) == 1
    assert "not a finished training run" in capsys.readouterr().err
    assert not (tmp_path / "r.json").exists()


def test_bench_needs_the_full_bundle(bundle_dir):
    with pytest.raises(ManifestError, match="full bundle"):
        runner.run(bundle_dir / "decoder", np.zeros((1, 28, 28), np.uint8), profile=TINY, log=lambda m: None)


@pytest.mark.slow
def test_keras_baseline_runs_in_a_child_and_skips_a_missing_gpu(trained_run, result):
    rows = runner.keras_rows(trained_run[0], (1,), (1,), replace(TINY, name="tiny"))
    cpu = {r["component"]: r for r in rows if r["device"] == "cpu"}
    assert set(cpu) == {"encoder", "decoder"} and all(r["status"] == "ok" for r in cpu.values())
    assert all(r["runtime"] == "tensorflow" and r["format"] == "keras" and r["batch"] == 1 for r in cpu.values())
    import tensorflow as tf

    has_gpu = bool(tf.config.list_physical_devices("GPU"))  # tensorflow-cpu in the test venv: none
    gpu = [r for r in rows if r["device"] == "gpu"]
    assert len(gpu) == 2 and all(r["status"] == ("ok" if has_gpu else "not available") for r in gpu)
    with_keras = dict(result, latency=result["latency"] + rows)
    schema.check(dict(with_keras, targets=targets.compute(with_keras)))
    speed = targets.compute(with_keras)["decoder_int8_speedup_vs_keras_b1"]
    assert speed["value"] == pytest.approx(speed["keras_us"] / speed["tflite_us"], rel=1e-2)


# --- the measuring scripts the README names ---------------------------------------------------
def test_fuzz_codes_counts_every_input_and_finds_no_crash(capsys):
    from bench import fuzz_codes

    assert fuzz_codes.main(["--n", "7000", "--seed", "3"]) == 0
    report = json.loads(capsys.readouterr().out)
    fuzz = report["results"]["fuzz"]
    codes = {"message", "entropy_payload", "raw_payload", "stream"}
    assert set(fuzz) == codes | {"bundle_manifest", "bundle_coding", "image_file"}
    for target, block in fuzz.items():
        counted = sum(sum(c.values()) for c in block["outcomes"].values())
        assert counted == block["inputs"] == 1000, target
        outcomes = {o for c in block["outcomes"].values() for o in c}
        assert not [o for o in outcomes if o.startswith("CRASH")], target
    unchanged = [fuzz[t]["outcomes"].get("unchanged", {}) for t in codes]
    assert any(unchanged) and all(set(u) <= {"decoded"} for u in unchanged)  # valid inputs still decode
    refused = {o for c in fuzz["stream"]["outcomes"].values() for o in c} - {"decoded"}
    assert refused and all(hasattr(compressor_errors, o) for o in refused)  # library errors only
    bench_us = report["results"]["micro_benchmark"]
    assert all(v > 0 for v in bench_us.values() if isinstance(v, float))


def test_fuzz_codes_reports_a_crash_and_exits_1(monkeypatch, capsys):
    """An entry point that raises something other than a library error is a crash: counted, printed, exit 1."""
    from bench import fuzz_codes

    real = fuzz_codes.unpack_stream

    def fragile(data, *args, **kw):
        if len(data) == 7:
            raise IndexError("a bug")
        return real(data, *args, **kw)

    monkeypatch.setattr(fuzz_codes, "unpack_stream", fragile)
    assert fuzz_codes.main(["--n", "4000", "--no-bench"]) == 1
    out = capsys.readouterr()
    outcomes = {o for c in json.loads(out.out)["results"]["fuzz"]["stream"]["outcomes"].values() for o in c}
    assert "CRASH:IndexError" in outcomes and "IndexError: a bug" in out.err


def test_codec_targets_measures_rate_distortion_lossless_and_latency_without_tensorflow(bundle_dir, bench_images):
    proc = isolation.run_module("bench.codec_targets", str(bundle_dir), str(bench_images), "--repeat", "20")
    assert proc.returncode == 0, proc.stderr
    t = json.loads(proc.stdout)
    assert t["runtime"] == "litert" and t["images"] == 64
    rd = t["rate_distortion"]
    assert [r["step"] for r in rd] == sorted(r["step"] for r in rd)
    for key in ("joint_stream_bytes_per_image", "stream_bytes_per_image", "message_bytes_per_image"):
        sizes = [r[key] for r in rd]
        assert sizes == sorted(sizes, reverse=True), key  # coarser steps, fewer bytes
    for r in rd:  # a joint code is smallest, self-contained messages largest
        assert r["joint_stream_bytes_per_image"] < r["stream_bytes_per_image"] < r["message_bytes_per_image"]
    assert t["default_step"] in [r["step"] for r in rd]
    lossless = t["lossless"]
    assert lossless["status"] == "ok" and lossless["exact"] is True
    assert lossless["message_bytes_per_image"] > lossless["stream_bytes_per_image"] - 1
    assert all(v > 0 for v in (*t["coding_us"].values(), *t["codec_us"].values()))


def test_jpeg_xl_is_measured_losslessly_where_its_plugin_is_installed(bench_images):
    """The JPEG XL figures come from pillow-jxl-plugin (pinned in the bench extra); without it they
    are "not available" (tests/test_rd_report.py)."""
    x = np.load(bench_images)[:16]
    rows = {(c["codec"], c["setting"]): c for c in classical.measure((x > 127).astype(np.float32))["codecs"]}
    jxl = rows["jpeg-xl", "lossless"]
    assert jxl["status"] == "ok" and jxl["pixel_error_%"] == 0
    assert jxl["bytes_per_image"] < rows["png", "1-bit"]["bytes_per_image"]
    lossy = [rows["jpeg-xl", f"q{q}"]["bytes_per_image"] for q in classical.QUALITIES]
    assert lossy == sorted(lossy)


def test_tflite_runtime_2_14_runs_every_tflite_file_like_litert(bundle_dir, bench_images, tflite_site, tmp_path):
    """bench.tflite_runtime_check in tflite-runtime 2.14's own site (numpy 1.26), against ai-edge-litert:
    what the README's runtime table says about it."""
    ref = tmp_path / "litert.npz"
    args = (str(bundle_dir), str(bench_images), str(ref))
    proc = isolation.run_module("bench.tflite_runtime_check", *args, "--runtime", "litert", "--write-reference")
    assert proc.returncode == 0, proc.stderr
    proc = run_in_site(tflite_site, "-m", "bench.tflite_runtime_check", *args)
    assert proc.returncode == 0, proc.stderr
    rows = {r["file"]: r for r in map(json.loads, proc.stdout.splitlines())}
    assert set(rows) == {f.path for role in ROLES for f in load_part(bundle_dir, role).files if f.format == "tflite"}
    assert len(rows) == 8 and {r["version"] for r in rows.values()} == {"2.14.0"}
    for name, row in rows.items():
        if "_fp32_" in name:
            assert row["max_abs_diff"] <= 1e-5, row
        else:  # other int8 kernels: a few values differ, by a few levels
            assert row["int8_values_differing_%"] < 5, row


def test_decoder_floor_rebuilds_every_compute_layer_of_the_shipped_decoder_with_its_shapes(bundle_dir):
    from bench import decoder_floor
    from compressor.bundle import load_manifest

    layers = decoder_floor.decoder_layers(str(bundle_dir / "decoder" / "decoder_int8_b1.tflite"))
    assert layers[0]["op"] == "FULLY_CONNECTED" and layers[-1]["sigmoid"]
    assert {layer["op"] for layer in layers} <= set(decoder_floor.COMPUTE_OPS)
    # the shipped graph is the trained one rewritten: the same MACs, plus its all-ones 1x1 layer at most
    macs = int(load_manifest(bundle_dir)["macs"]["decoder"])
    assert macs <= sum(layer["macs"] for layer in layers) <= 1.02 * macs
    for layer in layers:  # each one-layer stand-in reads and writes what the decoder's op does
        model = decoder_floor.one_layer_model(layer)
        assert tuple(model.input_shape) == layer["input"]
        assert tuple(model.output_shape) == layer["output"], layer


def test_grayscale_speed_bench_refuses_binarized_images(tmp_path):
    """Binarized digits made the grayscale figures look a third faster than grey ones."""
    from bench import gray_speed

    path = tmp_path / "binary.npy"
    np.save(path, np.where(np.arange(64 * 28 * 28).reshape(64, 28, 28) % 3, 255, 0).astype(np.uint8))
    with pytest.raises(SystemExit, match="two values only.*test_images_gray.npy"):
        gray_speed.main([str(tmp_path / "no-bundle"), str(path)])


def test_decoder_floor_converts_one_layer_files_by_the_export_converter_without_its_size_floor():
    from ai_edge_litert import interpreter as litert

    from bench import decoder_floor
    from export.convert import to_tflite

    layer = {"op": "FULLY_CONNECTED", "input": (1, 4), "kernel": (2, 4), "output": (1, 2), "sigmoid": False}
    model = decoder_floor.one_layer_model(layer)
    blob = decoder_floor.to_int8(model, layer["input"])
    it = litert.Interpreter(model_content=blob)
    assert it.get_input_details()[0]["dtype"] == it.get_output_details()[0]["dtype"] == np.int8
    with pytest.raises(RuntimeError, match="weights are missing"):  # the export keeps its floor
        to_tflite(model, np.zeros((4, 4), np.float32), min_bytes=len(blob) + 1)


def test_binary_floor_prints_bytes_per_step_the_search_and_the_network_floor_of_a_searched_round_trip(
    bundle_dir, bench_images, capsys
):
    from bench import binary_floor
    from compressor import binary_residual

    window = binary_residual.STEP_WINDOW, binary_residual.SEARCH_SLACK
    assert binary_floor.main([str(bundle_dir), str(bench_images), "--timed", "3"]) == 0
    out = capsys.readouterr().out
    steps = re.findall(r"^  step \S+ +([\d.]+) / ([\d.]+)(  \(the table's step\))?$", out, re.M)
    searched = re.findall(r"^  searched, .*  ([\d.]+) / ([\d.]+)$", out, re.M)
    assert len(steps) >= 2 and len(searched) == 2
    [table_step] = [float(m) for m, _, mark in steps if mark]
    # the search tries the table's step among others and keeps, per image, the shortest code
    assert float(searched[0][0]) <= table_step + 0.05 and float(searched[1][0]) <= table_step + 0.05
    runs = float(re.search(r"search: ([\d.]+) decoder runs per image", out)[1])
    assert runs >= 3  # the table's step and its neighbours at least
    skip = re.search(r"'skipped_share': ([\d.]+)", out)
    assert 0 < float(skip[1]) < 1
    assert (binary_residual.STEP_WINDOW, binary_residual.SEARCH_SLACK) == window  # measured, then put back
