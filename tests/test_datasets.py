"""Loading the embedded MNIST digits and user images."""

import dataclasses

import numpy as np
import pytest

from compressor.io.files import write_png
from export import datasets
from export.datasets import DatasetError


@pytest.fixture(scope="module")
def mnist5k():
    return datasets.load("mnist5k")


def test_mnist5k_splits_4500_train_and_500_test_float32_images(mnist5k):
    assert mnist5k.train.shape == (4500, 28, 28, 1)
    assert mnist5k.test.shape == (500, 28, 28, 1)
    assert mnist5k.train.dtype == mnist5k.test.dtype == np.float32


def test_mnist5k_is_binarized_at_one_half_by_default(mnist5k):
    assert set(np.unique(mnist5k.train)) == {0.0, 1.0}
    raw, _ = datasets.mnist5k_raw()
    train_idx, _ = datasets.split_indices(5000, 500)
    np.testing.assert_array_equal(mnist5k.train[..., 0], (raw[train_idx] / 255.0 > 0.5).astype(np.float32))


def test_grayscale_switch_keeps_intermediate_values():
    gray = datasets.load("mnist5k", binarize=False)
    values = np.unique(gray.train)
    assert len(values) > 100 and values.min() == 0.0 and values.max() == 1.0


def test_split_is_deterministic_and_has_no_overlap():
    a_train, a_test = datasets.split_indices(5000, 500)
    b_train, b_test = datasets.split_indices(5000, 500)
    np.testing.assert_array_equal(a_test, b_test)
    assert not set(a_train) & set(a_test)
    assert len(set(a_train) | set(a_test)) == 5000
    # pinned: a change of generator would silently change every reported figure
    assert a_test[:5].tolist() == [398, 3833, 4836, 4572, 636]


def test_label_sorted_source_is_really_shuffled():
    _, labels = datasets.mnist5k_raw()
    assert (np.diff(labels) >= 0).all(), "the source is sorted by label"
    _, test_idx = datasets.split_indices(5000, 500)
    test_labels = labels[test_idx]
    counts = np.bincount(test_labels, minlength=10)
    assert counts.min() >= 30, counts  # every digit is present in the test split
    assert not (np.diff(test_labels) >= 0).all()


def test_the_fingerprint_of_mnist5k_is_pinned_and_tells_binarized_from_grey(mnist5k):
    # pinned: a change in the embedded digits, the split or the binarization changes every reported figure
    assert mnist5k.fingerprint() == "c2a0bf3e737e7ba4"
    assert datasets.load("mnist5k", binarize=False).fingerprint() == "ff79204537fd1468"


def test_the_fingerprint_changes_when_one_pixel_changes(mnist5k):
    changed = dataclasses.replace(mnist5k, test=mnist5k.test.copy())
    changed.test[499, 27, 27, 0] = 1.0 - changed.test[499, 27, 27, 0]
    assert changed.fingerprint() != mnist5k.fingerprint()


def _folder(tmp_path, n=5, shape=(8, 12)):
    rng = np.random.default_rng(0)
    for i in range(n):
        write_png(tmp_path / f"img{i}.png", rng.integers(0, 256, shape, dtype=np.uint8))
    return tmp_path


def test_a_folder_of_pngs_loads_with_a_deterministic_split(tmp_path):
    ds = datasets.load(str(_folder(tmp_path, n=20)))
    assert ds.train.shape == (18, 8, 12, 1) and ds.test.shape == (2, 8, 12, 1)
    np.testing.assert_array_equal(ds.test, datasets.load(str(tmp_path)).test)


def test_an_npz_array_loads(tmp_path):
    x = np.random.default_rng(1).random((10, 12, 12)).astype(np.float32)
    np.savez(tmp_path / "data.npz", images=x)
    ds = datasets.load(str(tmp_path / "data.npz"), binarize=False)
    assert ds.train.shape == (9, 12, 12, 1)


def test_an_empty_folder_is_refused_by_name(tmp_path):
    with pytest.raises(DatasetError, match="no images"):
        datasets.load(str(tmp_path))


def test_an_unreadable_image_file_is_refused_by_name(tmp_path):
    _folder(tmp_path)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(DatasetError, match="broken.png"):
        datasets.load(str(tmp_path))


def test_mixed_image_sizes_are_refused(tmp_path):
    _folder(tmp_path, n=2, shape=(8, 8))
    write_png(tmp_path / "z_other.png", np.zeros((12, 8), np.uint8))
    with pytest.raises(DatasetError, match="size"):
        datasets.load(str(tmp_path))


def test_values_out_of_range_are_refused(tmp_path):
    np.save(tmp_path / "x.npy", np.full((4, 8, 8), 2.0, np.float32))
    with pytest.raises(DatasetError, match="range|\\[0, 1\\]"):
        datasets.load(str(tmp_path / "x.npy"))


def test_nan_values_are_refused(tmp_path):
    x = np.zeros((4, 8, 8), np.float32)
    x[2, 3, 4] = np.nan
    np.save(tmp_path / "x.npy", x)
    with pytest.raises(DatasetError, match="NaN"):
        datasets.load(str(tmp_path / "x.npy"))


def test_sizes_not_divisible_by_four_are_refused(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((4, 10, 8), np.uint8))
    with pytest.raises(DatasetError, match="divisible by 4"):
        datasets.load(str(tmp_path / "x.npy"))


def test_an_unknown_name_says_what_exists(tmp_path):
    with pytest.raises(DatasetError, match="mnist5k"):
        datasets.load(str(tmp_path / "nope"))


def test_full_mnist_offline_names_the_embedded_alternative(monkeypatch):
    import keras

    def offline():
        raise OSError("network is unreachable")

    monkeypatch.setattr(keras.datasets.mnist, "load_data", offline)
    with pytest.raises(DatasetError, match="mnist5k"):
        datasets.load("mnist")
