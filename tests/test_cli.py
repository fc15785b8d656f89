"""The command line: encode, info, decode; nothing is written from bad bytes."""

import json

import numpy as np
import pytest

import compressor
from compressor import wire
from compressor.cli import main
from compressor.io.arrays import to_uint8 as as_uint8_levels
from compressor.io.files import read_image, read_images, write_png
from tests.support import mnist5k_test


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    folder = tmp_path_factory.mktemp("digits")
    for i, img in enumerate(mnist5k_test(6)):
        write_png(folder / f"digit{i}.png", img)
    return folder


@pytest.fixture(scope="module")
def pixels(digits):
    """The six digits as the CLI reads them (uint8 0/255)."""
    return read_images(digits)[0]


def _encode(bundle_dir, digits, out, *flags) -> dict:
    """``compressor encode`` with ``flags``, then ``compressor info`` of the result (as a dict)."""
    assert main(["encode", str(digits), "-o", str(out), "--bundle", str(bundle_dir), *flags]) == 0
    return _info(out, "--bundle", str(bundle_dir / "decoder"))


def _info(codes, *flags) -> dict:
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(["info", str(codes), *flags]) == 0
    return json.loads(buf.getvalue())


def test_encode_info_decode_round_trip_keeps_names(bundle_dir, digits, tmp_path, capsys):
    codes = tmp_path / "codes.bin"
    assert main(["encode", str(digits), "-o", str(codes), "--bundle", str(bundle_dir), "--quality", "8"]) == 0
    assert main(["info", str(codes), "--bundle", str(bundle_dir / "decoder")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("6 images -> ") and "names stored" in out
    info = json.loads(out.split("\n", 1)[1])
    assert info["count"] == 6 and info["mode"] == "entropy" and info["step"] > 0
    out = tmp_path / "decoded"
    assert (
        main(["decode", str(codes), "-o", str(out), "--bundle", str(bundle_dir / "decoder"), "--runtime", "onnx"]) == 0
    )
    assert sorted(p.name for p in out.iterdir()) == [f"digit{i}.png" for i in range(6)]
    img = read_image(out / "digit0.png")
    assert img.shape == (28, 28) and set(np.unique(img)) <= {0, 255}


def test_decoding_a_damaged_stream_fails_and_writes_nothing(bundle_dir, digits, tmp_path, capsys):
    codes = tmp_path / "codes.bin"
    main(["encode", str(digits), "-o", str(codes), "--bundle", str(bundle_dir)])
    data = bytearray(codes.read_bytes())
    data[-7] ^= 0xFF
    codes.write_bytes(bytes(data))
    out = tmp_path / "decoded"
    assert main(["decode", str(codes), "-o", str(out), "--bundle", str(bundle_dir)]) == 1
    assert "error" in capsys.readouterr().err
    assert not out.exists()


def test_info_refuses_a_stream_of_another_bundle(bundle_dir, digits, tmp_path, capsys):
    from compressor import wire

    codes = tmp_path / "codes.bin"
    main(["encode", str(digits), "-o", str(codes), "--bundle", str(bundle_dir)])
    s = wire.unpack_stream(codes.read_bytes())
    codes.write_bytes(wire.pack_stream(bytes(8), s.mode, s.step_index, s.payloads))
    assert main(["info", str(codes), "--bundle", str(bundle_dir)]) == 1
    err = capsys.readouterr().err
    assert "0000000000000000" in err and "model" in err


def test_encoding_an_empty_folder_names_the_folder(bundle_dir, tmp_path, capsys):
    assert main(["encode", str(tmp_path), "-o", str(tmp_path / "c.bin"), "--bundle", str(bundle_dir)]) == 1
    assert "no images" in capsys.readouterr().err
    assert not (tmp_path / "c.bin").exists()


# --- every documented flag of encode / info / decode ---------------------------------------------
def test_encode_step_writes_codes_at_exactly_that_step(bundle_dir, digits, pixels, enc, tmp_path):
    step = enc.steps[5]
    info = _encode(bundle_dir, digits, tmp_path / "c.bin", "--step", str(step))
    assert info["step"] == step and info["step_index"] == 5
    assert (tmp_path / "c.bin").read_bytes() == enc.compress_stream(pixels, step=step, names=_names(6))


def test_encode_quality_runs_from_coarse_1_to_fine_16(bundle_dir, digits, enc, tmp_path):
    n = len(enc.steps)
    coarse = _encode(bundle_dir, digits, tmp_path / "q1.bin", "--quality", "1")
    fine = _encode(bundle_dir, digits, tmp_path / "q16.bin", "--quality", str(n))
    assert (coarse["step_index"], fine["step_index"]) == (n - 1, 0)
    assert coarse["bytes"] < fine["bytes"]


def test_encode_target_bytes_keeps_the_stream_within_the_budget_per_image(bundle_dir, digits, pixels, enc, tmp_path):
    info = _encode(bundle_dir, digits, tmp_path / "t.bin", "--target-bytes", "14", "--no-names")
    assert info["bytes"] <= 14 * 6
    assert (tmp_path / "t.bin").read_bytes() == enc.compress_stream(pixels, target_bytes=14)
    finer = enc.compress_stream(pixels, step=enc.steps[info["step_index"] - 1]) if info["step_index"] else None
    assert finer is None or len(finer) > 14 * 6  # the finest step that fits


def test_only_one_rate_option_is_accepted(bundle_dir, digits, tmp_path, capsys):
    with pytest.raises(SystemExit) as usage:
        main(["encode", str(digits), "-o", str(tmp_path / "c.bin"), "--quality", "3", "--step", "0.5"])
    assert usage.value.code == 2 and "not allowed with argument" in capsys.readouterr().err
    assert (
        main(["encode", str(digits), "-o", str(tmp_path / "c.bin"), "--bundle", str(bundle_dir), "--quality", "99"])
        == 1
    )
    assert "quality must be an integer 1..16" in capsys.readouterr().err
    assert not (tmp_path / "c.bin").exists()


def test_encode_joint_writes_one_smaller_code_that_decodes_to_the_same_images(bundle_dir, digits, tmp_path):
    separate = _encode(bundle_dir, digits, tmp_path / "s.bin")
    joint = _encode(bundle_dir, digits, tmp_path / "j.bin", "--joint")
    assert joint["joint"] and not separate["joint"] and joint["bytes"] < separate["bytes"]
    for codes in ("s", "j"):
        assert (
            main(["decode", str(tmp_path / f"{codes}.bin"), "-o", str(tmp_path / codes), "--bundle", str(bundle_dir)])
            == 0
        )
    for name in (f"digit{i}.png" for i in range(6)):
        np.testing.assert_array_equal(read_image(tmp_path / "j" / name), read_image(tmp_path / "s" / name))


@pytest.mark.parametrize("flags", [["--lossless"], ["--mode", "lossless"]])
def test_encode_lossless_decodes_to_exactly_the_input_pixels(bundle_dir, digits, pixels, tmp_path, flags):
    info = _encode(bundle_dir, digits, tmp_path / "x.bin", *flags)
    assert info["mode"] == "lossless"
    assert main(["decode", str(tmp_path / "x.bin"), "-o", str(tmp_path / "out"), "--bundle", str(bundle_dir)]) == 0
    for i in range(6):
        np.testing.assert_array_equal(read_image(tmp_path / "out" / f"digit{i}.png"), pixels[i])


def test_encode_mode_raw_writes_fixed_size_payloads(bundle_dir, digits, tmp_path):
    info = _encode(bundle_dir, digits, tmp_path / "r.bin", "--mode", "raw")
    assert info["mode"] == "raw"
    payloads = wire.unpack_stream((tmp_path / "r.bin").read_bytes()).payloads
    assert len(set(map(len, payloads))) == 1


def test_encode_precision_and_threads_choose_the_network_that_runs(bundle_dir, digits, pixels, tmp_path, capsys):
    flags = ["--runtime", "onnx", "--precision", "fp32", "--threads", "2"]
    _encode(bundle_dir, digits, tmp_path / "f.bin", *flags)
    assert "with onnx" in capsys.readouterr().out
    fp32 = compressor.Encoder.load(bundle_dir / "encoder", runtime="onnx", precision="fp32")
    assert (tmp_path / "f.bin").read_bytes() == fp32.compress_stream(pixels, names=_names(6))
    with pytest.raises(SystemExit) as usage:
        main(["encode", str(digits), "-o", str(tmp_path / "z.bin"), "--threads", "0"])
    assert usage.value.code == 2 and "positive whole number" in capsys.readouterr().err


def test_encode_no_names_stores_none_and_decode_numbers_the_files(bundle_dir, digits, tmp_path):
    named = _encode(bundle_dir, digits, tmp_path / "n.bin")
    bare = _encode(bundle_dir, digits, tmp_path / "codes.bin", "--no-names")
    assert named["names"] and not bare["names"] and bare["bytes"] < named["bytes"]
    assert main(["decode", str(tmp_path / "codes.bin"), "-o", str(tmp_path / "out"), "--bundle", str(bundle_dir)]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [f"codes-{i:03d}.png" for i in range(6)]


def test_decode_probabilities_writes_the_grey_levels_of_the_decoder(bundle_dir, digits, dec, tmp_path):
    _encode(bundle_dir, digits, tmp_path / "c.bin")
    out = tmp_path / "grey"
    flags = ["--bundle", str(bundle_dir / "decoder"), "--probabilities"]
    assert main(["decode", str(tmp_path / "c.bin"), "-o", str(out), *flags]) == 0
    probs = dec.decompress((tmp_path / "c.bin").read_bytes())
    grey = np.stack([read_image(out / f"digit{i}.png") for i in range(6)])
    np.testing.assert_array_equal(grey, as_uint8_levels(probs))
    assert len(np.unique(grey)) > 2


def test_info_without_a_bundle_describes_the_stream_but_not_its_step(bundle_dir, digits, tmp_path):
    with_bundle = _encode(bundle_dir, digits, tmp_path / "c.bin")
    alone = _info(tmp_path / "c.bin")
    assert "step" not in alone and alone == {k: v for k, v in with_bundle.items() if k != "step"}
    assert alone["count"] == 6 and alone["bytes"] == (tmp_path / "c.bin").stat().st_size


def test_info_on_an_empty_stream_says_so_instead_of_crashing(tmp_path, capsys):
    empty = tmp_path / "empty.bin"
    empty.write_bytes(wire.pack_stream(bytes(8), "entropy", 0, [], names=[]))
    info = _info(empty)
    assert info["count"] == 0 and info["bytes_per_image"] is None and info["payload_bytes_per_image"] is None
    (tmp_path / "zero.bin").write_bytes(b"")
    assert main(["info", str(tmp_path / "zero.bin")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("compressor info: error: ") and "truncated" in err and len(err.strip().splitlines()) == 1


def _names(n: int) -> list[str]:
    return [f"digit{i}" for i in range(n)]


def test_decode_keeps_existing_files_unless_told_to_overwrite(bundle_dir, digits, tmp_path, capsys):
    _encode(bundle_dir, digits, tmp_path / "c.bin")
    out = tmp_path / "out"
    out.mkdir()
    (out / "digit3.png").write_bytes(b"mine")
    decode = ["decode", str(tmp_path / "c.bin"), "-o", str(out), "--bundle", str(bundle_dir)]
    assert main(decode) == 1
    assert "1 output files exist already" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["digit3.png"] and (out / "digit3.png").read_bytes() == b"mine"
    assert main([*decode, "--overwrite"]) == 0
    assert len(list(out.iterdir())) == 6 and read_image(out / "digit3.png").shape == (28, 28)


@pytest.mark.slow
def test_band_encode_info_decode_keeps_every_pixel_the_band_codes(bundle_dir, digits, tmp_path, capsys):
    codes, out = tmp_path / "b.lzc", tmp_path / "out"
    assert main(["encode", str(digits), "-o", str(codes), "--bundle", str(bundle_dir), "--band", "127"]) == 0
    assert main(["info", str(codes), "--bundle", str(bundle_dir)]) == 0  # layout 2: step and band need the bundle
    info = json.loads(capsys.readouterr().out.split("\n", 1)[1])
    assert (info["mode"], info["residual_kind"], info["band"], info["lossless"]) == ("residual", "binary", [127], True)
    assert info["layout"] == 2 and info["steps"]
    assert main(["decode", str(codes), "-o", str(out), "--bundle", str(bundle_dir)]) == 0
    for i in range(6):
        want = read_image(digits / f"digit{i}.png") > 127
        assert np.array_equal(read_image(out / f"digit{i}.png") > 127, want)


@pytest.mark.slow
def test_max_error_on_a_binary_model_names_band(bundle_dir, digits, tmp_path, capsys):
    assert (
        main(["encode", str(digits), "-o", str(tmp_path / "c"), "--bundle", str(bundle_dir), "--max-error", "3"]) == 1
    )
    assert "band" in capsys.readouterr().err


def test_a_mean_error_stream_decodes_with_at_most_that_fraction_of_all_pixels_wrong(bundle_dir, digits, tmp_path):
    codes, out = tmp_path / "m.lzc", tmp_path / "out"
    flags = ["--mean-error", "0.01", "--target-error", "0.02"]
    assert main(["encode", str(digits), "-o", str(codes), "--bundle", str(bundle_dir), *flags]) == 0
    assert main(["decode", str(codes), "-o", str(out), "--bundle", str(bundle_dir)]) == 0
    wrong = [
        int(((read_image(out / f"digit{i}.png") > 127) != (read_image(digits / f"digit{i}.png") > 127)).sum())
        for i in range(6)
    ]
    assert sum(wrong) <= 0.01 * 6 * 784 and max(wrong) <= int(0.02 * 784)


@pytest.mark.slow
def test_a_mean_error_with_a_band_is_one_clear_error(bundle_dir, digits, tmp_path, capsys):
    flags = ["--mean-error", "0.01", "--band", "20"]
    assert main(["encode", str(digits), "-o", str(tmp_path / "c"), "--bundle", str(bundle_dir), *flags]) == 1
    err = capsys.readouterr().err
    assert "mean_error" in err and len(err.strip().splitlines()) == 1


def test_an_error_message_of_several_lines_is_printed_as_one(tmp_path, capsys, monkeypatch):
    import compressor.io.files as files

    def refuse(*args, **kwargs):  # a library's own message, as numpy or a runtime writes them
        raise compressor.InvalidImageError("first line\n  second line\n")

    monkeypatch.setattr(files, "read_images", refuse)
    assert main(["encode", str(tmp_path / "x.npy"), "-o", str(tmp_path / "x.lzc")]) == 1
    assert capsys.readouterr().err == "compressor encode: error: first line second line\n"


def test_a_usage_error_is_one_line_naming_the_problem_and_where_the_usage_is(capsys):
    for argv, problem in (
        (["encode", "--bogus"], "the following arguments are required: images, -o/--out"),
        (["decode", "codes.bin", "-o", "out", "--threads", "0"], "positive whole number"),
        (["encode", "x.npy", "-o", "out", "--threads", "1000"], "at most 256 threads, got 1000"),
        (["encode-dataset", "in", "-o", "out.parquet", "--threads", "1000"], "at most 256 threads"),
        (["bogus"], "invalid choice: 'bogus'"),
    ):
        with pytest.raises(SystemExit) as usage:
            main(argv)
        err = capsys.readouterr().err
        assert usage.value.code == 2 and err.count("\n") == 1 and problem in err and "--help')" in err, err
