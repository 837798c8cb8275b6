"""policies.compare_eval: trained runs against a heuristic in one policies.evaluate output, paired by episode."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from policies.compare_eval import main
from policies.report import fmt, paired_text

DAYS = ("2023-01-02", "2023-07-01", "2023-12-28")
SEEDS = (10000, 10001)
#: a learner's run (training seed) -> its utility minus the baseline's on each (day, arrival seed)
GAINS = {
    "sac+linear": {0: (3.0, -1.0, 2.0, 0.0, 1.0, 4.0), 1: (5.0, -2.0, 1.0, 1.0, 0.0, 2.0), 2: (4.0, 0.5, 3.0, -1.0, 2.0, 1.0)},
    "sac": {0: (1.0, 0.0, 0.5, 0.5, 1.0, 0.0), 1: (0.5, -0.5, 0.0, 1.0, 0.0, 0.0), 2: (2.0, 1.0, 0.0, 0.0, 1.0, 1.0)},
}  # fmt: skip
EPISODES = [(day, seed) for day in DAYS for seed in SEEDS]
#: arrivals per (day, seed): the first and last day share theirs, one draw of the arrival model
ARRIVED = {(day, seed): 1000 * (1 + (day == DAYS[1])) + seed for day, seed in EPISODES}


def base_utility(day: str, seed: int) -> float:
    return 700.0 + 10 * DAYS.index(day) + 3 * (seed - 10000)


def bound(day: str, seed: int) -> float:
    return 720.0 + 40 * DAYS.index(day) + seed - 10000


def rows(with_oracle: bool = True) -> list[dict]:
    out = []
    for k, (day, seed) in enumerate(EPISODES):
        common = {"day": day, "seed": seed, "oracle_bound": bound(day, seed), "arrived": ARRIVED[day, seed]}
        out.append({"policy": "quality-first", "run": "", "utility": base_utility(day, seed), **common})
        if with_oracle:
            out.append({"policy": "oracle", "run": "", "utility": bound(day, seed), **common})
        for learner, runs in GAINS.items():
            for s, gains in runs.items():
                out.append({"policy": f"{learner}@quality-first", "run": f"{learner}__s{s}__abc",
                            "utility": base_utility(day, seed) + gains[k], **common})  # fmt: skip
    return out


def write(tmp_path, frame: pd.DataFrame):
    frame.to_csv(tmp_path / "results.csv", index=False)
    return str(tmp_path)


def folder(tmp_path, with_oracle: bool = True) -> str:
    return write(tmp_path, pd.DataFrame(rows(with_oracle)))


def line(out: str, start: str, after: str = "") -> str:
    """The first line of ``out`` that starts with ``start`` (stripped), after the line containing ``after``."""
    lines = out.splitlines()
    begin = next(i for i, text in enumerate(lines) if after in text) if after else 0
    return next(text.strip() for text in lines[begin:] if text.strip().startswith(start))


def per_run(learner: str) -> np.ndarray:
    return np.array([np.mean(g) for g in GAINS[learner].values()])


def test_differences_over_runs_days_and_between_learners(tmp_path, capsys):
    assert main([folder(tmp_path)]) == 0
    out = capsys.readouterr().out
    runs = per_run("sac+linear")
    header = "sac+linear@quality-first − quality-first"
    assert line(out, "over runs:", header) == f"over runs: {paired_text(runs, 'runs')}, better in 3 of 3 runs"
    assert stats.ttest_1samp(runs, 0.0).pvalue < 0.05  # the fixture's learner is a clear gain over runs
    mean_bound = np.mean([bound(*e) for e in EPISODES])  # the mean bound over episodes, not a mean of ratios
    assert f"({fmt(mean_bound)} EUR/day): {paired_text(100 * runs / mean_bound, 'runs')}" in line(
        out, "as points", header
    )
    gains = np.array(list(GAINS["sac+linear"].values()))  # runs x episodes
    days = gains.reshape(3, len(DAYS), len(SEEDS)).mean(axis=(0, 2))
    assert line(out, "over days:", header).startswith(f"over days: {paired_text(days, 'days')}")
    distinct = [np.mean([days[0], days[2]]), days[1]]  # the first and last day are one draw
    assert line(out, "over distinct days", header).endswith(paired_text(distinct, "distinct days"))
    assert line(out, "per day:", header) == "per day: " + ", ".join(
        f"{d} {fmt(v)}" for d, v in zip(DAYS, days, strict=True)
    )
    assert (
        f"days with the same arrivals on every seed (one draw of the arrival model): {DAYS[0]} = {DAYS[2]}"
        in out
    )
    between = per_run("sac+linear") - per_run("sac")
    assert line(out, "sac+linear@quality-first − sac@quality-first, paired").endswith(paired_text(between))


def test_a_heuristic_against_the_baseline_is_paired_over_episodes(tmp_path, capsys):
    frame = pd.DataFrame(rows())
    gains = np.array([2.0, 0.0, 5.0, -1.0, 0.0, 3.0])
    base = frame[frame["policy"] == "quality-first"]
    frame = pd.concat([frame, base.assign(policy="overflow", utility=base["utility"].to_numpy() + gains)])
    assert main([write(tmp_path, frame), "--policies", "overflow"]) == 0
    out = capsys.readouterr().out
    assert (
        line(out, "over episodes:")
        == f"over episodes: {paired_text(gains, 'episodes')}, better in 3 of 6 episodes"
    )
    mean_bound = np.mean([bound(d, s) for d, s in EPISODES])
    assert line(out, "as points") == (
        f"as points of the mean oracle bound ({fmt(mean_bound)} EUR/day): {paired_text(100 * gains / mean_bound, 'episodes')}"
    )
    per_day = gains.reshape(3, 2).mean(axis=1)
    assert line(out, "over days:").startswith(f"over days: {paired_text(per_day, 'days')}")
    # beside a learner, a heuristic has no training seed to pair on, and the output does not pretend otherwise
    assert main([write(tmp_path, frame), "--policies", "overflow,sac@quality-first"]) == 0
    out = capsys.readouterr().out
    assert "overflow − sac@quality-first" not in out and "training seed" not in out


def test_days_another_evaluation_ran_can_be_left_out(tmp_path, capsys):
    import json

    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"days": [DAYS[0], "2024-01-01"]}))
    path = folder(tmp_path)
    assert main([path, "--policies", "sac@quality-first", "--exclude-days-of", str(other)]) == 0
    out = capsys.readouterr().out
    assert "paired on 4 episodes (2 held-out days x arrival seeds)" in out
    assert (
        "left out: 1 held-out day(s) named by --exclude-days-of (it names 2; the others were not evaluated here)"
        in out
    )
    per_run = [np.mean(GAINS["sac"][s][2:]) for s in range(3)]
    assert line(out, "over runs:").startswith(f"over runs: {paired_text(per_run, 'runs')}")
    (other / "config.json").write_text(json.dumps({"days": list(DAYS)}))
    assert main([path, "--exclude-days-of", str(other)]) == 2
    assert "every held-out day is excluded" in capsys.readouterr().err
    (other / "config.json").write_text("{}")
    assert main([path, "--exclude-days-of", str(other)]) == 2
    assert "not an evaluation's config" in capsys.readouterr().err
    assert main([path, "--exclude-days-of", str(other / "config.json")]) == 2  # a file, not a folder
    assert "config.json/config.json: not found" in capsys.readouterr().err
    assert main([path, "--exclude-days-of", str(tmp_path / "nowhere")]) == 2
    assert "config.json: not found" in capsys.readouterr().err


def test_pairs_by_day(tmp_path, capsys):
    """The baseline's days swapped: each learner episode meets the other day's baseline, and the per-day line shows it
    (per-run and per-day means do not depend on which arrival seed meets which, only the coverage check does)."""
    frame = pd.DataFrame(rows())
    base = frame.policy == "quality-first"
    frame.loc[base, "day"] = frame.loc[base, "day"].map(
        {DAYS[0]: DAYS[1], DAYS[1]: DAYS[0], DAYS[2]: DAYS[2]}
    )
    assert main([write(tmp_path, frame)]) == 0
    first_day = line(capsys.readouterr().out, "per day:").split(", ")[0]
    gains = np.array(list(GAINS["sac+linear"].values())).reshape(3, len(DAYS), len(SEEDS))
    assert (
        first_day == f"per day: {DAYS[0]} {fmt(gains[:, 0].mean() - 10.0)}"
    )  # its baseline is 10 EUR/day higher


def test_without_oracle_uses_the_bound_column_and_chosen_policies(tmp_path, capsys):
    assert main([folder(tmp_path, with_oracle=False), "--policies", "sac@quality-first"]) == 0
    out = capsys.readouterr().out
    assert "points of the mean oracle bound" in out
    assert "sac+linear" not in out and "paired by training seed" not in out


def test_runs_without_a_seed_are_reported_not_paired(tmp_path, capsys):
    frame = pd.DataFrame(rows())
    frame["run"] = frame["run"].str.replace("__s", "__x", regex=False)
    assert main([write(tmp_path, frame)]) == 0
    assert "not paired by seed (run names without __sN__)" in capsys.readouterr().out


def broken(kind: str) -> pd.DataFrame:
    frame = pd.DataFrame(rows())
    learner = frame.policy == "sac+linear@quality-first"
    if kind == "missing-episode":
        return frame[~(learner & (frame.run == "sac+linear__s1__abc") & (frame.day == DAYS[2]))]
    if kind == "nan-learner":
        frame.loc[frame.index[learner][0], "utility"] = np.nan
    if kind == "nan-baseline":
        frame.loc[frame.index[frame.policy == "quality-first"][0], "utility"] = np.nan
    if kind == "duplicate-episode":
        return pd.concat([frame, frame[learner].head(1)])
    if kind == "shared-seed":
        frame.loc[learner & (frame.run == "sac+linear__s1__abc"), "run"] = "sac+linear__s0__def"
    if kind == "mixed":
        frame.loc[frame.index[learner][0], "run"] = ""
    if kind == "no-columns":
        return frame.drop(columns=["seed"])
    return frame


@pytest.mark.parametrize(
    "kind, args, message",
    [
        ("", ["--baseline", "forecast-lp"], "baseline 'forecast-lp' was not evaluated here"),
        ("", ["--baseline", "sac@quality-first"], "has more than one run"),
        ("", ["--policies", "td3@quality-first"], "'td3@quality-first' was not evaluated here"),
        ("", ["--policies", "price-greedy"], "'price-greedy' was not evaluated here"),
        ("mixed", [], "rows with and without a run"),
        ("", ["--policies", ","], "no policy named"),
        ("missing-episode", [], "the comparison needs the same episodes"),
        ("nan-learner", [], "episodes without a utility"),
        ("nan-baseline", [], "baseline 'quality-first' has episodes without a utility"),
        ("duplicate-episode", [], "a run has an episode twice"),
        ("shared-seed", [], "share a training seed"),
        ("no-columns", [], "lacks column(s) seed"),
    ],
)
def test_bad_input_is_one_line(tmp_path, capsys, kind, args, message):
    assert main([write(tmp_path, broken(kind)), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("text", ["", 'a,b\n"x,1\n1,2,3,4\n'])
def test_unreadable_csv_is_one_line(tmp_path, capsys, text):
    (tmp_path / "results.csv").write_text(text)
    assert main([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "not a readable CSV" in err and len(err.strip().splitlines()) == 1


def test_missing_folder(tmp_path, capsys):
    assert main([str(tmp_path / "nowhere")]) == 2
    assert "results.csv: not found" in capsys.readouterr().err


def test_paired_text_units():
    assert paired_text([1.0, 1.0], "days") == "1.00 on all days (no spread to test, n = 2 days)"
    assert paired_text([1.0, 1.0]) == "1.00 on every seed (no spread to test, n = 2 seeds)"
    assert paired_text([1.0], "runs").endswith("(not testable, n = 1 runs)")


def test_runs_of_another_evaluation_of_the_same_episodes_join(tmp_path, capsys):
    """Two evaluations of the same episodes, each with one learner: ``--also`` pairs them as if evaluated together,
    and refuses evaluations whose baseline differs (another twin or other arrivals) or that repeat a learner."""
    frame = pd.DataFrame(rows())
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir(), second.mkdir()
    write(first, frame[frame.policy != "sac+linear@quality-first"])
    write(second, frame[frame.policy != "sac@quality-first"])
    assert (
        main([str(first), "--also", str(second), "--policies", "sac+linear@quality-first,sac@quality-first"])
        == 0
    )
    joined = capsys.readouterr().out
    assert main([folder(tmp_path), "--policies", "sac+linear@quality-first,sac@quality-first"]) == 0
    assert joined.split("\n", 1)[1] == capsys.readouterr().out.split("\n", 1)[1]  # all but the folder's name
    assert main([str(first), "--also", str(first)]) == 2
    assert "sac@quality-first sac__s0__abc, sac@quality-first sac__s1__abc" in capsys.readouterr().err
    # one learner's runs split over two evaluations pool, each run from one
    write(second, frame[frame.run.str.contains("__s2__") | (frame.run == "")])
    write(first, frame[~frame.run.str.contains("__s2__")])
    assert (
        main([str(first), "--also", str(second), "--policies", "sac+linear@quality-first,sac@quality-first"])
        == 0
    )
    assert capsys.readouterr().out.split("\n", 1)[1] == joined.split("\n", 1)[1]
    write(first, frame[frame.policy != "sac+linear@quality-first"])
    shifted = frame.assign(utility=frame.utility + np.where(frame.day == DAYS[1], 0.5, 0.0))
    write(second, shifted[shifted.policy != "sac@quality-first"])
    assert main([str(first), "--also", str(second)]) == 2
    assert "quality-first's utility differs on 2 of 6 episodes" in capsys.readouterr().err
    write(second, frame[(frame.policy != "sac@quality-first") & (frame.day != DAYS[0])])
    assert main([str(first), "--also", str(second)]) == 2
    assert "quality-first did not run 2 of the episodes here" in capsys.readouterr().err
    # episodes the other evaluation ran beyond these (another arrival seed) stay out
    extra = frame[frame.policy != "sac@quality-first"]
    write(second, pd.concat([extra, extra.assign(seed=extra.seed + 100, utility=extra.utility - 50)]))
    assert (
        main([str(first), "--also", str(second), "--policies", "sac+linear@quality-first,sac@quality-first"])
        == 0
    )
    assert capsys.readouterr().out.split("\n", 1)[1] == joined.split("\n", 1)[1]
    write(second, frame[frame.policy == "oracle"])
    assert main([str(first), "--also", str(second)]) == 2
    assert capsys.readouterr().err.startswith(
        f"error: {second}: baseline 'quality-first' was not evaluated here"
    )
    write(second, frame[frame.run == ""])
    assert main([str(first), "--also", str(second)]) == 2
    assert f"{second}: no trained runs on the episodes here" in capsys.readouterr().err


def test_the_differences_are_drawn(tmp_path, capsys):
    png = tmp_path / "fig" / "diff.png"
    assert main([folder(tmp_path), "--png", str(png)]) == 0
    assert f"figure: {png}" in capsys.readouterr().out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    frame = pd.DataFrame(rows()).drop(columns=["arrived"])  # no job counts: the per-run panel alone
    assert main([write(tmp_path, frame), "--png", str(png), "--policies", "sac@quality-first"]) == 0
    assert png.stat().st_size > 0


def test_the_busiest_quarter_of_episodes_is_reported_apart(tmp_path, capsys):
    assert main([folder(tmp_path), "--policies", "sac@quality-first"]) == 0
    out = capsys.readouterr().out
    arrived = pd.Series(ARRIVED)
    cut = arrived.quantile(0.75)
    busy = np.array([ARRIVED[e] >= cut for e in EPISODES])
    gains = np.array(list(GAINS["sac"].values()))  # runs x episodes
    assert line(out, "busiest quarter") == (
        f"busiest quarter by jobs arrived ({busy.sum()} episodes, >= {cut:,.0f} jobs): "
        f"{paired_text(gains[:, busy].mean(axis=1), 'runs')}"
    )
    assert line(out, "other episodes").endswith(paired_text(gains[:, ~busy].mean(axis=1), "runs"))
