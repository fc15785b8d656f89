"""Images -> latent bytes -> images through the real bundle, runtimes and coder."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import compressor
from compressor import wire
from compressor.coding.entropy import MAX_ABS_SYMBOL
from compressor.errors import (
    CodeError,
    CorruptCodeError,
    InvalidImageError,
    ModelMismatchError,
    RateError,
    TruncatedCodeError,
    UnsupportedFormatVersionError,
)
from tests.support import mnist5k_test, run_in_site, run_without_tensorflow, to_uint8, without_modules


@pytest.fixture(scope="module")
def images():
    return mnist5k_test(64)


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
    as_u8 = to_uint8(images)
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


def test_quality_runs_from_the_coarsest_step_to_the_finest_and_sizes_grow_with_it(enc, dec, images):
    n = len(enc.steps)
    totals = []
    for quality in range(1, n + 1):
        messages = enc.compress(images, quality=quality)
        indices = {wire.unpack_message(enc.coding.model_id, m)[0].step_index for m in messages}
        assert indices == {n - quality}, quality  # quality 1 = coarsest step, quality n = finest
        assert messages == enc.compress(images, step=enc.steps[n - quality])
        totals.append(sum(map(len, messages)))
    assert totals == sorted(totals) and totals[0] < totals[-1], totals  # more quality never costs fewer bytes
    assert enc.steps == sorted(enc.steps)  # index 0 is the finest step
    error = [np.mean((dec.decompress(enc.compress(images, quality=q)) >= 0.5) != (images >= 0.5)) for q in (1, n)]
    assert error[1] < error[0]


def test_target_bytes_picks_the_finest_step_that_fits_each_image(enc, dec, images):
    messages = enc.compress(images, target_bytes=8)
    assert all(len(m) <= 8 for m in messages)
    steps = [wire.unpack_message(enc.coding.model_id, m)[0].step_index for m in messages]
    assert len(set(steps)) > 1  # the budget really is decided per image
    for i, s in enumerate(steps):
        if s > 0:  # one step finer would not have fitted
            finer = enc.compress(images[i], step=enc.steps[s - 1])[0]
            assert len(finer) > 8, i
    decoded = dec.read(messages)
    np.testing.assert_array_equal(decoded.steps, [enc.steps[s] for s in steps])
    np.testing.assert_array_equal(
        decoded.symbols, np.stack([enc.symbols(images[i], step=enc.steps[s])[0] for i, s in enumerate(steps)])
    )


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
    with pytest.raises(ModelMismatchError) as refused:
        dec.read(foreign)
    assert "0000000000000000" in str(refused.value)  # the stream's model
    assert dec.coding.model_id.hex() in str(refused.value)  # and this decoder's


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


def test_a_stream_passed_in_a_list_of_messages_is_named_a_stream_not_a_newer_version(enc, dec, images):
    stream = bytes(enc.compress_stream(images[:2]))
    with pytest.raises(CorruptCodeError, match="message 0 is a whole stream: pass the stream's bytes, not a list"):
        dec.read([stream])


def test_random_bytes_are_refused_with_library_errors(dec):
    rng = np.random.default_rng(0)
    for n in (0, 1, 2, 5, 40, 300):
        with pytest.raises(CodeError):
            dec.read(rng.bytes(n))
        with pytest.raises(CodeError):
            dec.read([rng.bytes(n)])


def test_decoding_nothing_is_an_error(dec):
    with pytest.raises(CorruptCodeError, match="no codes"):
        dec.read([])
    with pytest.raises(TruncatedCodeError):
        dec.read([b"\x40"])
    with pytest.raises(CorruptCodeError, match="magic"):
        dec.read(b"hello world, not a stream")


@st.composite
def symbol_vectors(draw, dims: int):
    """A latent symbol vector: mostly small values as real latents give, some far outside any table."""
    small = st.integers(-12, 12)
    anywhere = st.integers(-MAX_ABS_SYMBOL, MAX_ABS_SYMBOL)
    return draw(hnp.arrays(np.int64, dims, elements=st.one_of(small, small, anywhere)))


@given(data=st.data())
def test_any_symbols_round_trip_exactly_in_entropy_mode_and_clipped_in_raw_mode(enc, dec, data):
    index = data.draw(st.integers(0, len(enc.steps) - 1), label="step index")
    symbols = data.draw(symbol_vectors(enc.part.latent_dim), label="symbols")
    payload = enc.coding.encode_one(symbols, index, "entropy")
    assert dec.coding.decode_one(payload, index, "entropy") == symbols.tolist()
    table = enc.coding.tables[index]
    raw = dec.coding.decode_one(enc.coding.encode_one(symbols, index, "raw"), index, "raw")
    assert raw == np.clip(symbols, table.lo, np.asarray(table.hi)).tolist()


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


# --- runtime="auto": litert, then tflite, then onnx ------------------------------------------------
_RESOLVE = "from compressor.runtime import sessions\nprint(sessions.resolve('auto'))\n"


@pytest.mark.parametrize(("absent", "expected"), [((), "litert"), (("ai_edge_litert",), "onnx")])
def test_runtime_auto_takes_litert_then_onnx_in_the_test_venv(absent, expected):
    """tflite-runtime 2.14 cannot be installed beside numpy 2: its place in the order is checked below."""
    proc = run_without_tensorflow(without_modules(*absent) + _RESOLVE)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == expected


@pytest.mark.parametrize(("absent", "expected"), [((), "tflite"), (("tflite_runtime",), "onnx")])
def test_runtime_auto_takes_tflite_before_onnx_where_litert_is_absent(tflite_site, absent, expected):
    proc = run_in_site(tflite_site, "-c", without_modules(*absent) + _RESOLVE)  # no ai-edge-litert there
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == expected


def test_runtime_auto_without_any_runtime_says_how_to_install_one():
    code = without_modules("ai_edge_litert", "tflite_runtime", "onnxruntime") + _RESOLVE
    proc = run_without_tensorflow(code)
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("compressor.errors.RuntimeUnavailableError: no inference runtime installed for 'auto'")
    for hint in ("ai-edge-litert==2.3.0", "tflite-runtime==2.14.0", "onnxruntime==1.32.0"):
        assert hint in last


_TFLITE_DEVICE = """
import sys
import numpy as np
import compressor
bundle, images = sys.argv[1], np.load(sys.argv[2])
enc = compressor.Encoder.load(bundle + "/encoder")  # runtime="auto"
dec = compressor.Decoder.load(bundle + "/decoder")
assert (enc.runtime, dec.runtime) == ("tflite", "tflite"), (enc.runtime, dec.runtime)
stream = enc.compress_stream(images)
np.testing.assert_array_equal(dec.read(stream).symbols, enc.symbols(images))
open(sys.argv[3], "wb").write(stream)
try:
    dec.decompress(open(sys.argv[4], "rb").read())
except compressor.LosslessMismatchError as e:
    print("lossless refused:", e)
"""


def test_a_device_with_tflite_runtime_alone_takes_it_by_default_and_refuses_lossless(
    bundle_dir, dec, tflite_site, tmp_path
):
    """The README: tflite-runtime codes decode anywhere, but lossless codes need ai-edge-litert."""
    images = to_uint8(mnist5k_test(32))
    np.save(tmp_path / "x.npy", images)
    lossless = tmp_path / "lossless.bin"  # made here with ai-edge-litert
    lossless.write_bytes(compressor.Encoder.load(bundle_dir, runtime="litert").compress_stream(images, mode="lossless"))
    args = (str(bundle_dir), str(tmp_path / "x.npy"), str(tmp_path / "codes.bin"), str(lossless))
    proc = run_in_site(tflite_site, "-c", without_modules("onnxruntime") + _TFLITE_DEVICE, *args)
    assert proc.returncode == 0, proc.stderr
    probs = dec.decompress((tmp_path / "codes.bin").read_bytes())  # made with tflite-runtime, read with litert
    assert probs.shape == (32, 28, 28) and np.mean((probs >= 0.5) != (images > 127)) < 0.08
    assert "lossless refused:" in proc.stdout and "litert" in proc.stdout
