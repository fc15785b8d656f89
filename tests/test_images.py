"""Behaviour of compressor.io.files: validating arrays, reading/writing image files.

PNG files are built two ways: with Pillow (the reference decoder) and with a tiny hand
encoder below, which can emit every bit depth, colour type, filter type and damage that
Pillow's writer never produces.
"""

import io
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

from compressor import limits
from compressor.errors import CompressorError, InvalidImageError
from compressor.io.arrays import as_batch, to_uint8
from compressor.io.files import read_image, read_images, write_png
from tests.support import ROOT

RNG_SEED = 20240601


@pytest.fixture
def rng():
    return np.random.default_rng(RNG_SEED)


@pytest.fixture
def pil():
    """Pillow, the reference decoder: a core dependency, so always installed (never skipped)."""
    import PIL.Image

    return PIL.Image


@pytest.fixture
def no_pillow(monkeypatch):
    """Make ``from PIL import ...`` fail, as on a device without Pillow."""
    monkeypatch.setitem(sys.modules, "PIL", None)


# --- hand-made PNGs ----------------------------------------------------------------------
CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
ALL_COMBOS = [(0, 1), (0, 2), (0, 4), (0, 8), (0, 16), (2, 8), (2, 16), (3, 1), (3, 2), (3, 4), (3, 8)]
ALL_COMBOS += [(4, 8), (4, 16), (6, 8), (6, 16)]
ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]


def chunk(kind, body):
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def ihdr(width, height, depth, colour, interlace=0):
    return chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, interlace))


def pack_rows(samples, depth):
    """(H, S) integer samples -> (H, row_bytes) uint8, big-endian, rows padded to a byte."""
    if depth == 16:
        return samples.astype(">u2").view(np.uint8).reshape(samples.shape[0], -1)
    if depth == 8:
        return samples.astype(np.uint8)
    per_byte = 8 // depth
    pad = -samples.shape[1] % per_byte
    s = np.pad(samples, ((0, 0), (0, pad))).reshape(samples.shape[0], -1, per_byte).astype(np.uint16)
    shifts = np.arange(8 - depth, -1, -depth)
    return (s << shifts).sum(axis=2).astype(np.uint8)


def paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else b if pb <= pc else c


