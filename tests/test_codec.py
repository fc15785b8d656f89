"""Images -> latent bytes -> images through the real bundle, runtimes and coder."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import compressor
from compressor import wire
from compressor.errors import (
    CodeError,
    CorruptCodeError,
    InvalidImageError,
    ModelMismatchError,
    RateError,
    TruncatedCodeError,
    UnsupportedFormatVersionError,
)


@pytest.fixture(scope="module")
def images():
    from export import datasets

    return datasets.load("mnist5k").test[:64, ..., 0]


def test_messages_decode_to_exactly_the_quantized_symbols(enc, dec, images):
    messages = enc.compress(images)
    assert len(messages) == len(images)
    np.testing.assert_array_equal(dec.read(messages).symbols, enc.symbols(images))


def test_decompress_returns_probabilities_or_binary_pixels(enc, dec, images):
    stream = enc.compress_stream(images)
    probs = dec.decompress(stream)
    assert probs.shape == images.shape and probs.dtype == np.float32
    assert 0.0 <= probs.min() and probs.max() <= 1.0
    pixels = dec.decompress(stream, binarize=True)
    assert pixels.dtype == np.uint8 and set(np.unique(pixels)) <= {0, 255}
    assert np.mean((pixels > 0) != (images > 0.5)) < 0.08  # a real reconstruction, not noise


def test_uint8_and_float_images_give_the_same_code(enc, images):
    as_u8 = (images * 255).astype(np.uint8)
    assert enc.compress(as_u8) == enc.compress(images)
    assert enc.compress(images[:1]) == enc.compress(images[0])  # (H, W) is one image


def test_a_stream_keeps_names_and_order(enc, dec, images):
    names = [f"digit-{i}" for i in range(5)]
    decoded = dec.read(enc.compress_stream(images[:5], names=names))
    assert list(decoded.names) == names
    np.testing.assert_array_equal(decoded.symbols, enc.symbols(images[:5]))


@pytest.mark.parametrize("enc_runtime, dec_runtime", [("litert", "onnx"), ("onnx", "litert")])
def test_codes_cross_runtimes_because_symbols_do_not_depend_on_the_decoder(
    bundle_dir, images, enc_runtime, dec_runtime
):
    e = compressor.Encoder.load(bundle_dir, runtime=enc_runtime)
    d_other = compressor.Decoder.load(bundle_dir, runtime=dec_runtime)
    d_same = compressor.Decoder.load(bundle_dir, runtime=enc_runtime)
    stream = e.compress_stream(images)
    np.testing.assert_array_equal(d_other.read(stream).symbols, e.symbols(images))
    a, b = d_other.decompress(stream), d_same.decompress(stream)
    assert np.mean((a >= 0.5) != (b >= 0.5)) < 0.02  # two int8 quantizations agree closely


def test_raw_mode_has_a_fixed_size_and_round_trips(enc, dec, images):
    messages = enc.compress(images, mode="raw")
    assert len({len(m) for m in messages}) == 1
    sym = enc.symbols(images)
    table = enc.coding.tables[enc.coding.default_index]
    clipped = np.clip(sym, table.lo, np.asarray(table.hi))
    np.testing.assert_array_equal(dec.read(messages).symbols, clipped)


def test_a_coarser_step_makes_smaller_codes(enc, images):
    fine = sum(map(len, enc.compress(images, step=enc.steps[2])))
    coarse = sum(map(len, enc.compress(images, step=enc.steps[12])))
    assert coarse < fine


def test_quality_maps_to_steps_finest_at_the_top(enc, images):
    top = enc.compress(images[:1], quality=16)[0]
    assert wire.unpack_message(enc.coding.model_id, top)[0].step_index == 0


def test_target_bytes_picks_the_finest_step_that_fits_each_image(enc, dec, images):
    messages = enc.compress(images, target_bytes=8)
    assert all(len(m) <= 8 for m in messages)
    steps = [wire.unpack_message(enc.coding.model_id, m)[0].step_index for m in messages]
    for m, s in zip(messages[:8], steps[:8]):
        if s > 0:  # one step finer would not have fitted
            img = images[messages.index(m)]
            finer = enc.compress(img, step=enc.steps[s - 1])[0]
            assert len(finer) > 8
    dec.decompress(messages)


def test_stream_target_bytes_bounds_the_mean_size(enc, images):
    data = enc.compress_stream(images, target_bytes=9)
    assert len(data) <= 9 * len(images)


def test_impossible_or_conflicting_rate_requests_are_refused(enc, images):
    with pytest.raises(RateError, match="not one of"):
        enc.compress(images, step=0.3333)
    with pytest.raises(RateError, match="quality"):
        enc.compress(images, quality=0)
    with pytest.raises(RateError, match="coarsest"):
        enc.compress(images, target_bytes=2)
    with pytest.raises(RateError, match="not both"):
        enc.compress(images, step=enc.steps[0], quality=3)


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.zeros((2, 28, 27), np.float32), "28"),
        (np.zeros((2, 28, 28, 3), np.float32), "grayscale"),
        (np.zeros((0, 28, 28), np.float32), "empty"),
        (np.full((1, 28, 28), np.nan, np.float32), "NaN"),
        (np.zeros((1, 28, 28), np.int32), "uint8"),
        (np.full((1, 28, 28), 3.0, np.float32), "max"),
    ],
)
def test_bad_images_raise_a_value_error_that_says_what_was_expected(enc, bad, message):
    with pytest.raises(InvalidImageError, match=message):
        enc.compress(bad)
    assert issubclass(InvalidImageError, ValueError)


def test_a_truncated_stream_is_refused(enc, dec, images):
    data = enc.compress_stream(images)
    for cut in (0, 3, 10, len(data) // 2, len(data) - 1):
        with pytest.raises(CodeError):
            dec.read(data[:cut] if cut else b"")


def test_every_byte_of_a_stream_is_covered_by_a_check(enc, dec, images):
    data = enc.compress_stream(images[:4])
    for i in range(len(data)):
        damaged = bytearray(data)
        damaged[i] ^= 0x40
        with pytest.raises(CodeError):
            dec.read(bytes(damaged))


def test_a_stream_for_another_model_names_both_models(enc, dec, images):
    s = wire.unpack_stream(enc.compress_stream(images[:3]))
    foreign = wire.pack_stream(bytes(8), s.mode, s.step_index, s.payloads)
    with pytest.raises(ModelMismatchError, match="0000000000000000"):
        dec.read(foreign)


def test_messages_for_another_model_are_refused(enc, dec, images):
    other = bytes.fromhex("0123456789abcdef")
    refused = 0
    for m in enc.compress(images):
        header, payload = wire.unpack_message(enc.coding.model_id, m)
        foreign = wire.pack_message(other, header.mode, header.step_index, payload)
        try:
            dec.read([foreign])
        except ModelMismatchError:
            refused += 1
    assert refused >= len(images) - 2


def test_a_newer_format_version_is_refused_with_a_clear_message(enc, dec, images):
    data = bytearray(enc.compress_stream(images[:2]))
    data[4] = 9
    with pytest.raises(UnsupportedFormatVersionError):
        dec.read(bytes(data))
    msg = bytearray(enc.compress(images[:1])[0])
    msg[0] = (msg[0] & 0x3F) | (2 << 6)
    with pytest.raises(UnsupportedFormatVersionError):
        dec.read([bytes(msg)])


def test_random_bytes_are_refused_with_library_errors(dec):
    rng = np.random.default_rng(0)
    for n in (0, 1, 2, 5, 40, 300):
        with pytest.raises((CodeError, ValueError)):
            dec.read(rng.bytes(n))
        try:
            dec.read([rng.bytes(n)])
        except (CodeError, ValueError):
            pass


def test_decoding_nothing_is_an_error(dec):
    with pytest.raises(CorruptCodeError, match="no codes"):
        dec.read([])
    with pytest.raises(TruncatedCodeError):
        dec.read([b"\x40"])
    with pytest.raises(CorruptCodeError, match="magic"):
        dec.read(b"hello world, not a stream")


@settings(max_examples=60, deadline=None, derandomize=True)
@given(data=st.data())
def test_any_latents_round_trip_exactly_at_every_step(enc, dec, data):
    index = data.draw(st.integers(0, len(enc.steps) - 1))
    scale = data.draw(st.sampled_from([0.5, 1.0, 3.0, 20.0]))
    seed = data.draw(st.integers(0, 2**31))
    latents = np.random.default_rng(seed).normal(0, scale, (3, enc.part.latent_dim))
    symbols = enc._quantize(latents, index)
    for mode in ("entropy", "raw"):
        payload = enc.coding.encode_one(symbols[0], index, mode)
        out = dec.coding.decode_one(payload, index, mode)
        if mode == "entropy":
            assert out == symbols[0].tolist()


def test_a_joint_stream_decodes_to_the_same_symbols_and_is_smaller(enc, dec, images):
    joint = enc.compress_stream(images, joint=True, names=[f"n{i}" for i in range(len(images))])
    separate = enc.compress_stream(images, names=[f"n{i}" for i in range(len(images))])
    decoded = dec.read(joint)
    np.testing.assert_array_equal(decoded.symbols, enc.symbols(images))
    assert decoded.names[3] == "n3"
    assert len(joint) < len(separate) - len(images)  # saves at least a byte per image


def test_a_damaged_joint_stream_is_refused(enc, dec, images):
    data = enc.compress_stream(images[:5], joint=True)
    for i in range(len(data)):
        damaged = bytearray(data)
        damaged[i] ^= 0x08
        with pytest.raises(CodeError):
            dec.read(bytes(damaged))


def test_a_joint_stream_announcing_more_images_than_it_can_hold_is_refused(enc, dec, images):
    s = wire.unpack_stream(enc.compress_stream(images[:5], joint=True))
    forged = wire.pack_stream(s.model_id, "entropy", s.step_index, s.payloads, joint_count=200_000)
    with pytest.raises(CorruptCodeError, match="cannot hold"):
        dec.read(forged)
