"""The one interface every scheduler offers the evaluator (heuristics, the oracle's replay, trained agents),
and the loop that runs one policy through one twin episode and keeps the per-slot accounting."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from twin.env import FLOW_KEYS

#: Per-slot info keys summed over an episode (money in currency, jobs in counts, energy in kWh): the twin's flows.
SUM_KEYS = FLOW_KEYS


def spread(pool, n: int) -> list:
    """``n`` items of ``pool`` evenly spread over it, first and last included (the held-out days an evaluation
    uses: every season and weekday, not the first ``n``); fewer if ``n`` exceeds ``len(pool)``."""
    pick = np.unique(np.linspace(0, len(pool) - 1, n).round().astype(int))
    return [pool[i] for i in pick]


def episode_rates(totals: dict[str, float]) -> dict[str, float]:
    """The violation rates of an episode from its summed counters (NaN where the denominator is 0); a rate
    whose counters are missing from ``totals`` (an env that is not the twin) is left out.

    - ``deadline_violation_rate``: late jobs / served jobs.
    - ``drop_rate``: dropped jobs / arrived jobs.
    - ``quality_violation_rate``: jobs served below the quality floor / served jobs.
    - ``violation_rate``: (late + dropped) / (served + dropped), a job that missed its deadline either way
      (the training metric).
    """

    def ratio(num: float, den: float) -> float:
        return num / den if den > 0 else float("nan")

    rates = {}
    if {"late", "served"} <= totals.keys():
        rates["deadline_violation_rate"] = ratio(totals["late"], totals["served"])
    if {"dropped", "arrived"} <= totals.keys():
        rates["drop_rate"] = ratio(totals["dropped"], totals["arrived"])
    if {"quality_violations", "served"} <= totals.keys():
        rates["quality_violation_rate"] = ratio(totals["quality_violations"], totals["served"])
    if {"late", "served", "dropped"} <= totals.keys():
        rates["violation_rate"] = ratio(
            totals["late"] + totals["dropped"], totals["served"] + totals["dropped"]
        )
    return rates


@runtime_checkable
class Policy(Protocol):
    """A scheduler: ``reset(env)`` after each ``env.reset`` (the episode is known then), ``act(obs, env)``
    returns an action vector of ``env.action_space``."""

    name: str

    def reset(self, env) -> None: ...

    def act(self, obs: np.ndarray, env) -> np.ndarray: ...


@dataclass
class EpisodeResult:
    """Totals of one episode plus the per-slot utility (for cumulative plots) and image-weighted steps."""

    policy: str
    day: str
    seed: int
    totals: dict[str, float]
    slot_utility: np.ndarray
    mean_steps: float
    mean_quality: float
    extra: dict[str, Any] = field(default_factory=dict)


def run_episode(env, policy: Policy, *, day: str | int, seed: int, split: str = "eval") -> EpisodeResult:
    """Reset ``env`` on ``day`` with ``seed`` (the seed fixes the day's sampled arrivals), let ``policy``
    act until the horizon is truncated, and add up the env's own accounting."""
    obs, info = env.reset(seed=seed, options={"split": split, "day": day})
    policy.reset(env)
    totals = dict.fromkeys(SUM_KEYS, 0.0)
    utility, step_img, qual_img = [], 0.0, 0.0
    done = False
    while not done:
        obs, _, terminated, truncated, info = env.step(policy.act(obs, env))
        done = terminated or truncated
        for key in SUM_KEYS:
            totals[key] += float(info[key])
        utility.append(float(info["utility"]))
        served = np.asarray(info["dc"]["served_images"], dtype=float)
        step_img += float(served @ np.asarray(info["dc"]["steps"], dtype=float))
        qual_img += float(served @ np.asarray(info["dc"]["quality"], dtype=float))
    images = max(totals["served_images"], 1e-12)
    return EpisodeResult(
        policy=policy.name,
        day=str(info["day"]),
        seed=seed,
        totals=totals,
        slot_utility=np.asarray(utility),
        mean_steps=step_img / images if totals["served_images"] > 0 else float("nan"),
        mean_quality=qual_img / images if totals["served_images"] > 0 else float("nan"),
    )
