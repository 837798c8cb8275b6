"""Does a trained critic rank the actions its policy could take the way the twin does? Perturbs one decision of
a finished run's deterministic policy at sampled slots of held-out days and compares what its critic predicts
the change is worth with what it is worth in the twin.

    python -m policies.critic_probe RUN_DIR [--checkpoints best,latest] [--days 3] [--stride 24]
                                    [--dims steps,battery] [--stochastic K] [--gamma G] [--csv PATH]
                                    [--png PATH]

At every ``--stride``-th slot of each day the policy lives, each site's decision is moved one notch: its step
count to the neighbouring entry of the step set (below and above), its battery set point by
``BATTERY_DELTA`` (down and up). For each move:

- ``critic_dq``: min over the critics of Q(s, a') - Q(s, a), a the policy's action and a' the moved one, in the
  learner's own action space (a residual learner's correction moved by exactly what moves the twin's action);
- ``true_dg``: the difference of the discounted (the run's gamma, or ``--gamma``) return, in reward units (``reward_scale`` x
  the twin's per-slot utility), of the two continuations: a' (or a) now, then the same policy to the day's
  end, from deep copies of the twin (same arrivals, prices and weather; common random numbers). The policy
  continues deterministically, the policy evaluated, or with ``--stochastic K`` sampling its actions as in
  training, K draws with the same noise for a and a': the policy a soft critic (SAC) values;
- ``true_dg_boot``: ``true_dg`` plus the critic's discounted estimate of the difference of the two day-end
  states' values: what the critic's own targets would add, since SB3 bootstraps past the day's truncation;
- ``critic_q`` and ``true_g_boot``: the levels, Q(s, a) and the unmoved continuation's discounted return plus
  that bootstrap (the value Q(s, a) estimates);
- for a checkpoint saved with a learned shaper (a checkpoint folder, ``latest`` included; ``best/`` of runs trained
  since the best policy's shaper is kept with it):
  ``shaper_dr``, the change of r_hat(s, a) (a diffusion shaper's averaged over ``SHAPER_DRAWS`` common draws),
  and ``true_dr``, the change of the slot's own reward in the twin: what a flawless per-slot credit (the
  ``perfect`` shaper) would assign the move. At gamma 0 with ``reward_mix=redistribute`` and eta 1 r_hat is the
  only thing the actor's objective depends on the action through, so its ranking is the policy's signal. The
  summary also scores it against ``true_dg``; with ``--gamma 1`` that is the move's effect on the whole rest of
  the day, what a settlement-sum decomposition is fitted to capture.

The signs are what a policy gradient follows: a critic whose ``critic_dq`` disagrees in sign with ``true_dg`` pushes
the actor the wrong way however dense or well shaped the reward it was trained on. Comparing the deterministic
and the ``--stochastic`` continuation tells a critic that is wrong from one that is right about the exploring
policy it was trained to value but not about the one evaluated.
"""

from __future__ import annotations

import argparse
import copy
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import gymnasium as gym
import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from policies.agents import LEARNED_SHAPINGS, AgentConfig, AgentError, build_shaper, flat_dims, shaper_sizes
from policies.eval_callback import DAY_SEED0, held_out_days, is_twin
from policies.evaluate import EvaluateError, TrainedPolicy, load_policy
from policies.experiment_env import EnvSpec, RestrictedActions, VariantError, make_env
from policies.run_dir import SHAPER_FILE, RunDir, RunDirError, best_state, checkpoint_step, restore_shaper
from policies.shapers import RewardShaper
from traces.atomic import write_csv_atomic

#: The decisions a probe can move, one site at a time.
DIMS = ("steps", "battery")
#: How far a battery set point is moved (a fraction of the set point's range, which is [-1, 1]).
BATTERY_DELTA = 0.25


class CriticProbeError(ValueError):
    """The run cannot be probed (not a run directory, no such checkpoint, an env that is not the twin)."""


@dataclass(frozen=True)
class Move:
    """One site's decision moved one notch: ``kind`` (a ``DIMS`` entry), ``site`` index, ``direction`` -1 or +1."""

    kind: str
    site: int
    direction: int


@dataclass
class Checkpoint:
    """A saved policy of the run: its name (``best``, ``latest`` or a checkpoint folder), step and policy, and the
    reward shaper saved with it (None where the folder has none: a ``best/`` saved before it kept the shaper)."""

    name: str
    step: int
    policy: TrainedPolicy
    shaper: RewardShaper | None = None


