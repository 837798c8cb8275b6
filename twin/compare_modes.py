"""What an execution mode buys over another on the same GPU: ``python -m twin.compare_modes``.

For every trace under ``--traces`` (``<gpu>/<model>.csv``) that measured both modes, prints one Markdown row per
batch size measured in both: over the step counts measured in both, the speed-up (base latency / mode latency per
image) and the energy ratio (mode / base GPU energy per image, gross), each as median and range, and both sides at
the largest shared step count. Rows are restricted to ``ok`` points at the scheduler and resolution of the base
mode's card (``twin.calibrate.main_group``), on both sides.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from traces.profile_schema import TraceSchemaError, find_traces, read_profile
from twin.calibrate import DEFAULT_TRACES, main_group, shown
from twin.compare_published import print_table

HEADER = (
    "| gpu | model | batch | steps compared | speed-up median (range) | energy ratio median (range) "
    "| at steps | s / image base -> mode | J / image base -> mode |\n"
    "|---|---|---|---|---|---|---|---|---|"
)
KEY = ["steps", "batch"]


def paired_points(frame: pd.DataFrame, base: str, mode: str) -> pd.DataFrame:
    """One row per (steps, batch) measured ``ok`` in both modes at the scheduler and resolution of the base mode's
    card (``main_group``): per-image latency and energy of each side."""
    ok = frame[frame["status"] == "ok"]
    cols = [*KEY, "latency_image_mean_s", "energy_image_j"]
    if not (ok["mode"] == base).any() or not (ok["mode"] == mode).any():
        return pd.DataFrame(columns=cols)
    base_rows, scheduler, resolution, _ = main_group(ok[ok["mode"] == base])
    same = (ok["mode"] == mode) & (ok["scheduler"] == scheduler) & (ok["resolution"] == resolution)
    pairs = base_rows[cols].merge(ok.loc[same, cols], on=KEY, suffixes=("_base", "_mode"))
    return pairs.dropna(subset=["latency_image_mean_s_base", "latency_image_mean_s_mode"]).sort_values(KEY)


def _median_range(values: pd.Series, fmt: str) -> str:
    values = values.dropna()
    if values.empty:
        return "n/a"
    return f"{values.median():{fmt}} ({values.min():{fmt}}-{values.max():{fmt}})"


def compare(traces_dir: Path, base: str = "eager", mode: str = "compile") -> list[str]:
    """The table's rows, one per (gpu, model, batch) that both modes measured."""
    rows = []
    for trace in find_traces(traces_dir):
        pairs = paired_points(read_profile(trace), base, mode)
        for batch, part in pairs.groupby("batch", sort=True):
            speed_up = part["latency_image_mean_s_base"] / part["latency_image_mean_s_mode"]
            energy = part["energy_image_j_mode"] / part["energy_image_j_base"]
            last = part.iloc[-1]
            steps = part["steps"].astype(int)
            e_cell = (
                "n/a"
                if pd.isna(last["energy_image_j_base"]) or pd.isna(last["energy_image_j_mode"])
                else f"{last['energy_image_j_base']:.0f} -> {last['energy_image_j_mode']:.0f}"
            )
            rows.append(
                f"| {trace.parent.name} | {trace.stem} | {batch} | {len(part)} ({steps.min()}-{steps.max()}) "
                f"| {_median_range(speed_up, '.2f')} | {_median_range(energy, '.2f')} | {int(last['steps'])} "
                f"| {last['latency_image_mean_s_base']:.3f} -> {last['latency_image_mean_s_mode']:.3f} | {e_cell} |"
            )
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m twin.compare_modes", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--traces", type=Path, default=DEFAULT_TRACES, help="folder of <gpu>/<model>.csv traces"
    )
    parser.add_argument("--base", default="eager", help="the mode compared against (default eager)")
    parser.add_argument("--mode", default="compile", help="the mode compared (default compile)")
    args = parser.parse_args(argv)
    if not args.traces.is_dir():
        print(f"error: no traces folder at {args.traces}", file=sys.stderr)
        return 2
    try:
        rows = compare(args.traces, args.base, args.mode)
    except (TraceSchemaError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    empty = f"no trace under {shown(args.traces)} measured both {args.base} and {args.mode} at the same steps and batch"
    return print_table(HEADER, rows, empty)


if __name__ == "__main__":
    raise SystemExit(main())
