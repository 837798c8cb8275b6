"""The measurement protocol over a (steps, batch) grid: warm-up, windows of repeated generations, latency and
energy statistics per point, OOM handling, and a resumable trace rewritten atomically after every point."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from profiling.energy import Window
from profiling.quality import ClipScorer, summarise
from traces.atomic import write_csv_atomic
from traces.profile_schema import COLUMNS, KEY_COLUMNS, coerce_profile, empty_profile, read_profile
from traces.prompts import cycle_prompts


@dataclass
class SweepConfig:
    """Everything one sweep needs besides the pipeline and the monitor."""

    model: str
    scheduler: str
    resolution: int
    mode: str
    guidance_scale: float
    steps: list[int]
    batches: list[int]
    prompts: list[str]
    weights: str
    device_label: str
    seed: int = 0
    min_window_s: float = 3.0
    min_repeats: int = 2
    warmup: int = 2
    clip_images: int = 16
    force: bool = False
    max_time_s: float | None = None
    call_kwargs: dict[str, Any] = field(default_factory=dict)

    def key(self, steps: int, batch: int) -> tuple:
        """The trace key of one point, in KEY_COLUMNS order."""
        return (self.model, self.scheduler, self.resolution, batch, steps, self.mode)


@dataclass
class SweepResult:
    """The trace after the sweep and what happened to the grid."""

    frame: pd.DataFrame
    measured: int = 0
    skipped: int = 0
    oom: int = 0
    left: int = 0  # points not started because the time budget ran out


class Generator:
    """Calls the pipeline for one (steps, batch) and returns its images, prompts and CUDA-synchronised latency."""

    def __init__(self, pipe: Any, cfg: SweepConfig, sync: Callable[[], None]) -> None:
        self.pipe, self.cfg, self.sync = pipe, cfg, sync
        self.calls = 0

    def __call__(self, steps: int, batch: int) -> tuple[torch.Tensor, list[str], float]:
        prompts = cycle_prompts(self.cfg.prompts, self.calls * batch, batch)
        gen = torch.Generator(device=self.pipe.device).manual_seed(self.cfg.seed + self.calls)
        self.calls += 1
        t0 = time.perf_counter()
        out = self.pipe(
            prompt=prompts,
            num_inference_steps=steps,
            guidance_scale=self.cfg.guidance_scale,
            height=self.cfg.resolution,
            width=self.cfg.resolution,
            output_type="pt",  # images stay tensors: no PIL encoding inside the measured window
            generator=gen,
            **self.cfg.call_kwargs,
        )
        self.sync()
        return out.images, prompts, time.perf_counter() - t0


def load_existing(path: Path) -> pd.DataFrame:
    """The trace already at ``path`` (validated), or an empty one."""
    return read_profile(path) if path.is_file() else empty_profile()


def upsert(frame: pd.DataFrame, row: dict[str, Any]) -> pd.DataFrame:
    """``frame`` with ``row`` added, replacing any row of the same key."""
    key = tuple(row[c] for c in KEY_COLUMNS)
    keys = frame.loc[:, list(KEY_COLUMNS)].itertuples(index=False, name=None)
    kept = frame[[k != key for k in keys]]
    new = coerce_profile(pd.DataFrame([{c: row.get(c) for c in COLUMNS}]))
    return coerce_profile(pd.concat([kept, new], ignore_index=True)) if len(kept) else new


def measured_keys(frame: pd.DataFrame) -> set[tuple]:
    """Keys of the points already in a trace."""
    return {tuple(r) for r in frame.loc[:, list(KEY_COLUMNS)].itertuples(index=False, name=None)}


def latency_stats(latencies: list[float], batch: int) -> dict[str, float | None]:
    """Per-call latency statistics and the per-image mean."""
    arr = np.asarray(latencies, dtype=float)
    return {
        "latency_batch_mean_s": float(arr.mean()),
        "latency_batch_std_s": float(arr.std(ddof=1)) if arr.size > 1 else None,
        "latency_batch_p50_s": float(np.percentile(arr, 50)),
        "latency_batch_p95_s": float(np.percentile(arr, 95)),
        "latency_image_mean_s": float(arr.mean()) / batch,
    }


def energy_fields(w: Window, n_images: int) -> dict[str, Any]:
    """The trace's energy, power and GPU-state cells of one window (None where not measured)."""
    net = w.net_energy_j()
    return {
        "window_s": w.duration_s,
        "energy_window_j": w.energy_j,
        "energy_image_j": None if w.energy_j is None else w.energy_j / n_images,
        "energy_image_net_j": None if net is None else net / n_images,
        "energy_integrated_j": w.energy_integrated_j,
        "energy_check_rel": w.energy_check_rel,
        "energy_short_window": w.short,
        "power_mean_w": w.power_mean_w,
        "idle_power_w": w.idle_power_w,
        "temperature_c_start": w.temperature_c_start,
        "temperature_c_end": w.temperature_c_end,
        "sm_clock_mhz_mean": w.sm_clock_mhz_mean,
        "power_limit_w": w.power_limit_w,
    }


def predicted_point_s(last: tuple[int, float] | None, steps: int, cfg: SweepConfig, warm: bool) -> float:
    """Seconds the next point should take, from ``last`` = (steps, seconds per call) of the last ``ok`` point of
    the same batch size: a call scales with the step count, and the window repeats calls until it lasts
    ``min_window_s`` (the last call may run past it) and holds ``min_repeats`` calls; a batch size not yet warm
    adds its warm-up calls (at the smallest step count; in compile mode compilation comes on top, unpredicted).
    With no earlier point of the batch, only the window is known."""
    if last is None:
        return cfg.min_window_s
    last_steps, call_s = last
    call = call_s * steps / last_steps
    window = max(cfg.min_repeats * call, cfg.min_window_s + call)
    warmup = 0.0 if warm else cfg.warmup * call_s * min(cfg.steps) / last_steps
    return window + warmup


