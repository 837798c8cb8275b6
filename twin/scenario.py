"""Scenario configuration of the twin: TOML files validated into frozen dataclasses (errors name the field),
and dumped back to TOML so every run can record the scenario it used."""

from __future__ import annotations

import datetime as dt
import math
import tomllib
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from traces.atomic import write_text_atomic

#: The denoising-step set of the paper (arXiv 2605.02965: {6, 10, 14, ..., 42}); the one source of truth.
DEFAULT_STEPS: tuple[int, ...] = tuple(range(6, 43, 4))

#: Where the bundled scenarios live.
SCENARIO_DIR = Path(__file__).resolve().parent / "scenarios"

REWARD_MODES = ("dense", "sparse")
_INF = math.inf


class ScenarioError(ValueError):
    """A scenario that cannot be used: the message names the file and the field."""


# Field specs: name -> (type, default or REQUIRED, low, high). Ranges are inclusive.
REQUIRED = object()


def _spec(kind: type, default: Any = REQUIRED, low: float = -_INF, high: float = _INF) -> tuple:
    return (kind, default, low, high)


@dataclass(frozen=True)
class Datacenter:
    """One data centre: the ASP's model on a GPU pool, its site's series and energy assets."""

    name: str
    model: str
    gpu: str | None
    mode: str
    gpus: int
    arrival_share: float
    revenue_per_image: float
    relative_quality: float
    idle_power_w: float | None
    host_overhead: float
    pue_base: float
    pue_slope_per_c: float
    pue_ref_c: float
    timezone: str
    weather: str
    pv_kw: float
    wind_kw: float
    battery_kwh: float
    battery_kw: float
    eta_charge: float
    eta_discharge: float
    soc_min: float
    soc_max: float
    soc_init: float
    grid_charging: bool
    export_limit_kw: float


@dataclass(frozen=True)
class Jobs:
    """Service levels of the requests: deadlines, minimum quality, how long a job may wait."""

    deadline_base_s: float
    deadline_per_image_s: float
    min_quality: float
    max_wait_slots: int
    queueing_factor: float


@dataclass(frozen=True)
class Money:
    """Penalties, transfer terms and export pricing (revenue per image is per data centre)."""

    currency: str
    penalty_late_per_job: float
    penalty_quality_per_job: float
    penalty_drop_per_job: float
    transfer_cost_per_image: float
    transfer_latency_s: float
    export_price_factor: float


@dataclass(frozen=True)
class Calendar:
    """The days episodes are drawn from, and which of them are held out for evaluation."""

    start: str
    end: str
    eval_stride: int
    eval_offset: int


@dataclass(frozen=True)
class Prices:
    """Which electricity price series the sites use (``traces.prices.site_prices``), and a level that multiplies
    every price (grid import, export, battery settlement): 1 is the series itself; above 1 a stress test in which
    energy weighs ``level`` times more against what an image earns."""

    source: str
    per_site_timezone: bool
    level: float = 1.0


@dataclass(frozen=True)
class Workload:
    """Which arrival model drives the ASPs and by how much it is scaled."""

    source: str
    scale: float
    tenants: int


@dataclass(frozen=True)
class Scenario:
    """A validated scenario; ``to_toml()`` gives it back as a TOML text."""

    name: str
    description: str
    slot_s: int
    slots_per_episode: int
    steps: tuple[int, ...]
    reference_steps: int
    reward_mode: str
    reward_scale: float
    settlement_slots: int
    price_scale: float
    calendar: Calendar
    prices: Prices
    workload: Workload
    jobs: Jobs
    money: Money
    datacenters: tuple[Datacenter, ...]
    source: str = "<dict>"

    @property
    def n_dc(self) -> int:
        return len(self.datacenters)

    def to_dict(self) -> dict[str, Any]:
        """The scenario as TOML-ready nested dicts (the same layout the loader reads)."""
        top = {
            k: v
            for k, v in asdict(self).items()
            if k not in ("calendar", "prices", "workload", "jobs", "money")
        }
        top.pop("datacenters")
        top.pop("source")
        top["steps"] = list(self.steps)
        dcs = [{k: v for k, v in asdict(d).items() if v is not None} for d in self.datacenters]
        return {
            "scenario": top,
            "calendar": asdict(self.calendar),
            "prices": asdict(self.prices),
            "workload": asdict(self.workload),
            "jobs": asdict(self.jobs),
            "money": asdict(self.money),
            "datacenter": dcs,
        }

    def to_toml(self) -> str:
        return dumps_toml(self.to_dict())

    def dump(self, path: str | Path) -> Path:
        """Write the scenario as TOML, atomically (every run records the scenario it used)."""
        return write_text_atomic(path, self.to_toml())


