"""Residual learning on a heuristic: the learner does not choose the twin's action, it corrects a base policy's.

Each slot the base heuristic (``policies.heuristics``) proposes its action b; the learner sees the observation
with b appended and outputs r in [-1, 1]^d; the twin gets clip(b + scale * r, -1, 1). The deterministic policy of
an untrained actor, whose mean output is near 0, therefore acts much like the heuristic, and learning only has to
find what the heuristic misses (Silver et al. 2018, "Residual Policy Learning"; Johannink et al. 2019). Training
still explores as SAC does (uniform corrections before ``learning_starts``, then a wide Gaussian), so at scale 1
the actions tried early span most of the box. ``Residual`` is the one place that does this: ``ResidualEnv`` wraps
the training env with it, and ``policies.evaluate.TrainedPolicy`` applies it when a residual run is evaluated on
the plain twin (as every other policy is).

With a gate (``residual_gate="overload"``) the correction acts only where a site is near its capacity: each action
dimension's correction is multiplied by its site's gate g in [0, 1] (a transfer's by its origin's), 0 while the
site's offered load is below ``GATE_FROM`` of what its pool serves at the saturating step count, rising linearly
to 1 at that capacity; the learner sees the sites' gates after the heuristic's action. Under a daily settlement a
learned correction tends to be one shift at every slot (``policies.action_probe``); gated, the same shift acts
only in loaded slots, where a rule such as overflow leaves its gap to the oracle."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from policies.heuristics import (
    HEURISTICS,
    make_heuristic,
    offered_load,
    relative_capacity,
    saturation_index,
)

#: The default scale of the learner's correction (``policies.train``'s ``--residual-scale``).
RESIDUAL_SCALE = 1.0
#: The gates a residual correction can have ("": none, the correction acts everywhere).
GATES = ("", "overload")
#: Assumed: the share of a site's capacity (at the saturating step count) above which the overload gate opens.
GATE_FROM = 0.8


class ResidualError(ValueError):
    """A residual setting that cannot be used (unknown base heuristic, bad scale, an env that is not the twin)."""


class Residual:
    """One base heuristic and the scale of the learner's correction; holds the heuristic's episode state, so
    every env (and every evaluated policy) needs its own, ``reset`` after each ``env.reset``."""

    def __init__(self, base: str, scale: float, gate: str = ""):
        if base not in HEURISTICS:
            raise ResidualError(f"unknown residual base {base!r} (known: {', '.join(HEURISTICS)})")
        if not np.isfinite(scale) or scale <= 0:
            raise ResidualError(f"residual scale must be > 0, got {scale}")
        if gate not in GATES:
            raise ResidualError(f"unknown residual gate {gate!r} (known: {', '.join(g for g in GATES if g)})")
        self.base_name, self.scale, self.gate = base, float(scale), gate
        self.base = make_heuristic(base)
        self._gate: np.ndarray | None = None  # per action dimension, from the last view

    @property
    def label(self) -> str:
        """The base heuristic, and the gate where there is one (``overflow`` or ``overflow/overload``)."""
        return self.base_name + (f"/{self.gate}" if self.gate else "")

    def reset(self, env) -> None:
        self.base.reset(env)
        if self.gate:
            u = env.unwrapped
            self.capacity = relative_capacity(env)[np.arange(u.n_dc), saturation_index(env)]  # (N,)
            origin = np.repeat(np.arange(u.n_dc), u.n_dc - 1)  # the transfer pairs' origins, as encode_action
            self.site_of = np.concatenate([origin, np.arange(u.n_dc), np.arange(u.n_dc)])
        self._gate = None

    def site_gates(self, obs: np.ndarray) -> np.ndarray:
        """(N,) the overload gate per site for an observation: 0 up to ``GATE_FROM`` of its capacity at the
        saturating step count, 1 from that capacity on, linear between (after ``reset``)."""
        if not self.gate:
            raise ResidualError("site_gates of a residual without a gate")
        load = offered_load(obs, len(self.capacity)) / self.capacity
        return np.clip((load - GATE_FROM) / (1.0 - GATE_FROM), 0.0, 1.0).astype(np.float32)

    def view(self, obs: np.ndarray, env) -> tuple[np.ndarray, np.ndarray]:
        """The heuristic's action for this slot and what the learner sees: the twin's observation with that
        action appended (and the sites' gates, with a gate). Call it once per observation, before ``action``:
        a heuristic may count slots (price-greedy does), and the gate of the last view is the one ``action``
        applies. The training env also calls it on the observation after the day's last slot (the learner's
        next state), which the heuristics answer as for the last slot."""
        base = np.asarray(self.base.act(obs, env), dtype=np.float32)
        parts = [np.asarray(obs, dtype=np.float32).reshape(-1), base]
        if self.gate:
            sites = self.site_gates(obs)
            self._gate = sites[self.site_of]
            parts.append(sites)
        return base, np.concatenate(parts).astype(np.float32)

    def gain(self, dims: int) -> np.ndarray:
        """(dims,) what each dimension of the learner's output is multiplied by at the last viewed slot: the
        scale, times the dimension's site's gate where there is a gate."""
        gain = np.full(dims, self.scale, dtype=np.float32)
        if not self.gate:
            return gain
        if self._gate is None:
            raise ResidualError("a gated correction needs a view of the slot first")
        return gain * self._gate

    def action(self, base_action: np.ndarray, residual: np.ndarray) -> np.ndarray:
        """The twin's action: the heuristic's plus the scaled (and gated) correction, clipped to the box."""
        correction = self.gain(base_action.size) * np.asarray(residual, dtype=np.float32).reshape(-1)
        return np.clip(base_action + correction.reshape(base_action.shape), -1.0, 1.0).astype(np.float32)

    def observation_space(self, env: gym.Env) -> spaces.Box:
        """The learner's observation space: the twin's, then the action box's bounds (then the gates' [0, 1])."""
        obs, act = env.observation_space, env.action_space
        n = env.unwrapped.n_dc if self.gate else 0
        low = [np.asarray(obs.low).reshape(-1), np.asarray(act.low), np.zeros(n)]
        high = [np.asarray(obs.high).reshape(-1), np.asarray(act.high), np.ones(n)]
        return spaces.Box(
            np.concatenate(low).astype(np.float32), np.concatenate(high).astype(np.float32), dtype=np.float32
        )


def residual_from(config: dict[str, Any]) -> Residual | None:
    """The residual of a run's settings (``policies.train.Args`` as a dict, e.g. a run's config.json); None
    when it has none (runs made before the setting existed included)."""
    base = config.get("residual") or ""
    if not base:
        return None
    return Residual(
        base, float(config.get("residual_scale", RESIDUAL_SCALE)), config.get("residual_gate") or ""
    )


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
