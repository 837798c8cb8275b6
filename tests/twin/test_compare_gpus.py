"""The cross-GPU table: one row per (GPU pair, model, mode, batch) measured on both, ratios over shared points."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest

from twin.calibrate import DEFAULT_TRACES
from twin.compare_gpus import compare, gpu_pairs, main, paired_gpu_points

pytestmark = pytest.mark.skipif(
    not all((DEFAULT_TRACES / gpu / "sd-1.5.csv").is_file() for gpu in ("h100", "h200")),
    reason="no committed H100 and H200 traces of SD 1.5",
)


def _copy(tmp_path, gpu: str, model: str):
    (tmp_path / gpu).mkdir(parents=True, exist_ok=True)
    for suffix in (".csv", ".json"):
        shutil.copy(DEFAULT_TRACES / gpu / f"{model}{suffix}", tmp_path / gpu / f"{model}{suffix}")
    return tmp_path / gpu / f"{model}.csv"


def _points(trace, mode: str, batch: int) -> pd.DataFrame:
    frame = pd.read_csv(trace)
    return frame[(frame["mode"] == mode) & (frame["batch"] == batch)].set_index("steps")


def _ok_batches(trace, mode: str) -> set[int]:
    frame = pd.read_csv(trace)
    return set(frame[(frame["status"] == "ok") & (frame["mode"] == mode)]["batch"])


def test_rows_pair_the_same_points_on_both_gpus_and_report_their_ratios(tmp_path):
    h100, h200 = _copy(tmp_path, "h100", "sd-1.5"), _copy(tmp_path, "h200", "sd-1.5")
    _copy(tmp_path, "h100", "sd-2.1")  # measured on one GPU only: no row
    rows = compare(tmp_path)
    keys = [tuple(c.strip() for c in r.split("|")[1:6]) for r in rows]
    # one row per batch measured in that mode on both GPUs (the H100 compiled fewer batches than the H200)
    expected = [
        ("h100", "h200", "sd-1.5", mode, str(b))
        for mode in ("compile", "eager")
        for b in sorted(_ok_batches(h100, mode) & _ok_batches(h200, mode))
    ]
    assert keys == expected and ("h100", "h200", "sd-1.5", "eager", "8") in keys
    base, other = _points(h100, "eager", 8), _points(h200, "eager", 8)
    speed_up = base["latency_image_mean_s"] / other["latency_image_mean_s"]
    energy = other["energy_image_j"] / base["energy_image_j"]
    cells = [c.strip() for c in rows[keys.index(("h100", "h200", "sd-1.5", "eager", "8"))].split("|")]
    assert cells[7] == f"{speed_up.median():.2f} ({speed_up.min():.2f}-{speed_up.max():.2f})"
    assert cells[8] == f"{energy.median():.2f} ({energy.min():.2f}-{energy.max():.2f})"
    assert cells[10] == (
        f"{base.loc[50, 'latency_image_mean_s']:.3f} -> {other.loc[50, 'latency_image_mean_s']:.3f}"
    )


def test_pairs_are_every_gpu_pair_in_name_order_or_the_ones_named():
    gpus = ["a100", "h100", "h200"]
    assert gpu_pairs(gpus, None, None) == [("a100", "h100"), ("a100", "h200"), ("h100", "h200")]
    assert gpu_pairs(gpus, None, "h200") == [("a100", "h200"), ("h100", "h200")]
    assert gpu_pairs(gpus, "h200", None) == [("h200", "a100"), ("h200", "h100")]
    assert gpu_pairs(gpus, "h200", "a100") == [("h200", "a100")]


def test_the_command_prints_the_table(tmp_path, capsys):
    _copy(tmp_path, "h100", "sdxl"), _copy(tmp_path, "h200", "sdxl")
    assert main(["--traces", str(tmp_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("| base | gpu | model |") and out[2:] == compare(tmp_path)


def test_the_pair_can_be_named_either_way_round(tmp_path):
    _copy(tmp_path, "h100", "sd-1.5"), _copy(tmp_path, "h200", "sd-1.5")
    forward, backward = compare(tmp_path, "h100", "h200"), compare(tmp_path, base="h200")
    assert forward == compare(tmp_path) and len(backward) == len(forward)
    assert all(r.startswith("| h200 | h100 |") for r in backward)
    # the sides swap: the latencies at the largest step count change places
    assert forward[0].split("|")[10].strip().split(" -> ")[::-1] == backward[0].split("|")[10].strip().split(
        " -> "
    )


@pytest.mark.parametrize(
    "column, value", [("resolution", 768), ("scheduler", "DDIMScheduler")], ids=["resolution", "scheduler"]
)
def test_points_of_another_group_on_the_other_gpu_are_left_out(tmp_path, column, value):
    _copy(tmp_path / "plain", "h100", "sd-1.5"), _copy(tmp_path / "plain", "h200", "sd-1.5")
    expected = compare(tmp_path / "plain")
    _copy(tmp_path / "mixed", "h100", "sd-1.5")
    trace = _copy(tmp_path / "mixed", "h200", "sd-1.5")
    frame = pd.read_csv(trace)
    eager = frame[frame["mode"] == "eager"]
    # the H200 also measured eager in another group, more often than in the H100's: paired with the H100's anyway
    other = eager.assign(**{column: value}, latency_image_mean_s=eager["latency_image_mean_s"] * 10)
    pd.concat([frame, other, other.assign(steps=other["steps"] + 100)], ignore_index=True).to_csv(
        trace, index=False
    )
    assert compare(tmp_path / "mixed") == expected
    pairs = paired_gpu_points(
        pd.read_csv(tmp_path / "mixed" / "h100" / "sd-1.5.csv"), pd.read_csv(trace), "eager"
    )
    assert len(pairs) == 40 and pairs["steps"].max() == 50


def test_bad_pairs_and_no_shared_model_give_a_one_line_error(tmp_path, capsys):
    _copy(tmp_path, "h100", "sd-2.1"), _copy(tmp_path, "h200", "sdxl")
    for argv, start in (
        (["--traces", str(tmp_path)], "error: no model under"),
        (["--traces", str(tmp_path), "--gpu", "a100"], "error: no traces for gpu 'a100' (have: h100, h200)"),
        (
            ["--traces", str(tmp_path), "--base", "h100", "--gpu", "h100"],
            "error: --base and --gpu name the same",
        ),
        (["--traces", str(tmp_path / "absent")], "error: no traces folder at"),
    ):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith(start) and err.count("\n") == 1
