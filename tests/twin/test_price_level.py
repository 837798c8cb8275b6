"""A scenario's price level (``[prices] level``): every price times the level, the money with it, the physics and
what the policy observes unchanged."""

from __future__ import annotations

import numpy as np
import pytest

from tests.twin.conftest import FakeCard
from twin.env import AIGCTwinEnv
from twin.exogenous import build_exogenous
from twin.scenario import ScenarioError, load_scenario, scenario_from_dict


def leveled(level: float):
    doc = load_scenario("tiny").to_dict()
    doc["prices"]["level"] = level
    return scenario_from_dict(doc, f"<tiny at price level {level}>")


def day_totals(level: float) -> tuple[dict, list[np.ndarray]]:
    """One held-out day under a fixed action sequence (every step count, battery both ways, transfers)."""
    sc = leveled(level)
    env = AIGCTwinEnv(sc, data=build_exogenous(sc), cards=[FakeCard() for _ in sc.datacenters])
    obs, _ = env.reset(seed=3, options={"split": "eval", "day": int(env.eval_days[1])})
    seen, rng = [obs], np.random.default_rng(0)
    money = dict.fromkeys(("revenue", "penalty", "energy_cost", "battery_settlement", "transfer_cost"), 0.0)
    kwh = dict.fromkeys(("grid_import_kwh", "export_kwh", "battery_charge_kwh"), 0.0)
    while True:
        obs, _, _, trunc, info = env.step(rng.uniform(-1, 1, env.action_space.shape))
        seen.append(obs)
        for k in (*money, *kwh):
            (money if k in money else kwh)[k] += info[k]
        if trunc:
            return {**money, **kwh}, seen


def test_a_price_level_scales_the_energy_money_and_nothing_else():
    base, seen_base = day_totals(1.0)
    tenfold, seen_tenfold = day_totals(10.0)
    assert base["energy_cost"] != 0 and base["grid_import_kwh"] > 0
    for k in ("energy_cost", "battery_settlement"):
        assert tenfold[k] == pytest.approx(10 * base[k], rel=1e-9, abs=1e-12), k
    for k in ("revenue", "penalty", "transfer_cost", "grid_import_kwh", "export_kwh", "battery_charge_kwh"):
        assert tenfold[k] == pytest.approx(base[k], rel=1e-12), k
    # the observation divides the level out: a policy sees the same day
    np.testing.assert_allclose(np.stack(seen_tenfold), np.stack(seen_base), rtol=1e-5, atol=1e-6)


def test_the_exogenous_prices_carry_the_level_and_say_so():
    base, tenfold = build_exogenous(leveled(1.0)), build_exogenous(leveled(10.0))
    np.testing.assert_allclose(tenfold.price, 10 * base.price)
    assert tenfold.provenance["price"]["level"] == 10.0 and base.provenance["price"]["level"] == 1.0


def test_a_non_positive_level_is_a_one_line_error():
    doc = load_scenario("tiny").to_dict()
    doc["prices"]["level"] = 0.0
    with pytest.raises(ScenarioError, match=r"prices\.level"):
        scenario_from_dict(doc, "<bad>")
