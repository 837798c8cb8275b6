"""Trained runs against a baseline in one ``policies.evaluate`` output, paired by episode:
``python -m policies.compare_eval EVAL_DIR [--baseline quality-first] [--policies A,B]``.

``policies.evaluate`` runs every policy on the same (day, arrival seed) episodes, so each episode of a trained run
pairs with the baseline's (a heuristic, deterministic) on that episode. For each learner (a ``policy`` whose rows
name a ``run``) this prints, in EUR/day and in points of the mean oracle bound where the evaluation computed it:

- the mean over runs of a run's mean difference to the baseline, with the 95% t-interval over runs (the spread
  that training seeds make, on these days); for a heuristic named in ``--policies`` (one deterministic run), the
  mean over episodes with the t-interval over episodes instead;
- the same difference per held-out day (mean over runs and arrival seeds) and a test over days (the spread that
  days make: a gain made on a few days shows here, not in the test over runs);
- the difference on the busiest quarter of the episodes by jobs arrived and on the others, tested as the first
  line (where the gaps between policies open with the load);
- with two learners, the first minus the second paired by training seed (``__sN__`` in the run's name).

Use it to re-evaluate a page's selected policies on more held-out days than its training evaluated (``--days``).
``--exclude-days-of EVAL_DIR`` leaves out the days another evaluation ran (e.g. the days a rule was designed on).
``--also EVAL_DIR`` (repeatable) adds the trained runs of another evaluation of the same episodes (its baseline must
have the same utility on every one, so both ran the same twin), e.g. to pair a variant's runs with runs evaluated
earlier whose checkpoints are gone; a learner's runs may come from several evaluations, each run from one.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from policies.intervals import mean_ci
from policies.report import fmt, jobs_log_axis, paired_text, save_figure, seed_pairs

EPISODE = ["day", "seed"]
SEED = re.compile(r"__s(\d+)__")


class CompareEvalError(ValueError):
    """Bad input: the message is printed as one line."""


def load(folder: Path) -> pd.DataFrame:
    path = folder / "results.csv"
    if not path.is_file():
        raise CompareEvalError(f"{path}: not found (a folder written by python -m policies.evaluate)")
    try:
        frame = pd.read_csv(path, dtype={"run": "string"})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise CompareEvalError(f"{path}: not a readable CSV ({str(exc).splitlines()[0]})") from None
    missing = {"policy", "run", "utility", *EPISODE} - set(frame.columns)
    if missing:
        raise CompareEvalError(f"{path}: lacks column(s) {', '.join(sorted(missing))}")
    frame["run"] = frame["run"].fillna("").astype(str)
    return frame


def learners(frame: pd.DataFrame) -> list[str]:
    """The policies evaluated from trained runs, in the file's order."""
    return list(dict.fromkeys(frame.loc[frame["run"] != "", "policy"]))


def baseline_utility(frame: pd.DataFrame, baseline: str) -> pd.Series:
    rows = frame[frame["policy"] == baseline]
    if rows.empty:
        known = ", ".join(dict.fromkeys(frame["policy"]))
        raise CompareEvalError(f"baseline {baseline!r} was not evaluated here (policies: {known})")
    if (rows["run"] != "").any() or rows.duplicated(EPISODE).any():
        raise CompareEvalError(f"baseline {baseline!r} has more than one run; pick a heuristic")
    if rows["utility"].isna().any():
        raise CompareEvalError(f"baseline {baseline!r} has episodes without a utility")
    return rows.set_index(EPISODE)["utility"]


def differences(frame: pd.DataFrame, policy: str, base: pd.Series) -> pd.DataFrame:
    """One row per (run, day, seed) of ``policy``: its utility minus the baseline's on that episode. Every run
    must have run exactly the baseline's episodes, each once, each with a utility."""
    rows = frame[frame["policy"] == policy]
    if rows.empty:
        known = ", ".join(dict.fromkeys(frame["policy"]))
        raise CompareEvalError(f"{policy!r} was not evaluated here (policies: {known})")
    if (rows["run"] == "").any() and (rows["run"] != "").any():
        raise CompareEvalError(f"{policy}: rows with and without a run; a policy is a learner or a heuristic")
    if rows.duplicated(["run", *EPISODE]).any():
        raise CompareEvalError(f"{policy}: a run has an episode twice")
    if rows["utility"].isna().any():
        raise CompareEvalError(f"{policy}: episodes without a utility")
    episodes = set(base.index)
    for run, group in rows.groupby("run"):
        own = set(zip(group["day"], group["seed"], strict=True))
        if own != episodes:
            raise CompareEvalError(
                f"{policy} {run}: {len(own - episodes)} episode(s) the baseline did not run and "
                f"{len(episodes - own)} of the baseline's it did not run; the comparison needs the same episodes"
            )
    joined = rows.join(base.rename("base"), on=EPISODE)
    return joined.assign(diff=joined["utility"] - joined["base"])[["run", "day", "seed", "diff"]]


