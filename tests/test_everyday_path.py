"""The batch-1 fast paths give the numbers of the general path, and the runtimes stay quiet."""

from __future__ import annotations

import inspect
import os

import numpy as np
import pytest

from compressor.io.arrays import as_batch


@pytest.fixture(scope="module")
def digits():
    from export import datasets

    return (datasets.load("mnist5k", binarize=False).test[:40, ..., 0] * 255).round().astype(np.uint8)


def test_binarized_images_reach_the_encoder_as_the_quantized_floats_would(enc, digits):
    general = enc.network.run((as_batch(digits, shape=enc.part.image_shape) > 0.5).astype(np.float32)[..., None])
    for images in (digits, digits / np.float32(255), digits / 255.0, (digits / 255.0).astype(np.float16)):
        assert np.array_equal(enc.latents(images), general)


def test_one_image_alone_decodes_exactly_as_inside_a_batch(enc, dec, digits):
    stream = enc.compress_stream(digits)
    together = dec.decompress(stream)
    alone = np.concatenate([dec.decompress(enc.compress(digits[i : i + 1])) for i in range(len(digits))])
    assert np.array_equal(alone, together)


def test_decoder_input_tables_equal_the_quantization_arithmetic(dec):
    net = dec.network
    rng = np.random.default_rng(0)
    for step in dec.coding.steps:
        symbols = np.concatenate([rng.integers(-60, 61, (500, 16)), rng.integers(-(2**15), 2**15, (500, 16))])
        by_table = net.quantize_symbols(symbols, step)
        assert np.array_equal(by_table, net.quantize_input(symbols.astype(np.float64) * step))


def test_output_table_equals_the_dequantization_arithmetic(dec):
    net = dec.network
    spec = net.output_spec
    levels = np.arange(-128, 128, dtype=np.int8).reshape(1, 16, 16, 1)
    expected = (levels.astype(np.float32) - spec.zero_point) * np.float32(spec.scale)
    assert np.array_equal(net.dequantize_output(levels), expected)


def test_quiet_hides_native_output_and_replays_it_when_the_block_fails(capfd):
    from compressor.runtime.quiet import quiet

    with quiet():
        os.write(2, b"fully_quantize: 0, inference_type: 6\n")
    assert "fully_quantize" not in capfd.readouterr().err
    with pytest.raises(RuntimeError), quiet():
        os.write(2, b"the converter's own words\n")
        raise RuntimeError("conversion failed")
    assert "the converter's own words" in capfd.readouterr().err


def test_loading_a_litert_model_prints_nothing(bundle_dir, capfd):
    import compressor

    compressor.Decoder.load(bundle_dir / "decoder", runtime="litert", threads=1)
    captured = capfd.readouterr()
    assert "XNNPACK" not in captured.err + captured.out


def test_ladder_marks_widths_no_other_beats_on_bytes_error_and_time():
    from bench.ladder import _mark_pareto

    rows = [
        {"binarize": True, "bytes_per_image": 7.5, "pixel_error_%": 3.5, "decoder_us_b1": 25.0},
        {"binarize": True, "bytes_per_image": 8.0, "pixel_error_%": 3.1, "decoder_us_b1": 63.0},
        {"binarize": True, "bytes_per_image": 8.1, "pixel_error_%": 3.2, "decoder_us_b1": 70.0},
    ]
    _mark_pareto(rows)
    assert [r["pareto"] for r in rows] == [True, True, False]


def test_ladder_measures_a_real_bundle(bundle_dir, digits, tmp_path):
    from bench import ladder

    rows = ladder.measure([str(bundle_dir)], digits, rounds=2)
    (row,) = rows
    assert row["width"] == 1.0 and row["decoder_macs"] == 4_766_720
    assert row["decoder_us_b1"] > 0 and row["decoder_us_b64"] > 0 and row["pareto"]
    assert 0 < row["pixel_error_%"] < 10
    md = ladder.write(rows, tmp_path)
    assert "| 1 | ✓ |" in md.read_text() and (tmp_path / "ladder.png").stat().st_size > 1000


