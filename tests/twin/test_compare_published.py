"""The measured-vs-published table: one row per cited point with a measured counterpart, ratios from both sides."""

from __future__ import annotations

import shutil
from collections import Counter

import pytest

from twin.calibrate import DEFAULT_TRACES
from twin.cards import CARDS_DIR
from twin.cited import COSTS
from twin.compare_published import compare, main

pytestmark = pytest.mark.skipif(not (DEFAULT_TRACES / "h100").is_dir(), reason="no committed H100 traces")


def test_every_cited_point_of_a_traced_model_gets_a_row_with_its_ratios():
    rows, modes = compare(DEFAULT_TRACES, CARDS_DIR)
    cited_points = sum(len(c.steps) + (c.big_batch is not None) for c in COSTS.values())
    per_gpu = Counter(r.split("|")[11].split()[0] for r in rows)
    assert per_gpu["h100"] == cited_points  # all four cited models have an H100 trace
    for gpu in (d for d in DEFAULT_TRACES.iterdir() if d.is_dir() and d.name != "h100"):
        traced = {t.stem for t in gpu.glob("*.csv")}  # every committed trace measured eager points
        assert per_gpu[gpu.name] == sum(
            len(c.steps) + (c.big_batch is not None) for m, c in COSTS.items() if m in traced
        )
    sdxl_b8 = next(r for r in rows if r.startswith("| sdxl | 8 | 50 |")).split("|")
    published, measured, speed_up = (
        float(sdxl_b8[5]),
        float(sdxl_b8[6]),
        float(sdxl_b8[7].strip().rstrip("x")),
    )
    assert speed_up == pytest.approx(published / measured, abs=0.01)
    assert "trace row" in sdxl_b8[11]
    sd35 = next(
        r for r in rows if r.startswith("| sd3.5-medium | 1 | 28 |")
    )  # 28 steps: between measured ones
    assert sd35.endswith("card fit |")
    assert modes == {"eager", "compile"}


def test_a_trace_without_its_card_skips_the_points_it_lacks(tmp_path):
    shutil.copytree(DEFAULT_TRACES / "h100", tmp_path / "h100")
    rows, _ = compare(tmp_path, tmp_path / "no-cards")
    assert not any(r.startswith("| sd3.5-medium") for r in rows)  # only the card could give 28 steps
    assert any(r.startswith("| sd-1.5 | 8 | 50 |") for r in rows)


def test_missing_traces_folder_is_a_one_line_error(tmp_path, capsys):
    assert main(["--traces", str(tmp_path / "absent")]) == 2
    assert capsys.readouterr().err.startswith("error: no traces folder")


def test_a_trace_without_energy_gets_na_cells_not_a_crash(tmp_path):
    import pandas as pd

    shutil.copytree(DEFAULT_TRACES / "h100", tmp_path / "h100")
    trace = tmp_path / "h100" / "sd-2.1.csv"
    frame = pd.read_csv(trace)
    frame["energy_image_j"] = None
    frame.to_csv(trace, index=False)
    rows, _ = compare(tmp_path, tmp_path / "no-cards")
    assert next(r for r in rows if r.startswith("| sd-2.1 | 1 | 30 |")).count("n/a") == 2


def test_an_absent_mode_names_the_modes_there(capsys):
    assert main(["--mode", "compiled"]) == 2
    assert "modes in the traces: compile, eager" in capsys.readouterr().err
