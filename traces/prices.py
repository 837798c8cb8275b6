"""Electricity prices for the twin: the embedded Netherlands day-ahead series (from the ev2gym wheel) and
readers for the usual market exports (tidy CSV, ERCOT, PJM, CAISO, ENTSO-E), cleaned to UTC series.

API (every result is indexed by a tz-aware UTC ``DatetimeIndex`` with a regular ``freq``; a ``Series``'s
name says its unit, e.g. ``price_eur_per_mwh``; ``attrs`` carry source, format, node, currency, cleaning report):

- ``load_prices(source="nl-day-ahead" | path, start=None, end=None, *, fmt=None, node=None, tz=None,
  currency=None, max_gap_steps=3) -> pd.Series`` — one node or zone.
- ``load_price_nodes(source, start=None, end=None, *, fmt=None, nodes=None, ...) -> pd.DataFrame`` — one
  column per node of a multi-node file (ERCOT / PJM / CAISO), on their common time span.
- ``site_prices(sites, source="nl-day-ahead", start=None, end=None, *, nodes=None, timezones=None, ...)
  -> pd.DataFrame`` — one column per data centre; ``attrs["derivation"]`` says per site what was done.
- ``detect_format(columns) -> str`` and ``FORMATS``.

Formats (``fmt``; detected from the header when omitted):
``nl-day-ahead`` ev2gym's ``Netherlands_day-ahead-2015-2024.csv`` (UTC column, EUR/MWh);
``tidy`` a timestamp column (``timestamp``/``time``/``datetime``/``date``, else the first) and a price column
(first containing ``price``, else the second), optional ``node``/``zone`` column, naive times read in ``tz``
(default UTC), currency from a ``price_<cur>_per_mwh`` header or ``currency=``;
``ercot`` DAM settlement point prices (Delivery Date, Hour Ending 01:00..24:00, Repeated Hour Flag,
Settlement Point, Settlement Point Price; US/Central; the flagged repeat is the standard-time hour);
``pjm`` Data Miner LMP (datetime_beginning_utc, else _ept in US/Eastern; pnode_name; total_lmp_da);
``caiso`` OASIS LMP (INTERVALSTARTTIME_GMT, NODE, LMP_TYPE = LMP rows, MW holds $/MWh);
``entsoe`` transparency day-ahead ("MTU (CET/CEST)" start of "dd.mm.yyyy HH:MM - ..." or of the newer
"dd/mm/yyyy HH:MM:SS - ...", optional "(CET)" / "(CEST)" marks at the fall-back hour, "Day-ahead Price
[EUR/MWh]" or "(EUR/MWh)", zone from a "BZN|<zone>" header or an "Area" column; 15-minute MTUs work too).

Negative prices are real and kept. Raw values outside ``PRICE_RANGE_PER_MWH`` are an error (unit check).
"""

from __future__ import annotations

import functools
import importlib.util
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from traces.series import SeriesError, clean_series

#: The embedded default: NL day-ahead prices shipped inside the ev2gym wheel (MIT), 2015-01 .. 2025-01.
NL_DAY_AHEAD = "nl-day-ahead"
NL_FILE = "Netherlands_day-ahead-2015-2024.csv"
NL_ZONE_TZ = "Europe/Amsterdam"

#: Assumption: a plausibility band per MWh wide enough for every market cap we know of (SDAC day-ahead
#: harmonised limits -500..+4000 EUR/MWh; ERCOT's offer cap $5000/MWh) and narrow enough to catch a
#: file in per-kWh or a wrong column. Not a market rule.
PRICE_RANGE_PER_MWH = (-1000.0, 10000.0)

FORMATS = ("nl-day-ahead", "tidy", "ercot", "pjm", "caiso", "entsoe")


class PriceFormatError(SeriesError):
    """A price source whose format, node or content cannot be read (message names the file)."""


@dataclass
class _Long:
    """A price file read into long form, before cleaning: one row per (node, timestamp)."""

    fmt: str
    node: pd.Series
    ts: pd.Series
    value: pd.Series
    lines: np.ndarray
    tz: str = "UTC"
    formats: list[str | None] = field(default_factory=lambda: [None])
    currency: str | None = None
    ambiguous: np.ndarray | None = None


