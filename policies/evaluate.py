"""Evaluate schedulers (heuristics, the clairvoyant oracle, trained SB3 runs) on the twin's held-out days with
fixed seeds: ``python -m policies.evaluate --help``; writes one tidy CSV, a Markdown summary and plots.

Every policy meets the same episodes: day d with evaluation seed s is reset with ``arrival_seed(d, s)``, so the
sampled arrivals are common to the policies compared and differ from day to day. (The twin's arrival model sees
the date only through its weekday; evaluations made before ``arrival_seed`` reset with the bare seed, so held-out
days of one weekday drew the same arrivals.)"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from policies.heuristics import HEURISTICS, make_heuristic
from policies.intervals import mean_ci
from policies.oracle import OracleError, OraclePolicy, OracleSolution
from policies.policy import EpisodeResult, episode_rates, run_episode, spread
from policies.residual import Residual, ResidualError, residual_from
from traces.atomic import write_csv_atomic, write_json_atomic, write_png_atomic, write_text_atomic

if TYPE_CHECKING:
    from twin.scenario import Scenario

ORACLE = "oracle"
ORACLE_REPLAY = "oracle-replay"
MONEY = ("utility", "revenue", "penalty", "energy_cost", "transfer_cost")
COLUMNS = (
    "policy",
    "run",
    "day",
    "seed",
    *MONEY,
    "penalty_late",
    "penalty_quality",
    "penalty_drop",
    "battery_settlement",
    "deadline_violation_rate",
    "drop_rate",
    "quality_violation_rate",
    "mean_steps",
    "mean_quality",
    "energy_kwh",
    "grid_kwh",
    "renewable_share",
    "battery_throughput_kwh",
    "oracle_bound",
    "utility_pct_of_bound",
    "arrived",
    "served",
    "late",
    "dropped",
    "transferred",
)
SUMMARY = (
    "utility",
    "utility_pct_of_bound",
    "revenue",
    "penalty",
    "energy_cost",
    "transfer_cost",
    "deadline_violation_rate",
    "drop_rate",
    "mean_steps",
    "mean_quality",
    "energy_kwh",
    "grid_kwh",
    "renewable_share",
    "battery_throughput_kwh",
)


class EvaluateError(ValueError):
    """Bad input to the evaluator: unknown policy, missing run directory, day outside the evaluation split."""


@dataclass
class EvalConfig:
    """What one evaluation ran (saved as ``config.json`` beside the results)."""

    scenario: str
    policies: list[str]
    days: list[str] = field(default_factory=list)
    n_days: int = 3
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    out: str | None = None
    bound: bool = True
    oracle_time_limit_s: float | None = None
    plot_day: str | None = None


# --- policies ----------------------------------------------------------------------------------------------


class TrainedPolicy:
    """A trained SB3 agent acting deterministically (torch and SB3 are imported only when one is loaded); a
    residual learner's output corrects its base heuristic's action (``policies.residual``). ``deterministic=False``
    samples its actions as in training instead (a diagnostic: ``policies.critic_probe``)."""

    def __init__(
        self,
        model,
        name: str,
        run: str,
        step: int | None = None,
        residual: Residual | None = None,
        deterministic: bool = True,
    ):
        self.model, self.name, self.run, self.step, self.residual = model, name, run, step, residual
        self.deterministic = deterministic

    def reset(self, env) -> None:
        if self.residual is not None:
            self.residual.reset(env)

    def act(self, obs, env) -> np.ndarray:
        return self.decide(obs, env)[-1]

    def decide(
        self, obs, env, deterministic: bool | None = None
    ) -> tuple[np.ndarray | None, np.ndarray, np.ndarray, np.ndarray]:
        """(the base heuristic's action or None, what the learner sees, the learner's own action, the twin's
        action) at ``obs``, acting deterministically or not as the policy does unless ``deterministic`` says. Like
        ``act`` it answers one slot: a residual's heuristic counts it."""
        deterministic = self.deterministic if deterministic is None else deterministic
        if self.residual is None:
            own, _ = self.model.predict(obs, deterministic=deterministic)
            own = np.asarray(own, dtype=np.float32)
            return None, np.asarray(obs, dtype=np.float32), own, own
        base, seen = self.residual.view(obs, env)
        own, _ = self.model.predict(seen, deterministic=deterministic)
        own = np.asarray(own, dtype=np.float32)
        return base, seen, own, self.residual.action(base, own)


