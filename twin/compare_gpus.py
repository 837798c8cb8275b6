"""What one GPU buys over another for the same pipeline and mode: ``python -m twin.compare_gpus``.

For every model traced on two GPUs (``<gpu>/<model>.csv`` under ``--traces``), prints one Markdown row per mode and
batch size measured on both: over the step counts measured on both, the speed-up (base GPU's latency / the other's,
per image) and the energy ratio (other / base, gross GPU energy per image), each as median and range, and both
sides at the largest shared step count. Each side's rows are ``ok`` points at the scheduler and resolution of the
base GPU's card for that mode (``twin.calibrate.main_group``). ``--base`` and ``--gpu`` pick the pair; without
them, every pair of GPU folders in name order.
"""

from __future__ import annotations

import argparse
import itertools
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from traces.profile_schema import find_traces, read_profile
from twin.calibrate import DEFAULT_TRACES, main_group, shown
from twin.compare_modes import batch_rows, pair_on_key
from twin.compare_published import run_table

HEADER = (
    "| base | gpu | model | mode | batch | steps compared | speed-up median (range) | energy ratio median (range) "
    "| at steps | s / image base -> gpu | J / image base -> gpu |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|"
)


class CompareError(ValueError):
    """A GPU pair that cannot be compared (a folder that is absent, or the same GPU twice)."""


def paired_gpu_points(base: pd.DataFrame, other: pd.DataFrame, mode: str) -> pd.DataFrame:
    """One row per (steps, batch) measured ``ok`` in ``mode`` on both GPUs, at the scheduler and resolution of the
    base GPU's card for that mode: per-image latency and energy of each side (``pair_on_key``)."""
    base_ok = base[(base["status"] == "ok") & (base["mode"] == mode)]
    other_ok = other[(other["status"] == "ok") & (other["mode"] == mode)]
    if base_ok.empty or other_ok.empty:
        return pair_on_key(base_ok, other_ok)
    base_rows, scheduler, resolution, _ = main_group(base_ok)
    same = (other_ok["scheduler"] == scheduler) & (other_ok["resolution"] == resolution)
    return pair_on_key(base_rows, other_ok[same])


def gpu_pairs(gpus: Sequence[str], base: str | None, gpu: str | None) -> list[tuple[str, str]]:
    """The (base, other) GPU pairs compared: the one named, or each pair in name order."""
    for name in (base, gpu):
        if name is not None and name not in gpus:
            raise CompareError(f"no traces for gpu {name!r} (have: {', '.join(gpus) or 'none'})")
    if base is not None and base == gpu:
        raise CompareError(f"--base and --gpu name the same gpu {base!r}")
    if base is None and gpu is None:
        return list(itertools.combinations(gpus, 2))
    return [(a, b) for a in gpus for b in gpus if a != b and base in (None, a) and gpu in (None, b)]


def compare(traces_dir: Path, base: str | None = None, gpu: str | None = None) -> list[str]:
    """The table's rows, one per (GPU pair, model, mode, batch) measured on both GPUs."""
    by_gpu: dict[str, dict[str, Path]] = {}
    for trace in find_traces(traces_dir):
        by_gpu.setdefault(trace.parent.name, {})[trace.stem] = trace
    rows = []
    for a, b in gpu_pairs(sorted(by_gpu), base, gpu):
        for model in sorted(set(by_gpu[a]) & set(by_gpu[b])):
            frame_a, frame_b = read_profile(by_gpu[a][model]), read_profile(by_gpu[b][model])
            for mode in sorted(set(frame_a["mode"]) & set(frame_b["mode"])):
                rows += batch_rows(f"{a} | {b} | {model} | {mode}", paired_gpu_points(frame_a, frame_b, mode))
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m twin.compare_gpus", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--traces", type=Path, default=DEFAULT_TRACES, help="folder of <gpu>/<model>.csv traces"
    )
    parser.add_argument("--base", default=None, help="the GPU compared against (a folder name, e.g. h100)")
    parser.add_argument("--gpu", default=None, help="the GPU compared (a folder name, e.g. h200)")
    args = parser.parse_args(argv)
    empty = (
        f"no model under {shown(args.traces)} was measured on two GPUs in the same mode at the same steps, batch, "
        "scheduler and resolution"
    )
    return run_table(
        args.traces, lambda: compare(args.traces, args.base, args.gpu), HEADER, empty, errors=(CompareError,)
    )


if __name__ == "__main__":
    raise SystemExit(main())
