"""The rate–distortion report of every mode: the ratio arithmetic, the figures and tables, and
a codec that cannot be measured here (bench/rd_compare.py, rd_sweeps.py, rd_document.py)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from bench import classical, rd_compare, rd_document, rd_sweeps
from bench.report import render_markdown
from bench.schema import ResultFileError
from export import isolation
from tests.support import without_modules

INF = math.inf


# --- the arithmetic -----------------------------------------------------------------------------
def test_bytes_for_a_quality_between_two_settings_are_interpolated_linearly():
    assert rd_compare.bytes_for_quality([(100, 30.0), (200, 40.0)], 35.0) == pytest.approx(150.0)
    assert rd_compare.bytes_for_quality([(200, 40.0), (100, 30.0)], 32.5) == pytest.approx(125.0)  # any order


def test_a_quality_below_the_sweep_costs_the_lowest_setting_and_above_it_is_out_of_reach():
    sweep = [(100, 30.0), (200, 40.0)]
    assert rd_compare.bytes_for_quality(sweep, 10.0) == 100.0
    assert rd_compare.bytes_for_quality(sweep, 40.5) == INF
    assert rd_compare.bytes_for_quality(sweep, INF) == INF


def test_a_setting_that_costs_more_for_less_quality_never_counts():
    # q50 at 300 B is worse than q90 at 200 B: reaching 32 dB costs what reaching 40 dB costs at most
    sweep = [(100, 30.0), (300, 35.0), (200, 40.0)]
    assert rd_compare.bytes_for_quality(sweep, 32.0) == pytest.approx(100 + (200 - 100) * 2 / 5)
    assert rd_compare.bytes_for_quality(sweep, 36.0) == pytest.approx(200.0)


def test_an_exact_lossy_setting_reaches_every_quality_including_lossless():
    sweep = [(100, 30.0), (400, INF)]
    assert rd_compare.bytes_for_quality(sweep, INF) == 400.0
    assert rd_compare.bytes_for_quality(sweep, 50.0) == 400.0


def test_pixel_error_is_turned_into_higher_is_better_quality():
    assert rd_compare.goodness(1.5, binary=True) == -1.5
    assert rd_compare.goodness(None, binary=False) == INF
    # binary sweep: 4 % error at 20 B, 0 % at 60 B; 1 % error needs 3/4 of the way
    sweep = [(20, rd_compare.goodness(4.0, binary=True)), (60, rd_compare.goodness(0.0, binary=True))]
    assert rd_compare.bytes_for_quality(sweep, rd_compare.goodness(1.0, binary=True)) == pytest.approx(50.0)


def test_the_best_classical_codec_is_the_cheapest_that_reaches_the_quality():
    sweeps = {"webp": [(100, 30.0), (200, 40.0)], "jpeg": [(150, 30.0), (250, 45.0)]}
    lossless = {"png": 500.0, "webp": 300.0}
    best = rd_compare.best_classical(sweeps, lossless, 35.0)
    assert (best.codec, best.bytes_per_image, best.lossless_fallback) == ("webp", 150.0, False)
    assert rd_compare.best_classical(sweeps, lossless, 20.0).below_sweep  # webp's q0 is better than 20 dB
    best = rd_compare.best_classical(sweeps, lossless, 42.0)  # only jpeg reaches 42 dB
    assert best.codec == "jpeg" and best.bytes_per_image == pytest.approx(150 + 100 * 12 / 15)
    assert rd_compare.ratio(50.0, best) == pytest.approx(50.0 / best.bytes_per_image)


def test_beyond_every_lossy_sweep_the_comparison_is_with_the_best_lossless_size_and_says_so():
    sweeps = {"webp": [(100, 30.0), (200, 40.0)]}
    best = rd_compare.best_classical(sweeps, {"png": 500.0, "webp": 300.0}, INF)
    assert (best.codec, best.bytes_per_image, best.lossless_fallback) == ("webp lossless", 300.0, True)
    with pytest.raises(ValueError, match="no classical codec was measured"):
        rd_compare.best_classical({}, {}, 30.0)


def _synthetic_set() -> dict:
    """A grayscale set: three of our points and two classical codecs, one of them not measured."""

    def row(codec, setting, b, psnr, lossless=False):
        mse = 0 if psnr is None else 10 ** (-psnr / 10)
        return {"codec": codec, "setting": setting, "lossless": lossless, "status": "ok", "bytes_per_image": b,
                "psnr_db": psnr, "mse": mse, "pixel_error_%": 0.0, "encode_decode_us": 10.0}  # fmt: skip

    codecs = [
        row("webp", "lossless", 300.0, None, True),
        row("webp", "q0", 100.0, 30.0),
        row("webp", "q90", 200.0, 40.0),
    ]
    codecs.append({"codec": "jpeg-xl", "setting": "lossless", "lossless": True, "status": "not available",
                   "reason": "Pillow here cannot write jpeg-xl (pip install pillow-jxl-plugin)"})  # fmt: skip
    ours = [
        {"family": "latent only", "setting": "Δ 0.3", "message_bytes": 10.0, "stream_bytes": 9.0, "joint_bytes": 8.0,
         "psnr_db": 20.0},
        {"family": "residual", "setting": "E 8", "message_bytes": 60.0, "stream_bytes": 55.0, "psnr_db": 35.0},
        {"family": "residual", "setting": "E 0", "message_bytes": 150.0, "stream_bytes": 140.0, "psnr_db": None},
    ]  # fmt: skip
    return {"key": "grayscale", "kind": "grayscale", "quality": "psnr_db", "bundle": "b", "model_id": "00",
            "default_step": 0.3, "images": {"source": "s", "count": 3, "classical_count": 3}, "ours": ours,
            "classical": {"status": "ok", "codecs": codecs}, "seconds": 1.0}  # fmt: skip


def test_the_ratio_table_divides_our_bytes_by_the_best_classical_at_each_operating_point():
    table = rd_document.ratio_table(_synthetic_set())
    rows = {r[1]: r for r in table.rows}
    assert rows["Δ 0.3"][6:] == ["webp ²", "100.0", "0.100", "0.090"]  # 20 dB: webp's lowest setting
    assert rows["E 8"][6:] == ["webp", "150.0", "0.400", "0.367"]  # 35 dB: halfway along webp's sweep
    assert rows["E 0"][2] == "exact" and rows["E 0"][6:] == ["webp lossless ¹", "300.0", "0.500", "0.467"]
    assert any(n.startswith("¹ no lossy setting") for n in table.notes)
    assert any(n.startswith("² every setting of this codec gives a better quality") for n in table.notes)


def test_a_codec_that_was_not_measured_is_listed_as_not_measured_with_its_reason():
    table = rd_document.ratio_table(_synthetic_set())
    assert "jpeg-xl: not measured: Pillow here cannot write jpeg-xl (pip install pillow-jxl-plugin)" in table.notes
    classical_rows = {(r[0], r[1]): r for r in rd_document.classical_table(_synthetic_set()).rows}
    assert classical_rows["jpeg-xl", "lossless"][2] == "not measured"


def test_without_the_jpeg_xl_plugin_its_rows_are_not_available_not_a_traceback(tmp_path):
    x = np.full((2, 28, 28), 200, np.uint8)
    np.save(tmp_path / "x.npy", x)
    code = without_modules("pillow_jxl") + (
        "import json, sys\nimport numpy as np\nfrom bench import classical\n"
        "x = np.load(sys.argv[1]).astype(np.float32) / 255\n"
        "print(json.dumps(classical.measure(x, classical.sweep_codecs(False))))\n"
    )
    proc = isolation.run(code, str(tmp_path / "x.npy"))
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)["codecs"]
    jxl = [r for r in rows if r["codec"] == "jpeg-xl"]
    assert jxl and all(r["status"] == "not available" and "pip install pillow-jxl-plugin" in r["reason"] for r in jxl)
    assert all(r["status"] == "ok" for r in rows if r["codec"] in ("png", "webp", "jpeg"))


def test_every_sweep_codec_of_the_report_is_measured_here_and_its_lossless_modes_are_exact():
    x = np.random.default_rng(0).integers(0, 256, (3, 28, 28)).astype(np.float32) / 255
    block = classical.measure(x, classical.sweep_codecs(False))
    assert {r["codec"] for r in block["codecs"] if r["status"] == "ok"} == {"png", "webp", "jpeg", "jpeg-xl", "avif"}
    assert all(r["mse"] == 0 for r in block["codecs"] if r["lossless"])


def test_a_file_that_is_not_a_rate_distortion_measurement_is_refused_by_name(tmp_path):
    bad = tmp_path / "rd.json"
    bad.write_text(json.dumps({"schema": "vae-compressor-bench"}))
    with pytest.raises(ResultFileError, match="is not a vae-compressor-rd file"):
        rd_sweeps.load(bad)
    bad.write_text(json.dumps({"schema": rd_sweeps.SCHEMA, "schema_version": 1, "sets": [{"key": "x"}]}))
    with pytest.raises(ResultFileError, match=r"sets\[0\]\.kind"):
        rd_sweeps.load(bad)


# --- on real models ------------------------------------------------------------------------------
def _rd(*args):
    """``python -m bench rd`` in a child without TensorFlow-side imports, as the demo runs it."""
    return isolation.run_module("bench", "rd", *args, "--classical-images", "4")


def test_the_binary_report_draws_its_figure_and_writes_its_tables(
    bundle_dir, bench_images, bench_result_file, tmp_path
):
    out, data = tmp_path / "report", tmp_path / "rd.json"
    proc = _rd("--binary", str(bundle_dir), str(bench_images), "-o", str(out), "--json", str(data))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    curves = rd_sweeps.load(data)
    (rd_set,) = curves["sets"]
    families = {p["family"] for p in rd_set["ours"]}
    assert families == {"latent only", "lossless (mode 2)", "residual"}
    exact = [
        p for p in rd_set["ours"] if p["family"] != "latent only" and p["setting"] in ("exact", "lossless, context")
    ]
    assert len(exact) == 2 and all(p["pixel_error_%"] == 0 for p in exact)
    bands = [p["pixel_error_%"] for p in rd_set["ours"] if p["setting"].startswith("band")]
    assert bands == sorted(bands, reverse=True)  # a wider band, fewer errors
    assert (out / "rd-binary.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (out / "rd.md").read_text()
    assert "ours ÷ best (message)" in md and "![rate-distortion, Binary model" in md

    report = isolation.run_module("bench", "report", str(bench_result_file), "-o", str(out), "--rd", str(data))
    assert report.returncode == 0, report.stderr
    page = (out / "report.md").read_text()
    assert "## Rate–distortion, every mode" in page and "(rd-binary.png)" in page
    assert "rd-binary.png" in (out / "report.html").read_text()


def test_the_grayscale_report_covers_every_error_bound_on_digits_and_natural_crops(gray_bundle_dir, tmp_path):
    from export import datasets

    images = tmp_path / "gray.npy"
    np.save(images, np.rint(datasets.load("mnist5k", binarize=False).test[:16, ..., 0] * 255).astype(np.uint8))
    out = tmp_path / "report"
    proc = _rd("--grayscale", str(gray_bundle_dir), str(images), "-o", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    curves = rd_sweeps.load(out / "rd.json")
    assert [s["key"] for s in curves["sets"]] == ["grayscale", "grayscale-natural"]
    for rd_set in curves["sets"]:
        residual = [p for p in rd_set["ours"] if p["family"] == "residual"]
        assert [p["max_error"] for p in residual] == [0, 1, 2, 4, 8, 16, 32]
        assert all(p["max_abs_error"] <= p["max_error"] for p in residual)
        assert residual[0]["psnr_db"] is None  # E = 0 is lossless
        latent = [p for p in rd_set["ours"] if p["family"] == "latent only"]
        assert all(p["joint_bytes"] < min(p["stream_bytes"], p["message_bytes"]) for p in latent)  # 16 images:
        # a stream's header may cost more per image than the messages' own
        assert (out / f"rd-{rd_set['key']}.png").stat().st_size > 10_000
    md = render_markdown(rd_document.blocks(curves, out))
    assert md.count("ours ÷ best (message)") == 2 and "28x28 crops of a natural photo" in md