def load_shaper(folder: Path, cfg: dict, env: gym.Env, policy: TrainedPolicy) -> RewardShaper | None:
    """The learned shaper (one of ``LEARNED_SHAPINGS``) saved in a checkpoint ``folder``, or None (no shaper file, or
    the run's shaping has no r_hat(s, a))."""
    shaping = str(cfg.get("shaping"))
    if shaping not in LEARNED_SHAPINGS or not (folder / SHAPER_FILE).is_file():
        return None
    agent = replace(AgentConfig.from_saved(cfg), device="cpu")
    obs_dim, act_dim = flat_dims(policy.model)
    try:
        shaper = build_shaper(shaping, obs_dim, act_dim, agent, **shaper_sizes(env, shaping, agent))
        restore_shaper(folder / SHAPER_FILE, shaper)
    except (AgentError, RuntimeError, KeyError) as exc:
        raise CriticProbeError(f"{folder}: cannot load its shaper: {exc}") from None
    return shaper.eval()


def run_env(run: RunDir, cfg: dict) -> gym.Env:
    """The twin the run was trained on: its experiment variant (``env_spec``) where it has one, else its saved
    scenario (``scenario.toml``), with the twin's own reward (the probe reads the per-slot utility)."""
    scenario = run.path / "scenario.toml"
    if not cfg.get("env_spec") and not scenario.is_file():
        raise CriticProbeError(f"{run.path}: neither an env_spec in config.json nor a scenario.toml")
    try:
        if cfg.get("env_spec"):
            env = make_env(EnvSpec(**cfg["env_spec"]))
        else:
            env = gym.make("AIGCTwin-v0", scenario=str(scenario))
    except (VariantError, OSError, TypeError, ValueError) as exc:  # the twin's data and card errors included
        raise CriticProbeError(f"{run.path}: cannot rebuild its env: {exc}") from None
    if not is_twin(env):
        raise CriticProbeError(f"{run.path}: trained on {env.unwrapped}, not the twin")
    return env


def open_run(path: Path, n_days: int) -> tuple[RunDir, dict, gym.Env, list[int]]:
    """The run at ``path``, its config, the twin it was trained on and ``n_days`` of its held-out days (``--days``
    of the probes); one-line ``CriticProbeError`` for anything else."""
    if not (path / "config.json").is_file():
        raise CriticProbeError(f"{path}: not a run directory (no config.json)")
    run = RunDir(path)
    cfg = run.load_config()
    env = run_env(run, cfg)
    try:
        return run, cfg, env, held_out_days(env, n_days, flag="--days")
    except ValueError as exc:
        raise CriticProbeError(str(exc)) from None


def load_checkpoints(
    run: RunDir, cfg: dict, names: list[str], env: gym.Env, shapers: bool = True
) -> list[Checkpoint]:
    """The run's policies named ``names``: ``best`` (best on validation days), ``latest`` (its latest checkpoint)
    or a checkpoint folder's name (``step_0000004000``), with their shapers where saved (and ``shapers``)."""
    out = []
    for name in names:
        if name == "best":
            state = best_state(run.best)
            folder, step = run.best, int(state["step"]) if state else -1
        else:
            folder = run.latest_checkpoint() if name == "latest" else run.checkpoints / name
            step = checkpoint_step(folder) if folder is not None and folder.is_dir() else -1
        if folder is None or step < 0 or not (folder / "model.zip").is_file():
            raise CriticProbeError(f"{run.path}: no {name!r} checkpoint with a model.zip")
        policy = load_policy(run, cfg, folder / "model.zip", step)
        out.append(Checkpoint(name, step, policy, load_shaper(folder, cfg, env, policy) if shapers else None))
    return out


def moves(env: gym.Env, kinds: list[str]) -> list[Move]:
    """Every site's decisions of the ``kinds`` named, each one notch down and one up."""
    unknown = sorted(set(kinds) - set(DIMS))
    if unknown:
        raise CriticProbeError(f"unknown --dims {', '.join(unknown)}; choose from {', '.join(DIMS)}")
    if "steps" in kinds and isinstance(env, RestrictedActions) and env.fixed_steps is not None:
        raise CriticProbeError("the run's env fixes the step count: its steps cannot be moved")
    n = env.unwrapped.n_dc
    return [Move(kind, site, d) for kind in kinds for site in range(n) for d in (-1, 1)]


