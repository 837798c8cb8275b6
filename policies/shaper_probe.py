"""Can a return decomposition be identified from the settlements a run stored? Fits a fresh shaper on the earlier
periods of a finished run's replay buffer and scores it on the later, held-out ones against the hidden per-slot
reward the buffer keeps for diagnosis (no learner ever trains on it).

    python -m policies.shaper_probe RUN_DIR [--shaping diffusion] [--updates 1000] [--no-action]
                                    [--labels total|items] [--meters] [--supervised] [--png PATH]
                                    [--periods N] [--slots N] [--draws N] [--features F]

Every ``--every`` fits it reports, on the training and on the held-out periods: the relative error of the
decomposed period sums (what the fit minimises, the only score a learner could watch) and the correlation of
r_hat with the hidden per-slot reward, overall and within periods (each minus its period's mean: the part of the
credit a ``redistribute`` mix moves between slots). A shaper whose held-out sum error falls while its
correlation does not rise is fitting sums the settlements cannot tie to slots. The fits are the shaper's own
(``RewardShaper.fit_batch``, the run's ``shaper_periods`` and ``shaper_max_slots`` unless ``--periods`` and
``--slots`` say otherwise: ``--periods 8 --slots 288`` fits 8 whole days a step where the quick budget's 32 x 48
samples 48 random slots of each day); the buffer is the one a learner filled, so its states and actions are that
learner's, not a random policy's. A stochastic shaper (diffusion: its chain starts from noise) is scored on the
mean of ``--draws`` draws of r_hat per slot, with its own random numbers, so the fits are the same whatever
``--draws`` and ``--every`` are. ``--features`` widens the linear decomposition's map of (s, a) with a^2
(``squares``), or with a^2 and every a_i s_j (``interactions``; ``policies.shapers.linear.FEATURES``): what a
decomposition whose slope in the action depends on the state would have to identify from the same sums.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from stable_baselines3.common.save_util import load_from_pkl
from tqdm import tqdm

from policies.agents import LEARNED_SHAPINGS, SHAPER_LABELS, AgentConfig, AgentError, build_shaper
from policies.replay import ShapedReplayBuffer
from policies.run_dir import BUFFER_FILE, RunDir, RunDirError
from policies.shapers import PeriodBatch, RewardShaper, ShaperError
from policies.shapers.base import pearson
from policies.shapers.linear import FEATURES
from traces.atomic import write_csv_atomic

#: Shapers with an r_hat(s, a) to score.
PROBED = LEARNED_SHAPINGS


class ProbeError(ValueError):
    """The run cannot be probed (no buffer, no settled periods, no hidden reward, bad option)."""


def load_run(run: Path) -> tuple[ShapedReplayBuffer, AgentConfig]:
    """The replay buffer of a run's latest checkpoint and the run's agent settings."""
    run_dir = RunDir(run)
    saved = run_dir.load_config()
    ckpt = run_dir.latest_checkpoint()
    if ckpt is None or not (ckpt / BUFFER_FILE).is_file():
        raise ProbeError(f"no checkpoint with a {BUFFER_FILE} in {run}")
    buffer = load_from_pkl(ckpt / BUFFER_FILE)
    if not isinstance(buffer, ShapedReplayBuffer):
        raise ProbeError(f"{ckpt / BUFFER_FILE} is not a ShapedReplayBuffer")
    return buffer, AgentConfig.from_saved(saved)


def split_periods(buffer: ShapedReplayBuffer, held_out: float) -> tuple[tuple, tuple]:
    """(fit, held-out) period ends, in the order the periods were lived: the last ``held_out`` share held out."""
    pos, env = buffer.complete_period_ends()
    order = np.argsort(buffer.period_ids[pos, env], kind="stable")
    pos, env = pos[order], env[order]
    n_out = round(held_out * len(pos))
    if n_out < 2 or len(pos) - n_out < 2:
        raise ProbeError(
            f"{len(pos)} complete settlement periods in the buffer: too few to fit on some and hold "
            f"out {held_out:g} of them (need at least 2 of each)"
        )
    cut = len(pos) - n_out
    return (pos[:cut], env[:cut]), (pos[cut:], env[cut:])


def score(shaper: RewardShaper, buffer: ShapedReplayBuffer, ends: tuple, draws: int = 1) -> dict[str, float]:
    """Sum error and correlations of r_hat with the hidden reward over every slot of the periods ``ends``; r_hat
    of a stochastic shaper is the mean of ``draws`` draws, made without touching the fits' random numbers."""
    periods = [buffer.period_slots(p, e) for p, e in zip(*ends, strict=True)]
    envs = np.concatenate([np.full(len(s), e) for s, e in zip(periods, ends[1], strict=True)])
    idx = np.concatenate(periods)
    obs, actions = buffer.to_torch(buffer.observations[idx, envs]), buffer.to_torch(buffer.actions[idx, envs])
    meters = buffer.to_torch(np.nan_to_num(buffer.meters[idx, envs])) if shaper.meters else None
    with torch.no_grad(), torch.random.fork_rng():
        shaper.eval()
        n = draws if shaper.stochastic else 1
        r_hat = (sum(shaper.step_reward(obs, actions, meters) for _ in range(n)) / n).numpy()
    hidden = buffer.hidden[idx, envs].astype(np.float64)
    lengths = np.array([len(s) for s in periods])
    period_of = np.repeat(np.arange(len(periods)), lengths)
    sums = np.bincount(period_of, weights=r_hat)
    settled = np.array([buffer.rewards[s, e].sum() for s, e in zip(periods, ends[1], strict=True)])

    def within(x: np.ndarray) -> np.ndarray:
        return x - (np.bincount(period_of, weights=x) / lengths)[period_of]

    t = torch.as_tensor
    return {
        "sum_rel_err": float(np.abs(sums - settled).mean() / max(np.abs(settled).mean(), 1e-12)),
        "corr": pearson(t(r_hat), t(hidden)),
        "corr_within": pearson(t(within(r_hat.astype(np.float64))), t(within(hidden))),
    }


