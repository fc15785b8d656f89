"""Behaviour of compressor.io.atomic: a target holds the old content or the new, never a mix."""

import json
import os
import stat
import sys

import pytest

from compressor.errors import OutputError
from compressor.io import atomic
from compressor.io.atomic import atomic_write_bytes, atomic_write_json, atomic_write_text


def only_file(folder):
    """The folder's entries; used to prove no temporary file was left behind."""
    return sorted(p.name for p in folder.iterdir())


def write_staged(folder, files, *, overwrite):
    """Each ``(name, data)`` through one :func:`atomic.staged_files` block."""
    with atomic.staged_files(folder, overwrite=overwrite) as add:
        for name, data in files:
            add(name, data)


def test_atomic_write_bytes_creates_a_new_file(tmp_path):
    atomic_write_bytes(tmp_path / "a.bin", b"\x00\x01\xff")
    assert (tmp_path / "a.bin").read_bytes() == b"\x00\x01\xff"
    assert only_file(tmp_path) == ["a.bin"]


def test_atomic_write_bytes_replaces_an_existing_file(tmp_path):
    target = tmp_path / "a.bin"
    target.write_bytes(b"old content that is longer")
    atomic_write_bytes(str(target), bytearray(b"new"))
    assert target.read_bytes() == b"new"
    assert only_file(tmp_path) == ["a.bin"]


def test_atomic_write_bytes_accepts_memoryview(tmp_path):
    atomic_write_bytes(tmp_path / "m.bin", memoryview(b"abc"))
    assert (tmp_path / "m.bin").read_bytes() == b"abc"


def test_atomic_write_bytes_keeps_the_old_file_when_the_rename_fails(tmp_path, monkeypatch):
    target = tmp_path / "a.bin"
    target.write_bytes(b"old")

    def failing_replace(src, dst):
        raise OSError("simulated rename failure")

    monkeypatch.setattr(atomic.os, "replace", failing_replace)
    with pytest.raises(OSError, match="simulated rename failure"):
        atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"old"
    assert only_file(tmp_path) == ["a.bin"]


