"""Does a trained policy act on the state? Runs finished runs' deterministic policies through held-out days and
measures, per action dimension, how the learner's own output (a residual learner's correction) moves from slot to
slot against how the twin's action moves.

    python -m policies.action_probe RUN_DIR [RUN_DIR ...] [--checkpoints best] [--days 3] [--csv PATH]
                                    [--png PATH]

Per run, checkpoint, held-out day (arrival seeds as ``policies.critic_probe`` uses them) and action dimension
(``reward`` names what the run learned from: the twin's settlement period in slots, and ``+redistribute`` where the
settled amount was spread over the period's slots):

- ``own_mean`` and ``own_sd``: the mean and the standard deviation over the day's slots of the learner's own
  output, in its [-1, 1] box (for a gated residual, before its gate: what the learner chose, which the twin gets
  times the site's gate);
- ``twin_sd``: the same spread of the action the twin got (for a residual learner, the base heuristic's action
  plus the scaled correction), and ``base_sd`` that of the heuristic's action alone (NaN without a base);
- ``load_corr``: the correlation over the slots of the learner's output with the load, the images that arrived
  in the slot summed over the sites per slot capacity (NaN where either is constant).

The summary gives per run and checkpoint the ``varying_share``, sum_dims own_sd^2 / sum_dims (own_sd^2 +
own_mean^2) (the output's variance over the slots over its mean square, pooled over the dimensions), averaged
over the days. 0 is a correction that is the same at every slot of a day (the policy is its base plus a
constant), 1 one with no constant part; read it beside ``own_sd``, since an output of 0 +- 0.01 scores 1 too.
The twin's action of a heuristic base varies with the state whatever the correction does. Dimensions an
ablation forces (``policies.experiment_env.RestrictedActions``: transfers, step counts) are flagged ``ablated``,
their twin action is the forced one, and the summary leaves them out.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from policies.critic_probe import Checkpoint, CriticProbeError, load_checkpoints, open_run
from policies.eval_callback import DAY_SEED0
from policies.evaluate import EvaluateError
from policies.experiment_env import RestrictedActions
from policies.run_dir import RunDirError
from policies.shapers.base import pearson
from traces.atomic import write_csv_atomic
from twin.env import OBS_PER_DC, obs_index


def action_names(twin) -> list[str]:
    """The twin's action dimensions in order: ``transfer A->B`` for each ordered pair of sites, then ``steps@A``
    and ``battery@A`` per site (``AIGCTwinEnv.action_index``)."""
    names = [d.name for d in twin.scenario.datacenters]
    pairs = [f"transfer {o}->{j}" for o in names for j in names if o != j]
    return pairs + [f"steps@{s}" for s in names] + [f"battery@{s}" for s in names]


def ablated(env, names: list[str]) -> list[bool]:
    """Per action dimension: does the env's ablation force it (``RestrictedActions``)?"""
    if not isinstance(env, RestrictedActions):
        return [False] * len(names)
    return [(env.no_transfer and n.startswith("transfer ")) or (env.fixed_steps is not None and n.startswith("steps@"))
            for n in names]  # fmt: skip


def reward_label(env, cfg: dict) -> str:
    """``settle=N`` (the twin's settlement period in slots; 1 where its reward is dense) and ``+redistribute``
    where the run spread the settled amount."""
    sc = env.unwrapped.scenario
    label = f"settle={1 if sc.reward_mode == 'dense' else sc.settlement_slots}"
    return label + ("+redistribute" if cfg.get("reward_mix") == "redistribute" else "")


def slot_load(obs: np.ndarray, n_dc: int) -> float:
    """The images that arrived in the slot before ``obs``, per slot capacity, summed over the sites."""
    per_dc = np.asarray(obs, dtype=float)[: n_dc * OBS_PER_DC].reshape(n_dc, OBS_PER_DC)
    return float(per_dc[:, obs_index("arrived")].sum())


def day_actions(env, ckpt: Checkpoint, day: int, seed: int) -> dict[str, np.ndarray]:
    """(slots, dims) arrays of the learner's own output, the twin's action (after an ablation's forcing) and the base
    heuristic's action (NaN without a base), and the (slots,) load, over one day of the deterministic policy."""
    obs, _ = env.reset(seed=seed, options={"split": "eval", "day": day})
    policy = ckpt.policy
    policy.reset(env)
    own, twin_act, base, load = [], [], [], []
    done = False
    while not done:
        load.append(slot_load(obs, env.unwrapped.n_dc))
        b, _, o, a = policy.decide(obs, env)
        own.append(o)
        twin_act.append(env.action(a) if isinstance(env, RestrictedActions) else a)
        base.append(np.full_like(a, np.nan) if b is None else b)
        obs, _, terminated, truncated, _ = env.step(a)
        done = terminated or truncated
    return {
        "own": np.asarray(own, dtype=float),
        "twin": np.asarray(twin_act, dtype=float),
        "base": np.asarray(base, dtype=float),
        "load": np.asarray(load, dtype=float),
    }


