"""The measurement protocol with a stand-in pipeline (no diffusers): window length and repeats, warm-up per
shape, latency statistics, the time budget, and the energy cells of a window."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest
import torch

from profiling.energy import NoEnergyMonitor, Window
from profiling.sweep import Sweep, SweepConfig, energy_fields, latency_stats, predicted_point_s
from traces.profile_schema import read_profile


class FakePipe:
    """Sleeps ``per_step_s`` per step and returns blank images; records every call's (steps, batch)."""

    device = torch.device("cpu")

    def __init__(self, per_step_s: float = 0.002) -> None:
        self.per_step_s, self.calls = per_step_s, []

    def __call__(self, prompt, num_inference_steps, **kw):
        self.calls.append((num_inference_steps, len(prompt)))
        time.sleep(self.per_step_s * num_inference_steps)
        return SimpleNamespace(images=torch.zeros(len(prompt), 3, 8, 8))


def config(**kw) -> SweepConfig:
    base = {"model": "fake", "scheduler": "S", "resolution": 8, "mode": "eager", "guidance_scale": 7.5}
    base |= {"steps": [1, 5], "batches": [1, 2], "prompts": ["a", "b", "c"], "weights": "random-init:x"}
    base |= {"device_label": "cpu", "min_window_s": 0.05, "min_repeats": 2, "warmup": 2}
    return SweepConfig(**{**base, **kw})


def test_each_point_fills_its_window_and_warms_each_shape(tmp_path):
    pipe = FakePipe()
    res = Sweep(pipe, NoEnergyMonitor(), config(), tmp_path / "t.csv").run(progress=False)
    trace = read_profile(tmp_path / "t.csv")
    assert res.measured == 4 and len(trace) == 4
    assert (trace["window_s"] >= 0.05).all() and (trace["n_batches"] >= 2).all()
    assert pipe.calls[:2] == [(1, 1), (1, 1)]  # two warm-up calls before batch 1's first window
    assert pipe.calls.count((1, 2)) >= 2 + trace.set_index(["steps", "batch"]).loc[(1, 2), "n_batches"]
    slow, fast = (
        trace.set_index(["steps", "batch"]).loc[k, "latency_batch_mean_s"] for k in [(5, 1), (1, 1)]
    )
    assert slow > fast  # more steps, longer calls


def test_time_budget_stops_before_new_points(tmp_path):
    cfg = config(min_window_s=0.2, max_time_s=0.1)
    res = Sweep(FakePipe(), NoEnergyMonitor(), cfg, tmp_path / "t.csv").run(progress=False)
    assert res.measured == 1 and res.left == 3
    assert len(read_profile(tmp_path / "t.csv")) == 1


def test_a_point_predicted_to_overrun_the_budget_is_not_started(tmp_path):
    # Steps 1 then 40 at one batch: the 1-step point takes ~0.2 s (its window), so 40 steps are predicted at ~8 s,
    # past a 2 s budget that has not been spent yet; a plain "budget spent?" check would have started it.
    cfg = config(steps=[1, 40], batches=[1], min_window_s=0.2, min_repeats=1, warmup=0, max_time_s=2.0)
    t0 = time.perf_counter()
    res = Sweep(FakePipe(per_step_s=0.05), NoEnergyMonitor(), cfg, tmp_path / "t.csv").run(progress=False)
    assert res.measured == 1 and res.left == 1
    assert time.perf_counter() - t0 < 2.0


def test_predicted_point_s_scales_with_steps_only_upwards():
    assert predicted_point_s(None, 50) == 0.0  # a new batch size: nothing to go by
    assert predicted_point_s((10, 3.0), 20) == pytest.approx(6.0)
    assert predicted_point_s((10, 3.0), 5) == pytest.approx(3.0)  # the window keeps short points as long


def test_latency_stats():
    stats = latency_stats([1.0, 2.0, 3.0], batch=2)
    assert stats["latency_batch_mean_s"] == pytest.approx(2.0)
    assert stats["latency_batch_std_s"] == pytest.approx(1.0)
    assert stats["latency_batch_p50_s"] == pytest.approx(2.0)
    assert stats["latency_image_mean_s"] == pytest.approx(1.0)
    assert latency_stats([1.0], batch=1)["latency_batch_std_s"] is None


def test_energy_fields_per_image_and_net_of_idle():
    w = Window("w", duration_s=4.0, energy_j=400.0, idle_power_w=50.0, short=False, energy_integrated_j=390.0)
    cells = energy_fields(w, n_images=8)
    assert cells["energy_image_j"] == pytest.approx(50.0)
    assert cells["energy_image_net_j"] == pytest.approx((400.0 - 200.0) / 8)
    assert cells["power_mean_w"] == pytest.approx(100.0)
    empty = energy_fields(Window("cpu", duration_s=1.0), n_images=2)
    assert empty["energy_image_j"] is None and empty["energy_image_net_j"] is None
