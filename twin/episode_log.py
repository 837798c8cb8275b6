"""A step-by-step episode log: one row per slot with the money terms, job counts and each data centre's
price, renewables, load, battery, grid, queue and decisions, as a DataFrame or an atomically written CSV."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from traces.atomic import write_csv_atomic
from twin.env import FLOW_KEYS, STOCK_KEYS

#: Scalar info keys copied as they are: the slot's labels, its flows and the stocks after it.
SCALARS = ("slot", "day", "settled", *FLOW_KEYS, *STOCK_KEYS)
#: Per-DC info keys, written as ``<key>__<dc name>``.
PER_DC = (
    "price", "steps", "batch", "utilisation", "quality", "arrived", "served", "late", "dropped", "queued",
    "load_kwh", "renewable_kwh", "renewable_used_kwh", "battery_charge_kwh", "battery_discharge_kwh",
    "grid_import_kwh", "export_kwh", "curtailed_kwh", "soc", "utility",
)  # fmt: skip


class EpisodeLog:
    """Collects ``info`` dicts of one episode and turns them into a tidy table."""

    def __init__(self, dc_names: list[str]):
        self.dc_names = list(dc_names)
        self.rows: list[dict[str, Any]] = []

    def record(self, info: dict[str, Any], reward: float) -> None:
        row = {k: info[k] for k in SCALARS}
        row["reward"] = reward
        for key in PER_DC:
            for name, value in zip(self.dc_names, np.asarray(info["dc"][key]), strict=True):
                row[f"{key}__{name}"] = value.item()
        self.rows.append(row)

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows)

    def save(self, path: str | Path) -> Path:
        return write_csv_atomic(path, self.frame())


def rollout(env, policy: Callable[[np.ndarray], np.ndarray], seed: int = 0, options: dict | None = None):
    """Run one episode of ``env`` (unwrapped AIGCTwinEnv) with ``policy(obs) -> action``; returns the log."""
    log = EpisodeLog([d.name for d in env.scenario.datacenters])
    obs, _ = env.reset(seed=seed, options=options)
    truncated = False
    while not truncated:
        obs, reward, _, truncated, info = env.step(policy(obs))
        log.record(info, reward)
    return log
