"""Behaviour of the byte formats: messages, stream containers, and refusing bad bytes."""

import random
import zlib

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from compressor.coding.entropy import build_table, decode_symbols, encode_symbols
from compressor.errors import (
    CodeError,
    CorruptCodeError,
    ModelMismatchError,
    TruncatedCodeError,
    UnsupportedFormatVersionError,
)
from compressor.wire import (
    FORMAT_VERSION,
    MODES,
    STREAM_MAGIC,
    Header,
    Stream,
    message_check,
    pack_message,
    pack_stream,
    unpack_message,
    unpack_stream,
)

MODEL = bytes.fromhex("0123456789abcdef")
OTHER = bytes.fromhex("fedcba9876543210")
TABLE = build_table(
    np.rint(np.random.default_rng(0).normal(size=(3000, 16)) * np.linspace(0.1, 2, 16) / 0.3).astype(np.int64)
)


def image_codes(n, seed=0):
    rng = np.random.default_rng(seed)
    symbols = np.rint(rng.normal(size=(n, 16)) * np.linspace(0.1, 2, 16) / 0.3).astype(np.int64)
    return [encode_symbols(row, TABLE) for row in symbols]


def reseal(body):
    """Recompute a stream's CRC32, to test the checks that come after it."""
    return body + zlib.crc32(body).to_bytes(4, "little")


def mutate(data, rng):
    data = bytearray(data)
    kind = rng.randrange(4)
    if kind == 0 and data:
        i = rng.randrange(len(data))
        data[i] ^= 1 << rng.randrange(8)
    elif kind == 1 and data:
        data[rng.randrange(len(data))] = rng.randrange(256)
    elif kind == 2:
        data.insert(rng.randrange(len(data) + 1), rng.randrange(256))
    elif data:
        del data[rng.randrange(len(data))]
    return bytes(data)


# --- messages ----------------------------------------------------------------------------
def test_message_check_depends_on_the_message_not_only_on_the_model_pair():
    other = bytes(8)
    differs = [message_check(MODEL, 0x40, bytes([i])) != message_check(other, 0x40, bytes([i])) for i in range(256)]
    assert sum(differs) >= 240


@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize("step_index", [0, 7, 15])
def test_message_round_trip_keeps_mode_step_and_payload(mode, step_index):
    payload = bytes(range(step_index))
    message = pack_message(MODEL, mode, step_index, payload)
    assert message[0] == (FORMAT_VERSION << 6) | (MODES[mode] << 4) | step_index
    assert len(message) == 2 + len(payload)
    assert unpack_message(MODEL, message) == (Header(FORMAT_VERSION, mode, step_index), payload)


def test_message_with_empty_payload_round_trips():
    assert unpack_message(MODEL, pack_message(MODEL, "entropy", 0, b""))[1] == b""


@pytest.mark.parametrize("data", [b"", b"\x40"])
def test_message_shorter_than_its_header_is_truncated(data):
    with pytest.raises(TruncatedCodeError):
        unpack_message(MODEL, data)


@pytest.mark.parametrize("version", [2, 3])
def test_newer_message_version_is_refused_before_the_checksum(version):
    message = bytearray(pack_message(MODEL, "entropy", 1, b"\x12\x34"))
    message[0] = (message[0] & 0x3F) | (version << 6)
    with pytest.raises(UnsupportedFormatVersionError, match="Upgrade"):
        unpack_message(MODEL, bytes(message))


def test_message_version_zero_is_corrupt():
    message = bytearray(pack_message(MODEL, "entropy", 1, b"\x12"))
    message[0] &= 0x3F
    with pytest.raises(CorruptCodeError):
        unpack_message(MODEL, bytes(message))


def test_message_mode_3_is_the_residual_mode():
    """Mode 3 was 'invalid' before residual codes; readers of that time refuse it as damaged."""
    head = (FORMAT_VERSION << 6) | (3 << 4)
    message = bytes((head, message_check(MODEL, head, b"\x99"))) + b"\x99"
    assert unpack_message(MODEL, message) == (Header(FORMAT_VERSION, "residual", 0), b"\x99")


def test_message_for_another_model_is_refused_for_almost_every_model():
    rng = random.Random(0)
    payload = image_codes(1)[0]
    refused = 0
    for _ in range(2000):
        other = rng.randbytes(8)
        try:
            unpack_message(other, pack_message(MODEL, "entropy", 3, payload))
        except ModelMismatchError as err:
            assert "another model, or damaged" in str(err)
            refused += 1
    assert refused >= 0.98 * 2000