_TOP = {
    "name": _spec(str),
    "description": _spec(str, ""),
    "slot_s": _spec(int, 300, 1, 86400),
    "slots_per_episode": _spec(int, None, 1, 10**6),
    "steps": _spec(list, list(DEFAULT_STEPS)),
    "reference_steps": _spec(int, 30, 1, 10**4),
    "reward_mode": _spec(str, "dense"),
    "reward_scale": _spec(float, REQUIRED, 0.0, _INF),
    "settlement_slots": _spec(int, 12, 1, 10**6),
    "price_scale": _spec(float, 100.0, 1e-9, _INF),
}
_CALENDAR = {
    "start": _spec(str),
    "end": _spec(str),
    "eval_stride": _spec(int, 5, 2, 366),
    "eval_offset": _spec(int, 2, 0, 365),
}
_PRICES = {
    "source": _spec(str, "nl-day-ahead"),
    "per_site_timezone": _spec(bool, False),
    "level": _spec(float, 1.0, 1e-6, 1e6),
}
_WORKLOAD = {
    "source": _spec(str, "gentd26-fit"),
    "scale": _spec(float, 1.0, 0.0, _INF),
    "tenants": _spec(int, 1, 1, 1000),
}
_JOBS = {
    "deadline_base_s": _spec(float, REQUIRED, 0.0, _INF),
    "deadline_per_image_s": _spec(float, 0.0, 0.0, _INF),
    "min_quality": _spec(float, 0.0, 0.0, 1.0),
    "max_wait_slots": _spec(int, 2, 0, 1000),
    "queueing_factor": _spec(float, 1.5, 1.0, 100.0),
}
_MONEY = {
    "currency": _spec(str, "EUR"),
    "penalty_late_per_job": _spec(float, REQUIRED, 0.0, _INF),
    "penalty_quality_per_job": _spec(float, REQUIRED, 0.0, _INF),
    "penalty_drop_per_job": _spec(float, REQUIRED, 0.0, _INF),
    "transfer_cost_per_image": _spec(float, REQUIRED, 0.0, _INF),
    "transfer_latency_s": _spec(float, 0.0, 0.0, _INF),
    "export_price_factor": _spec(float, 0.0, 0.0, 10.0),
}
_DC = {
    "name": _spec(str),
    "model": _spec(str),
    "gpu": _spec(str, None),
    "mode": _spec(str, "eager"),
    "gpus": _spec(int, REQUIRED, 1, 10**6),
    "arrival_share": _spec(float, REQUIRED, 0.0, 1.0),
    "revenue_per_image": _spec(float, REQUIRED, 0.0, _INF),
    "relative_quality": _spec(float, 1.0, 0.0, 1.0),
    "idle_power_w": _spec(float, None, 0.0, 10_000.0),
    "host_overhead": _spec(float, 0.0, 0.0, 10.0),
    "pue_base": _spec(float, 1.2, 1.0, 5.0),
    "pue_slope_per_c": _spec(float, 0.0, 0.0, 1.0),
    "pue_ref_c": _spec(float, 20.0, -50.0, 60.0),
    "timezone": _spec(str, "Europe/Amsterdam"),
    "weather": _spec(str, "greensboro-nc"),  # a traces.renewables.SITES name or a TMY3 path
    "pv_kw": _spec(float, 0.0, 0.0, _INF),
    "wind_kw": _spec(float, 0.0, 0.0, _INF),
    "battery_kwh": _spec(float, 0.0, 0.0, _INF),
    "battery_kw": _spec(float, 0.0, 0.0, _INF),
    "eta_charge": _spec(float, 0.95, 1e-6, 1.0),
    "eta_discharge": _spec(float, 0.95, 1e-6, 1.0),
    "soc_min": _spec(float, 0.1, 0.0, 1.0),
    "soc_max": _spec(float, 0.9, 0.0, 1.0),
    "soc_init": _spec(float, 0.5, 0.0, 1.0),
    "grid_charging": _spec(bool, True),
    "export_limit_kw": _spec(float, _INF, 0.0, _INF),
}