def load_trained(path: str | Path, scenario: str | Scenario, name: str | None = None) -> TrainedPolicy:
    """The policy of a ``policies.train`` run directory (its latest checkpoint's, or the one best on validation
    days where the run selected on them), named ``name`` or else as ``run_policy`` names it; the run must have
    been trained on ``scenario`` (a name, a TOML path or the ``Scenario`` evaluated)."""
    path = Path(path)
    if not (path / "config.json").is_file():
        raise EvaluateError(f"{path}: not a run directory (no config.json)")
    from policies.run_dir import RunDir, RunDirError  # imports torch: only when a trained run is evaluated

    run = RunDir(path)
    cfg = run.load_config()
    check_trained_on(path, cfg, scenario)
    try:
        policy = run_policy(run, cfg, name)
    except RunDirError as exc:
        raise EvaluateError(str(exc)) from None
    chosen = "its policy best on validation days" if run.selects_on_validation() else "its latest checkpoint"
    print(f"{path.name}: evaluating {chosen}, saved at step {policy.step}", file=sys.stderr)
    return policy


def run_policy(run, cfg: dict, name: str | None = None) -> TrainedPolicy:
    """The policy ``run`` (a ``RunDir`` whose config is ``cfg``) is evaluated by: the model of
    ``RunDir.policy_model`` with the run's residual base, if any, named ``name`` (default ``algo+shaping``, and
    ``algo+shaping@base`` for a residual run, e.g. ``sac+none@price-greedy`` (``@overflow/overload`` with a gate), so it
    never merges with a plain run).
    RunDirError when the run has no such model; EvaluateError for a config it cannot load."""
    model_zip, step = run.policy_model()
    return load_policy(run, cfg, model_zip, step, name)


def load_policy(run, cfg: dict, model_zip: Path, step: int, name: str | None = None) -> TrainedPolicy:
    """The policy saved in ``model_zip`` (at env step ``step``) of ``run``, with a residual base of its own
    where the run has one, named as ``run_policy`` names it; EvaluateError for a config it cannot load."""
    from policies.agents import ALGOS

    algo = str(cfg.get("algo"))
    if algo not in ALGOS:
        raise EvaluateError(f"{run.path}: unknown algorithm {algo!r} in config.json")
    try:
        residual = residual_from(cfg)
    except ResidualError as exc:
        raise EvaluateError(f"{run.path}: {exc}") from None
    model = ALGOS[algo].load(model_zip, device="cpu", custom_objects={"buffer_size": 1})
    if name is None:
        name = f"{algo}+{cfg.get('shaping')}" + (f"@{residual.label}" if residual else "")
    return TrainedPolicy(model, name, run=run.path.name, step=step, residual=residual)


def check_trained_on(path: Path, cfg: dict, scenario: str | Scenario) -> None:
    """Refuse a run trained on anything but ``scenario``. A twin run (``--scenario``) is compared by scenario
    name, like with like (a name or a TOML path's stem). A run of the experiments (trained through a registered
    gym id) is compared by what it saved: its ``env_spec`` must change neither prices nor actions, and its
    ``scenario.toml`` must equal the evaluated scenario but for the reward (mode, scale and settlement period,
    which the observations and the utility do not depend on)."""
    name = scenario if isinstance(scenario, str) else scenario.name
    env_id = cfg.get("env_id")
    if not env_id:
        trained_on = Path(str(cfg.get("scenario", ""))).stem
        if trained_on != Path(name).stem:
            raise EvaluateError(f"{path}: trained on {trained_on!r}, not on scenario {name!r}")
        return
    from policies.experiment_env import EnvSpec
    from twin.scenario import load_scenario

    spec, saved = cfg.get("env_spec"), path / "scenario.toml"
    if spec is None or not saved.is_file():
        raise EvaluateError(f"{path}: trained on {env_id!r} (no saved env_spec), not on scenario {name!r}")
    if not EnvSpec(**spec).scenario_only():
        raise EvaluateError(
            f"{path}: trained on a variant with prices or actions changed ({env_id}), not on scenario {name!r}"
        )
    if not same_but_reward(load_scenario(saved), load_scenario(scenario)):
        raise EvaluateError(
            f"{path}: trained on a variant of {spec['scenario']!r} ({env_id}), not on scenario {name!r}"
        )


def same_but_reward(a: Scenario, b: Scenario) -> bool:
    """Whether two scenarios differ at most in their reward (mode, scale, settlement period) and source."""
    reward = ("reward_mode", "reward_scale", "settlement_slots", "source")
    return dataclasses.replace(a, **{k: getattr(b, k) for k in reward}) == b


