"""Per-episode exogenous arrays for the twin: prices, PV, wind, temperature per site and slot, and the arrival
model that samples each episode's requests; built once per scenario from the ``traces`` loaders."""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from twin.scenario import Scenario


class ExogenousError(ValueError):
    """Exogenous data that does not fit the scenario (message names the array or the day)."""


class ArrivalModel(Protocol):
    """Samples one episode's requests: ``(slots, n_dc, n_classes)`` integer counts per slot, DC and class, with
    every mean rate times ``load`` (1: the model's own; a stress test or a training distribution tilted to busy
    days)."""

    images: np.ndarray  # (K,) images per request of each class
    probs: np.ndarray  # (K,) share of the requests in each class
    source: str

    def sample(
        self, rng: np.random.Generator, day: dt.date, slots: int, slot_s: int, load: float = 1.0
    ) -> np.ndarray: ...


@dataclass(frozen=True)
class ExogenousData:
    """Series on the scenario's slot grid, one row per calendar day: arrays (D, T, N)."""

    days: tuple[str, ...]  # ISO dates (UTC days)
    slot_s: int
    price: np.ndarray  # currency per MWh
    pv_kw: np.ndarray
    wind_kw: np.ndarray
    temperature_c: np.ndarray
    arrivals: ArrivalModel
    provenance: dict

    def __post_init__(self) -> None:
        shape = self.price.shape
        if len(shape) != 3 or shape[0] != len(self.days):
            raise ExogenousError(
                f"price must be (days, slots, sites) with {len(self.days)} days, got {shape}"
            )
        for name in ("pv_kw", "wind_kw", "temperature_c"):
            arr = getattr(self, name)
            if arr.shape != shape:
                raise ExogenousError(f"{name} has shape {arr.shape}, price has {shape}")
            if not np.isfinite(arr).all():
                raise ExogenousError(f"{name} holds non-finite values")
        if not np.isfinite(self.price).all():
            raise ExogenousError("price holds non-finite values")
        if (self.pv_kw < 0).any() or (self.wind_kw < 0).any():
            raise ExogenousError("pv_kw and wind_kw must be non-negative")
        for name in ("price", "pv_kw", "wind_kw", "temperature_c"):
            getattr(self, name).setflags(write=False)  # shared by every env built from one cache entry

    @property
    def n_days(self) -> int:
        return len(self.days)

    def day_index(self, day: str | int) -> int:
        """Index of a day given as an ISO date or an index; raises ExogenousError if it is not covered."""
        if isinstance(day, (int, np.integer)) and not isinstance(day, bool):
            if not 0 <= day < self.n_days:
                raise ExogenousError(f"day index {day} outside 0..{self.n_days - 1}")
            return int(day)
        text = str(day)
        if text not in self.days:
            raise ExogenousError(
                f"day {text!r} is not in the scenario's calendar ({self.days[0]} .. {self.days[-1]})"
            )
        return self.days.index(text)


def calendar_days(scenario: Scenario) -> tuple[str, ...]:
    """Every day of the scenario's calendar, inclusive, as ISO dates."""
    return calendar_days_of(scenario.calendar)


def calendar_days_of(calendar) -> tuple[str, ...]:
    start = dt.date.fromisoformat(calendar.start)
    end = dt.date.fromisoformat(calendar.end)
    return tuple((start + dt.timedelta(days=i)).isoformat() for i in range((end - start).days + 1))


