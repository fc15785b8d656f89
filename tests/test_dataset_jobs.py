"""Dataset jobs (encode-dataset / decode-dataset): the bytes of one process, on any engine.

The local-engine tests run in this process. The Ray tests share one real local Ray cluster
(2 CPUs, started once per session: start-up is the slow part) and are marked slow.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from compressor.cli import main
from compressor.errors import DatasetError, ModelMismatchError
from compressor.io.arrays import to_uint8
from compressor.io.files import png_bytes, read_image, write_png
from compressor.jobs import run, table

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def digits():
    from export.datasets import mnist5k_raw

    return mnist5k_raw()[0]


def _encode(tmp_path, bundle_dir, sources, name="codes.parquet", **kw):
    out = tmp_path / name
    kw.setdefault("runtime", "litert")
    summary = run.encode_dataset([str(s) for s in sources], out, bundle=bundle_dir, **kw)
    return out, summary


def _rows(path) -> dict:
    return pq.read_table(path).to_pydict()


# --- local engine -----------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["entropy", "raw", "lossless"])
def test_every_row_holds_the_message_encoder_compress_gives_in_one_process(bundle_dir, enc, digits, tmp_path, mode):
    images = digits[:300]
    np.save(tmp_path / "shard.npy", images)
    # Units and batches that do not line up with each other or with the runtime's batch of 64.
    out, summary = _encode(
        tmp_path, bundle_dir, [tmp_path / "shard.npy"], options={"mode": mode}, unit_images=70, batch_size=45
    )
    rows = _rows(out)
    expected = enc.compress(images, mode=mode)
    assert rows["code"] == expected
    assert rows["index"] == list(range(300))
    assert rows["name"] == [f"shard[{i}]" for i in range(300)]
    assert rows["bytes"] == [len(m) for m in expected]
    assert set(rows["mode"]) == {mode} and rows["error"] == [None] * 300
    assert summary.images == 300 and summary.failed == 0
    assert summary.bytes_per_image == pytest.approx(sum(map(len, expected)) / 300)
    if mode == "entropy":  # int8 codes do not depend on the batch an image is in
        assert [enc.compress(images[i : i + 1])[0] for i in range(0, 300, 7)] == expected[::7]


def test_folder_tree_npz_and_parquet_sources_become_named_rows_in_input_order(bundle_dir, enc, digits, tmp_path):
    src = tmp_path / "src"
    (src / "b" / "deep").mkdir(parents=True)
    (src / ".hidden").mkdir()
    write_png(src / "a.png", digits[0])
    write_png(src / "b" / "deep" / "x.png", digits[1])
    write_png(src / ".hidden" / "skip.png", digits[2])
    np.savez(src / "b" / "more.npz", images=digits[3:6].astype(np.float32) / 255)
    parquet = tmp_path / "table.parquet"
    pq.write_table(
        pa.table({"name": ["p0", None], "image": [png_bytes(digits[6]), {"bytes": png_bytes(digits[7])}["bytes"]]}),
        parquet,
    )
    out, summary = _encode(tmp_path, bundle_dir, [src, parquet])
    rows = _rows(out)
    assert rows["name"] == ["a", "b/more[0]", "b/more[1]", "b/more[2]", "b/deep/x", "p0", "table[1]"]
    floats = digits[3:6].astype(np.float32) / 255  # float shards are coded as the floats they hold
    expected = enc.compress(digits[:1]) + enc.compress(floats) + enc.compress(digits[1:2]) + enc.compress(digits[6:8])
    assert rows["code"] == expected
    assert summary.failed == 0


def test_a_bad_image_is_an_error_row_with_its_name_and_the_rest_is_coded(bundle_dir, enc, digits, tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    for i in range(4):
        write_png(src / f"d{i}.png", digits[i])
    (src / "d1.png").write_bytes(b"\x89PNG\r\n\x1a\n damaged")
    write_png(src / "d2.png", np.zeros((30, 28), np.uint8))
    out = tmp_path / "codes.parquet"
    status = main(["encode-dataset", str(src), "-o", str(out), "--bundle", str(bundle_dir), "--runtime", "litert"])
    captured = capsys.readouterr()
    assert status == 3
    assert "d1: " in captured.err and "d2: image is 30x28" in captured.err
    assert "4 images (2 errors)" in captured.out and "bytes/image" in captured.out
    rows = _rows(out)
    assert rows["name"] == ["d0", "d1", "d2", "d3"]
    assert rows["code"][0] == enc.compress(digits[:1])[0] and rows["code"][3] == enc.compress(digits[3:4])[0]
    assert rows["code"][1] is None and rows["code"][2] is None
    assert "d1.png is not a readable image" in rows["error"][1] and rows["error"][0] is None


def test_decode_dataset_gives_the_images_of_decoding_the_same_messages_locally(bundle_dir, dec, digits, tmp_path):
    images = digits[:150]
    np.save(tmp_path / "shard.npy", images)
    codes, _ = _encode(tmp_path, bundle_dir, [tmp_path / "shard.npy"], unit_images=64)
    expected = dec.decompress(_rows(codes)["code"], binarize=True)
    out = tmp_path / "decoded.parquet"
    summary = run.decode_dataset(codes, out, bundle=bundle_dir, runtime="litert", unit_images=50, batch_size=33)
    rows = _rows(out)
    assert summary.images == 150 and summary.failed == 0
    decoded = np.stack([read_image_bytes(b) for b in rows["image"]])
    np.testing.assert_array_equal(decoded, expected)
    folder = tmp_path / "pngs"
    run.decode_dataset(codes, folder, bundle=bundle_dir, runtime="litert", binarize=False)
    probs = to_uint8(dec.decompress(_rows(codes)["code"][:3]))
    for i in range(3):
        np.testing.assert_array_equal(read_image(folder / f"shard[{i}].png"), probs[i])


def read_image_bytes(data: bytes) -> np.ndarray:
    from compressor.io.files import decode_image

    return decode_image(data, "row")


def test_lossless_codes_decode_to_the_exact_binarized_pixels(bundle_dir, digits, tmp_path):
    np.save(tmp_path / "shard.npy", digits[:40])
    codes, _ = _encode(tmp_path, bundle_dir, [tmp_path / "shard.npy"], options={"mode": "lossless"})
    out = tmp_path / "decoded.parquet"
    run.decode_dataset(codes, out, bundle=bundle_dir, runtime="litert")
    decoded = np.stack([read_image_bytes(b) for b in _rows(out)["image"]])
    np.testing.assert_array_equal(decoded, np.where(digits[:40] > 127, 255, 0))


def test_a_damaged_message_is_an_error_row_and_a_hostile_name_writes_nothing_outside(bundle_dir, digits, tmp_path):
    np.save(tmp_path / "shard.npy", digits[:4])
    codes, _ = _encode(tmp_path, bundle_dir, [tmp_path / "shard.npy"])
    t = pq.read_table(codes)
    rows = t.to_pydict()
    rows["code"][1] = rows["code"][1][:1]  # truncated
    rows["name"][2] = "../escape"
    pq.write_table(pa.Table.from_pydict(rows, schema=t.schema), codes)
    out = tmp_path / "out" / "pngs"
    status = main(["decode-dataset", str(codes), "-o", str(out), "--bundle", str(bundle_dir), "--runtime", "litert"])
    assert status == 3
    assert sorted(p.name for p in out.iterdir()) == ["shard[0].png", "shard[3].png"]
    assert not (tmp_path / "out" / "escape.png").exists()


def test_codes_of_another_model_are_refused_before_any_row_is_decoded(bundle_dir, digits, tmp_path, capsys):
    np.save(tmp_path / "shard.npy", digits[:3])
    codes, _ = _encode(tmp_path, bundle_dir, [tmp_path / "shard.npy"])
    t = pq.read_table(codes)
    pq.write_table(t.replace_schema_metadata(table.metadata("codes", model_id="00" * 8)), codes)
    with pytest.raises(ModelMismatchError):
        run.decode_dataset(codes, tmp_path / "x.parquet", bundle=bundle_dir)
    status = main(["decode-dataset", str(codes), "-o", str(tmp_path / "x.parquet"), "--bundle", str(bundle_dir)])
    assert status == 1 and f"coded with model {'00' * 8}" in capsys.readouterr().err
    assert not (tmp_path / "x.parquet").exists()


def test_a_writer_that_misses_or_repeats_rows_leaves_no_file_behind(tmp_path):
    def sink():
        return table.ParquetSink(tmp_path / "out.parquet", table.images_schema(pa), table.metadata("images"), total=3)

    rows = table.images_table(pa, index=[0, 1], names=["a", "b"], images=[b"x", b"y"], errors=[None, None])
    with pytest.raises(DatasetError, match="never arrived"), sink() as lossy:
        lossy.write(rows)
    with pytest.raises(DatasetError, match="out of order"), sink() as repeating:
        repeating.write(rows)
        repeating.write(rows)  # the same rows again: a retried worker that repeated its output
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "columns",
    [{"code": ["x"]}, {"code": [1]}, {"code": [[1, 2]]}, {"name": [1]}, {"error": [2]}],
    ids=["code-string", "code-int", "code-list", "name-int", "error-int"],
)
def test_a_codes_file_with_a_column_of_the_wrong_type_is_refused_in_one_line_before_any_row(tmp_path, columns):
    path = tmp_path / "codes.parquet"
    pq.write_table(pa.table({"name": ["a"], "code": [b"\x40\x00"], **columns}), path)
    with pytest.raises(DatasetError, match=f"its column '{next(iter(columns))}' holds"):
        table.plan_codes(path, model_id=bytes(8), unit_rows=10)
    pq.write_table(pa.table({"name": ["a"], "code": [b"\x40\x00"], "error": [None]}), path)  # inferred: null
    assert table.plan_codes(path, model_id=bytes(8), unit_rows=10).total == 1


def test_a_pipe_named_like_an_array_or_parquet_file_is_an_error_row_not_a_hang(tmp_path):
    import threading

    from compressor.jobs import sources

    for name in ("a.npy", "b.npz", "c.parquet"):
        os.mkfifo(tmp_path / name)
    np.save(tmp_path / "d.npy", np.zeros((2, 4, 4), np.uint8))
    planned = []
    worker = threading.Thread(target=lambda: planned.append(sources.plan([tmp_path])), daemon=True)
    worker.start()
    worker.join(30)
    assert planned, "planning blocked on a FIFO (waiting for a writer that never comes)"
    units = planned[0].units
    assert [u.kind for u in units] == ["failed", "failed", "failed", "npy"] and planned[0].total == 5
    assert all("not a regular file" in u.error for u in units[:3])
    with pytest.raises(DatasetError, match="not a regular file"):  # a codes file to decode, likewise
        table.plan_codes(tmp_path / "c.parquet", model_id=bytes(8), unit_rows=10)


def test_names_the_file_system_cannot_hold_are_error_rows_and_the_other_images_are_written(tmp_path):
    names = ["a.png/b", "a", "x" * 300, "c/d", "c/d.png/e", "ok"]
    rows = table.images_table(
        pa, index=list(range(6)), names=names, images=[png_bytes(np.zeros((4, 4), np.uint8))] * 6, errors=[None] * 6
    )
    with table.FolderSink(tmp_path / "out", total=6) as sink:
        sink.write(rows)
    assert [name for name, _ in sink.tally.errors] == ["a", "x" * 300, "c/d.png/e"]
    assert all("not written" in why for _, why in sink.tally.errors)
    written = sorted(str(p.relative_to(tmp_path / "out")) for p in (tmp_path / "out").rglob("*.png") if p.is_file())
    assert written == ["a.png/b.png", "c/d.png", "ok.png"]


@pytest.mark.parametrize(
    ("hide", "extra"), [("pyarrow", "[parquet]"), ("ray", "[scale]")], ids=["without-pyarrow", "without-ray"]
)
def test_a_missing_extra_is_one_line_naming_what_to_install(bundle_dir, digits, tmp_path, hide, extra):
    np.save(tmp_path / "shard.npy", digits[:2])
    code = (
        f"import sys; sys.modules[{hide!r}] = None; from compressor.cli import main; "
        f"sys.exit(main(['encode-dataset', sys.argv[1], '-o', sys.argv[2], '--bundle', sys.argv[3], "
        f"'--engine', 'ray']))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "shard.npy"), str(tmp_path / "c.parquet"), str(bundle_dir)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert proc.returncode == 1
    lines = [line for line in proc.stderr.splitlines() if "compressor encode-dataset" in line]
    assert len(lines) == 1 and extra in lines[0] and "pip install" in lines[0]
    assert "Traceback" not in proc.stderr and not (tmp_path / "c.parquet").exists()


def test_the_dataset_modules_import_neither_ray_nor_pyarrow_until_a_job_runs():
    modules = ["compressor.cli"] + [f"compressor.jobs.{m}" for m in ("cli", "run", "work", "table", "sources")]
    modules += ["compressor.jobs.local", "compressor.jobs.ray_engine"]
    code = f"import sys, {', '.join(modules)}; print(sorted({{m.split('.')[0] for m in sys.modules}}))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True).stdout
    assert "'ray'" not in loaded and "'pyarrow'" not in loaded and "'compressor'" in loaded


# --- Ray engine (one real local cluster for the session) -------------------------------------
@pytest.fixture(scope="session")
def ray_cluster():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield ray
    ray.shutdown()


@pytest.mark.slow
def test_ray_engine_writes_the_same_rows_as_the_local_engine_in_every_mode(ray_cluster, bundle_dir, digits, tmp_path):
    np.save(tmp_path / "shard.npy", digits[:400])
    write_png(tmp_path / "bad.png", np.zeros((5, 5), np.uint8))
    sources = [tmp_path / "shard.npy", tmp_path / "bad.png"]
    for mode in ("entropy", "raw", "lossless"):
        kw = {"options": {"mode": mode}, "unit_images": 60, "batch_size": 32}
        local, _ = _encode(tmp_path, bundle_dir, sources, f"local-{mode}.parquet", **kw)
        remote, summary = _encode(tmp_path, bundle_dir, sources, f"ray-{mode}.parquet", engine="ray", workers=2, **kw)
        assert pq.read_table(remote).equals(pq.read_table(local)), mode
        assert summary.images == 401 and summary.failed == 1 and summary.errors[0][0] == "bad"
    codes = tmp_path / "local-entropy.parquet"
    run.decode_dataset(codes, tmp_path / "dec-local.parquet", bundle=bundle_dir, unit_images=100)
    run.decode_dataset(codes, tmp_path / "dec-ray.parquet", bundle=bundle_dir, unit_images=100, engine="ray", workers=2)
    assert pq.read_table(tmp_path / "dec-ray.parquet").equals(pq.read_table(tmp_path / "dec-local.parquet"))


@pytest.mark.slow
def test_the_cli_runs_on_the_ray_engine_and_says_errors_occurred(ray_cluster, bundle_dir, digits, tmp_path, capsys):
    np.save(tmp_path / "shard.npy", digits[:50])
    np.save(tmp_path / "nan.npy", np.full((2, 28, 28), np.nan, np.float32))
    out = tmp_path / "codes.parquet"
    args = ["encode-dataset", str(tmp_path), "-o", str(out), "--bundle", str(bundle_dir), "--engine", "ray"]
    assert main([*args, "--workers", "2"]) == 3
    captured = capsys.readouterr()
    assert "nan[0]: image has NaN" in captured.err and "52 images (2 errors)" in captured.out
    assert "engine ray, 2 workers" in captured.out


def _actor_pids(kind: str) -> list[int]:
    import psutil

    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if f"MapBatches({kind})" in cmdline:
            found.append(proc.info["pid"])
    return found


@pytest.mark.slow
def test_a_worker_killed_mid_job_is_retried_and_every_input_is_written_exactly_once(
    ray_cluster, bundle_dir, enc, digits, tmp_path
):
    images = np.concatenate([digits, digits])[:6000]
    np.save(tmp_path / "shard.npy", images)
    killed = []

    def kill_one_actor(done, total):
        if not killed:  # the first rows are written: the other units are queued or running
            pids = _actor_pids("EncodeUnits")
            assert pids, "no Ray actor process found to kill"
            os.kill(pids[0], signal.SIGKILL)
            killed.append((pids[0], done, total))

    out, summary = _encode(
        tmp_path,
        bundle_dir,
        [tmp_path / "shard.npy"],
        engine="ray",
        workers=2,
        unit_images=150,
        batch_size=50,
        on_progress=kill_one_actor,
    )
    assert killed and killed[0][1] < killed[0][2] / 2  # killed early, with most of the job left
    rows = _rows(out)
    assert rows["index"] == list(range(6000))  # every input exactly once, in order
    assert rows["code"] == enc.compress(images)
    assert summary.images == 6000 and summary.failed == 0
