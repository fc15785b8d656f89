"""open_regular: the one place that refuses FIFOs, devices and folders before a read, and the
wording each of its callers (image/array files, JSON documents, key files) gives the refusal."""

from __future__ import annotations

import os

import pytest

from compressor.errors import InvalidImageError, ManifestError, TransportError
from compressor.io import jsonfile
from compressor.io.arrays import open_regular_file
from compressor.io.regular import NotRegularFile, open_regular
from compressor.transport import auth


def test_a_regular_file_is_opened_with_its_size(tmp_path):
    (tmp_path / "f").write_bytes(b"a\r\nb")
    f, st = open_regular(tmp_path / "f")
    with f:
        assert f.read() == b"a\r\nb"
    assert st.st_size == 4


def test_a_fifo_is_refused_at_once_without_waiting_for_a_writer(tmp_path):
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(NotRegularFile) as refused:
        open_regular(tmp_path / "pipe")
    assert not refused.value.is_dir


def test_a_folder_and_a_device_are_refused_and_told_apart(tmp_path):
    with pytest.raises(NotRegularFile) as folder:
        open_regular(tmp_path)
    assert folder.value.is_dir
    with pytest.raises(NotRegularFile) as device:
        open_regular("/dev/zero")
    assert not device.value.is_dir


def test_a_refusal_is_not_an_os_error_so_callers_do_not_word_it_as_unreadable():
    assert not issubclass(NotRegularFile, OSError)


def test_a_missing_file_is_still_an_os_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        open_regular(tmp_path / "missing")


def test_each_caller_words_a_fifo_in_its_own_error_class(tmp_path):
    os.mkfifo(tmp_path / "pipe")
    pipe = str(tmp_path / "pipe")
    with pytest.raises(InvalidImageError, match=f"^{pipe} is not a regular file \\(a device or pipe\\?\\); save"):
        open_regular_file(pipe, "NumPy array file")
    with pytest.raises(ManifestError, match=f"^{pipe} is not a regular file; the bundle manifest must be a plain"):
        jsonfile.read_limited(pipe, max_bytes=100, error=ManifestError, what="bundle manifest")
    with pytest.raises(TransportError, match=f"^key file {pipe} must be a regular file of at most 4096 bytes$"):
        auth.read_key(pipe)


def test_a_folder_given_as_an_array_file_is_named_a_folder(tmp_path):
    with pytest.raises(InvalidImageError, match="is a folder, not a NumPy array file$"):
        open_regular_file(tmp_path, "NumPy array file")
