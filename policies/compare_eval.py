"""Trained runs against a baseline in one ``policies.evaluate`` output, paired by episode:
``python -m policies.compare_eval EVAL_DIR [--baseline quality-first] [--policies A,B]``.

``policies.evaluate`` runs every policy on the same (day, arrival seed) episodes, so each episode of a trained run
pairs with the baseline's (a heuristic, deterministic) on that episode. For each learner (a ``policy`` whose rows
name a ``run``) this prints, in EUR/day and in points of the mean oracle bound where the oracle was evaluated:

- the mean over runs of a run's mean difference to the baseline, with the 95% t-interval over runs (the spread
  that training seeds make, on these days);
- the same difference per held-out day (mean over runs and arrival seeds) and a test over days (the spread that
  days make: a gain made on a few days shows here, not in the test over runs);
- with two learners, the first minus the second paired by training seed (``__sN__`` in the run's name).

Use it to re-evaluate a page's selected policies on more held-out days than its training evaluated (``--days``).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import pandas as pd

from policies.evaluate import ORACLE
from policies.report import fmt, paired_text

EPISODE = ["day", "seed"]
SEED = re.compile(r"__s(\d+)__")


class CompareEvalError(ValueError):
    """Bad input: the message is printed as one line."""


def load(folder: Path) -> pd.DataFrame:
    path = folder / "results.csv"
    if not path.is_file():
        raise CompareEvalError(f"{path}: not found (a folder written by python -m policies.evaluate)")
    frame = pd.read_csv(path)
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
    return rows.set_index(EPISODE)["utility"]


def differences(frame: pd.DataFrame, policy: str, base: pd.Series) -> pd.DataFrame:
    """One row per (run, day, seed) of ``policy``: its utility minus the baseline's on that episode."""
    rows = frame[frame["policy"] == policy]
    if rows.empty:
        raise CompareEvalError(
            f"policy {policy!r} was not evaluated here (learners: {', '.join(learners(frame))})"
        )
    joined = rows.join(base.rename("base"), on=EPISODE, how="inner")
    if len(joined) < len(rows):
        raise CompareEvalError(f"{policy}: {len(rows) - len(joined)} episode(s) the baseline did not run")
    return joined.assign(diff=joined["utility"] - joined["base"])[["run", "day", "seed", "diff"]]


def policy_lines(policy: str, diffs: pd.DataFrame, bound: float | None, baseline: str) -> list[str]:
    per_run = diffs.groupby("run")["diff"].mean()
    per_day = diffs.groupby("day")["diff"].mean()
    better = int((per_run > 0).sum())
    lines = [f"{policy} − {baseline} (EUR/day):"]
    lines.append(
        f"  over runs: {paired_text(per_run.to_numpy(), 'runs')}, better in {better} of {len(per_run)} runs"
    )
    if bound is not None:
        lines.append(f"    as points of the mean oracle bound ({fmt(bound)} EUR/day): "
                     f"{paired_text(100 * per_run.to_numpy() / bound, 'runs')}")  # fmt: skip
    lines.append(f"  over days: {paired_text(per_day.to_numpy(), 'days')}, better on {int((per_day > 0).sum())} "
                 f"of {len(per_day)} days")  # fmt: skip
    lines.append("  per day: " + ", ".join(f"{day} {fmt(v)}" for day, v in per_day.items()))
    return lines


def by_seed(diffs: pd.DataFrame) -> pd.Series:
    """A run's mean difference, indexed by its training seed (from ``__sN__`` in its name)."""
    per_run = diffs.groupby("run")["diff"].mean()
    seeds = [SEED.search(run) for run in per_run.index]
    if not all(seeds):
        raise CompareEvalError("run names without a training seed (__sN__): cannot pair two learners by seed")
    return pd.Series(per_run.to_numpy(), index=[int(s.group(1)) for s in seeds])


def compare(folder: Path, baseline: str, policies: list[str] | None = None) -> list[str]:
    frame = load(folder)
    base = baseline_utility(frame, baseline)
    chosen = policies or learners(frame)
    if not chosen:
        raise CompareEvalError(f"{folder}: no trained runs were evaluated here")
    oracle = frame.loc[frame["policy"] == ORACLE, "utility"]
    bound = float(oracle.mean()) if len(oracle) else None
    days, episodes = base.index.get_level_values("day").nunique(), len(base)
    lines = [f"{folder}: {', '.join(chosen)} against {baseline} ({fmt(float(base.mean()))} EUR/day), "
             f"paired on {episodes} episodes ({days} held-out days x arrival seeds)"]  # fmt: skip
    diffs = {policy: differences(frame, policy, base) for policy in chosen}
    for policy in chosen:
        lines += policy_lines(policy, diffs[policy], bound, baseline)
    if len(chosen) == 2:
        a, b = (by_seed(diffs[p]) for p in chosen)
        common = a.index.intersection(b.index)
        lines.append(f"{chosen[0]} − {chosen[1]}, paired by training seed (EUR/day): "
                     f"{paired_text((a[common] - b[common]).to_numpy())}")  # fmt: skip
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m policies.compare_eval", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("folder", type=Path, help="a folder written by python -m policies.evaluate")
    parser.add_argument("--baseline", default="quality-first", help="a heuristic evaluated in that folder")
    parser.add_argument(
        "--policies", help="comma-separated learners (default: every policy with trained runs)"
    )
    args = parser.parse_args(argv)
    chosen = [p for p in args.policies.split(",") if p] if args.policies else None
    try:
        print("\n".join(compare(args.folder, args.baseline, chosen)))
    except CompareEvalError as exc:
        print(f"compare_eval: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
