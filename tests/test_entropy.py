"""Behaviour of the latent entropy tables, the per-image codes and raw packing."""

import copy
import functools
import json
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from compressor.coding.entropy import (
    MAX_ABS_SYMBOL,
    MAX_TABLE_SYMBOLS,
    CdfTable,
    build_table,
    decode_raw,
    decode_symbols,
    encode_raw,
    encode_symbols,
    ideal_bits,
    quantize_pmf,
    raw_bits,
)
from compressor.coding.rangecoder import TOTAL
from compressor.errors import CodeError, CorruptCodeError, ManifestError, RateError, TruncatedCodeError

DIMS = 16
STEPS = (0.05, 0.2, 0.5, 1.0, 2.0)
SCALES = np.array([0.01, 0.05, 0.2, 0.5, 1, 1, 1, 1, 1, 1, 1, 1, 1.2, 1.5, 2, 3])


def latents(n, seed):
    return np.random.default_rng(seed).normal(size=(n, DIMS)) * SCALES


def quantize(x, step):
    return np.rint(x / step).astype(np.int64)


@functools.cache
def table_for(step_index):
    return build_table(quantize(latents(5000, seed=step_index), STEPS[step_index]))


@st.composite
def image_symbols(draw):
    """A table and one image's symbols: mostly typical, some escapes, some extreme."""
    step_index = draw(st.integers(0, len(STEPS) - 1))
    table = table_for(step_index)
    symbols = []
    for lo, hi in zip(table.lo, table.hi, strict=True):
        kind = draw(st.integers(0, 9))
        if kind < 7:
            symbols.append(draw(st.integers(lo, hi)))
        elif kind < 9:
            symbols.append(draw(st.integers(lo - 40, hi + 40)))
        else:
            symbols.append(draw(st.integers(-MAX_ABS_SYMBOL, MAX_ABS_SYMBOL)))
    return table, symbols


@given(image_symbols())
def test_round_trip_returns_exact_symbols_including_escapes(case):
    table, symbols = case
    assert decode_symbols(encode_symbols(symbols, table), table) == symbols


@pytest.mark.parametrize("step_index", range(len(STEPS)))
def test_round_trip_returns_exact_symbols_for_held_out_latents(step_index):
    table = table_for(step_index)
    for row in quantize(latents(300, seed=99), STEPS[step_index]):
        assert decode_symbols(encode_symbols(row, table), table) == row.tolist()


def test_code_costs_at_most_one_and_a_half_bytes_over_ideal():
    overheads = []
    for step_index in range(len(STEPS)):
        table = table_for(step_index)
        held_out = quantize(latents(400, seed=7) * 1.3, STEPS[step_index])  # wider: escapes too
        for row in held_out:
            over = len(encode_symbols(row, table)) - ideal_bits(row, table) / 8
            assert over <= 1.5
            overheads.append(over)
    assert np.mean(overheads) < 0.6


def test_extreme_symbols_round_trip_and_beyond_them_raise_rate_error():
    table = table_for(2)
    for value in (-MAX_ABS_SYMBOL, MAX_ABS_SYMBOL):
        symbols = [value] * DIMS
        assert decode_symbols(encode_symbols(symbols, table), table) == symbols
    with pytest.raises(RateError, match="step"):
        encode_symbols([MAX_ABS_SYMBOL + 1] + [0] * (DIMS - 1), table)


def test_encode_refuses_wrong_count_and_non_integer_symbols():
    table = table_for(2)
    with pytest.raises(ValueError, match="expected 16 symbols"):
        encode_symbols([0] * (DIMS - 1), table)
    with pytest.raises(TypeError):
        encode_symbols([0.5] * DIMS, table)
    with pytest.raises(TypeError):
        encode_symbols(np.zeros(DIMS), table)
    assert encode_symbols(np.zeros(DIMS, dtype=np.int32), table) == encode_symbols([0] * DIMS, table)


def test_decode_refuses_bytes_appended_to_a_valid_code():
    table = table_for(3)
    code = encode_symbols(quantize(latents(1, seed=5), STEPS[3])[0], table)
    assert code
    for extra in (b"\0", b"\x01", b"\xff\xff"):
        with pytest.raises(CorruptCodeError, match="not what the encoder writes"):
            decode_symbols(code + extra, table)


