"""The clairvoyant oracle: an LP over one whole episode, known in advance (prices, renewables, arrivals), whose
optimum is an upper bound on the utility any policy can reach in the twin, and a policy replaying its plan.

Why the LP's optimum bounds the env's utility (docs/twin-model.md §3-§6). Take any policy and the episode it
produces in ``AIGCTwinEnv`` on the same day and seed (same arrivals). Map it to an LP point: y = the env's
served jobs by (arrival slot, origin, class, server, age, step count of its slot), z = its dropped or
still-queued jobs, the energy variables = the env's dispatch (renewables used, discharge, grid for the load,
charge from surplus and grid, export, stored energy). That point is feasible and its LP objective is at
least the env's utility, term by term:

* Arrivals, transfers, queues, drops: each env job arrives once and is served once (at some age <= A) or
  is dropped/left queued, so the conservation rows hold with the env's counts (integers are continuous
  values too; the env's largest-remainder rounding and oldest-first order are particular choices).
* Capacity: the env serves m images at batch b with (m / b) L(s, b) <= G Δ busy GPU-seconds, and
  L(s, b) / b >= l*(s) = min_b L(s, b) / b, so Σ_s m_s l*(s) <= G Δ holds.
* Step count: the env uses one s per DC and slot; the LP lets each job carry its own s (a superset).
* Revenue: k ρ_o q̂_j(s) per served job, the env's formula exactly (``twin.accounting.slot_money``).
* Lateness: the LP counts a job late only if aΔ + τ[o,j] + φ · (its calls' time at batch size b) > D_k for
  *every* batch size b the env may form (``twin.compute.relaxation_bounds``, built from the env's own
  tables), so the env (which uses one particular b) counts at least as many late jobs; penalties are >= 0.
* Quality penalty: the same indicator q̂_j(s) < q_min per served job as the env; drop penalty: the same
  count (jobs unserved at age A inside the day; jobs still queued at the end cost nothing in both).
* Transfer cost: κ k per job served (or dropped) away from its origin; the LP drops only at the origin,
  which the env can match or do worse (a job moved then dropped pays κ k on top).
* Energy: the env's GPU energy for m images at (s, b) is P_idle G Δ + m (E(s,b) − P_idle L(s,b)) / b
  (gross cards; net cards: P_idle G Δ + m E(s,b) / b), which lies between the LP's load bounds built from
  the min and max over b; PUE and host overhead are exogenous factors. The env's dispatch satisfies every
  energy row: renewables first (the LP only needs r <= R), battery within power (charge or discharge, so
  c + d <= P̄ Δh), store within its window, discharge only for the own load, export only at a positive
  export price and within the limit, grid charging only where allowed. Grid cost, export income and the
  end-of-day battery settlement (stored-energy change x η_d x the day's mean price) are the env's formulas.

So the LP's optimum >= every policy's realised utility on that episode (up to HiGHS's feasibility and
optimality tolerances, 1e-7 by default). ``OraclePolicy`` replays the plan in the env (image-weighted
transfer shares, the dominant step count per DC and slot, the battery set points); its realised utility is
a feasible value, and the gap between the two measures how loose the relaxation is plus what the env's
batching, rounding and oldest-first service cost the plan.
"""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np

from policies.heuristics import keep_up, offered_load, relative_capacity
from policies.oracle_lp import OracleError, OracleProblem, OracleSolution, solve
from twin import compute, energy

#: Assumed: draws of the arrival model averaged into forecast-lp's expected arrivals.
FORECAST_DRAWS = 16
#: Day plans forecast-lp keeps (a held-out and validation evaluation's days, with room to spare).
FORECAST_PLANS = 32
#: The exogenous series (``AIGCTwinEnv.exogenous``) a forecast plan is made from, besides the scenario.
DAY_DATA = ("price", "export_price", "pv_kw", "wind_kw", "pue")

__all__ = [
    "ForecastLP",
    "OracleError",
    "OraclePolicy",
    "OracleProblem",
    "OracleSolution",
    "episode_key",
    "oracle_bound",
    "problem_from_env",
]


