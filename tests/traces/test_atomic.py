"""Atomic writes: the content arrives whole, the mode is an ordinary file's, no temporary file is left, and a
failed write keeps the old file."""

from __future__ import annotations

import os

import pytest

from traces.atomic import write_bytes_atomic, write_text_atomic


def test_text_and_bytes_round_trip_without_leftovers(tmp_path):
    text = "a,b\r\nä,1\n"  # newlines kept as given, UTF-8
    path = write_text_atomic(tmp_path / "sub" / "t.csv", text)
    assert path.read_bytes() == text.encode("utf-8")
    png = bytes(range(256))
    assert write_bytes_atomic(tmp_path / "sub" / "p.png", png).read_bytes() == png
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["p.png", "t.csv"]
    mask = os.umask(0)
    os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask


def test_failed_write_keeps_the_old_file(tmp_path):
    path = write_text_atomic(tmp_path / "f.txt", "old")
    with pytest.raises(TypeError):
        write_bytes_atomic(path, "not bytes")  # type: ignore[arg-type]
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]
