"""One learner on one results page against one on another, paired by seed:
``python -m policies.compare_pages PAGE[:POLICY[:SETTING]] PAGE[:POLICY[:SETTING]] [--study sparsity] [--until STEP]``.

A page's report compares its own learners; this compares across pages, e.g. sac trained with a per-slot reward
(one page) against sac trained with the daily settlement (another). Pairing by seed is fair only where both pages
evaluated on the same held-out days with the same arrival seeds (checked from their config.json): a seed's runs
then share those days and the training env's seed. Printed: the held-out outcome A − B (utility, % of the oracle,
violation rate, energy cost) and the area under the held-out learning curve (a seed's mean over its evaluations
after step 0, over the steps both pages evaluated), each with its paired 95% t-interval."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from policies.experiment_settings import PLAIN, STUDIES
from policies.report import fmt, held_out_curves, load_curves, load_study, paired_text


class CompareError(ValueError):
    """Pages that cannot be compared, or a side that names nothing on its page."""


@dataclass(frozen=True)
class Side:
    """One learner in one setting of one page's study: its per-seed outcome rows and held-out curve."""

    page: Path
    policy: str
    setting: str
    outcome: pd.DataFrame
    curves: pd.DataFrame
    config: dict

    @property
    def label(self) -> str:
        return f"{self.page.name} {self.policy} ({self.setting})"


def parse_side(text: str) -> tuple[Path, str, str | None]:
    """``PAGE[:POLICY[:SETTING]]`` (policy defaults to plain sac)."""
    page, _, rest = text.partition(":")
    policy, _, setting = rest.partition(":")
    if not page:
        raise CompareError(f"{text!r}: expected PAGE[:POLICY[:SETTING]]")
    return Path(page), policy or PLAIN, setting or None


def load_side(text: str, study: str) -> Side:
    page, policy, setting = parse_side(text)
    loaded = load_study(page, study)
    if loaded is None:
        raise CompareError(
            f"{page}: no {study} study there ({page / study / f'{study}.csv'} or its config.json missing)"
        )
    table, config = loaded
    rows = table[table.policy == policy]
    if rows.empty:
        raise CompareError(
            f"{page}: no {policy!r} rows; its learners: {', '.join(sorted(set(table.policy)))}"
        )
    settings = list(dict.fromkeys(rows.setting))
    if setting is None:
        if len(settings) > 1:
            raise CompareError(
                f"{page}: {policy} ran in {', '.join(settings)}; name one as {page}:{policy}:SETTING"
            )
        setting = settings[0]
    elif setting not in settings:
        raise CompareError(f"{page}: {policy} has no setting {setting!r}; it ran in {', '.join(settings)}")
    curves = load_curves(page, study)
    if curves.empty or not held_out_curves(curves):
        curves = pd.DataFrame()
    else:
        curves = curves[curves.policy == policy]
        # curves name a setting after the run's spec (settle=288+redistribute where the table says settle=daily)
        names = list(dict.fromkeys(curves.setting))
        if setting in names:
            curves = curves[curves.setting == setting]
        elif len(names) > 1:
            raise CompareError(
                f"{page}: {policy}'s curves are labelled {', '.join(names)}, none of them {setting!r}"
            )
    return Side(page, policy, setting, rows[rows.setting == setting], curves, config)


def check_comparable(a: Side, b: Side) -> None:
    """Same scenario, held-out days and their arrival seeds: otherwise a seed's two runs do not pair."""
    for key in ("scenario", "eval_days", "eval_day_seeds"):
        if a.config.get(key) != b.config.get(key):
            raise CompareError(
                f"the pages differ in {key} ({a.page}: {a.config.get(key)}, {b.page}: {b.config.get(key)}); "
                "runs pair by seed only on the same held-out days"
            )


def seed_means(frame: pd.DataFrame, column: str) -> pd.Series:
    return frame.groupby("seed")[column].mean()


def paired_line(name: str, x: pd.Series, y: pd.Series) -> str:
    common = x.index.intersection(y.index)
    diff = paired_text((x[common] - y[common]).to_numpy())
    return f"  {name}: {fmt(x[common].mean())} vs {fmt(y[common].mean())}, A − B {diff}"


def area(curves: pd.DataFrame, steps: list[int]) -> pd.Series:
    """A seed's mean held-out utility over the given evaluation steps."""
    return curves[curves.step.isin(steps)].groupby("seed").utility.mean()


def comparison(a: Side, b: Side, until: int | None = None) -> list[str]:
    check_comparable(a, b)
    seeds = sorted(set(a.outcome.seed) & set(b.outcome.seed))
    if len(seeds) < 2:
        raise CompareError(
            f"the pages share {len(seeds)} seed(s) for these learners; pairing needs two or more"
        )
    lines = [f"A = {a.label}, B = {b.label}: {len(seeds)} seeds paired ({', '.join(map(str, seeds))}), "
             f"held-out days {a.config.get('eval_days')} of scenario {a.config.get('scenario')}"]  # fmt: skip
    lines.append("held-out outcome (each run's evaluated policy; mean over the seeds both ran):")
    for column in ("utility", "utility_pct_of_bound", "violation_rate", "energy_cost"):
        if column in a.outcome.columns and column in b.outcome.columns:
            lines.append(paired_line(column, seed_means(a.outcome, column), seed_means(b.outcome, column)))
    if a.curves.empty or b.curves.empty:
        lines.append(
            "area under the learning curve: no held-out curves on "
            + (a.page if a.curves.empty else b.page).name
        )
        return lines
    steps = sorted(set(a.curves.step[a.curves.step > 0]) & set(b.curves.step[b.curves.step > 0]))
    if until is not None:
        steps = [s for s in steps if s <= until]
    if not steps:
        lines.append("area under the learning curve: no evaluation step after 0 common to both pages"
                     + (f" up to {until}" if until is not None else ""))  # fmt: skip
        return lines
    lines.append(f"area under the held-out learning curve (a seed's mean utility over steps {steps[0]}-{steps[-1]}, "
                 f"{len(steps)} evaluations both pages made):")  # fmt: skip
    lines.append(paired_line("utility", area(a.curves, steps), area(b.curves, steps)))
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m policies.compare_pages", description=__doc__.splitlines()[0])
    ap.add_argument("a", metavar="A", help="PAGE[:POLICY[:SETTING]], e.g. results/dense-80k-val:sac")
    ap.add_argument("b", metavar="B", help="the same for the other side")
    ap.add_argument(
        "--study", default="sparsity", choices=STUDIES, help="the study on both pages (default sparsity)"
    )
    ap.add_argument(
        "--until", type=int, help="area under the curve over the evaluations up to this step only"
    )
    args = ap.parse_args(argv)
    try:
        if args.until is not None and args.until <= 0:
            raise CompareError(f"--until {args.until}: expected a step after 0")
        lines = comparison(load_side(args.a, args.study), load_side(args.b, args.study), args.until)
    except (CompareError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
