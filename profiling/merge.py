"""Merge traces measured elsewhere into the committed ones: ``python -m profiling.merge SRC... [--into DIR]``.

Each device call starts from the committed working tree, so a session that chains calls (the machine stays warm
only seconds between them) gets back several archives, each holding the committed rows plus that call's new ones.
This folds them in. A source is a folder laid out ``<gpu>/<model>.csv`` (+ ``.json`` sidecar) or a ``.tar.gz`` as
``scripts/gpu_sweep.sh`` packs one. Rows are keyed by ``traces.profile_schema.KEY_COLUMNS``: a point already in
the destination keeps its row (another copy of it may differ in the last float digits after a rewrite elsewhere);
a point new to the destination comes from its latest measurement among the sources. Sidecars must agree on
``profiling.session.CONSISTENT_KEYS`` (a source trace without one is refused); their ``runs`` and ``notes`` are
united, the top-level fields come from the latest run's sidecar, and the temperature and clock ranges are
recomputed over the merged rows. Nothing is written unless every trace merged (``write_all``).
"""

from __future__ import annotations

import argparse
import sys
import tarfile
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from profiling.session import CONSISTENT_KEYS, state_ranges
from traces.atomic import write_csv_atomic, write_json_atomic
from traces.data_paths import REPO_ROOT
from traces.profile_schema import KEY_COLUMNS, find_traces, read_profile, read_sidecar, sidecar_path


class MergeError(ValueError):
    """A source that cannot be merged (absent, unreadable, or measured on something not comparable)."""


@dataclass
class Merged:
    """One destination trace after the merge, not yet written: its rows, its sidecar and what it gained."""

    trace: Path
    frame: pd.DataFrame
    sidecar: dict[str, Any]
    added: int
    kept: int


def trace_files(root: Path) -> dict[str, Path]:
    """``<gpu>/<model>.csv`` -> its path, for every trace under ``root``."""
    return {f"{p.parent.name}/{p.name}": p for p in find_traces(root)}


def _sidecar(trace: Path) -> dict[str, Any] | None:
    if not sidecar_path(trace).is_file():
        return None
    sidecar = read_sidecar(trace)
    if not isinstance(sidecar.get("notes", []), list) or not isinstance(sidecar.get("runs", []), list):
        raise MergeError(f"{sidecar_path(trace)}: 'notes' and 'runs' must be lists")
    return sidecar


def merge_sidecars(name: str, sidecars: list[dict[str, Any]], frame: pd.DataFrame) -> dict[str, Any]:
    """One sidecar for the merged trace ``name``; an error if two disagree on what makes rows comparable."""
    for key in CONSISTENT_KEYS:
        values = {str(s.get(key)) for s in sidecars}
        if len(values) > 1:
            raise MergeError(f"{name}: the sidecars disagree on {key} ({', '.join(sorted(values))})")
    latest = max(sidecars, key=lambda s: str(s.get("date", "")))
    runs: dict[str, dict] = {}
    notes: list[str] = []
    for s in sidecars:
        for run in s.get("runs") or [{"date": s.get("date"), "command": s.get("command")}]:
            runs.setdefault(str(run.get("date")), run)
        notes += [n for n in s.get("notes", []) if n not in notes]
    merged = {**latest, **state_ranges(frame), "runs": [runs[d] for d in sorted(runs)]}
    if notes:
        merged["notes"] = notes
    return merged