def test_nearly_every_single_bit_flip_of_a_message_is_refused():
    refused = total = 0
    for payload in image_codes(40):
        message = pack_message(MODEL, "entropy", 2, payload)
        for bit in range(8 * len(message)):
            damaged = bytearray(message)
            damaged[bit // 8] ^= 1 << (bit % 8)
            total += 1
            try:
                unpack_message(MODEL, bytes(damaged))
            except CodeError:
                refused += 1
    assert refused / total > 0.98


def test_damaged_messages_are_refused_or_decode_to_valid_symbols_never_crash():
    rng = random.Random(1)
    codes = image_codes(200)
    refused = decoded = 0
    for i in range(20000):
        data = pack_message(MODEL, "entropy", 2, codes[i % len(codes)])
        for _ in range(1 + rng.randrange(3)):
            data = mutate(data, rng)
        if rng.random() < 0.1:
            data = data[: rng.randrange(len(data) + 1)]
        try:
            header, payload = unpack_message(MODEL, data)
            symbols = decode_symbols(payload, TABLE)
        except CodeError:
            refused += 1
        else:
            assert len(symbols) == 16 and header.mode in MODES
            decoded += 1
    assert decoded <= 0.01 * 20000
    assert refused + decoded == 20000


@pytest.mark.parametrize(
    ("model_id", "mode", "step_index"),
    [(MODEL[:7], "entropy", 0), ("0123456789abcdef", "raw", 0), (MODEL, "fast", 0), (MODEL, "raw", 16)],
)
def test_pack_message_refuses_bad_arguments(model_id, mode, step_index):
    with pytest.raises(ValueError):
        pack_message(model_id, mode, step_index, b"")


# --- streams -----------------------------------------------------------------------------
@pytest.mark.parametrize("names", [None, [f"img_{i:03d}.png" for i in range(30)]])
def test_stream_round_trip_keeps_payloads_names_mode_and_step(names):
    payloads = image_codes(30)
    payloads[3] = b""
    stream = unpack_stream(pack_stream(MODEL, "raw", 9, payloads, names=names), expected_model_id=MODEL)
    assert stream == Stream(MODEL, "raw", 9, tuple(payloads), None if names is None else tuple(names))


def test_empty_stream_round_trips():
    assert unpack_stream(pack_stream(MODEL, "entropy", 0, [])).payloads == ()


def test_stream_layout_starts_with_magic_version_flags_mode_step_and_model():
    data = pack_stream(MODEL, "raw", 5, [b"\xaa"], names=["a"])
    assert data[:4] == STREAM_MAGIC
    assert data[4:8] == bytes((FORMAT_VERSION, 1, MODES["raw"], 5))
    assert data[8:16] == MODEL
    assert data[16:] == b"\x01\x01\x01a\xaa" + zlib.crc32(data[:-4]).to_bytes(4, "little")


def test_every_truncation_of_a_stream_is_reported_as_truncated():
    data = pack_stream(MODEL, "entropy", 1, image_codes(5), names=list("abcde"))
    for end in range(len(data)):
        with pytest.raises(TruncatedCodeError):
            unpack_stream(data[:end])


def test_wrong_magic_is_not_a_compressor_stream():
    data = pack_stream(MODEL, "entropy", 1, image_codes(2))
    with pytest.raises(CorruptCodeError, match="not a compressor stream"):
        unpack_stream(b"PK\x03\x04" + data[4:])
    with pytest.raises(CorruptCodeError, match="not a compressor stream"):
        unpack_stream(b"x")


def test_newer_stream_version_is_refused_before_the_checksum():
    data = bytearray(pack_stream(MODEL, "entropy", 1, image_codes(2)))
    data[4] = FORMAT_VERSION + 1
    with pytest.raises(UnsupportedFormatVersionError, match="version 2"):
        unpack_stream(bytes(data))


def test_stream_for_another_model_names_both_ids():
    data = pack_stream(MODEL, "entropy", 1, image_codes(2))
    with pytest.raises(ModelMismatchError) as err:
        unpack_stream(data, expected_model_id=OTHER)
    assert MODEL.hex() in str(err.value) and OTHER.hex() in str(err.value)
    assert unpack_stream(data).model_id == MODEL


@given(st.binary(min_size=1, max_size=6), st.integers(0, 10_000))
def test_damaged_streams_are_always_refused(noise, where):
    data = bytearray(pack_stream(MODEL, "entropy", 1, image_codes(4), names=["a", "b", "c", "d"]))
    i = where % len(data)
    data[i : i + len(noise)] = bytes(b ^ n for b, n in zip(data[i : i + len(noise)], noise, strict=False))
    if bytes(data) != pack_stream(MODEL, "entropy", 1, image_codes(4), names=["a", "b", "c", "d"]):
        with pytest.raises(CodeError):
            unpack_stream(bytes(data))


def test_random_mutations_of_streams_always_raise_code_errors():
    rng = random.Random(2)
    original = pack_stream(MODEL, "entropy", 1, image_codes(10), names=[f"{i}.png" for i in range(10)])
    for _ in range(3000):
        data = original
        for _ in range(1 + rng.randrange(4)):
            data = mutate(data, rng)
        if data != original:
            with pytest.raises(CodeError):
                unpack_stream(data)
    for _ in range(2000):
        with pytest.raises(CodeError):
            unpack_stream(rng.randbytes(rng.randrange(64)))


def test_huge_announced_count_is_refused_without_allocating():
    head = STREAM_MAGIC + bytes((1, 0, 0, 0)) + MODEL + b"\xff\xff\xff\x7f"
    with pytest.raises(TruncatedCodeError):
        unpack_stream(head + b"\0" * 10)
    with pytest.raises(CorruptCodeError, match="announces more"):
        unpack_stream(reseal(head + b"\0" * 10))


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (STREAM_MAGIC + bytes((1, 0, 0, 0)) + MODEL + b"\x80\x00", "overlong"),
        (STREAM_MAGIC + bytes((1, 0, 0, 0)) + MODEL + b"\x80\x80\x80\x80\x01", "impossibly large"),
        (STREAM_MAGIC + bytes((1, 4, 0, 0)) + MODEL + b"\x00", "unknown flags"),
        (STREAM_MAGIC + bytes((1, 0, 4, 0)) + MODEL + b"\x00", "mode 4"),
        (STREAM_MAGIC + bytes((1, 0, 0, 16)) + MODEL + b"\x00", "step index 16"),
        (STREAM_MAGIC + bytes((1, 0, 0, 0)) + MODEL + b"\x01\x01\xaa\xbb", "disagrees"),
        (STREAM_MAGIC + bytes((1, 1, 0, 0)) + MODEL + b"\x01\x01\x02..\xaa", "must not"),
        (STREAM_MAGIC + bytes((1, 1, 0, 0)) + MODEL + b"\x01\x01\x02a/\xaa", "must not"),
        (STREAM_MAGIC + bytes((1, 1, 0, 0)) + MODEL + b"\x01\x01\x00\xaa", "1..255"),
        (STREAM_MAGIC + bytes((1, 1, 0, 0)) + MODEL + b"\x01\x01\x01\xff\xaa", "UTF-8"),
        (STREAM_MAGIC + bytes((0, 0, 0, 0)) + MODEL + b"\x00", "version 0"),
    ],
)
def test_checksummed_streams_with_impossible_fields_are_corrupt(body, message):
    with pytest.raises(CorruptCodeError, match=message):
        unpack_stream(reseal(body))


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "a\\b", "a\0b", "é" * 128])
def test_pack_stream_refuses_unsafe_names(name):
    with pytest.raises(ValueError):
        pack_stream(MODEL, "entropy", 0, [b"\x01"], names=[name])


