"""The energy side of one slot per data centre: facility load with PUE, renewables first, the battery per its
set point within power, energy and efficiency limits, the grid for the rest, export or curtailment."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

J_PER_KWH = 3.6e6  # joules per kWh: the one definition (twin.compute re-exports it)
W_PER_KW = 1000.0


@dataclass(frozen=True)
class EnergyAssets:
    """Per-DC energy parameters as (N,) arrays (kW, kWh, shares)."""

    host_overhead: np.ndarray
    pue_base: np.ndarray
    pue_slope_per_c: np.ndarray
    pue_ref_c: np.ndarray
    battery_kwh: np.ndarray
    battery_kw: np.ndarray
    eta_charge: np.ndarray
    eta_discharge: np.ndarray
    soc_min: np.ndarray
    soc_max: np.ndarray
    soc_init: np.ndarray
    grid_charging: np.ndarray  # bool
    export_limit_kw: np.ndarray

    @classmethod
    def from_datacenters(cls, dcs) -> EnergyAssets:
        def col(name, dtype=float):
            return np.array([getattr(d, name) for d in dcs], dtype=dtype)

        names = [f for f in cls.__dataclass_fields__ if f != "grid_charging"]
        return cls(**{f: col(f) for f in names}, grid_charging=col("grid_charging", bool))

    def initial_energy_kwh(self) -> np.ndarray:
        return self.soc_init * self.battery_kwh


def pue(assets: EnergyAssets, temperature_c: np.ndarray) -> np.ndarray:
    """Power usage effectiveness: a base value plus a linear rise above a reference outdoor temperature."""
    return assets.pue_base + assets.pue_slope_per_c * np.maximum(temperature_c - assets.pue_ref_c, 0.0)


def it_peak_kw(gpus, call_energy_j, call_latency_s, host_overhead):
    """IT peak power (kW) of a pool of ``gpus`` GPUs running back-to-back pipeline calls of the given energy
    and latency, plus the host (non-GPU server) overhead; works on scalars and arrays alike."""
    return gpus * (call_energy_j / call_latency_s) * (1 + host_overhead) / W_PER_KW


def facility_kwh(gpu_j: np.ndarray, assets: EnergyAssets, pue_now: np.ndarray) -> np.ndarray:
    """Facility energy in the slot: GPU energy, plus host (non-GPU server) overhead, times PUE."""
    return gpu_j * (1.0 + assets.host_overhead) * pue_now / J_PER_KWH


@dataclass
class SlotEnergy:
    """Energy flows of one slot per DC, kWh (``soc_kwh`` is the stored energy after the slot)."""

    load: np.ndarray
    renewable: np.ndarray
    renewable_used: np.ndarray
    charge: np.ndarray  # AC energy into the battery
    charge_from_grid: np.ndarray
    discharge: np.ndarray  # AC energy delivered by the battery
    grid_import: np.ndarray
    export: np.ndarray
    curtailed: np.ndarray
    soc_kwh: np.ndarray


def dispatch(
    assets: EnergyAssets,
    load_kwh: np.ndarray,
    renewable_kwh: np.ndarray,
    stored_kwh: np.ndarray,
    setpoint: np.ndarray,
    export_price: np.ndarray,
    slot_h: float,
) -> SlotEnergy:
    """Serve ``load_kwh`` from renewables, then the battery at ``setpoint`` (fraction of rated power, + charge),
    then the grid; surplus renewables charge the battery first, then are exported (if the export price is
    positive, up to the export limit) or curtailed."""
    used = np.minimum(renewable_kwh, load_kwh)
    surplus = renewable_kwh - used
    deficit = load_kwh - used
    e_max, e_min = assets.soc_max * assets.battery_kwh, assets.soc_min * assets.battery_kwh
    p = np.clip(setpoint, -1.0, 1.0) * assets.battery_kw * slot_h  # kWh at the AC side
    room = np.maximum(e_max - stored_kwh, 0.0) / assets.eta_charge
    charge = np.minimum(np.maximum(p, 0.0), room)
    charge = np.where(assets.grid_charging, charge, np.minimum(charge, surplus))
    from_surplus = np.minimum(charge, surplus)
    from_grid = charge - from_surplus
    avail = np.maximum(stored_kwh - e_min, 0.0) * assets.eta_discharge
    discharge = np.minimum(np.minimum(np.maximum(-p, 0.0), avail), deficit)
    stored = stored_kwh + assets.eta_charge * charge - discharge / assets.eta_discharge
    # Rounding can leave the store a hair outside its window; clip so bounds hold exactly.
    stored = np.clip(stored, e_min, np.maximum(e_max, e_min))
    spill = surplus - from_surplus
    export = np.where(export_price > 0, np.minimum(spill, assets.export_limit_kw * slot_h), 0.0)
    return SlotEnergy(
        load=load_kwh,
        renewable=renewable_kwh,
        renewable_used=used,
        charge=charge,
        charge_from_grid=from_grid,
        discharge=discharge,
        grid_import=deficit - discharge + from_grid,
        export=export,
        curtailed=spill - export,
        soc_kwh=stored,
    )
