"""policies.compare_pages: one learner on one results page against one on another, paired by seed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from policies.compare_pages import main
from policies.report import fmt

CONFIG = {
    "study": "sparsity",
    "scenario": "default",
    "eval_days": [1, 181, 361],
    "eval_day_seeds": [10000, 10001, 10002],
}
STEPS = (0, 4000, 8000, 12000)


def write_page(root: Path, name: str, setting: str, curve_setting: str, utility: dict[str, list[float]],
               curve: dict[str, np.ndarray], config: dict | None = None) -> Path:  # fmt: skip
    """A page with a sparsity study: one outcome row per learner and seed, held-out curves at STEPS."""
    page = root / name
    (page / "sparsity").mkdir(parents=True)
    rows = [{"study": "sparsity", "setting": setting, "policy": p, "seed": s, "utility": u, "utility_pct_of_bound": u / 7.0,
             "violation_rate": 0.01 * (s + 1), "energy_cost": 5.0} for p, us in utility.items() for s, u in enumerate(us)]  # fmt: skip
    pd.DataFrame(rows).to_csv(page / "sparsity" / "sparsity.csv", index=False)
    curves = [{"policy": p, "seed": s, "step": step, "utility": float(c[s, i]), "violation_rate": 0.0,
               "curve_source": "held-out", "setting": curve_setting}
              for p, c in curve.items() for s in range(c.shape[0]) for i, step in enumerate(STEPS)]  # fmt: skip
    pd.DataFrame(curves).to_csv(page / "sparsity" / "sparsity_curves.csv", index=False)
    (page / "sparsity" / "config.json").write_text(json.dumps(config or CONFIG), encoding="utf-8")
    return page


@pytest.fixture
def pages(tmp_path):
    rng = np.random.default_rng(0)
    a_util, b_util = [660.0, 672.0, 655.0, 690.0], [650.0, 671.0, 640.0, 670.0]
    a_curve, b_curve = rng.normal(630, 10, (4, len(STEPS))), rng.normal(620, 10, (4, len(STEPS)))
    a = write_page(tmp_path, "dense", "settle=1", "settle=1", {"sac": a_util}, {"sac": a_curve})
    b = write_page(tmp_path, "daily", "settle=daily", "settle=288+redistribute",
                   {"sac": b_util, "sac+diffusion": [600.0] * 4}, {"sac": b_curve, "sac+diffusion": b_curve - 5})  # fmt: skip
    return a, b, np.array(a_util), np.array(b_util), a_curve, b_curve


def paired(d: np.ndarray) -> str:
    half = stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))
    p = stats.ttest_rel(d, np.zeros_like(d)).pvalue
    return f"A − B {fmt(d.mean())} (95% CI {fmt(d.mean() - half)} to {fmt(d.mean() + half)}, p = {fmt(p)}"


def test_outcome_and_curve_area_are_paired_by_seed(pages, capsys):
    a, b, a_util, b_util, a_curve, b_curve = pages
    assert main([str(a), f"{b}:sac"]) == 0
    out = capsys.readouterr().out
    assert "A = dense sac (settle=1), B = daily sac (settle=daily): 4 seeds paired" in out
    assert paired(a_util - b_util) in out.split("utility: ")[1].splitlines()[0]
    assert "steps 4000-12000, 3 evaluations" in out  # step 0 (the untrained policy) is not in the area
    area_line = out.split("area under")[1].splitlines()[1]
    assert paired(a_curve[:, 1:].mean(1) - b_curve[:, 1:].mean(1)) in area_line


def test_until_limits_the_area_to_the_early_evaluations(pages, capsys):
    a, b, *_, a_curve, b_curve = pages
    assert main([str(a), str(b), "--until", "8000"]) == 0
    out = capsys.readouterr().out
    assert "steps 4000-8000, 2 evaluations" in out
    assert paired(a_curve[:, 1:3].mean(1) - b_curve[:, 1:3].mean(1)) in out.split("area under")[1]


def test_a_learner_and_setting_can_be_named(pages, capsys):
    _, b, *_ = pages
    assert main([f"{b}:sac+diffusion:settle=daily", f"{b}:sac"]) == 0
    assert "A = daily sac+diffusion (settle=daily), B = daily sac (settle=daily)" in capsys.readouterr().out


@pytest.mark.parametrize(
    "side, message",
    [("{b}:td3", "no 'td3' rows; its learners: sac, sac+diffusion"),
     ("{b}:sac:settle=1", "sac has no setting 'settle=1'; it ran in settle=daily"),
     ("{b}/missing", "no sparsity study there")],
)  # fmt: skip
def test_a_side_naming_nothing_is_a_one_line_error(pages, capsys, side, message):
    a, b, *_ = pages
    assert main([str(a), side.format(b=b)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and len(err.strip().splitlines()) == 1


def test_pages_on_different_held_out_days_do_not_pair(pages, tmp_path, capsys):
    a, *_ = pages
    other = write_page(tmp_path, "other-days", "settle=1", "settle=1", {"sac": [1.0, 2.0]}, {"sac": np.zeros((2, 4))},
                       {**CONFIG, "eval_days": [2, 182, 362]})  # fmt: skip
    assert main([str(a), str(other)]) == 2
    assert "the pages differ in eval_days" in capsys.readouterr().err


def test_a_learner_whose_settings_are_ambiguous_must_be_named(tmp_path, capsys):
    page = tmp_path / "two"
    write_page(tmp_path, "two", "settle=1", "settle=1", {"sac": [1.0, 2.0]}, {"sac": np.zeros((2, 4))})
    t = pd.read_csv(page / "sparsity" / "sparsity.csv")
    pd.concat([t, t.assign(setting="settle=daily")]).to_csv(page / "sparsity" / "sparsity.csv", index=False)
    assert main([str(page), str(page)]) == 2
    assert "sac ran in settle=1, settle=daily; name one" in capsys.readouterr().err
