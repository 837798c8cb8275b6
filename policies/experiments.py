"""The paper's evaluation in one resumable command: six studies plus a sparsity investigation, each a tidy CSV,
figures and a config under results/, and the README's results section: ``python -m policies.experiments --quick``.

``--only STUDY[,STUDY]`` runs a subset. Finished training runs and evaluations are kept under ``--runs-root``
and skipped when the command runs again, so an interrupted experiment continues where it stopped.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import sys
import time
from collections.abc import Callable, Iterable
from concurrent.futures import as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from policies.experiment_env import EnvSpec, VariantError, ablation_spec
from policies.experiment_settings import (
    ABLATIONS,
    LEARNERS,
    MAIN,
    PLAIN,
    REDISTRIBUTE,
    SHAPER_KNOBS,
    STUDIES,
    Budget,
    budget,
)
from policies.policy import spread
from policies.workers import spawn_pool
from traces.atomic import write_csv_atomic, write_json_atomic
from traces.revision import code_revision


class ExperimentError(ValueError):
    """Bad input to the experiment driver (unknown study, bad budget, ...): reported in one line."""


# --- jobs ----------------------------------------------------------------------------------------------------


def digest(obj: Any) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:10]


@dataclass(frozen=True)
class TrainJob:
    """One training run of a learner on a twin variant (its key names the run directory)."""

    label: str
    seed: int
    spec: EnvSpec
    total_steps: int
    train: tuple[tuple[str, Any], ...]  # policies.train.Args fields beyond the budget's defaults

    @property
    def algo_shaping(self) -> tuple[str, str]:
        return LEARNERS[self.label]

    def key(self) -> str:
        return digest([self.label, self.seed, self.spec.to_dict(), self.total_steps, list(self.train)])

    def run_dir(self, root: Path) -> Path:
        return root / "train" / f"{self.label}__s{self.seed}__{self.key()}"


@dataclass(frozen=True)
class EvalJob:
    """One policy evaluated on the held-out days of one setting of one study."""

    study: str
    setting: str
    policy: str  # a learner label, a heuristic name or "oracle"
    seed: int
    spec: EnvSpec
    days: tuple[int, ...]
    day_seeds: tuple[int, ...]
    train: TrainJob | None = None
    extra: tuple[tuple[str, Any], ...] = field(default_factory=tuple)  # e.g. shaper settings, k

    def key(self) -> str:
        train = self.train.key() if self.train else None
        return digest([self.policy, self.seed, self.spec.to_dict(), self.days, self.day_seeds, train])

    def out_path(self, root: Path) -> Path:
        """Keyed by content only, so a setting shared by several studies is evaluated once."""
        return root / "eval" / f"{self.policy.replace('/', '-')}__s{self.seed}__{self.key()}.csv"


# --- the settings of each study ------------------------------------------------------------------------------


@dataclass
class Plan:
    """The training and evaluation jobs of the selected studies (training deduplicated by key)."""

    train: dict[str, TrainJob] = field(default_factory=dict)
    evals: list[EvalJob] = field(default_factory=list)
    curves: dict[str, list[tuple[str, TrainJob]]] = field(default_factory=dict)  # study -> (setting, run)


def train_job(b: Budget, label: str, seed: int, spec: EnvSpec, **over: Any) -> TrainJob:
    """The run; settings equal to ``policies.train``'s defaults are left out, and so are settings the learner
    never reads (the shaper's without shaping, SAC's for TD3, ...), so equal runs share a key (trained once)."""
    from policies.agents import unused_settings
    from policies.train import Args

    defaults = {f.name: f.default for f in dataclasses.fields(Args)}
    unused = unused_settings(*LEARNERS[label])
    extra = {
        k: v for k, v in {**b.train, **over}.items() if defaults.get(k, object()) != v and k not in unused
    }
    return TrainJob(label, seed, spec, b.total_steps, tuple(sorted(extra.items())))


def heuristic_names() -> list[str]:
    """Names of the heuristics ``policies.heuristics`` offers."""
    from policies.heuristics import HEURISTICS

    return sorted(HEURISTICS)


def study_settings(study: str, b: Budget, base: EnvSpec) -> list[tuple[str, EnvSpec, str, dict]]:
    """(setting name, eval env, train env, extra train args) for every setting of ``study``."""
    if study in ("convergence", "outcome"):
        return [("base", base, "base", {})]
    if study == "prices":
        return [(f"k={k:g}", dataclasses.replace(base, price_k=k), "base", {}) for k in b.price_k]
    if study == "models":
        return [(m, dataclasses.replace(base, mix=m), "same", {}) for m in b.model_mixes]
    if study == "ablations":
        return [(a, ablation_spec(base, a), "same", {}) for a in b.ablations]
    if study == "sensitivity":
        rows = [(f"W={w}", base, "base", {"shaper_steps": w}) for w in b.shaper_steps]
        rows += [(f"M={m}", base, "base", {"latent": m}) for m in b.latent]
        rows += [(f"eta={e:g}", base, "base", {"eta": e}) for e in b.eta]
        return rows
    if study == "energy":  # trained in the variant: what is worth doing changes with the level
        return [
            (f"level={k:g}", dataclasses.replace(base, price_level=k), "same", {}) for k in b.price_levels
        ]
    if study == "sparsity":

        def settled(s: str) -> EnvSpec:
            return dataclasses.replace(base, settlement_slots=settle_slots(b, s))

        rows = [(f"settle={s}", settled(s), "same", {}) for s in b.settlements]
        if b.train.get("reward_mix") == REDISTRIBUTE:  # every setting above is redistributed already
            return rows
        return rows + [(f"settle={s}+{REDISTRIBUTE}", settled(s), "same", {"reward_mix": REDISTRIBUTE})
                       for s in b.redistributed]  # fmt: skip
    raise ExperimentError(f"unknown study {study!r}; choose from {', '.join(STUDIES)}")


def settle_slots(b: Budget, name: str) -> int | None:
    """Settlement period in slots: the scenario's own (None), once a day, or a number of slots."""
    if name == "scenario":
        return None
    if name == "daily":
        from twin.scenario import load_scenario

        return load_scenario(b.scenario).slots_per_episode
    return int(name)