def ev2gym_prices_path() -> Path:
    """The NL day-ahead CSV inside the installed ev2gym package, found without importing ev2gym."""
    spec = importlib.util.find_spec("ev2gym")
    if spec is None or not spec.submodule_search_locations:
        raise PriceFormatError("nl-day-ahead: package ev2gym (a dependency) is not installed")
    for folder in spec.submodule_search_locations:
        path = Path(folder) / "data" / NL_FILE
        if path.is_file():
            return path
    raise PriceFormatError(f"nl-day-ahead: ev2gym is installed but has no data/{NL_FILE}")


def detect_format(columns: Sequence[str]) -> str:
    """The export format a header belongs to; raises ``PriceFormatError`` when none fits."""
    cols = {str(c).strip() for c in columns}
    low = {c.lower() for c in cols}
    if {"Datetime (UTC)", "Price (EUR/MWhe)"} <= cols:
        return "nl-day-ahead"
    if {"Delivery Date", "Hour Ending", "Settlement Point Price"} <= cols:
        return "ercot"
    if "total_lmp_da" in low and low & {"datetime_beginning_utc", "datetime_beginning_ept"}:
        return "pjm"
    if {"intervalstarttime_gmt", "mw"} <= low:
        return "caiso"
    if any(c.startswith("MTU") for c in cols) and any("day-ahead price" in c for c in low):
        return "entsoe"
    if _tidy_columns(list(cols)) is not None:
        return "tidy"
    raise PriceFormatError(f"unknown price format: header {sorted(cols)} matches none of {FORMATS}")


def _col(df: pd.DataFrame, *names: str) -> str | None:
    low = {c.lower(): c for c in df.columns}
    return next((low[n.lower()] for n in names if n.lower() in low), None)


def _lines(df: pd.DataFrame) -> np.ndarray:
    return df.index.to_numpy() + 2  # header is line 1


def _tidy_columns(cols: list[str]) -> tuple[str, str] | None:
    names = ("timestamp", "time", "datetime", "date", "ts", "datetime_utc", "timestamp_utc")
    t = next((c for c in cols if c.lower() in names), None)
    p = next((c for c in cols if "price" in c.lower() or "lmp" in c.lower()), None)
    if t is None and p is None and len(cols) == 2:
        return cols[0], cols[1]
    return (t, p) if t is not None and p is not None else None


def _read_nl(df: pd.DataFrame) -> _Long:
    return _Long("nl-day-ahead", pd.Series("NL", index=df.index), df["Datetime (UTC)"], df["Price (EUR/MWhe)"],
                 _lines(df), "UTC", ["%Y-%m-%d %H:%M:%S", "%d/%m/%Y %H:%M"], "EUR")  # fmt: skip


def _read_tidy(df: pd.DataFrame, tz: str | None, currency: str | None) -> _Long:
    t, p = _tidy_columns(list(df.columns)) or (df.columns[0], df.columns[1])
    node_col = _col(df, "node", "zone", "site", "settlement_point")
    node = df[node_col] if node_col else pd.Series("price", index=df.index)
    cur = currency or (
        m.group(1).upper() if (m := re.fullmatch(r"price_(\w+?)_per_mwh", p.lower())) else None
    )
    return _Long("tidy", node, df[t], df[p], _lines(df), tz or "UTC", [None], cur)


def _read_ercot(df: pd.DataFrame) -> _Long:
    node_col = _col(df, "Settlement Point", "Settlement Point Name", "SettlementPoint")
    if node_col is None:
        raise PriceFormatError("ercot: no Settlement Point column")
    day = pd.to_datetime(df["Delivery Date"], format="%m/%d/%Y", errors="coerce")
    hour = pd.to_numeric(df["Hour Ending"].astype("string").str.extract(r"^\s*(\d{1,2})", expand=False),
                         errors="coerce")  # fmt: skip
    hour = hour.where(hour.between(1, 24))
    start = day + pd.to_timedelta(hour - 1, unit="h")  # hour ending 01:00 is the hour starting 00:00
    raw = df["Delivery Date"].astype("string") + " HE " + df["Hour Ending"].astype("string")
    ts = start.dt.strftime("%Y-%m-%d %H:%M").where(start.notna(), raw)  # keep the raw text for the error
    flag_col = _col(df, "Repeated Hour Flag", "DSTFlag")
    amb = None if flag_col is None else (df[flag_col].astype("string").str.upper() != "Y").to_numpy()
    return _Long("ercot", df[node_col], ts, df["Settlement Point Price"], _lines(df), "America/Chicago",
                 ["%Y-%m-%d %H:%M"], "USD", amb)  # fmt: skip


