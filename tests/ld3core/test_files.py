"""``ld3core.files``: a file's SHA-256, and a write nobody sees half done."""

from __future__ import annotations

import hashlib
import os
import stat

import pytest

from ld3core.files import atomic_write, file_sha256


def test_file_sha256_is_sha256sum_of_the_bytes_across_chunks(tmp_path):
    data = os.urandom((1 << 20) + 123)  # more than one 1 MiB chunk
    (tmp_path / "w.bin").write_bytes(data)
    assert file_sha256(tmp_path / "w.bin") == hashlib.sha256(data).hexdigest()
    (tmp_path / "empty").write_bytes(b"")
    assert file_sha256(str(tmp_path / "empty")) == hashlib.sha256(b"").hexdigest()


def test_atomic_write_replaces_the_file_readable_by_all_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "cache" / "deep" / "stats.bin"  # parents created
    seen_during_write = []

    def write(tmp: str) -> None:
        seen_during_write.append(target.exists())
        with open(tmp, "wb") as f:
            f.write(b"new")

    assert atomic_write(target, write) == target
    assert target.read_bytes() == b"new" and seen_during_write == [False]
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert os.listdir(target.parent) == ["stats.bin"]


def test_a_failed_write_keeps_the_old_file_and_removes_the_temporary(tmp_path):
    target = tmp_path / "stats.bin"
    target.write_bytes(b"old")

    def half(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(b"ne")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, half)
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["stats.bin"]