#: The ``Budget`` fields holding a study's learners (``--learners`` sets them all).
LEARNER_FIELDS = (
    "learners",
    "price_learners",
    "model_learners",
    "ablation_learners",
    "sparsity_learners",
    "energy_learners",
)


def study_learners(study: str, b: Budget, spec: EnvSpec | None = None) -> tuple[str, ...]:
    """The learners ``study`` trains (in the setting of ``spec``: the energy study trains only at some levels)."""
    if study == "energy" and spec is not None and spec.price_level not in b.trained_levels:
        return ()
    return {
        "convergence": b.learners,
        "outcome": b.learners,
        "prices": b.price_learners,
        "models": b.model_learners,
        "ablations": b.ablation_learners,
        "sensitivity": (MAIN,),
        "sparsity": b.sparsity_learners,
        "energy": b.energy_learners,
    }[study]


CURVE_STUDIES = ("convergence", "models", "ablations", "sensitivity", "sparsity", "energy")


def plan(studies: Iterable[str], b: Budget, days: tuple[int, ...], day_seeds: tuple[int, ...]) -> Plan:
    """Every job the studies need; a training run shared by several studies is trained once."""
    base = EnvSpec(b.scenario)
    out = Plan()
    baselines = ["oracle", *heuristic_names()]
    for study in studies:
        for setting, spec, train_env, over in study_settings(study, b, base):
            tspec = base if train_env == "base" else spec
            for label in study_learners(study, b, spec):
                for seed in b.seeds:
                    job = train_job(b, label, seed, tspec, **over)
                    out.train[job.key()] = job
                    if study in CURVE_STUDIES:
                        out.curves.setdefault(study, []).append((setting, job))
                    if study != "convergence":
                        extra = tuple(sorted(over.items()))
                        out.evals.append(
                            EvalJob(study, setting, label, seed, spec, days, day_seeds, job, extra)
                        )
            # sensitivity: every setting has the base env; only its bound is needed (for % of oracle)
            names = ["oracle"] if study == "sensitivity" else baselines
            if study != "convergence":
                out.evals += [EvalJob(study, setting, n, 0, spec, days, day_seeds) for n in names]
    return out


# --- workers (run in the process pool) -----------------------------------------------------------------------