def _read_pjm(df: pd.DataFrame) -> _Long:
    utc, ept = _col(df, "datetime_beginning_utc"), _col(df, "datetime_beginning_ept")
    node_col = _col(df, "pnode_name", "pnode_id")
    node = df[node_col] if node_col else pd.Series("pjm", index=df.index)
    fmts = ["%m/%d/%Y %I:%M:%S %p", None]
    ts, tz = (df[utc], "UTC") if utc else (df[ept], "America/New_York")
    return _Long("pjm", node, ts, df[_col(df, "total_lmp_da")], _lines(df), tz, fmts, "USD")


def _read_caiso(df: pd.DataFrame) -> _Long:
    typ = _col(df, "LMP_TYPE", "XML_DATA_ITEM")
    if typ is not None:
        df = df[df[typ].astype("string").str.upper().isin(["LMP", "LMP_PRC"])]
    node_col = _col(df, "NODE", "NODE_ID", "NODE_ID_XML")
    node = df[node_col] if node_col else pd.Series("caiso", index=df.index)
    return _Long("caiso", node, df[_col(df, "INTERVALSTARTTIME_GMT")], df[_col(df, "MW")], _lines(df), "UTC",
                 [None], "USD")  # fmt: skip


def _read_entsoe(df: pd.DataFrame) -> _Long:
    mtu = next(c for c in df.columns if str(c).startswith("MTU"))
    price = next(c for c in df.columns if "day-ahead price" in str(c).lower())
    start = df[mtu].astype("string").str.split(" - ").str[0].str.strip()
    mark = df[mtu].astype("string").str.extract(r"\((CEST|CET)\)\s*$", expand=False)
    amb = None if mark.isna().all() else mark.ne("CET").fillna(True).to_numpy()
    cur = m.group(1) if (m := re.search(r"[\[(](\w+)/MWh[\])]", str(price))) else None
    zone = next((str(c).split("|", 1)[1] for c in df.columns if str(c).startswith("BZN|")), "entsoe")
    node = df["Area"].astype("string").str.replace("BZN|", "", regex=False) if "Area" in df.columns else None
    node = pd.Series(zone, index=df.index) if node is None else node
    if "Sequence" in df.columns and df["Sequence"].nunique() > 1:  # several auctions: keep them apart
        node = node + "/" + df["Sequence"].astype("string")
    return _Long("entsoe", node, start, df[price], _lines(df), "Europe/Brussels",
                 ["%d.%m.%Y %H:%M", "%d/%m/%Y %H:%M:%S", "%d/%m/%Y %H:%M"], cur, amb)  # fmt: skip


def _read_long(path: Path, fmt: str | None, tz: str | None, currency: str | None) -> _Long:
    """Read (cached per file version: the twin and site_prices read the same file several times)."""
    stat = path.stat()
    return _read_long_cached(path.resolve(), stat.st_mtime_ns, stat.st_size, fmt, tz, currency)