def filter_row(kind, line, prior, bpp):
    out = bytearray([kind])
    for i, x in enumerate(line):
        a = line[i - bpp] if i >= bpp else 0
        b = prior[i]
        c = prior[i - bpp] if i >= bpp else 0
        predictor = [0, a, b, (a + b) // 2, paeth(a, b, c)][kind]
        out.append((x - predictor) & 0xFF)
    return bytes(out)


def filtered_stream(rows, bpp, filters):
    prior = bytes(rows.shape[1])
    out = b""
    for y, row in enumerate(rows):
        line = row.tobytes()
        out += filter_row(filters[y % len(filters)], line, prior, bpp)
        prior = line
    return out


def make_png(samples, depth, colour, width, *, palette=None, filters=(0, 1, 2, 3, 4), interlace=False):
    """Encode (H, W*channels) samples; optionally Adam7 (filter None in every pass)."""
    height = samples.shape[0]
    channels = CHANNELS[colour]
    bpp = max(1, channels * depth // 8)
    if interlace:
        pixels = samples.reshape(height, width, channels)
        stream = b""
        for x0, y0, dx, dy in ADAM7:
            sub = pixels[y0::dy, x0::dx]
            if sub.size:
                rows = pack_rows(sub.reshape(sub.shape[0], -1), depth)
                stream += filtered_stream(rows, bpp, (0,))
    else:
        stream = filtered_stream(pack_rows(samples, depth), bpp, filters)
    body = [b"\x89PNG\r\n\x1a\n", ihdr(width, height, depth, colour, int(interlace))]
    if palette is not None:
        body.append(chunk(b"PLTE", palette.astype(np.uint8).tobytes()))
    body += [chunk(b"IDAT", zlib.compress(stream)), chunk(b"IEND", b"")]
    return b"".join(body)


def random_png_case(rng, colour, depth, height=6, width=13):
    """Random samples (and palette) for one colour type / bit depth."""
    channels = CHANNELS[colour]
    palette = None
    if colour == 3:
        entries = 200 if depth == 8 else 1 << depth
        palette = rng.integers(0, 256, (entries, 3))
        samples = rng.integers(0, entries, (height, width))
    else:
        samples = rng.integers(0, 1 << depth, (height, width * channels))
    return samples, palette


def luma(rgb):
    """Pillow's convert('L'): BT.601 in 16-bit fixed point."""
    rgb = rgb.astype(np.int64)
    return ((rgb[..., 0] * 19595 + rgb[..., 1] * 38470 + rgb[..., 2] * 7471 + 0x8000) >> 16).astype(np.uint8)


def expected_gray(samples, depth, colour, width, palette=None):
    """The documented decoding rules, written independently of the module."""
    channels = CHANNELS[colour]
    pixels = samples.reshape(samples.shape[0], width, channels).astype(np.int64)
    if depth == 16:
        pixels >>= 8
    elif depth < 8 and colour == 0:
        pixels = pixels * 255 // ((1 << depth) - 1)
    if colour == 3:
        return luma(palette[pixels[..., 0]])
    if colour in (0, 4):
        return pixels[..., 0].astype(np.uint8)
    return luma(pixels[..., :3])


def pillow_gray(im):
    """Pillow's reading of a file under our rules: convert('L'), except 16-bit gray keeps the high byte.

    (Pillow's own I;16 -> L conversion clips at 255 instead of scaling, so it is not the reference.)
    """
    if im.mode.startswith("I;16") or im.mode == "I":
        return (np.array(im).astype(np.int64) >> 8).astype(np.uint8)
    return np.array(im.convert("L"))


def write_bytes(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def small_valid_png(rng, height=5, width=7):
    return make_png(rng.integers(0, 256, (height, width)), 8, 0, width)


# --- as_batch: accepted inputs -----------------------------------------------------------
def test_invalid_image_error_is_both_a_compressor_error_and_a_value_error():
    assert issubclass(InvalidImageError, CompressorError)
    assert issubclass(InvalidImageError, ValueError)


def test_as_batch_scales_uint8_to_unit_float32(rng):
    x = rng.integers(0, 256, (2, 4, 5), dtype=np.uint8)
    out = as_batch(x)
    assert out.dtype == np.float32 and out.shape == (2, 4, 5)
    np.testing.assert_array_equal(out, x.astype(np.float32) / np.float32(255))
    assert out.min() >= 0 and out.max() <= 1


@pytest.mark.parametrize(
    ("shape", "expected"), [((4, 5), (1, 4, 5)), ((3, 4, 5), (3, 4, 5)), ((3, 4, 5, 1), (3, 4, 5))]
)
def test_as_batch_accepts_hw_nhw_and_nhw1_shapes(shape, expected):
    assert as_batch(np.zeros(shape, np.uint8)).shape == expected


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_as_batch_accepts_floats_already_in_unit_range(rng, dtype):
    x = rng.random((2, 3, 4)).astype(dtype)
    x[0, 0, 0], x[0, 0, 1] = 0.0, 1.0
    out = as_batch(x)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, x.astype(np.float32))


def test_as_batch_returns_a_copy_that_does_not_alias_the_input():
    x = np.full((1, 2, 2), 0.5, np.float32)
    out = as_batch(x)
    x[:] = 0.0
    assert (out == 0.5).all()


def test_as_batch_stacks_a_list_of_equally_shaped_images():
    out = as_batch([np.zeros((3, 4), np.uint8), np.full((3, 4), 255, np.uint8)])
    assert out.shape == (2, 3, 4)
    assert out[1].min() == 1.0


def test_as_batch_accepts_the_shape_the_model_expects():
    assert as_batch(np.zeros((2, 28, 28), np.uint8), shape=(28, 28)).shape == (2, 28, 28)


# --- as_batch: refusals ------------------------------------------------------------------
def test_as_batch_rejects_a_ragged_list_and_asks_for_equal_shapes():
    with pytest.raises(InvalidImageError, match="same shape"):
        as_batch([np.zeros((3, 4)), np.zeros((5, 4))])


@pytest.mark.parametrize("bad", [None, {"a": 1}, object()])
def test_as_batch_rejects_non_numeric_objects_and_names_the_type(bad):
    with pytest.raises(InvalidImageError, match=r"numeric numpy array.*dtype object"):
        as_batch(bad)


def test_as_batch_rejects_strings_as_not_an_image_dtype():
    with pytest.raises(InvalidImageError, match=r"dtype <U\d+ is not an image dtype"):
        as_batch(["ab", "cd"])


def test_as_batch_rejects_bool_with_a_conversion_hint():
    with pytest.raises(InvalidImageError, match=r"dtype bool.*convert to uint8 0\.\.255 or float 0\.\.1"):
        as_batch(np.zeros((1, 2, 2), bool))


@pytest.mark.parametrize("dtype", [np.int8, np.int32, np.int64, np.uint16, np.uint32])
def test_as_batch_rejects_integer_dtypes_other_than_uint8_with_a_conversion_hint(dtype):
    with pytest.raises(InvalidImageError, match=rf"dtype {np.dtype(dtype)}.*convert to uint8 0\.\.255 or float 0\.\.1"):
        as_batch(np.zeros((1, 2, 2), dtype))


def test_as_batch_rejects_complex_numbers_as_not_an_image_dtype():
    with pytest.raises(InvalidImageError, match="complex128 is not an image dtype"):
        as_batch(np.zeros((1, 2, 2), complex))


@pytest.mark.parametrize("shape", [(0, 28, 28), (2, 0, 28), (2, 28, 0), (0,), (0, 0)])
def test_as_batch_rejects_empty_input_and_shows_the_shape(shape):
    with pytest.raises(InvalidImageError, match=rf"empty: got shape {re_shape(shape)}"):
        as_batch(np.zeros(shape, np.uint8))


def re_shape(shape):
    return str(shape).replace("(", r"\(").replace(")", r"\)")


@pytest.mark.parametrize("shape", [(5,), (1, 2, 3, 1, 1)])
def test_as_batch_rejects_the_wrong_number_of_dimensions_and_lists_accepted_shapes(shape):
    with pytest.raises(InvalidImageError, match=rf"expected shape \(H, W\), \(N, H, W\).*got {len(shape)}-D"):
        as_batch(np.zeros(shape, np.uint8))


@pytest.mark.parametrize("channels", [2, 3, 4])
def test_as_batch_rejects_colour_channels_and_says_grayscale_only(channels):
    with pytest.raises(InvalidImageError, match=rf"grayscale only; convert RGB first.*{channels} channels"):
        as_batch(np.zeros((2, 4, 4, channels), np.uint8))


def test_as_batch_rejects_nan_and_inf_and_says_how_many_and_where():
    x = np.zeros((3, 4, 5), np.float32)
    x[1, 2, 3] = np.nan
    x[2, 0, 0] = np.nan
    x[2, 1, 1] = np.inf
    with pytest.raises(InvalidImageError, match=r"2 NaN and 1 inf values; first at image 1, row 2, column 3"):
        as_batch(x)


def test_as_batch_reports_nan_position_in_a_single_2d_image():
    x = np.zeros((4, 5), np.float64)
    x[3, 4] = -np.inf
    with pytest.raises(InvalidImageError, match=r"0 NaN and 1 inf values; first at image 0, row 3, column 4"):
        as_batch(x)


def test_as_batch_rejects_floats_outside_unit_range_and_gives_min_and_max():
    x = np.zeros((1, 2, 2), np.float32)
    x[0, 0, 0], x[0, 1, 1] = -0.25, 0.5
    with pytest.raises(InvalidImageError, match=r"must be in \[0, 1\], got min -0\.25 and max 0\.5$"):
        as_batch(x)


def test_as_batch_recognises_0_to_255_floats_and_suggests_dividing():
    with pytest.raises(InvalidImageError, match=r"max 255; looks like 0\.\.255 data: divide by 255"):
        as_batch(np.full((1, 2, 2), 255.0))


def test_as_batch_rejects_a_shape_the_model_does_not_expect_and_names_both():
    with pytest.raises(InvalidImageError, match=r"expects 28x28 images \(height x width\), got 32x30; resize"):
        as_batch(np.zeros((2, 32, 30), np.uint8), shape=(28, 28))


def test_as_batch_suspects_a_single_rgb_image_when_the_last_axis_is_three():
    with pytest.raises(InvalidImageError, match=r"one RGB image\? convert it to grayscale"):
        as_batch(np.zeros((28, 28, 3), np.uint8), shape=(28, 28))


def test_as_batch_checks_its_shape_argument():
    with pytest.raises(ValueError, match="height, width"):
        as_batch(np.zeros((1, 2, 2), np.uint8), shape=(2,))


# --- to_uint8 ----------------------------------------------------------------------------
def test_to_uint8_rounds_to_nearest_level():
    p = np.array([[0.0, 0.4 / 255, 1.6 / 255, 0.5, 1.0]], np.float32)
    np.testing.assert_array_equal(to_uint8(p), [[0, 0, 2, 128, 255]])


def test_to_uint8_binarizes_at_one_half():
    p = np.array([0.0, 0.4999, 0.5, 1.0], np.float32)
    out = to_uint8(p, binarize=True)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, [0, 0, 255, 255])


def test_to_uint8_keeps_the_shape(rng):
    p = rng.random((2, 3, 4, 1)).astype(np.float32)
    assert to_uint8(p).shape == (2, 3, 4, 1)


def test_to_uint8_rejects_integer_input_and_says_floats_are_expected():
    with pytest.raises(InvalidImageError, match=r"expected floats in \[0, 1\], got dtype uint8"):
        to_uint8(np.zeros((2, 2), np.uint8))


def test_to_uint8_rejects_nan_instead_of_making_black_pixels():
    p = np.zeros((2, 3), np.float32)
    p[1, 2] = np.nan
    with pytest.raises(InvalidImageError, match=r"1 NaN and 0 inf values; first at row 1, column 2"):
        to_uint8(p, binarize=True)


def test_to_uint8_rejects_values_outside_unit_range():
    with pytest.raises(InvalidImageError, match=r"min 0 and max 1\.5"):
        to_uint8(np.array([0.0, 1.5]))


def test_to_uint8_rejects_empty_input():
    with pytest.raises(InvalidImageError, match="empty"):
        to_uint8(np.zeros((0, 3), np.float32))


# --- write_png ---------------------------------------------------------------------------
def test_write_png_round_trips_through_read_image(tmp_path, rng):
    x = rng.integers(0, 256, (17, 11), dtype=np.uint8)
    write_png(tmp_path / "a.png", x)
    np.testing.assert_array_equal(read_image(tmp_path / "a.png"), x)


def test_write_png_opens_identically_in_pillow(tmp_path, rng, pil):
    x = rng.integers(0, 256, (9, 14), dtype=np.uint8)
    write_png(tmp_path / "a.png", x)
    with pil.open(tmp_path / "a.png") as im:
        assert im.mode == "L" and im.size == (14, 9)
        np.testing.assert_array_equal(np.array(im), x)


def test_write_png_stores_floats_as_rounded_levels(tmp_path):
    x = np.array([[0.0, 0.5, 1.0], [1 / 255, 0.7 / 255, 0.2]], np.float32)
    write_png(tmp_path / "f.png", x)
    np.testing.assert_array_equal(read_image(tmp_path / "f.png"), [[0, 128, 255], [1, 1, 51]])


def test_write_png_accepts_a_trailing_channel_axis(tmp_path):
    write_png(tmp_path / "c.png", np.full((3, 4, 1), 7, np.uint8))
    np.testing.assert_array_equal(read_image(tmp_path / "c.png"), np.full((3, 4), 7))


@pytest.mark.parametrize(
    ("shape", "pattern"),
    [((2, 3, 5), r"one grayscale image.*got \(2, 3, 5\)$"), ((3, 4, 3), "grayscale only: convert RGB first")],
)
def test_write_png_rejects_batches_and_colour_images(tmp_path, shape, pattern):
    with pytest.raises(InvalidImageError, match=pattern):
        write_png(tmp_path / "x.png", np.zeros(shape, np.uint8))
    assert not list(tmp_path.iterdir())


def test_write_png_rejects_invalid_values_and_leaves_an_existing_file_alone(tmp_path):
    target = tmp_path / "x.png"
    target.write_bytes(b"old")
    with pytest.raises(InvalidImageError, match="max 2"):
        write_png(target, np.full((2, 2), 2.0))
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["x.png"]


def test_write_png_refuses_images_it_could_not_read_back(tmp_path):
    with pytest.raises(InvalidImageError, match="limit is 16384 per side"):
        write_png(tmp_path / "w.png", np.zeros((1, limits.MAX_IMAGE_SIDE + 1), np.uint8))


def test_write_png_needs_an_existing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        write_png(tmp_path / "missing" / "a.png", np.zeros((2, 2), np.uint8))


# --- read_image: PNG decoding ------------------------------------------------------------
@pytest.mark.parametrize(("colour", "depth"), ALL_COMBOS)
def test_read_image_decodes_every_colour_type_and_bit_depth(tmp_path, rng, colour, depth):
    samples, palette = random_png_case(rng, colour, depth)
    path = write_bytes(tmp_path, "c.png", make_png(samples, depth, colour, 13, palette=palette))
    out = read_image(path)
    assert out.dtype == np.uint8 and out.shape == (6, 13)
    np.testing.assert_array_equal(out, expected_gray(samples, depth, colour, 13, palette))


@pytest.mark.parametrize(("colour", "depth"), ALL_COMBOS)
def test_read_image_agrees_with_pillow_on_every_colour_type_and_bit_depth(tmp_path, rng, pil, colour, depth):
    samples, palette = random_png_case(rng, colour, depth)
    path = write_bytes(tmp_path, "c.png", make_png(samples, depth, colour, 13, palette=palette))
    with pil.open(path) as im:
        np.testing.assert_array_equal(read_image(path), pillow_gray(im))


@pytest.mark.parametrize("kind", [0, 1, 2, 3, 4])
@pytest.mark.parametrize(("colour", "depth"), [(0, 1), (0, 8), (2, 8), (6, 16)])
def test_read_image_undoes_each_filter_type_at_every_pixel_stride(tmp_path, rng, kind, colour, depth):
    samples, palette = random_png_case(rng, colour, depth, height=5, width=9)
    path = write_bytes(tmp_path, "f.png", make_png(samples, depth, colour, 9, palette=palette, filters=(kind,)))
    np.testing.assert_array_equal(read_image(path), expected_gray(samples, depth, colour, 9, palette))


def test_read_image_scales_shallow_gray_to_full_range(tmp_path):
    samples = np.array([[0, 1, 2, 3]])
    path = write_bytes(tmp_path, "g.png", make_png(samples, 2, 0, 4))
    np.testing.assert_array_equal(read_image(path), [[0, 85, 170, 255]])


def test_read_image_keeps_the_high_byte_of_16_bit_samples(tmp_path):
    samples = np.array([[0, 255, 256, 0x7FFF, 0xFFFF]])
    path = write_bytes(tmp_path, "h.png", make_png(samples, 16, 0, 5))
    np.testing.assert_array_equal(read_image(path), [[0, 0, 1, 127, 255]])


def test_read_image_reads_a_float_tiff_in_0_to_1_like_a_float_array(tmp_path, pil):
    path = tmp_path / "float.tif"
    pil.fromarray(np.array([[0.0, 0.5, 1.0]], np.float32)).save(path)
    np.testing.assert_array_equal(read_image(path), [[0, 128, 255]])  # not clipped unscaled to 0/1


@pytest.mark.parametrize(
    "value, message",
    [(np.nan, "784 NaN"), (np.inf, "784 inf"), (-2.0, "must be in \\[0, 1\\]"), (200.0, "max 200 \\(32-bit float")],
)
def test_read_image_refuses_a_float_tiff_of_nan_inf_or_outside_0_to_1(tmp_path, pil, value, message):
    path = tmp_path / "bad.tif"
    pil.fromarray(np.full((28, 28), value, np.float32)).save(path)
    with pytest.raises(InvalidImageError, match=f"bad.tif: .*{message}.*8-bit samples, or scale its samples to 0..1$"):
        read_image(path)


def test_read_image_refuses_32_bit_integer_samples_outside_16_bit_grey(tmp_path, pil):
    path = tmp_path / "int32.tif"
    pil.fromarray(np.array([[-5, 70000]], np.int32), "I").save(path)
    with pytest.raises(InvalidImageError, match="int32.tif: 32-bit integer samples from -5 to 70000"):
        read_image(path)


def test_read_image_ignores_alpha(tmp_path):
    rgba = np.array([[[200, 100, 50, 0], [200, 100, 50, 255]]])
    path = write_bytes(tmp_path, "a.png", make_png(rgba.reshape(1, -1), 8, 6, 2))
    gray = read_image(path)
    assert gray[0, 0] == gray[0, 1] == luma(np.array([200, 100, 50]))


def test_read_image_ignores_the_file_extension(tmp_path, rng):
    path = write_bytes(tmp_path, "really_a_png.jpg", small_valid_png(rng))
    assert read_image(path).shape == (5, 7)


@pytest.mark.parametrize("mode", ["1", "L", "I;16", "RGB", "RGBA", "P", "LA"])
def test_read_image_reads_pillow_written_pngs_like_pillow_convert_l(tmp_path, rng, pil, mode):
    if mode == "1":
        im = pil.fromarray(rng.integers(0, 2, (11, 13)).astype(bool))
    elif mode == "I;16":
        im = pil.fromarray(rng.integers(0, 65536, (11, 13), dtype=np.uint16))
    elif mode == "L":
        im = pil.fromarray(rng.integers(0, 256, (11, 13), dtype=np.uint8))
    else:
        bands = {"RGB": 3, "RGBA": 4, "P": 3, "LA": 2}[mode]
        im = pil.fromarray(rng.integers(0, 256, (64, 64, bands), dtype=np.uint8))  # 4096 colours
        im = im.convert("P", palette=pil.Palette.ADAPTIVE, colors=200) if mode == "P" else im
    assert im.mode == mode
    path = tmp_path / "p.png"
    im.save(path)
    with pil.open(path) as back:
        reference = pillow_gray(back)  # convert("L"), except I;16 keeps the high byte
    np.testing.assert_array_equal(read_image(path), reference)


@pytest.mark.parametrize("colors", [2, 4, 16, 256])
def test_read_image_reads_pillow_palette_pngs_of_every_bit_depth(tmp_path, rng, pil, colors):
    im = pil.fromarray(rng.integers(0, 256, (9, 15, 3), dtype=np.uint8))
    im = im.convert("P", palette=pil.Palette.ADAPTIVE, colors=colors)
    path = tmp_path / "p.png"
    bits = max(1, (colors - 1).bit_length())
    im.save(path, bits=bits)
    assert path.read_bytes()[24:26] == bytes([bits, 3])  # really a palette PNG of that depth
    np.testing.assert_array_equal(read_image(path), np.array(im.convert("L")))


# --- read_image: interlaced PNG ----------------------------------------------------------
@pytest.mark.parametrize(("colour", "depth"), [(0, 8), (2, 8)])
def test_read_image_reads_interlaced_png_through_pillow(tmp_path, rng, pil, colour, depth):
    samples, _ = random_png_case(rng, colour, depth, height=11, width=10)
    path = write_bytes(tmp_path, "i.png", make_png(samples, depth, colour, 10, interlace=True))
    np.testing.assert_array_equal(read_image(path), expected_gray(samples, depth, colour, 10))


# --- read_image: damaged PNG -------------------------------------------------------------
def test_read_image_detects_a_flipped_byte_in_idat_by_crc(tmp_path, rng):
    data = bytearray(small_valid_png(rng))
    data[data.index(b"IDAT") + 6] ^= 0x01
    path = write_bytes(tmp_path, "flip.png", bytes(data))
    with pytest.raises(InvalidImageError, match=r"flip\.png is not a readable image"):
        read_image(path)


@pytest.mark.parametrize("keep", [8, 20, 40])  # Pillow tolerates a cut inside IEND
def test_read_image_reports_a_truncated_png(tmp_path, rng, keep):
    data = small_valid_png(rng)
    path = write_bytes(tmp_path, "cut.png", data[:keep])
    with pytest.raises(InvalidImageError, match=r"cut\.png is not a readable image"):
        read_image(path)


def png_with_stream(stream, width, height, depth=8, colour=0, palette=None):
    """A PNG with correct CRCs around arbitrary (possibly wrong) decompressed data."""
    parts = [b"\x89PNG\r\n\x1a\n", ihdr(width, height, depth, colour)]
    if palette is not None:
        parts.append(chunk(b"PLTE", bytes(palette)))
    parts += [chunk(b"IDAT", stream), chunk(b"IEND", b"")]
    return b"".join(parts)


@pytest.mark.parametrize(
    ("data", "pattern"),
    [
        (png_with_stream(b"not zlib at all", 2, 2), "image data does not decompress"),
        (png_with_stream(zlib.compress(b"\x07\x01\x02\x00\x01\x02"), 2, 2), "row 0 has unknown filter type 7"),
        (png_with_stream(b"", 1, 1, 8, 1), "unknown colour type 1"),
        (png_with_stream(b"", 1, 1, 16, 3), "bit depth 16 is not valid for colour type 3"),
        (png_with_stream(b"", 0, 1), r"0x1 \(width x height\)"),
        (b"\x89PNG\r\n\x1a\n" + chunk(b"IDAT", b"") + chunk(b"IEND", b""), "first chunk is IDAT, expected IHDR"),
        (b"\x89PNG\r\n\x1a\n" + ihdr(1, 1, 8, 0) + chunk(b"IEND", b""), "no IDAT"),
        (b"\x89PNG\r\n\x1a\n" + ihdr(1, 1, 8, 0) + chunk(b"ABCD", b"") + chunk(b"IEND", b""), "critical chunk ABCD"),
        (b"\x89PNG\r\n\x1a\n" + ihdr(1, 1, 8, 0) + chunk(b"I@#T", b""), "invalid chunk type"),
    ],
)
def test_read_image_refuses_structurally_broken_png_naming_the_file(tmp_path, data, pattern):
    path = write_bytes(tmp_path, "broken.png", data)
    with pytest.raises(InvalidImageError, match=r".*broken\.png.*"):
        read_image(path)


def test_read_image_ignores_unknown_ancillary_chunks(tmp_path):
    data = png_with_stream(zlib.compress(b"\x00\x09"), 1, 1)
    data = data[:33] + chunk(b"teXt", b"k\x00v") + data[33:]
    assert read_image(write_bytes(tmp_path, "t.png", data)).tolist() == [[9]]


def test_read_image_refuses_huge_dimensions_before_allocating(tmp_path):
    data = b"\x89PNG\r\n\x1a\n" + ihdr(100_000, 100_000, 16, 6) + chunk(b"IEND", b"")
    path = write_bytes(tmp_path, "huge.png", data)
    with pytest.raises(InvalidImageError, match=r"huge\.png: .*--max-pixels"):
        read_image(path)


def test_read_image_bounds_decompression_to_the_announced_size(tmp_path):
    bomb = zlib.compress(b"\x00\x00" * 5_000_000)  # 10 MB of zeros for a 1x1 image
    assert read_image(write_bytes(tmp_path, "bomb.png", png_with_stream(bomb, 1, 1))).tolist() == [[0]]


# --- read_image: other formats and bad files ---------------------------------------------
@pytest.mark.parametrize(("fmt", "suffix"), [("BMP", ".bmp"), ("GIF", ".gif"), ("TIFF", ".tif"), ("WEBP", ".webp")])
def test_read_image_reads_other_lossless_formats_through_pillow(tmp_path, rng, pil, fmt, suffix):
    x = rng.integers(0, 256, (6, 9), dtype=np.uint8)
    path = tmp_path / f"o{suffix}"
    pil.fromarray(x).save(path, format=fmt, **({"lossless": True} if fmt == "WEBP" else {}))
    np.testing.assert_array_equal(read_image(path), x)


def test_read_image_reads_colour_jpeg_like_pillow_convert_l(tmp_path, rng, pil):
    path = tmp_path / "c.jpg"
    pil.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(path)
    with pil.open(path) as im:
        np.testing.assert_array_equal(read_image(path), np.array(im.convert("L")))


@pytest.mark.parametrize(("orientation", "turns"), [(6, -1), (8, 1), (3, 2)])
def test_read_image_applies_jpeg_exif_orientation(tmp_path, pil, orientation, turns):
    """Only the top-left quadrant is bright, so every rotation and mirror gives a different array."""
    stored = np.zeros((16, 32), np.uint8)
    stored[:8, :16] = 255
    exif = pil.Exif()
    exif[0x0112] = orientation  # 6: rotate 90 degrees clockwise on display, 8: counter-clockwise, 3: 180
    pil.fromarray(stored).save(tmp_path / "r.jpg", exif=exif, quality=95)
    shown = read_image(tmp_path / "r.jpg")
    expected = np.rot90(stored, turns)
    assert shown.shape == expected.shape
    assert np.abs(shown.astype(int) - expected).max() < 48  # JPEG blurs the edge a little, nothing more


def test_read_image_keeps_the_high_byte_of_16_bit_tiff(tmp_path, pil):
    pil.fromarray(np.array([[0, 300, 65535]], np.uint16)).save(tmp_path / "d.tif")
    np.testing.assert_array_equal(read_image(tmp_path / "d.tif"), [[0, 1, 255]])


def test_read_image_rejects_a_non_image_file_with_pillow_and_names_it(tmp_path, pil):
    path = write_bytes(tmp_path, "notes.txt", b"hello, world")
    with pytest.raises(InvalidImageError, match=r"notes\.txt is not a readable image"):
        read_image(path)


@pytest.mark.parametrize(
    "data, kind", [(b"hello, world", "not in a format read here (PNG, JPEG"), (b"", "an empty file")]
)
def test_a_file_pillow_cannot_identify_is_named_without_an_in_memory_buffer(tmp_path, data, kind):
    path = write_bytes(tmp_path, "notes.png", data)
    with pytest.raises(InvalidImageError) as refused:
        read_image(path)
    assert str(refused.value).startswith(f"{path} is not a readable image: {kind}")
    assert "BytesIO" not in str(refused.value)


def _tiff_with_a_strip_offset_past_any_file(pil) -> bytes:
    """An uncompressed TIFF whose StripOffsets entry is retyped LONG8: its value is then read
    from the white pixels, 0xFFFF...: Pillow's seek to it overflowed (found by fuzzing)."""
    return _edit_tiff_entry(pil, 273, lambda data, entry: struct.pack_into("<H", data, entry + 2, 16))


def _edit_tiff_entry(pil, tag: int, edit) -> bytes:
    out = io.BytesIO()
    pil.fromarray(np.full((28, 28), 255, np.uint8)).save(out, "TIFF")
    data = bytearray(out.getvalue())
    ifd = struct.unpack_from("<I", data, 4)[0]
    for k in range(struct.unpack_from("<H", data, ifd)[0]):
        entry = ifd + 2 + 12 * k
        if struct.unpack_from("<H", data, entry)[0] == tag:
            edit(data, entry)
    return bytes(data)


def test_pillows_warnings_and_log_records_about_a_damaged_file_stay_off_stderr(tmp_path, pil):
    # SamplesPerPixel 2048: Pillow logs "More samples per pixel than can be decoded" (an error
    # record that reached stderr through logging's last resort) before it refuses the file.
    # (Pillow writes no SamplesPerPixel entry for grey: its PlanarConfiguration entry becomes one.)
    data = _edit_tiff_entry(pil, 284, lambda data, entry: struct.pack_into("<HHIH", data, entry, 277, 3, 1, 2048))
    path = write_bytes(tmp_path, "many.tif", data)
    # In a child: pytest's own log capture would hide what reaches a user's terminal.
    code = (
        "from compressor.errors import InvalidImageError\nfrom compressor.io.files import read_image\n"
        f"try:\n    read_image({str(path)!r})\nexcept InvalidImageError as e:\n    print(e)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert "many.tif is not a readable image" in done.stdout and done.stderr == ""


@pytest.mark.parametrize(
    "make",
    [
        lambda pil: _tiff_with_a_strip_offset_past_any_file(pil),
        lambda pil: b"DDS " + bytes(200),  # a DDS header Pillow knows, but no camera format
        lambda pil: b"P5\n28 28\n255\n" + bytes(784),  # a valid PGM: a format not read here
    ],
    ids=["tiff offset overflow", "dds", "pgm"],
)
def test_a_file_pillow_fails_on_or_of_a_format_not_listed_is_one_invalid_image_error(tmp_path, pil, make):
    path = write_bytes(tmp_path, "camera.png", make(pil))
    with pytest.raises(InvalidImageError, match=r"camera\.png is not a readable image"):
        read_image(path)


def test_read_image_rejects_a_truncated_jpeg(tmp_path, rng, pil):
    buf = io.BytesIO()
    pil.fromarray(rng.integers(0, 256, (32, 32), dtype=np.uint8)).save(buf, format="JPEG")
    path = write_bytes(tmp_path, "cut.jpg", buf.getvalue()[:200])
    with pytest.raises(InvalidImageError, match=r"cut\.jpg is not a readable image"):
        read_image(path)


def test_read_image_names_a_missing_file(tmp_path):
    with pytest.raises(InvalidImageError, match=r"cannot read image .*nope\.png: No such file"):
        read_image(tmp_path / "nope.png")


def test_read_image_points_folders_to_read_images(tmp_path):
    with pytest.raises(InvalidImageError, match=r"is a folder, not a image file"):
        read_image(tmp_path)


# --- read_images -------------------------------------------------------------------------
def save_gray(path, value, shape=(4, 5)):
    write_png(path, np.full(shape, value, np.uint8))


def test_read_images_reads_a_folder_sorted_by_name_skipping_other_files(tmp_path):
    folder = tmp_path / "digits"
    folder.mkdir()
    save_gray(folder / "b.png", 2)
    save_gray(folder / "a.PNG", 1)
    save_gray(folder / "10.png", 3)
    save_gray(folder / ".hidden.png", 9)
    (folder / "readme.txt").write_text("not an image")
    (folder / "sub").mkdir()
    save_gray(folder / "sub" / "c.png", 4)
    x, names = read_images([folder])
    assert names == ["10", "a", "b"]
    assert x.dtype == np.uint8 and x.shape == (3, 4, 5)
    assert x[:, 0, 0].tolist() == [3, 1, 2]


def test_read_images_accepts_a_single_path(tmp_path):
    save_gray(tmp_path / "one.png", 5)
    x, names = read_images(tmp_path / "one.png")
    assert x.shape == (1, 4, 5) and names == ["one"]


def test_read_images_says_when_a_folder_has_no_images(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(InvalidImageError, match=rf"no images in {re_path(tmp_path)} \(looked for \.png"):
        read_images([tmp_path])


def re_path(path):
    return str(path).replace("\\", "\\\\").replace(".", r"\.")


def test_read_images_rejects_an_empty_path_list():
    with pytest.raises(InvalidImageError, match="no input paths"):
        read_images([])


def test_read_images_mixes_files_folders_and_arrays_in_order(tmp_path):
    save_gray(tmp_path / "first.png", 1)
    folder = tmp_path / "f"
    folder.mkdir()
    save_gray(folder / "mid.png", 2)
    np.save(tmp_path / "arr.npy", np.full((2, 4, 5), 3, np.uint8))
    x, names = read_images([tmp_path / "first.png", folder, tmp_path / "arr.npy"])
    assert names == ["first", "mid", "arr[0]", "arr[1]"]
    assert x[:, 0, 0].tolist() == [1, 2, 3, 3]


def test_read_images_converts_float_arrays_by_rounding(tmp_path):
    np.save(tmp_path / "p.npy", np.array([[[0.0, 0.5], [1.0, 0.2]]], np.float32)[..., None])
    x, names = read_images([tmp_path / "p.npy"])
    assert x.dtype == np.uint8
    assert x.tolist() == [[[0, 128], [255, 51]]] and names is None  # arrays carry no names


def test_read_images_reads_a_single_2d_array_as_one_image(tmp_path):
    np.save(tmp_path / "one.npy", np.zeros((4, 5), np.uint8))
    x, names = read_images([tmp_path / "one.npy"])
    assert x.shape == (1, 4, 5) and names is None


@pytest.mark.parametrize(
    ("arrays", "value"),
    [({"images": 1, "x": 2, "y": 3}, 1), ({"x": 2, "labels": 3}, 2), ({"whatever": 4}, 4)],
)
def test_read_images_picks_the_images_array_from_npz(tmp_path, arrays, value):
    np.savez(tmp_path / "d.npz", **{k: np.full((1, 4, 5), v, np.uint8) for k, v in arrays.items()})
    x, names = read_images([tmp_path / "d.npz"])
    assert x[0, 0, 0] == value and names is None


def test_read_images_asks_which_npz_array_to_use_when_ambiguous(tmp_path):
    np.savez(tmp_path / "d.npz", a=np.zeros((1, 2, 2), np.uint8), b=np.zeros((1, 2, 2), np.uint8))
    with pytest.raises(InvalidImageError, match=r"d\.npz: cannot tell which array.*\['a', 'b'\].*name it 'images'"):
        read_images([tmp_path / "d.npz"])


def test_read_images_validates_array_contents_and_names_the_file(tmp_path):
    np.save(tmp_path / "labels.npy", np.zeros((3, 4, 4), np.int64))
    with pytest.raises(InvalidImageError, match=r"labels\.npy: dtype int64.*convert to uint8 0\.\.255 or float 0\.\.1"):
        read_images([tmp_path / "labels.npy"])


def test_read_images_reports_nan_in_an_npz_with_file_key_and_position(tmp_path):
    x = np.zeros((2, 3, 3), np.float32)
    x[1, 2, 0] = np.nan
    np.savez(tmp_path / "n.npz", images=x)
    with pytest.raises(InvalidImageError, match=r"n\.npz\['images'\]: found 1 NaN.*image 1, row 2, column 0"):
        read_images([tmp_path / "n.npz"])


def test_read_images_refuses_pickled_arrays(tmp_path):
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(InvalidImageError, match=r"obj\.npy.*(Python objects|cannot read array file)"):
        read_images([tmp_path / "obj.npy"])


def test_read_images_rejects_a_damaged_array_file(tmp_path):
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04 definitely not a zip")
    with pytest.raises(InvalidImageError, match=r"cannot read array file .*bad\.npz"):
        read_images([tmp_path / "bad.npz"])


def test_read_images_lists_the_first_two_differing_sizes_and_files(tmp_path):
    save_gray(tmp_path / "a.png", 0, (4, 5))
    save_gray(tmp_path / "b.png", 0, (4, 5))
    save_gray(tmp_path / "c.png", 0, (6, 5))
    with pytest.raises(InvalidImageError, match=r"same size: .*a\.png is 4x5 but .*c\.png is 6x5 \(height x width\)"):
        read_images([tmp_path])


def test_read_images_names_a_missing_path(tmp_path):
    with pytest.raises(InvalidImageError, match=r"ghost\.png"):
        read_images([tmp_path / "ghost.png"])


def test_read_images_refuses_two_files_that_would_get_the_same_name(tmp_path):
    for folder in ("x", "y"):
        (tmp_path / folder).mkdir()
    save_gray(tmp_path / "x" / "a.png", 1)
    save_gray(tmp_path / "y" / "A.png", 2)
    with pytest.raises(InvalidImageError, match=r"same name .*a\.png and .*A\.png.*--no-names"):
        read_images([tmp_path / "x", tmp_path / "y"])


def test_read_images_refuses_two_names_that_are_one_file_name_on_macos_composed_or_not(tmp_path):
    for folder in ("x", "y"):
        (tmp_path / folder).mkdir()
    save_gray(tmp_path / "x" / "caf\u00e9.png", 1)  # é as one code point
    save_gray(tmp_path / "y" / "CAFE\u0301.png", 2)  # E + combining acute, upper case
    with pytest.raises(InvalidImageError, match=r"same name .*--no-names"):
        read_images([tmp_path / "x", tmp_path / "y"])


def test_unique_names_numbers_repeats_that_differ_only_in_case_or_composition():
    from compressor.names import unique_names

    assert unique_names(["caf\u00e9", "CAFE\u0301", "cafe"]) == ["caf\u00e9", "CAFE\u0301-1", "cafe"]


def test_read_image_refuses_a_file_declaring_more_pixels_than_the_budget_before_decoding(tmp_path):
    data = b"\x89PNG\r\n\x1a\n" + ihdr(5000, 5000, 8, 0) + chunk(b"IEND", b"")
    path = write_bytes(tmp_path, "big.png", data)
    with pytest.raises(InvalidImageError, match=r"big\.png: image is 5000x5000 pixels.*--max-pixels"):
        read_image(path, max_pixels=1 << 20)


def test_read_images_refuses_an_npy_header_declaring_too_many_images_before_reading_it(tmp_path):
    path = tmp_path / "huge.npy"
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "|u1", "fortran_order": False, "shape": (10**9, 28, 28)})
    with pytest.raises(InvalidImageError, match=r"huge\.npy declares 1000000000 images; the limit is .*--max-images"):
        read_images([path])


def test_read_image_refuses_devices_and_pipes_instead_of_reading_forever():
    with pytest.raises(InvalidImageError, match=r"/dev/zero is not a regular file"):
        read_image("/dev/zero")


# --- dependencies ------------------------------------------------------------------------
def test_importing_the_image_modules_pulls_in_neither_pillow_nor_tensorflow():
    code = "import sys, compressor.io.files; assert not {'PIL', 'tensorflow'} & set(sys.modules), sorted(sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])


@pytest.mark.parametrize("fmt, suffix", [("GIF", "gif"), ("TIFF", "tif"), ("WEBP", "webp")])
def test_an_image_file_of_several_frames_is_refused_instead_of_coding_its_first(tmp_path, pil, fmt, suffix):
    frames = [pil.fromarray(np.full((28, 28), v, np.uint8)) for v in (0, 255)]
    buf = io.BytesIO()
    frames[0].save(buf, format=fmt, save_all=True, append_images=frames[1:])
    path = write_bytes(tmp_path, f"moving.{suffix}", buf.getvalue())
    with pytest.raises(InvalidImageError, match=r"moving\.\w+ holds 2 frames.*save the frame to code"):
        read_image(path)
    one = io.BytesIO()
    frames[1].save(one, format=fmt)
    assert read_image(write_bytes(tmp_path, f"still.{suffix}", one.getvalue())).max() == 255


def test_a_folder_of_more_image_files_than_the_budget_is_refused_while_listing_before_any_is_read(tmp_path):
    for i in range(50):  # empty files: reading any one of them would fail with another message
        (tmp_path / f"{i:03d}.png").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("not an image")
    first = tmp_path / "first"
    first.mkdir()
    write_png(first / "one.png", np.zeros((28, 28), np.uint8))
    with pytest.raises(InvalidImageError, match=r"more than 7 input images \(raise the limit with --max-images\)"):
        read_images([first / "one.png", tmp_path], max_images=7)


def test_a_camera_jpeg_with_an_embedded_preview_is_read_as_its_primary_image(tmp_path, pil):
    # An MPO file (a JPEG followed by more JPEGs: previews, gain maps) opens with two frames.
    frames = [pil.fromarray(np.full((28, 28), v, np.uint8)) for v in (200, 30)]
    buf = io.BytesIO()
    frames[0].save(buf, format="MPO", save_all=True, append_images=frames[1:])
    image = read_image(write_bytes(tmp_path, "camera.jpg", buf.getvalue()))
    assert abs(int(image.mean()) - 200) <= 2


def test_a_tiff_whose_damage_makes_pillow_raise_a_type_error_is_one_invalid_image_error(tmp_path, pil):
    buf = io.BytesIO()
    pil.fromarray((np.arange(784).reshape(28, 28) % 256).astype(np.uint8)).save(buf, format="TIFF")
    data = bytearray(buf.getvalue())
    data[120], data[125] = 22, 15  # two bytes of the directory, found by fuzzing: "Missing dimensions"
    with pytest.raises(InvalidImageError, match=r"damaged\.tif is not a readable image"):
        read_image(write_bytes(tmp_path, "damaged.tif", bytes(data)))