def last_calls(frame: pd.DataFrame) -> dict[int, tuple[int, float]]:
    """Per batch size, (steps, seconds per call) of its ``ok`` point with the most steps: what a resumed sweep
    predicts its first points from."""
    ok = frame[frame["status"] == "ok"].sort_values("steps")
    return {
        int(b): (int(g["steps"].iloc[-1]), float(g["latency_batch_mean_s"].iloc[-1]))
        for b, g in ok.groupby("batch")
    }


class Sweep:
    """Runs the grid of one model in one mode; the trace at ``out`` is rewritten after every point."""

    def __init__(
        self, pipe: Any, monitor: Any, cfg: SweepConfig, out: Path, scorer: ClipScorer | None = None
    ) -> None:
        self.cfg, self.monitor, self.out, self.scorer = cfg, monitor, Path(out), scorer
        self.generate = Generator(pipe, cfg, monitor.sync)
        self.warm_batches: set[int] = set()

    def _base_row(self, steps: int, batch: int, status: str) -> dict[str, Any]:
        return {
            **dict(zip(KEY_COLUMNS, self.cfg.key(steps, batch), strict=True)),
            "guidance_scale": self.cfg.guidance_scale,
            "status": status,
            "weights": self.cfg.weights,
            "device": self.cfg.device_label,
            "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }

    def _warm(self, batch: int) -> None:
        """Warm-up calls not measured, per new batch size (a new shape): the allocator, cuDNN autotuning and, in
        compile mode, compilation and CUDA-graph recording settle before the window."""
        if batch in self.warm_batches:
            return
        for _ in range(self.cfg.warmup):
            self.generate(min(self.cfg.steps), batch)
        self.warm_batches.add(batch)

    def measure(self, steps: int, batch: int) -> dict[str, Any]:
        """One point: repeat generations until the window lasts min_window_s and min_repeats calls."""
        self._warm(batch)
        latencies, kept = [], []
        with self.monitor.window(f"steps={steps},batch={batch}") as w:
            t0 = time.perf_counter()
            while len(latencies) < self.cfg.min_repeats or time.perf_counter() - t0 < self.cfg.min_window_s:
                images, prompts, dt = self.generate(steps, batch)
                latencies.append(dt)
                if self.scorer is not None and sum(len(p) for _, p in kept) < self.cfg.clip_images:
                    kept.append((images, prompts))  # scored after the window, so scoring costs no energy here
        n_images = len(latencies) * batch
        row = self._base_row(steps, batch, "ok")
        row.update(n_batches=len(latencies), n_images=n_images, **latency_stats(latencies, batch))
        row.update(energy_fields(w, n_images))
        row.update(self._quality(kept))
        return row

    def _quality(self, kept: list[tuple[torch.Tensor, list[str]]]) -> dict[str, Any]:
        if self.scorer is None or not kept:
            return {}
        scores = [s for images, prompts in kept for s in self.scorer.scores(images, prompts)]
        mean, std = summarise(scores[: self.cfg.clip_images])
        return {"clip_score_mean": mean, "clip_score_std": std, "clip_model": self.scorer.name}

    def run(self, progress: bool = True) -> SweepResult:
        """Measure every point not yet in the trace (all with ``force``); OOM stops larger batches of a step; with
        ``max_time_s``, no point starts that is predicted (``predicted_point_s``) to end after it."""
        res = SweepResult(frame=load_existing(self.out))
        done = set() if self.cfg.force else measured_keys(res.frame)
        grid = [(s, b) for s in self.cfg.steps for b in self.cfg.batches]
        start = time.perf_counter()
        bar = tqdm(grid, desc=f"{self.cfg.model} {self.cfg.mode}", unit="pt", disable=not progress)
        oom_at: dict[int, int] = {}  # steps -> smallest batch that ran out of memory
        mine = res.frame[
            (res.frame["mode"] == self.cfg.mode) & (res.frame["resolution"] == self.cfg.resolution)
        ]
        calls = last_calls(mine[mine["scheduler"] == self.cfg.scheduler])  # batch -> (steps, s per call)
        for i, (steps, batch) in enumerate(bar):
            bar.set_postfix(steps=steps, batch=batch)
            if self.cfg.key(steps, batch) in done:
                res.skipped += 1
                continue
            if self.cfg.max_time_s is not None:
                predicted = predicted_point_s(calls.get(batch), steps, self.cfg, batch in self.warm_batches)
                if time.perf_counter() - start + predicted > self.cfg.max_time_s:
                    res.left = len(grid) - i
                    break
            row = self._point(steps, batch, oom_at)
            if row["status"] == "ok":
                calls[batch] = (steps, float(row["latency_batch_mean_s"]))
            res.oom += row["status"] == "oom"
            res.measured += 1
            res.frame = upsert(res.frame, row)
            write_csv_atomic(self.out, res.frame)  # nothing measured is lost if the run dies later
        bar.close()
        return res

    def _point(self, steps: int, batch: int, oom_at: dict[int, int]) -> dict[str, Any]:
        if steps in oom_at and batch > oom_at[steps]:
            return self._base_row(steps, batch, "skipped-oom")
        try:
            return self.measure(steps, batch)
        except torch.OutOfMemoryError:
            oom_at[steps] = batch
            self.warm_batches.discard(batch)
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            return self._base_row(steps, batch, "oom")