def test_atomic_write_bytes_cleans_up_when_interrupted_while_syncing(tmp_path, monkeypatch):
    target = tmp_path / "a.bin"
    target.write_bytes(b"old")

    def interrupted_fsync(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(atomic.os, "fsync", interrupted_fsync)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"old"
    assert only_file(tmp_path) == ["a.bin"]


@pytest.mark.parametrize("data", ["text", 123, None, [1, 2]])
def test_atomic_write_bytes_refuses_non_bytes_before_touching_the_disk(tmp_path, data):
    target = tmp_path / "a.bin"
    target.write_bytes(b"old")
    with pytest.raises(TypeError, match="needs bytes"):
        atomic_write_bytes(target, data)
    assert target.read_bytes() == b"old"
    assert only_file(tmp_path) == ["a.bin"]


def test_atomic_write_bytes_does_not_create_missing_folders(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"folder .*missing does not exist"):
        atomic_write_bytes(tmp_path / "missing" / "a.bin", b"x")
    assert only_file(tmp_path) == []


def test_atomic_write_bytes_onto_a_folder_fails_without_leaving_a_temp_file(tmp_path):
    (tmp_path / "d").mkdir()
    with pytest.raises(OSError):
        atomic_write_bytes(tmp_path / "d", b"x")
    assert only_file(tmp_path) == ["d"]


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permission bits")
@pytest.mark.parametrize(
    "write",
    [
        lambda folder, name: atomic_write_bytes(folder / name, b"new"),
        lambda folder, name: write_staged(folder, [("a.png", b"a"), (name, b"new")], overwrite=True),
    ],
    ids=["one file", "many files"],
)
def test_writing_onto_a_fifo_or_device_is_refused_and_leaves_it_in_place(tmp_path, write):
    # A FIFO stands in for /dev/null: os.replace would swap either for a regular file.
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(OutputError, match="pipe is a device, pipe or socket, not a file"):
        write(tmp_path, "pipe")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe"]  # nothing written, no temporary file
    assert stat.S_ISFIFO(os.lstat(tmp_path / "pipe").st_mode)


def test_a_folder_in_the_way_of_a_later_file_stops_the_batch_before_the_first_is_written(tmp_path):
    (tmp_path / "b.png").mkdir()
    with pytest.raises(IsADirectoryError, match="a folder is in the way of an output file") as refused:
        write_staged(tmp_path, [("a.png", b"a"), ("b.png", b"b")], overwrite=True)
    assert refused.value.filename == str(tmp_path / "b.png")  # not a temporary file's name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.png"]


def test_staged_files_appear_only_when_the_block_ends(tmp_path):
    with atomic.staged_files(tmp_path) as add:
        add("a.png", b"a")
        add("b.png", b"b")
        assert not (tmp_path / "a.png").exists() and not (tmp_path / "b.png").exists()
    assert (tmp_path / "a.png").read_bytes() == b"a" and only_file(tmp_path) == ["a.png", "b.png"]


def test_an_error_in_the_block_publishes_no_staged_file_and_leaves_no_temporary_file(tmp_path):
    (tmp_path / "a.png").write_bytes(b"old")
    with pytest.raises(RuntimeError, match="last image failed"):
        with atomic.staged_files(tmp_path, overwrite=True) as add:
            add("a.png", b"new")
            add("b.png", b"b")
            raise RuntimeError("last image failed")
    assert only_file(tmp_path) == ["a.png"] and (tmp_path / "a.png").read_bytes() == b"old"


def test_staged_files_replace_an_existing_file_only_with_overwrite(tmp_path):
    (tmp_path / "a.png").write_bytes(b"old")
    write_staged(tmp_path, [("a.png", b"new")], overwrite=True)
    assert (tmp_path / "a.png").read_bytes() == b"new"
    with pytest.raises(FileExistsError):
        write_staged(tmp_path, [("a.png", b"newer")], overwrite=False)
    assert (tmp_path / "a.png").read_bytes() == b"new" and only_file(tmp_path) == ["a.png"]


def test_writing_a_batch_stops_at_an_existing_name_and_leaves_no_temporary_file(tmp_path):
    # Publishing is in order: the files before the existing name are in place, it and the rest not.
    (tmp_path / "b.png").write_bytes(b"precious")
    with pytest.raises(FileExistsError):
        write_staged(tmp_path, [("a.png", b"1"), ("b.png", b"2"), ("c.png", b"3")], overwrite=False)
    assert only_file(tmp_path) == ["a.png", "b.png"]
    assert (tmp_path / "b.png").read_bytes() == b"precious"


def test_staging_into_a_missing_folder_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="the folder does not exist"):
        write_staged(tmp_path / "missing", [("a.png", b"a")], overwrite=True)
    assert only_file(tmp_path) == []


def test_atomic_write_bytes_gives_new_files_the_usual_umask_permissions(tmp_path):
    umask = os.umask(0o022)
    try:
        atomic_write_bytes(tmp_path / "p.bin", b"x")
    finally:
        os.umask(umask)
    assert (tmp_path / "p.bin").stat().st_mode & 0o777 == 0o644


def test_atomic_write_text_writes_utf8_without_newline_translation(tmp_path):
    atomic_write_text(tmp_path / "t.txt", "zażółć\r\nline\n")
    assert (tmp_path / "t.txt").read_bytes() == "zażółć\r\nline\n".encode()


def test_atomic_write_text_refuses_bytes(tmp_path):
    with pytest.raises(TypeError, match="needs str"):
        atomic_write_text(tmp_path / "t.txt", b"bytes")
    assert only_file(tmp_path) == []


def test_atomic_write_json_sorts_keys_indents_and_ends_with_a_newline(tmp_path):
    atomic_write_json(tmp_path / "m.json", {"b": 1, "a": {"d": [1, 2], "c": "é"}})
    text = (tmp_path / "m.json").read_text(encoding="utf-8")
    assert text == '{\n  "a": {\n    "c": "é",\n    "d": [\n      1,\n      2\n    ]\n  },\n  "b": 1\n}\n'
    assert json.loads(text) == {"b": 1, "a": {"d": [1, 2], "c": "é"}}


@pytest.mark.parametrize(("obj", "error"), [({"x": float("nan")}, ValueError), ({"x": object()}, TypeError)])
def test_atomic_write_json_refuses_unserialisable_data_and_keeps_the_old_file(tmp_path, obj, error):
    target = tmp_path / "m.json"
    target.write_text("{}\n")
    with pytest.raises(error):
        atomic_write_json(target, obj)
    assert target.read_text() == "{}\n"
    assert only_file(tmp_path) == ["m.json"]
