"""Lossless codes: the latent plus every pixel under the int8 decoder's probabilities."""

import numpy as np
import pytest

import compressor
from compressor import wire
from compressor.coding import lossless
from compressor.errors import LosslessMismatchError
from tests.support import mnist5k_test, to_uint8


@pytest.fixture(scope="module")
def binary_images():
    return to_uint8(mnist5k_test(40))


def test_lossless_messages_decode_to_exactly_the_input(enc, dec, binary_images):
    messages = enc.compress(binary_images, mode="lossless")
    assert all(wire.unpack_message(enc.coding.model_id, m)[0].mode == "lossless" for m in messages)
    np.testing.assert_array_equal(dec.decompress(messages), binary_images)


def test_a_lossless_stream_decodes_exactly_with_names(enc, dec, binary_images):
    names = [f"d{i}" for i in range(len(binary_images))]
    stream = enc.compress_stream(binary_images, mode="lossless", names=names)
    decoded = dec.read(stream)
    assert list(decoded.names) == names
    np.testing.assert_array_equal(dec.images(decoded), binary_images)


def test_lossless_costs_far_less_than_png(enc, binary_images):
    from compressor.io.files import encode_png

    size = np.mean([len(m) for m in enc.compress(binary_images, mode="lossless")])
    png = np.mean([len(encode_png(img)) for img in binary_images])
    assert size < png / 3


def test_a_decoder_of_another_runtime_is_refused_before_decoding(bundle_dir, enc, binary_images):
    messages = enc.compress(binary_images[:3], mode="lossless")
    onnx = compressor.Decoder.load(bundle_dir / "decoder", runtime="onnx")
    with pytest.raises(LosslessMismatchError, match="litert"):
        onnx.decompress(messages)
    fp32 = compressor.Decoder.load(bundle_dir / "decoder", runtime="litert", precision="fp32")
    with pytest.raises(LosslessMismatchError, match="int8"):
        fp32.decompress(messages)


def test_a_receiver_whose_probabilities_differ_fails_with_a_clear_error(bundle_dir, enc, binary_images):
    """Simulates a device whose int8 kernels round differently: its levels are off by one."""
    messages = enc.compress(binary_images[:10], mode="lossless")
    drifting = compressor.Decoder.load(bundle_dir / "decoder", runtime="litert")
    real = drifting.network.levels
    drifting.network.levels = lambda x: np.clip(real(x).astype(np.int16) + 3, -128, 127).astype(np.int8)
    with pytest.raises(LosslessMismatchError, match="image"):
        drifting.decompress(messages)


def test_a_subtle_level_drift_is_refused_and_never_yields_wrong_pixels(bundle_dir, enc, binary_images):
    """As tflite-runtime really differs from ai-edge-litert: a few output levels of each image off by ±1.

    A drift the pixel table maps to the same frequencies changes nothing and may decode; any drift
    that changes the decode must be caught by the image check: wrong pixels never come out.
    """
    messages = enc.compress(binary_images, mode="lossless")
    drifting = compressor.Decoder.load(bundle_dir / "decoder", runtime="litert")
    real, rng, changed = drifting.network.levels, np.random.default_rng(0), []  # the canonical levels

    def off_by_one(x):
        levels = real(x)
        flat = levels.reshape(len(levels), -1).astype(np.int16)
        for row in flat:  # five levels per image, among those that decide a pixel's probability
            where = rng.choice(np.flatnonzero((row > -120) & (row < 120)), size=5, replace=False)
            row[where] += rng.choice((-1, 1), size=5)
        changed.append(int((flat.reshape(levels.shape) != levels).sum()))
        return flat.reshape(levels.shape).astype(np.int8)

    drifting.network.levels = off_by_one
    refused = 0
    for i, message in enumerate(messages):
        try:
            out = drifting.decompress([message])
        except LosslessMismatchError as e:
            assert "image" in str(e)
            refused += 1
            continue
        np.testing.assert_array_equal(out[0], binary_images[i])  # only the exact image may come out
    assert all(c == 5 for c in changed)  # the drift really was applied, five levels each time
    assert refused >= len(messages) // 2, refused  # and most such drifts do change the decode


def test_a_damaged_lossless_message_never_yields_wrong_pixels(enc, dec, binary_images):
    message = enc.compress(binary_images[:1], mode="lossless")[0]
    rng = np.random.default_rng(0)
    for _ in range(200):
        damaged = bytearray(message)
        damaged[rng.integers(len(damaged))] ^= 1 << int(rng.integers(8))
        try:
            out = dec.decompress([bytes(damaged)])
        except compressor.CodeError:
            continue
        np.testing.assert_array_equal(out[0], binary_images[0])  # only an unchanged image may pass


def test_grayscale_input_is_coded_as_its_binarized_image(enc, dec, binary_images):
    gray = binary_images.astype(np.float32) / 255 * 0.8 + 0.1  # 0.1 / 0.9, binarizes the same
    np.testing.assert_array_equal(dec.decompress(enc.compress(gray, mode="lossless")), binary_images)


def test_lossless_has_no_byte_target(enc, binary_images):
    with pytest.raises(compressor.RateError):
        enc.compress(binary_images, mode="lossless", target_bytes=20)


def test_the_pixel_table_keeps_both_outcomes_codable():
    levels = np.array([-128, -128, 127, 127, 0], np.int8)
    pixels = np.array([1, 0, 1, 1, 0])
    table = lossless.build_table(levels, pixels)
    assert len(table) == 256 and min(table) >= 1 and max(table) <= 65535
    assert table[0] < 32768 < table[255]