def test_random_bytes_are_mostly_refused_and_never_crash():
    table = table_for(2)
    rng = np.random.default_rng(0)
    refused = 0
    for _ in range(3000):
        data = rng.integers(0, 256, size=rng.integers(0, 12), dtype=np.uint8).tobytes()
        try:
            symbols = decode_symbols(data, table)
        except CodeError:
            refused += 1
        else:
            assert encode_symbols(symbols, table) == data
    assert refused > 0.5 * 3000


# --- build_table -----------------------------------------------------------------------
def test_built_tables_sum_to_total_with_every_frequency_positive():
    for step_index in range(len(STEPS)):
        table = table_for(step_index)
        for row in table.freqs:
            assert sum(row) == TOTAL
            assert min(row) >= 1


def test_build_table_is_deterministic():
    symbols = quantize(latents(2000, seed=1), 0.3)
    assert build_table(symbols) == build_table(symbols.copy())
    assert build_table(symbols).to_json() == build_table(symbols).to_json()


def test_table_range_extends_past_training_extremes_and_keeps_escape_small():
    symbols = quantize(latents(2000, seed=1), 0.2)
    table = build_table(symbols)
    assert all(np.array(table.lo) < symbols.min(axis=0))
    assert all(np.array(table.hi) > symbols.max(axis=0))
    for row in table.freqs:
        assert row[-1] <= TOTAL // 1000


def test_unseen_symbols_inside_the_range_get_more_than_the_floor():
    symbols = np.array([[-3], [-1], [0], [0], [1], [3]] * 50)
    table = build_table(symbols)
    freqs = dict(zip(range(table.lo[0], table.hi[0] + 1), table.freqs[0], strict=False))
    assert freqs[2] > 1 and freqs[-2] > 1
    assert freqs[0] > freqs[2]


def test_constant_dimension_gets_a_cheap_symbol_and_neighbours():
    symbols = np.zeros((1000, 2), dtype=np.int64)
    table = build_table(symbols)
    assert table.lo == (-1, -1) and table.hi == (1, 1)
    assert ideal_bits([0, 0], table) < 0.2


def test_table_from_training_data_codes_held_out_data_near_its_entropy():
    step = 0.2
    table = build_table(quantize(latents(20000, seed=11), step))
    held_out = quantize(latents(20000, seed=12), step)
    entropy = 0.0
    for column in held_out.T:
        _, counts = np.unique(column, return_counts=True)
        p = counts / counts.sum()
        entropy -= float((p * np.log2(p)).sum())
    cross = np.mean([ideal_bits(row, table) for row in held_out[:4000]])
    assert cross < entropy + 0.5  # 16 dimensions: ~0.03 bit each


def test_very_wide_dimensions_are_capped_and_escape_the_rest():
    symbols = np.random.default_rng(0).integers(-20000, 20000, size=(500, 1))
    table = build_table(symbols)
    assert table.sizes == (MAX_TABLE_SYMBOLS,)
    row = [int(symbols[:, 0].max())]
    assert decode_symbols(encode_symbols(row, table), table) == row


@pytest.mark.parametrize(
    ("symbols", "error"),
    [
        (np.zeros((10, 3)), TypeError),
        (np.zeros((10, 3), dtype=bool), TypeError),
        (np.zeros(10, dtype=np.int64), ValueError),
        (np.zeros((0, 3), dtype=np.int64), ValueError),
        (np.zeros((3, 0), dtype=np.int64), ValueError),
        (np.full((3, 2), MAX_ABS_SYMBOL + 1), RateError),
    ],
)
def test_build_table_rejects_bad_input(symbols, error):
    with pytest.raises(error):
        build_table(symbols)


def test_quantize_pmf_keeps_every_entry_and_hits_the_total():
    freqs = quantize_pmf(np.array([0.0, 1e-12, 0.5, 0.5 - 1e-12, 0.0]))
    assert sum(freqs) == TOTAL and min(freqs) == 1
    assert freqs[2] >= freqs[3]