def build_policies(
    specs: list[str], scenario: str | Scenario, oracle_time_limit_s: float | None = None
) -> list:
    """Policy objects for the names given; ``oracle`` stands for the LP bound and its replay (solved with
    HiGHS's ``oracle_time_limit_s``); ``NAME=RUN_DIR`` names a run's policy (runs that share a default name but
    learned differently, e.g. from another settlement period, stay apart)."""
    out = []
    for spec in specs:
        name, sep, path = spec.partition("=")
        if sep and not Path(spec).is_dir():
            if not name or not Path(path).is_dir():
                raise EvaluateError(f"policy {spec!r}: NAME=RUN_DIR needs a name and a run directory")
            out.append(load_trained(path, scenario, name))
        elif spec in HEURISTICS:
            out.append(make_heuristic(spec))
        elif spec == ORACLE:
            out.append(OraclePolicy(oracle_time_limit_s))
        elif Path(spec).is_dir():
            out.append(load_trained(spec, scenario))
        else:
            known = ", ".join([*HEURISTICS, ORACLE])
            raise EvaluateError(f"unknown policy {spec!r}: not one of {known} and not a run directory")
    return out


# --- days and rows -----------------------------------------------------------------------------------------


def eval_days(env, days: list[str], n_days: int) -> list[str]:
    """The requested evaluation days (each must be held out), or ``n_days`` spread evenly over the split."""
    u = env.unwrapped
    held = [u.data.days[i] for i in u.eval_days]
    if days:
        for day in days:
            if day not in held:
                raise EvaluateError(
                    f"day {day!r} is not a held-out evaluation day of scenario {u.scenario.name!r} "
                    f"({len(held)} days, e.g. {', '.join(held[:3])})"
                )
        return list(days)
    if not 1 <= n_days <= len(held):
        raise EvaluateError(f"--days must be in 1..{len(held)} (held-out days of the scenario), got {n_days}")
    return spread(held, n_days)


#: The columns of ``policies.policy.episode_rates`` that a row carries.
RATES = ("deadline_violation_rate", "drop_rate", "quality_violation_rate")


def _rates(t: dict[str, float]) -> dict[str, float]:
    rates, load = episode_rates(t), t["load_kwh"]
    return {
        **{k: rates[k] for k in RATES},
        "energy_kwh": load,
        "grid_kwh": t["grid_import_kwh"],
        "renewable_share": t["renewable_used_kwh"] / load if load > 0 else float("nan"),
        "battery_throughput_kwh": t["battery_charge_kwh"] + t["battery_discharge_kwh"],
    }


def make_row(name: str, run: str, day: str, seed: int, totals: dict, steps: float, quality: float, bound):
    """One CSV row from an episode's totals (env accounting or the LP's)."""
    row = {"policy": name, "run": run, "day": day, "seed": seed}
    row.update({k: totals[k] for k in (*MONEY, "penalty_late", "penalty_quality", "penalty_drop")})
    row["battery_settlement"] = totals["battery_settlement"]
    row.update(_rates(totals))
    row.update(mean_steps=steps, mean_quality=quality)
    row["oracle_bound"] = bound if bound is not None else float("nan")
    # A share of a bound is only meaningful for a positive bound (with bound <= 0 the ratio flips sign).
    row["utility_pct_of_bound"] = 100.0 * totals["utility"] / bound if bound and bound > 0 else float("nan")
    row.update({k: totals[k] for k in ("arrived", "served", "late", "dropped", "transferred")})
    return row


def is_clairvoyant(policy) -> bool:
    """The clairvoyant oracle's replay (whose LP is also the bound), not a planner built on its LP (forecast-lp)."""
    return isinstance(policy, OraclePolicy) and policy.clairvoyant


def arrival_seed(day: str, seed: int) -> int:
    """The seed the twin is reset with for held-out ``day`` (YYYY-MM-DD) and evaluation seed ``seed`` (>= 0): drawn
    from (seed, the day's ordinal), so no two days share arrivals and the episode is reproducible
    (``env.reset(seed=arrival_seed(day, seed), options={"split": "eval", "day": day})``)."""
    if not isinstance(day, str):
        raise EvaluateError(f"a held-out day is a YYYY-MM-DD string, got {day!r}")
    if seed < 0:
        raise EvaluateError(f"evaluation seeds must be >= 0, got {seed}")
    ordinal = pd.Timestamp(day).toordinal()
    return int(np.random.SeedSequence([seed, ordinal]).generate_state(1)[0])