def run_train(job: TrainJob, root: Path) -> dict[str, Any]:
    """Train (or resume) one run; a ``done.json`` beside it marks it finished and is what resumption skips."""
    import shutil

    from policies.experiment_env import register
    from policies.run_dir import RunDir
    from policies.train import Args, train

    run = RunDir(job.run_dir(root))
    done = run.path / "done.json"
    if done.is_file():
        return json.loads(done.read_text(encoding="utf-8"))
    resume = run.latest_checkpoint() is not None
    if run.path.exists() and not resume:
        shutil.rmtree(run.path)  # interrupted before its first checkpoint: start again
    algo, shaping = job.algo_shaping
    args = Args(
        algo=algo, shaping=shaping, env_id=register(job.spec), seed=job.seed, total_steps=job.total_steps,
        run_dir=str(run.path), resume=resume, progress=False, tensorboard=False, threads=1, **dict(job.train),
    )  # fmt: skip
    t0 = time.perf_counter()
    train(args)
    result = {
        "key": job.key(),
        "wall_s": time.perf_counter() - t0,
        "resumed": resume,
        "steps": job.total_steps,
    }
    write_json_atomic(run.path / "train_job.json", dataclasses.asdict(job))
    write_json_atomic(done, result)
    return result


def make_policy(job: EvalJob, root: Path) -> tuple[Any, int | None]:
    """The policy object of an evaluation job (the oracle is handled by ``run_eval`` itself) and, for a run that
    selected its policy on validation days, the env step of the one chosen (None otherwise)."""
    if job.train is None:
        from policies.heuristics import make_heuristic

        return make_heuristic(job.policy), None
    from policies.evaluate import run_policy
    from policies.run_dir import RunDir, RunDirError

    run = RunDir(job.train.run_dir(root))
    try:
        policy = run_policy(run, run.load_config(), name=job.policy)
    except RunDirError as exc:
        raise ExperimentError(f"{exc}: train it first") from None
    return policy, policy.step if run.selects_on_validation() else None


def episode_row(policy: str, day: str, seed: int, totals: dict, steps: float, quality: float) -> dict:
    """The evaluator's row (``policies.evaluate.make_row``) plus the training metric's violation rate
    ((late + dropped) / (served + dropped), ``policies.train.episode_rates``)."""
    from policies.evaluate import make_row
    from policies.train import episode_rates

    row = make_row(policy, "", day, seed, totals, steps, quality, None)
    row.update(episode_rates(totals))
    row.update({k: totals[k] for k in ("battery_charge_kwh", "battery_discharge_kwh", "export_kwh")})
    return row


def oracle_row(env, day: int, seed: int) -> dict[str, Any]:
    """The LP bound of the episode (reset on ``day`` with ``seed``), in the same columns as a policy's row."""
    from policies.oracle import oracle_bound

    _, info = env.reset(seed=seed, options={"split": "eval", "day": day})
    sol = oracle_bound(env)
    totals = {**sol.totals, "utility": sol.value}
    return episode_row("oracle", str(info["day"]), seed, totals, sol.mean_steps, sol.mean_quality)


def run_eval(job: EvalJob, root: Path) -> dict[str, Any]:
    """Evaluate one policy on the job's held-out days; rows written atomically, skipped if already there."""
    from policies.experiment_env import make_env
    from policies.policy import run_episode

    path = job.out_path(root)
    if path.is_file():
        return {"path": str(path), "skipped": True}
    env = make_env(job.spec)
    t0 = time.perf_counter()
    rows, step = [], None
    if job.policy == "oracle":
        rows = [oracle_row(env, d, s) for d, s in zip(job.days, job.day_seeds, strict=True)]
    else:
        policy, step = make_policy(job, root)
        for d, s in zip(job.days, job.day_seeds, strict=True):
            res = run_episode(env, policy, day=d, seed=s)
            rows.append(episode_row(job.policy, res.day, s, res.totals, res.mean_steps, res.mean_quality))
    frame = pd.DataFrame(rows).rename(columns={"seed": "day_seed"}).drop(columns=["policy", "run"])
    if step is not None:
        frame["policy_step"] = step
    frame["eval_wall_s"] = time.perf_counter() - t0
    write_csv_atomic(path, frame)
    return {"path": str(path), "skipped": False}


# --- running jobs --------------------------------------------------------------------------------------------


def run_all(fn: Callable, jobs: list, root: Path, workers: int, desc: str, progress: bool) -> list[str]:
    """Run ``fn(job, root)`` for every job, in a pool of ``workers`` processes; returns failure messages."""
    failures: list[str] = []
    bar = tqdm(total=len(jobs), desc=desc, unit="run", disable=not progress, dynamic_ncols=True)
    if workers <= 1:
        for job in jobs:
            failures += _guard(lambda j=job: fn(j, root), job)
            bar.update(1)
    else:
        with spawn_pool(workers) as pool:
            futures = {pool.submit(fn, job, root): job for job in jobs}
            for fut in as_completed(futures):
                failures += _guard(fut.result, futures[fut])
                bar.update(1)
    bar.close()
    return failures