def moved(twin, action: np.ndarray, move: Move) -> np.ndarray | None:
    """The twin's ``action`` with ``move`` applied (a step count set to the exact centre of its neighbour's
    interval, a battery set point shifted); None where the move leaves the step set or the action box."""
    out = np.asarray(action, dtype=np.float32).copy()
    dim = twin.action_index(move.kind, move.site)
    if move.kind == "steps":
        idx = int(twin.decode_action(action).steps_index[move.site]) + move.direction
        if not 0 <= idx < len(twin.step_set):
            return None
        out[dim] = twin.steps_coordinate(idx)
    else:
        value = out[dim] + move.direction * BATTERY_DELTA
        if abs(value) > 1:
            return None
        out[dim] = value
    return out


def learner_action(
    policy: TrainedPolicy,
    base: np.ndarray | None,
    own: np.ndarray,
    twin_action: np.ndarray,
    target: np.ndarray,
) -> np.ndarray | None:
    """The learner's action (in its [-1, 1] box) that makes the twin take ``target`` where its own action ``own``
    made it take ``twin_action``; None where no action in the box does (a residual correction out of range, one
    the clip to the twin's box swallows, or one a closed gate stops). Call it after the policy's ``decide`` at
    that state: a gated residual's gates are the last viewed slot's."""
    if policy.residual is None:
        return target.astype(np.float32)
    gain = policy.residual.gain(own.size)  # the scale, times the site's gate with a gated residual
    delta = (target - twin_action).astype(np.float64)
    if np.any((gain == 0) & (np.abs(delta) > 1e-9)):
        return None  # a closed gate: no output of the learner moves this dimension
    wanted = own + np.divide(delta, gain, out=np.zeros_like(delta), where=gain > 0)
    if np.abs(wanted).max() > 1 + 1e-6 or not np.allclose(
        policy.residual.action(base, wanted), target, atol=1e-5
    ):
        return None
    return wanted.astype(np.float32)


def critic_value(policy: TrainedPolicy, seen: np.ndarray, actions: np.ndarray) -> np.ndarray:
    """min over the critics of Q(seen, action) for each row of ``actions`` (learner actions, unscaled)."""
    model = policy.model
    scaled = model.policy.scale_action(np.asarray(actions, dtype=np.float32))
    obs = torch.as_tensor(np.repeat(seen[None], len(scaled), axis=0), dtype=torch.float32)
    with torch.no_grad():
        qs = model.critic(obs, torch.as_tensor(scaled, dtype=torch.float32))
    return torch.cat(qs, dim=1).min(dim=1).values.numpy().astype(np.float64)


#: Noise draws averaged per r_hat of a diffusion shaper (the same draws for every action compared).
SHAPER_DRAWS = 16


def shaper_value(
    shaper: RewardShaper, seen: np.ndarray, actions: np.ndarray, meters: list[np.ndarray]
) -> np.ndarray:
    """r_hat(seen, action) for each row of ``actions`` (learner actions, as the replay buffer stores them), with
    the slot's meter readings under that action (``meters``, one per row) for a shaper that reads them; a
    diffusion shaper's averaged over ``SHAPER_DRAWS`` chains whose noise is common to the rows."""

    def repeat(x: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.repeat(np.asarray(x, dtype=np.float32)[None], SHAPER_DRAWS, axis=0))

    out = []
    with torch.no_grad():
        for action, meter in zip(actions, meters, strict=True):
            torch.manual_seed(0)  # common random numbers across the actions compared
            r_hat = shaper.step_reward(repeat(seen), repeat(action), repeat(meter) if shaper.meters else None)
            out.append(float(r_hat.mean()))
    return np.asarray(out, dtype=np.float64)