def episode_rows(
    env, policies: list, day: str, seed: int, cfg: EvalConfig, curves: dict, lp_log: list | None = None
) -> list[dict]:
    """Rows of every policy on one (day, seed), each episode reset with ``arrival_seed(day, seed)``; the LP is
    solved once and shared by bound and replay (its size and solve time go to ``lp_log``)."""
    oracle = next((p for p in policies if is_clairvoyant(p)), None)
    solution: OracleSolution | None = None
    episode_seed = arrival_seed(day, seed)
    if cfg.bound or oracle is not None:
        env.reset(seed=episode_seed, options={"split": "eval", "day": day})
        oracle = oracle or OraclePolicy(cfg.oracle_time_limit_s)
        solution = oracle.plan(env)
        if lp_log is not None:
            lp_log.append(
                {
                    "day": day,
                    "seed": seed,
                    "value": solution.value,
                    **solution.size,
                    "build_s": solution.build_s,
                    "solve_s": solution.solve_s,
                }
            )
    bound = solution.value if solution is not None else None
    rows = []
    if any(is_clairvoyant(p) for p in policies):
        rows.append(
            make_row(
                ORACLE, "", day, seed, solution.totals, solution.mean_steps, solution.mean_quality, bound
            )
        )
        _curve(curves, cfg, ORACLE, day, seed, solution.slot_utility)
    for policy in policies:
        res: EpisodeResult = run_episode(env, policy, day=day, seed=episode_seed)
        run = getattr(policy, "run", "")
        rows.append(
            make_row(policy.name, run, day, seed, res.totals, res.mean_steps, res.mean_quality, bound)
        )
        _curve(curves, cfg, policy.name if not run else f"{policy.name} ({run})", day, seed, res.slot_utility)
    return rows


def _curve(curves: dict, cfg: EvalConfig, name: str, day: str, seed: int, slot_utility) -> None:
    if day == cfg.plot_day and seed == cfg.seeds[0]:
        curves[name] = np.cumsum(slot_utility)


# --- summary and plots -------------------------------------------------------------------------------------


def summary_table(frame: pd.DataFrame, currency: str) -> str:
    """Markdown table: per policy the mean ± 95% CI over days, seeds (and training runs)."""
    head = ["policy", "n", *SUMMARY]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, grp in frame.groupby("policy", sort=False):
        cells = [str(name), str(len(grp))]
        for col in SUMMARY:
            m, h, _ = mean_ci(grp[col])
            cells.append(_fmt(m, h))
        lines.append("| " + " | ".join(cells) + " |")
    note = (
        f"\nMoney in {currency} per day; rates are shares of served (deadline, quality) or arrived (drop) jobs; "
        "± is the 95% Student-t interval over days x seeds. `oracle` is the LP upper bound (its job counts "
        "are continuous); `oracle-replay` is its plan run in the twin.\n"
    )
    return "\n".join(lines) + "\n" + note


def _fmt(mean: float, half: float) -> str:
    if np.isnan(mean):
        return "–"
    digits = 4 if abs(mean) < 1 else 2
    return f"{mean:.{digits}f}" if np.isnan(half) else f"{mean:.{digits}f} ± {half:.{digits}f}"


def utility_per_episode(frame: pd.DataFrame, currency: str) -> tuple[pd.Series, str]:
    """What ``plot_utility`` shows: each policy's utility per (day, seed) episode, a learner's runs averaged, as %
    of the oracle bound where every policy's episodes have it (the oracle itself left out: 100 % by definition),
    else in money per day (``--no-bound``); and its axis label."""
    pct = "utility_pct_of_bound"
    others = frame[frame["policy"] != "oracle"]
    with_bound = not others.empty and others[pct].notna().all()
    shown, col = (others, pct) if with_bound else (frame, "utility")
    label = "utility (% of the oracle bound)" if with_bound else f"utility per day ({currency})"
    return shown.groupby(["policy", "day", "seed"], sort=False)[col].mean(), label