def _per_image(bounds) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N, S) best-case GPU-seconds per image, and the least and most GPU joules per image above the idle
    floor, over every batch size and job class the env may form (``twin.compute.relaxation_bounds``)."""
    return (
        np.nanmin(bounds.img_s_min, axis=2),
        np.nanmin(bounds.img_j_above_idle_min, axis=2),
        np.nanmax(bounds.img_j_above_idle_max, axis=2),
    )


def problem_from_env(env) -> OracleProblem:
    """The LP data of the env's current episode (call after ``reset``); everything is read from the env's
    own tables and ``exogenous()``, so the oracle and the env share one model."""
    u = env.unwrapped
    ex = u.exogenous()
    sc, tables, assets, tariffs = u.scenario, u.tables, u.assets, u.tariffs
    slot_s = float(u.slot_s)
    slot_h = slot_s / 3600.0
    images = np.asarray(u.images, dtype=np.int64)
    gpu_s = tables.gpus * slot_s
    max_wait = sc.jobs.max_wait_slots
    bounds = compute.relaxation_bounds(
        tables,
        slot_s,
        max_wait,
        np.asarray(u.deadline_s, float),
        np.asarray(u.transfer_latency_s, float),
        sc.jobs.queueing_factor,
    )
    time_s, e_lo, e_hi = _per_image(bounds)
    return OracleProblem(
        slot_s=slot_s,
        steps=np.asarray(u.step_set),
        images=images,
        arrivals=np.asarray(ex["arrivals"], dtype=float),
        max_wait=max_wait,
        revenue_per_image=np.asarray(tariffs.revenue_per_image, dtype=float),
        quality=np.asarray(tables.quality, dtype=float),
        min_quality=float(tariffs.min_quality),
        penalty_late=float(tariffs.penalty_late),
        penalty_quality=float(tariffs.penalty_quality),
        penalty_drop=float(tariffs.penalty_drop),
        transfer_cost_per_image=float(tariffs.transfer_cost_per_image),
        late=~bounds.on_time,  # late for every batch size the env may form (the optimistic count)
        image_time_s=time_s,
        image_energy_lo_j=e_lo,
        image_energy_hi_j=e_hi,
        base_energy_j=tables.idle_w * gpu_s,
        gpu_seconds=gpu_s,
        kwh_per_gpu_j=energy.facility_kwh(1.0, assets, ex["pue"]),  # facility kWh per GPU joule
        renewable_kwh=(ex["pv_kw"] + ex["wind_kw"]) * slot_h,
        price=np.asarray(ex["price"], dtype=float),
        export_price=np.asarray(ex["export_price"], dtype=float),
        battery_kwh_per_slot=assets.battery_kw * slot_h,
        eta_charge=assets.eta_charge,
        eta_discharge=assets.eta_discharge,
        stored_min=assets.soc_min * assets.battery_kwh,
        stored_max=assets.soc_max * assets.battery_kwh,
        stored_init=assets.initial_energy_kwh(),
        grid_charging=np.asarray(assets.grid_charging, dtype=bool),
        export_limit_kwh=assets.export_limit_kw * slot_h,
        settle_price=np.asarray(ex["price"], dtype=float).mean(axis=0),
    )


def oracle_bound(env, time_limit_s: float | None = None) -> OracleSolution:
    """Solve the oracle LP for the env's current episode (its optimum bounds every policy's utility)."""
    return solve(problem_from_env(env), time_limit_s=time_limit_s)


def episode_key(env) -> tuple[str, str]:
    """Identifies an episode by its day and a digest of its sampled arrivals (the rest follows from the day)."""
    ex = env.unwrapped.exogenous()
    digest = hashlib.sha1(np.ascontiguousarray(ex["arrivals"]).tobytes()).hexdigest()
    return str(ex["day"]), digest


class OraclePolicy:
    """Replays the oracle's plan: solves the LP at ``reset`` (clairvoyant: it reads the episode's arrivals),
    then per slot sends the plan's transfer shares, dominant step counts and battery set points. Plans are
    cached per episode, so the evaluator solves each episode once for both the bound and the replay."""

    name = "oracle-replay"
    clairvoyant = True  # its LP reads the episode's arrivals: its optimum is the bound

    def __init__(self, time_limit_s: float | None = None):
        self.time_limit_s = time_limit_s
        self.solution: OracleSolution | None = None
        self._cache: dict[tuple, OracleSolution] = {}
        self._slot = 0

    #: Plans kept: one episode at a time (its arrivals make it the only one a plan fits).
    plans_kept = 1

    def plan(self, env) -> OracleSolution:
        """The plan of the env's current episode (solved once, then cached under ``plan_key``)."""
        key = self.plan_key(env)
        if key not in self._cache:
            while len(self._cache) >= self.plans_kept:
                del self._cache[next(iter(self._cache))]  # the oldest
            self._cache[key] = self.solve(env)
        return self._cache[key]

    def plan_key(self, env) -> tuple:
        """What the plan depends on: the episode (its day and arrivals)."""
        return episode_key(env)

    def solve(self, env) -> OracleSolution:
        """The plan of the env's current episode: the oracle's LP on what this policy knows (everything)."""
        return oracle_bound(env, self.time_limit_s)

    def steps_at(self, t: int, obs, env) -> np.ndarray:
        """(N,) step indices at slot ``t``: the plan's."""
        return self.solution.steps_index[t]

    def reset(self, env) -> None:
        self.solution, self._slot = self.plan(env), 0

    def act(self, obs, env) -> np.ndarray:
        if self.solution is None:
            raise OracleError("OraclePolicy.act before reset: the plan is made when the episode is known")
        sol, u = self.solution, env.unwrapped
        t = min(self._slot, len(sol.steps_index) - 1)
        self._slot += 1
        shares = sol.transfer[t].copy()
        np.fill_diagonal(shares, 0.0)
        shares = shares / np.maximum(shares.sum(axis=1, keepdims=True), 1.0)  # guard rounding above 1
        return u.encode_action(shares, u.step_set[self.steps_at(t, obs, env)], sol.battery[t])


