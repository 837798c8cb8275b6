"""How a scenario's pools and energy assets compare with its load: images per second at the workload's peak
hour, GPU capacity and utilisation at the reference step count, IT peak power and the asset ratios.

``python -m twin.sizing [scenario]`` prints the table; the default scenario's sizes were chosen with it."""

from __future__ import annotations

import argparse
import sys

import numpy as np

from twin import energy
from twin.scenario import Scenario, ScenarioError, load_scenario

#: Sizing rules used for the bundled scenarios (assumptions, documented in twin/scenarios/default.toml).
TARGET_PEAK_UTILISATION = 0.6  # GPUs busy 60 % at the peak hour's mean rate with reference steps
PV_PER_IT_PEAK = 1.0  # kWp of PV per kW of IT peak
WIND_PER_IT_PEAK = 0.5  # kW of wind per kW of IT peak
BATTERY_HOURS = 2.0  # kWh of battery per kW of IT peak
BATTERY_C_RATE = 0.5  # kW of battery power per kWh


def sizing_table(scenario: Scenario, cards: list | None = None, params=None) -> list[dict]:
    """One row per DC: peak-hour and mean load, capacity, utilisation at reference steps, suggested sizes."""
    from traces.workload import DEFAULT_PARAMS, WorkloadParams
    from twin.env import _find_cards

    cards = cards if cards is not None else _find_cards(scenario)
    params = params if params is not None else WorkloadParams.load(DEFAULT_PARAMS)
    classes = params.classes
    mean_images = float(np.dot(classes["images"], classes["prob"]) / np.sum(classes["prob"]))
    per_s = params.base_rate / 300.0 * scenario.workload.scale  # trace's mean requests/s, scaled
    rows = []
    for dc, card in zip(scenario.datacenters, cards, strict=True):
        b = card.max_batch
        s = scenario.reference_steps
        lat, en = float(card.batch_latency_s(s, b)), float(card.batch_energy_j(s, b))
        per_gpu = b / lat  # images/s of one GPU at the largest batch
        mean_img_s = per_s * dc.arrival_share * mean_images
        peak_img_s = mean_img_s * max(params.hour_factors)
        it_peak_kw = energy.it_peak_kw(dc.gpus, en, lat, dc.host_overhead)
        rows.append(
            {
                "dc": dc.name,
                "model": card.model,
                "gpu": card.gpu,
                "gpus": dc.gpus,
                "requests_per_day": per_s * dc.arrival_share * 86400,
                "mean_images_s": mean_img_s,
                "peak_hour_images_s": peak_img_s,
                "capacity_images_s": dc.gpus * per_gpu,
                "util_mean": mean_img_s / (dc.gpus * per_gpu),
                "util_peak_hour": peak_img_s / (dc.gpus * per_gpu),
                "gpus_for_target": int(np.ceil(peak_img_s / (per_gpu * TARGET_PEAK_UTILISATION))),
                "it_peak_kw": it_peak_kw,
                "pv_kw": dc.pv_kw,
                "wind_kw": dc.wind_kw,
                "battery_kwh": dc.battery_kwh,
                "suggest_pv_kw": PV_PER_IT_PEAK * it_peak_kw,
                "suggest_wind_kw": WIND_PER_IT_PEAK * it_peak_kw,
                "suggest_battery_kwh": BATTERY_HOURS * it_peak_kw,
                "suggest_battery_kw": BATTERY_C_RATE * BATTERY_HOURS * it_peak_kw,
            }
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m twin.sizing", description=__doc__.splitlines()[0])
    ap.add_argument("scenario", nargs="?", default="default", help="bundled scenario name or TOML path")
    args = ap.parse_args(argv)
    try:
        rows = sizing_table(load_scenario(args.scenario))
    except (ScenarioError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for row in rows:
        print(", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