def plot_utility(frame: pd.DataFrame, path: Path, currency: str) -> None:
    """Each policy's utility as % of the oracle bound where the bound was solved (else in money per day): its
    mean over the episodes with a 95% interval (left; a learner's runs averaged per episode first) and every
    episode against the jobs that arrived in it (right), where the policies part ways as the load grows."""
    import matplotlib.pyplot as plt

    from policies.report import jobs_log_axis  # matplotlib (Agg) with it, only when drawing

    per_episode, label = utility_per_episode(frame, currency)
    arrived = frame.groupby(["day", "seed"])["arrived"].mean()
    names = list(dict.fromkeys(per_episode.index.get_level_values("policy")))
    fig, (left, right) = plt.subplots(
        1, 2, figsize=(max(10, 0.8 * len(names) + 6), 4.2), gridspec_kw={"width_ratios": [1, 1.4]}
    )
    for i, name in enumerate(names):
        values = per_episode.loc[name]
        mean, half, _ = mean_ci(values)
        left.errorbar([i], [mean], yerr=[0.0 if np.isnan(half) else half], fmt="o", capsize=4, color=f"C{i}")
        right.scatter(arrived.loc[values.index], values, s=12, alpha=0.6, color=f"C{i}", label=name)
    left.set_xticks(range(len(names)), names, rotation=30, ha="right")
    left.set_ylabel(label)
    left.set_title(f"mean over {len(arrived)} episodes (95% CI)")
    right.set_xscale("log")
    jobs_log_axis(right.xaxis)
    right.set_xlabel("jobs arrived in the episode")
    right.set_title("each episode")
    right.legend(fontsize=7, markerscale=1.5)
    fig.tight_layout()
    write_png_atomic(path, fig, dpi=120)