class ForecastLP(OraclePolicy):
    """A planner between the rules and the oracle: the oracle's LP solved once a day on the *expected* arrivals,
    then followed (transfer shares, battery set points) with its step counts lowered, where the pool could not
    keep up, to serve the load it observes.

    It knows the day-ahead prices (public the day before, as price-greedy does), the day's renewables and PUE
    (taken as a perfect day-ahead weather forecast: assumed, the optimistic part) and the arrival model's mean
    for the day (``AIGCTwinEnv.expected_arrivals``: draws of its own, never this episode's), not the episode's
    arrivals. So the oracle's replay minus this is what knowing the arrivals is worth, and this minus a rule
    what planning the day is worth."""

    name = "forecast-lp"
    clairvoyant = False  # its LP is not the episode's: never a bound

    plans_kept = (
        FORECAST_PLANS  # a plan serves every episode of its day: repeated evaluations solve a day once
    )

    def __init__(self, draws: int = FORECAST_DRAWS, time_limit_s: float | None = None):
        super().__init__(time_limit_s)
        self.draws = draws

    def plan_key(self, env) -> tuple:
        """The day, its scenario and data (a variant may change the data only) and the draws, not the episode's
        arrivals, which the plan never reads."""
        u = env.unwrapped
        ex = u.exogenous()
        digest = hashlib.sha1(repr(u.scenario).encode())
        for name in DAY_DATA:
            digest.update(np.ascontiguousarray(ex[name]).tobytes())
        return str(ex["day"]), digest.hexdigest(), self.draws

    def solve(self, env) -> OracleSolution:
        expected = env.unwrapped.expected_arrivals(self.draws)
        problem = dataclasses.replace(problem_from_env(env), arrivals=expected)
        return solve(problem, time_limit_s=self.time_limit_s)

    def reset(self, env) -> None:
        super().reset(env)
        self.capacity = relative_capacity(env)

    def steps_at(self, t: int, obs, env) -> np.ndarray:
        return keep_up(self.capacity, self.solution.steps_index[t], offered_load(obs, env.unwrapped.n_dc))