def shared_arrivals(frame: pd.DataFrame, baseline: str) -> dict[str, str]:
    """Each held-out day mapped to the first day with the same baseline arrivals on every seed (itself if none):
    such days are one draw of the arrival model, not two (it sees the date through the weekday)."""
    if "arrived" not in frame.columns:
        return {}
    rows = frame[frame["policy"] == baseline].sort_values("seed")
    keys = {day: tuple(group["arrived"]) for day, group in rows.groupby("day")}
    first: dict[tuple, str] = {}
    return {day: first.setdefault(key, day) for day, key in keys.items()}


def is_heuristic(diffs: pd.DataFrame) -> bool:
    """A heuristic's rows name no run (``differences`` refuses a policy that mixes the two)."""
    return bool((diffs["run"] == "").all())


def per_unit(diffs: pd.DataFrame) -> tuple[pd.Series, str]:
    """What a policy's difference is tested over, and its unit: a heuristic's episodes (one deterministic run, so
    the spread is the episodes'), a learner's runs (each run's mean)."""
    if is_heuristic(diffs):
        return diffs["diff"], "episodes"
    return diffs.groupby("run")["diff"].mean(), "runs"


def load_lines(diffs: pd.DataFrame, arrived: pd.Series) -> list[str]:
    """The difference on the busiest quarter of the episodes by jobs arrived and on the rest (the twin's gaps
    between policies open with the load), tested as the overall line is (``per_unit``)."""
    cut = float(arrived.quantile(0.75))
    busy = arrived.reindex(pd.MultiIndex.from_frame(diffs[EPISODE])).to_numpy() >= cut
    lines = []
    for label, rows in (("busiest quarter", diffs[busy]), ("other episodes", diffs[~busy])):
        per, unit = per_unit(rows)
        n = rows[EPISODE].drop_duplicates().shape[0]
        where = f"{'>=' if label == 'busiest quarter' else '<'} {cut:,.0f} jobs"
        lines.append(
            f"  {label} by jobs arrived ({n} episodes, {where}): {paired_text(per.to_numpy(), unit)}"
        )
    return lines


def policy_lines(
    policy: str,
    diffs: pd.DataFrame,
    bound: float | None,
    baseline: str,
    same: dict,
    arrived: pd.Series | None = None,
) -> list[str]:
    per_day = diffs.groupby("day")["diff"].mean()
    lines = [f"{policy} − {baseline} (EUR/day):"]
    per, unit = per_unit(diffs)
    lines.append(f"  over {unit}: {paired_text(per.to_numpy(), unit)}, better in {int((per > 0).sum())} of "
                 f"{len(per)} {unit}")  # fmt: skip
    if bound is not None:
        lines.append(f"    as points of the mean oracle bound ({fmt(bound)} EUR/day): "
                     f"{paired_text(100 * per.to_numpy() / bound, unit)}")  # fmt: skip
    lines.append(f"  over days: {paired_text(per_day.to_numpy(), 'days')}, better on {int((per_day > 0).sum())} "
                 f"of {len(per_day)} days")  # fmt: skip
    draws = per_day.groupby(per_day.index.map(same)).mean() if same else per_day
    if len(draws) < len(per_day):
        lines.append(f"  over distinct days (days with the same arrivals on every seed as one): "
                     f"{paired_text(draws.to_numpy(), 'distinct days')}")  # fmt: skip
    if arrived is not None and len(arrived) >= 4:
        lines += load_lines(diffs, arrived)
    lines.append("  per day: " + ", ".join(f"{day} {fmt(v)}" for day, v in per_day.items()))
    return lines


def by_seed(diffs: pd.DataFrame) -> pd.Series | None:
    """A run's mean difference indexed by its training seed (``__sN__`` in its name); None where a name lacks one."""
    per_run = diffs.groupby("run")["diff"].mean()
    seeds = [SEED.search(run) for run in per_run.index]
    if not all(seeds):
        return None
    index = [int(s.group(1)) for s in seeds]
    if len(set(index)) < len(index):
        raise CompareEvalError("two runs of one learner share a training seed: cannot pair learners by seed")
    return pd.Series(per_run.to_numpy(), index=index)


def oracle_bound(frame: pd.DataFrame, baseline: str) -> float | None:
    """The mean oracle bound over the baseline's episodes (``policies.evaluate`` writes it on every row; NaN
    with ``--no-bound``, then None)."""
    if "oracle_bound" not in frame.columns:
        return None
    values = frame.loc[frame["policy"] == baseline, "oracle_bound"]
    return float(values.mean()) if values.notna().all() else None


