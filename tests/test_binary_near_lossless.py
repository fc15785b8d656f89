"""Binary near-lossless codes (layout 2): the encoder's search over wrong pixels is exact in
ideal bits, every image it settles on is coded exactly, and a call's error budget is kept."""

from __future__ import annotations

import numpy as np
import pytest

from compressor import binary_rd
from compressor.coding import binary_context2 as B2
from compressor.coding import binary_flips
from compressor.errors import RateError
from tests.support import synthetic_binary, synthetic_binary2_tables

STEPS = 4


_synthetic = synthetic_binary


@pytest.fixture(scope="module")
def tables():
    return synthetic_binary2_tables(STEPS)


def _ideal_bits(costs, recon, levels) -> np.ndarray:
    background, ink = costs
    ctx = B2.contexts(recon.astype(np.int64), levels)
    return np.where(recon, ink[ctx], background[ctx]).reshape(len(recon), -1).sum(axis=1)


@pytest.mark.parametrize("band", [127, 30])
def test_a_flips_delta_is_the_exact_change_in_the_whole_images_ideal_bits(tables, band):
    table, _ = tables
    levels, bits = _synthetic(2, n=6)
    costs = binary_flips.band_costs(table, band)
    recon = binary_flips.band_start(table, bits, levels, band)
    delta, total = binary_flips.flip_deltas(costs, recon, levels)
    assert np.allclose(total, _ideal_bits(costs, recon, levels))
    for r in range(levels.shape[1]):
        for c in range(levels.shape[2]):
            flipped = recon.copy()
            flipped[:, r, c] ^= True
            after = _ideal_bits(costs, flipped, levels)
            finite = np.isfinite(after)
            assert np.allclose(delta[finite, r, c], (after - total)[finite])
            assert np.isinf(delta[~finite, r, c]).all()


@pytest.mark.parametrize("band", [0, 20, 60, 127])
def test_the_band_start_is_the_image_a_band_code_of_the_truth_decodes_to(tables, band):
    table, latents = tables
    levels, bits = _synthetic(3, n=8)
    start = binary_flips.band_start(table, bits, levels, band)
    for b, v, s in zip(bits, levels, start):
        payload, recon = B2.encode_one(0, 0, STEPS, [0, 0, 0], b, v, latents[0], table, band)
        assert np.array_equal(recon.astype(bool), s)


def test_every_point_of_a_flip_path_decodes_exactly_with_the_wrong_pixels_it_counts(tables):
    table, latents = tables
    levels, bits = _synthetic(4, n=5)
    path = binary_flips.flip_path(table, bits, levels, 127, 6)
    assert (path.errors[:, 0] == 0).all()
    for i, (b, v) in enumerate(zip(bits, levels)):
        sizes = []
        for k in np.flatnonzero(np.isfinite(path.bits[i])):
            image = path.recon(i, k)
            payload, recon = B2.encode_one(1, 1, STEPS, [1, 0, 0], image, v, latents[1], table, 127)
            _, band, _, dec, check = B2.start_decoding(payload, 1, latents)
            out = B2.finish_decoding(dec, check, v, table, band)
            assert np.array_equal(out.astype(bool), image)
            assert int((out.astype(bool) != b).sum()) == path.errors[i, k]
            sizes.append(path.bits[i, k])
        assert sizes == sorted(sizes, reverse=True)  # each flip saves bits


def _options(seed: int, n: int = 30):
    """Per image: (cost, errors) options falling with more errors, a 0-error one first."""
    rs = np.random.RandomState(seed)
    costs, errors = [], []
    for _ in range(n):
        e = np.concatenate([[0], np.cumsum(rs.randint(1, 4, size=8))])
        c = 100 - np.cumsum(np.concatenate([[0], rs.rand(8) * 10]))
        costs.append(c)
        errors.append(e)
    return costs, errors


@pytest.mark.parametrize("budget", [0, 7, 40, 120, 10_000])
def test_a_shared_budget_is_never_exceeded_and_no_single_move_that_fits_would_save_more(budget):
    costs, errors = _options(5)
    pick = binary_rd.allocate(costs, errors, budget)
    used = sum(e[k] for e, k in zip(errors, pick))
    assert used <= budget
    if budget == 0:
        assert all(k == 0 for k in pick)
    left = budget - used
    for c, e, k in zip(costs, errors, pick):
        assert not ((e - e[k] <= left) & (e - e[k] > 0) & (c < c[k])).any() or left < 1


def test_a_bigger_shared_budget_never_costs_more():
    costs, errors = _options(6)
    totals = [sum(c[k] for c, k in zip(costs, binary_rd.allocate(costs, errors, b))) for b in range(0, 200, 5)]
    assert totals == sorted(totals, reverse=True)


def test_without_a_shared_budget_each_image_keeps_its_cheapest_option():
    costs, errors = _options(7)
    assert binary_rd.allocate(costs, errors, None) == [int(np.argmin(c)) for c in costs]


@pytest.mark.slow
def test_a_mean_error_keeps_every_decoded_wrong_pixel_of_the_batch_within_the_budget(enc, dec):
    from tests.support import mnist5k_test

    # 8 digits: the budget is shared by the batch at any count (31 wrong pixels at 0.5 %), and each
    # search costs seconds whatever the count; the stream path runs the same search, so once is enough.
    bits = mnist5k_test(8) > 0.5
    x = bits.astype(np.float32)
    sizes = []
    for f in (0.0, 0.005, 0.01, 0.02):
        messages = enc.compress(x, mean_error=f)
        out = dec.decompress(messages) > 127
        assert (out != bits).sum() <= f * bits.size
        if f == 0:
            assert np.array_equal(out, bits)
        if f == 0.01:
            stream = dec.decompress(enc.compress_stream(x, mean_error=f)) > 127
            assert (stream != bits).sum() <= f * bits.size
        sizes.append(sum(len(m) for m in messages))
    assert sizes == sorted(sizes, reverse=True)  # the curve falls as the budget grows
    capped = dec.decompress(enc.compress(x, mean_error=0.01, target_error=0.012)) > 127
    wrong = (capped != bits).reshape(len(bits), -1).sum(axis=1)
    assert wrong.sum() <= 0.01 * bits.size and (wrong <= int(0.012 * 784)).all()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"mean_error": 0.01, "band": 3}, "mean_error"),
        ({"mean_error": 0.01, "max_error": 0}, "mean_error"),
        ({"mean_error": 1.5}, "mean_error must be a fraction"),
        ({"mean_error": True}, "mean_error must be a fraction"),
        ({"mean_error": "0.01"}, "mean_error must be a fraction"),
        ({"mean_error": 0.01, "target_psnr": 30}, "grayscale"),
    ],
)
def test_a_mean_error_with_a_knob_it_cannot_go_with_is_one_clear_error(enc, kw, match):
    with pytest.raises(RateError, match=match):
        enc.compress(np.zeros((2, 28, 28), np.float32), **kw)
