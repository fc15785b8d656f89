"""Binary residual codes, layout 2: the payload names its step and band, the receiver gets exactly
the sender's reconstruction, and lossless is exact."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from compressor.coding import binary_context2 as B2
from compressor.errors import CodeError, LosslessMismatchError, ManifestError
from tests.support import synthetic_binary, synthetic_binary2_tables

STEPS = 4


_synthetic = synthetic_binary


@pytest.fixture(scope="module")
def tables():
    return synthetic_binary2_tables(STEPS)


def _round_trip(tables, bits, levels, band, *, index=1, head=1, lie=0.0):
    table, latents = tables
    out, sent = [], []
    for b, v in zip(bits, levels):
        payload, recon = B2.encode_one(index, head, STEPS, [1, -2, 0], b, v, latents[index], table, band, lie)
        got_index, got_band, syms, dec, check = B2.start_decoding(payload, head, latents)
        assert (got_index, got_band, syms) == (index, band, [1, -2, 0])
        out.append(B2.finish_decoding(dec, check, v, table, got_band))
        sent.append((payload, recon))
    return sent, np.stack(out).astype(bool)


@settings(max_examples=40, deadline=None)
@given(
    bits=hnp.arrays(np.bool_, (2, 5, 6)),
    levels=hnp.arrays(np.int8, (2, 5, 6)),
    band=st.integers(0, 127),
    lie=st.sampled_from([0.0, 1.0, 3.0]),
    index=st.integers(0, STEPS - 1),
    head=st.integers(0, STEPS - 1),
)
def test_the_receiver_gets_exactly_the_senders_reconstruction_and_band_127_is_lossless(
    tables, bits, levels, band, lie, index, head
):
    sent, out = _round_trip(tables, bits, levels, band, index=index, head=head, lie=lie)
    for img, (_, recon) in zip(out, sent):
        assert np.array_equal(img, recon.astype(bool))
    if band >= 120 and lie == 0:  # CUT reaches 0 there: every pixel coded
        assert np.array_equal(out, bits)


def test_lying_where_the_truth_is_costly_saves_bytes_for_a_few_wrong_pixels(tables):
    levels, bits = _synthetic(3, n=30)
    sizes, errors = [], []
    for lie in (0.0, 4.0, 2.0):
        sent, out = _round_trip(tables, bits, levels, 127, lie=lie)
        sizes.append(sum(len(p) for p, _ in sent))
        errors.append(int((out != bits).sum()))
    assert sizes == sorted(sizes, reverse=True)
    assert errors == sorted(errors) and errors[0] == 0 and errors[-1] > 0


def test_lying_at_the_costliest_pixels_makes_at_most_that_many_errors_and_saves_bytes(tables):
    table, latents = tables
    levels, bits = _synthetic(6, n=10)
    exact = lied = 0
    for b, v in zip(bits, levels):
        at = B2.costliest(table, b, v, 3)
        payload, recon = B2.encode_one(0, 0, STEPS, [0, 0, 0], b, v, latents[0], table, 127, 0.0, at)
        assert int((recon.astype(bool) != b).sum()) <= len(at) <= 3
        lied += len(payload)
        exact += len(B2.encode_one(0, 0, STEPS, [0, 0, 0], b, v, latents[0], table, 127)[0])
    assert lied < exact


def test_lanes_decode_a_big_batch_to_the_same_pixels_as_one_image_at_a_time(tables):
    table, latents = tables
    levels, bits = _synthetic(7, n=B2.LANE_THRESHOLD + 3)
    bands = [127, 0, 40, 90] * (len(bits) // 4) + [127] * (len(bits) % 4)
    sent = [
        B2.encode_one(0, 0, STEPS, [0, 1, 0], b, v, latents[0], table, band, 2.0 * (i % 3 == 1))
        for i, (b, v, band) in enumerate(zip(bits, levels, bands))
    ]
    starts = [B2.start_decoding(p, 0, latents) for p, _ in sent]
    out = B2.finish_many([s[3] for s in starts], [s[4] for s in starts], levels, table, [s[1] for s in starts])
    assert np.array_equal(out, np.stack([r for _, r in sent]))
    damaged = [bytes((p[0] ^ 1,)) + p[1:] if i == 5 else p for i, (p, _) in enumerate(sent)]
    starts = [B2.start_decoding(p, 0, latents) for p in damaged]
    with pytest.raises(LosslessMismatchError, match="image 5") as refused:
        B2.finish_many([s[3] for s in starts], [s[4] for s in starts], levels, table, [s[1] for s in starts])
    assert refused.value.image == 5


def test_the_headers_own_step_and_lossless_band_cost_less_than_a_byte_together():
    assert B2.header_bits(3, 3, 16, 127) < 2
    one_away, three_away = B2.header_bits(2, 3, 16, 127), B2.header_bits(6, 3, 16, 127)
    assert 3.5 < one_away < three_away < 7  # a stream's image at another step than the header's
    assert 8 <= B2.header_bits(3, 3, 16, 40) < 10  # a near-lossless band: about the old parameter byte


def test_other_levels_at_the_receiver_give_an_error_not_wrong_pixels(tables):
    table, latents = tables
    levels, bits = _synthetic(4, n=4)
    other = np.clip(levels.astype(int) + 40, -128, 127).astype(np.int8)
    with pytest.raises(CodeError):
        for b, v, w in zip(bits, levels, other):
            payload, _ = B2.encode_one(0, 0, STEPS, [0, 0, 0], b, v, latents[0], table, 127)
            _, band, _, dec, check = B2.start_decoding(payload, 0, latents)
            B2.finish_decoding(dec, check, w, table, band)


def test_a_changed_check_is_a_lossless_mismatch(tables):
    table, latents = tables
    levels, bits = _synthetic(5, n=1)
    payload, _ = B2.encode_one(0, 0, STEPS, [0, 0, 0], bits[0], levels[0], latents[0], table, 127)
    _, band, _, dec, check = B2.start_decoding(bytes((payload[0] ^ 4,)) + payload[1:], 0, latents)
    with pytest.raises(LosslessMismatchError):
        B2.finish_decoding(dec, check, levels[0], table, band)


@pytest.mark.parametrize(
    "damage",
    [
        lambda j: j["p1_freq"].pop(),
        lambda j: j["p1_freq"].__setitem__(0, 0),
        lambda j: j["p1_freq"].__setitem__(5, 65536),
        lambda j: j["p1_freq"].__setitem__(5, 1.5),
        lambda j: j.pop("runtime"),
        lambda j: j.__setitem__("step_index", 16),
    ],
)
def test_a_damaged_layout_2_table_is_a_manifest_error(tables, damage):
    j = tables[0].to_json()
    damage(j)
    with pytest.raises(ManifestError):
        B2.ContextTable2.from_json(j)


@pytest.mark.parametrize(
    ("field", "value"), [("step_index", 4), ("runtime", "tensorflow"), ("precision", "fp16"), ("p1_freq", [1])]
)
def test_coding_json_with_a_layout_2_table_that_cannot_work_is_refused_on_load(tables, field, value):
    from compressor.coding import coding_file

    table, latents = tables
    raw = {"steps": [0.5, 1.0], "tables": [latents[0].to_json()] * 2, "default_step_index": 0}
    coding_file.check(raw | {"binary_context2": table.to_json()}, latent_dim=3, where="coding.json")
    with pytest.raises(ManifestError, match="binary_context2"):
        raw["binary_context2"] = table.to_json() | {field: value}
        coding_file.check(raw, latent_dim=3, where="coding.json")


@settings(max_examples=60, deadline=None)
@given(payload=st.binary(max_size=30), head=st.integers(0, STEPS - 1))
def test_random_bytes_are_refused_with_code_errors_only(tables, payload, head):
    table, latents = tables
    levels, _ = _synthetic(8, n=1)
    try:
        _, band, _, dec, check = B2.start_decoding(payload, head, latents)
        B2.finish_decoding(dec, check, levels[0], table, band)
    except CodeError:
        pass


@pytest.mark.slow
def test_real_digits_get_their_own_steps_and_a_target_error_is_kept_per_image(enc, dec):
    from export import datasets

    assert enc.coding.binary_context2 is not None
    bits = datasets.load("mnist5k").test[:12, ..., 0] > 0.5
    x = bits.astype(np.float32)
    messages = enc.compress(x)
    lossless = dec.decompress(enc.compress(x, max_error=0))
    assert np.array_equal(lossless > 127, bits)
    stream = enc.compress_stream(x, max_error=0)
    assert np.array_equal(dec.decompress(stream) > 127, bits)
    assert len({m[0] & 0x0F for m in enc.compress(x, max_error=0)}) >= 1
    near = dec.decompress(enc.compress(x, target_error=0.01)) > 127
    assert ((near != bits).reshape(len(bits), -1).sum(axis=1) <= int(0.01 * 784)).all()
    assert len(messages) == len(bits)
    with pytest.raises(ValueError, match="target_error"):
        enc.compress(x, target_error=2)


def test_the_step_searchs_numpy_pixel_costs_are_the_ideal_bits_of_every_pixel(tables):
    table, _ = tables
    levels, bits = _synthetic(7, n=6)
    f = table.freq_array[B2.contexts(bits, levels)] / 2**16
    expected = -np.where(bits, np.log2(f), np.log2(1 - f)).reshape(len(bits), -1).sum(axis=1)
    got = B2.pixel_bits_given(table, bits, B2.neighbour_part(bits), levels)
    assert np.allclose(got, expected)
    assert np.allclose(B2.pixel_bits_by_step(table, bits, [levels, -levels])[0], expected)


@pytest.mark.parametrize("rows", [2, 30])  # row by row, and in numpy
def test_the_step_searchs_latent_costs_are_the_coders_ideal_bits_escapes_included(tables, rows):
    from compressor.binary_residual import latent_bits
    from compressor.coding.entropy import ideal_bits

    _, latents = tables
    symbols = np.random.RandomState(3).randint(-6, 7, size=(rows, 3))
    symbols[0] = [40, -1000, 0]  # far outside the table: escapes
    got = latent_bits(symbols, latents[0])
    assert np.allclose(got, [ideal_bits(s, latents[0]) for s in symbols])