def _fail(source: str, name: str, why: str) -> ScenarioError:
    return ScenarioError(f"{source}: field {name!r} {why}")


def _value(source: str, where: str, name: str, raw: Any, spec: tuple) -> Any:
    kind, _, low, high = spec
    full = f"{where}.{name}" if where else name
    if kind is float and isinstance(raw, int) and not isinstance(raw, bool):
        raw = float(raw)
    if kind is float and isinstance(raw, str) and raw.lower() in ("inf", "+inf"):
        raw = _INF
    if isinstance(raw, bool) != (kind is bool) or not isinstance(raw, kind):
        raise _fail(source, full, f"must be {kind.__name__}, got {type(raw).__name__} {raw!r}")
    if kind in (int, float):
        if kind is float and math.isnan(raw):
            raise _fail(source, full, "must be a number, got nan")
        if not low <= raw <= high:
            raise _fail(source, full, f"must be in [{low}, {high}], got {raw!r}")
    if kind is str and not raw.strip() and spec[1] is REQUIRED:
        raise _fail(source, full, "must not be empty")
    return raw


def _section(source: str, where: str, data: Any, specs: dict[str, tuple]) -> dict[str, Any]:
    """Validate one table against its specs: unknown keys and missing required keys are errors."""
    if not isinstance(data, dict):
        raise _fail(source, where, f"must be a table, got {type(data).__name__}")
    unknown = sorted(set(data) - set(specs))
    if unknown:
        raise _fail(
            source,
            f"{where}.{unknown[0]}" if where else unknown[0],
            f"is unknown (allowed: {', '.join(specs)})",
        )
    out = {}
    for name, spec in specs.items():
        if name in data:
            out[name] = _value(source, where, name, data[name], spec)
        elif spec[1] is REQUIRED:
            raise _fail(source, f"{where}.{name}" if where else name, "is missing")
        else:
            out[name] = spec[1]
    return out


def _int_list(source: str, name: str, values: list, low: int = 1) -> tuple[int, ...]:
    if not values or any(isinstance(v, bool) or not isinstance(v, int) or v < low for v in values):
        raise _fail(source, name, f"must be a non-empty list of integers >= {low}, got {values!r}")
    if list(values) != sorted(set(values)):
        raise _fail(source, name, f"must be strictly increasing, got {values!r}")
    return tuple(values)


