"""The batch-1 shortcuts give the same bytes and the same refusals as the general path."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from compressor.coding import rangecoder
from compressor.coding.entropy import CdfTable, build_table, decode_row, decode_symbols, encode_row
from compressor.coding.level_coder import LEVELS, LevelCoder
from compressor.coding.rangecoder import RangeDecoder, RangeEncoder
from compressor.errors import CorruptCodeError, InvalidImageError, LimitError, ModelMismatchError
from compressor.io.arrays import checked_batch
from compressor.wire import message_packer, message_reader, pack_message, pack_stream, unpack_message, unpack_stream

MODEL = bytes.fromhex("0123456789abcdef")
TABLE = build_table(np.rint(np.random.default_rng(0).normal(size=(3000, 16)) * 3).astype(np.int64))
symbol_rows = st.lists(st.integers(-40, 40), min_size=16, max_size=16)


def _general_encode(symbols: list[int], table: CdfTable) -> bytes:
    enc = RangeEncoder()
    encode_row(enc, symbols, table)
    return enc.finish()


@given(symbol_rows)
def test_whole_message_encoding_writes_the_range_encoders_bytes(symbols):
    slices = TABLE.slices_of(symbols)
    if slices is None:  # an escape: the general path's job
        assert any(not 0 <= s - lo < n for s, lo, n in zip(symbols, TABLE.lo, TABLE.sizes))
        return
    assert rangecoder.encode_all(slices) == _general_encode(symbols, TABLE)


@given(symbol_rows)
def test_whole_message_decoding_returns_the_symbols_or_hands_escapes_to_the_general_path(symbols):
    data = _general_encode(symbols, TABLE)
    found = rangecoder.decode_message(data, *TABLE.decoding_tables)
    escapes = TABLE.slices_of(symbols) is None
    assert (found is None) == escapes
    if found is not None:
        assert found == symbols
    assert decode_symbols(data, TABLE) == symbols


@given(st.binary(max_size=12))
def test_damaged_payloads_get_the_general_paths_verdict(data):
    found = rangecoder.decode_message(data, *TABLE.decoding_tables)
    dec = RangeDecoder(data)
    try:
        general = decode_row(dec, TABLE)
    except CorruptCodeError:
        assert found is None
        return
    if found is not None:  # accepted only when the general path decodes it canonically to the same
        assert dec.is_canonical() and found == general


def test_level_tables_give_each_levels_symbol_and_slice():
    symbols = np.clip(np.arange(256) - 128, -40, 40)[LEVELS.astype(np.int64) + 128]
    coder = LevelCoder(symbols, TABLE)
    levels = [-128, -1, 0, 5, 127] + [3] * 11
    want = TABLE.slices_of([int(symbols[v]) for v in levels])
    assert coder.slices_of(levels) == want


def test_message_packer_and_reader_agree_with_pack_and_unpack_message():
    pack, read = message_packer(MODEL, "entropy", 7), message_reader(MODEL)
    for payload in (b"", b"\x01", bytes(range(40))):
        message = pack(payload)
        assert message == pack_message(MODEL, "entropy", 7, payload)
        assert read(message) == unpack_message(MODEL, message)
    with pytest.raises(ModelMismatchError):
        message_reader(bytes(8))(pack(b"abc"))


def test_packed_streams_know_their_count_and_payload_bytes():
    data = pack_stream(MODEL, "entropy", 3, [b"ab", b"", b"cde"], names=["x", "y", "z"])
    assert isinstance(data, bytes) and (data.count, data.payload_bytes) == (3, 5)
    assert sum(map(len, unpack_stream(data).payloads)) == data.payload_bytes
    joint = pack_stream(MODEL, "entropy", 3, [b"abcdef"], joint_count=4)
    assert (joint.count, joint.payload_bytes) == (4, 6)


def test_the_image_budget_is_held_after_the_format_rules():
    data = pack_stream(MODEL, "entropy", 0, [b""] * 5)
    assert unpack_stream(data, max_images=5).count == 5
    with pytest.raises(LimitError, match="declares 5 images; the limit is 4"):
        unpack_stream(data, max_images=4)
    with pytest.raises(ModelMismatchError):  # foreign bytes are reported as such, over budget or not
        unpack_stream(data, bytes(8), max_images=4)
    with pytest.raises(CorruptCodeError):
        unpack_stream(data[:-1] + bytes([data[-1] ^ 1]), max_images=4)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_the_one_reduction_float_check_accepts_exactly_zero_to_one(dtype):
    for good in (0.0, -0.0, 0.5, 1.0):
        checked_batch(np.full((1, 4, 4), good, dtype))
    for bad in (np.nan, np.inf, -np.inf, -0.25, 1.5):
        image = np.zeros((1, 4, 4), dtype)
        image[0, 2, 3] = bad
        with pytest.raises(InvalidImageError):
            checked_batch(image)