def _guard(call: Callable, job) -> list[str]:
    try:
        call()
    except Exception as exc:  # one failed run must not lose the others; reported at the end
        return [f"{type(job).__name__} {getattr(job, 'label', getattr(job, 'policy', ''))}: {exc}"]
    return []


# --- assembling the study tables -----------------------------------------------------------------------------

ID_COLS = ["study", "setting", "policy", "seed"]


def eval_days(b: Budget) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Evenly spaced held-out days of the budget's scenario and one fixed arrival seed per day."""
    from policies.experiment_env import make_env

    pool = make_env(EnvSpec(b.scenario)).unwrapped.eval_days
    if b.eval_days > len(pool):
        raise ExperimentError(f"{b.eval_days} evaluation days asked, the scenario holds out {len(pool)}")
    days = tuple(int(d) for d in spread(list(pool), b.eval_days))
    return days, tuple(10_000 + i for i in range(len(days)))


def study_days(study: str, p: Plan, root: Path) -> pd.DataFrame:
    """Per-day rows of a study's evaluations, with each day's oracle bound and the utility as % of it."""
    parts = [labelled(j, root) for j in p.evals if j.study == study and j.out_path(root).is_file()]
    if not parts:
        return pd.DataFrame()
    days = pd.concat(parts, ignore_index=True).drop(columns=["oracle_bound", "utility_pct_of_bound"])
    oracle = days[days.policy == "oracle"][["setting", "day", "utility"]]
    days = days.merge(oracle.rename(columns={"utility": "oracle_bound"}), on=["setting", "day"], how="left")
    days["utility_pct_of_bound"] = 100.0 * days["utility"] / days["oracle_bound"]
    return days


def labelled(job: EvalJob, root: Path) -> pd.DataFrame:
    """An evaluation's rows with the study, setting, policy, seed and setting parameters it stands for."""
    frame = pd.read_csv(job.out_path(root))
    for i, (k, v) in enumerate(zip(ID_COLS, (job.study, job.setting, job.policy, job.seed), strict=True)):
        frame.insert(i, k, v)
    for k, v in job.extra:
        frame[k] = v
    return frame


def study_table(days: pd.DataFrame) -> pd.DataFrame:
    """One row per (study, setting, policy, seed): means over the held-out days; % of the summed oracle."""
    if days.empty:
        return days
    num = [c for c in days.columns if c not in ID_COLS and c not in ("day", "day_index")]
    num = [c for c in num if pd.api.types.is_numeric_dtype(days[c])]
    table = days.groupby(ID_COLS, sort=False)[num].mean().reset_index()
    table["days"] = days.groupby(ID_COLS, sort=False).size().to_numpy()
    table["utility_pct_of_bound"] = 100.0 * table["utility"] / table["oracle_bound"]
    return table


#: Learning-curve columns taken from a run's metrics.csv (one row per training episode): source -> name.
CURVE_COLS = {"step": "step", "episode": "episode", "episode_return": "episode_return", "info/utility": "utility",
              "violation_rate": "violation_rate", "shaper/corr_hidden": "shaper_corr_hidden",
              "shaper/term_std": "shaper_term_std"}  # fmt: skip


def curves_table(runs: list[tuple[str, TrainJob]], root: Path) -> pd.DataFrame:
    """Learning curves of (setting, run) pairs, labelled with the study's setting as its table is: per held-out
    evaluation (a run's eval.csv, when it has one: ``curve_source`` held-out; with the validation days' utility
    where the run selected on them) or else per training episode (metrics.csv: ``training``), the utility per day
    (unscaled) and the rates. A run shared by settings (the sensitivity study's defaults) is under each."""
    frames = []
    for setting, job in dict.fromkeys(runs):
        m = run_curve(job.run_dir(root))
        if m is None:
            continue
        m.insert(0, "seed", job.seed)
        m.insert(0, "policy", job.label)
        for k, v in job.train:
            if k in SHAPER_KNOBS:
                m[k] = v
        m["setting"] = setting
        frames.append(m)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def run_curve(run_dir: Path) -> pd.DataFrame | None:
    """One run's curve in ``CURVE_COLS`` plus ``curve_source``; None if the run has logged nothing yet."""
    from policies.run_dir import EVAL_FILE, METRICS_FILE

    metrics, held = run_dir / METRICS_FILE, run_dir / EVAL_FILE
    m = pd.read_csv(metrics) if metrics.is_file() else None
    if m is not None:
        m = m[[c for c in CURVE_COLS if c in m.columns]].rename(columns=CURVE_COLS)
    if not held.is_file():
        return None if m is None else m.assign(curve_source="training")
    e = pd.read_csv(held)
    e = e[["step", "utility", "violation_rate", *(["val_utility"] if "val_utility" in e.columns else [])]]
    e = e.sort_values("step")
    if m is not None:  # episodes done and the shaper's diagnostics as of each evaluation's step
        cols = [c for c in ("episode", "shaper_corr_hidden", "shaper_term_std") if c in m.columns]
        e = pd.merge_asof(e, m[["step", *cols]].sort_values("step"), on="step", direction="backward")
    e["episode_return"] = np.nan  # a training-episode quantity: none for a held-out evaluation
    return e.assign(curve_source="held-out")


