"""Workload model: the committed fit, the vectorised sampler, recovery on a synthetic trace, the real fit."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from traces import workload as wl
from traces.data_paths import gentd26_trace
from traces.workload import WorkloadError, WorkloadParams, fit_workload, sample_arrivals

FIX = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="module")
def committed():
    return WorkloadParams.load()


def test_committed_params_load_and_carry_source_and_quality(committed):
    assert "Lin et al." in committed.source and committed.data["requests"] > 10000
    assert {"ks_slot_counts_simulated", "dispersion_index_empirical", "r2_diurnal_profile_split_half"} <= set(
        committed.fit
    )
    assert np.mean(committed.hour_factors) == pytest.approx(1.0, abs=1e-5)
    assert committed.fit["dispersion_index_empirical"] > 2  # the trace is strongly overdispersed


def test_sampler_shapes_and_consistency(committed):
    out = sample_arrivals(committed, np.random.default_rng(3), pd.Timestamp("2024-01-01"), 288, 300)
    n = out["requests"]
    assert n.shape == (288,) and out["requests_by_steps"].shape == (288, len(committed.step_values))
    assert (out["requests_by_type"].sum(1) == n).all() and (out["requests_by_steps"].sum(1) == n).all()
    assert (out["images_by_steps"].sum(1) == out["images"]).all() and (out["images"] >= n).all()
    assert out["slot_start"][1] - out["slot_start"][0] == np.timedelta64(300, "s")


def test_sampler_is_seeded_and_scales(committed):
    a = sample_arrivals(committed, np.random.default_rng(7), "2024-01-01", 2000, 300)
    b = sample_arrivals(committed, np.random.default_rng(7), "2024-01-01", 2000, 300)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    big = sample_arrivals(committed, np.random.default_rng(7), "2024-01-01", 2000, 300, mean_rate_scale=3.0)
    np.testing.assert_allclose(big["rate"], 3.0 * a["rate"])  # same random factors, three times the mean


def test_long_slots_sum_five_minute_blocks(committed):
    long = sample_arrivals(committed, np.random.default_rng(5), "2024-01-01", 24, 3600)
    short = sample_arrivals(committed, np.random.default_rng(5), "2024-01-01", 288, 300)
    np.testing.assert_allclose(long["rate"], short["rate"].reshape(24, 12).sum(1))
    assert sample_arrivals(committed, np.random.default_rng(5), "2024-01-01", 10, 60)["requests"].shape == (
        10,
    )


def test_sampler_calendar_is_utc_hour_and_weekday(committed):
    only = WorkloadParams(**{**KNOWN, "hour_factors": [0.0] * 5 + [24.0] + [0.0] * 18,
                             "weekday_factors": [0.0, 0.0, 7.0, 0.0, 0.0, 0.0, 0.0]})  # fmt: skip
    out = sample_arrivals(only, np.random.default_rng(0), pd.Timestamp("2024-01-01 01:00", tz="Europe/Paris"),
                          7 * 24, 3600)  # fmt: skip
    hot = pd.DatetimeIndex(out["slot_start"][out["rate"] > 0]).tz_localize("UTC")
    assert list(hot) == [pd.Timestamp("2024-01-03 05:00", tz="UTC")]  # Wednesday, 05:00 UTC


def test_sampler_rejects_bad_arguments(committed):
    rng = np.random.default_rng(0)
    with pytest.raises(WorkloadError, match="slot_s"):
        sample_arrivals(committed, rng, "2024-01-01", 10, 420)
    with pytest.raises(WorkloadError, match="slots"):
        sample_arrivals(committed, rng, "2024-01-01", 0, 300)
    with pytest.raises(WorkloadError, match="mean_rate_scale"):
        sample_arrivals(committed, rng, "2024-01-01", 10, 300, mean_rate_scale=-1)


KNOWN = dict(
    base_rate=4.0,
    hour_factors=list(np.round(1 + 0.8 * np.sin(2 * np.pi * (np.arange(24) - 6) / 24), 6)),
    weekday_factors=[1.0] * 7,
    day_sigma=0.25,
    burst_sigma=0.7,
    burst_phi=0.8,
    classes={"predict_type": ["IMG_2_IMG", "TXT_2_IMG", "TXT_2_IMG"], "images": [1, 1, 4], "steps": [30, 30, 50],
             "prob": [0.1, 0.6, 0.3]},
)  # fmt: skip


def _synthetic_trace(path: Path, days: int = 42) -> None:
    """Requests drawn from KNOWN, spread uniformly inside their 5-minute slot."""
    p = WorkloadParams(**KNOWN)
    rng = np.random.default_rng(11)
    out = sample_arrivals(p, rng, "2024-01-01", days * 288, 300)
    cls = np.concatenate([np.repeat(np.arange(3), row) for row in _class_counts(p, out, rng)])
    slot = np.repeat(np.arange(days * 288), out["requests"])
    t = pd.Timestamp("2024-01-01") + pd.to_timedelta(slot * 300 + rng.integers(0, 300, slot.size), unit="s")
    c = KNOWN["classes"]
    pd.DataFrame({
        "gmt_create": t.strftime("%Y-%m-%d %H:%M:%S"), "predict_type": np.asarray(c["predict_type"])[cls],
        "num_images_per_prompt": np.asarray(c["images"])[cls], "num_inference_steps": np.asarray(c["steps"])[cls],
        "prompt_length": rng.integers(5, 80, slot.size),
    }).sort_values("gmt_create", kind="stable").to_csv(path, index=False)  # fmt: skip


def _class_counts(p, out, rng):
    return rng.multinomial(out["requests"], p.classes["prob"])


def test_fit_recovers_known_parameters(tmp_path):
    path = tmp_path / "synthetic.csv"
    _synthetic_trace(path)
    fit = fit_workload(path, partiprompts=tmp_path / "absent.tsv", quality_replicates=3)
    assert fit.base_rate == pytest.approx(KNOWN["base_rate"], rel=0.15)
    assert np.corrcoef(fit.hour_factors, KNOWN["hour_factors"])[0, 1] > 0.95
    assert fit.burst_sigma == pytest.approx(KNOWN["burst_sigma"], abs=0.12)
    assert fit.burst_phi == pytest.approx(KNOWN["burst_phi"], abs=0.06)
    assert fit.day_sigma == pytest.approx(KNOWN["day_sigma"], abs=0.12)
    got = dict(
        zip(zip(fit.classes["images"], fit.classes["steps"], strict=True), fit.classes["prob"], strict=False)
    )
    assert got[(4, 50)] == pytest.approx(0.3, abs=0.01)
    assert fit.fit["lag1_autocorr_simulated_median"] == pytest.approx(
        fit.fit["lag1_autocorr_empirical"], abs=0.1
    )


@pytest.mark.skipif(gentd26_trace() is None, reason="shared GenTD26 data not present")
def test_fit_on_shared_trace_matches_committed(committed, tmp_path):
    out = tmp_path / "g.json"
    assert wl.main(["fit", "--data", str(gentd26_trace()), "--out", str(out), "--replicates", "4"]) == 0
    fresh = WorkloadParams.load(out)
    assert fresh.data["requests"] == 14279 and fresh.data["days"] == 16
    assert fresh.base_rate == pytest.approx(committed.base_rate)
    assert fresh.burst_phi == pytest.approx(committed.burst_phi, abs=1e-6)
    assert fresh.fit["r2_diurnal_profile_split_half"] > 0.5
    assert sum(fresh.data["type_share"].values()) == pytest.approx(1.0, abs=1e-5)
    late = fit_workload(gentd26_trace(), quality_replicates=2, start="2024-11-19")
    assert late.data["days"] == 12 and late.data["first_request"] >= "2024-11-19"
    with pytest.raises(WorkloadError, match="no requests in"):
        fit_workload(gentd26_trace(), quality_replicates=2, start="2031-01-01")


def test_bad_trace_and_params_are_clear_errors(tmp_path, capsys):
    with pytest.raises(WorkloadError, match=r"line 3: cannot parse gmt_create 'yesterday'"):
        wl.read_trace(FIX / "workload_bad_time.csv")
    assert (
        wl.main(["fit", "--data", str(FIX / "workload_bad_time.csv"), "--out", str(tmp_path / "x.json")]) == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and not (tmp_path / "x.json").exists()
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**KNOWN, "burst_phi": 1.5}))
    with pytest.raises(WorkloadError, match="burst_phi"):
        WorkloadParams.load(bad)


def test_prompt_lengths_sample_within_range(committed):
    x = wl.sample_prompt_lengths(committed, np.random.default_rng(0), 1000)
    q = committed.prompt_length["trace"]["quantiles_0_100"]
    assert x.min() >= q[0] and x.max() <= q[-1]
    assert np.median(x) == pytest.approx(committed.prompt_length["trace"]["median"], rel=0.2)
