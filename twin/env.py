"""The gymnasium environment ``AIGCTwin-v0``: data centres serving AIGC jobs, co-simulated slot by slot with
their energy systems; one episode is one day. Equations: docs/twin-model.md."""

from __future__ import annotations

import datetime as dt
import numbers
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from twin import accounting, compute, energy
from twin.exogenous import ExogenousData, split_days
from twin.scenario import REWARD_MODES, Scenario, ScenarioError, load_scenario, with_overrides

ENV_ID = "AIGCTwin-v0"
OBS_BOUND = 10.0  # observations are clipped to [-OBS_BOUND, OBS_BOUND]
#: Observation fields per DC, in order (docs/twin-model.md §7): prices now, next 1 h and 4 h (per
#: ``price_scale``), renewables per IT peak, battery SoC, queued and arrived images per slot capacity, PUE - 1.
OBS_FIELDS = ("price", "price_1h", "price_4h", "renewable", "soc", "queued", "arrived", "pue")
#: Global observation fields after the N per-DC blocks: time of day as sin and cos, fraction of the day elapsed.
OBS_GLOBAL_FIELDS = ("time_sin", "time_cos", "day_fraction")
OBS_PER_DC = len(OBS_FIELDS)
OBS_GLOBAL = len(OBS_GLOBAL_FIELDS)


def obs_index(name: str) -> int:
    """Column of the per-DC field ``name`` in the observation reshaped to (N, OBS_PER_DC)."""
    return OBS_FIELDS.index(name)


# The exogenous fields, precomputed once per episode in this order (``_episode_arrays``).
_OBS_STATIC = ("price", "price_1h", "price_4h", "renewable", "pue")
_OBS_STATIC_INDEX = [obs_index(f) for f in _OBS_STATIC]

#: Scalar ``info`` keys that are flows over the slot (money, job counts, kWh): an episode's total is their sum.
FLOW_KEYS = (
    "revenue", "penalty", "penalty_late", "penalty_quality", "penalty_drop", "energy_cost",
    "battery_settlement", "transfer_cost", "utility", "arrived", "transferred", "served", "served_images",
    "late", "quality_violations", "dropped", "gpu_kwh", "load_kwh", "renewable_kwh", "renewable_used_kwh",
    "battery_charge_kwh", "battery_discharge_kwh", "grid_import_kwh", "export_kwh", "curtailed_kwh",
)  # fmt: skip
#: Scalar ``info`` keys that are stocks at the end of the slot: summing them over slots means nothing.
STOCK_KEYS = ("queued",)
#: What each site meters per slot (``info["meters"]``, DC-major, scaled as ``AIGCTwinEnv._meters`` says): images
#: served and their delivered quality, jobs served late and dropped, energy imported and exported, jobs sent to
#: other sites. Quantities, no money: what a slot earns is only known at its settlement.
METER_KEYS = ("served_images", "quality", "late", "dropped", "grid_import_kwh", "export_kwh", "moved_out")
#: Scalar ``info`` keys that label the slot (neither flow nor stock).
LABEL_KEYS = ("slot", "day", "settled", "reward_scale")


class ActionError(ValueError):
    """An action or decision that does not fit the environment (message names the part)."""


@dataclass(frozen=True)
class Decision:
    """One slot's decisions in physical terms (what ``decode_action`` returns)."""

    transfer: np.ndarray  # (N, N) shares of origin o's new jobs served at j; rows sum to 1
    steps: np.ndarray  # (N,) step counts
    steps_index: np.ndarray  # (N,) indices into the step set
    battery: np.ndarray  # (N,) set point, fraction of rated power, + charge / - discharge


