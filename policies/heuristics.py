"""Rule-based schedulers for the twin, the baselines the learned agents must beat: the production default,
a price-aware greedy rule, the same rule without the price in its step count (quality-first), quality-first sending
what a site cannot serve to sites with room (overflow), price-greedy with transfers to where an image nets more
(best-site) and least-loaded transfer. Torch-free; actions only through ``encode_action``."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from twin.accounting import KWH_PER_MWH
from twin.energy import facility_kwh
from twin.env import OBS_PER_DC, obs_index

#: Production trace's dominant setting (GenTD26: num_inference_steps is mostly 30; shared/data/README.md).
PRODUCTION_STEPS = 30
#: Assumed: a step count "saturates" quality once it reaches this share of the model's best in the step set.
SATURATION_SHARE = 0.995
#: Assumed: day-ahead price quantiles below/above which a price counts as low/high for that site's day.
LOW_QUANTILE, HIGH_QUANTILE = 0.25, 0.75
#: Assumed: utilisation gap (share of a DC's capacity) below which least-loaded does not pay to move jobs.
BALANCE_SLACK = 0.1
#: Assumed: share of a receiving DC's capacity (at its step count) that best-site fills with transfers.
TRANSFER_FILL = 0.9

# Observation layout per DC (owned by twin.env): the columns the rules read.
_REN, _QUEUED, _ARRIVED, _PUE = (obs_index(f) for f in ("renewable", "queued", "arrived", "pue"))


class HeuristicError(ValueError):
    """An unknown heuristic name (the message lists the known ones)."""


def nearest_step(step_set: np.ndarray, steps: float) -> int:
    """The value of the step set closest to ``steps`` (ties: the smaller)."""
    step_set = np.asarray(step_set)
    return int(step_set[np.argmin(np.abs(step_set - steps))])


def min_quality_index(env) -> np.ndarray:
    """(N,) per DC the fewest steps whose delivered quality meets the minimum (else the best-quality steps)."""
    u = env.unwrapped
    ok = u.tables.quality >= u.tariffs.min_quality
    return np.where(ok.any(axis=1), np.argmax(ok, axis=1), np.argmax(u.tables.quality, axis=1))


def saturation_index(env) -> np.ndarray:
    """(N,) per DC the fewest steps reaching SATURATION_SHARE of the model's best quality in the step set."""
    q = env.unwrapped.tables.quality
    return np.argmax(q >= SATURATION_SHARE * q.max(axis=1, keepdims=True), axis=1)


def relative_capacity(env) -> np.ndarray:
    """(N, S) images per slot at each step count (largest batch) over the obs normaliser ``capacity_ref``."""
    u = env.unwrapped
    n, s_n = u.n_dc, len(u.step_set)
    last = (u.tables.batch > 0).sum(axis=1) - 1
    caps = [u.tables.capacity_images(np.full(n, s), u.slot_s)[np.arange(n), last] for s in range(s_n)]
    return np.stack(caps, axis=1) / u.capacity_ref[:, None]


def keep_up(capacity: np.ndarray, idx: np.ndarray, offered: np.ndarray) -> np.ndarray:
    """(N,) step indices ``idx`` lowered, where needed, to the largest whose ``capacity`` (N, S, as
    ``relative_capacity``) covers the ``offered`` load: a dropped or late job costs more than a lower-quality
    image."""
    fits = capacity >= offered[:, None]  # (N, S), True for the cheaper step counts first
    allowed = fits & (np.arange(capacity.shape[1])[None, :] <= idx[:, None])
    best = np.where(allowed.any(axis=1), allowed.shape[1] - 1 - np.argmax(allowed[:, ::-1], axis=1), 0)
    return np.where(fits[np.arange(len(idx)), idx], idx, best)


def per_dc(obs: np.ndarray, n: int) -> np.ndarray:
    """(N, 8) view of the per-DC block of an observation."""
    return np.asarray(obs, dtype=float)[: OBS_PER_DC * n].reshape(n, OBS_PER_DC)