@dataclass(frozen=True)
class Continuation:
    """How the twin values an action at a probed state: take it, then follow the policy to the day's end,
    discounting by ``gamma`` the per-slot utility times ``scale`` (the reward's units). The policy acts
    deterministically (the policy evaluated), or, ``stochastic``, samples as in training (the policy a soft
    critic values), averaged over ``samples`` draws whose noise is the same for every action compared."""

    gamma: float
    scale: float
    stochastic: bool = False
    samples: int = 1

    def value(
        self, frozen: tuple, policy: TrainedPolicy, obs: np.ndarray, first: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Mean over the draws of (the discounted return of twin action ``first`` at the state ``frozen`` =
        (env, residual) copied before the policy acted on ``obs``; gamma^slots x the critic's value of the
        day-end state at the policy's deterministic action; the reward of the slot ``first`` acts in), and the
        meter readings of that slot (the same in every draw: its action and arrivals are fixed)."""
        out = []
        for draw in range(self.samples):
            env, residual = copy.deepcopy(frozen)
            follower = TrainedPolicy(
                policy.model,
                policy.name,
                policy.run,
                policy.step,
                residual,
                deterministic=not self.stochastic,
            )
            follower.decide(obs, env)  # the heuristic answers this slot, as the policy's act would
            if self.stochastic:
                torch.manual_seed(draw)  # common random numbers: the same noise for every action compared
            out.append(self.follow(env, follower, first))
        return np.mean([o[:3] for o in out], axis=0), out[0][3]

    def follow(self, env: gym.Env, policy: TrainedPolicy, first: np.ndarray) -> tuple:
        """(discounted return, discounted bootstrap, the first slot's own reward: what a flawless per-slot credit
        assigns the action)"""
        ret, discount, action, now, meters = 0.0, 1.0, first, None, None
        while True:
            obs, _, terminated, truncated, info = env.step(action)
            if now is None:
                now, meters = self.scale * float(info["utility"]), info.get("meters")
            ret += discount * self.scale * float(info["utility"])
            discount *= self.gamma
            if terminated or truncated:
                break
            action = policy.act(obs, env)
        _, seen, own, _ = policy.decide(obs, env, deterministic=True)
        return ret, discount * float(critic_value(policy, seen, own[None])[0]), now, meters


def probe_checkpoint(
    env: gym.Env,
    ckpt: Checkpoint,
    days: list[int],
    stride: int,
    kinds: list[str],
    cont: Continuation,
    progress: bool = False,
) -> pd.DataFrame:
    """One row per (day, slot, site, decision, direction) the move stays in range: the policy's own value of the
    decision (a step count or a set point), critic_dq, true_dg and true_dg_boot (see the module's docstring). The probed states are those the deterministic policy visits."""
    twin, policy = env.unwrapped, ckpt.policy
    names = [d.name for d in twin.scenario.datacenters]
    todo = moves(env, kinds)
    rows = []
    bar = tqdm(
        total=len(days) * -(-twin.scenario.slots_per_episode // stride),
        disable=not progress,
        desc=f"{ckpt.name} (step {ckpt.step})",
    )
    for i, day in enumerate(days):
        obs, _ = env.reset(seed=DAY_SEED0 + i, options={"split": "eval", "day": day})
        policy.reset(env)
        slot, done = 0, False
        while not done:
            if slot % stride == 0:
                # copy before the policy acts: a residual's heuristic counts the slots it answers
                frozen = copy.deepcopy((env, policy.residual))
                where = {"checkpoint": ckpt.name, "step": ckpt.step, "day": day, "slot": slot}
                state_rows = probe_state(frozen, policy, obs, todo, cont, names, ckpt.shaper)
                rows += [{**where, **row} for row in state_rows]
                bar.update()
            obs, _, terminated, truncated, _ = env.step(policy.act(obs, env))
            done, slot = terminated or truncated, slot + 1
    bar.close()
    return pd.DataFrame(rows)


def probe_state(
    frozen: tuple,
    policy: TrainedPolicy,
    obs: np.ndarray,
    todo: list[Move],
    cont: Continuation,
    names: list[str],
    shaper: RewardShaper | None = None,
) -> list[dict]:
    """The rows of one state: ``frozen`` is (env, residual) copied there, before the policy acted on ``obs``."""
    env, residual = copy.deepcopy(frozen)
    here = TrainedPolicy(policy.model, policy.name, policy.run, policy.step, residual)
    base, seen, own, twin_action = here.decide(obs, env, deterministic=True)
    candidates = [(m, moved(env.unwrapped, twin_action, m)) for m in todo]
    candidates = [
        (m, t, learner_action(here, base, own, twin_action, t)) for m, t in candidates if t is not None
    ]
    candidates = [(m, t, c) for m, t, c in candidates if c is not None]
    if not candidates:
        return []
    learner = np.stack([own] + [c for _, _, c in candidates])
    q = critic_value(here, seen, learner)
    values = [cont.value(frozen, policy, obs, a) for a in [twin_action] + [t for _, t, _ in candidates]]
    if shaper is not None:
        r_hat = shaper_value(shaper, seen, learner, [meters for _, meters in values])
    else:
        r_hat = np.full(len(learner), np.nan)
    (g0, boot0, r0), _ = values[0]
    decision = env.unwrapped.decode_action(twin_action)
    rows = []
    for (m, _, _), q1, r1, ((g1, boot1, now1), _) in zip(
        candidates, q[1:], r_hat[1:], values[1:], strict=True
    ):
        now = decision.steps[m.site] if m.kind == "steps" else decision.battery[m.site]
        rows.append({
            "site": names[m.site], "dim": m.kind, "direction": "up" if m.direction > 0 else "down",
            "policy_value": float(now), "critic_q": q[0], "true_g_boot": g0 + boot0, "critic_dq": q1 - q[0],
            "true_dg": g1 - g0, "true_dg_boot": g1 - g0 + boot1 - boot0,
            "shaper_dr": r1 - r_hat[0], "true_dr": now1 - r0,
        })  # fmt: skip
    return rows


def agreement(predicted: pd.Series, true: pd.Series) -> tuple[float, float]:
    """The share of moves whose signs agree (moves worth exactly nothing in the twin left out) and the correlation."""
    signed = true != 0
    agree = (np.sign(predicted[signed]) == np.sign(true[signed])).mean() if signed.any() else np.nan
    return float(agree), float(predicted.corr(true)) if len(true) > 2 else np.nan


def summarise(rows: pd.DataFrame) -> pd.DataFrame:
    """Per checkpoint, decision, site and direction: count, the policy's mean value of the decision, mean
    critic_dq and true_dg (and the medians of their sizes), the share of moves whose signs agree (moves worth
    exactly nothing in the twin left out) and the correlation of the two."""

    def stats(g: pd.DataFrame) -> pd.Series:
        agree, corr = agreement(g.critic_dq, g.true_dg)
        out = {
            "n": len(g), "policy": g.policy_value.mean(), "critic_dq": g.critic_dq.mean(),
            "true_dg": g.true_dg.mean(), "true_dg_boot": g.true_dg_boot.mean(),
            "med_abs_dq": g.critic_dq.abs().median(), "med_abs_dg": g.true_dg.abs().median(),
            "sign_agree": agree, "corr": corr,
        }  # fmt: skip
        # the shaper's ranking against the slot's own reward, and against the discounted return (the whole rest of
        # the day's with --gamma 1); NaN for a checkpoint saved without a shaper (every group has the same keys)
        shaped = g.shaper_dr.notna().any()
        for name, true in (("shaper", g.true_dr), ("shaper_dg", g.true_dg)):
            out[f"{name}_sign_agree"], out[f"{name}_corr"] = (
                agreement(g.shaper_dr, true) if shaped else (np.nan,) * 2
            )
        return pd.Series(out)

    keys = ["checkpoint", "step", "dim", "site", "direction"]
    parts = [rows.groupby(keys, sort=False).apply(stats, include_groups=False).reset_index()]
    overall = rows.groupby(["checkpoint", "step", "dim"], sort=False).apply(stats, include_groups=False)
    parts.append(overall.reset_index().assign(site="all", direction="both"))
    table = pd.concat(parts, ignore_index=True)
    table["n"] = table.n.astype(int)
    table = table.drop(columns=[c for c in table if c.startswith("shaper_") and table[c].isna().all()])
    return table.sort_values(["step", "dim", "site", "direction"], kind="stable").reset_index(drop=True)


def levels(rows: pd.DataFrame) -> pd.DataFrame:
    """Per checkpoint, over the probed states: the mean of Q(s, a) and of what it estimates (``true_g_boot``),
    and the root mean square of their difference."""
    states = rows.drop_duplicates(["checkpoint", "step", "day", "slot"])
    err = states.critic_q - states.true_g_boot
    return (
        states.assign(sq=err**2)
        .groupby(["checkpoint", "step"], sort=False)
        .agg(states=("slot", "size"), critic_q=("critic_q", "mean"), true_g_boot=("true_g_boot", "mean"),
             rmse=("sq", lambda x: float(np.sqrt(x.mean()))))
        .reset_index()
    )  # fmt: skip


def probe_figure(rows: pd.DataFrame, path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from policies.report import save_figure

    ckpts = list(dict.fromkeys(zip(rows.checkpoint, rows.step, strict=True)))
    fig, axes = plt.subplots(
        1, len(ckpts), figsize=(5 * len(ckpts), 4.4), squeeze=False, layout="constrained"
    )
    for ax, (name, step) in zip(axes[0], ckpts, strict=True):
        sel = rows[(rows.checkpoint == name) & (rows.step == step)]
        for k, (dim, g) in enumerate(sel.groupby("dim", sort=False)):
            agree = (np.sign(g.critic_dq) == np.sign(g.true_dg))[g.true_dg != 0].mean()
            label = f"{dim}: signs agree {agree:.0%}"
            ax.scatter(g.true_dg, g.critic_dq, s=10, alpha=0.6, color=f"C{k}", label=label)
        # most moves are worth almost nothing and a few (a step count below the quality floor) a lot
        ax.set_xscale("symlog", linthresh=1e-3)
        ax.set_yscale("symlog", linthresh=1e-3)
        ax.axhline(0, color="0.5", lw=0.8)
        ax.axvline(0, color="0.5", lw=0.8)
        ax.set(
            xlabel="true change of the discounted return (twin, reward units)",
            ylabel="critic's change of min Q",
            title=f"{name} (step {step})",
        )
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=9)
    return save_figure(fig, path)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m policies.critic_probe", description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path, help="a policies.train run directory")
    ap.add_argument(
        "--checkpoints",
        help="comma-separated: best, latest or checkpoint folder names; default best,latest for a run that selects "
        "on validation days, else latest",
    )
    ap.add_argument("--days", type=int, default=3, help="held-out days (spread over the split); default 3")
    ap.add_argument("--stride", type=int, default=24, help="probe every this many slots; default 24")
    ap.add_argument("--dims", default=",".join(DIMS), help=f"decisions to move; default {','.join(DIMS)}")
    ap.add_argument(
        "--stochastic",
        type=int,
        default=0,
        metavar="K",
        help="follow the policy sampling as in training, K draws per action (the policy a soft critic values); "
        "default 0: deterministically (the policy evaluated)",
    )
    ap.add_argument(
        "--gamma", type=float,
        help="discount of true_dg instead of the run's (1: the whole rest of the day; the critic's side still "
        "estimates the run's discount)",
    )  # fmt: skip
    ap.add_argument("--csv", type=Path, help="write every probed move here")
    ap.add_argument("--png", type=Path, help="draw critic vs true changes here")
    ap.add_argument("--no-progress", action="store_true")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.gamma is not None and not 0 <= args.gamma <= 1:
            raise CriticProbeError(f"--gamma must be a discount in [0, 1], got {args.gamma}")
        if args.stride < 1 or args.stochastic < 0:
            raise CriticProbeError(
                f"--stride must be >= 1 and --stochastic >= 0, got {args.stride}, {args.stochastic}"
            )
        run, cfg, env, days = open_run(args.run, args.days)
        kinds = [k.strip() for k in args.dims.split(",") if k.strip()]
        moves(env, kinds)  # refuse a bad --dims before loading anything
        default = "best,latest" if run.selects_on_validation() else "latest"
        names = [c.strip() for c in (args.checkpoints or default).split(",") if c.strip()]
        ckpts = load_checkpoints(run, cfg, names, env)
        cont = Continuation(
            gamma=float(cfg.get("gamma", 0.99)) if args.gamma is None else args.gamma,
            scale=float(env.unwrapped.scenario.reward_scale),
            stochastic=args.stochastic > 0,
            samples=max(args.stochastic, 1),
        )
        torch.set_num_threads(1)
        rows = pd.concat(
            [probe_checkpoint(env, c, days, args.stride, kinds, cont, not args.no_progress) for c in ckpts],
            ignore_index=True,
        )
    except (CriticProbeError, RunDirError, EvaluateError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if rows.empty:
        print("error: no move stayed in range at the probed slots", file=sys.stderr)
        return 2
    if args.csv:  # first: the moves are what took minutes to measure
        write_csv_atomic(args.csv, rows)
    print(summarise(rows).to_string(index=False, float_format=lambda x: f"{x:.4f}"))
    print()
    print(levels(rows).to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    if args.png:
        probe_figure(
            rows,
            args.png,
            f"critic probe of {args.run.name}: {len(days)} held-out days, every {args.stride} slots, gamma "
            f"{cont.gamma:g}, continued "
            + (f"sampling ({cont.samples} draws)" if cont.stochastic else "deterministically"),
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