def paired_to_plain(curves: pd.DataFrame) -> pd.Series:
    """Each episode's utility minus plain SAC's on the same training episode (same seed: same day and
    arrivals), which removes the day-to-day variation the learners share; NaN where there is no SAC run."""
    plain = curves[curves.policy == PLAIN][["setting", "seed", "step", "utility"]]
    merged = curves.merge(
        plain.rename(columns={"utility": "_plain"}), on=["setting", "seed", "step"], how="left"
    )
    return pd.Series((merged.utility - merged._plain).to_numpy(), index=curves.index)


def convergence_summary(curves: pd.DataFrame, tail: float = 0.25) -> pd.DataFrame:
    """Per (policy, seed): mean curve utility (held-out evaluations or training episodes: ``curve_source``)
    over the last ``tail`` of the steps (and over all),
    the same paired with plain SAC's episodes, and the shaper's last diagnostics."""
    curves = curves.assign(minus_sac=paired_to_plain(curves))
    rows = []
    for (policy, setting, seed), g in curves.groupby(["policy", "setting", "seed"], sort=False):
        last = g[g.step >= g.step.max() * (1 - tail)]
        rows.append({"study": "convergence", "setting": setting, "policy": policy, "seed": seed,
                     "utility": last.utility.mean(), "utility_all_episodes": g.utility.mean(),
                     "utility_minus_sac": last.minus_sac.mean(), "utility_minus_sac_all": g.minus_sac.mean(),
                     "violation_rate": last.violation_rate.mean() if "violation_rate" in g else np.nan,
                     "episodes": len(g), "steps": int(g.step.max()),
                     "curve_source": g.curve_source.iloc[0] if "curve_source" in g else "training",
                     **{c: g[c].dropna().iloc[-1] if g[c].notna().any() else np.nan
                        for c in ("shaper_corr_hidden", "shaper_term_std") if c in g}})  # fmt: skip
    return pd.DataFrame(rows)


# --- provenance ----------------------------------------------------------------------------------------------

#: The experiments' own outputs: a run rewrites them as it goes, so they do not make the commit dirty.
OUTPUTS = ("results", "README.md")


def utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def study_config(
    study: str, b: Budget, argv: list[str], days, day_seeds, wall_s: float, started: str
) -> dict:
    from policies.experiment_env import build_scenario

    return {
        "study": study,
        "command": "python -m policies.experiments " + " ".join(argv),
        "commit": code_revision(ignore=OUTPUTS),
        "scenario": b.scenario,
        "scenario_toml": build_scenario(EnvSpec(b.scenario)).to_toml(),
        "budget": b.to_dict(),
        "eval_days": list(days),
        "eval_day_seeds": list(day_seeds),
        "invocation_wall_s": round(wall_s, 1),
        "started_utc": started,
        "full_estimate_h": round(estimate_hours(budget("full")), 1),
        "finished_utc": utc_now(),
    }


def job_seconds(p: Plan, root: Path) -> dict[str, float]:
    """Seconds the plan's training runs and evaluations took, each counted once, whichever invocation ran it."""
    t = [json.loads(f.read_text(encoding="utf-8")).get("wall_s", 0.0) for j in p.train.values()
         if (f := j.run_dir(root) / "done.json").is_file()]  # fmt: skip
    e = [pd.read_csv(f).eval_wall_s.iloc[0] for j in {j.key(): j for j in p.evals}.values()
         if (f := j.out_path(root)).is_file()]  # fmt: skip
    return {
        "train_runs": len(t),
        "train_s": round(float(sum(t)), 1),
        "evals": len(e),
        "eval_s": round(float(sum(e)), 1),
    }


