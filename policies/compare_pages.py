"""One learner on one results page against one on another, paired by seed:
``python -m policies.compare_pages PAGE[+PAGE...][:POLICY[:SETTING]] PAGE[+PAGE...][:POLICY[:SETTING]] [--study sparsity]
[--until STEP]``.

A page's report compares its own learners; this compares across pages, e.g. sac trained with a per-slot reward
(one page) against sac trained with the daily settlement (another). Pairing by seed is fair only where both pages
evaluated on the same held-out days with the same arrival seeds (checked from their config.json): a seed's runs
then share those days and the training env's seed. Printed: the held-out outcome A − B (utility, % of the oracle,
violation rate, energy cost) and the area under the held-out learning curve (a seed's mean over its evaluations
after step 0, over the steps both pages evaluated), and where the runs chose their policy on validation days the
area under the deployed-policy curve (at each step, the held-out utility of the policy chosen by then;
``policies.report.chosen_curves``), each with its paired 95% t-interval. Against a heuristic or the
oracle (``PAGE:quality-first``), which run once, each learner seed is paired with that one deterministic run.

A side may pool pages that ran the same study on different seeds, e.g. a page of seeds 0-7 and its replication on
seeds 8-15 (``--first-seed 8``): ``results/a+results/a-seeds8-15:sac``. Pooled pages must pair like the two sides
(same scenario and held-out days), must not share a seed, and must have trained for the same number of steps;
the commits and training settings in which they differ are printed, for the reader to judge (a learner without a
shaper ignores the shaper's settings)."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from policies.experiment_settings import LEARNERS, PLAIN, STUDIES
from policies.report import (
    chosen_curves,
    fmt,
    held_out_curves,
    load_curves,
    load_study,
    paired_text,
    seed_areas,
    seed_pairs,
    setting_curves,
)


class CompareError(ValueError):
    """Pages that cannot be compared, or a side that names nothing on its page."""


@dataclass(frozen=True)
class Side:
    """One learner in one setting of one page's study: its per-seed outcome rows and held-out curve (empty
    where the page has none, or none it can tell belongs to this setting: ``curve_note`` says why)."""

    pages: tuple[Path, ...]
    policy: str
    setting: str
    outcome: pd.DataFrame
    curves: pd.DataFrame
    config: dict
    curve_note: str = ""
    #: Where the side pools pages: the training settings in which they differ (empty where they do not).
    pooled_note: str = ""

    @property
    def page(self) -> Path:
        """The first page: where a side's configuration comes from (its pooled pages share what matters)."""
        return self.pages[0]

    @property
    def label(self) -> str:
        return f"{'+'.join(p.name for p in self.pages)} {self.policy} ({self.setting})"


OUTCOME_COLUMNS = ("utility", "utility_pct_of_bound", "violation_rate", "energy_cost")
#: What a seed's two runs must share to pair: the scenario (name and text) and the held-out days and arrivals.
SHARED_CONFIG = ("scenario", "scenario_toml", "eval_days", "eval_day_seeds")


def parse_side(text: str) -> tuple[list[Path], str, str | None]:
    """``PAGE[+PAGE...][:POLICY[:SETTING]]`` (policy defaults to plain sac)."""
    pages, _, rest = text.partition(":")
    policy, _, setting = rest.partition(":")
    if not pages or "" in pages.split("+"):
        raise CompareError(f"{text!r}: expected PAGE[+PAGE...][:POLICY[:SETTING]]")
    return [Path(page) for page in pages.split("+")], policy or PLAIN, setting or None


def require_columns(frame: pd.DataFrame, columns, what: Path) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise CompareError(f"{what}: no column {', '.join(missing)}")


def load_side(text: str, study: str) -> Side:
    pages, policy, setting = parse_side(text)
    return pool([load_page(page, policy, setting, study) for page in pages])


