"""A settlement wrapper for any gymnasium env: it pays the reward accumulated over every ``period`` steps
at once (``info["settled"]``), keeping the per-step reward in ``info["utility"]`` for diagnosis only."""

from __future__ import annotations

import gymnasium as gym


class SettlementWrapper(gym.Wrapper):
    """Delays rewards into settlements every ``period`` steps and at the episode's end (sparse-reward tests).

    It mirrors the twin's sparse mode: the reward is 0 except on settlement steps, where it is the sum since
    the last settlement; ``info["settled"]`` marks those steps and ``info["utility"]`` holds the hidden
    per-step reward.
    """

    def __init__(self, env: gym.Env, period: int):
        super().__init__(env)
        if period < 1:
            raise ValueError(f"settlement period must be >= 1 step, got {period}")
        self.period = period
        self._pending, self._t = 0.0, 0

    def reset(self, **kwargs):
        self._pending, self._t = 0.0, 0
        return self.env.reset(**kwargs)

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._pending += float(reward)
        self._t += 1
        settled = self._t % self.period == 0 or terminated or truncated
        paid = self._pending if settled else 0.0
        if settled:
            self._pending = 0.0
        return obs, paid, terminated, truncated, {**info, "settled": bool(settled), "utility": float(reward)}
