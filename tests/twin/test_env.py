"""The environment: gymnasium conformance, action encoding, and the invariants every episode must keep
(money adds up, energy balances, batteries stay in bounds, no job lost or double-counted, determinism)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from tests.twin.conftest import FakeCard, synthetic_data
from twin.env import ENV_ID, ActionError, AIGCTwinEnv
from twin.scenario import ScenarioError


def _rollout(env, seed=0, policy=None, options=None):
    obs, _ = env.reset(seed=seed, options=options)
    env.action_space.seed(seed)
    infos, rewards = [], []
    while True:
        action = env.action_space.sample() if policy is None else policy(obs)
        obs, r, term, trunc, info = env.step(action)
        assert not term
        rewards.append(r)
        infos.append(info)
        assert env.observation_space.contains(obs)
        if trunc:
            return np.array(rewards), infos


def test_check_env_tiny(tiny_env):
    check_env(tiny_env, skip_render_check=True)


def test_encode_decode_round_trip(tiny_env):
    env = tiny_env
    tr = np.array([[0.0, 0.25], [0.6, 0.0]])
    a = env.encode_action(tr, [14, 42], [-0.5, 1.0])
    assert env.action_space.contains(a)
    d = env.decode_action(a)
    np.testing.assert_allclose(d.transfer, [[0.75, 0.25], [0.6, 0.4]], atol=1e-6)
    np.testing.assert_array_equal(d.steps, [14, 42])
    np.testing.assert_allclose(d.battery, [-0.5, 1.0])
    # Any vector decodes to rows summing to 1 and steps from the set.
    for a in np.random.default_rng(0).uniform(-1, 1, (50, env.action_space.shape[0])):
        d = env.decode_action(a)
        np.testing.assert_allclose(d.transfer.sum(axis=1), 1.0)
        assert (d.transfer >= -1e-12).all() and np.isin(d.steps, env.step_set).all()


def test_action_index_and_steps_coordinate_are_where_encode_writes(tiny_env):
    env = tiny_env
    a = env.encode_action(np.zeros((2, 2)), [14, 42], [-0.5, 1.0])
    idx = np.searchsorted(env.step_set, [14, 42])
    for site in range(2):
        assert a[env.action_index("steps", site)] == pytest.approx(env.steps_coordinate(idx[site]))
    assert [a[env.action_index("battery", site)] for site in range(2)] == [-0.5, 1.0]
    with pytest.raises(ActionError, match="no action index"):
        env.action_index("transfer", 0)


def test_bad_actions_fail_clearly(tiny_env):
    with pytest.raises(ActionError, match="steps"):
        tiny_env.encode_action(np.zeros((2, 2)), [15, 30], [0, 0])
    with pytest.raises(ActionError, match="transfer"):
        tiny_env.encode_action(np.ones((2, 2)) * 1.5, [30, 30], [0, 0])
    with pytest.raises(ActionError, match="shape"):
        tiny_env.decode_action(np.zeros(3))
    with pytest.raises(ScenarioError, match="split"):
        tiny_env.reset(options={"split": "test"})
    with pytest.raises(ActionError, match="NaN"):
        tiny_env.decode_action(np.full(tiny_env.action_space.shape, np.nan))


@pytest.mark.parametrize("mode", ["dense", "sparse"])
def test_money_adds_up(tiny, mode):
    env = AIGCTwinEnv(tiny, reward_mode=mode, data=synthetic_data(tiny, 60), cards=[FakeCard(), FakeCard()])
    rewards, infos = _rollout(env, seed=1)
    utility = np.array([i["utility"] for i in infos])
    np.testing.assert_allclose(rewards.sum(), tiny.reward_scale * utility.sum(), rtol=1e-9, atol=1e-9)
    for i in infos:
        terms = i["revenue"] - i["penalty"] - i["energy_cost"] - i["transfer_cost"]
        assert i["utility"] == pytest.approx(terms)
        assert i["penalty"] == pytest.approx(i["penalty_late"] + i["penalty_quality"] + i["penalty_drop"])
        np.testing.assert_allclose(i["dc"]["utility"].sum(), i["utility"])
    with pytest.raises(ActionError, match="call reset"):
        env.step(env.action_space.sample())
    settled = np.array([i["settled"] for i in infos])
    if mode == "sparse":
        assert (rewards[~settled] == 0).all()
        assert settled.sum() == env.slots // tiny.settlement_slots and settled[-1]
    else:
        assert settled.all()
    # every slot's meter readings: what info["dc"] says the sites did, scaled, no money
    twin = env.unwrapped
    slot_kwh = twin.it_peak_kw * twin.slot_s / 3600.0
    for i in infos:
        meters = i["meters"].reshape(twin.n_dc, -1)
        assert meters.shape[1] * twin.n_dc == len(twin.meter_names) == 2 * 7
        np.testing.assert_allclose(meters[:, 0] * twin.capacity_ref, i["dc"]["served_images"], rtol=1e-5)
        np.testing.assert_allclose(meters[:, 1], i["dc"]["quality"], rtol=1e-6)
        np.testing.assert_allclose(meters[:, 2] * twin.capacity_ref, i["dc"]["late"], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(meters[:, 4] * slot_kwh, i["dc"]["grid_import_kwh"], rtol=1e-5, atol=1e-6)
        moved_out = i["transfer_jobs"].sum(axis=1) - np.diag(i["transfer_jobs"])
        np.testing.assert_allclose(meters[:, 6] * twin.capacity_ref, moved_out, rtol=1e-5, atol=1e-6)
    # the itemised settlement: per DC and term, on settlement slots only, adding up to what each pays
    assert all(("settled_items" in i) == i["settled"] for i in infos)
    items = np.array([i["settled_items"] for i in infos if i["settled"]])
    assert items.shape[1] == len(env.settlement_items) == 2 * 4
    np.testing.assert_allclose(items.sum(axis=1), rewards[settled], rtol=1e-9, atol=1e-12)
    by_name = dict(zip(env.settlement_items, items.sum(axis=0), strict=True))
    scale = tiny.reward_scale
    for term, sign in (("revenue", 1), ("penalty", -1), ("energy_cost", -1), ("transfer_cost", -1)):
        per_dc = sum(by_name[f"{d.name}:{term}"] for d in tiny.datacenters)
        assert per_dc == pytest.approx(sign * scale * sum(i[term] for i in infos), rel=1e-9, abs=1e-12)


def test_energy_balance_battery_bounds_and_job_conservation(tiny):
    env = AIGCTwinEnv(tiny, data=synthetic_data(tiny, 200), cards=[FakeCard(), FakeCard()])
    _, infos = _rollout(env, seed=2)
    lo = np.array([d.soc_min for d in tiny.datacenters])
    hi = np.array([d.soc_max for d in tiny.datacenters])
    for i in infos:
        d = i["dc"]
        supplied = d["renewable_used_kwh"] + d["battery_discharge_kwh"] + d["grid_import_kwh"]
        np.testing.assert_allclose(d["load_kwh"], supplied - d["battery_charge_grid_kwh"], atol=1e-9)
        assert ((d["soc"] >= lo - 1e-9) & (d["soc"] <= hi + 1e-9)).all()
    arrived = sum(i["dc"]["arrived"] for i in infos)
    served = sum(i["dc"]["served_by_origin"] for i in infos)
    dropped = sum(i["dc"]["dropped_by_origin"] for i in infos)
    waiting = infos[-1]["dc"]["queued_by_origin"]
    np.testing.assert_array_equal(arrived, served + dropped + waiting)
    assert sum(i["transferred"] for i in infos) > 0  # random actions move jobs, and none got lost


def test_transfer_all_moves_service_and_quality(tiny):
    env = AIGCTwinEnv(tiny, data=synthetic_data(tiny, 20), cards=[FakeCard(), FakeCard()])
    env.reset(seed=0)
    a = env.encode_action(np.array([[0.0, 1.0], [0.0, 0.0]]), [30, 30], [0.0, 0.0])
    _, _, _, _, info = env.step(a)
    assert info["dc"]["served"][0] == 0  # DC 0 serves nothing: all its new jobs went to DC 1
    assert info["transferred"] == info["dc"]["arrived"][0] and info["transfer_cost"] > 0
    # Quality comes from the serving model: DC 1's relative quality, not DC 0's.
    assert info["dc"]["quality"][1] == pytest.approx(env.tables.quality[1, 6])


def test_seeded_determinism_and_day_split(tiny):
    def make():
        return AIGCTwinEnv(tiny, data=synthetic_data(tiny), cards=[FakeCard(), FakeCard()])

    r1, i1 = _rollout(make(), seed=5)
    r2, i2 = _rollout(make(), seed=5)
    np.testing.assert_array_equal(r1, r2)
    assert [i["day"] for i in i1] == [i["day"] for i in i2]
    env = make()
    assert set(env.train_days).isdisjoint(env.eval_days) and len(env.eval_days) > 0
    eval_names = {env.data.days[d] for d in env.eval_days}
    for s in range(5):
        _, info = env.reset(seed=s, options={"split": "eval"})
        assert info["day"] in eval_names
    _, info = env.reset(options={"day": "2023-06-03"})
    assert info["day"] == "2023-06-03"
    ex = env.exogenous()
    assert ex["price"].shape == (env.slots, 2) and ex["arrivals"].shape == (env.slots, 2, len(ex["images"]))


def test_default_scenario_on_real_embedded_data():
    env = gym.make(ENV_ID, scenario="default")
    check_env(env.unwrapped, skip_render_check=True)
    base = env.unwrapped
    env.reset(seed=0, options={"day": "2023-07-03"})
    a = base.encode_action(np.zeros((3, 3)), [30, 30, 30], [0.0, 0.0, 0.0])
    total, n_steps, arrived = 0.0, 0, 0
    trunc = False
    while not trunc:
        _, _, _, trunc, info = env.step(a)
        total, n_steps, arrived = total + info["utility"], n_steps + 1, arrived + info["arrived"]
    assert n_steps == 288
    assert arrived > 20_000  # a weekday of the scaled GenTD26 workload
    assert np.isfinite(total) and info["revenue"] >= 0
    ex = base.exogenous()
    assert ex["arrivals"].sum() == arrived and np.isfinite(ex["price"]).all()


def test_battery_settlement_charges_for_energy_used_up(tiny):
    from dataclasses import replace

    data = synthetic_data(tiny, 20)
    dark = replace(data, pv_kw=0 * data.pv_kw, wind_kw=0 * data.wind_kw)  # all load falls on battery and grid
    env = AIGCTwinEnv(tiny, data=dark, cards=[FakeCard(), FakeCard()])
    a = env.encode_action(np.zeros((2, 2)), [30, 30], [-1.0, -1.0])
    _, infos = _rollout(env, seed=0, policy=lambda obs: a)
    used = env.assets.initial_energy_kwh() - infos[-1]["dc"]["stored_kwh"]
    assert (used > 0).all()
    expected = used * env.assets.eta_discharge * env.exogenous()["price"].mean(axis=0) / 1000
    assert infos[-1]["battery_settlement"] == pytest.approx(expected.sum())
    assert all(i["battery_settlement"] == 0 for i in infos[:-1])


def test_daily_settlement_pays_once(tiny):
    from twin.scenario import with_overrides

    sc = with_overrides(tiny, reward_mode="sparse", settlement_slots=96)
    env = AIGCTwinEnv(sc, data=synthetic_data(sc, 30), cards=[FakeCard(), FakeCard()])
    rewards, infos = _rollout(env, seed=4)
    assert np.count_nonzero(rewards) == 1 and infos[-1]["settled"]
    assert rewards[-1] == pytest.approx(sc.reward_scale * sum(i["utility"] for i in infos))


def test_bad_exogenous_and_day_fail_clearly(tiny):
    from twin.exogenous import ExogenousData, ExogenousError

    good = synthetic_data(tiny)
    with pytest.raises(ExogenousError, match="pv_kw"):
        ExogenousData(good.days, good.slot_s, good.price, -good.pv_kw - 1, good.wind_kw, good.temperature_c,
                      good.arrivals, {})  # fmt: skip
    env = AIGCTwinEnv(tiny, data=good, cards=[FakeCard(), FakeCard()])
    with pytest.raises(ExogenousError, match="not in the scenario's calendar"):
        env.reset(options={"day": "2031-01-01"})


def test_vector_env_runs(tiny):
    envs = gym.vector.SyncVectorEnv(
        [
            lambda: AIGCTwinEnv(tiny, data=synthetic_data(tiny), cards=[FakeCard(), FakeCard()])
            for _ in range(2)
        ]
    )
    obs, _ = envs.reset(seed=0)
    obs, rew, *_ = envs.step(envs.action_space.sample())
    assert obs.shape == (2, envs.single_observation_space.shape[0]) and rew.shape == (2,)
    envs.close()


def test_observation_layout_matches_documentation(tiny_env):
    env = tiny_env
    env.reset(seed=0)
    a = env.encode_action(np.zeros((2, 2)), [30, 30], [1.0, -1.0])
    for _ in range(5):
        obs, _, _, _, info = env.step(a)
    t, ex, per = env._t, env.exogenous(), 8
    block = obs[:-3].reshape(env.n_dc, per)
    scale = env.scenario.price_scale
    np.testing.assert_allclose(block[:, 0], ex["price"][t] / scale, rtol=1e-6)
    np.testing.assert_allclose(block[:, 1], ex["price"][t : t + 4].mean(axis=0) / scale, rtol=1e-6)
    np.testing.assert_allclose(block[:, 2], ex["price"][t : t + 16].mean(axis=0) / scale, rtol=1e-6)
    np.testing.assert_allclose(block[:, 4], info["dc"]["soc"], rtol=1e-6)
    queued_images = np.einsum("iako,k->i", env._queue, env.images)
    np.testing.assert_allclose(block[:, 5], queued_images / env.capacity_ref, rtol=1e-6)
    arrived_images = ex["arrivals"][t - 1] @ ex["images"]
    np.testing.assert_allclose(block[:, 6], arrived_images / env.capacity_ref, rtol=1e-6)
    np.testing.assert_allclose(block[:, 7], ex["pue"][t] - 1, rtol=1e-6, atol=1e-7)
    assert obs[-1] == pytest.approx(t / env.slots)


def test_gym_make_runs_a_whole_day_of_any_slot_length():
    # The registered id must not cut a day of shorter slots (576 slots of 150 s) at a fixed step count.
    from twin.scenario import load_scenario, scenario_from_dict

    doc = load_scenario("tiny").to_dict()
    doc["scenario"].update(slot_s=150, slots_per_episode=576)
    env = gym.make(ENV_ID, scenario=scenario_from_dict(doc, "<150 s slots>"), reward_mode="sparse")
    env.reset(seed=0)
    a = np.zeros(env.action_space.shape, dtype=np.float32)
    n_steps, trunc, paid, total = 0, False, 0.0, 0.0
    while not trunc:
        _, reward, _, trunc, info = env.step(a)
        n_steps, paid, total = n_steps + 1, paid + reward, total + info["utility"]
    assert n_steps == 576 and info["slot"] == 575
    assert paid == pytest.approx(info["reward_scale"] * total)  # every sparse settlement was paid


def test_expected_arrivals_know_the_day_not_the_episodes_draw(tiny_env):
    env = tiny_env
    day = env.data.days[env.eval_days[0]]
    env.reset(seed=0, options={"split": "eval", "day": day})
    first, drawn = env.expected_arrivals(draws=8), [env.exogenous()["arrivals"]]
    env.reset(seed=1, options={"split": "eval", "day": day})
    drawn.append(env.exogenous()["arrivals"])
    assert not np.array_equal(*drawn)  # two episodes of the day differ ...
    assert np.array_equal(env.expected_arrivals(draws=8), first)  # ... the forecast does not
    assert first.shape == drawn[0].shape and (first >= 0).all() and first.dtype == float
    many = np.mean([env.expected_arrivals(draws=1, seed=s).sum() for s in range(200)])
    assert first.sum() == pytest.approx(many, rel=0.1)  # an unbiased estimate of the day's total
    with pytest.raises(ValueError, match="draws"):
        env.expected_arrivals(draws=0)


def test_reset_load_scales_the_days_arrivals(tiny_env):
    env = tiny_env
    day = env.data.days[env.eval_days[0]]
    env.reset(seed=3, options={"split": "eval", "day": day})
    own = env.exogenous()["arrivals"]
    env.reset(seed=3, options={"split": "eval", "day": day, "load": 1.0})
    assert np.array_equal(env.exogenous()["arrivals"], own)  # load 1 is the model's own draw, unchanged
    forecast = env.expected_arrivals(draws=4)
    totals = []
    for s in range(20):
        env.reset(seed=s, options={"split": "eval", "day": day, "load": 3.0})
        totals.append(env.exogenous()["arrivals"].sum())
    assert np.mean(totals) / own.sum() == pytest.approx(3.0, rel=0.15)
    assert env.expected_arrivals(draws=4).sum() == pytest.approx(
        3 * forecast.sum(), rel=0.1
    )  # the forecast too
    for bad in (0, -1.0, float("nan"), "2", True):
        with pytest.raises(ScenarioError, match="load must be"):
            env.reset(options={"load": bad})
    with pytest.raises(ScenarioError, match="unknown key"):
        env.reset(options={"loads": 2.0})