def load_page(page: Path, policy: str, setting: str | None, study: str) -> Side:
    loaded = load_study(page, study)
    if loaded is None:
        raise CompareError(
            f"{page}: no {study} study there ({page / study / f'{study}.csv'} or its config.json missing)"
        )
    table, config = loaded
    require_columns(table, ("policy", "setting", "seed", "utility"), page / study / f"{study}.csv")
    rows = table[table.policy == policy]
    if rows.empty:
        raise CompareError(
            f"{page}: no {policy!r} rows; its learners: {', '.join(sorted(set(table.policy)))}"
        )
    settings = sorted(set(rows.setting))
    if setting is None:
        if len(settings) > 1:
            raise CompareError(
                f"{page}: {policy} ran in {', '.join(settings)}; name one as {page}:{policy}:SETTING"
            )
        setting = settings[0]
    elif setting not in settings:
        raise CompareError(f"{page}: {policy} has no setting {setting!r}; it ran in {', '.join(settings)}")
    curves, note = side_curves(load_curves(page, study), policy, setting, settings, page / study)
    return Side((page,), policy, setting, rows[rows.setting == setting], curves, config, note)


def pool(sides: list[Side]) -> Side:
    """One side made of the same learner on several pages with disjoint seeds (a study and its replications)."""
    first = sides[0]
    if len(sides) == 1:
        return first
    if first.policy not in LEARNERS:
        raise CompareError(f"{first.policy} is a baseline and runs once; name one page for it, not several")
    seen: dict[int, Path] = {}
    for side in sides:
        check_comparable(first, side)
        if side.setting != first.setting:
            raise CompareError(f"pooled pages ran {first.policy} in different settings: "
                               f"{first.page}: {first.setting}, {side.page}: {side.setting}")  # fmt: skip
        if total_steps(side) != total_steps(first):
            raise CompareError(f"pooled pages trained for different steps: {first.page}: {total_steps(first)}, "
                               f"{side.page}: {total_steps(side)}")  # fmt: skip
        if not side.curves.empty and not first.curves.empty and curve_steps(side) != curve_steps(first):
            raise CompareError(f"pooled pages evaluated their curves at different steps ({first.page}, {side.page}); "
                               "the area would leave one page's seeds out")  # fmt: skip
        for seed in sorted(set(side.outcome.seed) | set(side.curves.get("seed", []))):
            if seed in seen:
                raise CompareError(f"seed {seed} is on both {seen[seed]} and {side.page}; pooled pages must not "
                                   "share a seed")  # fmt: skip
            seen[seed] = side.page
    notes = [s.curve_note for s in sides if s.curves.empty]
    curves = pd.DataFrame() if notes else pd.concat([s.curves for s in sides], ignore_index=True)
    return Side(tuple(p for s in sides for p in s.pages), first.policy, first.setting,
                pd.concat([s.outcome for s in sides], ignore_index=True), curves, first.config,
                "; ".join(notes), pooled_differences(sides))  # fmt: skip


def curve_steps(side: Side) -> set[int]:
    return set(side.curves.step)


def budget(side: Side) -> dict:
    value = side.config.get("budget")
    return value if isinstance(value, dict) else {}


def total_steps(side: Side):
    return budget(side).get("total_steps")


def pooled_differences(sides: list[Side]) -> str:
    """The commits and training settings in which pooled pages differ, as ``key: page=value, ...`` (empty where
    none)."""
    trains = [
        {"commit": str(s.config.get("commit", "unknown"))[:7], **(budget(s).get("train") or {})}
        for s in sides
    ]
    keys = sorted({k for train in trains for k in train if len({repr(t.get(k)) for t in trains}) > 1})
    return "; ".join(
        f"{k}: "
        + ", ".join(f"{s.page.name}={t.get(k, 'default')}" for s, t in zip(sides, trains, strict=True))
        for k in keys
    )


