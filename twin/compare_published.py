"""Measured traces against the published figures the cited cards came from: ``python -m twin.compare_published``.

For every cited point (``twin.cited.COSTS``: ML.ENERGY latency and GPU energy per image) with a measured trace of
the same model, prints one Markdown row: the published number, the measured one at the same steps and batch (the
trace's row where it exists, else the measured card's fit, labelled as such and marked extrapolated outside the
measured step counts) and their ratios. Both sides are gross GPU energy (idle floor included while busy). The
harnesses differ (real weights, prompts, GPU, power limit), so the ratios are a sanity check of the traces, not a
calibration.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from traces.profile_schema import TraceSchemaError, read_profile
from twin.calibrate import DEFAULT_TRACES, main_group, shown
from twin.cards import CARDS_DIR, CardError, card_filename, load_card
from twin.cited import COSTS, CitedCost

HEADER = (
    "| model | batch | steps | published (GPU) | s / image published | s / image measured | speed-up "
    "| J / image published | J / image measured | J measured / published | measured from |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|"
)


def _cited_points(cost: CitedCost) -> list[tuple[int, int, float, float]]:
    """(batch, steps, s/image, J/image) of one cited cost."""
    points = [
        (1, s, lat, e)
        for s, lat, e in zip(cost.steps, cost.latency_image_s, cost.energy_image_j, strict=True)
    ]
    if cost.big_batch is not None:
        big = (
            cost.big_batch,
            cost.big_batch_steps,
            cost.big_batch_latency_image_s,
            cost.big_batch_energy_image_j,
        )
        points.append(big)
    return points


def _measured(
    frame: pd.DataFrame, card_path: Path, batch: int, steps: int
) -> tuple[float, float, str] | None:
    """Per-image latency and energy (NaN where not measured) of the trace at (batch, steps), else of the measured
    card's fit, marked extrapolated outside the step counts measured at that batch."""
    ok = frame[(frame["batch"] == batch) & (frame["status"] == "ok")]
    row = ok[ok["steps"] == steps]
    if len(row):
        lat, energy = row["latency_image_mean_s"].iloc[0], row["energy_image_j"].iloc[0]
        return float(lat), math.nan if pd.isna(energy) else float(energy), "trace row"
    if not card_path.exists() or batch not in (card := load_card(card_path)).batch_sizes:
        return None
    inside = len(ok) > 0 and ok["steps"].min() <= steps <= ok["steps"].max()
    how = "card fit" if inside else "card fit, extrapolated"
    return float(card.image_latency_s(steps, batch)), float(card.image_energy_j(steps, batch)), how


def compare(traces_dir: Path, cards_dir: Path, mode: str = "eager") -> tuple[list[str], set[str]]:
    """The table's rows, one per cited point whose model has a measured trace under ``traces_dir`` in ``mode``
    (restricted to the scheduler and resolution its card describes: ``twin.calibrate.main_group``), and the
    modes the traces hold."""
    rows, modes = [], set()
    for gpu_dir in sorted(p for p in Path(traces_dir).iterdir() if p.is_dir()):
        for model, cost in COSTS.items():
            trace = gpu_dir / f"{model}.csv"
            if not trace.exists():
                continue
            frame = read_profile(trace)
            modes |= set(frame["mode"].astype(str))
            frame = frame[frame["mode"] == mode]
            if frame.empty:
                continue
            frame = main_group(frame)[0]
            card_path = Path(cards_dir) / card_filename(gpu_dir.name, model, mode)
            for batch, steps, lat, energy in _cited_points(cost):
                got = _measured(frame, card_path, batch, steps)
                if got is None:
                    continue
                m_lat, m_e, how = got
                e_cells = "n/a | n/a" if math.isnan(m_e) else f"{m_e:.0f} | {m_e / energy:.2f}"
                rows.append(
                    f"| {model} | {batch} | {steps} | {cost.gpu} | {lat:.3f} | {m_lat:.3f} | {lat / m_lat:.2f}x "
                    f"| {energy:.0f} | {e_cells} | {gpu_dir.name} {mode} {how} |"
                )
    return rows, modes


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m twin.compare_published", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--traces", type=Path, default=DEFAULT_TRACES, help="folder of <gpu>/<model>.csv traces"
    )
    parser.add_argument("--cards", type=Path, default=CARDS_DIR, help="folder of the measured cards")
    parser.add_argument(
        "--mode", default="eager", help="execution mode of the traces to compare (default eager)"
    )
    args = parser.parse_args(argv)
    modes: set[str] = set()

    def rows_of() -> list[str]:
        rows, found = compare(args.traces, args.cards, args.mode)
        modes.update(found)
        return rows

    def empty() -> str:
        return (
            f"no {args.mode} trace under {shown(args.traces)} has a published counterpart (modes in the traces: "
            f"{', '.join(sorted(modes)) or 'none'})"
        )

    return run_table(args.traces, rows_of, HEADER, empty, errors=(CardError,))


def run_table(
    traces: Path,
    rows_of: Callable[[], list[str]],
    header: str,
    empty: str | Callable[[], str],
    errors: tuple[type, ...] = (),
) -> int:
    """The end of each comparison command (``twin.compare_*``): a one-line error and 2 for an absent traces
    folder or a bad input (``TraceSchemaError``, ``OSError`` and ``errors``), else ``print_table`` of the rows
    ``rows_of`` gives, with ``empty`` (or what it returns, once the rows are known) as the error for none."""
    if not traces.is_dir():
        print(f"error: no traces folder at {traces}", file=sys.stderr)
        return 2
    try:
        rows = rows_of()
    except (TraceSchemaError, OSError, *errors) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return print_table(header, rows, empty if isinstance(empty, str) else empty())


def print_table(header: str, rows: list[str], empty: str) -> int:
    """Print a Markdown table and return 0, or, when it has no rows, ``empty`` as a one-line error and 2."""
    if not rows:
        print(f"error: {empty}", file=sys.stderr)
        return 2
    print(header)
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