def write_study(study: str, p: Plan, root: Path, out: Path, config: dict[str, Any]) -> None:
    """The study's CSVs, figures and config under ``out/<study>/``."""
    from policies import report

    folder = out / study
    curves = curves_table(p.curves.get(study, []), root)
    if study == "convergence":
        table = convergence_summary(curves) if not curves.empty else pd.DataFrame()
    else:
        days = study_days(study, p, root)
        table = study_table(days)
        if not days.empty:
            write_csv_atomic(folder / f"{study}_days.csv", days)
    if not curves.empty:
        write_csv_atomic(folder / f"{study}_curves.csv", curves)
    if not table.empty:
        write_csv_atomic(folder / f"{study}.csv", table)
    write_json_atomic(folder / "config.json", {**config, "job_seconds": job_seconds(p, root)})
    report.study_figures(study, folder, table, curves, config)


# --- command line --------------------------------------------------------------------------------------------


def parse_names(text: str, allowed: Iterable[str], kind: str) -> tuple[str, ...]:
    """A comma-separated subset of ``allowed``, in the order given; an unknown name is a one-line error."""
    names = tuple(dict.fromkeys(s.strip() for s in text.split(",") if s.strip()))  # a repeat is run once
    bad = [s for s in names if s not in allowed]
    if bad or not names:
        raise ExperimentError(
            f"unknown {kind} {', '.join(bad) or repr(text)}; choose from {', '.join(allowed)}"
        )
    return names


def parse_studies(text: str | None) -> list[str]:
    names = parse_names(text, STUDIES, "study") if text else STUDIES
    return [s for s in STUDIES if s in names]


#: ``policies.train.Args`` fields the driver sets itself for every run.
DRIVER_SET = ("algo", "shaping", "env_id", "seed", "total_steps", "run_dir", "runs_root", "resume", "progress",
              "tensorboard", "threads", "scenario", "reward_mode", "settle_every")  # fmt: skip


def parse_train_settings(items: list[str], base: dict[str, Any] | None = None) -> dict[str, Any]:
    """``KEY=VALUE`` items as ``policies.train.Args`` fields of the right type, validated as a run validates them
    on top of the budget's ``base`` settings (so a bad value is one line now, not a failed run hours later).
    Values equal to the default are dropped, unless they undo one of the budget's own (``val_days=0`` under
    ``--full``)."""
    from policies.agents import AgentError
    from policies.train import Args, TrainError, parse_value

    defaults = {f.name: f.default for f in dataclasses.fields(Args)}
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in defaults or key in DRIVER_SET:
            raise ExperimentError(f"--train {item!r}: expected KEY=VALUE with KEY a policies.train setting "
                                  f"(not one the driver sets: {', '.join(DRIVER_SET)})")  # fmt: skip
        try:
            out[key] = parse_value(key, text)
        except ValueError as exc:
            raise ExperimentError(f"--train {item!r}: {exc}") from None
    try:
        dataclasses.replace(Args(), **{**(base or {}), **out}).validate()
    except (TrainError, AgentError) as exc:
        raise ExperimentError(f"--train: {exc}") from None
    return {k: v for k, v in out.items() if v != defaults[k] or k in (base or {})}


def parse_settlements(text: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(s.strip() for s in text.split(",") if s.strip()))
    bad = [
        s
        for s in names
        if s not in ("scenario", "daily") and not (s.isascii() and s.isdigit() and int(s) >= 1)
    ]
    if bad or not names:
        raise ExperimentError(
            f"bad settlement period {', '.join(bad) or repr(text)}: use scenario, daily or a number of slots >= 1"
        )
    return names


