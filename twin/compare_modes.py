"""What an execution mode buys over another on the same GPU: ``python -m twin.compare_modes``.

For every trace under ``--traces`` (``<gpu>/<model>.csv``) that measured both modes, prints one Markdown row per
batch size measured in both: over the step counts measured in both, the speed-up (base latency / mode latency per
image) and the energy ratio (mode / base GPU energy per image, gross), each as median and range, and both sides at
the largest shared step count. Rows are restricted to ``ok`` points at the scheduler and resolution of the base
mode's card (``twin.calibrate.main_group``), on both sides.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from traces.profile_schema import find_traces, read_profile
from twin.calibrate import DEFAULT_TRACES, main_group, shown
from twin.compare_published import run_table

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
    return pair_on_key(base_rows, ok[same])


def pair_on_key(base: pd.DataFrame, other: pd.DataFrame) -> pd.DataFrame:
    """Points measured on both sides at the same (steps, batch): per-image latency and energy of each, suffixed
    ``_base`` and ``_other``, sorted by (steps, batch); a point without a latency on either side is left out."""
    cols = [*KEY, "latency_image_mean_s", "energy_image_j"]
    pairs = base[cols].merge(other[cols], on=KEY, suffixes=("_base", "_other"))
    return pairs.dropna(subset=["latency_image_mean_s_base", "latency_image_mean_s_other"]).sort_values(KEY)


def _median_range(values: pd.Series, fmt: str) -> str:
    values = values.dropna()
    if values.empty:
        return "n/a"
    return f"{values.median():{fmt}} ({values.min():{fmt}}-{values.max():{fmt}})"


def ratio_cells(part: pd.DataFrame) -> str:
    """The ratio cells of one row, from paired points (``*_base`` and ``*_other`` columns, sorted by steps): the
    step counts compared, the speed-up (base / other latency per image) and the energy ratio (other / base energy
    per image), each as median and range, and both sides at the largest step count."""
    speed_up = part["latency_image_mean_s_base"] / part["latency_image_mean_s_other"]
    energy = part["energy_image_j_other"] / part["energy_image_j_base"]
    last = part.iloc[-1]
    steps = part["steps"].astype(int)
    e_cell = (
        "n/a"
        if pd.isna(last["energy_image_j_base"]) or pd.isna(last["energy_image_j_other"])
        else f"{last['energy_image_j_base']:.0f} -> {last['energy_image_j_other']:.0f}"
    )
    return (
        f"{len(part)} ({steps.min()}-{steps.max()}) | {_median_range(speed_up, '.2f')} "
        f"| {_median_range(energy, '.2f')} | {int(last['steps'])} "
        f"| {last['latency_image_mean_s_base']:.3f} -> {last['latency_image_mean_s_other']:.3f} | {e_cell}"
    )


def batch_rows(label: str, pairs: pd.DataFrame) -> list[str]:
    """One table row per batch size in ``pairs``: the ``label`` cells, the batch, then ``ratio_cells``."""
    return [
        f"| {label} | {batch} | {ratio_cells(part)} |" for batch, part in pairs.groupby("batch", sort=True)
    ]


def compare(traces_dir: Path, base: str = "eager", mode: str = "compile") -> list[str]:
    """The table's rows, one per (gpu, model, batch) that both modes measured."""
    rows = []
    for trace in find_traces(traces_dir):
        rows += batch_rows(
            f"{trace.parent.name} | {trace.stem}", paired_points(read_profile(trace), base, mode)
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
    empty = f"no trace under {shown(args.traces)} measured both {args.base} and {args.mode} at the same steps and batch"
    return run_table(args.traces, lambda: compare(args.traces, args.base, args.mode), HEADER, empty)


if __name__ == "__main__":
    raise SystemExit(main())