# --- JSON ------------------------------------------------------------------------------
def test_json_round_trip_gives_an_equal_table_that_codes_identically():
    table = table_for(1)
    again = CdfTable.from_json(json.loads(json.dumps(table.to_json())))
    assert again == table
    symbols = quantize(latents(1, seed=3), STEPS[1])[0]
    assert encode_symbols(symbols, again) == encode_symbols(symbols, table)


def _tiny():
    return {"precision": 16, "lo": [-1, 0], "freqs": [[100, 65000, 400, 36], [65535, 1]]}


def _set(path, value):
    def mutate(obj):
        target = obj
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        return obj

    return mutate


MALFORMED = {
    "not a dict": lambda obj: [obj],
    "missing key": lambda obj: {k: v for k, v in obj.items() if k != "lo"},
    "extra key": _set(("step",), 0.5),
    "precision 15": _set(("precision",), 15),
    "precision bool": _set(("precision",), True),
    "lo not list": _set(("lo",), "0"),
    "lo float": _set(("lo", 0), -1.0),
    "lo bool": _set(("lo", 1), False),
    "lo too low": _set(("lo", 0), -MAX_ABS_SYMBOL - 1),
    "dims mismatch": _set(("lo",), [0]),
    "no dims": lambda obj: {"precision": 16, "lo": [], "freqs": []},
    "row not list": _set(("freqs", 1), 65536),
    "escape only": _set(("freqs", 1), [65536]),
    "zero freq": _set(("freqs", 0), [0, 65100, 400, 36]),
    "negative freq": _set(("freqs", 0), [-1, 65101, 400, 36]),
    "float freq": _set(("freqs", 0), [100.0, 65000, 400, 36]),
    "sum short": _set(("freqs", 0), [100, 65000, 400, 35]),
    "too many symbols": _set(("freqs", 1), [1] * (MAX_TABLE_SYMBOLS + 1) + [TOTAL - MAX_TABLE_SYMBOLS - 1]),
}


def test_tiny_table_is_valid():
    assert CdfTable.from_json(_tiny()).sizes == (3, 1)


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_from_json_rejects_malformed_tables_with_manifest_error(name):
    with pytest.raises(ManifestError, match="entropy table"):
        CdfTable.from_json(MALFORMED[name](copy.deepcopy(_tiny())))


# --- ideal bits and raw mode --------------------------------------------------------------
def test_ideal_bits_is_minus_log2_of_the_table_probability():
    table = CdfTable.from_json(_tiny())
    assert ideal_bits([0, 0], table) == pytest.approx(-math.log2(65000 / TOTAL) - math.log2(65535 / TOTAL))
    escape = 16 - math.log2(36) + 2 * 1  # ESCAPE, direction bit, gamma(1)
    assert ideal_bits([2, 0], table) == pytest.approx(escape - math.log2(65535 / TOTAL))


def test_raw_bits_cover_each_dimension_range_with_at_least_one_bit():
    assert raw_bits(CdfTable.from_json(_tiny())) == [2, 1]
    table = table_for(0)
    for bits, size in zip(raw_bits(table), table.sizes, strict=True):
        assert 2 ** (bits - 1) < size <= 2**bits or (bits == 1 and size <= 2)


@given(image_symbols())
def test_raw_round_trip_returns_symbols_clamped_into_the_table(case):
    table, symbols = case
    payload = encode_raw(symbols, table)
    assert len(payload) == math.ceil(sum(raw_bits(table)) / 8)
    clamped = [min(max(s, lo), hi) for s, lo, hi in zip(symbols, table.lo, table.hi, strict=True)]
    assert decode_raw(payload, table) == clamped


def test_raw_decode_refuses_wrong_length_padding_and_values():
    table = CdfTable.from_json(_tiny())  # 2 + 1 bits: one byte, 5 padding bits
    assert decode_raw(encode_raw([1, 0], table), table) == [1, 0]
    with pytest.raises(TruncatedCodeError):
        decode_raw(b"", table)
    with pytest.raises(CorruptCodeError):
        decode_raw(b"\0\0", table)
    with pytest.raises(CorruptCodeError, match="padding"):
        decode_raw(bytes([0b00000001]), table)
    with pytest.raises(CorruptCodeError, match="exceeds"):
        decode_raw(bytes([0b11000000]), table)