def parse_levels(text: str, flag: str) -> tuple[float, ...]:
    """Comma-separated positive price levels (``--price-levels 1,10,30``), in the order given."""
    try:
        levels = tuple(dict.fromkeys(float(x) for x in text.split(",") if x.strip()))
    except ValueError:
        levels = ()
    if not levels or not all(np.isfinite(k) and k > 0 for k in levels):
        raise ExperimentError(f"{flag} {text!r}: expected comma-separated positive numbers, e.g. 1,10,30")
    return levels


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m policies.experiments", description=" ".join(__doc__.split("\n\n")[0].split())
    )
    size = ap.add_mutually_exclusive_group(required=True)
    size.add_argument(
        "--quick",
        action="store_true",
        help="minutes on 2 CPU cores: scenario tiny, small networks, 2 seeds, 3 held-out days, subsets of "
        "settings (policies/experiment_settings.py)",
    )
    full = budget("full")
    size.add_argument(
        "--full",
        action="store_true",
        help=f"the real thing: scenario {full.scenario}, {full.total_steps} steps x {len(full.seeds)} seeds per "
        f"run, {full.eval_days} held-out days; estimated {estimate_hours(full):.0f} h of training on 2 CPU "
        "cores (--dry-run prints the plan)",
    )
    ap.add_argument("--only", help=f"comma-separated subset of: {', '.join(STUDIES)}")
    ap.add_argument("--scenario", help="run on this scenario instead of the budget's (name or TOML path)")
    ap.add_argument("--seeds", type=int, help="use seeds 0..N-1 instead of the budget's")
    ap.add_argument(
        "--first-seed",
        type=int,
        default=0,
        help="number the seeds from this one (e.g. --seeds 8 --first-seed 8: seeds 8..15, a replication with fresh "
        "seeds)",
    )
    ap.add_argument("--total-steps", type=int, help="training steps per run instead of the budget's")
    ap.add_argument("--eval-days", type=int, help="held-out days per evaluation instead of the budget's")
    ap.add_argument(
        "--eval-every",
        type=int,
        help="held-out evaluation during training every N steps instead of the budget's",
    )
    ap.add_argument(
        "--settlements",
        help="sparsity study: comma-separated settlement periods instead of the budget's: scenario (its own), "
        "daily, or a number of slots",
    )
    ap.add_argument(
        "--redistributed",
        help="sparsity study: settlement periods (as --settlements) also trained with reward_mix=redistribute, "
        "instead of the budget's (daily); none for none",
    )
    ap.add_argument(
        "--price-levels",
        help="energy study: comma-separated price levels (every price times the level) for the oracle and the "
        "heuristics instead of the budget's",
    )
    ap.add_argument(
        "--trained-levels",
        help="energy study: the price levels at which the learners are trained, a subset of the price levels, "
        "instead of the budget's (none for none)",
    )
    ap.add_argument(
        "--learners",
        help=f"comma-separated learners of every study but sensitivity instead of the budget's, from "
        f"{', '.join(LEARNERS)} (sac+perfect: a diagnostic that learns from the hidden per-slot reward)",
    )
    ap.add_argument(
        "--ablations",
        help=f"ablation study: comma-separated subset of {', '.join(ABLATIONS)} instead of the budget's",
    )
    ap.add_argument(
        "--train",
        action="append",
        metavar="KEY=VALUE",
        help="a policies.train setting for every run instead of the budget's (repeatable), e.g. eta=1.0 or "
        "ent_coef=auto_0.1; a learner without shaping ignores the shaper's settings",
    )
    ap.add_argument("--out", default="results", help="results folder (default: results)")
    ap.add_argument(
        "--runs-root",
        default=None,
        help="training runs and eval parts (default: runs/experiments/<budget>-<scenario>)",
    )
    ap.add_argument("--workers", type=int, default=2, help="process pool size (torch uses 1 thread each)")
    ap.add_argument("--readme", default="README.md", help="README whose results section is regenerated")
    ap.add_argument("--no-readme", action="store_true", help="do not touch the README")
    ap.add_argument("--no-progress", action="store_true", help="no progress bars")
    ap.add_argument(
        "--dry-run", action="store_true", help="print what would run (and what is done), run nothing"
    )
    return ap


def describe(p: Plan, b: Budget, root: Path) -> str:
    """What the plan holds and how much of it is finished under ``root``."""
    done = sum((j.run_dir(root) / "done.json").is_file() for j in p.train.values())
    evals = {j.key(): j for j in p.evals}.values()
    evaluated = sum(j.out_path(root).is_file() for j in evals)
    return (
        f"budget {b.name} on {b.scenario}: {len(p.train)} training runs of {b.total_steps} steps "
        f"({len(p.train) * b.total_steps:,} env steps; {done} finished), {len(evals)} evaluations of "
        f"{b.eval_days} held-out days ({evaluated} finished); training estimate "
        f"{estimate_hours(b, p):.1f} h with 2 workers at the measured {b.s_per_step * 1000:.0f} ms per step"
    )


