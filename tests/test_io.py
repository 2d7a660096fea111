"""Atomic writers: whole files or none, group-readable, and a clear error naming the file."""

from __future__ import annotations

import os
import stat

import pytest

from hico.io import WriteError, atomic_torch_save, atomic_write_json, atomic_write_text


def test_files_get_umask_permissions_not_mkstemp_private(tmp_path):
    old = os.umask(0o022)
    try:
        path = atomic_write_text(tmp_path / "a" / "x.txt", "hello")
        saved = atomic_torch_save({"w": 1}, tmp_path / "m.pt")
    finally:
        os.umask(old)
    assert path.read_text() == "hello"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert stat.S_IMODE(saved.stat().st_mode) == 0o644


def test_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "t.json"
    atomic_write_json(target, {"v": 1})
    with pytest.raises(TypeError):
        atomic_write_json(target, {"v": object()})
    assert target.read_text().strip().endswith("}") and '"v": 1' in target.read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["t.json"]


def test_unwritable_folder_names_the_file(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        if os.access(folder, os.W_OK):
            pytest.skip("running as a user that ignores permissions (root)")
        with pytest.raises(WriteError, match=r"could not write .*ro/x.txt"):
            atomic_write_text(folder / "x.txt", "x")
    finally:
        folder.chmod(0o700)


def test_disk_full_is_a_write_error_naming_the_file(tmp_path):
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    from hico import io

    def fill(tmp: str) -> None:
        with open("/dev/full", "w") as fh:
            fh.write("x" * 10_000)
            fh.flush()

    with pytest.raises(WriteError, match=r"could not write .*y.txt: No space left"):
        io.atomic_write(tmp_path / "y.txt", fill)
    assert not (tmp_path / "y.txt").exists()
