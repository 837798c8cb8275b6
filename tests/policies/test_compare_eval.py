"""policies.compare_eval: trained runs against a heuristic in one policies.evaluate output, paired by episode."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from policies.compare_eval import main
from policies.report import fmt

DAYS = ("2023-01-02", "2023-07-01")
SEEDS = (10000, 10001)
#: a learner's run (training seed) -> its utility minus the baseline's on each day (both arrival seeds alike)
GAINS = {
    "sac+linear": {0: (3.0, -1.0), 1: (5.0, -2.0), 2: (4.0, 0.5)},
    "sac": {0: (1.0, 0.0), 1: (0.5, -0.5), 2: (2.0, 1.0)},
}


def base_utility(day: str, seed: int) -> float:
    return 700.0 + 10 * DAYS.index(day) + (seed - 10000)


def results(tmp_path, with_oracle: bool = True):
    rows = []
    for day in DAYS:
        for seed in SEEDS:
            rows.append(
                {
                    "policy": "quality-first",
                    "run": "",
                    "day": day,
                    "seed": seed,
                    "utility": base_utility(day, seed),
                }
            )
            if with_oracle:
                rows.append({"policy": "oracle", "run": "", "day": day, "seed": seed, "utility": 720.0})
            for learner, runs in GAINS.items():
                for s, gains in runs.items():
                    rows.append({"policy": f"{learner}@quality-first", "run": f"{learner}__s{s}__abc", "day": day,
                                 "seed": seed, "utility": base_utility(day, seed) + gains[DAYS.index(day)]})  # fmt: skip
    pd.DataFrame(rows).to_csv(tmp_path / "results.csv", index=False)
    return tmp_path


def test_differences_over_runs_days_and_between_learners(tmp_path, capsys):
    assert main([str(results(tmp_path))]) == 0
    out = capsys.readouterr().out
    per_run = np.array([np.mean(g) for g in GAINS["sac+linear"].values()])
    p = stats.ttest_1samp(per_run, 0.0).pvalue
    assert f"over runs: {fmt(per_run.mean())} " in out and f"p = {fmt(p)}" in out
    assert "better in 3 of 3 runs" in out
    assert (
        f"points of the mean oracle bound ({fmt(720.0)} EUR/day): {fmt(100 * per_run.mean() / 720.0)} " in out
    )
    day_means = [np.mean([g[i] for g in GAINS["sac+linear"].values()]) for i in range(2)]
    assert f"per day: {DAYS[0]} {fmt(day_means[0])}, {DAYS[1]} {fmt(day_means[1])}" in out
    assert "better on 1 of 2 days" in out
    between = per_run - np.array([np.mean(g) for g in GAINS["sac"].values()])
    assert (
        f"sac+linear@quality-first − sac@quality-first, paired by training seed (EUR/day): {fmt(between.mean())} "
        in out
    )


def test_without_oracle_no_points_and_chosen_policies(tmp_path, capsys):
    assert main([str(results(tmp_path, with_oracle=False)), "--policies", "sac@quality-first"]) == 0
    out = capsys.readouterr().out
    assert (
        "points of the mean oracle bound" not in out
        and "sac+linear" not in out
        and "paired by training seed" not in out
    )


@pytest.mark.parametrize(
    "args, message",
    [
        (["--baseline", "forecast-lp"], "baseline 'forecast-lp' was not evaluated here"),
        (["--baseline", "sac@quality-first"], "has more than one run"),
        (["--policies", "td3@quality-first"], "policy 'td3@quality-first' was not evaluated here"),
    ],
)
def test_bad_input_is_one_line(tmp_path, capsys, args, message):
    assert main([str(results(tmp_path)), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_missing_folder_and_episodes(tmp_path, capsys):
    assert main([str(tmp_path / "nowhere")]) == 2
    assert "results.csv: not found" in capsys.readouterr().err
    frame = pd.read_csv(results(tmp_path) / "results.csv")
    frame = frame[~((frame.policy == "quality-first") & (frame.day == DAYS[1]))]
    frame.to_csv(tmp_path / "results.csv", index=False)
    assert main([str(tmp_path)]) == 2
    assert "episode(s) the baseline did not run" in capsys.readouterr().err