def side_curves(curves: pd.DataFrame, policy: str, setting: str, ran_in: list[str], where: Path):
    """The held-out curve of ``policy`` in ``setting`` (``policies.report.setting_curves``), and why there is
    none where there is none."""
    if curves.empty or not held_out_curves(curves):
        return pd.DataFrame(), f"{where}: no held-out learning curves"
    require_columns(
        curves, ("policy", "seed", "step", "utility", "setting"), where / f"{where.name}_curves.csv"
    )
    found = setting_curves(curves, policy, setting, ran_in)
    if found is None:
        names = ", ".join(sorted(set(curves[curves.policy == policy].setting))) or "nothing"
        return pd.DataFrame(), f"{where}: {policy}'s curves are labelled {names}, none {setting!r}"
    return found, ""


def same_scenario(a: str, b: str) -> bool:
    """Whether two pages' scenario TOMLs describe the same scenario: parsed, so a field a later version writes
    out with its default value (e.g. ``prices.level = 1.0``) does not part them; compared as text where either
    does not parse."""
    import tomllib

    from twin.scenario import ScenarioError, scenario_from_dict

    try:
        return scenario_from_dict(tomllib.loads(a), "page") == scenario_from_dict(tomllib.loads(b), "page")
    except (tomllib.TOMLDecodeError, ScenarioError):
        return a == b


def check_comparable(a: Side, b: Side) -> None:
    """Same scenario, held-out days and their arrival seeds: otherwise a seed's two runs do not pair."""
    for key in SHARED_CONFIG:
        for side in (a, b):
            if side.config.get(key) is None:
                raise CompareError(
                    f"{side.page}: its config.json does not say {key}; cannot check that the pages pair"
                )
        same = same_scenario if key == "scenario_toml" else (lambda x, y: x == y)
        if not same(a.config[key], b.config[key]):
            shown = (
                "its text differs"
                if key == "scenario_toml"
                else f"{a.page}: {a.config[key]}, {b.page}: {b.config[key]}"
            )
            raise CompareError(
                f"the pages differ in {key} ({shown}); runs pair by seed only on the same held-out days"
            )


def pooled_lines(a: Side, b: Side) -> list[str]:
    """A line for each side that pools pages differing in commit or training settings."""
    return [f"{s.label} pools pages that differ in {s.pooled_note}" for s in (a, b) if s.pooled_note]


def paired_line(name: str, x: pd.Series, y: pd.Series) -> str:
    """Per-seed means of A and B and A − B's paired test, over the seeds where both are finite."""
    pair = seed_pairs(x, y)
    diff = paired_text((pair.a - pair.b).to_numpy())
    return f"  {name}: {fmt(pair.a.mean())} vs {fmt(pair.b.mean())}, A − B {diff}"


def area(curves: pd.DataFrame, steps: list[int]) -> pd.Series:
    """A seed's area over the given evaluation steps (``policies.report.seed_areas``), indexed by seed."""
    return seed_areas(curves, steps).groupby("seed").utility.mean()