def per_slot(batch: PeriodBatch) -> PeriodBatch:
    """``batch``'s real slots as periods of one slot each, labelled with their hidden per-slot reward."""
    keep = batch.mask.reshape(-1) > 0
    flat = {
        name: getattr(batch, name).reshape(-1, 1, *getattr(batch, name).shape[2:])[keep]
        for name in (
            "obs",
            "actions",
            "next_obs",
            "dones",
            "rewards",
            "reward_to_go",
            "mask",
            "hidden",
            "meters",
        )
        if getattr(batch, name) is not None
    }
    hidden = flat["hidden"].reshape(-1)
    ones = torch.ones_like(hidden)
    return PeriodBatch(**flat, scale=ones, returns=hidden, lengths=ones)


def probe(
    buffer: ShapedReplayBuffer,
    shaper: RewardShaper,
    cfg: AgentConfig,
    *,
    updates: int,
    every: int,
    held_out: float,
    progress: bool = False,
    supervised: bool = False,
    draws: int = 1,
) -> pd.DataFrame:
    """One row per scored point: fits so far and each split's sum error and correlations. ``supervised``: the
    shaper fits the hidden per-slot reward itself (each slot a period of its own), the ceiling of its model class
    on these states and actions, which no learner could reach from settlements. ``draws``: see ``score``."""
    fit_ends, out_ends = split_periods(buffer, held_out)
    if not np.isfinite(buffer.hidden[fit_ends[0], fit_ends[1]]).any():
        raise ProbeError("the buffer holds no hidden per-slot reward (the env's info has no 'utility')")
    labelled = per_slot if supervised else lambda batch: batch
    rows = []
    for n in tqdm(range(1, updates + 1), disable=not progress, desc="shaper fits"):
        if n == 1 and shaper.fits_whole:  # every slot of every fit period, in the order lived: fitted once
            shaper.fit_whole(labelled(buffer.whole_periods(fit_ends)))
        if not shaper.closed_form:
            shaper.fit_batch(
                labelled(buffer.sample_periods(cfg.shaper_periods, cfg.shaper_max_slots, ends=fit_ends))
            )
        if n % every == 0 or n == updates:
            row = {"updates": n}
            for split, ends in (("fit", fit_ends), ("held_out", out_ends)):
                row.update({f"{split}_{k}": v for k, v in score(shaper, buffer, ends, draws).items()})
            rows.append(row)
    return pd.DataFrame(rows)


