"""Atomic writes: the content arrives whole, the mode is an ordinary file's, no temporary file is left, and a
failed write keeps the old file."""

from __future__ import annotations

import os

import pytest

from traces.atomic import figure_png, write_bytes_atomic, write_png_atomic, write_text_atomic


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


def test_figure_written_as_png_closed_and_with_an_ordinary_mode(tmp_path):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def figure():
        fig, ax = plt.subplots(figsize=(4, 3))
        ax.plot([0, 1], [0, 1])
        ax.set_title("a title drawn outside the axes")
        return fig

    fig = figure()
    path = write_png_atomic(tmp_path / "f.png", fig, dpi=50)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not plt.fignum_exists(fig.number)  # closed, so a long sweep does not pile figures up
    assert [p.name for p in tmp_path.iterdir()] == ["f.png"]
    mask = os.umask(0)
    os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask  # not mkstemp's 0600
    assert png_size(path.read_bytes()) == (200, 150)  # the 4 x 3 inch canvas at 50 dpi
    assert png_size(figure_png(figure(), dpi=50, tight=True)) != (200, 150)  # tight: cropped to what is drawn


def png_size(png: bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk."""
    return int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
