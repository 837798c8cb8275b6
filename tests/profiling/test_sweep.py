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
    cfg = config(min_window_s=0.2, max_time_s=0.3)  # one 0.2 s window fits, a second does not
    res = Sweep(FakePipe(), NoEnergyMonitor(), cfg, tmp_path / "t.csv").run(progress=False)
    assert res.measured == 1 and res.left == 3
    assert len(read_profile(tmp_path / "t.csv")) == 1


def test_a_point_predicted_to_overrun_the_budget_is_not_started(tmp_path):
    # Steps 1 then 40 at one batch: a 1-step call takes ~0.05 s, so 40 steps are predicted at ~2 s, past a 1 s
    # budget that has not been spent yet; a plain "budget spent?" check would have started it.
    cfg = config(steps=[1, 40], batches=[1], min_window_s=0.1, min_repeats=1, warmup=0, max_time_s=1.0)
    t0 = time.perf_counter()
    res = Sweep(FakePipe(per_step_s=0.05), NoEnergyMonitor(), cfg, tmp_path / "t.csv").run(progress=False)
    assert res.measured == 1 and res.left == 1
    assert time.perf_counter() - t0 < 1.0


def test_a_resumed_sweep_predicts_from_the_points_already_in_the_trace(tmp_path):
    out = tmp_path / "t.csv"
    first = config(steps=[1], batches=[1], min_window_s=0.1, min_repeats=1, warmup=0)
    Sweep(FakePipe(per_step_s=0.05), NoEnergyMonitor(), first, out).run(progress=False)
    # Resumed: 40 steps is the first point this process measures, but the trace's 1-step point predicts ~2 s.
    again = config(steps=[1, 40], batches=[1], min_window_s=0.1, min_repeats=1, warmup=0, max_time_s=1.0)
    res = Sweep(FakePipe(per_step_s=0.05), NoEnergyMonitor(), again, out).run(progress=False)
    assert res.skipped == 1 and res.measured == 0 and res.left == 1


def test_predicted_point_s():
    cfg = config(steps=[1, 5, 10], min_window_s=2.0, min_repeats=1, warmup=2)
    assert predicted_point_s(None, 50, cfg, warm=True) == 2.0  # nothing to go by but the window
    assert predicted_point_s((10, 0.5), 20, cfg, warm=True) == pytest.approx(3.0)  # window + one call of 1 s
    assert predicted_point_s((10, 3.0), 20, cfg, warm=True) == pytest.approx(
        8.0
    )  # one 6 s call ends past 2 s
    assert predicted_point_s((10, 3.0), 20, cfg, warm=False) == pytest.approx(
        8.0 + 2 * 0.3
    )  # + 2 warm-ups at 1 step
    assert predicted_point_s(
        (10, 0.1), 20, config(min_window_s=0.0, min_repeats=3), warm=True
    ) == pytest.approx(0.6)


def test_out_of_memory_points_do_not_teach_the_prediction(tmp_path):
    class OomAtBatch2(FakePipe):
        def __call__(self, prompt, num_inference_steps, **kw):
            if len(prompt) == 2:
                raise torch.OutOfMemoryError("fake")
            return super().__call__(prompt, num_inference_steps, **kw)

    cfg = config(steps=[1, 5], batches=[1, 2], min_window_s=0.05, min_repeats=1, warmup=0, max_time_s=30.0)
    res = Sweep(OomAtBatch2(), NoEnergyMonitor(), cfg, tmp_path / "t.csv").run(progress=False)
    trace = read_profile(tmp_path / "t.csv").set_index(["steps", "batch"])
    assert res.oom == 2 and trace.loc[(1, 2), "status"] == "oom" and trace.loc[(5, 1), "status"] == "ok"


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
