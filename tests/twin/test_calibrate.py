"""Calibration: a synthetic trace with known parameters is recovered, held-out points stay out, CLI errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from traces.atomic import write_csv_atomic
from traces.profile_schema import COLUMNS, coerce_profile, sidecar_path
from twin.calibrate import CalibrationError, build_cited_cards, calibrate, main
from twin.cards import CARDS_DIR, QUALITY_FORMS, load_card, load_cards
from twin.fitting import (
    FitError,
    QualityPoint,
    choose_form,
    compare_quality_forms,
    fit_cost,
    fit_quality,
)

# Known truth of the synthetic trace (made up for the test, loosely SD-1.5-on-a-big-GPU sized).
LAT = {"fixed": (0.05, 0.02), "per_step": (0.010, 0.004)}
EN = {"fixed": (8.0, 6.0), "per_step": (2.0, 1.5)}
STEPS, BATCHES, HELDOUT = (10, 15, 20, 25, 30, 42, 50), (1, 2, 4, 8), (25, 42)
NOISE = 0.005  # 0.5 % multiplicative measurement noise


def _truth(p, s, b):
    return p["fixed"][0] + p["fixed"][1] * b + s * (p["per_step"][0] + p["per_step"][1] * b)


def _row(s, b, rng, spoil=1.0, clip=None):
    lat = _truth(LAT, s, b) * (1 + NOISE * rng.standard_normal()) * spoil
    en = _truth(EN, s, b) * (1 + NOISE * rng.standard_normal()) * spoil
    row = {c: pd.NA for c in COLUMNS}
    row.update(
        model="sd-1.5", scheduler="PNDMScheduler", resolution=512, batch=b, steps=s, mode="eager",
        guidance_scale=7.5, status="ok", n_batches=5, n_images=5 * b, window_s=5 * lat,
        latency_batch_mean_s=lat, latency_image_mean_s=lat / b, energy_window_j=5 * en, energy_image_j=en / b,
        idle_power_w=60.0 + rng.standard_normal(), weights="random-init:test", device="cuda:0 test",
    )  # fmt: skip
    if clip is not None:
        row.update(clip_score_mean=clip, clip_model="test-clip", weights="pretrained:test")
    return row


def write_trace(root: Path, spoil_heldout=1.0, clip_fn=None, seed=0, extra_rows=()) -> Path:
    rng = np.random.default_rng(seed)
    rows = [
        _row(s, b, rng, spoil_heldout if s in HELDOUT else 1.0, None if clip_fn is None else clip_fn(s))
        for s in STEPS
        for b in BATCHES
    ]
    frame = coerce_profile(pd.DataFrame([*rows, *extra_rows]))
    path = write_csv_atomic(root / "test-gpu" / "sd-1.5.csv", frame)
    weights = "pretrained:test" if clip_fn else "random-init:test"
    sidecar = dict(gpu_name="Test GPU", driver=None, power_limit_w=None, weights=weights, prompt_set="test",
                   date="2026-11-26", command="test", library_versions={})  # fmt: skip
    sidecar_path(path).write_text(json.dumps(sidecar))
    return path


def _grid_error(card, truth, fn):
    s, b = np.meshgrid(np.array(STEPS, float), np.array(BATCHES, float))
    return np.max(np.abs(fn(s, b) / _truth(truth, s, b) - 1))


@pytest.fixture(scope="module")
def clean_card(tmp_path_factory):
    root = tmp_path_factory.mktemp("clean")
    oom = {
        **_row(50, 16, np.random.default_rng(1)),
        "status": "oom",
        "batch": 16,
        "latency_batch_mean_s": 1e6,
    }
    write_trace(root / "profiles", extra_rows=[oom])
    (path,) = calibrate(root / "profiles", root / "cards", HELDOUT, plots=True)
    return load_card(path), root


def test_recovers_known_parameters(clean_card):
    card, _ = clean_card
    assert card.basis == "measured" and card.gpu == "test-gpu" and card.batch_sizes == BATCHES
    assert _grid_error(card, LAT, card.batch_latency_s) < 0.01
    assert _grid_error(card, EN, card.batch_energy_j) < 0.01
    for got, want in (
        *zip(card.latency_per_step, LAT["per_step"], strict=True),
        *zip(card.energy_per_step, EN["per_step"], strict=True),
    ):
        assert got == pytest.approx(want, rel=0.05)
    assert card.idle_power_w == pytest.approx(60.0, abs=1.0)


def test_reports_heldout_and_in_sample_error(clean_card):
    card, root = clean_card
    assert card.fit["heldout_steps"] == list(HELDOUT)
    for block in ("latency", "energy"):
        assert card.fit[block]["heldout"]["n"] == len(HELDOUT) * len(BATCHES)
        assert 0 < card.fit[block]["heldout"]["mape"] < 2.0  # noise is 0.5 %
        assert 0 < card.fit[block]["in_sample"]["mape"] < 2.0
    assert (root / "cards" / "plots" / "test-gpu__sd-1.5__eager.png").stat().st_size > 10_000


def test_random_weights_fall_back_to_cited_quality(clean_card):
    card, _ = clean_card
    assert "DeepCache" in card.quality_curve.source


def test_heldout_points_are_really_excluded(tmp_path):
    # Held-out rows spoiled 3x: if they leaked into the fit, the recovered curve would be far off.
    write_trace(tmp_path / "profiles", spoil_heldout=3.0)
    (path,) = calibrate(tmp_path / "profiles", tmp_path / "cards", HELDOUT, plots=False)
    card = load_card(path)
    assert _grid_error(card, LAT, card.batch_latency_s) < 0.01
    assert card.fit["latency_mape"] == pytest.approx(100 * (1 - 1 / 3), rel=0.02)  # truth vs 3x truth
    (leaky,) = calibrate(tmp_path / "profiles", tmp_path / "leaky", (99,), plots=False)
    assert _grid_error(load_card(leaky), LAT, load_card(leaky).batch_latency_s) > 0.1


def test_measured_clip_scores_give_the_quality_curve(tmp_path):
    def truth(s):
        return 31.0 / (1 + np.exp(-0.25 * (s - 2.0)))

    write_trace(tmp_path / "profiles", clip_fn=truth)
    (path,) = calibrate(tmp_path / "profiles", tmp_path / "cards", HELDOUT, plots=False)
    card = load_card(path)
    assert card.quality_curve.source.startswith("measured:")
    steps = np.array(STEPS, float)
    assert np.max(np.abs(card.quality(steps) - truth(steps) / 31.0)) < 0.01


def test_quality_fit_recovers_level_and_shape():
    rng = np.random.default_rng(3)
    steps = np.arange(4, 52, 4)
    pts = [QualityPoint(float(s), 30 * (1 - np.exp(-(s - 1) / 6)) + 0.02 * rng.standard_normal(), "a", False)
           for s in steps]  # fmt: skip
    fit = fit_quality(pts, "saturating-exp")
    assert fit.levels["a"] == pytest.approx(30, rel=0.01)
    assert fit.shape["tau"] == pytest.approx(6, rel=0.1)
    comparison = compare_quality_forms(pts, list(QUALITY_FORMS))
    assert comparison["saturating-exp"]["loo_rmse"] < comparison["power-law"]["loo_rmse"]


def test_choose_form_keeps_sigmoid_on_a_tie_only():
    def row(loo):
        return {"loo_rmse": loo, "aicc": 0.0}

    assert choose_form({"sigmoid": row(0.0102), "power-law": row(0.0100)}) == "sigmoid"
    assert choose_form({"sigmoid": row(0.0200), "power-law": row(0.0100)}) == "power-law"


def test_fit_cost_single_batch_and_too_few_points():
    fit = fit_cost(
        [10, 20, 30], [2, 2, 2], [2 * (0.1 + 10 * 0.03), 2 * (0.1 + 20 * 0.03), 2 * (0.1 + 30 * 0.03)]
    )
    assert fit.single_batch and fit.fixed[1] == pytest.approx(0.1) and fit.per_step[1] == pytest.approx(0.03)
    with pytest.raises(FitError, match="2 distinct step counts"):
        fit_cost([10, 10], [1, 2], [1.0, 2.0])


def test_cited_cards_are_reproducible_from_code(tmp_path):
    written = build_cited_cards(tmp_path, plots=False)
    rebuilt, committed = load_cards(tmp_path), load_cards(CARDS_DIR)
    assert len(written) == len(rebuilt) == 4
    for key, card in rebuilt.items():
        ref = committed[key]
        assert np.allclose(
            card.latency_fixed + card.energy_per_step, ref.latency_fixed + ref.energy_per_step, rtol=1e-5
        )
        assert card.quality_curve.form == ref.quality_curve.form
        assert np.allclose(card.quality(np.arange(1, 60)), ref.quality(np.arange(1, 60)), atol=1e-5)


def test_no_traces_is_a_calibration_error(tmp_path):
    with pytest.raises(CalibrationError, match="no profile traces found"):
        calibrate(tmp_path, tmp_path / "out", HELDOUT, plots=False)


def test_cli_error_is_one_line_nonzero(tmp_path, capsys):
    assert main(["--traces", str(tmp_path / "none"), "--out", str(tmp_path / "out")]) != 0
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: no profile traces found") and "\n" not in err
    with pytest.raises(SystemExit) as info:
        main(["--heldout-steps", "a,b"])
    assert info.value.code != 0 and capsys.readouterr().err.strip().count("\n") == 0


def test_cli_subprocess_exit_status(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "twin.calibrate", "--traces", str(tmp_path), "--out", str(tmp_path / "o")],
        capture_output=True, text=True, cwd=Path(__file__).resolve().parents[2], check=False,
    )  # fmt: skip
    assert proc.returncode != 0
    assert proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr


def test_unusable_trace_is_skipped_not_fatal(tmp_path, capsys):
    good = write_trace(tmp_path / "profiles")
    bad = tmp_path / "profiles" / "cpu" / "tiny.csv"
    bad.parent.mkdir()
    frame = pd.read_csv(good).assign(model="tiny", energy_image_j=np.nan)  # a CPU smoke run: no energy
    write_csv_atomic(bad, frame)
    sidecar_path(bad).write_text(sidecar_path(good).read_text())
    written = calibrate(tmp_path / "profiles", tmp_path / "cards", HELDOUT, plots=False)
    assert [p.name for p in written] == ["test-gpu__sd-1.5__eager.json"]
    assert "skipped:" in capsys.readouterr().err
    good.unlink()
    with pytest.raises(CalibrationError, match="no card could be made"):
        calibrate(tmp_path / "profiles", tmp_path / "cards2", HELDOUT, plots=False)


def test_leave_one_step_out_when_heldout_steps_absent(clean_card, tmp_path):
    _, root = clean_card
    (path,) = calibrate(root / "profiles", tmp_path, (7, 99), plots=False)
    card = load_card(path)
    assert card.fit["heldout_steps"] == [] and card.fit["heldout_requested"] == [7, 99]
    assert card.fit["latency_mape"] == card.fit["latency"]["leave_one_step_out"]["mape"]
    assert 0 < card.fit["latency_mape"] < 2.0


def test_short_energy_windows_are_not_fitted(tmp_path):
    # A window the NVML counter did not resolve reads 0 J (flagged short): fitting it would drag the energy
    # curve down; the card must come out as if the point had no energy.
    rng = np.random.default_rng(5)
    bad = {**_row(35, 2, rng), "energy_window_j": 0.0, "energy_image_j": 0.0, "energy_short_window": True}
    write_trace(tmp_path / "profiles", extra_rows=[bad])
    (path,) = calibrate(tmp_path / "profiles", tmp_path / "cards", HELDOUT, plots=False)
    card = load_card(path)
    assert _grid_error(card, EN, card.batch_energy_j) < 0.01
    assert _grid_error(card, LAT, card.batch_latency_s) < 0.01  # its latency is still a measurement


def test_cli_prints_each_cards_fit_as_a_table_row(tmp_path, capsys):
    write_trace(tmp_path / "traces", spoil_heldout=1.3)
    assert main(["--traces", str(tmp_path / "traces"), "--out", str(tmp_path / "out")]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| test-gpu__")]
    assert len(rows) == 1 and rows[0].startswith("| test-gpu__sd-1.5__eager |")
    fit = json.loads((tmp_path / "out" / "test-gpu__sd-1.5__eager.json").read_text())["fit"]
    assert f"{fit['latency']['heldout']['mape']:.1f} %" in rows[0]
    assert fit["latency"]["heldout"]["mape"] > 20  # the spoiled held-out points show up in the table


def test_fit_table_without_held_out_points_shows_leave_one_step_out(tmp_path, capsys):
    write_trace(tmp_path / "traces")
    assert (
        main(["--traces", str(tmp_path / "traces"), "--out", str(tmp_path / "out"), "--heldout-steps", "99"])
        == 0
    )
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("| test-gpu__"))
    assert row.count("leave-one-step-out") == 2 and row.endswith("/ 0 |")


def test_fit_table_says_n_a_where_nothing_could_be_scored(tmp_path):
    from twin.calibrate import fit_table

    none = {"mape": None, "max_abs_pct": None, "n": 0}
    scored = {"mape": 1.25, "max_abs_pct": 3.0, "n": 4}
    report = {"in_sample": scored, "heldout": none, "leave_one_step_out": none}
    card = tmp_path / "g__m__eager.json"
    card.write_text(json.dumps({"fit": {"latency": report, "energy": report}}))
    row = fit_table([card]).splitlines()[-1]
    assert row == (
        "| g__m__eager | 1.2 % | n/a, leave-one-step-out | 1.2 % | n/a, leave-one-step-out | 4 / 0 |"
    )
