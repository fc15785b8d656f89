"""Encoder.compress and compress_stream hold a budget on images per call, as Decoder.read does
on messages: counted from the input's shape, before anything is converted or coded."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from compressor.errors import InvalidImageError, LimitError
from compressor.io.arrays import image_count

REFUSAL = r"more than {} images in one call \(raise it with max_images=, or compress in parts\)"


@pytest.mark.parametrize(
    ("images", "count"),
    [
        (np.zeros((5, 28, 28), np.uint8), 5),
        (np.zeros((5, 28, 28, 1), np.float32), 5),
        (np.zeros((28, 28), np.uint8), 1),
        (np.broadcast_to(np.zeros((28, 28), np.uint8), (2_000_000, 28, 28)), 2_000_000),
        ([np.zeros((28, 28), np.uint8)] * 4, 4),
        ([[0.0] * 28] * 28, 1),  # one image as nested lists: its rows are not images
        ([[[0.0] * 28] * 28] * 3, 3),
        ([], 0),
    ],
    ids=["batch", "channel", "one image", "zero-stride view", "list of arrays", "rows", "nested", "empty"],
)
def test_images_are_counted_from_their_shape_as_the_batch_check_reads_them(images, count):
    assert image_count(images) == count


def test_what_only_conversion_can_count_is_left_to_it():
    assert image_count(x for x in range(3)) is None
    assert image_count(7) is None


@pytest.mark.parametrize("call", ["compress", "compress_stream"])
def test_a_zero_stride_view_of_two_million_images_is_refused_before_any_is_converted(enc, call):
    view = np.broadcast_to(np.zeros((28, 28), np.uint8), (2_000_000, 28, 28))
    tracemalloc.start()
    try:
        with pytest.raises(LimitError, match=REFUSAL.format(1 << 20)):
            getattr(enc, call)(view)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20  # the view's 1.5 GB (as uint8; 6 GB as float32) never materialized


@pytest.mark.parametrize("call", ["compress", "compress_stream"])
def test_max_images_refuses_one_image_more_and_takes_exactly_as_many(enc, call):
    images = (np.random.default_rng(0).random((4, 28, 28)) > 0.5).astype(np.uint8) * 255
    with pytest.raises(LimitError, match=REFUSAL.format(3)):
        getattr(enc, call)(images, max_images=3)
    with pytest.raises(LimitError, match=REFUSAL.format(3)):
        getattr(enc, call)(list(images), max_images=3)
    assert getattr(enc, call)(images[:3], max_images=3) == getattr(enc, call)(images[:3])


def test_one_image_under_a_budget_of_one_takes_the_shortcut_and_a_budget_of_none_refuses_it(enc):
    one = np.zeros((1, 28, 28), np.uint8)
    assert enc.compress(one, max_images=1) == enc.compress(one)
    with pytest.raises(LimitError, match=REFUSAL.format(0)):
        enc.compress(one, max_images=0)


def test_a_list_that_is_one_image_is_counted_as_one(enc):
    rows = np.zeros((28, 28), np.uint8).tolist()
    with pytest.raises(InvalidImageError):  # a list of ints is not uint8: refused by the batch check
        enc.compress(rows, max_images=1)
    assert enc.compress((np.zeros((28, 28)) / 1.0).tolist(), max_images=1) == enc.compress(np.zeros((1, 28, 28)))