def probe_run(path: Path, names: list[str] | None, n_days: int, progress: bool = True) -> pd.DataFrame:
    """One row per checkpoint, held-out day and action dimension of the run at ``path`` (module docstring)."""
    run, cfg, env, days = open_run(path, n_days)
    default = ["best"] if run.selects_on_validation() else ["latest"]
    ckpts = load_checkpoints(run, cfg, names or default, env, shapers=False)
    dims = action_names(env.unwrapped)
    forced = ablated(env, dims)
    reward = reward_label(env, cfg)
    rows = []
    for ckpt in ckpts:
        for i, day in enumerate(tqdm(days, desc=f"{path.name} {ckpt.name}", disable=not progress)):
            acts = day_actions(env, ckpt, day, DAY_SEED0 + i)
            for k, dim in enumerate(dims):
                rows.append({
                    "run": path.name, "policy": ckpt.policy.name, "reward": reward, "checkpoint": ckpt.name,
                    "step": ckpt.step,
                    "day": str(env.unwrapped.data.days[day]), "dim": dim, "ablated": forced[k],
                    "own_mean": acts["own"][:, k].mean(), "own_sd": acts["own"][:, k].std(),
                    "twin_sd": acts["twin"][:, k].std(), "base_sd": acts["base"][:, k].std(),
                    "load_corr": pearson(torch.as_tensor(acts["own"][:, k]), torch.as_tensor(acts["load"])),
                })  # fmt: skip
    return pd.DataFrame(rows)


def summarise(rows: pd.DataFrame) -> pd.DataFrame:
    """Per run and checkpoint: the varying share (module docstring), the mean over dimensions of |own_mean|,
    own_sd and twin_sd, and the largest |load_corr|, each averaged over the days; ablated dimensions left out."""
    keys = [k for k in ("policy", "reward", "run", "checkpoint", "step") if k in rows.columns]
    if "ablated" in rows.columns:
        rows = rows[~rows.ablated.astype(bool)]

    def one_day(g: pd.DataFrame) -> pd.Series:
        var = (g.own_sd**2).sum()
        return pd.Series({
            "varying_share": var / max(var + (g.own_mean**2).sum(), 1e-12),
            "mean_abs_own": g.own_mean.abs().mean(), "own_sd": g.own_sd.mean(), "twin_sd": g.twin_sd.mean(),
            "max_abs_load_corr": g.load_corr.abs().max(),
        })  # fmt: skip

    per_day = rows.groupby([*keys, "day"], sort=False)[list(rows.columns)].apply(one_day)
    return per_day.groupby(level=keys, sort=False).mean().reset_index()


def plot(rows: pd.DataFrame, path: Path) -> Path:
    """Per run and checkpoint, each dimension's mean output ± its spread over the slots (averaged over days)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from policies.report import save_figure

    keys = list(dict.fromkeys(zip(rows.run, rows.reward, rows.checkpoint, rows.step, strict=True)))
    dims = list(dict.fromkeys(rows.dim))
    fig, ax = plt.subplots(figsize=(max(7.0, 0.6 * len(dims)), 4.6), layout="constrained")
    width = 0.8 / len(keys)
    for i, (run, reward, name, step) in enumerate(keys):
        g = rows[(rows.run == run) & (rows.checkpoint == name) & (rows.step == step)]
        g = g.groupby("dim", sort=False)[["own_mean", "own_sd"]].mean().reindex(dims)
        x = np.arange(len(dims)) - 0.4 + (i + 0.5) * width
        ax.errorbar(
            x, g.own_mean, yerr=g.own_sd, fmt="o", ms=3, capsize=2, label=f"{run} ({reward}) {name} ({step})"
        )
    ax.axhline(0, color="0.5", lw=0.8)
    ax.set_xticks(np.arange(len(dims)), dims, rotation=60, ha="right", fontsize=8)
    ax.set(ylabel="learner's output: mean ± SD over a day's slots", ylim=(-1.05, 1.05))
    ax.legend(fontsize=7, loc="lower left")  # the box's lower part is empty: corrections stay near 0
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m policies.action_probe", description=__doc__.splitlines()[0])
    ap.add_argument("runs", type=Path, nargs="+", help="policies.train run directories")
    ap.add_argument(
        "--checkpoints",
        help="comma-separated: best, latest or checkpoint folder names; default best for a run that selects on "
        "validation days, else latest",
    )
    ap.add_argument("--days", type=int, default=3, help="held-out days (spread over the split); default 3")
    ap.add_argument("--csv", type=Path, help="write every (run, checkpoint, day, dimension) row here")
    ap.add_argument("--png", type=Path, help="draw each dimension's mean output and its spread here")
    ap.add_argument("--no-progress", action="store_true")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    names = [c.strip() for c in args.checkpoints.split(",") if c.strip()] if args.checkpoints else None
    torch.set_num_threads(1)
    try:
        rows = pd.concat(
            [probe_run(p, names, args.days, not args.no_progress) for p in args.runs], ignore_index=True
        )
    except (CriticProbeError, RunDirError, EvaluateError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.csv:
        write_csv_atomic(args.csv, rows)
    if args.png:
        plot(rows, args.png)
    print(summarise(rows).to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
