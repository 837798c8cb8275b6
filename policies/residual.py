"""Residual learning on a heuristic: the learner does not choose the twin's action, it corrects a base policy's.

Each slot the base heuristic (``policies.heuristics``) proposes its action b; the learner sees the observation
with b appended and outputs r in [-1, 1]^d; the twin gets clip(b + scale * r, -1, 1). The deterministic policy of
an untrained actor, whose mean output is near 0, therefore acts much like the heuristic, and learning only has to
find what the heuristic misses (Silver et al. 2018, "Residual Policy Learning"; Johannink et al. 2019). Training
still explores as SAC does (uniform corrections before ``learning_starts``, then a wide Gaussian), so at scale 1
the actions tried early span most of the box. ``Residual`` is the one place that does this: ``ResidualEnv`` wraps
the training env with it, and ``policies.evaluate.TrainedPolicy`` applies it when a residual run is evaluated on
the plain twin (as every other policy is)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from policies.heuristics import HEURISTICS, make_heuristic

#: The default scale of the learner's correction (``policies.train``'s ``--residual-scale``).
RESIDUAL_SCALE = 1.0


class ResidualError(ValueError):
    """A residual setting that cannot be used (unknown base heuristic, bad scale, an env that is not the twin)."""


class Residual:
    """One base heuristic and the scale of the learner's correction; holds the heuristic's episode state, so
    every env (and every evaluated policy) needs its own, ``reset`` after each ``env.reset``."""

    def __init__(self, base: str, scale: float):
        if base not in HEURISTICS:
            raise ResidualError(f"unknown residual base {base!r} (known: {', '.join(HEURISTICS)})")
        if not np.isfinite(scale) or scale <= 0:
            raise ResidualError(f"residual scale must be > 0, got {scale}")
        self.base_name, self.scale = base, float(scale)
        self.base = make_heuristic(base)

    def reset(self, env) -> None:
        self.base.reset(env)

    def view(self, obs: np.ndarray, env) -> tuple[np.ndarray, np.ndarray]:
        """The heuristic's action for this slot and what the learner sees: the twin's observation with that
        action appended. Call it once per observation: a heuristic may count slots (price-greedy does). The
        training env also calls it on the observation after the day's last slot (the learner's next state),
        which the heuristics answer as for the last slot."""
        base = np.asarray(self.base.act(obs, env), dtype=np.float32)
        seen = np.concatenate([np.asarray(obs, dtype=np.float32).reshape(-1), base]).astype(np.float32)
        return base, seen

    def action(self, base_action: np.ndarray, residual: np.ndarray) -> np.ndarray:
        """The twin's action: the heuristic's plus the scaled correction, clipped to the action box."""
        out = base_action + self.scale * np.asarray(residual, dtype=np.float32).reshape(base_action.shape)
        return np.clip(out, -1.0, 1.0).astype(np.float32)

    def observation_space(self, env: gym.Env) -> spaces.Box:
        """The learner's observation space: the twin's, then the action box's bounds."""
        obs, act = env.observation_space, env.action_space
        low = np.concatenate([np.asarray(obs.low).reshape(-1), np.asarray(act.low)]).astype(np.float32)
        high = np.concatenate([np.asarray(obs.high).reshape(-1), np.asarray(act.high)]).astype(np.float32)
        return spaces.Box(low, high, dtype=np.float32)


def residual_from(config: dict[str, Any]) -> Residual | None:
    """The residual of a run's settings (``policies.train.Args`` as a dict, e.g. a run's config.json); None
    when it has none (runs made before the setting existed included)."""
    base = config.get("residual") or ""
    return Residual(base, float(config.get("residual_scale", RESIDUAL_SCALE))) if base else None


def check_twin(env: gym.Env) -> None:
    """The heuristics read the twin's internals: refuse anything else in one line."""
    if not hasattr(env.unwrapped, "encode_action") or not hasattr(env.unwrapped, "tables"):
        raise ResidualError(
            f"a residual learner needs the twin (its heuristics read it), not {env.unwrapped}"
        )


class ResidualEnv(gym.Wrapper):
    """The training env of a residual learner: observations carry the heuristic's action, actions are
    corrections to it. Rewards, termination and ``info`` are the twin's, unchanged."""

    def __init__(self, env: gym.Env, residual: Residual):
        check_twin(env)
        super().__init__(env)
        self.residual = residual
        self.observation_space = residual.observation_space(env)
        self._base: np.ndarray | None = None

    def _see(self, obs: np.ndarray) -> np.ndarray:
        self._base, seen = self.residual.view(obs, self.env)
        return seen

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self.residual.reset(self.env)
        return self._see(obs), info

    def step(self, action):
        if self._base is None:
            raise ResidualError("step() before reset()")
        obs, reward, terminated, truncated, info = self.env.step(self.residual.action(self._base, action))
        return self._see(obs), reward, terminated, truncated, info