def comparison(a: Side, b: Side, until: int | None = None) -> list[str]:
    check_comparable(a, b)
    baselines = [s for s in (a, b) if s.policy not in LEARNERS]
    if len(baselines) == 2:
        raise CompareError(
            f"{a.policy} and {b.policy} are both baselines (one deterministic run each): nothing to pair"
        )
    if baselines:
        if until is not None:
            raise CompareError("--until limits the area under the curve, and a baseline has no curve")
        return against_baseline(a, b)
    seeds = sorted(set(a.outcome.seed) & set(b.outcome.seed))
    if len(seeds) < 2:
        raise CompareError(
            f"the two share {len(seeds)} seed(s) ({a.label}: {len(set(a.outcome.seed))}, {b.label}: "
            f"{len(set(b.outcome.seed))}); pairing needs two or more"
        )
    lines = [f"A = {a.label}, B = {b.label}: {len(seeds)} seeds both ran ({', '.join(map(str, seeds))}), "
             f"held-out days {a.config['eval_days']} of scenario {a.config['scenario']}"]  # fmt: skip
    lines += pooled_lines(a, b)
    lines.append("held-out outcome (each run's evaluated policy; n: the seeds where both values are finite):")
    for column in OUTCOME_COLUMNS:
        if column in a.outcome.columns and column in b.outcome.columns:
            x, y = (s.outcome.groupby("seed")[column].mean() for s in (a, b))
            lines.append(paired_line(column, x, y))
    missing = [s.curve_note for s in (a, b) if s.curves.empty]
    if missing:
        return [*lines, "area under the learning curve: not computed; " + "; ".join(missing)]
    steps = sorted(set(a.curves.step[a.curves.step > 0]) & set(b.curves.step[b.curves.step > 0]))
    if until is not None:
        steps = [s for s in steps if s <= until]
    if not steps:
        up_to = f" up to {until}" if until is not None else ""
        return [
            *lines,
            f"area under the learning curve: no evaluation step after 0{up_to} common to both pages",
        ]
    lines.append(f"area under the held-out learning curve (a seed's mean utility over steps {steps[0]}-{steps[-1]}, "
                 f"the {len(steps)} evaluations both pages made; a seed missing one is left out):")  # fmt: skip
    lines.append(paired_line("utility", area(a.curves, steps), area(b.curves, steps)))
    chosen = [chosen_curves(s.curves) for s in (a, b)]
    without = [
        s.label for s, c in zip((a, b), chosen, strict=True) if set(c.get("seed", [])) != set(s.curves.seed)
    ]
    if without:  # none, or only some pooled pages' runs, chose on validation days
        return [*lines, "area under the deployed-policy curve: not computed; runs without validation evaluations in "
                + ", ".join(without)]  # fmt: skip
    lines.append("area under the deployed-policy curve (a seed's mean, over the same steps, of the held-out utility "
                 "of the policy its validation days had chosen by then):")  # fmt: skip
    lines.append(paired_line("utility", *(area(c, steps) for c in chosen)))
    return lines


def against_baseline(a: Side, b: Side) -> list[str]:
    """A learner's seeds against a heuristic or the oracle, which ran once (deterministic on the same held-out
    days and arrivals): A − B per seed of the learner, its interval over those seeds. No area: a baseline has no
    learning curve."""
    learner, base = (a, b) if a.policy in LEARNERS else (b, a)
    seeds = sorted(set(learner.outcome.seed))
    lines = [f"A = {a.label}, B = {b.label}: {base.policy} is a baseline, one deterministic run on held-out days "
             f"{a.config['eval_days']} of scenario {a.config['scenario']}; the interval is over {learner.policy}'s "
             f"{len(seeds)} seed{'s' * (len(seeds) != 1)} ({', '.join(map(str, seeds))})"]  # fmt: skip
    if learner.setting != base.setting:
        lines.append(f"note: the two ran in different settings ({learner.setting}, {base.setting})")
    lines += pooled_lines(a, b)
    lines.append(
        "held-out outcome (each run's evaluated policy; n: the learner's seeds where the value is finite):"
    )
    for column in OUTCOME_COLUMNS:
        if column in a.outcome.columns and column in b.outcome.columns:
            values = set(base.outcome[column].dropna())
            if len(values) > 1:
                raise CompareError(
                    f"{base.label}: {len(values)} distinct {column} values; a baseline runs once per setting"
                )
            x = learner.outcome.groupby("seed")[column].mean()
            y = pd.Series(values.pop() if values else float("nan"), index=x.index)  # none: not testable
            lines.append(paired_line(column, *((x, y) if learner is a else (y, x))))
    return [*lines, "area under the learning curve: not computed; a baseline has no learning curve"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m policies.compare_pages", description=__doc__.splitlines()[0])
    ap.add_argument(
        "a",
        metavar="A",
        help="PAGE[+PAGE...][:POLICY[:SETTING]], e.g. results/dense-80k-val:sac; pages joined by + pool their seeds",
    )
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
    except (OSError, ValueError) as exc:  # CompareError is a ValueError; so is a malformed CSV's
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