def offered_load(obs: np.ndarray, n: int) -> np.ndarray:
    """(N,) queued plus last slot's new images per DC, relative to ``capacity_ref`` (the twin's obs units)."""
    blk = per_dc(obs, n)
    return blk[:, _QUEUED] + blk[:, _ARRIVED]


def fill_pairs(gain: np.ndarray, give: np.ndarray, spare: np.ndarray, new: np.ndarray) -> np.ndarray:
    """(N, N) transfer shares of each origin's ``new`` images (diagonal 0, rows summing to at most 1): the
    (origin, receiver) pairs of largest positive ``gain`` per image first, each moving as many images as the
    origin still has to ``give`` (at most its ``new``) and the receiver still has ``spare`` (all (N,), in images)."""
    n = len(new)
    left, room = np.minimum(give, new).astype(float), np.array(spare, dtype=float)
    shares = np.zeros((n, n))
    for flat in np.argsort(-gain, axis=None):
        o, j = divmod(int(flat), n)
        if gain[o, j] <= 0:
            break
        moved = min(left[o], room[j])
        if moved > 0 and o != j:
            shares[o, j] = moved / new[o]
            left[o] -= moved
            room[j] -= moved
    shares = np.clip(shares, 0.0, 1.0)
    return shares / np.maximum(shares.sum(axis=1, keepdims=True), 1.0)


class ProductionDefault:
    """Every job served locally at 30 steps (the step set's value nearest to 30 if it lacks 30), batteries
    idle: what a production service does without energy awareness."""

    name = "production-default"

    def reset(self, env) -> None:
        u = env.unwrapped
        self.steps = np.full(u.n_dc, nearest_step(u.step_set, PRODUCTION_STEPS))

    def act(self, obs, env) -> np.ndarray:
        u = env.unwrapped
        return u.encode_action(np.zeros((u.n_dc, u.n_dc)), self.steps, np.zeros(u.n_dc))


@dataclass(frozen=True)
class SlotPlan:
    """Price-greedy's decision for one slot, per DC, with the inputs a rule built on it reuses."""

    slot: int  # the slot of the day the prices are read at
    steps_idx: np.ndarray  # (N,) indices into the step set
    battery: np.ndarray  # (N,) setpoints in [-1, 1]
    price: np.ndarray  # (N,) this slot's day-ahead price, EUR/MWh
    surplus_kw: np.ndarray  # (N,) renewables beyond the estimated load (negative: a deficit)
    offered: np.ndarray  # (N,) offered load relative to capacity_ref