def probe_figure(table: pd.DataFrame, path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from policies.report import save_figure

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    for split, style in (("fit", "--"), ("held_out", "-")):
        name = split.replace("_", "-")
        left.plot(table.updates, table[f"{split}_sum_rel_err"], style, color="C0", label=name)
        right.plot(table.updates, table[f"{split}_corr"], style, color="C0", label=f"{name}: overall")
        right.plot(
            table.updates, table[f"{split}_corr_within"], style, color="C1", label=f"{name}: within periods"
        )
    left.set(xlabel="shaper fits", ylabel="relative error of period sums", title="what the fit minimises")
    right.set(xlabel="shaper fits", ylabel="corr(r_hat, hidden per-slot reward)", title="credit per slot")
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=9)
    return save_figure(fig, path)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m policies.shaper_probe", description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path, help="a policies.train run directory (its latest checkpoint's buffer)")
    ap.add_argument("--shaping", default="diffusion", help=f"shaper to fit: {' | '.join(PROBED)}")
    ap.add_argument("--updates", type=int, default=1000, help="shaper fits (gradient steps); default 1000")
    ap.add_argument("--every", type=int, default=100, help="score every this many fits; default 100")
    ap.add_argument("--held-out", type=float, default=0.25, help="share of the latest periods held out")
    ap.add_argument("--no-action", action="store_true", help="condition r_hat on the state alone")
    ap.add_argument(
        "--labels", choices=SHAPER_LABELS,
        help="fit the settled amounts (total) or their items (the run must have stored itemised settlements); "
        "default: the run's",
    )  # fmt: skip
    ap.add_argument("--shaper-hidden", type=int, help="hidden width instead of the run's")
    ap.add_argument(
        "--meters", action=argparse.BooleanOptionalAction,
        help="condition r_hat on the slots' meter readings (the run must have stored them); default: the run's",
    )  # fmt: skip
    ap.add_argument(
        "--supervised", action="store_true",
        help="a ceiling, not a decomposition: fit the hidden per-slot reward itself (no learner has it)",
    )  # fmt: skip
    ap.add_argument("--periods", type=int, help="periods per fit instead of the run's shaper_periods")
    ap.add_argument(
        "--slots", type=int,
        help="at most this many random slots of each period instead of the run's shaper_max_slots "
        "(a period's length or more: whole periods)",
    )  # fmt: skip
    ap.add_argument(
        "--draws", type=int, default=1,
        help="score a stochastic shaper (diffusion) on the mean of this many draws of r_hat; default 1",
    )  # fmt: skip
    ap.add_argument(
        "--features", choices=FEATURES, default="linear",
        help="the linear shaper's map of (s, a): linear [s, a]; squares adds a^2; interactions a^2 and a_i s_j",
    )  # fmt: skip
    ap.add_argument("--seed", type=int, default=0, help="seed of the shaper's weights and of the sampling")
    ap.add_argument("--csv", type=Path, help="write the table here")
    ap.add_argument("--png", type=Path, help="draw the table here")
    ap.add_argument("--no-progress", action="store_true")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.shaping not in PROBED:
            raise ProbeError(f"unknown shaping {args.shaping!r}; choose one of {', '.join(PROBED)}")
        if args.updates < 1 or args.every < 1:
            raise ProbeError(f"--updates and --every must be >= 1, got {args.updates} and {args.every}")
        for flag in ("periods", "slots", "draws"):
            if getattr(args, flag) is not None and getattr(args, flag) < 1:
                raise ProbeError(f"--{flag} must be >= 1, got {getattr(args, flag)}")
        if not 0 < args.held_out < 1:
            raise ProbeError(f"--held-out must be between 0 and 1, got {args.held_out}")
        buffer, cfg = load_run(args.run)
        cfg = replace(cfg, shaper_uses_action=not args.no_action, device="cpu")
        if args.labels is not None:
            cfg = replace(cfg, shaper_labels=args.labels)
        if args.meters is not None:
            cfg = replace(cfg, shaper_meters=args.meters)
        items, meters = 1, 0
        if args.supervised and args.labels == "items":
            raise ProbeError("--supervised fits the per-slot reward: it takes no --labels items")
        if args.supervised:
            cfg = replace(cfg, shaper_labels="total")
        if cfg.shaper_labels == "items":
            if buffer.items is None:
                raise ProbeError(
                    f"{args.run}: its buffer stored no itemised settlements (fit --labels total)"
                )
            items = buffer.items.shape[-1]
        if cfg.shaper_meters:
            if buffer.meters is None:
                raise ProbeError(f"{args.run}: its buffer stored no meter readings (fit --no-meters)")
            meters = buffer.meters.shape[-1]
        if args.shaper_hidden is not None:
            cfg = replace(cfg, shaper_hidden=args.shaper_hidden)
        if args.periods is not None:
            cfg = replace(cfg, shaper_periods=args.periods)
        if args.slots is not None:
            cfg = replace(cfg, shaper_max_slots=args.slots)
        torch.manual_seed(args.seed)
        np.random.seed(args.seed)  # noqa: NPY002 (the buffer samples from the global RNG, as SB3 seeds it)
        buffer.device = torch.device("cpu")
        shaper = build_shaper(
            args.shaping, buffer.obs_shape[0], buffer.action_dim, cfg, items, meters, features=args.features
        )
        table = probe(
            buffer, shaper, cfg, updates=args.updates, every=args.every, held_out=args.held_out,
            progress=not args.no_progress, supervised=args.supervised, draws=args.draws,
        )  # fmt: skip
    except (ProbeError, RunDirError, AgentError, ShaperError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(table.to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    if args.csv:
        write_csv_atomic(args.csv, table)
    if args.png:
        inputs = ("s" if args.no_action else "s, a") + (", itemised" if cfg.shaper_labels == "items" else "")
        inputs += "" if args.features == "linear" else f", {args.features}"
        inputs += (", meters" if cfg.shaper_meters else "") + (
            ", supervised per slot" if args.supervised else ""
        )
        batch = (
            ""
            if shaper.closed_form
            else f", {cfg.shaper_periods} periods x <= {cfg.shaper_max_slots} slots a fit"
        )
        draws = f", mean of {args.draws} draws" if shaper.stochastic and args.draws > 1 else ""
        title = (
            f"{args.shaping} r_hat({inputs}) refitted on {args.run.name}{batch}{draws} "
            f"(held out: the last {args.held_out:g})"
        )
        probe_figure(table, args.png, title)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