def merge_trace(dest: Path, sources: list[Path]) -> Merged:
    """The rows of ``sources`` (copies of one trace) folded into those of ``dest``; nothing is written. A point
    already in ``dest`` keeps its row; a new one comes from its latest measurement among the sources."""
    unchecked = [str(s) for s in sources if not sidecar_path(s).is_file()]
    if unchecked:  # rows of unknown provenance could be another GPU's
        raise MergeError(f"no sidecar beside {unchecked[0]}: its rows cannot be checked against the trace's")
    old = read_profile(dest) if dest.is_file() else None
    new = pd.concat([read_profile(s) for s in sources], ignore_index=True)
    latest = new.sort_values("measured_at", ascending=False, na_position="last", kind="stable")
    new = latest.drop_duplicates(list(KEY_COLUMNS)).sort_values("measured_at", kind="stable")  # time order
    frames = [new] if old is None else [old, new]  # drop_duplicates keeps the first: the destination's row
    merged = pd.concat(frames, ignore_index=True).drop_duplicates(list(KEY_COLUMNS), keep="first")
    merged = merged.reset_index(drop=True)
    kept = 0 if old is None else len(old)
    sidecars = [s for s in map(_sidecar, [dest, *sources]) if s]
    return Merged(dest, merged, merge_sidecars(str(dest), sidecars, merged), len(merged) - kept, kept)


def _unpacked(source: Path, scratch: Path) -> Path:
    """A folder of ``<gpu>/<model>.csv`` traces: ``source`` itself, or its archive unpacked under ``scratch``."""
    if source.is_dir():
        return source
    if not source.is_file():
        raise MergeError(f"no source at {source}")
    if not hasattr(tarfile, "data_filter"):  # Python < 3.11.4: no safe extraction of an archive's members
        raise MergeError(
            f"{source}: this Python cannot unpack archives safely (3.11.4+); unpack it and pass its folder"
        )
    try:
        with tarfile.open(source, "r:gz") as tar:
            out = scratch / f"{len(list(scratch.iterdir()))}"
            tar.extractall(out, filter="data")
    except (tarfile.TarError, OSError) as exc:
        raise MergeError(f"{source}: not a readable .tar.gz ({exc})") from None
    return out


def write_all(results: Sequence[Merged]) -> None:
    """Every changed trace and sidecar written beside itself first, then all renamed into place: an error while
    writing leaves the destination as it was (only a failure among the final renames could leave it half done)."""
    staged: list[tuple[Path, Path]] = []
    try:
        for r in (r for r in results if r.added):
            for final, write in (
                (r.trace, lambda tmp, r=r: write_csv_atomic(tmp, r.frame)),
                (sidecar_path(r.trace), lambda tmp, r=r: write_json_atomic(tmp, r.sidecar)),
            ):
                tmp = final.with_name(f".{final.name}.merging")
                write(tmp)
                staged.append((tmp, final))
    except BaseException:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
        raise
    for tmp, final in staged:
        tmp.replace(final)


def merge(sources: Sequence[Path], into: Path) -> list[Merged]:
    """Merge every trace of ``sources`` into ``into/<gpu>/<model>.csv``; nothing is written unless every trace
    merged (``write_all``)."""
    with tempfile.TemporaryDirectory() as tmp:
        found: dict[str, list[Path]] = {}
        for source in sources:
            for name, path in trace_files(_unpacked(Path(source), Path(tmp))).items():
                found.setdefault(name, []).append(path)
        if not found:
            raise MergeError(f"no <gpu>/<model>.csv trace in {', '.join(map(str, sources))}")
        results = [merge_trace(Path(into) / name, paths) for name, paths in sorted(found.items())]
    write_all(results)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m profiling.merge", description=__doc__.splitlines()[0])
    parser.add_argument(
        "sources", nargs="+", type=Path, help="folders or .tar.gz archives of <gpu>/<model>.csv"
    )
    parser.add_argument(
        "--into", type=Path, default=REPO_ROOT / "traces" / "profiles", help="destination folder of traces"
    )
    args = parser.parse_args(argv)
    try:
        results = merge(args.sources, args.into)
    except (
        ValueError,
        OSError,
    ) as exc:  # MergeError, TraceSchemaError, a malformed CSV or JSON, a failed write
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for r in results:
        print(f"{r.trace}: {r.added} point(s) added, {r.kept} already there")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
