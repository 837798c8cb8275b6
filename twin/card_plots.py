"""PNG plots of a model card's fits for people to look at: cost vs steps per batch size, and quality(steps).

Imported only when ``python -m twin.calibrate --plots`` asks for plots (matplotlib, Agg backend)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from traces.atomic import write_png_atomic
from twin.cards import QUALITY_FORMS, card_from_dict

STEP_GRID = np.arange(1, 61)


def _cost_panel(ax: Any, card: Any, points: list, attr: str, label: str) -> None:
    curve = card.batch_latency_s if attr == "latency_s" else card.batch_energy_j
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, b in enumerate(card.batch_sizes):
        colour = colours[i % len(colours)]
        ax.plot(STEP_GRID, curve(STEP_GRID, b), color=colour, lw=1.2, label=f"fit, batch {b}")
        for p in (p for p in points if p.batch == b and getattr(p, attr) is not None):
            ax.plot(
                p.steps,
                getattr(p, attr),
                "o" if not p.heldout else "x",
                color=colour,
                ms=6,
                mew=2,
            )
    ax.set_xlabel("denoising steps")
    ax.set_ylabel(label)
    ax.set_title(f"{label} (o: fitted data, x: held out)", fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)


def _quality_panel(ax: Any, block: dict) -> None:
    for name, row in block["comparison"].items():
        spec = QUALITY_FORMS[name]
        q = spec.fn(STEP_GRID.astype(float), *(row["params"][n] for n in spec.params))
        chosen = name == block["form"]
        ax.plot(
            STEP_GRID,
            q,
            lw=2.2 if chosen else 1.0,
            ls="-" if chosen else "--",
            label=f"{name} (LOO RMSE {row['loo_rmse']})" + (" [used]" if chosen else ""),
        )
    for series in sorted({d["series"] for d in block["data"]}):
        pts = [d for d in block["data"] if d["series"] == series]
        level = 1.0 if pts[0]["relative"] else block["levels"][series]
        ax.plot([d["steps"] for d in pts], [d["value"] / level for d in pts], "o", ms=4, label=series)
    ax.set_xlabel("denoising steps")
    ax.set_ylabel("quality: share of saturated score")
    ax.set_title("quality(steps), data divided by fitted level", fontsize=9)
    ax.legend(fontsize=6)
    ax.grid(alpha=0.3)


def plot_card(card_dict: dict, points: list, path: Path) -> Path:
    """Three panels (latency, energy, quality) for one card, written to ``path``."""
    card = card_from_dict(card_dict, f"<plot {path.name}>")
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.6))
    _cost_panel(axes[0], card, points, "latency_s", "latency per call (s)")
    _cost_panel(axes[1], card, points, "energy_j", "GPU energy per call (J)")
    _quality_panel(axes[2], card_dict["quality"])
    fig.suptitle(f"{card.gpu} / {card.model} / {card.mode} ({card.basis})", fontsize=11)
    fig.tight_layout()
    return write_png_atomic(path, fig, dpi=90)
