"""Atomic writes (kedit_vc.fsio): the target holds the old content or the new, never a mix,
and a failed write leaves no temporary file behind."""

from __future__ import annotations

import os

import pytest

from kedit_vc.fsio import TMP_SUFFIX, atomic_path, atomic_write_bytes, atomic_write_text, publish_dir, remove_stray_tmp


def test_write_replaces_and_keeps_the_mode(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    os.chmod(target, 0o640)
    atomic_write_text(target, "new\n")
    assert target.read_text() == "new\n" and (target.stat().st_mode & 0o777) == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_a_failed_writer_leaves_the_old_file_and_no_stray(tmp_path):
    target = tmp_path / "cache.safetensors"
    atomic_write_bytes(target, b"old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("killed mid-write")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache.safetensors"]


def test_strays_collect_in_the_tmp_dir_and_are_swept(tmp_path):
    tmp_dir = tmp_path / "tmp"
    tmp_dir.mkdir()
    (tmp_dir / f".ref.123{TMP_SUFFIX}").write_bytes(b"x")
    atomic_write_bytes(tmp_path / "ref", b"sha\n", tmp_dir)
    assert (tmp_path / "ref").read_bytes() == b"sha\n"
    assert [p.name for p in remove_stray_tmp(tmp_dir)] == [f".ref.123{TMP_SUFFIX}"]
    assert list(tmp_dir.iterdir()) == []


def test_publish_dir_moves_a_whole_folder(tmp_path):
    staging = tmp_path / ".staging"
    staging.mkdir()
    (staging / "a").write_text("1")
    publish_dir(staging, tmp_path / "final")
    assert (tmp_path / "final" / "a").read_text() == "1" and not staging.exists()