class AIGCTwinEnv(gym.Env):
    """
    ## Description
    N data centres (default 3: SD 1.5, SDXL, SD 3.5 medium), each an AIGC service provider with one
    text-to-image model on a pool of GPUs, serve jobs arriving from a workload model fitted to a production
    trace, while their sites buy electricity at real day-ahead prices, use PV and wind and run a battery.
    Per slot (default 5 min, 288 per day) the agent routes new jobs between ASPs, picks each DC's denoising
    step count and each battery's set point. Latency, energy and quality come from measured or cited model
    cards; see docs/twin-model.md for every equation.

    ## Action Space
    ``Box(-1, 1, (N*(N-1) + 2N,), float32)``: transfer shares per origin to each other DC (row-major,
    self skipped), then a step-count value per DC, then a battery set point per DC. Build and read actions
    with ``encode_action(transfer, steps, battery)`` and ``decode_action(action)``.

    ## Observation Space
    ``Box(-10, 10, (8N + 3,), float32)``: per DC the price now, its 1 h and 4 h means (per ``price_scale``),
    renewable power per IT peak, battery state of charge, queued and newly arrived images per slot capacity,
    PUE - 1; then sin and cos of the time of day and the fraction of the day elapsed.

    ## Rewards
    ``dense``: ``reward_scale`` x the slot's utility (revenue - penalties - energy cost - transfer cost).
    ``sparse``: ``reward_scale`` x the summed utility of the settlement period, paid on settlement slots
    (``info["settled"]``) and 0 elsewhere. Unscaled money terms are always in ``info``. A settlement slot's
    ``info["settled_items"]`` itemises what it pays, per DC and term (``settlement_items`` names them, costs
    negative, in reward units; they sum to the reward): what a site's electricity bill and an ASP's invoices
    would list for the period, for learners that decompose the settlement (``policies/shapers``). Every slot's
    ``info["meters"]`` holds what the sites meter in it (``METER_KEYS`` per DC, ``meter_names``; quantities,
    no money), which a shaper may condition on.

    ## Starting State
    A day of the chosen split (``reset(options={"split": "train" | "eval", "day": ...})``), empty queues,
    batteries at ``soc_init``; the day's arrivals are sampled from ``self.np_random``, every mean rate times
    ``options["load"]`` where given (default 1: the arrival model's own).

    ## Episode End
    Truncated after the last slot of the day; never terminated.

    ## Arguments
    ``scenario`` (name of a bundled TOML, a path or a ``Scenario``), ``reward_mode`` (overrides the
    scenario's), ``data`` (an ``ExogenousData``; default: built from the traces loaders), ``cards`` (one
    card per DC; default: ``twin.cards.find_card``).

    ## Version History
    * v0: first version (transfer share = max(0, v), so an action of 0 keeps jobs local).
    """

    metadata: ClassVar[dict] = {"render_modes": []}

    def __init__(
        self,
        scenario: str | Path | Scenario = "default",
        reward_mode: str | None = None,
        data: ExogenousData | None = None,
        cards: list | None = None,
    ):
        sc = load_scenario(scenario)
        if reward_mode is not None:
            if reward_mode not in REWARD_MODES:
                raise ScenarioError(f"reward_mode must be one of {REWARD_MODES}, got {reward_mode!r}")
            sc = with_overrides(sc, reward_mode=reward_mode)
        self.scenario = sc
        self.n_dc = sc.n_dc
        self.step_set = np.asarray(sc.steps, dtype=np.int64)
        self.slots = sc.slots_per_episode
        self.slot_s = float(sc.slot_s)
        self._cards = cards if cards is not None else _find_cards(sc)
        if len(self._cards) != self.n_dc:
            raise ScenarioError(f"{sc.source}: {self.n_dc} data centres but {len(self._cards)} cards")
        self.data = data if data is not None else _build_data(sc)
        if self.data.price.shape[1:] != (self.slots, self.n_dc):
            raise ScenarioError(
                f"{sc.source}: exogenous data has (slots, sites) {self.data.price.shape[1:]}, "
                f"scenario needs {(self.slots, self.n_dc)}"
            )
        self._setup_model()
        n = self.n_dc
        self.action_space = spaces.Box(-1.0, 1.0, shape=(n * (n - 1) + 2 * n,), dtype=np.float32)
        self.observation_space = spaces.Box(
            -OBS_BOUND, OBS_BOUND, shape=(OBS_PER_DC * n + OBS_GLOBAL,), dtype=np.float32
        )
        self.train_days, self.eval_days = split_days(sc, self.data.days)
        self._day = 0
        self._ex: dict[str, np.ndarray] = {}
        self._reset_state(0, np.zeros((self.slots, n, len(self.images)), dtype=np.int64))

    # --- set-up -------------------------------------------------------------------------------------------

    def _setup_model(self) -> None:
        sc, dcs = self.scenario, self.scenario.datacenters
        self.images = np.asarray(self.data.arrivals.images, dtype=np.int64)
        self.tables = compute.build_tables(
            self._cards, sc.steps, self.images, [d.gpus for d in dcs], [d.relative_quality for d in dcs],
            [d.idle_power_w for d in dcs],
        )  # fmt: skip
        self.assets = energy.EnergyAssets.from_datacenters(dcs)
        self.tariffs = accounting.Tariffs(
            revenue_per_image=np.array([d.revenue_per_image for d in dcs]),
            penalty_late=sc.money.penalty_late_per_job,
            penalty_quality=sc.money.penalty_quality_per_job,
            penalty_drop=sc.money.penalty_drop_per_job,
            transfer_cost_per_image=sc.money.transfer_cost_per_image,
            min_quality=sc.jobs.min_quality,
        )
        self.deadline_s = sc.jobs.deadline_base_s + sc.jobs.deadline_per_image_s * self.images
        self._off = ~np.eye(self.n_dc, dtype=bool)
        self.transfer_latency_s = sc.money.transfer_latency_s * self._off
        ref = int(np.argmin(np.abs(self.step_set - sc.reference_steps)))
        rows = np.arange(self.n_dc)
        last = (self.tables.batch > 0).sum(axis=1) - 1
        # Normalisers: images per slot at the reference step count and the largest batch; IT peak power.
        self.capacity_ref = self.tables.capacity_images(np.full(self.n_dc, ref), self.slot_s)[rows, last]
        self.it_peak_kw = energy.it_peak_kw(
            self.tables.gpus,
            self.tables.energy_j[rows, ref, last],
            self.tables.lat_s[rows, ref, last],
            self.assets.host_overhead,
        )
        # Stored energy / capacity is the SoC; a DC without a battery reads 0 (stored is 0 there too).
        self._battery_norm = np.where(self.assets.battery_kwh > 0, self.assets.battery_kwh, 1.0)

    def _reset_state(self, day: int, arrivals: np.ndarray, load: float = 1.0) -> None:
        n, k = self.n_dc, len(self.images)
        self._day, self._t = day, 0
        self._load = load  # the episode's arrival rates x this (reset's options["load"]; expected_arrivals)
        self._arrivals = arrivals
        self._queue = np.zeros((n, self.scenario.jobs.max_wait_slots + 1, k, n), dtype=np.int64)
        self._stored = self.assets.initial_energy_kwh()
        self._pending = 0.0  # utility since the last settlement
        self._pending_items = np.zeros((n, len(accounting.ITEM_TERMS)))  # and its terms per DC
        self._last_images = np.zeros(n)
        self._ex = self._episode_arrays(day, arrivals)

    def _episode_arrays(self, day: int, arrivals: np.ndarray) -> dict[str, np.ndarray]:
        d = self.data
        price = d.price[day]
        pue = energy.pue(self.assets, d.temperature_c[day])
        per_hour = max(round(3600 / self.slot_s), 1)
        # per price_scale of the series itself: a scenario's price level changes the money, not what the policy sees
        scaled = price / (self.scenario.price_scale * self.scenario.prices.level)
        ren = (d.pv_kw[day] + d.wind_kw[day]) / np.maximum(self.it_peak_kw, 1e-9)
        # The exogenous part of every observation of the day, (T, N, 5) in _OBS_STATIC order, computed once.
        static = np.stack(
            [scaled, _ahead_mean(scaled, per_hour), _ahead_mean(scaled, 4 * per_hour), ren, pue - 1], 2
        )
        return {
            "price": price,
            "export_price": self.scenario.money.export_price_factor * price,
            "pv_kw": d.pv_kw[day],
            "wind_kw": d.wind_kw[day],
            "temperature_c": d.temperature_c[day],
            "pue": pue,
            "arrivals": arrivals,
            "_obs_static": static,
        }

    # --- actions ------------------------------------------------------------------------------------------

    def encode_action(self, transfer: Any, steps: Any, battery: Any) -> np.ndarray:
        """The action vector for (N, N) transfer shares (diagonal ignored), N step counts from the step
        set and N battery set points in [-1, 1]."""
        n = self.n_dc
        tr = np.asarray(transfer, dtype=float)
        st = np.asarray(steps).reshape(-1)
        bt = np.asarray(battery, dtype=float).reshape(-1)
        if tr.shape != (n, n):
            raise ActionError(f"transfer must be ({n}, {n}), got {tr.shape}")
        off = ~np.eye(n, dtype=bool)
        if (tr[off] < 0).any() or (tr[off] > 1).any() or (tr * off).sum(axis=1).max() > 1 + 1e-9:
            raise ActionError("transfer shares must be in [0, 1] with each origin's transferred total <= 1")
        if st.shape != (n,) or not np.isin(st, self.step_set).all():
            raise ActionError(
                f"steps must be {n} values from the step set {self.step_set.tolist()}, got {st.tolist()}"
            )
        if bt.shape != (n,) or (np.abs(bt) > 1).any() or not np.isfinite(bt).all():
            raise ActionError(f"battery must be {n} set points in [-1, 1], got {bt.tolist()}")
        parts = [tr[off], self.steps_coordinate(np.searchsorted(self.step_set, st)), bt]
        return np.clip(np.concatenate(parts), -1, 1).astype(np.float32)

    def steps_coordinate(self, index: Any) -> np.ndarray:
        """The action value at the centre of step-set entry ``index`` (what ``encode_action`` writes for it)."""
        return 2 * np.asarray(index) / max(len(self.step_set) - 1, 1) - 1

    def action_index(self, part: str, site: int) -> int:
        """Where ``site``'s step count (``part="steps"``) or battery set point (``"battery"``) sits in the action
        vector: the N(N-1) transfer shares come first, then N step counts, then N set points."""
        n = self.n_dc
        offsets = {"steps": n * (n - 1), "battery": n * (n - 1) + n}
        if part not in offsets or not 0 <= site < n:
            raise ActionError(
                f"no action index for part {part!r} of site {site} (parts: steps, battery; {n} sites)"
            )
        return offsets[part] + site

    def decode_action(self, action: Any) -> Decision:
        """The physical decision an action vector stands for (clipped to [-1, 1] first; NaN is an error)."""
        n = self.n_dc
        a = np.asarray(action, dtype=float).reshape(-1)
        if a.shape != self.action_space.shape:
            raise ActionError(f"action must have shape {self.action_space.shape}, got {a.shape}")
        if not np.isfinite(a).all():
            raise ActionError("action holds NaN or infinite values")
        a = np.clip(a, -1.0, 1.0)
        m, b = self.action_index("steps", 0), self.action_index("battery", 0)
        off = self._off
        tr = np.zeros((n, n))
        # share = max(0, v): the middle of the range (an untrained actor's output) keeps jobs local, and
        # half of the range means "transfer nothing" so local service is easy to learn and to hold.
        tr[off] = np.maximum(a[:m], 0.0)
        tr /= np.maximum(tr.sum(axis=1, keepdims=True), 1.0)  # ask for more than all: scaled down
        tr[~off] = 1.0 - tr.sum(axis=1)
        idx = np.rint((a[m:b] + 1) / 2 * (len(self.step_set) - 1)).astype(np.int64)
        return Decision(tr, self.step_set[idx], idx, a[b:].copy())

    # --- gymnasium API ------------------------------------------------------------------------------------

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        options = dict(options or {})
        unknown = set(options) - {"split", "day", "load"}
        if unknown:
            raise ScenarioError(
                f"reset options: unknown key(s) {sorted(unknown)} (allowed: split, day, load)"
            )
        load = options.get("load", 1.0)
        if (
            isinstance(load, bool)
            or not isinstance(load, numbers.Real)
            or not (np.isfinite(load) and load > 0)
        ):
            raise ScenarioError(f"reset options: load must be a finite number > 0, got {load!r}")
        load = float(load)
        split = options.get("split", "train")
        if split not in ("train", "eval"):
            raise ScenarioError(f"reset options: split must be 'train' or 'eval', got {split!r}")
        if "day" in options:
            day = self.data.day_index(options["day"])
        else:
            pool = self.train_days if split == "train" else self.eval_days
            day = int(self.np_random.choice(pool))
        arrivals = self.data.arrivals.sample(
            self.np_random, self._date(day), self.slots, int(self.slot_s), load
        )
        arrivals = np.asarray(arrivals, dtype=np.int64)
        if arrivals.shape != (self.slots, self.n_dc, len(self.images)) or (arrivals < 0).any():
            raise ScenarioError(f"arrival model returned shape {arrivals.shape} or negative counts")
        self._reset_state(day, arrivals, load)
        return self._observation(), {"day": self.data.days[day], "slot": 0}

    def _date(self, day: int) -> dt.date:
        return dt.date.fromisoformat(self.data.days[day])

    def step(self, action):
        if self._t >= self.slots:
            raise ActionError("the day is over (truncated): call reset() before step()")
        dec = self.decode_action(action)
        t, ex, sc = self._t, self._ex, self.scenario
        comp = compute.slot_compute(
            self.tables, self._queue, self._arrivals[t], dec.transfer, dec.steps_index, self.deadline_s,
            self.transfer_latency_s, self.slot_s, sc.jobs.queueing_factor,
        )  # fmt: skip
        slot_h = self.slot_s / 3600.0
        load = energy.facility_kwh(comp.gpu_j, self.assets, ex["pue"][t])
        ren = (ex["pv_kw"][t] + ex["wind_kw"][t]) * slot_h
        en = energy.dispatch(self.assets, load, ren, self._stored, dec.battery, ex["export_price"][t], slot_h)
        last = t + 1 == self.slots
        settle_batt = np.zeros(self.n_dc)
        if last:  # stored energy used up over the day is paid for at the day's mean price
            settle_batt = accounting.battery_settlement(
                self.assets.initial_energy_kwh(),
                en.soc_kwh,
                self.assets.eta_discharge,
                ex["price"].mean(axis=0),
            )
        money = accounting.slot_money(
            self.tariffs, comp.served, comp.late, comp.dropped, comp.transfers, comp.quality, self.images,
            en.grid_import, en.export, ex["price"][t], ex["export_price"][t], settle_batt,
        )  # fmt: skip
        utility = float(money.utility.sum())
        self._pending_items += money.items()
        reward, settled = self._reward(utility, last)
        info = self._info(comp, en, money, dec, settled)
        info["meters"] = self._meters(comp, en)
        if settled:
            info["settled_items"] = self.scenario.reward_scale * self._pending_items.reshape(-1)
            self._pending_items = np.zeros_like(self._pending_items)
        self._queue, self._stored = comp.queue, en.soc_kwh
        self._last_images = np.einsum("ok,k->o", self._arrivals[t], self.images).astype(float)
        self._t += 1
        return self._observation(), reward, False, last, info

    def _meters(self, comp, en) -> np.ndarray:
        """The slot's ``METER_KEYS`` per DC, flattened DC-major: images and jobs per slot capacity
        (``capacity_ref``), energy per IT peak energy of a slot, quality as delivered."""
        moved = comp.transfers.sum(axis=2)  # (O, J) jobs from origin o served at j
        slot_kwh = np.maximum(self.it_peak_kw, 1e-9) * self.slot_s / 3600.0
        cap = np.maximum(self.capacity_ref, 1e-9)
        columns = (
            comp.served_images / cap, comp.quality, comp.late.sum(axis=(1, 2, 3)) / cap,
            comp.dropped.sum(axis=(1, 2)) / cap, en.grid_import / slot_kwh, en.export / slot_kwh,
            (moved.sum(axis=1) - np.diag(moved)) / cap,
        )  # fmt: skip
        return np.stack(columns, axis=1).reshape(-1).astype(np.float32)

    @property
    def meter_names(self) -> tuple[str, ...]:
        """Names of ``info["meters"]``'s entries: ``<dc>:<meter>``, DC-major."""
        return tuple(f"{d.name}:{m}" for d in self.scenario.datacenters for m in METER_KEYS)

    @property
    def settlement_items(self) -> tuple[str, ...]:
        """Names of ``info["settled_items"]``'s entries: ``<dc>:<term>``, DC-major."""
        return tuple(f"{d.name}:{t}" for d in self.scenario.datacenters for t in accounting.ITEM_TERMS)

    def _reward(self, utility: float, last: bool) -> tuple[float, bool]:
        sc = self.scenario
        if sc.reward_mode == "dense":
            return sc.reward_scale * utility, True
        self._pending += utility
        if last or (self._t + 1) % sc.settlement_slots == 0:
            paid, self._pending = self._pending, 0.0
            return sc.reward_scale * paid, True
        return 0.0, False

    def _observation(self) -> np.ndarray:
        t = min(self._t, self.slots - 1)
        per_dc = np.empty((self.n_dc, OBS_PER_DC))
        per_dc[:, _OBS_STATIC_INDEX] = self._ex["_obs_static"][t]
        per_dc[:, obs_index("soc")] = self._stored / self._battery_norm
        per_dc[:, obs_index("queued")] = np.einsum("iako,k->i", self._queue, self.images) / self.capacity_ref
        per_dc[:, obs_index("arrived")] = self._last_images / self.capacity_ref
        phase = 2 * np.pi * self._t / self.slots
        glob = (np.sin(phase), np.cos(phase), self._t / self.slots)
        obs = np.concatenate([per_dc.reshape(-1), glob])
        return np.clip(obs, -OBS_BOUND, OBS_BOUND).astype(np.float32)

    def _info(self, comp, en, money, dec: Decision, settled: bool) -> dict[str, Any]:
        arrived = self._arrivals[self._t]
        moved = comp.transfers.sum(axis=2)
        info: dict[str, Any] = {
            "slot": self._t,
            "day": self.data.days[self._day],
            **money.totals(),
            "reward_scale": self.scenario.reward_scale,
            "settled": settled,
            "arrived": int(arrived.sum()),
            "transferred": int(moved.sum() - np.trace(moved)),
            "transfer_jobs": moved,  # (N, N) jobs from origin o (row) served at j (column); diagonal kept
            "served": int(comp.served.sum()),
            "served_images": float(comp.served_images.sum()),
            "late": int(comp.late.sum()),
            "quality_violations": int(
                comp.served.sum(axis=(1, 2, 3))[comp.quality < self.tariffs.min_quality].sum()
            ),
            "dropped": int(comp.dropped.sum()),
            "queued": int(comp.queue.sum()),
            "gpu_kwh": float(comp.gpu_j.sum() / energy.J_PER_KWH),
            "load_kwh": float(en.load.sum()),
            "renewable_kwh": float(en.renewable.sum()),
            "renewable_used_kwh": float(en.renewable_used.sum()),
            "battery_charge_kwh": float(en.charge.sum()),
            "battery_discharge_kwh": float(en.discharge.sum()),
            "grid_import_kwh": float(en.grid_import.sum()),
            "export_kwh": float(en.export.sum()),
            "curtailed_kwh": float(en.curtailed.sum()),
        }
        info["dc"] = {
            "arrived": arrived.sum(axis=1),
            "served": comp.served.sum(axis=(1, 2, 3)),
            "served_by_origin": comp.served.sum(axis=(0, 1, 2)),
            "dropped_by_origin": comp.dropped.sum(axis=(0, 1)),
            "queued_by_origin": comp.queue.sum(axis=(0, 1, 2)),
            "late": comp.late.sum(axis=(1, 2, 3)),
            "dropped": comp.dropped.sum(axis=(1, 2)),
            "queued": comp.queue.sum(axis=(1, 2, 3)),
            "offered_images": comp.offered_images,
            "served_images": comp.served_images,
            "steps": comp.steps,
            "batch": comp.batch,
            "quality": comp.quality,
            "utilisation": comp.utilisation,
            "gpu_kwh": comp.gpu_j / energy.J_PER_KWH,
            "load_kwh": en.load,
            "renewable_kwh": en.renewable,
            "renewable_used_kwh": en.renewable_used,
            "battery_charge_kwh": en.charge,
            "battery_charge_grid_kwh": en.charge_from_grid,
            "battery_discharge_kwh": en.discharge,
            "grid_import_kwh": en.grid_import,
            "export_kwh": en.export,
            "curtailed_kwh": en.curtailed,
            "stored_kwh": en.soc_kwh,
            "soc": en.soc_kwh / self._battery_norm,
            "price": self._ex["price"][self._t],
            "revenue": money.revenue,
            "penalty": money.penalty,
            "energy_cost": money.energy_cost,
            "transfer_cost": money.transfer_cost,
            "utility": money.utility,
        }
        return info

    def exogenous(self) -> dict[str, Any]:
        """The current episode's full arrays (copies): price, export_price, pv_kw, wind_kw, temperature_c,
        pue as (T, N); arrivals (T, N, K) requests per class; images (K,); day; slot_s."""
        out = {k: v.copy() for k, v in self._ex.items() if not k.startswith("_")}
        out.update(images=self.images.copy(), day=self.data.days[self._day], slot_s=int(self.slot_s))
        return out

    def expected_arrivals(self, draws: int = 16, seed: int = 0) -> np.ndarray:
        """(T, N, K) the arrival model's mean for the current episode's day (at the episode's ``load``), estimated
        from ``draws`` samples with a generator of their own (``seed`` and the day), so it knows the day, never
        this episode's draw."""
        if draws < 1:
            raise ValueError(f"draws must be >= 1, got {draws}")
        date = self._date(self._day)
        rng = np.random.default_rng([seed, date.toordinal()])
        model = self.data.arrivals
        return np.mean(
            [model.sample(rng, date, self.slots, int(self.slot_s), self._load) for _ in range(draws)], axis=0
        )


def _ahead_mean(x: np.ndarray, window: int) -> np.ndarray:
    """Mean of x[t : t + window] for every t (shorter at the end of the day), along axis 0."""
    cs = np.concatenate([np.zeros((1, *x.shape[1:])), np.cumsum(x, axis=0)])
    t = np.arange(len(x))
    end = np.minimum(t + window, len(x))
    return (cs[end] - cs[t]) / (end - t)[:, None]


def _find_cards(sc: Scenario) -> list:
    from twin.cards import find_card

    return [find_card(d.model, gpu=d.gpu, mode=d.mode) for d in sc.datacenters]


def _build_data(sc: Scenario) -> ExogenousData:
    from twin.exogenous import build_exogenous

    return build_exogenous(sc)


# No max_episode_steps: a day has 86400 / slot_s slots, which differs between scenarios, and the env
# truncates itself after its last slot (a fixed TimeLimit of 288 cut days of shorter slots in the middle,
# before the battery and sparse-reward settlements).
gym.register(id=ENV_ID, entry_point="twin.env:AIGCTwinEnv")
