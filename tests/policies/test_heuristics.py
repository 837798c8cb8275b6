"""The rule-based schedulers: valid actions through the env's encoder, full tiny episodes, the rules doing
what their docstrings say, and imports free of torch."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from policies.heuristics import (
    HEURISTICS,
    BestSite,
    HeuristicError,
    LeastLoaded,
    Overflow,
    PriceGreedy,
    ProductionDefault,
    QualityFirst,
    SlotPlan,
    fill_pairs,
    make_heuristic,
    min_quality_index,
    nearest_step,
)
from policies.policy import Policy, run_episode


@pytest.fixture(scope="module")
def env():
    from twin.env import AIGCTwinEnv

    return AIGCTwinEnv("tiny")


def decisions(env, policy, day: str, seed: int = 0):
    """Run one episode by hand, returning the decoded decision of every slot."""
    obs, _ = env.reset(seed=seed, options={"split": "eval", "day": day})
    policy.reset(env)
    out, done = [], False
    while not done:
        action = policy.act(obs, env)
        assert env.action_space.contains(action)
        out.append(env.decode_action(action))
        obs, _, _, done, _ = env.step(action)
    return out


@pytest.mark.parametrize("name", list(HEURISTICS))
def test_each_heuristic_runs_a_full_episode(env, name):
    policy = make_heuristic(name)
    assert isinstance(policy, Policy)
    day = env.data.days[env.eval_days[0]]
    res = run_episode(env, policy, day=day, seed=0)
    t = res.totals
    assert np.isfinite(t["utility"])
    assert t["utility"] == pytest.approx(t["revenue"] - t["penalty"] - t["energy_cost"] - t["transfer_cost"])
    assert t["served"] + t["dropped"] <= t["arrived"]
    assert len(res.slot_utility) == env.slots


def test_production_default_is_thirty_steps_local_idle(env):
    day = env.data.days[env.eval_days[1]]
    assert 30 in env.step_set  # the default step set {6, 10, ..., 42} contains 30
    for dec in decisions(env, ProductionDefault(), day)[:10]:
        assert (dec.steps == 30).all()
        assert np.allclose(dec.transfer, np.eye(env.n_dc))
        assert np.allclose(dec.battery, 0.0)


def test_nearest_step_when_the_set_lacks_thirty():
    assert nearest_step(np.array([6, 12, 28, 40]), 30) == 28
    assert nearest_step(np.array([20, 40]), 30) == 20  # a tie goes to the cheaper count


def test_price_greedy_uses_fewer_steps_when_price_is_high(env):
    day = env.data.days[env.eval_days[2]]
    policy = PriceGreedy()
    decs = decisions(env, policy, day)
    steps = np.array([d.steps for d in decs], dtype=float)
    battery = np.array([d.battery for d in decs])
    high = policy.price >= policy.high
    low = policy.price <= policy.low
    assert steps[high].mean() < steps[low].mean()
    # Never fewer steps than the minimum-quality count unless the pool could not keep up otherwise.
    floor = env.step_set[min_quality_index(env)]
    assert (steps >= floor[None, :]).mean() > 0.9
    # Batteries discharge at high prices where arbitrage pays, and only then; they charge at low prices.
    assert policy.arbitrage.any()
    assert (battery[~high] >= 0).all()
    for i in np.flatnonzero(policy.arbitrage):
        assert (battery[high[:, i], i] < 0).all() and (battery[low[:, i], i] > 0).all()
    assert np.all(np.abs(battery) <= 1.0)


def test_quality_first_is_price_greedy_without_the_price_in_its_step_count(env):
    day = env.data.days[env.eval_days[2]]
    greedy, first = PriceGreedy(), QualityFirst()
    greedy_decs, first_decs = decisions(env, greedy, day), decisions(env, first, day)
    steps = np.array([d.steps for d in first_decs], dtype=float)
    saturating = env.step_set[first.levels[:, 2]]
    assert (first.levels == first.levels[:, 2:]).all()  # one step count whatever the price
    assert (steps <= saturating[None, :]).all() and (steps == saturating[None, :]).mean() > 0.9
    high = greedy.price >= greedy.high
    greedy_steps = np.array([d.steps for d in greedy_decs], dtype=float)
    assert steps[high].mean() > greedy_steps[high].mean()  # where price-greedy cuts steps, it does not
    # the battery follows the same price rule as price-greedy's (the arbitrage sites and set points)
    assert (first.arbitrage == greedy.arbitrage).all()
    battery = np.array([d.battery for d in first_decs])
    for i in np.flatnonzero(first.arbitrage):
        assert (battery[high[:, i], i] < 0).all()


def test_least_loaded_moves_new_jobs_from_the_busy_to_the_idle_dc(env):
    env.reset(seed=0, options={"split": "eval"})
    policy = LeastLoaded()
    policy.reset(env)
    obs = np.zeros(env.observation_space.shape, dtype=np.float32)
    block = obs[: 8 * env.n_dc].reshape(env.n_dc, 8)
    block[:, 6] = [0.9, 0.1]  # new images / capacity: DC 0 busy, DC 1 nearly idle
    shares = policy.shares(obs, env.n_dc)
    assert shares[0, 1] > 0 and shares[1, 0] == 0
    assert shares.sum(axis=1).max() <= 1.0
    block[:, 6] = [0.3, 0.3 * policy.capacity[1] / policy.capacity[0] * policy.ref[0] / policy.ref[1]]
    assert np.allclose(policy.shares(obs, env.n_dc), 0.0)  # balanced: nothing moves


def best_site_case(env, price, steps_idx, arrived=(0.5, 0.1)):
    """A BestSite after reset, a hand-made slot plan (no renewables surplus) and its observation block."""
    env.reset(seed=0, options={"split": "eval"})
    policy = BestSite()
    policy.reset(env)
    plan = SlotPlan(
        slot=0,
        steps_idx=np.asarray(steps_idx),
        battery=np.zeros(env.n_dc),
        price=np.asarray(price, dtype=float),
        surplus_kw=np.full(env.n_dc, -1.0),
        offered=np.asarray(arrived, dtype=float),
    )
    block = np.zeros((env.n_dc, 8))
    block[:, 6] = arrived  # new images / capacity_ref
    block[:, 7] = 0.2  # PUE - 1
    return policy, plan, block


def test_best_site_moves_jobs_only_where_the_saved_energy_money_beats_what_moving_costs(env):
    # SDXL (DC 1) spends several times SD 1.5's joules per image: at a high price there, its jobs go to DC 0,
    # whose step count (the saturating one) meets the minimum quality
    sat = np.argmax(env.tables.quality >= 0.995 * env.tables.quality.max(axis=1, keepdims=True), axis=1)
    policy, plan, block = best_site_case(env, price=[50.0, 5000.0], steps_idx=sat)
    cost = policy.image_cost(plan, block, np.zeros(env.n_dc), env)
    assert cost[1] > cost[0] > 0
    shares = policy.shares(plan, block, np.zeros(env.n_dc), env)
    assert shares[1, 0] > 0 and shares[0, 1] == 0 and np.diag(shares).sum() == 0
    moved = shares[1, 0] * block[1, 6] * policy.ref[1]  # images
    spare = (0.9 * policy.capacity[0, sat[0]] - plan.offered[0]) * policy.ref[0]
    assert moved <= spare + 1e-6 and shares.sum(axis=1).max() <= 1.0
    # the same prices: the energy saved is a fraction of a cent's, below the transfer and the lost quality
    policy, plan, block = best_site_case(env, price=[50.0, 50.0], steps_idx=sat)
    assert np.allclose(policy.shares(plan, block, np.zeros(env.n_dc), env), 0.0)
    # a receiver whose step count misses the minimum quality gets nothing, however cheap
    low = np.array([0, sat[1]])
    assert env.tables.quality[0, 0] < env.tariffs.min_quality
    policy, plan, block = best_site_case(env, price=[50.0, 5000.0], steps_idx=low)
    assert np.allclose(policy.shares(plan, block, np.zeros(env.n_dc), env), 0.0)
    # no arrivals: nothing to move, no division by zero
    policy, plan, block = best_site_case(env, price=[50.0, 5000.0], steps_idx=sat, arrived=(0.0, 0.0))
    assert np.allclose(policy.shares(plan, block, np.zeros(env.n_dc), env), 0.0)


def side_by_side(env, policy, shadow, day: int):
    """Run ``policy`` through held-out day ``day`` (an index), yielding each slot its action and the action
    ``shadow`` takes on the same observation."""
    obs, _ = env.reset(seed=0, options={"split": "eval", "day": env.data.days[env.eval_days[day]]})
    policy.reset(env)
    shadow.reset(env)
    done = False
    while not done:
        action = policy.act(obs, env)
        yield action, shadow.act(obs, env)
        obs, _, _, done, _ = env.step(action)


def test_best_site_keeps_price_greedys_step_counts_and_battery(env):
    for action, greedy in side_by_side(env, BestSite(), PriceGreedy(), day=2):
        g, b = env.decode_action(greedy), env.decode_action(action)
        assert (g.steps == b.steps).all() and np.allclose(g.battery, b.battery)


def test_overflow_is_quality_first_where_no_site_overflows(env):
    # the tiny scenario's pools are a few per cent busy: nothing moves and every decision is quality-first's
    for action, first in side_by_side(env, Overflow(), QualityFirst(), day=1):
        assert np.array_equal(action, first)


def overflow_case(env):
    """An Overflow after reset and each DC's capacity (relative to ``capacity_ref``) at quality-first's steps."""
    env.reset(seed=0, options={"split": "eval"})
    policy = Overflow()
    policy.reset(env)
    return policy, policy.capacity[np.arange(env.n_dc), policy.levels[:, 0]]


def test_overflow_sends_only_what_the_origin_cannot_serve_and_only_where_there_is_room(env):
    policy, capacity = overflow_case(env)
    # DC 0 offered 1.5 times what it serves at quality-first's count, DC 1 nearly idle
    offered, new = np.array([1.5 * capacity[0], 0.1]), np.array([0.8 * capacity[0], 0.1]) * policy.ref
    shares = policy.shares(offered, new, env)
    assert shares[0, 1] > 0 and shares[1, 0] == 0 and np.diag(shares).sum() == 0
    excess = (offered[0] - capacity[0]) * policy.ref[0]
    room = (0.9 * capacity[1] - offered[1]) * policy.ref[1]
    assert shares[0, 1] * new[0] == pytest.approx(min(excess, room, new[0]))
    # both pools busy: no room anywhere, nothing moves
    assert np.allclose(policy.shares(1.2 * capacity, 0.5 * capacity * policy.ref, env), 0.0)


def test_overflow_moves_nothing_when_the_transfer_costs_more_than_it_saves(env, monkeypatch):
    import dataclasses

    policy, capacity = overflow_case(env)
    offered, new = np.array([1.5 * capacity[0], 0.1]), np.array([0.8 * capacity[0], 0.1]) * policy.ref
    assert policy.shares(offered, new, env)[0, 1] > 0
    monkeypatch.setattr(env, "tariffs", dataclasses.replace(env.tariffs, transfer_cost_per_image=1.0))
    assert np.allclose(policy.shares(offered, new, env), 0.0)


def test_overflow_beats_quality_first_on_an_overloaded_day():
    from twin.env import AIGCTwinEnv
    from twin.scenario import load_scenario, scenario_from_dict

    data = load_scenario("tiny").to_dict()
    data["workload"]["scale"] = 60.0  # 20 times the tiny load: the pools overflow at the peak
    env = AIGCTwinEnv(scenario_from_dict(data, "tiny x20"))
    day = env.data.days[env.eval_days[0]]
    first = run_episode(env, QualityFirst(), day=day, seed=0).totals
    over = run_episode(env, Overflow(), day=day, seed=0).totals
    assert first["transfer_cost"] == 0 < over["transfer_cost"]
    assert over["penalty"] < first["penalty"]
    assert over["utility"] > first["utility"]


def test_fill_pairs_takes_the_best_pairs_first_within_what_each_side_has():
    gain = np.array([[-np.inf, 2.0, 1.0], [0.5, -np.inf, -1.0], [0.0, 0.0, -np.inf]])
    new = np.array([10.0, 4.0, 0.0])
    shares = fill_pairs(gain, give=np.array([8.0, 4.0, 0.0]), spare=np.array([1.0, 5.0, 3.0]), new=new)
    moved = shares * new[:, None]
    # 0 -> 1 first (5 images, all of 1's room), then 0 -> 2 (3, 2's room), then 1 -> 0 (1, 0's room)
    assert np.allclose(moved, [[0, 5, 3], [1, 0, 0], [0, 0, 0]])
    assert np.allclose(fill_pairs(gain, new, np.zeros(3), new), 0.0)  # no room: nothing moves
    # a site cannot give more than its new images, nor one with none (no division by zero)
    keen = gain.copy()
    keen[2, 0] = 3.0  # site 2 would gain by giving, but has nothing new
    with np.errstate(divide="raise", invalid="raise"):
        much = fill_pairs(keen, give=np.array([50.0, 0.0, 9.0]), spare=np.full(3, 100.0), new=new)
    assert np.allclose(much * new[:, None], [[0, 10, 0], [0, 0, 0], [0, 0, 0]])


def test_unknown_heuristic_is_a_clear_error():
    with pytest.raises(HeuristicError, match="unknown heuristic 'nope'"):
        make_heuristic("nope")


def test_heuristics_and_oracle_import_without_torch():
    code = (
        "import sys; import policies.heuristics, policies.oracle, policies.policy; "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_observation_layout_the_rules_read(env):
    # The rules read queued and newly arrived images per DC from fixed places of the observation
    # (docs/twin-model.md §7); this pins that contract to the env's real numbers.
    from policies.heuristics import offered_load, per_dc

    env.reset(seed=0, options={"split": "eval"})
    ex = env.exogenous()
    action = ProductionDefault()
    action.reset(env)
    obs, *_ = env.step(action.act(None, env))
    arrived = ex["arrivals"][0] @ ex["images"]
    assert per_dc(obs, env.n_dc)[:, 6] * env.capacity_ref == pytest.approx(arrived, rel=1e-5)
    assert (offered_load(obs, env.n_dc) >= per_dc(obs, env.n_dc)[:, 6]).all()