@functools.lru_cache(maxsize=8)
def _read_long_cached(path: Path, _mtime: int, _size: int, fmt: str | None, tz: str | None,
                      currency: str | None) -> _Long:  # fmt: skip
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except (OSError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise PriceFormatError(f"{path}: cannot read as CSV ({exc.__class__.__name__}: {exc})") from None
    df.columns = [str(c).strip() for c in df.columns]
    if len(df) == 0:
        raise PriceFormatError(f"{path}: no data rows")
    fmt = fmt or detect_format(df.columns)
    readers = {"nl-day-ahead": _read_nl, "ercot": _read_ercot, "pjm": _read_pjm, "caiso": _read_caiso,
               "entsoe": _read_entsoe}  # fmt: skip
    if fmt == "tidy":
        long = _read_tidy(df, tz, currency)
    elif fmt in readers:
        long = readers[fmt](df)
        long.tz, long.currency = tz or long.tz, currency or long.currency
    else:
        raise PriceFormatError(f"{path}: unknown format {fmt!r}; known: {', '.join(FORMATS)}")
    return long


def _resolve(source: str | Path) -> Path:
    if str(source) == NL_DAY_AHEAD:
        return ev2gym_prices_path()
    path = Path(source)
    if not path.is_file():
        raise PriceFormatError(
            f"price source {str(source)!r} is neither {NL_DAY_AHEAD!r} nor an existing file"
        )
    return path


def _series_name(currency: str | None) -> str:
    return f"price_{currency.lower()}_per_mwh" if currency else "price_per_mwh"


def _clean_node(long: _Long, node: str, path: Path, max_gap_steps: int) -> pd.Series:
    sel = (long.node.astype("string") == node).to_numpy()
    amb = None if long.ambiguous is None else long.ambiguous[sel]
    s, report = clean_series(
        long.ts[sel], long.value[sel], source=str(path), name=_series_name(long.currency), tz=long.tz,
        formats=long.formats, valid_range=PRICE_RANGE_PER_MWH, max_gap_steps=max_gap_steps, ambiguous=amb,
        lines=long.lines[sel],
    )  # fmt: skip
    if len(s) >= 24 and s.abs().quantile(0.95) < 2.0:  # real per-MWh prices are never all this small
        raise PriceFormatError(f"{path}: node {node}: 95% of |price| < 2: looks like per-kWh, not per-MWh")
    s.attrs = {"source": str(path), "format": long.fmt, "node": node, "currency": long.currency,
               "unit": f"{long.currency or '?'}/MWh", "report": report.as_dict()}  # fmt: skip
    return s


def _bound(value) -> pd.Timestamp | None:
    try:
        return None if value is None else pd.Timestamp(value)
    except ValueError:
        raise PriceFormatError(f"cannot read {value!r} as a time bound") from None


def _window(obj, start, end, what: str):
    lo, hi = _bound(start), _bound(end)
    lo = lo.tz_localize("UTC") if lo is not None and lo.tz is None else lo
    hi = hi.tz_localize("UTC") if hi is not None and hi.tz is None else hi
    mask = np.ones(len(obj), bool)
    if lo is not None:
        mask &= obj.index >= lo
    if hi is not None:
        mask &= obj.index < hi
    out = obj[mask]
    if len(out) == 0:
        raise PriceFormatError(
            f"{what}: no prices in [{start}, {end}) (data covers {obj.index[0]} .. {obj.index[-1]})"
        )
    out.attrs = dict(obj.attrs)
    return out


def _node_names(long: _Long) -> list[str]:
    return sorted(long.node.dropna().astype("string").unique().tolist())


def load_prices(
    source: str | Path = NL_DAY_AHEAD,
    start: str | pd.Timestamp | None = None,
    end: str | pd.Timestamp | None = None,
    *,
    fmt: str | None = None,
    node: str | None = None,
    tz: str | None = None,
    currency: str | None = None,
    max_gap_steps: int = 3,
) -> pd.Series:
    """One cleaned price series in ``[start, end)`` (naive bounds are UTC). ``node`` picks a node or zone of
    a multi-node file; ``tz`` overrides the zone of naive timestamps; ``currency`` names the unit."""
    path = _resolve(source)
    long = _read_long(path, fmt, tz, currency)
    names = _node_names(long)
    if node is None and len(names) > 1:
        raise PriceFormatError(
            f"{path}: holds {len(names)} nodes, pick one with node=: {', '.join(names[:10])}"
        )
    node = node if node is not None else names[0]
    if node not in names:
        raise PriceFormatError(f"{path}: no node {node!r}; it holds: {', '.join(names[:10])}")
    return _window(_clean_node(long, node, path, max_gap_steps), start, end, str(path))


def load_price_nodes(
    source: str | Path,
    start: str | pd.Timestamp | None = None,
    end: str | pd.Timestamp | None = None,
    *,
    fmt: str | None = None,
    nodes: Sequence[str] | None = None,
    tz: str | None = None,
    currency: str | None = None,
    max_gap_steps: int = 3,
) -> pd.DataFrame:
    """One column per node (all, or ``nodes``) on the span every node covers; ``attrs["reports"]``."""
    path = _resolve(source)
    long = _read_long(path, fmt, tz, currency)
    names = _node_names(long)
    missing = [n for n in (nodes or []) if n not in names]
    if missing:
        raise PriceFormatError(f"{path}: no node(s) {missing}; it holds: {', '.join(names[:10])}")
    series = {n: _clean_node(long, n, path, max_gap_steps) for n in (nodes or names)}
    frame = pd.DataFrame(series).dropna()
    if frame.empty:
        raise PriceFormatError(f"{path}: the nodes share no common time span")
    frame = frame.asfreq(next(iter(series.values())).index.freq)
    frame.attrs = {"source": str(path), "format": long.fmt, "currency": long.currency,
                   "unit": f"{long.currency or '?'}/MWh",
                   "reports": {n: s.attrs["report"] for n, s in series.items()}}  # fmt: skip
    return _window(frame, start, end, str(path))


def _std_offset(tz: str) -> pd.Timedelta:
    """A zone's standard (winter) UTC offset, taken on 2021-01-15 (northern-hemisphere winter)."""
    try:
        return pd.Timestamp("2021-01-15 12:00", tz=tz).utcoffset()
    except Exception as exc:  # pytz/zoneinfo raise different types for an unknown zone
        raise PriceFormatError(f"unknown time zone {tz!r}") from exc


def _shifted_sites(base: pd.Series, sites: Sequence[str], timezones: Mapping[str, str], ref_tz: str):
    step = base.index.freq or pd.Timedelta(base.index[1] - base.index[0])
    cols, how = {}, {}
    for site in sites:
        if site not in timezones:
            raise PriceFormatError(f"site_prices: no time zone for site {site!r} (timezones=)")
        exact = _std_offset(ref_tz) - _std_offset(timezones[site])
        lag = pd.Timedelta(round(exact / step) * step)
        shifted = base.copy()
        shifted.index = base.index + lag
        cols[site] = shifted
        note = "" if lag == exact else f" (offset {exact} rounded to the {step} step)"
        how[site] = (f"{base.attrs.get('node')} series of {base.attrs.get('source')} shifted by {lag}: the same "
                     f"local-time price shape in {timezones[site]} as in {ref_tz} (standard-time offsets, DST "
                     f"not followed){note}; not a market price of that location")  # fmt: skip
    return cols, how


def site_prices(
    sites: Sequence[str],
    source: str | Path = NL_DAY_AHEAD,
    start: str | pd.Timestamp | None = None,
    end: str | pd.Timestamp | None = None,
    *,
    nodes: Mapping[str, str] | None = None,
    timezones: Mapping[str, str] | None = None,
    source_tz: str = NL_ZONE_TZ,
    fmt: str | None = None,
    max_gap_steps: int = 3,
) -> pd.DataFrame:
    """Per-site price columns, derived honestly and recorded in ``attrs["derivation"][site]``:

    - a multi-node source (ERCOT, PJM, CAISO, a tidy file with a node column): each site gets the real
      locational series of ``nodes[site]`` (default: the node named like the site);
    - a single series with ``timezones`` (site -> IANA zone): ``p_site(t) = p(t - lag)`` with lag = standard
      offset of ``source_tz`` minus the site's, i.e. the same local-time shape at a different UTC time;
    - a single series without ``timezones``: the same series for every site.

    The frame covers the span all columns share. No price number is invented or rescaled.
    """
    if not sites:
        raise PriceFormatError("site_prices: needs at least one site")
    path = _resolve(source)
    names = _node_names(_read_long(path, fmt, None, None))
    if len(names) > 1 or nodes:
        node_of = {s: (nodes or {}).get(s, s) for s in sites}
        table = load_price_nodes(
            path, fmt=fmt, nodes=sorted(set(node_of.values())), max_gap_steps=max_gap_steps
        )
        frame = pd.DataFrame({s: table[n] for s, n in node_of.items()})
        how = {s: f"real locational series of node {n} in {path}" for s, n in node_of.items()}
        attrs = {k: table.attrs[k] for k in ("source", "format", "currency", "unit")}
    else:
        base = load_prices(path, fmt=fmt, max_gap_steps=max_gap_steps)
        attrs = {k: base.attrs[k] for k in ("source", "format", "currency", "unit")}
        if timezones:
            cols, how = _shifted_sites(base, sites, timezones, source_tz)
            frame = pd.DataFrame(cols).dropna()
        else:
            frame = pd.DataFrame({s: base for s in sites})
            how = {s: f"identical {base.attrs['node']} series of {path} (one zone only)" for s in sites}
        frame = frame.asfreq(base.index.freq)
    frame.attrs = {**attrs, "derivation": how}
    return _window(frame, start, end, str(path))