def estimate_hours(b: Budget, p: Plan | None = None, workers: int = 2) -> float:
    """Training wall time of a budget's plan (all studies unless ``p``) at its measured seconds per step."""
    p = p or plan(STUDIES, b, (0,), (0,))
    return len(p.train) * b.total_steps * b.s_per_step / workers / 3600


def resolve_budget(ns: argparse.Namespace) -> Budget:
    for name in ("seeds", "total_steps", "eval_days", "eval_every", "workers"):
        value = getattr(ns, name)
        if value is not None and value < 1:
            raise ExperimentError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    if ns.first_seed < 0:
        raise ExperimentError(f"--first-seed must be >= 0, got {ns.first_seed}")
    b = budget("quick" if ns.quick else "full", scenario=ns.scenario, seeds=ns.seeds)
    if ns.first_seed:
        b = dataclasses.replace(b, seeds=tuple(ns.first_seed + s for s in b.seeds))
    if ns.total_steps is not None:
        b = dataclasses.replace(b, total_steps=ns.total_steps)
    if ns.eval_days is not None:
        b = dataclasses.replace(b, eval_days=ns.eval_days)
    if ns.eval_every is not None:
        b = dataclasses.replace(b, train={**b.train, "eval_every": ns.eval_every})
    if ns.train:
        b = dataclasses.replace(b, train={**b.train, **parse_train_settings(ns.train, b.train)})
    if ns.ablations is not None:
        b = dataclasses.replace(b, ablations=parse_names(ns.ablations, ABLATIONS, "ablation"))
    if ns.settlements is not None:
        b = dataclasses.replace(b, settlements=parse_settlements(ns.settlements))
    if ns.redistributed is not None:
        none = ns.redistributed.strip() == "none"
        b = dataclasses.replace(b, redistributed=() if none else parse_settlements(ns.redistributed))
    if ns.price_levels is not None:
        b = dataclasses.replace(b, price_levels=parse_levels(ns.price_levels, "--price-levels"))
    if ns.trained_levels is not None:
        none = ns.trained_levels.strip() == "none"
        b = dataclasses.replace(
            b, trained_levels=() if none else parse_levels(ns.trained_levels, "--trained-levels")
        )
    if not set(b.trained_levels) <= set(b.price_levels):
        extra = ", ".join(f"{k:g}" for k in b.trained_levels if k not in b.price_levels)
        raise ExperimentError(f"trained level(s) {extra} not among the price levels {list(b.price_levels)}")
    if ns.learners is not None:
        chosen = parse_names(ns.learners, LEARNERS, "learner")
        b = dataclasses.replace(b, **dict.fromkeys(LEARNER_FIELDS, chosen))
    from twin.scenario import ScenarioError, load_scenario

    try:
        load_scenario(b.scenario)
    except ScenarioError as exc:
        raise ExperimentError(str(exc)) from None
    return b


def run(argv: list[str]) -> float | None:
    """Run the experiments named by ``argv``; returns the wall time of this invocation in seconds (None for
    a dry run)."""
    t0, started = time.perf_counter(), utc_now()
    ns = build_parser().parse_args(argv)
    studies = parse_studies(ns.only)
    b = resolve_budget(ns)
    root = Path(ns.runs_root or f"runs/experiments/{b.name}-{Path(b.scenario).stem}")
    out, progress = Path(ns.out), not ns.no_progress
    days, day_seeds = eval_days(b)
    p = plan(studies, b, days, day_seeds)
    if ns.dry_run:
        print(describe(p, b, root))
        return None
    # seed by seed: an experiment stopped early has every learner on its first seeds (paired), not one learner on all
    jobs = sorted(p.train.values(), key=lambda j: j.seed)
    failures = run_all(run_train, jobs, root, ns.workers, "training", progress)
    unique = {j.key(): j for j in p.evals}.values()
    ready = [j for j in unique if j.train is None or (j.train.run_dir(root) / "done.json").is_file()]
    failures += run_all(run_eval, ready, root, ns.workers, "evaluating", progress)
    for study in studies:
        wall = time.perf_counter() - t0
        write_study(study, p, root, out, study_config(study, b, argv, days, day_seeds, wall, started))
    if not ns.no_readme:
        from policies import report

        report.update_readme(Path(ns.readme), out)
    wall = time.perf_counter() - t0
    if failures:
        raise ExperimentError(f"{len(failures)} run(s) failed, first: {failures[0]}")
    return wall


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        wall = run(argv)
    except (ExperimentError, VariantError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if wall is not None:
        print(f"experiments finished in {wall / 60:.1f} min wall time ({wall:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
