"""The compile-vs-eager table: one row per (gpu, model, batch) measured in both modes, ratios over shared points."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest

from twin.calibrate import DEFAULT_TRACES
from twin.compare_modes import compare, main, paired_points

pytestmark = pytest.mark.skipif(not (DEFAULT_TRACES / "h100").is_dir(), reason="no committed H100 traces")


def _copy(tmp_path, model: str):
    (tmp_path / "h100").mkdir(parents=True)
    for suffix in (".csv", ".json"):
        shutil.copy(DEFAULT_TRACES / "h100" / f"{model}{suffix}", tmp_path / "h100" / f"{model}{suffix}")
    return tmp_path / "h100" / f"{model}.csv"


def test_rows_pair_the_same_points_and_report_their_ratios(tmp_path):
    trace = _copy(tmp_path, "sd-1.5")
    frame = pd.read_csv(trace)
    rows = compare(tmp_path)
    assert [r.split("|")[3].strip() for r in rows] == ["1", "2"]  # compile measured batches 1 and 2 only
    eager = frame[(frame["mode"] == "eager") & (frame["batch"] == 1)].set_index("steps")
    compiled = frame[(frame["mode"] == "compile") & (frame["batch"] == 1)].set_index("steps")
    ratio = eager["latency_image_mean_s"] / compiled["latency_image_mean_s"]
    cells = rows[0].split("|")
    assert cells[5].strip().startswith(f"{ratio.median():.2f} ({ratio.min():.2f}-{ratio.max():.2f})")
    assert cells[7].strip() == str(int(compiled.index.max()))


def test_a_point_measured_in_one_mode_only_is_left_out(tmp_path):
    trace = _copy(tmp_path, "sdxl")
    frame = pd.read_csv(trace)
    drop = (frame["mode"] == "eager") & (frame["batch"] == 1) & (frame["steps"] == 50)
    frame[~drop].to_csv(trace, index=False)
    pairs = paired_points(pd.read_csv(trace), "eager", "compile")
    assert 50 not in set(pairs["steps"]) and len(pairs) == 9
    assert "| 9 (1-42) |" in compare(tmp_path)[0]


def test_a_trace_with_one_mode_gives_a_one_line_error(tmp_path, capsys):
    trace = _copy(tmp_path, "sd-2.1")
    frame = pd.read_csv(trace)
    frame[frame["mode"] == "eager"].to_csv(trace, index=False)
    assert main(["--traces", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no trace under") and err.count("\n") == 1
    assert main(["--traces", str(tmp_path / "absent")]) == 2


def test_both_modes_are_compared_at_the_base_modes_resolution(tmp_path):
    expected = compare(_copy(tmp_path / "plain", "sd-1.5").parents[1])
    trace = _copy(tmp_path / "mixed", "sd-1.5")
    frame = pd.read_csv(trace)
    compiled = frame[frame["mode"] == "compile"]
    # compile also measured at 768 px, more often than at 512: alone, its card would describe 768 px
    at_768 = compiled.assign(resolution=768, latency_image_mean_s=compiled["latency_image_mean_s"] * 10)
    frame = pd.concat([frame, at_768, at_768.assign(steps=at_768["steps"] + 100)], ignore_index=True)
    frame.to_csv(trace, index=False)
    assert compare(tmp_path / "mixed") == expected  # paired with the 512 px points eager measured