def with_runs_of(frame: pd.DataFrame, others: list[Path], baseline: str) -> pd.DataFrame:
    """``frame`` with the trained runs' rows of each evaluation in ``others``, which must have run the baseline on
    the same episodes with the same utilities (the same twin); each run may come from one evaluation only."""
    base = baseline_utility(frame, baseline)
    parts = [frame]
    for other in others:
        rows = load(other)
        ran_here = pd.MultiIndex.from_frame(rows[EPISODE]).isin(base.index)
        rows = rows[ran_here]  # episodes not run here stay out
        try:
            theirs = baseline_utility(rows, baseline).reindex(base.index)
        except CompareEvalError as exc:
            raise CompareEvalError(f"{other}: {exc}") from None
        if theirs.isna().any():
            raise CompareEvalError(
                f"{other}: {baseline} did not run {int(theirs.isna().sum())} of the episodes here"
            )
        differ = ~np.isclose(theirs.to_numpy(), base.to_numpy(), rtol=1e-9, atol=1e-9)
        if differ.any():
            raise CompareEvalError(
                f"{other}: {baseline}'s utility differs on {int(differ.sum())} of {len(base)} episodes "
                f"(not the same twin or arrivals)"
            )
        runs = rows[rows["run"] != ""]
        if runs.empty:
            raise CompareEvalError(f"{other}: no trained runs on the episodes here")
        seen = pd.concat(parts)
        seen = set(zip(seen["policy"], seen["run"], strict=True))
        twice = sorted(
            {f"{p} {r}" for p, r in zip(runs["policy"], runs["run"], strict=True) if (p, r) in seen}
        )
        if twice:
            raise CompareEvalError(f"{other}: {', '.join(twice)} evaluated in more than one folder")
        parts.append(runs)
    return pd.concat(parts, ignore_index=True)


def plot_differences(
    diffs: dict[str, pd.DataFrame], arrived: pd.Series | None, baseline: str, path: Path
) -> Path:
    """Each policy minus the baseline in EUR/day: per run (a heuristic: per episode) with the mean and its 95%
    interval (left), and per episode, a learner's runs averaged, against the jobs that arrived in it (right, on a
    symmetric log scale: a few episodes can differ by far more than the rest; only where ``arrived`` is known)."""
    import matplotlib.pyplot as plt

    names = list(diffs)
    fig, axes = plt.subplots(
        1, 2 if arrived is not None else 1, figsize=(11 if arrived is not None else 5, 4.2), squeeze=False
    )
    left = axes[0, 0]
    for i, name in enumerate(names):
        d = diffs[name]
        per, _ = per_unit(d)
        mean, half, _ = mean_ci(per)
        left.scatter(i + 0.3 * (np.arange(len(per)) / max(len(per) - 1, 1) - 0.5), per, s=10, alpha=0.5,
                     color=f"C{i}")  # fmt: skip
        left.errorbar(
            [i + 0.3], [mean], yerr=[0.0 if np.isnan(half) else half], fmt="o", capsize=4, color=f"C{i}"
        )
        if arrived is not None:
            episode = d.groupby(EPISODE)["diff"].mean()
            axes[0, 1].scatter(
                arrived.loc[episode.index], episode, s=12, alpha=0.6, color=f"C{i}", label=name
            )
    left.axhline(0.0, color="k", lw=0.8)
    left.set_xticks(range(len(names)), names, rotation=20, ha="right")
    left.set_ylabel(f"minus {baseline} (EUR/day)")
    left.set_title("per run (dots), mean and 95% CI")
    if arrived is not None:
        right = axes[0, 1]
        right.axhline(0.0, color="k", lw=0.8)
        right.set_xscale("log")
        right.set_yscale("symlog", linthresh=1.0)
        jobs_log_axis(right.xaxis)
        low, high = (min(right.dataLim.y0, -1.0), max(right.dataLim.y1, 1.0))  # every episode in view
        right.set_ylim(1.5 * low, 1.5 * high)
        right.set_xlabel("jobs arrived in the episode")
        right.set_ylabel(f"minus {baseline} (EUR, symlog)")
        right.set_title(f"each of {len(arrived)} episodes (runs averaged)")
        right.legend(fontsize=7, markerscale=1.5)
    fig.tight_layout()
    return save_figure(fig, path)


