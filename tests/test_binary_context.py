"""Binary residual codes: exact with band 127, wrong only where the decoder was sure otherwise."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from compressor.coding import binary_context as B
from compressor.coding import residual as R
from compressor.coding.entropy import build_table as build_latent_table
from compressor.coding.rangecoder import RangeEncoder
from compressor.errors import CodeError, LosslessMismatchError, ManifestError


def _synthetic(seed: int, n: int = 20, h: int = 8, w: int = 9):
    rs = np.random.RandomState(seed)
    levels = rs.randint(-128, 128, size=(n, h, w)).astype(np.int8)
    p = (levels.astype(float) + 128.5) / 256
    bits = rs.rand(n, h, w) < p
    return levels, bits


@pytest.fixture(scope="module")
def tables():
    levels, bits = _synthetic(0, n=80)
    latent = build_latent_table(np.random.RandomState(1).randint(-3, 4, size=(200, 3)))
    return B.build_table(levels, bits), latent


def _round_trip(tables, bits, levels, band):
    table, latent = tables
    symbols = np.zeros((len(bits), 3), np.int64)
    payloads = B.encode_batch(symbols, bits, levels, latent, table, band)
    out = []
    for p, v in zip(payloads, levels):
        dec, _, check = R.start_decoding(p, latent)
        out.append(B.finish_decoding(dec, check, v, table, band))
    return payloads, np.stack(out).astype(bool)


@settings(max_examples=40, deadline=None)
@given(
    bits=hnp.arrays(np.bool_, (2, 5, 6)),
    levels=hnp.arrays(np.int8, (2, 5, 6)),
    band=st.integers(0, 127),
)
def test_the_receiver_gets_exactly_the_senders_reconstruction_and_band_127_is_lossless(tables, bits, levels, band):
    table, _ = tables
    _, out = _round_trip(tables, bits, levels, band)
    for img, b, v in zip(out, bits, levels):
        want = B._encode_band(RangeEncoder(), b, v, table, band)
        assert np.array_equal(img, want.astype(bool))
    if band >= 120:  # CUT reaches 0 there: every pixel coded
        assert np.array_equal(out, bits)


def test_a_wider_band_costs_more_bytes_and_makes_fewer_errors(tables):
    levels, bits = _synthetic(3, n=30)
    sizes, errors = [], []
    for band in (0, 8, 32, 64, 127):
        payloads, out = _round_trip(tables, bits, levels, band)
        sizes.append(sum(map(len, payloads)))
        errors.append(int((out != bits).sum()))
    assert sizes == sorted(sizes)
    assert errors == sorted(errors, reverse=True) and errors[-1] == 0


def test_other_levels_at_the_receiver_give_an_error_not_wrong_pixels(tables):
    table, latent = tables
    levels, bits = _synthetic(4, n=4)
    payloads = B.encode_batch(np.zeros((4, 3), np.int64), bits, levels, latent, table, 127)
    other = np.clip(levels.astype(int) + 40, -128, 127).astype(np.int8)
    with pytest.raises(CodeError):
        for p, v in zip(payloads, other):
            dec, _, check = R.start_decoding(p, latent)
            B.finish_decoding(dec, check, v, table, 127)


def test_a_changed_check_is_a_lossless_mismatch(tables):
    table, latent = tables
    levels, bits = _synthetic(5, n=1)
    p = B.encode_batch(np.zeros((1, 3), np.int64), bits, levels, latent, table, 127)[0]
    dec, _, check = R.start_decoding(bytes((p[0] ^ 4,)) + p[1:], latent)
    with pytest.raises(LosslessMismatchError):
        B.finish_decoding(dec, check, levels[0], table, 127)


@pytest.mark.parametrize(
    "damage",
    [
        lambda j: j["p1_freq"].pop(),
        lambda j: j["p1_freq"].__setitem__(0, 0),
        lambda j: j["p1_freq"].__setitem__(5, 65536),
        lambda j: j["p1_freq"].__setitem__(5, 1.5),
        lambda j: j.pop("runtime"),
    ],
)
def test_a_damaged_context_table_is_a_manifest_error(tables, damage):
    j = tables[0].to_json()
    damage(j)
    with pytest.raises(ManifestError):
        B.ContextTable.from_json(j)


@pytest.mark.slow
def test_real_binary_digits_round_trip_through_the_public_api(enc, dec):
    from export import datasets

    bits = datasets.load("mnist5k").test[:16, ..., 0] > 0.5
    lossless = dec.decompress(enc.compress(bits.astype(np.float32), max_error=0))
    assert np.array_equal(lossless > 127, bits)
    near = dec.decompress(enc.compress_stream(bits.astype(np.float32), band=4))
    assert near.shape == bits.shape
    with pytest.raises(ValueError, match="band"):
        enc.compress(bits.astype(np.float32), max_error=2)
    with pytest.raises(ValueError, match="grayscale"):
        enc.compress(bits.astype(np.float32), target_psnr=30)


@settings(max_examples=60, deadline=None)
@given(payload=st.binary(max_size=30), band=st.integers(0, 127))
def test_random_bytes_are_refused_with_code_errors_only(tables, payload, band):
    table, latent = tables
    levels, _ = _synthetic(8, n=1)
    try:
        dec, _, check = R.start_decoding(payload, latent)
        B.finish_decoding(dec, check, levels[0], table, band)
    except CodeError:
        pass
