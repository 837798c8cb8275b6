"""A training distribution tilted towards busy days: each training episode's arrival rates times a factor drawn
log-uniformly in [1, ``high``] (``--train-load HIGH``), passed to the twin as ``reset(options={"load": k})``.

Why it exists. With the correction gated to slots where a site nears its capacity (``--residual-gate overload``)
a residual learner acts only in overload, and the days that overload the sites most are rare: the day's arrival
level is a log-normal draw per tenant (``traces.workload``), so in 40k training steps (about 139 days) a learner
sees a handful of days as busy as the held-out days it lost most on (results/residual-overflow-gate-73days).
Tilting the training days towards busier ones gives the gate's open slots more of the data, and by construction
costs nothing on light slots, where a closed gate makes the learner's action its heuristic's whatever it learned.
The factor's range and its log-uniform law are assumptions. Evaluation (held-out and validation days) keeps each
day's own load: only resets that name no day and no load are tilted. A resumed run draws its factors afresh from
its seed (the factor's generator is not checkpointed).

Measured (results/residual-overflow-gate-load3-73days, HIGH = 3: 39 % of the training days at 200,000 jobs or more
against 7.8 % of the held-out episodes): no gated learner gains on its untilted self over the 219 held-out
episodes (plain SAC +0.15 EUR/day, p = 0.48, 16 seeds; the diffusion shaper −0.05; the linear decomposition −2.97),
and none is above overflow. Rare busy training days do not explain the busy-day losses."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np

#: Mixed into the seed of the factor's generator, so its draws are a stream of their own.
STREAM = 20231


class TrainLoadError(ValueError):
    """A load range that is not a finite number >= 1."""


def check_high(high: float) -> float:
    if not (math.isfinite(high) and high >= 1.0):
        raise TrainLoadError(f"the training load's upper end must be a finite number >= 1, got {high!r}")
    return float(high)


class TrainLoad(gym.Wrapper):
    """Tilts each training reset's arrival rates by a factor in [1, ``high``], log-uniform, drawn from a generator
    of its own (``seed``); ``info["load"]`` says which. A reset that names a day or a load is passed on as is."""

    def __init__(self, env: gym.Env, high: float, seed: int):
        super().__init__(env)
        self.high = check_high(high)
        self.rng = np.random.default_rng([seed, STREAM])

    def draw(self) -> float:
        return float(math.exp(self.rng.uniform(0.0, math.log(self.high))))

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        options = dict(options or {})
        if "day" not in options and "load" not in options and options.get("split", "train") == "train":
            options["load"] = self.draw()
        obs, info = self.env.reset(seed=seed, options=options)
        return obs, {**info, "load": options.get("load", 1.0)}
