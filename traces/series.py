"""One cleaning and validation path for every exogenous time series the traces layer reads: timestamps to
tz-aware UTC (DST resolved), duplicates, NaNs, short gaps, regular frequency and unit ranges, with a report.

``clean_series(timestamps, values, source=..., name=...) -> (pd.Series, CleanReport)``. What it repairs, it
counts in the report; what it cannot repair raises ``SeriesError`` naming the file and its line (line 1 is
the header, so the first data row is line 2 unless the caller passes its own ``lines``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

#: Cell texts read as "no value" (exports write missing prices as "-", "N/A", ...).
NA_TOKENS = frozenset({"", "-", "n/a", "na", "nan", "null", "none", "n/e"})


class SeriesError(ValueError):
    """A series that cannot be repaired: the message names the file, the line and the problem."""


@dataclass(frozen=True)
class CleanReport:
    """What ``clean_series`` read and repaired (counts of rows or time steps)."""

    source: str
    rows_read: int
    blank_rows_dropped: int  # rows without a timestamp (e.g. a separator row between joined parts)
    dst_ambiguous_resolved: int  # local times at a fall-back hour, resolved by flag or file order
    dst_nonexistent_dropped: int  # local times inside a spring-forward hour: no real instant, dropped
    duplicates_dropped: int  # exact repeats of an earlier (timestamp, value), first kept
    reordered: bool  # rows were not in time order
    missing_filled: int  # time steps absent from the file, interpolated
    nan_filled: int  # time steps present with no value, interpolated
    edge_steps_trimmed: int  # steps without value at either end (nothing to interpolate from), cut
    negative_values: int  # kept: negative prices are real
    n: int
    start: str
    end: str
    freq: str

    def as_dict(self) -> dict:
        return asdict(self)


def _fail(source: str, line: int | None, msg: str) -> SeriesError:
    where = f"{source}: line {line}" if line is not None else source
    return SeriesError(f"{where}: {msg}")


def parse_values(values: pd.Series, lines: np.ndarray, source: str) -> np.ndarray:
    """Numbers from a column; NA tokens become NaN, anything else that is not a number is an error."""
    raw = pd.Series(values).reset_index(drop=True)
    num = pd.to_numeric(raw, errors="coerce")
    text = raw.astype("string").str.strip().str.lower()
    bad = num.isna() & raw.notna() & ~text.isin(NA_TOKENS).fillna(True)
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise _fail(source, int(lines[i]), f"value {raw.iloc[i]!r} is not a number")
    return num.to_numpy(dtype=float)


def _parse_text(raw: pd.Series, formats: Sequence[str | None]) -> tuple[pd.Series, pd.Series]:
    """Try each format on the rows still unparsed: (aware results in UTC, naive results)."""
    aware = pd.Series(pd.NaT, index=raw.index, dtype="datetime64[ns, UTC]")
    naive = pd.Series(pd.NaT, index=raw.index, dtype="datetime64[ns]")
    for fmt in formats:
        todo = aware.isna() & naive.isna()
        if not todo.any():
            break
        try:
            got = pd.to_datetime(raw[todo], format=fmt, errors="coerce")
        except ValueError:  # mixed UTC offsets: only an aware parse can hold them
            got = pd.to_datetime(raw[todo], format=fmt, errors="coerce", utc=True)
        if isinstance(got.dtype, pd.DatetimeTZDtype):
            aware[todo] = got.dt.tz_convert("UTC").astype("datetime64[ns, UTC]")
        else:
            naive[todo] = got.astype("datetime64[ns]")
    return aware, naive


def _localise(
    naive: pd.DatetimeIndex, tz: str, ambiguous: np.ndarray | None
) -> tuple[pd.DatetimeIndex, int, np.ndarray]:
    """Local wall times to UTC. Returns the index, how many fall-back times were resolved, and a mask of
    the rows whose local time does not exist (inside a spring-forward hour)."""
    if tz.upper() == "UTC":
        return naive.tz_localize("UTC"), 0, np.zeros(len(naive), bool)
    if ambiguous is None:  # file order: the first of two equal wall times is summer time (DST)
        ambiguous = ~naive.duplicated(keep="first")
    probe = naive.tz_localize(tz, ambiguous="NaT", nonexistent="NaT")
    gone = np.asarray(naive.tz_localize(tz, ambiguous=True, nonexistent="NaT").isna())
    n_amb = int((probe.isna() & ~gone).sum())
    local = naive.tz_localize(tz, ambiguous=np.asarray(ambiguous, bool), nonexistent="NaT")
    return local.tz_convert("UTC"), n_amb, gone


def parse_timestamps(
    timestamps: pd.Series,
    lines: np.ndarray,
    source: str,
    tz: str = "UTC",
    formats: Sequence[str | None] | None = None,
    ambiguous: np.ndarray | None = None,
) -> tuple[pd.DatetimeIndex, int, np.ndarray]:
    """Parse non-blank timestamps to a UTC index (see ``_localise`` for the other two results)."""
    raw = pd.Series(timestamps).reset_index(drop=True)
    if isinstance(raw.dtype, pd.DatetimeTZDtype):
        return pd.DatetimeIndex(raw).tz_convert("UTC").as_unit("ns"), 0, np.zeros(len(raw), bool)
    if pd.api.types.is_datetime64_any_dtype(raw.dtype):
        aware, naive = pd.Series(pd.NaT, index=raw.index, dtype="datetime64[ns, UTC]"), raw
    else:
        aware, naive = _parse_text(raw.astype("string").str.strip(), list(formats or [None]))
    failed = np.flatnonzero((aware.isna() & naive.isna()).to_numpy())
    if len(failed):
        raise _fail(source, int(lines[failed[0]]), f"cannot parse timestamp {raw.iloc[failed[0]]!r}")
    if aware.notna().all():
        return pd.DatetimeIndex(aware).tz_convert("UTC").as_unit("ns"), 0, np.zeros(len(raw), bool)
    if aware.notna().any():  # some rows carried an offset, some did not: no single reading is safe
        i = int(np.flatnonzero(aware.notna().to_numpy())[0])
        raise _fail(source, int(lines[i]), "timestamps mix UTC offsets and local wall times")
    return _localise(pd.DatetimeIndex(naive).as_unit("ns"), tz, ambiguous)


def _drop_duplicates(t: pd.DatetimeIndex, v: np.ndarray, lines: np.ndarray, source: str) -> np.ndarray:
    """Mask of rows to keep; a timestamp repeated with a different value is an error."""
    codes, _ = pd.factorize(t)
    _, first = np.unique(codes, return_index=True)
    ref = v[first[codes]]
    same = np.isclose(v, ref, rtol=0, atol=1e-9) | (np.isnan(v) & np.isnan(ref))
    if not same.all():
        i = int(np.flatnonzero(~same)[0])
        j = int(first[codes[i]])
        raise _fail(source, int(lines[i]), f"timestamp {t[i]} repeats line {lines[j]} with another value "
                    f"({v[j]} vs {v[i]})")  # fmt: skip
    return ~np.asarray(t.duplicated(keep="first"))


def infer_step(t: pd.DatetimeIndex, source: str) -> pd.Timedelta:
    """The most common spacing of a sorted, duplicate-free index."""
    if len(t) < 2:
        raise _fail(source, None, f"needs at least 2 timestamps to know its frequency, has {len(t)}")
    diffs = pd.Series(np.diff(t.asi8))
    return pd.Timedelta(int(diffs.mode().iloc[0]), unit="ns")


def _check_grid(t: pd.DatetimeIndex, step: pd.Timedelta, lines: np.ndarray, source: str) -> None:
    off = (t.asi8 - t.asi8[0]) % step.value
    if off.any():
        i = int(np.flatnonzero(off)[0])
        raise _fail(source, int(lines[i]), f"timestamp {t[i]} is off the regular {step} grid")


def check_values(
    v: np.ndarray, lines: np.ndarray, source: str, name: str, rng: tuple[float, float], allow_nan: bool = True
) -> None:
    """Raise ``SeriesError`` naming the first line whose value is outside ``rng`` (or NaN, if not allowed)."""
    v = np.asarray(v, dtype=float)
    if not allow_nan and np.isnan(v).any():
        i = int(np.flatnonzero(np.isnan(v))[0])
        raise _fail(source, int(lines[i]), f"{name} is missing")
    lo, hi = rng
    bad = ~np.isnan(v) & ((v < lo) | (v > hi))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise _fail(
            source,
            int(lines[i]),
            f"{name} = {v[i]} outside the plausible range [{lo}, {hi}] (wrong unit or column?)",
        )


def _fill_gaps(s: pd.Series, max_gap_steps: int, source: str, line_of: pd.Series) -> tuple[pd.Series, int]:
    """Trim value-less ends, then interpolate inner runs of NaN up to ``max_gap_steps`` long."""
    valid = s.notna().to_numpy()
    if not valid.any():
        raise _fail(source, None, "has no values")
    first, last = int(valid.argmax()), len(s) - int(valid[::-1].argmax())
    trimmed = len(s) - (last - first)
    s = s.iloc[first:last]
    isna = s.isna().to_numpy()
    if isna.any():
        run_id = np.cumsum(~isna)
        runs = pd.Series(run_id[isna]).value_counts()
        if runs.max() > max_gap_steps:
            rid = int(runs.idxmax())
            pos = np.flatnonzero(isna & (run_id == rid))
            before = line_of.iloc[: first + pos[0]].dropna()
            line = int(before.iloc[-1]) if len(before) else None
            raise _fail(
                source,
                line,
                f"gap of {len(pos)} steps from {s.index[pos[0]]} to {s.index[pos[-1]]} "
                f"is longer than the {max_gap_steps} steps that may be interpolated",
            )
        s = s.interpolate(method="linear", limit_area="inside")
    return s, trimmed


def clean_series(
    timestamps: pd.Series,
    values: pd.Series,
    *,
    source: str,
    name: str,
    tz: str = "UTC",
    formats: Sequence[str | None] | None = None,
    freq: str | pd.Timedelta | None = None,
    valid_range: tuple[float, float] | None = None,
    max_gap_steps: int = 3,
    ambiguous: np.ndarray | None = None,
    lines: np.ndarray | None = None,
) -> tuple[pd.Series, CleanReport]:
    """Clean one series: ``tz`` is the zone of naive timestamps (aware ones are converted), ``formats`` are
    tried in order, ``ambiguous`` (True = summer time) resolves fall-back hours (default: file order),
    ``freq`` defaults to the most common spacing, ``valid_range`` bounds raw values (unit check)."""
    lines = np.arange(len(timestamps)) + 2 if lines is None else np.asarray(lines)
    ts = pd.Series(timestamps).reset_index(drop=True)
    text = ts.astype("string").str.strip()
    keep = (ts.notna() & text.notna() & text.ne("")).to_numpy()
    v = parse_values(pd.Series(values).reset_index(drop=True)[keep], lines[keep], source)
    lines_k = lines[keep]
    amb = None if ambiguous is None else np.asarray(ambiguous)[keep]
    t, n_amb, gone = parse_timestamps(ts[keep], lines_k, source, tz, formats, amb)
    t, v, lines_k = t[~gone], v[~gone], lines_k[~gone]
    if len(t) == 0:
        raise _fail(source, None, "has no rows with a timestamp")
    if valid_range is not None:
        check_values(v, lines_k, source, name, valid_range)
    order = np.argsort(t.asi8, kind="stable")
    reordered = bool((order != np.arange(len(order))).any())
    t, v, lines_k = t[order], v[order], lines_k[order]
    uniq = _drop_duplicates(t, v, lines_k, source)
    t, v, lines_k = t[uniq], v[uniq], lines_k[uniq]
    step = pd.Timedelta(freq) if freq is not None else infer_step(t, source)
    _check_grid(t, step, lines_k, source)
    grid = pd.date_range(t[0], t[-1], freq=step)
    s = pd.Series(v, index=t).reindex(grid)
    line_of = pd.Series(lines_k.astype(float), index=t).reindex(grid)
    n_missing, n_nan = len(grid) - len(t), int(np.isnan(v).sum())
    s, trimmed = _fill_gaps(s, max_gap_steps, source, line_of)
    s.index.freq = step
    s.name = name
    report = CleanReport(
        source=source, rows_read=len(ts), blank_rows_dropped=int((~keep).sum()),
        dst_ambiguous_resolved=n_amb, dst_nonexistent_dropped=int(gone.sum()),
        duplicates_dropped=int((~uniq).sum()), reordered=reordered, missing_filled=n_missing,
        nan_filled=n_nan - trimmed, edge_steps_trimmed=trimmed,
        negative_values=int((s < 0).sum()), n=len(s), start=str(s.index[0]), end=str(s.index[-1]),
        freq=str(step),
    )  # fmt: skip
    return s, report
