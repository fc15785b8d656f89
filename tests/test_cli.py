"""The command line: encode, info, decode; nothing is written from bad bytes."""

import json

import numpy as np
import pytest

from compressor.cli import main
from compressor.io.files import read_image, write_png


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    from export import datasets

    folder = tmp_path_factory.mktemp("digits")
    for i, img in enumerate(datasets.load("mnist5k").test[:6, ..., 0]):
        write_png(folder / f"digit{i}.png", img)
    return folder


def test_encode_info_decode_round_trip_keeps_names(bundle_dir, digits, tmp_path, capsys):
    codes = tmp_path / "codes.bin"
    assert main(["encode", str(digits), "-o", str(codes), "--bundle", str(bundle_dir), "--quality", "8"]) == 0
    assert main(["info", str(codes), "--bundle", str(bundle_dir / "decoder")]) == 0
    info = json.loads(capsys.readouterr().out.split("\n", 1)[1])
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


@pytest.mark.slow
def test_band_encode_info_decode_keeps_every_pixel_the_band_codes(bundle_dir, digits, tmp_path, capsys):
    codes, out = tmp_path / "b.lzc", tmp_path / "out"
    assert main(["encode", str(digits), "-o", str(codes), "--bundle", str(bundle_dir), "--band", "127"]) == 0
    assert main(["info", str(codes)]) == 0
    info = json.loads(capsys.readouterr().out.split("\n", 1)[1])
    assert (info["mode"], info["residual_kind"], info["band"], info["lossless"]) == ("residual", "binary", [127], True)
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
