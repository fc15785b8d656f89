"""Behaviour of the integer range coder: exactness, cost, canonical codes, robustness."""

import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from compressor.coding.rangecoder import MAX_BITS, TOTAL, RangeDecoder, RangeEncoder
from compressor.errors import CorruptCodeError


@st.composite
def cdfs(draw, max_symbols=40):
    n = draw(st.integers(1, max_symbols))
    cuts = draw(st.lists(st.integers(1, TOTAL - 1), min_size=n - 1, max_size=n - 1, unique=True))
    return [0, *sorted(cuts), TOTAL]


@st.composite
def programs(draw):
    """A list of ("sym", cdf, symbol) and ("bits", nbits, value) coder calls."""
    tables = draw(st.lists(cdfs(), min_size=1, max_size=4))
    steps = []
    for _ in range(draw(st.integers(0, 30))):
        if draw(st.integers(0, 4)) == 0:
            nbits = draw(st.integers(1, MAX_BITS))
            steps.append(("bits", nbits, draw(st.integers(0, (1 << nbits) - 1))))
        else:
            cdf = draw(st.sampled_from(tables))
            steps.append(("sym", cdf, draw(st.integers(0, len(cdf) - 2))))
    return steps


def encode(program):
    enc = RangeEncoder()
    for kind, model, value in program:
        if kind == "sym":
            enc.encode(model[value], model[value + 1] - model[value])
        else:
            enc.encode_bits(value, model)
    return enc.finish()


def decode(data, program):
    dec = RangeDecoder(data)
    out = [dec.decode(model) if kind == "sym" else dec.decode_bits(model) for kind, model, _ in program]
    return out, dec


def ideal_bits(program):
    bits = 0.0
    for kind, model, value in program:
        bits += math.log2(TOTAL / (model[value + 1] - model[value])) if kind == "sym" else model
    return bits


def random_program(rng, length):
    """Skewed random distributions, as latent tables are."""
    n = rng.randint(2, 64)
    weights = [rng.random() ** 4 + 1e-6 for _ in range(n)]
    scale = (TOTAL - n) / sum(weights)
    freqs = [1 + int(w * scale) for w in weights]
    freqs[0] += TOTAL - sum(freqs)
    cdf = [0]
    for f in freqs:
        cdf.append(cdf[-1] + f)
    symbols = rng.choices(range(n), weights=freqs, k=length)
    return [("sym", cdf, s) for s in symbols]


@given(programs())
def test_round_trip_returns_exact_symbols_and_bits(program):
    data = encode(program)
    out, dec = decode(data, program)
    assert out == [value for _, _, value in program]
    assert dec.is_canonical()


def test_code_costs_at_most_one_byte_over_ideal_plus_rounding():
    rng = random.Random(1234)
    overheads = []
    for _ in range(3000):
        program = random_program(rng, rng.randint(1, 40))
        ideal = ideal_bits(program)
        size = len(encode(program))
        # 16-bit slices of a range >= 2**24 lose under 0.0057 bit per symbol
        assert size <= (ideal + 0.0057 * len(program)) / 8 + 1
        assert size <= ideal / 8 + 1.5
        overheads.append(size - ideal / 8)
    assert sum(overheads) / len(overheads) < 0.6


def test_first_symbols_of_their_distributions_encode_to_no_bytes():
    cdf = [0, 60000, TOTAL]
    assert encode([("sym", cdf, 0)] * 10) == b""
    assert decode(b"", [("sym", cdf, 0)] * 10)[0] == [0] * 10


def test_code_never_ends_in_a_zero_byte():
    rng = random.Random(7)
    for _ in range(500):
        data = encode(random_program(rng, rng.randint(1, 20)))
        assert not data.endswith(b"\0")


def test_decoder_reads_past_the_end_as_zeros_but_flags_padding_as_non_canonical():
    program = random_program(random.Random(3), 12)
    data = encode(program)
    out, dec = decode(data + b"\0\0", program)
    assert out == [value for _, _, value in program]
    assert not dec.is_canonical()
    assert dec.bytes_read >= len(data)


def test_extra_trailing_byte_is_not_canonical():
    program = random_program(random.Random(5), 12)
    data = encode(program)
    _, dec = decode(data + b"\x01", program)
    assert not dec.is_canonical()


@given(st.binary(max_size=12), programs())
def test_is_canonical_is_true_exactly_when_reencoding_gives_the_same_bytes(data, program):
    try:
        out, dec = decode(data, program)
    except CorruptCodeError:
        return
    decoded = [(kind, model, value) for (kind, model, _), value in zip(program, out, strict=True)]
    assert dec.is_canonical() == (encode(decoded) == data)


@given(st.binary(max_size=40), st.lists(cdfs(), min_size=1, max_size=3), st.integers(0, 64))
def test_arbitrary_bytes_decode_or_raise_corrupt_code_error_with_32_bit_state(data, tables, count):
    dec = RangeDecoder(data)
    calls = []
    try:
        for i in range(count):
            if i % 5 == 4:
                nbits = 1 + i % MAX_BITS
                calls.append(("bits", nbits, dec.decode_bits(nbits)))
            else:
                cdf = tables[i % len(tables)]
                calls.append(("sym", cdf, dec.decode(cdf)))
                assert 0 <= calls[-1][2] < len(cdf) - 1
            assert 0 <= dec._code < dec._range < 1 << 32
    except CorruptCodeError:
        assert dec.bytes_read <= 4 + 2 * count
        return
    assert dec.bytes_read <= 4 + 2 * count
    # what was read is a code exactly when re-encoding the decoded calls gives these bytes back
    assert dec.is_canonical() == (encode(calls) == data)