def test_export_records_the_decoder_graph_choice_per_runtime(bundle_dir):
    import json

    manifest = json.loads((bundle_dir / "manifest.json").read_text())
    report = json.loads((bundle_dir / "validation.json").read_text())
    assert set(manifest["decoder_graphs"]) == {"tflite", "onnx"}
    assert manifest["decoder_graph_option"] == report["decoder_graphs"]["option"] == "fixed"  # the default
    trials = report["decoder_graphs"]["trials"]
    assert all(t["fp32_max_abs_diff"] < 1e-4 for t in trials)  # the rewrites are the same function
    for fmt, runtime, graph in (("tflite", "litert", "conv_phases_dw"), ("onnx", "onnx", "conv_d2s")):
        assert {t["graph"] for t in trials if t["runtime"] == runtime} == {graph}  # only the rule's graph
        (chosen,) = [t for t in trials if t["runtime"] == runtime and t["chosen"]]
        assert chosen["ok"] and chosen["graph"] == manifest["decoder_graphs"][fmt]["graph"] == graph
    text = (bundle_dir / "validation.md").read_text()
    assert "**chosen**" in text and "--decoder-graph fixed, a fixed rule" in text


@pytest.fixture(scope="module", params=["litert", "onnx"])
def coders(request, bundle_dir):
    """Encoder and decoder of the session's bundle in one runtime (int8 files)."""
    import compressor

    return (
        compressor.Encoder.load(bundle_dir / "encoder", runtime=request.param),
        compressor.Decoder.load(bundle_dir / "decoder", runtime=request.param),
    )


def test_one_image_shortcut_writes_the_general_paths_bytes_for_real_digits(coders, digits):
    from compressor import wire

    enc, _ = coders
    mid = enc.coding.model_id
    for images in (digits[:20], digits[:20] / np.float32(255)):
        for quality in (None, 1, 9, len(enc.steps)):
            index = enc.coding.step_index(None, quality)
            for i in range(len(images)):
                one = images[i : i + 1]
                (message,) = enc.compress(one, quality=quality)  # the shortcut
                (payload,) = wire.unpack_stream(enc.compress_stream(one, quality=quality)).payloads  # float latents
                assert message == wire.pack_message(mid, "entropy", index, payload)
    # int8 LiteRT files have int8 outputs, which the shortcut's tables index; ONNX int8 files
    # (quantize/dequantize nodes) give floats, and go the general way
    assert bool(enc._image_coders[None]) == (enc.runtime == "litert"), "the shortcut was not taken"


def test_one_message_shortcut_decodes_the_general_paths_pixels_for_real_digits(coders, digits):
    enc, dec = coders
    for quality in (None, 1, 9, len(enc.steps)):
        for image in digits[:20]:
            messages = enc.compress(image[None], quality=quality)
            general = dec.images(dec.read(messages))
            shortcut = dec.decompress(messages)
            assert shortcut.dtype == general.dtype and np.array_equal(shortcut, general)
            assert np.array_equal(
                dec.decompress(messages, binarize=True), dec.images(dec.read(messages), binarize=True)
            )
    assert dec._message_decoder, "the shortcut was not taken"


def test_escaped_symbols_take_the_general_coder_and_decode_alike(enc, dec):
    """Levels whose symbols lie beyond a dimension's table (escapes) in the shortcut's coder,
    and messages with escapes in its decoder: the general path's bytes and pixels."""
    from compressor import wire
    from compressor.coding import entropy

    coder = enc._image_coder(None)
    index = enc.coding.default_index
    table = enc.coding.tables[index]
    escaped = 0
    for v in range(-128, 128):
        levels = np.full((1, table.dims), v, np.int8)
        symbols = enc.quantize(enc.network.dequantize_output(levels), index)[0]
        escaped += table.slices_of(symbols.tolist()) is None
        message = wire.pack_message(enc.coding.model_id, "entropy", index, entropy.encode_symbols(symbols, table))
        assert coder.levels_message(levels.tobytes()) == message
        assert np.array_equal(dec.decompress([message]), dec.images(dec.read([message])))
    assert escaped, "no level escapes: the general coder was not exercised"


