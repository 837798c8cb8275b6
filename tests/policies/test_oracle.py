"""The oracle LP against hand-computed and brute-force optima of the same relaxed problem, and its bound
against every heuristic and its own replay in the twin. Hand-made problems use round test numbers."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from policies.heuristics import HEURISTICS, make_heuristic
from policies.oracle import ForecastLP, OraclePolicy, oracle_bound, problem_from_env
from policies.oracle_lp import OracleError, OracleProblem, solve
from policies.policy import run_episode


def problem(**kw) -> OracleProblem:
    """One DC, one class of 1-image jobs, two step counts; no battery, renewables or energy price unless
    overridden. Test numbers, not real figures."""
    t = kw.pop("slots", 1)
    base = dict(
        slot_s=10.0,
        steps=np.array([10, 20]),
        images=np.array([1]),
        arrivals=np.full((t, 1, 1), 10.0),
        max_wait=0,
        revenue_per_image=np.array([1.0]),
        quality=np.array([[0.5, 1.0]]),
        min_quality=0.8,
        penalty_late=0.3,
        penalty_quality=0.1,
        penalty_drop=0.2,
        transfer_cost_per_image=0.0,
        late=np.zeros((1, 2, 1, 1, 1), dtype=bool),
        image_time_s=np.array([[1.0, 2.0]]),
        image_energy_lo_j=np.array([[1.0, 2.0]]),
        image_energy_hi_j=np.array([[1.5, 3.0]]),
        base_energy_j=np.array([0.0]),
        gpu_seconds=np.array([100.0]),
        kwh_per_gpu_j=np.full((t, 1), 1.0),
        renewable_kwh=np.zeros((t, 1)),
        price=np.zeros((t, 1)),
        export_price=np.zeros((t, 1)),
        battery_kwh_per_slot=np.array([0.0]),
        eta_charge=np.array([1.0]),
        eta_discharge=np.array([1.0]),
        stored_min=np.array([0.0]),
        stored_max=np.array([0.0]),
        stored_init=np.array([0.0]),
        grid_charging=np.array([True]),
        export_limit_kwh=np.array([np.inf]),
        settle_price=np.zeros(1),
    )
    base.update(kw)
    return OracleProblem(**base)


def test_uncongested_jobs_all_take_the_best_step():
    # Capacity 100 s >> 10 jobs x 2 s: every job at 20 steps, revenue 10 x 1.0, nothing else.
    sol = solve(problem())
    assert sol.value == pytest.approx(10.0)
    assert sol.totals["served"] == pytest.approx(10.0)
    assert sol.steps_index.tolist() == [[1]]


def test_energy_price_and_idle_floor_are_charged_per_kwh():
    # 1000 per MWh = 1 per kWh; 1 kWh per GPU J: at 20 steps a job nets 1.0 - 2.0 < 0, at 10 steps
    # 0.5 - 0.1 (quality penalty) - 1.0 < 0, dropping costs 0.2: all dropped; the idle floor 3 J is paid.
    sol = solve(problem(price=np.full((1, 1), 1000.0), base_energy_j=np.array([3.0])))
    assert sol.value == pytest.approx(-10 * 0.2 - 3.0)
    assert sol.totals["dropped"] == pytest.approx(10.0)


def brute_force(p: OracleProblem, grid: int = 201) -> float:
    """Max of the relaxed objective over a grid of (jobs at step 0, jobs at step 1) in one slot, rest dropped."""
    lam = float(p.arrivals.sum())
    best = -np.inf
    for y0, y1 in itertools.product(np.linspace(0, lam, grid), repeat=2):
        if (
            y0 + y1 > lam + 1e-9
            or y0 * p.image_time_s[0, 0] + y1 * p.image_time_s[0, 1] > p.gpu_seconds[0] + 1e-9
        ):
            continue
        gain = [
            p.revenue_per_image[0] * p.quality[0, s]
            - p.penalty_quality * (p.quality[0, s] < p.min_quality)
            - p.penalty_late * p.late[0, s, 0, 0, 0]
            for s in (0, 1)
        ]
        load = p.kwh_per_gpu_j[0, 0] * (
            p.base_energy_j[0] + y0 * p.image_energy_lo_j[0, 0] + y1 * p.image_energy_lo_j[0, 1]
        )
        value = y0 * gain[0] + y1 * gain[1] - p.penalty_drop * (lam - y0 - y1) - load * p.price[0, 0] / 1000
        best = max(best, value)
    return best


@pytest.mark.parametrize(
    "capacity, late_hi, price",
    [(15.0, False, 0.0), (12.0, True, 0.0), (25.0, False, 60.0), (8.0, False, 0.0), (16.0, True, 100.0)],
)
def test_congested_slot_matches_brute_force(capacity, late_hi, price):
    late = np.zeros((1, 2, 1, 1, 1), dtype=bool)
    late[0, 1] = late_hi
    p = problem(gpu_seconds=np.array([capacity]), late=late, price=np.full((1, 1), price))
    value = solve(p).value
    grid = brute_force(p)
    assert value >= grid - 1e-9  # the LP can do whatever the grid does ...
    assert value - grid <= 0.02  # ... and the grid comes within its resolution (0.05 jobs x ~0.3) of it


def test_battery_arbitrage_matches_hand_computation():
    # No jobs; the 10 J idle floor is 10 kWh per slot. Prices 0 then 100 per MWh. A 4 kWh store (from 0)
    # charged at 2 kWh/slot with eta 0.9 each way: charge 2 kWh in slot 0 (cost 0) -> 1.8 kWh stored;
    # discharge 1.8 * 0.9 = 1.62 kWh in slot 1, saving 1.62 * 0.1. Settlement at the mean price 50 values
    # the end change (0) at 0. Grid for the rest: 10 - 1.62 kWh at 0.1.
    p = problem(
        slots=2,
        arrivals=np.zeros((2, 1, 1)),
        base_energy_j=np.array([10.0]),
        price=np.array([[0.0], [100.0]]),
        battery_kwh_per_slot=np.array([2.0]),
        eta_charge=np.array([0.9]),
        eta_discharge=np.array([0.9]),
        stored_max=np.array([4.0]),
        settle_price=np.array([50.0]),
    )
    sol = solve(p)
    assert sol.value == pytest.approx(-(10 - 1.62) * 0.1)
    assert sol.battery[:, 0] == pytest.approx([1.0, -0.81])


def test_waiting_is_late_and_unserved_at_the_end_is_free():
    # Two slots of 10 GPU-seconds; 10 jobs arrive in each; a job may wait one slot (then it is late) and is
    # dropped after that. Per GPU-second: slot 0's jobs earn (1.0 + 0.2 drop avoided) / 2 s at 20 steps vs
    # (0.4 - 0.1 + 0.2) / 1 s at 10 steps; in slot 1 its own new jobs (1.0 / 2 s) beat slot 0's late
    # leftovers ((1.0 - 0.3 + 0.2) / 2 s). So: 5 + 5 served at 20 steps, 5 dropped, 5 still queued at the
    # end (free, as in the env).
    late = np.zeros((1, 2, 2, 1, 1), dtype=bool)
    late[:, :, 1] = True
    p = problem(
        slots=2,
        max_wait=1,
        late=late,
        gpu_seconds=np.array([10.0]),
        quality=np.array([[0.4, 1.0]]),
        arrivals=np.array([[[10.0]], [[10.0]]]),
    )
    sol = solve(p)
    assert sol.value == pytest.approx(5 + 5 - 5 * 0.2)
    assert sol.totals["dropped"] == pytest.approx(5.0)
    assert sol.totals["late"] == pytest.approx(0.0)


def test_malformed_problem_is_refused():
    with pytest.raises(OracleError, match="late must be"):
        solve(problem(late=np.zeros((1, 2, 3, 1, 1), dtype=bool)))


# --- against the twin ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_env():
    from twin.env import AIGCTwinEnv

    return AIGCTwinEnv("tiny")


def policy_utilities(env, day: str, seed: int) -> tuple[float, dict[str, float], OraclePolicy]:
    oracle = OraclePolicy()
    got = {
        name: run_episode(env, make_heuristic(name), day=day, seed=seed).totals["utility"]
        for name in HEURISTICS
    }
    got["oracle-replay"] = run_episode(env, oracle, day=day, seed=seed).totals["utility"]
    return oracle.solution.value, got, oracle


@pytest.mark.parametrize("which, seed", [(0, 0), (2, 1)])
def test_bound_dominates_heuristics_and_replay_on_tiny(tiny_env, which, seed):
    day = tiny_env.data.days[tiny_env.eval_days[which]]
    bound, got, oracle = policy_utilities(tiny_env, day, seed)
    for name, utility in got.items():
        assert bound >= utility - 1e-6, name
    t = oracle.solution.totals
    assert t["utility"] == pytest.approx(bound, abs=1e-6)
    assert t["utility"] == pytest.approx(t["revenue"] - t["penalty"] - t["energy_cost"] - t["transfer_cost"])
    assert t["served"] + t["dropped"] <= t["arrived"] + 1e-6


def test_problem_reads_the_episode(tiny_env):
    tiny_env.reset(seed=3, options={"split": "eval"})
    p = problem_from_env(tiny_env)
    ex = tiny_env.exogenous()
    assert p.arrivals.sum() == ex["arrivals"].sum()
    # Jobs waiting a whole 15-min slot are late whatever the batch (deadlines are tens of seconds).
    assert p.late[:, :, 1:].all()
    # Energy per image: the least over batch sizes never exceeds the most.
    assert (p.image_energy_lo_j <= p.image_energy_hi_j + 1e-12).all()


def test_replay_actions_are_valid(tiny_env):
    tiny_env.reset(seed=0, options={"split": "eval"})
    policy = OraclePolicy()
    policy.reset(tiny_env)
    obs = None
    for _ in range(3):
        action = policy.act(obs, tiny_env)
        assert tiny_env.action_space.contains(action)
    sol = oracle_bound(tiny_env)
    assert np.allclose(sol.transfer.sum(axis=2), 1.0)


def test_forecast_lp_plans_on_the_expected_day_not_the_episodes_arrivals(tiny_env):
    day = tiny_env.data.days[tiny_env.eval_days[1]]
    plans, steps = [], []
    first, second = ForecastLP(draws=4), ForecastLP(draws=4)
    for policy, seed in ((first, 0), (second, 1), (second, 2)):
        # episodes of one day: different arrivals, one forecast, one plan, which the second policy reuses
        obs, _ = tiny_env.reset(seed=seed, options={"split": "eval", "day": day})
        policy.reset(tiny_env)
        plans.append(policy.solution)
        for t in range(tiny_env.slots):
            action = policy.act(obs, tiny_env)
            assert tiny_env.action_space.contains(action)
            steps.append((policy.solution.steps_index[t], tiny_env.decode_action(action).steps))
            obs, *_ = tiny_env.step(action)
    assert plans[0].value == plans[1].value and np.array_equal(plans[0].battery, plans[1].battery)
    assert plans[2] is plans[1]  # solved once for the day
    clairvoyant = oracle_bound(tiny_env)  # the last episode's own arrivals: another plan
    assert clairvoyant.value != pytest.approx(plans[1].value, rel=1e-6)
    for planned, taken in steps:  # the plan's step counts, only ever lowered to keep up with the load
        assert (taken <= tiny_env.step_set[planned]).all()


@pytest.mark.slow
def test_bound_dominates_on_a_default_day():
    from twin.env import AIGCTwinEnv

    env = AIGCTwinEnv("default")
    day = env.data.days[env.eval_days[0]]
    bound, got, oracle = policy_utilities(env, day, 0)
    for name, utility in got.items():
        assert bound >= utility - 1e-6, name
    assert oracle.solution.solve_s < 60
