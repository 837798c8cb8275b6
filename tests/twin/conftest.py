"""Fixtures for twin tests: small hand-made cards and exogenous arrays (test inputs, not real figures)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pytest

from twin.exogenous import ExogenousData, calendar_days
from twin.scenario import load_scenario


@dataclass(frozen=True)
class FakeCard:
    """A card with the twin.cards.ModelCard API and round test numbers."""

    lat: tuple[float, float, float, float] = (0.1, 0.05, 0.02, 0.01)  # fixed, fixed*b, step, step*b
    en: tuple[float, float, float, float] = (10.0, 8.0, 4.0, 3.0)
    batch_sizes: tuple[int, ...] = (1, 2, 4, 8)
    idle_power_w: float | None = 50.0
    energy_basis: str = "gross"

    def batch_latency_s(self, steps, batch):
        a, b, c, d = self.lat
        s, n = np.asarray(steps, float), np.asarray(batch, float)
        return a + b * n + s * (c + d * n)

    def batch_energy_j(self, steps, batch):
        a, b, c, d = self.en
        s, n = np.asarray(steps, float), np.asarray(batch, float)
        return a + b * n + s * (c + d * n)

    def quality(self, steps):
        return 1.0 / (1.0 + np.exp(-0.3 * (np.asarray(steps, float) - 10.0)))


class PoissonArrivals:
    """Poisson requests with a fixed mean per (slot, DC), split over classes by fixed shares."""

    source = "test: poisson"

    def __init__(self, mean: np.ndarray, images=(1, 2, 4, 8), probs=(0.55, 0.1, 0.2, 0.15)):
        self.mean = np.asarray(mean, float)
        self.images = np.asarray(images)
        self.probs = np.asarray(probs, float)

    def sample(self, rng, day, slots, slot_s, load=1.0):
        lam = load * self.mean[:slots, :, None] * self.probs[None, None, :]
        return rng.poisson(lam)


def synthetic_data(scenario, mean_requests: float = 20.0, seed: int = 0) -> ExogenousData:
    """Smooth, deterministic test series on the scenario's grid (not real data)."""
    days = calendar_days(scenario)
    t, n = scenario.slots_per_episode, scenario.n_dc
    hours = np.arange(t) * scenario.slot_s / 3600.0
    shape = (len(days), t, n)
    day_wave = np.sin(np.pi * np.clip((hours - 6) / 12, 0, 1))[None, :, None]
    rng = np.random.default_rng(seed)
    price = 60 + 30 * np.cos(2 * np.pi * (hours - 18) / 24)[None, :, None] + rng.normal(0, 5, shape)
    pv = np.broadcast_to(day_wave * np.array([d.pv_kw for d in scenario.datacenters]), shape).copy()
    wind = np.broadcast_to(0.3 * np.array([d.wind_kw for d in scenario.datacenters]), shape).copy()
    temp = 15 + 10 * np.broadcast_to(day_wave, shape)
    mean = mean_requests * (0.5 + np.broadcast_to(day_wave[0], (t, n)))
    return ExogenousData(days, scenario.slot_s, price, pv, wind, temp, PoissonArrivals(mean), {"test": True})


@pytest.fixture(scope="session")
def tiny():
    return load_scenario("tiny")


@pytest.fixture
def tiny_env(tiny):
    from twin.env import AIGCTwinEnv

    return AIGCTwinEnv(tiny, data=synthetic_data(tiny), cards=[FakeCard() for _ in tiny.datacenters])


def iso(day: dt.date) -> str:
    return day.isoformat()