@pytest.mark.parametrize(("start", "freq"), [(0, 0), (-1, 2), (TOTAL - 1, 2), (0, TOTAL + 1)])
def test_encoder_refuses_empty_or_out_of_range_slices(start, freq):
    with pytest.raises(ValueError):
        RangeEncoder().encode(start, freq)


@pytest.mark.parametrize(("value", "nbits"), [(0, 0), (0, MAX_BITS + 1), (4, 2), (-1, 3)])
def test_encoder_refuses_values_that_do_not_fit_their_bits(value, nbits):
    with pytest.raises(ValueError):
        RangeEncoder().encode_bits(value, nbits)


def test_finish_leaves_the_encoder_usable():
    enc = RangeEncoder()
    enc.encode(100, 30000)
    first = enc.finish()
    assert enc.finish() == first
    enc.encode(0, 5)
    dec = RangeDecoder(enc.finish())
    assert dec.decode([0, 100, 30100, TOTAL]) == 1
    assert dec.decode([0, 5, TOTAL]) == 0


def _reference_finish(slices):
    """The coder's definition with an unbounded ``low``: what the carry logic must reproduce."""
    low, rng, shifts = 0, 0xFFFFFFFF, 0
    for start, freq in slices:
        r = rng >> 16
        low, rng = low + r * start, r * freq
        while rng < 1 << 24:
            low, rng, shifts = low << 8, rng << 8, shifts + 1
    if low == 0:
        return b""
    high = low + rng - 1
    zero_bytes = (((low - 1) ^ high).bit_length() - 1) >> 3
    return (((low - 1) >> (8 * zero_bytes)) + 1).to_bytes(4 + shifts - zero_bytes, "big")


def test_a_carry_ripples_through_a_long_run_of_ff_bytes():
    # top slices push low towards the top of the window: settled bytes become 0xFF
    slices = [(TOTAL - 3, 3)] * 60 + [(TOTAL - 1, 1)] * 8 + [(1000, 50), (TOTAL - 20, 20), (5, 1)] * 10
    enc = RangeEncoder()
    for start, freq in slices:
        enc.encode(start, freq)
    data = enc.finish()
    assert data == _reference_finish(slices)
    assert b"\xff\xff" in _reference_finish(slices[:68])
    dec = RangeDecoder(data)
    for start, freq in slices:
        cdf = [0, start, start + freq, TOTAL] if 0 < start < TOTAL - freq else None
        if cdf is None:
            cdf = [0, freq, TOTAL] if start == 0 else [0, start, TOTAL]
            assert dec.decode(cdf) == (0 if start == 0 else 1)
        else:
            assert dec.decode(cdf) == 1


@given(st.lists(cdfs(), min_size=1, max_size=4), st.lists(st.integers(0, 10**6), max_size=40))
def test_whole_message_functions_match_the_coder_classes_on_any_distributions(tables, picks):
    """encode_all (one int for low, no carries) writes RangeEncoder's bytes, and decode_message
    (tables, padded input, no per-symbol tests) returns what RangeDecoder decodes, on skewed
    distributions too (freq 1 renormalises by two bytes, runs of 0xFF carry)."""
    from compressor.coding.rangecoder import decode_message, decoding_tables, encode_all

    models = [tables[p % len(tables)] for p in picks]
    symbols = [p % (len(cdf) - 1) for p, cdf in zip(picks, models)]
    slices = [(cdf[s], cdf[s + 1] - cdf[s]) for s, cdf in zip(symbols, models)]
    enc = RangeEncoder()
    enc.encode_slices(slices)
    data = enc.finish()
    assert encode_all(slices) == data
    no_escapes = [len(cdf) for cdf in models]  # no index is an escape
    assert decode_message(data, *decoding_tables(models, no_escapes)) == (symbols if symbols else [])
    for damaged in (data + b"\x01", data[:-1], bytes([255]) + data[1:], bytes(len(data) + 2)):
        dec = RangeDecoder(damaged)
        try:
            decoded = [dec.decode(cdf) for cdf in models]
            canonical = dec.is_canonical()
        except CorruptCodeError:
            decoded, canonical = None, False
        assert decode_message(damaged, *decoding_tables(models, no_escapes)) == (decoded if canonical else None)


def test_whole_message_encoder_writes_the_coder_classes_bytes_for_long_slice_lists():
    """encode_all on lists far longer than a message (its one-int ``low`` would make each shift
    cost the whole code so far) still writes RangeEncoder's bytes, carries and two-byte
    renormalisations included."""
    from compressor.coding.rangecoder import encode_all

    rnd = random.Random(7)
    for length in (255, 256, 257, 3000):
        slices = []
        for _ in range(length):
            freq = rnd.choice([1, 2, 3, 255, 256, 4096, 65535])
            slices.append((rnd.randrange(0, TOTAL - freq + 1), freq))
        enc = RangeEncoder()
        enc.encode_slices(slices)
        assert encode_all(slices) == enc.finish()