def days_of(folder: Path) -> list[str]:
    """The held-out days another ``policies.evaluate`` folder ran (its ``config.json``)."""
    path = folder / "config.json"
    try:
        days = json.loads(path.read_text(encoding="utf-8"))["days"]
    except (FileNotFoundError, NotADirectoryError):
        raise CompareEvalError(
            f"{path}: not found (a folder written by python -m policies.evaluate)"
        ) from None
    except OSError as exc:
        raise CompareEvalError(f"{path}: cannot be read ({exc.strerror})") from None
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError):
        raise CompareEvalError(f"{path}: not an evaluation's config (no list of days)") from None
    if not isinstance(days, list) or not all(isinstance(d, str) for d in days):
        raise CompareEvalError(f"{path}: 'days' is not a list of YYYY-MM-DD strings")
    return days


def compare(
    folder: Path,
    baseline: str,
    policies: list[str] | None = None,
    exclude: list[str] | None = None,
    also: list[Path] | None = None,
    png: Path | None = None,
) -> list[str]:
    frame = load(folder)
    excluded = sorted(set(frame["day"]) & set(exclude or []))
    if excluded:
        left = frame[~frame["day"].isin(excluded)]
        if left.empty:
            raise CompareEvalError(f"{folder}: every held-out day is excluded")
        frame = left
    if also:
        frame = with_runs_of(frame, also, baseline)
    base = baseline_utility(frame, baseline)
    chosen = learners(frame) if policies is None else policies
    if not chosen:
        raise CompareEvalError(
            f"{folder}: no trained runs were evaluated here" if policies is None else "no policy named"
        )
    bound = oracle_bound(frame, baseline)
    same = shared_arrivals(frame, baseline)
    days, episodes = base.index.get_level_values("day").nunique(), len(base)
    source = f"{folder} (with the runs of {', '.join(map(str, also))})" if also else str(folder)
    lines = [f"{source}: {', '.join(chosen)} against {baseline} ({fmt(float(base.mean()))} EUR/day), "
             f"paired on {episodes} episodes ({days} held-out days x arrival seeds)"]  # fmt: skip
    if exclude:
        named = len(set(exclude))
        rest = "" if len(excluded) == named else f" (it names {named}; the others were not evaluated here)"
        lines.append(f"left out: {len(excluded)} held-out day(s) named by --exclude-days-of{rest}")
    shared = sorted({(first, day) for day, first in same.items() if first != day})
    if shared:
        pairs = ", ".join(f"{a} = {b}" for a, b in shared)
        lines.append(f"days with the same arrivals on every seed (one draw of the arrival model): {pairs}")
    diffs = {policy: differences(frame, policy, base) for policy in chosen}
    arrived = frame.groupby(EPISODE)["arrived"].mean() if "arrived" in frame.columns else None
    for policy in chosen:
        lines += policy_lines(policy, diffs[policy], bound, baseline, same, arrived)
    if png is not None:
        lines.append(f"figure: {plot_differences(diffs, arrived, baseline, png)}")
    # two learners pair by training seed; a heuristic has none
    if len(chosen) == 2 and not any(is_heuristic(diffs[p]) for p in chosen):
        a, b = (by_seed(diffs[p]) for p in chosen)
        if a is None or b is None:
            lines.append(f"{chosen[0]} − {chosen[1]}: not paired by seed (run names without __sN__)")
        else:
            pair = seed_pairs(a, b)
            lines.append(f"{chosen[0]} − {chosen[1]}, paired by training seed (EUR/day): "
                         f"{paired_text((pair.a - pair.b).to_numpy())}")  # fmt: skip
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m policies.compare_eval", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("folder", type=Path, help="a folder written by python -m policies.evaluate")
    parser.add_argument("--baseline", default="quality-first", help="a heuristic evaluated in that folder")
    parser.add_argument(
        "--policies",
        help="comma-separated learners or heuristics (default: every policy with trained runs)",
    )
    parser.add_argument(
        "--exclude-days-of",
        type=Path,
        metavar="EVAL_DIR",
        help="leave out the held-out days another policies.evaluate folder ran (e.g. days a rule was tuned on)",
    )
    parser.add_argument(
        "--also",
        type=Path,
        action="append",
        metavar="EVAL_DIR",
        help="add the trained runs of another policies.evaluate folder that ran the same episodes (repeatable)",
    )
    parser.add_argument(
        "--png",
        type=Path,
        metavar="PATH",
        help="also draw each policy minus the baseline, per run and per episode",
    )
    args = parser.parse_args(argv)
    chosen = None if args.policies is None else [p for p in args.policies.split(",") if p]
    try:
        exclude = days_of(args.exclude_days_of) if args.exclude_days_of else None
        print("\n".join(compare(args.folder, args.baseline, chosen, exclude, args.also, args.png)))
    except CompareEvalError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