class PriceGreedy:
    """Per site and slot: the fewest steps meeting the minimum quality when the price is high, the
    saturating step count when it is low or renewables cover the load, a middle count otherwise; never more
    steps than the pool can serve its offered load with. Battery: charge at a low price or surplus, discharge
    at a high price, only where the day's price spread beats the round-trip losses. Prices are the episode's
    day-ahead prices (public the day before, so this is not clairvoyance); load and renewables come from the
    current observation only. Jobs are served locally."""

    name = "price-greedy"

    def reset(self, env) -> None:
        u = env.unwrapped
        self.price = np.asarray(u.exogenous()["price"], dtype=float)  # day-ahead: known before the day
        self.low = np.quantile(self.price, LOW_QUANTILE, axis=0)
        self.high = np.quantile(self.price, HIGH_QUANTILE, axis=0)
        a = u.assets
        self.arbitrage = (self.high * a.eta_charge * a.eta_discharge > self.low) & (a.battery_kwh > 0)
        lo, hi = min_quality_index(env), np.maximum(saturation_index(env), min_quality_index(env))
        steps = np.asarray(u.step_set, dtype=float)
        mid = [np.argmin(np.abs(steps - (steps[a_] + steps[b_]) / 2)) for a_, b_ in zip(lo, hi, strict=True)]
        self.levels = np.stack([lo, np.asarray(mid), hi], axis=1)  # (N, 3) step indices: high/mid/low price
        self.capacity = relative_capacity(env)
        self._slot = 0

    def act(self, obs, env) -> np.ndarray:
        u = env.unwrapped
        plan = self.plan(obs, u)
        return u.encode_action(np.zeros((u.n_dc, u.n_dc)), u.step_set[plan.steps_idx], plan.battery)

    def plan(self, obs, u, offered: np.ndarray | None = None) -> SlotPlan:
        """This slot's step counts and battery setpoints (and what they were chosen from); advances the slot.
        ``offered`` (N,) replaces the observation's offered load (a rule that moves jobs plans for the load each
        site keeps and receives)."""
        n = u.n_dc
        t = min(self._slot, len(self.price) - 1)
        self._slot += 1
        price, blk = self.price[t], per_dc(obs, n)
        offered = offered_load(obs, n) if offered is None else np.asarray(offered, dtype=float)
        load_kw = np.minimum(offered, 1.0) * u.it_peak_kw * (1.0 + blk[:, _PUE])
        surplus_kw = blk[:, _REN] * u.it_peak_kw - load_kw  # renewables beyond the estimated load
        cheap = (price <= self.low) | (surplus_kw > 0)
        level = np.where(cheap, 2, np.where(price >= self.high, 0, 1))
        idx = keep_up(self.capacity, self.levels[np.arange(n), level], offered)
        return SlotPlan(t, idx, self._battery(price, surplus_kw, u), price, surplus_kw, offered)

    def _battery(self, price: np.ndarray, surplus_kw: np.ndarray, u) -> np.ndarray:
        rated = np.maximum(u.assets.battery_kw, 1e-9)
        from_surplus = np.clip(surplus_kw / rated, 0.0, 1.0)
        trade = np.where(price <= self.low, 1.0, np.where(price >= self.high, -1.0, 0.0))
        traded = np.where(trade < 0, trade, np.maximum(trade, from_surplus))  # discharge wins at a high price
        setpoint = np.where(self.arbitrage, traded, from_surplus)
        return np.where(u.assets.battery_kwh > 0, setpoint, 0.0)


class QualityFirst(PriceGreedy):
    """Price-greedy's rule without the price in the step count: per site and slot the saturating step count
    (``SATURATION_SHARE`` of the model's best quality), lowered only as far as the pool needs to serve its offered
    load; the battery as price-greedy's. Where energy is a small share of what an image earns, cutting steps at
    high prices can save less than the quality it loses, and then this rule is the stronger baseline."""

    name = "quality-first"

    def reset(self, env) -> None:
        super().reset(env)
        self.levels[:] = self.levels[:, 2:]  # the low-price (saturating) count at every price


class Overflow(QualityFirst):
    """Quality-first plus overflow transfers. A site whose offered load is more than its pool serves at
    quality-first's (saturating) step count sends the new images beyond that to sites with room at theirs (up to
    ``TRANSFER_FILL`` of their capacity), wherever an image earns more there than at the step count the origin
    would have to fall to: the origin's price times the delivered quality, less the minimum-quality penalty (per
    job, so over the mean images per job) where the quality is below the minimum, less the transfer cost; the
    best pairs first. Every site then takes quality-first's step count for the load it keeps plus the load it
    receives; the battery is price-greedy's. Last slot's arrivals predict this slot's, as for best-site. Where no
    site overflows it is quality-first."""

    name = "overflow"

    def reset(self, env) -> None:
        super().reset(env)
        self.ref = np.asarray(env.unwrapped.capacity_ref, dtype=float)
        arrivals = env.unwrapped.data.arrivals
        self.images_per_job = float(np.dot(arrivals.images, arrivals.probs))  # the penalty is charged per job

    def act(self, obs, env) -> np.ndarray:
        u = env.unwrapped
        n = u.n_dc
        offered = offered_load(obs, n)
        new = per_dc(obs, n)[:, _ARRIVED] * self.ref  # images
        shares = self.shares(offered, new, u)
        moved = shares * new[:, None]  # images, origin x receiver
        kept = offered + (moved.sum(axis=0) - moved.sum(axis=1)) / self.ref
        plan = self.plan(obs, u, offered=kept)
        return u.encode_action(shares, u.step_set[plan.steps_idx], plan.battery)

    def shares(self, offered: np.ndarray, new: np.ndarray, u) -> np.ndarray:
        """(N, N) transfer shares of each origin's new jobs for an ``offered`` load (N, relative to
        ``capacity_ref``) and ``new`` images (N,)."""
        rows = np.arange(u.n_dc)
        steps = self.levels[:, 0]  # quality-first's count, the same at every price
        load, capacity = offered * self.ref, self.capacity[rows, steps] * self.ref  # images per slot
        excess = np.clip(load - capacity, 0.0, new)
        spare = np.where(excess > 0, 0.0, np.maximum(TRANSFER_FILL * capacity - load, 0.0))
        fallback = keep_up(self.capacity, steps, offered)  # where an origin that keeps its jobs falls to
        t = u.tariffs
        quality = u.tables.quality

        def worth(origin: np.ndarray, q: np.ndarray) -> np.ndarray:
            low = q < t.min_quality
            return t.revenue_per_image[origin] * q - t.penalty_quality / self.images_per_job * low

        gain = (
            worth(rows[:, None], quality[rows, steps][None, :])
            - worth(rows, quality[rows, fallback])[:, None]
            - t.transfer_cost_per_image
        )
        np.fill_diagonal(gain, -np.inf)
        return fill_pairs(gain, excess, spare, new)


