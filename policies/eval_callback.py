"""Held-out evaluation during training: at the start, every ``eval_every`` env steps and at the end, the
deterministic policy on held-out days spread over its twin's split, in an env of its own; one row per evaluation
in ``<run>/eval.csv``. Optionally also on validation days, keeping the policy best on them in ``<run>/best/``
(what the evaluators then use): checkpoint selection that never looks at the held-out days."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import gymnasium as gym
import pandas as pd
import torch
from stable_baselines3.common.callbacks import BaseCallback

from policies.evaluate import MONEY, TrainedPolicy  # MONEY: the per-day money terms, unscaled
from policies.policy import episode_rates, run_episode, spread
from policies.residual import Residual
from policies.run_dir import SHAPER_FILE, MetricsLog, best_state, publish_dir, save_shaper
from traces.atomic import write_json_atomic

#: Arrival seed of the i-th evaluated day (the experiments' day seeds): fixed, so every evaluation of every run
#: sees the same days with the same jobs.
DAY_SEED0 = 10_000
#: Arrival seed of the i-th validation day: fixed, and apart from the held-out days'.
VAL_SEED0 = 20_000


def is_twin(env: gym.Env) -> bool:
    """Whether ``env`` is the twin (it has held-out evaluation days)."""
    return hasattr(env.unwrapped, "eval_days") and hasattr(env.unwrapped, "data")


def held_out_days(env: gym.Env, n: int, flag: str = "--eval-days") -> list[int]:
    """``n`` held-out evaluation days of the twin ``env`` spread over its split (day indices, as ``reset`` takes
    them): the first ``n`` would all be winter days of one season's load. ``flag``: the option a bad ``n`` came
    from, named in the ValueError."""
    pool = [int(d) for d in env.unwrapped.eval_days]
    if not 1 <= n <= len(pool):
        raise ValueError(f"{flag} must be in 1..{len(pool)} (held-out days of the scenario), got {n}")
    return spread(pool, n)


def validation_days(env: gym.Env, n: int) -> list[int]:
    """``n`` validation days of the twin ``env``: days of its *training* split at the middles of ``n`` equal
    parts of the year (not its ends, which are holidays), run with arrival seeds of their own (``VAL_SEED0 + i``;
    training episodes draw theirs at random). Selecting a checkpoint on them leaves the held-out days unseen;
    their prices and weather were trained on, so they rank checkpoints, they do not measure them."""
    pool = [int(d) for d in env.unwrapped.train_days]
    if not 1 <= n <= len(pool):
        raise ValueError(f"--val-days must be in 1..{len(pool)} (training days of the scenario), got {n}")
    return [pool[int((i + 0.5) * len(pool) / n)] for i in range(n)]


def day_means(env: gym.Env, policy, days: list[int], seed0: int = DAY_SEED0) -> dict[str, float]:
    """Mean per-day money terms and violation rate of ``policy`` on ``days``, from ``run_episode``'s accounting
    (the evaluator's; day ``i`` is run with arrival seed ``seed0 + i``)."""
    rows = []
    for i, day in enumerate(days):
        totals = run_episode(env, policy, day=day, seed=seed0 + i).totals
        rows.append(
            {**{k: totals[k] for k in MONEY}, "violation_rate": episode_rates(totals)["violation_rate"]}
        )
    return {k: float(v) for k, v in pd.DataFrame(rows).mean().items()}  # a NaN rate is skipped, not averaged


@contextmanager
def cheap_inference() -> Iterator[None]:
    """No autograd and one torch thread for the evaluation, the caller's thread count restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.no_grad():
            yield
    finally:
        torch.set_num_threads(before)


class HeldOutEvalCallback(BaseCallback):
    """Evaluates the untrained policy when training starts from step 0 (where learning starts from), then at the
    first rollout start at or after each multiple of ``every`` env steps (after the gradient update of the step
    before, as checkpoints are saved) and once at the end, unless that step was evaluated.

    ``make_env`` builds the evaluation env (never the training env), lazily, when training starts: the plain
    twin, with a residual learner's heuristic applied by the evaluated policy (``residual``). On resume
    ``resume(step)`` keeps the rows up to the checkpoint's step and the next evaluation follows on from it.

    With ``val_days`` > 0 each evaluation also runs ``validation_days`` (columns ``val_*``), and a policy better on
    them than every earlier one is saved to ``best`` (``model.zip``, the reward shaper as it was then where the
    learner has one, and ``state.json``: its step and validation utility), replacing the last; the step-0 policy
    is a candidate like any other. Checkpoints carry a copy of ``best`` (``policies.train``), so a resumed run
    selects as an uninterrupted one would."""

    def __init__(
        self,
        make_env: Callable[[], gym.Env],
        path: Path,
        every: int,
        n_days: int,
        val_days: int = 0,
        best: Path | None = None,
        residual: Residual | None = None,
    ):
        super().__init__()
        self.residual = residual
        if val_days > 0 and best is None:
            raise ValueError("validation days need a folder for the best policy")
        self.make_env, self.every, self.n_days, self.n_val = make_env, every, n_days, val_days
        self.log = MetricsLog(path)
        self.best = best
        self.env: gym.Env | None = None
        self.days: list[int] = []
        self.val: list[int] = []
        self.best_utility = -math.inf
        self.last_step = 0

    def resume(self, step: int) -> None:
        self.log.resume(step)

    def _on_training_start(self) -> None:
        self.env = self.make_env()
        self.days = held_out_days(self.env, self.n_days)
        if self.n_val > 0:
            self.val = validation_days(self.env, self.n_val)
            state = best_state(self.best)
            if state is not None:  # restored with the checkpoint resumed from
                self.best_utility = float(state["val_utility"])
        self.last_step = self.num_timesteps
        if self.num_timesteps == 0:
            self.evaluate()

    def _on_rollout_start(self) -> None:
        if self.num_timesteps // self.every > self.last_step // self.every:
            self.evaluate()

    def _on_step(self) -> bool:
        return True

    def _on_training_end(self) -> None:
        if self.num_timesteps > self.last_step:
            self.evaluate()
        if self.env is not None:
            self.env.close()
            self.env = None

    def evaluate(self) -> dict[str, Any]:
        """Run the evaluation now, append its row to eval.csv (rewritten atomically) and TensorBoard; keep the
        policy if it is the best on the validation days so far."""
        t0 = time.perf_counter()
        policy = TrainedPolicy(self.model, "trained", run="", residual=self.residual)
        with cheap_inference():
            means = day_means(self.env, policy, self.days)
            val = day_means(self.env, policy, self.val, seed0=VAL_SEED0) if self.val else {}
        row = {"step": self.num_timesteps, "days": len(self.days), **means}
        if val:
            row.update({"val_days": len(self.val), "val_utility": val["utility"]})
            row["val_violation_rate"] = val["violation_rate"]
            row["val_best"] = val["utility"] > self.best_utility
            if row["val_best"]:
                self.keep_best(val["utility"])
            self.logger.record("eval/val_utility", row["val_utility"])
        row["wall_s"] = round(time.perf_counter() - t0, 3)
        self.log.append(row)
        self.log.flush()
        self.last_step = self.num_timesteps
        self.logger.record("eval/utility", row["utility"])
        self.logger.dump(self.num_timesteps)  # now: the end-of-training row would otherwise never be written
        return row

    def keep_best(self, utility: float) -> None:
        def write(folder: Path) -> None:
            self.model.save(folder / "model.zip")
            shaper = getattr(self.model.replay_buffer, "shaper", None)
            if shaper is not None:  # the shaper as it was at this policy (the critic probe scores it there)
                save_shaper(folder / SHAPER_FILE, shaper)
            write_json_atomic(folder / "state.json", {"step": self.num_timesteps, "val_utility": utility})

        publish_dir(self.best, write)
        self.best_utility = utility