def plot_cumulative(curves: dict, path: Path, day: str, currency: str, slot_s: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for name, curve in curves.items():
        ax.plot(np.arange(1, len(curve) + 1) * slot_s / 3600.0, curve, label=name)
    ax.set_xlabel("hour of the day (UTC)")
    ax.set_ylabel(f"cumulative utility ({currency})")
    ax.set_title(f"Cumulative utility on {day}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    write_png_atomic(path, fig, dpi=120)


# --- driver ------------------------------------------------------------------------------------------------

_WORKER: dict = {}  # a pool worker's own twin and policies (``_start_worker``)


def _start_worker(cfg: EvalConfig, sc: Scenario) -> None:
    from twin.env import AIGCTwinEnv

    _WORKER.update(
        cfg=cfg, env=AIGCTwinEnv(sc), policies=build_policies(cfg.policies, sc, cfg.oracle_time_limit_s)
    )


def _episode_in_worker(day: str, seed: int) -> tuple[list[dict], dict, list[dict]]:
    curves: dict = {}
    lp_log: list[dict] = []
    rows = episode_rows(_WORKER["env"], _WORKER["policies"], day, seed, _WORKER["cfg"], curves, lp_log)
    return rows, curves, lp_log


def episodes_in_pool(cfg: EvalConfig, sc: Scenario, episodes: list, workers: int, bar) -> list[tuple]:
    """``episode_rows`` of every (day, seed) in a pool of ``workers`` processes: (rows, curves, LP log) per
    episode, in the order of ``episodes`` (the order in which they finish moves only the bar)."""
    from concurrent.futures import as_completed

    from policies.workers import spawn_pool

    done: list = [None] * len(episodes)
    with spawn_pool(workers, _start_worker, (cfg, sc)) as pool:
        futures = {pool.submit(_episode_in_worker, d, s): i for i, (d, s) in enumerate(episodes)}
        for fut in as_completed(futures):
            done[futures[fut]] = fut.result()
            bar.update(1)
    return done


def evaluate(cfg: EvalConfig, env=None, progress: bool = True, workers: int = 1) -> Path:
    """Run every policy on every (day, seed); write results.csv, summary.md, plots, config and scenario.
    ``env`` (optional) is an ``AIGCTwinEnv`` to use instead of building one from ``cfg.scenario``; ``workers`` > 1
    runs the episodes in that many processes, each with a twin and policies of its own (the rows are the same)."""
    if not cfg.seeds:
        raise EvaluateError("--seeds must name at least one seed")
    if workers < 1:
        raise EvaluateError(f"--workers must be >= 1, got {workers}")
    if workers > 1 and env is not None:
        raise EvaluateError("workers > 1 build their twins from the scenario: pass no env")
    from twin.env import AIGCTwinEnv
    from twin.scenario import load_scenario

    sc = env.unwrapped.scenario if env is not None else load_scenario(cfg.scenario)
    # bad names fail before the (slow) data loading
    policies = build_policies(cfg.policies, sc, cfg.oracle_time_limit_s)
    env = env if env is not None else AIGCTwinEnv(sc)
    cfg.days = eval_days(env, cfg.days, cfg.n_days)
    cfg.plot_day = cfg.plot_day or cfg.days[0]
    out = Path(cfg.out or f"results/eval_{sc.name}")
    rows, curves, lp_log = [], {}, []
    episodes = [(d, s) for d in cfg.days for s in cfg.seeds]
    bar = tqdm(total=len(episodes), desc="evaluate", unit="episode", disable=not progress)
    if workers > 1 and len(episodes) > 1:
        for done in episodes_in_pool(cfg, sc, episodes, workers, bar):
            rows += done[0]
            curves.update(done[1])
            lp_log += done[2]
    else:
        for day, seed in episodes:
            rows.extend(episode_rows(env, policies, day, seed, cfg, curves, lp_log))
            bar.update(1)
    bar.close()
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    write_csv_atomic(out / "results.csv", frame)
    if lp_log:  # wall-clock numbers of this machine: kept apart from the results
        write_csv_atomic(out / "oracle_lp.csv", pd.DataFrame(lp_log))
    currency = sc.money.currency
    write_text_atomic(
        out / "summary.md", f"# Evaluation on scenario {sc.name}\n\n" + summary_table(frame, currency)
    )
    plot_utility(frame, out / "utility.png", currency)
    plot_cumulative(curves, out / "cumulative_utility.png", cfg.plot_day, currency, env.unwrapped.slot_s)
    write_json_atomic(out / "config.json", asdict(cfg))
    sc.dump(out / "scenario.toml")
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m policies.evaluate", description=__doc__)
    p.add_argument("--scenario", required=True, help="bundled scenario name (tiny, default) or TOML path")
    p.add_argument(
        "--policies",
        default=f"production-default,price-greedy,quality-first,least-loaded,{ORACLE}",
        help="comma-separated: heuristic names, 'oracle' (LP bound and its replay), run directories (NAME=DIR "
        "names a run's policy)",
    )
    which = p.add_mutually_exclusive_group()
    which.add_argument("--days", type=int, default=3, help="number of held-out days, spread over the split")
    which.add_argument("--day", nargs="+", default=[], metavar="YYYY-MM-DD", help="explicit held-out days")
    p.add_argument(
        "--seeds", default="0,1,2",
        help="comma-separated evaluation seeds, >= 0 (with the day, they fix the arrivals: arrival_seed)",
    )  # fmt: skip
    p.add_argument("--out", default=None, help="output folder (default results/eval_<scenario>)")
    p.add_argument("--no-bound", action="store_true", help="skip the oracle LP unless 'oracle' is a policy")
    p.add_argument("--oracle-time-limit", type=float, default=None, help="HiGHS time limit per LP, seconds")
    p.add_argument(
        "--workers", type=int, default=1, help="processes running episodes side by side (default 1)"
    )
    return p


def parse_config(argv: list[str] | None = None) -> EvalConfig:
    return config_from(build_parser().parse_args(argv))


def config_from(ns: argparse.Namespace) -> EvalConfig:
    try:
        seeds = [int(s) for s in ns.seeds.split(",") if s.strip()]
    except ValueError:
        raise EvaluateError(f"--seeds must be comma-separated integers, got {ns.seeds!r}") from None
    if any(s < 0 for s in seeds):
        raise EvaluateError(f"--seeds must be >= 0, got {ns.seeds!r}")
    policies = [s.strip() for s in ns.policies.split(",") if s.strip()]
    if not policies:
        raise EvaluateError("--policies names no policy")
    return EvalConfig(
        scenario=ns.scenario,
        policies=policies,
        days=list(ns.day),
        n_days=ns.days,
        seeds=seeds,
        out=ns.out,
        bound=not ns.no_bound,
        oracle_time_limit_s=ns.oracle_time_limit,
    )


def _user_errors() -> tuple[type[Exception], ...]:
    """The bad-input errors of every layer the evaluator drives (each derives from ValueError)."""
    from twin.cards import CardError
    from twin.env import ActionError
    from twin.exogenous import ExogenousError
    from twin.scenario import ScenarioError

    return EvaluateError, OracleError, ScenarioError, ExogenousError, ActionError, CardError


def main(argv: list[str] | None = None) -> int:
    try:
        ns = build_parser().parse_args(argv)
        out = evaluate(config_from(ns), workers=ns.workers)
    except _user_errors() as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