class BestSite(PriceGreedy):
    """Price-greedy's step counts and battery, plus transfers of new jobs to where an image nets more.

    Each slot, every site's next image is priced at its facility energy (the GPU joules one more image adds at
    the site's step count and largest batch, host overhead and current PUE) times the value of the site's next
    kWh: the day-ahead price, or the export price where renewables are in surplus (the kWh is then not sold; a
    simplification: every image sent there that slot is valued so, however small the surplus). New jobs
    move from a site to another where the energy money saved per image beats the transfer cost plus the revenue
    lost to the receiver's delivered quality (the origin's price times the quality difference), and the
    receiver's step count meets the minimum quality; the best pairs first, as far as the receiver's capacity at
    its step count, filled to ``TRANSFER_FILL``, allows. Last slot's arrivals predict this slot's, as for
    least-loaded."""

    name = "best-site"

    def reset(self, env) -> None:
        super().reset(env)
        u = env.unwrapped
        ex = u.exogenous()
        self.export = np.maximum(np.asarray(ex["export_price"], dtype=float), 0.0)  # curtailed when <= 0
        last = (u.tables.batch > 0).sum(axis=1) - 1
        n = u.n_dc
        tb, rows = u.tables, np.arange(n)
        # (N, S) GPU joules one more image adds at the largest batch: a gross card's idle floor is paid anyway
        above_idle = tb.img_j[rows, :, last, 0] - tb.idle_w[:, None] * tb.img_s[rows, :, last, 0]
        self.gpu_j = np.where(tb.energy_gross[:, None], above_idle, tb.img_j[rows, :, last, 0])
        self.ref = np.asarray(u.capacity_ref, dtype=float)

    def act(self, obs, env) -> np.ndarray:
        u = env.unwrapped
        plan = self.plan(obs, u)
        shares = self.shares(plan, per_dc(obs, u.n_dc), self.export[plan.slot], u)
        return u.encode_action(shares, u.step_set[plan.steps_idx], plan.battery)

    def image_cost(self, plan: SlotPlan, blk: np.ndarray, export: np.ndarray, u) -> np.ndarray:
        """(N,) energy money of one more image at each site this slot, in the scenario's currency."""
        n = u.n_dc
        kwh = facility_kwh(self.gpu_j[np.arange(n), plan.steps_idx], u.assets, 1.0 + blk[:, _PUE])
        value = np.where(plan.surplus_kw > 0, export, plan.price)  # per MWh
        return kwh * value / KWH_PER_MWH

    def shares(self, plan: SlotPlan, blk: np.ndarray, export: np.ndarray, u) -> np.ndarray:
        """(N, N) transfer shares of each origin's new jobs (diagonal 0): the pairs that gain most per image
        first, each moving what the origin has left and the receiver can still take."""
        n = u.n_dc
        rows = np.arange(n)
        cost = self.image_cost(plan, blk, export, u)
        quality = u.tables.quality[rows, plan.steps_idx]
        # Per image moved from o to j: energy money saved, minus the transfer, minus the revenue the origin's
        # price loses to the receiver's delivered quality (revenue = quality x images x the origin's price).
        gain = (
            cost[:, None] - cost[None, :] - u.tariffs.transfer_cost_per_image
            - u.tariffs.revenue_per_image[:, None] * (quality[:, None] - quality[None, :])
        )  # fmt: skip
        gain[:, quality < u.tariffs.min_quality] = -np.inf  # a receiver below the minimum pays the penalty
        np.fill_diagonal(gain, -np.inf)
        spare = np.maximum(TRANSFER_FILL * self.capacity[rows, plan.steps_idx] - plan.offered, 0.0) * self.ref
        new = blk[:, _ARRIVED] * self.ref  # images: last slot's arrivals predict this slot's
        return fill_pairs(gain, new, spare, new)


