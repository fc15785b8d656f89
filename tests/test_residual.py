"""Residual codes (grayscale lossless / near-lossless): exact or within E, refused when unsure."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from compressor.coding import residual as R
from compressor.coding.entropy import build_table as build_latent_table
from compressor.coding.lanes import LaneEncoder
from compressor.coding.rangecoder import TOTAL, RangeEncoder
from compressor.errors import CodeError, CorruptCodeError, LosslessMismatchError, ManifestError

BOUNDS = (0, 1, 2, 4, 8, 16, 32, 63)


def _synthetic(seed: int, n: int = 24, h: int = 9, w: int = 7):
    """Int8 levels and images near their prediction (plus a few pure-noise images)."""
    rs = np.random.RandomState(seed)
    levels = rs.randint(-128, 128, size=(n, h, w)).astype(np.int8)
    pixels = np.clip(levels.astype(int) + 128 + rs.randint(-12, 13, size=(n, h, w)), 0, 255).astype(np.uint8)
    pixels[: n // 6] = rs.randint(0, 256, size=(n // 6, h, w))
    return levels, pixels


def _smooth(seed: int, n: int = 40, h: int = 9, w: int = 7) -> np.ndarray:
    """Photo-like images: smooth gradients plus noise (what table set 1 is for)."""
    rs = np.random.RandomState(seed)
    yy, xx = np.mgrid[:h, :w]
    a, b, c = rs.uniform(-12, 12, size=(3, n, 1, 1))
    img = 128 + a * yy + b * xx + c * np.sin(xx + yy) + rs.normal(0, 3, size=(n, h, w))
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def tables():
    levels, pixels = _synthetic(0, n=60)
    latent = build_latent_table(np.random.RandomState(1).randint(-3, 4, size=(200, 4)))
    table = R.build_table(levels, pixels, bounds=BOUNDS, spatial_threshold=20, natural=_smooth(9))
    return table, latent


def _round_trip(table, latent, symbols, pixels, levels, e, table_set=R.NETWORK):
    payloads = R.encode_batch(symbols, pixels, levels, latent, table, e, table_set)
    started = [R.start_decoding(p, latent) for p in payloads]
    for (_, syms, _), want in zip(started, symbols):
        assert list(syms) == list(want)
    out = R.finish_decoding([s[0] for s in started], [s[2] for s in started], levels, table, e, table_set)
    return payloads, out


@settings(max_examples=40, deadline=None)
@given(
    pixels=hnp.arrays(np.uint8, (3, 6, 5)),
    levels=hnp.arrays(np.int8, (3, 6, 5)),
    e=st.sampled_from(BOUNDS),
    table_set=st.sampled_from((R.NETWORK, R.SPATIAL)),
    lanes=st.booleans(),
)
def test_every_pixel_of_a_random_image_comes_back_within_its_bound(tables, pixels, levels, e, table_set, lanes):
    table, latent = tables
    symbols = np.zeros((3, 4), np.int64)
    old = R.LANE_THRESHOLD
    R.LANE_THRESHOLD = 1 if lanes else 10**9
    try:
        _, out = _round_trip(table, latent, symbols, pixels, levels, e, table_set)
    finally:
        R.LANE_THRESHOLD = old
    assert np.abs(out.astype(int) - pixels.astype(int)).max() <= e
    if e == 0:
        assert np.array_equal(out, pixels)


@pytest.mark.parametrize("table_set", [R.NETWORK, R.SPATIAL])
@pytest.mark.parametrize("e", BOUNDS)
def test_numpy_lanes_and_the_python_loop_write_and_read_the_same_bytes(tables, monkeypatch, e, table_set):
    table, latent = tables
    levels, pixels = _synthetic(2, n=10)
    pixels[5:] = _smooth(4, n=5)
    symbols = np.random.RandomState(3).randint(-5, 6, size=(10, 4))
    monkeypatch.setattr(R, "LANE_THRESHOLD", 10**9)
    python_codes, python_out = _round_trip(table, latent, symbols, pixels, levels, e, table_set)
    monkeypatch.setattr(R, "LANE_THRESHOLD", 1)
    lane_codes, lane_out = _round_trip(table, latent, symbols, pixels, levels, e, table_set)
    assert python_codes == lane_codes
    assert np.array_equal(python_out, lane_out)
    assert np.abs(lane_out.astype(int) - pixels.astype(int)).max() <= e


@settings(max_examples=30, deadline=None)
@given(st.data())
def test_a_lane_encoder_writes_exactly_what_the_scalar_range_coder_writes(data):
    k = data.draw(st.integers(1, 5))
    steps = data.draw(st.integers(0, 60))
    scalar = [RangeEncoder() for _ in range(k)]
    for enc in scalar:
        enc.encode(data.draw(st.integers(0, 60000)), data.draw(st.integers(1, 5000)))
    lanes = LaneEncoder.from_scalar([copy.deepcopy(e) for e in scalar], steps)
    for _ in range(steps):
        starts = data.draw(st.lists(st.integers(0, TOTAL - 1), min_size=k, max_size=k))
        freqs = [data.draw(st.integers(1, TOTAL - s)) for s in starts]
        for enc, s, f in zip(scalar, starts, freqs):
            enc.encode(s, f)
        lanes.encode(np.array(starts, np.uint64), np.array(freqs, np.uint64))
    assert lanes.finish() == [e.finish() for e in scalar]


def test_a_receiver_with_other_int8_levels_gets_an_error_never_wrong_pixels(tables):
    table, latent = tables
    levels, pixels = _synthetic(4, n=6)
    symbols = np.zeros((6, 4), np.int64)
    payloads = R.encode_batch(symbols, pixels, levels, latent, table, 0)
    other = np.clip(levels.astype(int) + 3, -128, 127).astype(np.int8)
    started = [R.start_decoding(p, latent) for p in payloads]
    with pytest.raises(CodeError):
        R.finish_decoding([s[0] for s in started], [s[2] for s in started], other, table, 0)


def test_a_changed_image_check_is_a_lossless_mismatch(tables):
    table, latent = tables
    levels, pixels = _synthetic(5, n=2)
    payload = R.encode_batch(np.zeros((1, 4), np.int64), pixels[:1], levels[:1], latent, table, 2)[0]
    bad = bytes((payload[0] ^ 1,)) + payload[1:]
    dec, _, check = R.start_decoding(bad, latent)
    with pytest.raises(LosslessMismatchError, match="fails its check"):
        R.finish_decoding([dec], [check], levels[:1], table, 2)


def test_extra_bytes_after_a_residual_code_are_refused(tables):
    table, latent = tables
    levels, pixels = _synthetic(6, n=1)
    payload = R.encode_batch(np.zeros((1, 4), np.int64), pixels, levels, latent, table, 0)[0]
    dec, _, check = R.start_decoding(payload + b"\x07", latent)
    with pytest.raises(CorruptCodeError):
        R.finish_decoding([dec], [check], levels, table, 0)


def test_a_bound_without_a_table_is_refused(tables):
    table, _ = tables
    with pytest.raises(CorruptCodeError, match="error bound 3"):
        table.table(3)
    with pytest.raises(CorruptCodeError, match="error bound 3 in table set 1"):
        table.table(3, R.SPATIAL)


def test_a_spatial_code_for_a_bundle_without_the_spatial_set_is_refused(tables):
    table, _ = tables
    old = R.ResidualTable.from_json({k: v for k, v in _json(tables).items() if k != "spatial"})
    assert old.sets == (R.NETWORK,) and table.sets == (R.NETWORK, R.SPATIAL)
    with pytest.raises(CorruptCodeError, match="table set 1"):
        old.table(0, R.SPATIAL)


def test_the_spatial_set_codes_smooth_images_shorter_than_the_network_set(tables):
    table, _ = tables
    levels, _ = _synthetic(8, n=12)
    smooth = _smooth(11, n=12)
    network = R.ideal_bits(table, smooth, levels, 0, R.NETWORK)
    spatial = R.ideal_bits(table, smooth, levels, 0, R.SPATIAL)
    assert spatial.mean() < 0.8 * network.mean()


def _json(tables):
    return tables[0].to_json()


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda j: j["tables"]["0"]["freqs"][0].__setitem__(0, j["tables"]["0"]["freqs"][0][0] + 1), "summing"),
        (lambda j: j["tables"]["0"]["freqs"][0].pop(), "frequencies"),
        (lambda j: j["tables"]["0"]["freqs"].pop(), "context rows"),
        (lambda j: j["tables"]["1"].__setitem__("tail", 999), "tail"),
        (lambda j: j["predict"].pop(), "predict"),
        (lambda j: j["predict"].__setitem__(3, 300), "predict"),
        (lambda j: j.__setitem__("level_edges", [5, 5]), "level_edges"),
        (lambda j: j.__setitem__("neighbour_edges", [-600]), "neighbour_edges"),
        (lambda j: j.__setitem__("spatial_threshold", -1), "spatial_threshold"),
        (lambda j: j["tables"].__setitem__("01", j["tables"]["1"]), "canonical"),
        (lambda j: j["tables"].__setitem__("200", j["tables"]["1"]), "error bound"),
        (lambda j: j.pop("runtime"), "malformed"),
        (lambda j: j.__setitem__("tables", {}), "empty"),
        (lambda j: j["tables"].__setitem__("64", j["tables"]["1"]), "error bound"),
        (lambda j: j["spatial"].__setitem__("activity_edges", [9, 3]), "activity_edges"),
        (lambda j: j["spatial"].__setitem__("activity_edges", [0]), "activity_edges"),
        (lambda j: j["spatial"]["tables"]["0"]["freqs"].pop(), "context rows"),
        (lambda j: j["spatial"]["tables"].__setitem__("64", j["spatial"]["tables"]["1"]), "error bound"),
        (lambda j: j["spatial"]["tables"]["2"]["freqs"][1].__setitem__(0, 0), "summing"),
        (lambda j: j["spatial"].pop("tables"), "malformed"),
        (lambda j: j["spatial"].__setitem__("tables", {}), "empty"),
    ],
)
def test_a_damaged_residual_table_is_a_manifest_error(tables, damage, message):
    j = _json(tables)
    damage(j)
    with pytest.raises(ManifestError, match=message):
        R.ResidualTable.from_json(j)


def test_a_table_survives_its_json_form(tables):
    assert R.ResidualTable.from_json(_json(tables)) == tables[0]


# --- the real network path ---------------------------------------------------------------
@pytest.fixture(scope="module")
def gray_bundle(gray_bundle_dir):
    return gray_bundle_dir


@pytest.fixture(scope="module")
def gray_digits():
    from export import datasets

    return np.rint(datasets.load("mnist5k", binarize=False).test[:24, ..., 0] * 255).astype(np.uint8)


@pytest.mark.slow
def test_real_grayscale_digits_round_trip_within_every_bound(gray_bundle, gray_digits):
    import compressor

    enc = compressor.Encoder.load(gray_bundle / "encoder", runtime="litert")
    dec = compressor.Decoder.load(gray_bundle / "decoder", runtime="litert")
    sizes = []
    for e in enc.coding.residual.bounds:
        out = dec.decompress(enc.compress(gray_digits, max_error=e))
        assert np.abs(out.astype(int) - gray_digits.astype(int)).max() <= e
        stream_out = dec.decompress(enc.compress_stream(gray_digits, max_error=e))
        assert np.array_equal(stream_out, out)
        sizes.append(len(enc.compress_stream(gray_digits, max_error=e)))
    assert sizes == sorted(sizes, reverse=True)  # a looser bound never costs more


@pytest.mark.slow
def test_what_read_returned_decodes_alike_twice_in_slices_and_after_its_payloads_are_replaced(gray_bundle, gray_digits):
    from dataclasses import replace

    import compressor

    enc = compressor.Encoder.load(gray_bundle / "encoder", runtime="litert")
    dec = compressor.Decoder.load(gray_bundle / "decoder", runtime="litert")
    first, second = gray_digits[:12], gray_digits[12:24]
    decoded = dec.read(enc.compress_stream(first, max_error=2))
    once = dec.images(decoded)
    assert np.abs(once.astype(int) - first.astype(int)).max() <= 2
    assert np.array_equal(dec.images(decoded), once)  # the kept range decoders are not used up
    assert np.array_equal(np.concatenate([dec.images(decoded[:5]), dec.images(decoded[5:])]), once)
    other = dec.read(enc.compress_stream(second, max_error=2))
    swapped = replace(decoded, symbols=other.symbols, steps=other.steps, payloads=other.payloads)
    assert np.abs(dec.images(swapped).astype(int) - second.astype(int)).max() <= 2  # never the old payloads' state


@pytest.mark.slow
def test_photo_crops_take_the_spatial_set_and_come_back_within_every_bound(gray_bundle, gray_digits):
    import compressor
    from export.photo_crops import training_crops

    enc = compressor.Encoder.load(gray_bundle / "encoder", runtime="litert")
    dec = compressor.Decoder.load(gray_bundle / "decoder", runtime="litert")
    crops = training_crops()[::97][:24]
    mixed = np.concatenate([crops, gray_digits[:8]])
    assert enc.coding.residual.spatial is not None
    for e in (0, 8):
        messages = enc.compress(mixed, max_error=e)
        sets = np.array([m[2] >> 6 & 1 for m in messages])
        assert sets[:24].mean() > 0.5  # the digit-trained network predicts photos poorly
        out = dec.decompress(enc.compress_stream(mixed, max_error=e))
        assert np.abs(out.astype(int) - mixed.astype(int)).max() <= e
        assert np.array_equal(dec.decompress(messages), out)


@pytest.mark.slow
def test_target_psnr_picks_a_bound_per_image_that_meets_it(gray_bundle, gray_digits):
    import compressor

    enc = compressor.Encoder.load(gray_bundle / "encoder", runtime="litert")
    dec = compressor.Decoder.load(gray_bundle / "decoder", runtime="litert")
    out = dec.decompress(enc.compress(gray_digits, target_psnr=40.0)).astype(float)
    mse = np.mean((out - gray_digits) ** 2, axis=(1, 2))
    assert np.all((mse == 0) | (10 * np.log10(255**2 / np.maximum(mse, 1e-12)) >= 40.0))


@pytest.mark.slow
def test_a_decoder_in_another_runtime_refuses_residual_codes(gray_bundle, gray_digits):
    import compressor

    enc = compressor.Encoder.load(gray_bundle / "encoder", runtime="litert")
    onnx = compressor.Decoder.load(gray_bundle / "decoder", runtime="onnx")
    with pytest.raises(LosslessMismatchError, match="runtime='litert'"):
        onnx.decompress(enc.compress(gray_digits[:2], max_error=0))


@pytest.mark.slow
def test_wrong_residual_requests_name_the_fix(gray_bundle, enc, gray_digits):
    import compressor
    from compressor.errors import RateError

    gray = compressor.Encoder.load(gray_bundle / "encoder", runtime="litert")
    with pytest.raises(RateError, match="grayscale models"):
        enc.compress(gray_digits[:1], target_psnr=30)  # the session's binary model
    with pytest.raises(RateError, match="band"):
        enc.compress(gray_digits[:1], max_error=4)
    with pytest.raises(RateError, match="band= is the near-lossless knob of binary models"):
        gray.compress(gray_digits[:1], band=3)
    with pytest.raises(RateError, match=">= 0"):
        gray.compress(gray_digits[:1], max_error=-1)
    with pytest.raises(RateError, match="choose one of"):
        gray.compress(gray_digits[:1], max_error=3)
    with pytest.raises(RateError, match="not both"):
        gray.compress(gray_digits[:1], max_error=1, target_psnr=40)
    with pytest.raises(RateError, match="drop"):
        gray.compress(gray_digits[:1], max_error=1, mode="raw")


@settings(max_examples=60, deadline=None)
@given(
    payloads=st.lists(st.binary(max_size=40), min_size=1, max_size=3),
    e=st.sampled_from(BOUNDS),
    lanes=st.booleans(),
    table_set=st.sampled_from((R.NETWORK, R.SPATIAL)),
)
def test_random_bytes_are_refused_with_code_errors_only(tables, payloads, e, lanes, table_set):
    table, latent = tables
    levels, _ = _synthetic(7, n=len(payloads))
    old = R.LANE_THRESHOLD
    R.LANE_THRESHOLD = 1 if lanes else 10**9
    try:
        started = [R.start_decoding(p, latent) for p in payloads]
        R.finish_decoding([s[0] for s in started], [s[2] for s in started], levels, table, e, table_set)
    except CodeError:
        pass
    finally:
        R.LANE_THRESHOLD = old


@pytest.mark.parametrize("lanes", [False, True])
@pytest.mark.parametrize("e", [0, 2])
def test_the_encoder_picks_per_image_the_set_with_the_shorter_code(tables, monkeypatch, lanes, e):
    table, latent = tables
    levels, pixels = _synthetic(13, n=8)
    pixels[4:] = _smooth(14, n=4)
    symbols = np.zeros((8, 4), np.int64)
    monkeypatch.setattr(R, "LANE_THRESHOLD", 1 if lanes else 10**9)
    sets, payloads = R.encode_choosing_set(symbols, pixels, levels, latent, table, e)
    for ts in (R.NETWORK, R.SPATIAL):
        alone = R.encode_batch(symbols, pixels, levels, latent, table, e, ts)
        assert all(p == a for p, a, chosen in zip(payloads, alone, sets) if chosen == ts)
        assert all(len(p) <= len(a) + 1 for p, a in zip(payloads, alone))  # ideal lengths: within a byte
    assert list(sets[4:]) == [R.SPATIAL] * 4
    for ts in (R.NETWORK, R.SPATIAL):
        idx = np.flatnonzero(sets == ts)
        if len(idx):
            started = [R.start_decoding(payloads[i], latent) for i in idx]
            out = R.finish_decoding([s[0] for s in started], [s[2] for s in started], levels[idx], table, e, ts)
            assert np.abs(out.astype(int) - pixels[idx].astype(int)).max() <= e


def _mixed_batch(table, latent, e):
    """Payloads of both table sets interleaved (set 0 at even positions, set 1 at odd), their
    sets, levels and pixels."""
    levels, pixels = _synthetic(15, n=12)
    pixels[1::2] = _smooth(16, n=6)
    symbols = np.random.RandomState(17).randint(-3, 4, size=(12, 4))
    sets = np.arange(12) % 2
    payloads = [None] * 12
    for ts in (R.NETWORK, R.SPATIAL):
        idx = np.flatnonzero(sets == ts)
        for i, p in zip(idx, R.encode_batch(symbols[idx], pixels[idx], levels[idx], latent, table, e, ts)):
            payloads[i] = p
    return payloads, sets, levels, pixels


@pytest.mark.parametrize("lanes", [False, True])
@pytest.mark.parametrize("e", [0, 2, 4])
def test_a_batch_mixing_both_table_sets_decodes_in_one_call_without_set_1_levels(tables, monkeypatch, lanes, e):
    table, latent = tables
    payloads, sets, levels, pixels = _mixed_batch(table, latent, e)
    monkeypatch.setattr(R, "LANE_THRESHOLD", 1 if lanes else 10**9)
    started = [R.start_decoding(p, latent) for p in payloads]
    blind = np.where((sets == R.SPATIAL)[:, None, None], np.int8(0), levels)  # set 1 never reads its levels
    out = R.finish_decoding([s[0] for s in started], [s[2] for s in started], blind, table, e, sets)
    assert np.abs(out.astype(int) - pixels.astype(int)).max() <= e
    for ts in (R.NETWORK, R.SPATIAL):
        idx = np.flatnonzero(sets == ts)
        again = [R.start_decoding(payloads[i], latent) for i in idx]
        alone = R.finish_decoding([s[0] for s in again], [s[2] for s in again], levels[idx], table, e, ts)
        assert np.array_equal(out[idx], alone)


@pytest.mark.parametrize("lanes", [False, True])
def test_a_damaged_image_in_a_mixed_batch_is_named_by_its_own_position(tables, monkeypatch, lanes):
    table, latent = tables
    payloads, sets, levels, _ = _mixed_batch(table, latent, 0)
    # an odd position: a set-1 image, decoded in a lane after the set-0 images; 0xFF bytes put its
    # code outside every interval (the lanes' own damage report), or at least fail its check
    payloads[5] = payloads[5][:9] + b"\xff" * (len(payloads[5]) - 9)
    monkeypatch.setattr(R, "LANE_THRESHOLD", 1 if lanes else 10**9)
    started = [R.start_decoding(p, latent) for p in payloads]
    with pytest.raises(CodeError, match="image 5:") as refused:
        R.finish_decoding([s[0] for s in started], [s[2] for s in started], levels, table, 0, sets)
    assert refused.value.image == 5
