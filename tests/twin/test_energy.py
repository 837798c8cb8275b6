"""Energy side: balance of every flow, battery limits and efficiencies, export or curtailment."""

from __future__ import annotations

import numpy as np
import pytest

from twin import energy
from twin.scenario import load_scenario


@pytest.fixture
def assets():
    return energy.EnergyAssets.from_datacenters(load_scenario("default").datacenters)


def _check_balance(e: energy.SlotEnergy):
    np.testing.assert_allclose(
        e.load, e.renewable_used + e.discharge + e.grid_import - e.charge_from_grid, atol=1e-9
    )
    np.testing.assert_allclose(
        e.renewable, e.renewable_used + (e.charge - e.charge_from_grid) + e.export + e.curtailed, atol=1e-9
    )
    for arr in (e.charge, e.discharge, e.grid_import, e.export, e.curtailed, e.charge_from_grid):
        assert (arr >= -1e-12).all()


def test_random_dispatch_balances_and_respects_limits(assets):
    rng = np.random.default_rng(0)
    stored = assets.initial_energy_kwh()
    lo, hi = assets.soc_min * assets.battery_kwh, assets.soc_max * assets.battery_kwh
    for _ in range(500):
        load = rng.uniform(0, 3, 3)
        ren = rng.uniform(0, 3, 3) * rng.integers(0, 2, 3)
        sp = rng.uniform(-1, 1, 3)
        e = energy.dispatch(assets, load, ren, stored, sp, rng.normal(20, 40, 3), 5 / 60)
        _check_balance(e)
        assert (e.charge <= assets.battery_kw * 5 / 60 + 1e-12).all()
        assert (e.discharge <= assets.battery_kw * 5 / 60 + 1e-12).all()
        # Stored energy moves by exactly the efficiencies' share of the flows.
        np.testing.assert_allclose(
            e.soc_kwh, stored + assets.eta_charge * e.charge - e.discharge / assets.eta_discharge, atol=1e-9
        )
        assert ((e.soc_kwh >= lo - 1e-9) & (e.soc_kwh <= hi + 1e-9)).all()
        stored = e.soc_kwh


def test_battery_never_exports_and_surplus_curtailed_at_negative_price(assets):
    stored = assets.soc_max * assets.battery_kwh
    e = energy.dispatch(assets, np.ones(3), np.zeros(3), stored, -np.ones(3), np.full(3, 50.0), 1.0)
    assert (e.discharge <= 1.0 + 1e-12).all() and (e.export == 0).all()
    e = energy.dispatch(assets, np.zeros(3), np.full(3, 5.0), stored, np.zeros(3), np.full(3, -10.0), 1.0)
    assert (e.export == 0).all() and (e.curtailed == 5.0).all()


def test_pue_rises_above_reference(assets):
    cool, hot = energy.pue(assets, np.full(3, 10.0)), energy.pue(assets, np.full(3, 30.0))
    np.testing.assert_allclose(cool, assets.pue_base)
    assert (hot > cool).all()