class LeastLoaded:
    """Least-loaded transfer at the production setting (30 steps, batteries idle): new jobs of a DC whose
    offered load per capacity exceeds the system's mean by more than BALANCE_SLACK are sent to the DCs below
    the mean, in proportion to their spare capacity. New jobs are the ones with their whole deadline ahead;
    every queue is then served oldest first (earliest deadline first) by the twin."""

    name = "least-loaded"

    def reset(self, env) -> None:
        u = env.unwrapped
        step = nearest_step(u.step_set, PRODUCTION_STEPS)
        self.steps = np.full(u.n_dc, step)
        idx = int(np.searchsorted(u.step_set, step))
        self.ref = np.asarray(u.capacity_ref, dtype=float)  # the obs normaliser, images per slot
        self.capacity = relative_capacity(env)[:, idx] * self.ref  # images per slot at that step

    def act(self, obs, env) -> np.ndarray:
        u = env.unwrapped
        n = u.n_dc
        return u.encode_action(self.shares(obs, n), self.steps, np.zeros(n))

    def shares(self, obs: np.ndarray, n: int) -> np.ndarray:
        """(N, N) transfer shares of each origin's new jobs (diagonal 0)."""
        blk = per_dc(obs, n)
        new = blk[:, _ARRIVED] * self.ref  # images: last slot's arrivals predict this slot's
        offered = offered_load(obs, n) * self.ref
        util = offered / self.capacity
        mean = offered.sum() / self.capacity.sum()
        excess = np.where(util > mean + BALANCE_SLACK, np.minimum((util - mean) * self.capacity, new), 0.0)
        room = np.where(util < mean, (mean - util) * self.capacity, 0.0)
        shares = np.zeros((n, n))
        if excess.sum() <= 0 or room.sum() <= 0:
            return shares
        moved = np.minimum(excess, room.sum() * excess / excess.sum())  # senders share the room
        shares = moved[:, None] * room[None, :] / room.sum() / np.maximum(new, 1e-9)[:, None]
        np.fill_diagonal(shares, 0.0)
        shares = np.clip(shares, 0.0, 1.0)
        return shares / np.maximum(shares.sum(axis=1, keepdims=True), 1.0)


def _forecast_lp():
    from policies.oracle import ForecastLP  # imported on use: it builds on this module

    return ForecastLP()


#: Every non-learned scheduler by name: the rules above and the forecast planner (``policies.oracle``).
HEURISTICS = {
    **{
        cls.name: cls
        for cls in (ProductionDefault, PriceGreedy, QualityFirst, Overflow, BestSite, LeastLoaded)
    },
    "forecast-lp": _forecast_lp,
}


def make_heuristic(name: str):
    """A fresh heuristic by its name; HeuristicError for an unknown one."""
    if name not in HEURISTICS:
        raise HeuristicError(f"unknown heuristic {name!r} (known: {', '.join(HEURISTICS)})")
    return HEURISTICS[name]()