def test_damaged_one_message_gets_the_general_paths_pixels_or_refusal(coders, digits):
    from compressor.errors import CodeError

    enc, dec = coders
    (message,) = enc.compress(digits[:1])
    variants = [message[:k] for k in range(len(message))] + [
        message + b"\x01",
        message + b"\x00",
        b"",
        bytearray(message),
    ]
    variants += [
        message[:k] + bytes([message[k] ^ flip]) + message[k + 1 :]
        for k in range(len(message))
        for flip in (1, 0x40, 0x80)
    ]
    for bad in variants:
        try:
            general = dec.images(dec.read([bad]))
        except (CodeError, TypeError) as e:
            with pytest.raises(type(e)) as got:
                dec.decompress([bad])
            assert str(got.value) == str(e)
        else:
            assert np.array_equal(dec.decompress([bad]), general)


def test_hostile_single_images_get_the_general_paths_refusal(coders):
    from compressor.errors import InvalidImageError
    from compressor.io.arrays import checked_batch

    enc, _ = coders
    for bad in (np.nan, np.inf, -0.25, 1.5):
        image = np.zeros((1, 28, 28), np.float32)
        image[0, 3, 4] = bad
        with pytest.raises(InvalidImageError) as want:
            checked_batch(image, shape=enc.part.image_shape)
        with pytest.raises(InvalidImageError) as got:
            enc.compress(image)
        assert str(got.value) == str(want.value)
    negative_zero = np.zeros((1, 28, 28), np.float32)
    negative_zero[0, 5, 5] = -0.0  # valid, but not in the shortcut's one-reduction check
    assert enc.compress(negative_zero) == enc.compress(np.zeros((1, 28, 28), np.uint8))


def test_float_pixels_at_the_ink_threshold_code_as_the_general_path(coders):
    from compressor import wire

    enc, _ = coders
    edges = np.array([0.0, 1e-45, 0.25, 0.5, np.nextafter(0.5, 1), 0.75, np.nextafter(1, 0), 1.0], np.float32)
    rng = np.random.default_rng(0)
    for _ in range(5):
        one = rng.choice(edges, size=(1, 28, 28)).astype(np.float32)
        (payload,) = wire.unpack_stream(enc.compress_stream(one)).payloads
        assert enc.compress(one)[0][2:] == payload


def test_every_keyword_knob_of_compress_set_otherwise_leaves_the_one_image_shortcut():
    """The shortcut's predicate takes compress's keyword-only knobs, by keyword only, and any
    value other than a knob's default turns it down (an exact int quality and a budget of at
    least one image aside): a knob added to compress but not to the predicate fails here."""
    from compressor.codec import Encoder, _everyday

    knobs = [p for p in inspect.signature(Encoder.compress).parameters.values() if p.kind is p.KEYWORD_ONLY]
    takes = inspect.signature(_everyday).parameters.values()
    assert sorted(p.name for p in takes) == sorted(p.name for p in knobs)
    assert all(p.kind is p.KEYWORD_ONLY for p in takes)
    defaults = {p.name: p.default for p in knobs}
    assert _everyday(**defaults)
    assert _everyday(**{**defaults, "quality": 3})
    assert _everyday(**{**defaults, "max_images": 1})  # any budget that allows the shortcut's one image
    assert not _everyday(**{**defaults, "max_images": 0})
    for name in defaults:
        assert not _everyday(**{**defaults, name: object()}), name


def test_refused_qualities_leave_no_shortcut_behind(enc):
    """Each refused quality raises RateError and is not remembered: a caller looping over
    untrusted quality values must not grow the encoder's per-quality shortcut cache."""
    from compressor.errors import RateError

    image = np.zeros((1, 28, 28), np.uint8)
    steps = len(enc.steps)
    for quality in [0, -1, steps + 1, *range(10**6, 10**6 + 200)]:
        with pytest.raises(RateError):
            enc.compress(image, quality=quality)
    assert len(enc._image_coders) <= steps + 1  # None and 1..steps at most


def test_two_threads_sharing_one_encoder_and_decoder_get_each_images_own_bytes_and_pixels(enc, dec, digits):
    import threading

    images = digits[:40]
    want = [enc.compress(images[i : i + 1])[0] for i in range(len(images))]
    pixels = [dec.decompress([m]) for m in want]
    wrong = []

    def work(first: int) -> None:
        for _ in range(50):
            for i in range(first, len(images), 2):
                message = enc.compress(images[i : i + 1])[0]
                if message != want[i] or not np.array_equal(dec.decompress([message]), pixels[i]):
                    wrong.append(i)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not wrong, f"{len(wrong)} of {50 * len(images)} round trips read another thread's output"