def _date(source: str, name: str, text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise _fail(source, name, f"must be an ISO date YYYY-MM-DD, got {text!r}") from None


def _datacenter(source: str, i: int, data: Any) -> Datacenter:
    where = f"datacenter[{i}]"
    d = _section(source, where, data, _DC)
    if d["soc_min"] > d["soc_max"]:
        raise _fail(source, f"{where}.soc_min", f"must not exceed soc_max ({d['soc_min']} > {d['soc_max']})")
    if not d["soc_min"] <= d["soc_init"] <= d["soc_max"]:
        raise _fail(source, f"{where}.soc_init", f"must lie in [soc_min, soc_max], got {d['soc_init']}")
    if d["battery_kwh"] > 0 and d["battery_kw"] <= 0:
        raise _fail(source, f"{where}.battery_kw", "must be positive when battery_kwh is positive")
    return Datacenter(**d)


def _workload(source: str, data: Any) -> Workload:
    return Workload(**_section(source, "workload", data, _WORKLOAD))


def scenario_from_dict(data: Any, source: str = "<dict>") -> Scenario:
    """Validate a parsed TOML document and build the Scenario; raise ScenarioError naming the bad field."""
    if not isinstance(data, dict):
        raise _fail(source, "<root>", "must be a table")
    unknown = sorted(
        set(data) - {"scenario", "calendar", "prices", "workload", "jobs", "money", "datacenter"}
    )
    if unknown:
        raise _fail(source, unknown[0], "is an unknown table")
    for table in ("scenario", "calendar", "jobs", "money", "datacenter"):
        if table not in data:
            raise _fail(source, table, "is missing")
    top = _section(source, "scenario", data["scenario"], _TOP)
    steps = _int_list(source, "scenario.steps", top["steps"])
    if top["reward_mode"] not in REWARD_MODES:
        raise _fail(
            source, "scenario.reward_mode", f"must be one of {REWARD_MODES}, got {top['reward_mode']!r}"
        )
    if 86400 % top["slot_s"]:
        raise _fail(source, "scenario.slot_s", f"must divide a day (86400 s), got {top['slot_s']}")
    if top["slots_per_episode"] is None:
        top["slots_per_episode"] = 86400 // top["slot_s"]
    if top["slots_per_episode"] * top["slot_s"] != 86400:
        raise _fail(
            source, "scenario.slots_per_episode", "must cover exactly one day (slots_per_episode * slot_s)"
        )
    cal = Calendar(**_section(source, "calendar", data["calendar"], _CALENDAR))
    start, end = _date(source, "calendar.start", cal.start), _date(source, "calendar.end", cal.end)
    if (end - start).days + 1 < cal.eval_stride:
        raise _fail(source, "calendar.end", f"leaves fewer days than eval_stride ({cal.eval_stride})")
    if cal.eval_offset >= cal.eval_stride:
        raise _fail(source, "calendar.eval_offset", f"must be below eval_stride ({cal.eval_stride})")
    dcs_raw = data["datacenter"]
    if not isinstance(dcs_raw, list) or not dcs_raw:
        raise _fail(source, "datacenter", "must be a non-empty array of tables ([[datacenter]])")
    dcs = tuple(_datacenter(source, i, d) for i, d in enumerate(dcs_raw))
    names = [d.name for d in dcs]
    if len(set(names)) != len(names):
        raise _fail(source, "datacenter.name", f"must be unique, got {names}")
    shares = sum(d.arrival_share for d in dcs)
    if not math.isclose(shares, 1.0, abs_tol=1e-6):
        raise _fail(source, "datacenter.arrival_share", f"must sum to 1 over the data centres, got {shares}")
    top["steps"] = steps
    return Scenario(
        **top,
        calendar=cal,
        prices=Prices(**_section(source, "prices", data.get("prices", {}), _PRICES)),
        workload=_workload(source, data.get("workload", {})),
        jobs=Jobs(**_section(source, "jobs", data["jobs"], _JOBS)),
        money=Money(**_section(source, "money", data["money"], _MONEY)),
        datacenters=dcs,
        source=source,
    )


def scenario_path(name_or_path: str | Path) -> Path:
    """A bundled scenario by name (``"default"``, ``"tiny"``) or a TOML file by path."""
    text = str(name_or_path)
    path = Path(text)
    if path.suffix != ".toml" and "/" not in text:
        path = SCENARIO_DIR / f"{text}.toml"
    if not path.is_file():
        have = ", ".join(p.stem for p in sorted(SCENARIO_DIR.glob("*.toml")))
        raise ScenarioError(f"{path}: no such scenario (bundled: {have})")
    return path


def load_scenario(name_or_path: str | Path | Scenario) -> Scenario:
    """Read and validate a scenario (a Scenario passes through unchanged)."""
    if isinstance(name_or_path, Scenario):
        return name_or_path
    path = scenario_path(name_or_path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{path}: not valid TOML ({exc})") from None
    return scenario_from_dict(data, str(path))


def with_overrides(scenario: Scenario, **top: Any) -> Scenario:
    """A copy with top-level fields replaced, validated again (e.g. ``reward_mode="sparse"``)."""
    data = scenario.to_dict()
    allowed = {f.name for f in fields(Scenario)} & set(_TOP)
    for name, value in top.items():
        if name not in allowed:
            raise _fail(scenario.source, f"scenario.{name}", "cannot be overridden (unknown field)")
        data["scenario"][name] = list(value) if isinstance(value, tuple) else value
    return scenario_from_dict(data, scenario.source)


# --- a small TOML writer for the plain types scenarios use (tomllib only reads) -----------------------------


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def dumps_toml(doc: dict[str, Any]) -> str:
    """TOML text for a dict of tables (dicts) and arrays of tables (lists of dicts) of plain values."""
    lines: list[str] = []
    for table, body in doc.items():
        rows = body if isinstance(body, list) else [body]
        for row in rows:
            lines.append(f"[[{table}]]" if isinstance(body, list) else f"[{table}]")
            lines.extend(f"{k} = {_toml_value(v)}" for k, v in row.items())
            lines.append("")
    return "\n".join(lines)