def test_pack_stream_refuses_names_that_do_not_match_payloads():
    with pytest.raises(ValueError, match="2 names for 1 images"):
        pack_stream(MODEL, "entropy", 0, [b"\x01"], names=["a", "b"])


def test_stream_of_codes_decodes_back_to_the_symbols():
    rng = np.random.default_rng(4)
    symbols = np.rint(rng.normal(size=(50, 16)) * np.linspace(0.1, 2, 16) / 0.3).astype(np.int64)
    data = pack_stream(MODEL, "entropy", 2, [encode_symbols(row, TABLE) for row in symbols])
    stream = unpack_stream(data, expected_model_id=MODEL)
    assert [decode_symbols(p, TABLE) for p in stream.payloads] == symbols.tolist()


def test_framing_refuses_non_bytes_instead_of_allocating_zeros():
    with pytest.raises(TypeError):
        unpack_message(MODEL, 5)
    with pytest.raises(TypeError):
        unpack_stream(1000)
    with pytest.raises(TypeError):
        pack_message(MODEL, "raw", 0, 3)


def test_step_index_accepts_numpy_integers_but_not_bools():
    assert unpack_message(MODEL, pack_message(MODEL, "raw", np.int64(4), b"\x01"))[0].step_index == 4
    with pytest.raises(ValueError):
        pack_message(MODEL, "raw", True, b"\x01")


def test_a_joint_stream_keeps_its_count_and_one_block():
    data = pack_stream(MODEL, "entropy", 3, [b"\x12\x34\x56"], ["a", "b"], joint_count=2)
    s = unpack_stream(data, MODEL)
    assert s.joint_count == 2 and s.count == 2 and s.payloads == (b"\x12\x34\x56",) and s.names == ("a", "b")


def test_damaged_joint_streams_are_refused():
    data = pack_stream(MODEL, "entropy", 3, [bytes(range(40))], joint_count=5)
    for i in range(len(data)):
        damaged = bytearray(data)
        damaged[i] ^= 0x10
        with pytest.raises(CodeError):
            unpack_stream(bytes(damaged), MODEL)
    for cut in range(len(data)):
        with pytest.raises(CodeError):
            unpack_stream(data[:cut], MODEL)