def split_days(scenario: Scenario, days: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(train, eval) day indices: a day is held out when its ordinal % eval_stride == eval_offset, which
    spreads the evaluation days over seasons and weekdays."""
    ordinals = np.array([dt.date.fromisoformat(d).toordinal() for d in days])
    held = ordinals % scenario.calendar.eval_stride == scenario.calendar.eval_offset
    return np.flatnonzero(~held), np.flatnonzero(held)


# --- the real series, from the traces loaders ---------------------------------------------------------------


class TraceArrivals:
    """Arrivals from the fitted GenTD26 model (``traces.workload``): per DC the sum of ``tenants`` independent
    draws, each at ``scale * arrival_share / tenants`` times the trace's rate; each request's images per
    prompt drawn from the fitted class frequencies."""

    def __init__(self, params, scale: float, shares: np.ndarray, tenants: int):
        classes = params.classes
        images = np.asarray(classes["images"], dtype=np.int64)
        prob = np.asarray(classes["prob"], dtype=float)
        self.images = np.unique(images)
        self.probs = np.array([prob[images == k].sum() for k in self.images]) / prob.sum()
        self.params, self.scale, self.shares, self.tenants = params, scale, np.asarray(shares), tenants
        self.source = f"traces.workload: {params.source}"

    def sample(
        self, rng: np.random.Generator, day: dt.date, slots: int, slot_s: int, load: float = 1.0
    ) -> np.ndarray:
        from traces.workload import sample_arrivals

        start = str(day)
        req = np.zeros((slots, len(self.shares)), dtype=np.int64)
        for i, share in enumerate(self.shares):
            rate = self.scale * load * share / self.tenants
            for _ in range(self.tenants):
                req[:, i] += sample_arrivals(self.params, rng, start, slots, slot_s, rate)["requests"]
        return rng.multinomial(req, self.probs)


def _slot_index(days: tuple[str, ...], slot_s: int):
    import pandas as pd

    start = pd.Timestamp(days[0], tz="UTC")
    return pd.date_range(start, periods=len(days) * 86400 // slot_s, freq=pd.Timedelta(seconds=slot_s))


def _on_grid(frame, index, what: str) -> np.ndarray:
    """Series held constant over their own step onto the slot grid; the grid must be covered."""
    if frame.index[0] > index[0] or frame.index[-1] + (frame.index[1] - frame.index[0]) < index[-1]:
        raise ExogenousError(
            f"{what}: data covers {frame.index[0]} .. {frame.index[-1]}, not {index[0]} .. {index[-1]}"
        )
    return frame.reindex(index, method="ffill").to_numpy(dtype=float)


def _site_series(dc, years: list[int]):
    """Hourly PV, wind and temperature of one DC over whole calendar years (UTC)."""
    import pandas as pd

    from traces.renewables import site_renewables

    return pd.concat([site_renewables(dc.weather, dc.pv_kw, dc.wind_kw, year) for year in years])


def build_exogenous(scenario: Scenario) -> ExogenousData:
    """Price, PV, wind and temperature arrays for every calendar day, and the arrival model, from the traces
    loaders (embedded data: ev2gym prices, pvlib TMY3 weather, committed workload fit)."""
    return _build_cached(
        scenario.calendar, scenario.prices, scenario.workload, scenario.datacenters, scenario.slot_s
    )


@functools.lru_cache(maxsize=4)
def _build_cached(calendar, prices, workload, dcs, slot_s: int) -> ExogenousData:
    import pandas as pd

    from traces.prices import site_prices
    from traces.workload import DEFAULT_PARAMS, WorkloadParams

    scenario_days = calendar_days_of(calendar)
    index = _slot_index(scenario_days, slot_s)
    shape = (len(scenario_days), 86400 // slot_s, len(dcs))
    names = [d.name for d in dcs]
    tz = {d.name: d.timezone for d in dcs} if prices.per_site_timezone else None
    end = index[-1] + pd.Timedelta(days=1)
    price = site_prices(
        names, source=prices.source, start=index[0] - pd.Timedelta(days=1), end=end, timezones=tz
    )
    years = sorted({t.year for t in (index[0], index[-1])})
    years = list(range(years[0], years[-1] + 1))
    site = {}
    for d in dcs:
        key = (d.weather, d.pv_kw, d.wind_kw)
        site[key] = site[key] if key in site else _site_series(d, years)
    cols = [site[(d.weather, d.pv_kw, d.wind_kw)] for d in dcs]
    grid = {name: np.stack([_on_grid(c[name], index, f"{d.name} {name}") for c, d in zip(cols, dcs, strict=True)], axis=1)
            for name in ("pv_kw", "wind_kw", "temp_air_c")}  # fmt: skip
    if workload.source != "gentd26-fit":
        raise ExogenousError(f"workload.source {workload.source!r} is unknown (known: 'gentd26-fit')")
    params = WorkloadParams.load(DEFAULT_PARAMS)
    arrivals = TraceArrivals(
        params, workload.scale, np.array([d.arrival_share for d in dcs]), workload.tenants
    )
    return ExogenousData(
        days=scenario_days,
        slot_s=slot_s,
        price=prices.level * _on_grid(price, index, "price").reshape(shape),
        pv_kw=grid["pv_kw"].reshape(shape),
        wind_kw=grid["wind_kw"].reshape(shape),
        temperature_c=grid["temp_air_c"].reshape(shape),
        arrivals=arrivals,
        provenance={
            "price": {
                "source": price.attrs.get("source"),
                "derivation": price.attrs.get("derivation"),
                "level": prices.level,  # every price multiplied by it (scenario prices.level)
            },
            "renewables": {
                d.name: f"traces.renewables.site_renewables({d.weather!r}, {d.pv_kw}, {d.wind_kw})"
                for d in dcs
            },
            "workload": arrivals.source,
        },
    )
