"""Merge traces measured elsewhere into the committed ones: ``python -m profiling.merge SRC... [--into DIR]``.

Each device call starts from the committed working tree, so a session that chains calls (the machine stays warm
only seconds between them) gets back several archives, each holding the committed rows plus that call's new ones.
This folds them in. A source is a folder laid out ``<gpu>/<model>.csv`` (+ ``.json`` sidecar) or a ``.tar.gz`` as
``scripts/gpu_sweep.sh`` packs one. Rows are keyed by ``traces.profile_schema.KEY_COLUMNS``: a point already in
the destination keeps its row (another copy of it may differ in the last float digits after a rewrite elsewhere);
a point new to the destination comes from the source that measured it last. Sidecars must agree on
``profiling.session.CONSISTENT_KEYS``; their ``runs`` and ``notes`` are united, the top-level fields come from the
latest run's sidecar, and the temperature and clock ranges are recomputed over the merged rows. Writes are atomic.
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
from traces.profile_schema import KEY_COLUMNS, TraceSchemaError, read_profile, read_sidecar, sidecar_path


class MergeError(ValueError):
    """A source that cannot be merged (absent, unreadable, or measured on something not comparable)."""


@dataclass
class Merged:
    """One destination trace after the merge, not yet written: its rows, its sidecar and what it gained."""

    trace: Path
    frame: pd.DataFrame
    sidecar: dict[str, Any] | None
    added: int
    kept: int

    def write(self) -> None:
        if self.added:
            write_csv_atomic(self.trace, self.frame)
            if self.sidecar is not None:
                write_json_atomic(sidecar_path(self.trace), self.sidecar)


def trace_files(root: Path) -> dict[str, Path]:
    """``<gpu>/<model>.csv`` -> its path, for every trace under ``root``."""
    return {f"{p.parent.name}/{p.name}": p for p in sorted(root.glob("*/*.csv"))}


def _sidecar(trace: Path) -> dict[str, Any] | None:
    return read_sidecar(trace) if sidecar_path(trace).is_file() else None


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
    """The rows of ``sources`` (copies of one trace) folded into those of ``dest``; nothing is written."""
    old = read_profile(dest) if dest.is_file() else None
    frames = [] if old is None else [old]
    news = sorted((read_profile(s) for s in sources), key=lambda f: str(f["measured_at"].max()), reverse=True)
    frames += news  # the destination first, then the latest-measured source: drop_duplicates keeps the first
    merged = pd.concat(frames, ignore_index=True).drop_duplicates(list(KEY_COLUMNS), keep="first")
    merged = merged.reset_index(drop=True)
    kept = 0 if old is None else len(old)
    sidecars = [s for s in (_sidecar(p) for p in ([dest] if old is not None else []) + sources) if s]
    sidecar = merge_sidecars(str(dest), sidecars, merged) if sidecars else None
    return Merged(dest, merged, sidecar, len(merged) - kept, kept)


def _unpacked(source: Path, scratch: Path) -> Path:
    """A folder of ``<gpu>/<model>.csv`` traces: ``source`` itself, or its archive unpacked under ``scratch``."""
    if source.is_dir():
        return source
    if not source.is_file():
        raise MergeError(f"no source at {source}")
    try:
        with tarfile.open(source, "r:gz") as tar:
            out = scratch / f"{len(list(scratch.iterdir()))}"
            tar.extractall(out, filter="data")
    except (tarfile.TarError, OSError) as exc:
        raise MergeError(f"{source}: not a readable .tar.gz ({exc})") from None
    return out


def merge(sources: Sequence[Path], into: Path) -> list[Merged]:
    """Merge every trace of ``sources`` into ``into/<gpu>/<model>.csv`` (written atomically, file by file)."""
    with tempfile.TemporaryDirectory() as tmp:
        found: dict[str, list[Path]] = {}
        for source in sources:
            for name, path in trace_files(_unpacked(Path(source), Path(tmp))).items():
                found.setdefault(name, []).append(path)
        if not found:
            raise MergeError(f"no <gpu>/<model>.csv trace in {', '.join(map(str, sources))}")
        results = [merge_trace(Path(into) / name, paths) for name, paths in sorted(found.items())]
    for (
        result
    ) in results:  # written only once every trace merged: a bad source leaves the destination as it was
        result.write()
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
    except (MergeError, TraceSchemaError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for r in results:
        print(f"{r.trace}: {r.added} point(s) added, {r.kept} already there")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
