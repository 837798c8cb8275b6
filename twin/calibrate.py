"""Calibration: profile traces (or, until they exist, cited figures) -> model cards under traces/cards/.

Run ``python -m twin.calibrate --help``; fits are in twin.fitting, the card schema in twin.cards."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from traces.atomic import write_json_atomic
from traces.data_paths import REPO_ROOT
from traces.profile_schema import TraceSchemaError, find_traces, read_profile, read_sidecar
from twin import cited
from twin.cards import CARDS_DIR, QUALITY_FORMS, card_filename, card_from_dict
from twin.fitting import (
    CostFit,
    FitError,
    QualityPoint,
    choose_form,
    compare_quality_forms,
    error_summary,
    fit_cost,
    fit_quality,
    leave_one_step_out,
    pct_errors,
)

DEFAULT_TRACES = REPO_ROOT / "traces" / "profiles"
DEFAULT_HELDOUT = (25, 42)
FORMS = tuple(QUALITY_FORMS)
PLOTS_SUBDIR = "plots"
#: The scheduling paper's step set (from a third-party summary, unverified: shared/reference/paper.md).
PAPER_STEPS = tuple(range(6, 43, 4))

ENERGY_BASIS_NOTE = (
    "gross GPU energy (idle floor included while busy): the cited ML.ENERGY figures are gross Zeus windows, so "
    "measured cards use the same basis; the twin adds idle_power_w only for time the GPU is not running a batch"
)
NORMALISATION = (
    "each source series is divided by its own saturation level A (fitted jointly with the curve, one A per "
    "series; reported in 'levels'), so q in [0, 1] is the share of the model's saturated quality under that "
    "source's CLIP model and prompts; relative-drop series are used as they are (q = 1 - drop); cross-model "
    "level differences are not modelled (no single source scores these models with one CLIP model)"
)

#: Idle board power for the cited cards: no published figure exists, so an assumed, reasoned value.
ASSUMED_IDLE_W = {
    "a100-sxm4-40gb": (
        55.0,
        "assumed: idle A100-SXM4 boards typically read 50-60 W in nvidia-smi (engineering experience, not a "
        "cited measurement); replace with a trace's measured idle_power_w",
    ),
    "h100-cited": (
        70.0,
        "assumed: idle H100-SXM boards typically read 60-80 W in nvidia-smi (engineering experience, not a "
        "cited measurement); replace with a trace's measured idle_power_w",
    ),
}


class CalibrationError(ValueError):
    """Calibration input that cannot give a card (no traces, unusable trace, no quality source)."""


@dataclass(frozen=True)
class CostPoint:
    """One measured or cited point of a card's cost fit, kept for error reports and plots."""

    steps: int
    batch: int
    latency_s: float  # per pipeline call
    energy_j: float | None  # per pipeline call
    heldout: bool


# --- quality ------------------------------------------------------------------------------------------------


def quality_block(points: Sequence[QualityPoint], source: str, metric: str, notes: Iterable[str]) -> dict:
    """Fit every form, compare them, keep the chosen one; everything goes into the card's quality block."""
    comparison = compare_quality_forms(points, FORMS)
    form = choose_form(comparison)
    fit = comparison[form]["fit"]
    return {
        "form": form,
        "params": _rounded(fit.params),
        "metric": metric,
        "normalisation": NORMALISATION,
        "source": source,
        "levels": _rounded(fit.levels),
        "chosen_by": "lowest leave-one-out RMSE; the paper's sigmoid is kept unless beaten by more than 5 %",
        "comparison": {
            name: {
                "params": _rounded(row["fit"].params),
                "formula": QUALITY_FORMS[name].formula,
                "rmse": _sig(row["rmse"]),
                "loo_rmse": None if row["loo_rmse"] is None else _sig(row["loo_rmse"]),
                "aicc": _sig(row["aicc"]),
                "bic": _sig(row["bic"]),
                "n_points": row["n_points"],
                "n_params": row["n_params"],
            }
            for name, row in comparison.items()
        },
        "data_steps": [int(min(p.steps for p in points)), int(max(p.steps for p in points))],
        "q_at_paper_steps": {str(s): _sig(float(fit.q(np.array([s]))[0]), 4) for s in PAPER_STEPS},
        "data": [
            {"steps": p.steps, "value": p.value, "series": p.series, "relative": p.relative} for p in points
        ],
        "notes": list(notes),
    }


def cited_quality(model: str) -> dict:
    """The quality block of ``model`` from the published figures (twin.cited.QUALITY_PLAN)."""
    if model not in cited.QUALITY_PLAN:
        raise CalibrationError(
            f"no published quality figures for model {model!r} and no measured CLIP scores"
        )
    names, assumption = cited.QUALITY_PLAN[model]
    series = [cited.SERIES[n] for n in names]
    points = [
        QualityPoint(float(s), float(v), ser.name, ser.kind == "relative")
        for ser in series
        for s, v in zip(ser.steps, ser.values, strict=True)
    ]
    source = "; ".join(f"{ser.name}: {ser.source} [{ser.model}, {ser.solver}]" for ser in series)
    notes = [assumption] if assumption else []
    notes.append("outside data_steps the curve is an extrapolation of the chosen form, not data")
    if model in ("sdxl", "sd-2.1"):
        notes.append(_turbo_note(model))
    metric = "relative CLIP score" if all(s.kind == "relative" for s in series) else "CLIP score (ViT-g-14)"
    block = quality_block(points, source, metric, notes)
    if model == "sd3.5-medium":
        block["range_sensitivity"] = _sd3_range_sensitivity(block["form"])
    return block


def _sd3_range_sensitivity(form: str) -> dict:
    """The chosen form refitted to the low and high ends of the SD3 drop ranges: how much the midpoint matters."""
    out = {}
    for pick in ("low", "high"):
        steps, values = cited.sd3_relative_series(pick)
        fit = fit_quality(
            [QualityPoint(float(s), v, pick, True) for s, v in zip(steps, values, strict=True)], form
        )
        out[f"{pick}_drop"] = {str(s): _sig(float(fit.q(np.array([s]))[0]), 4) for s in PAPER_STEPS}
    return out


def _turbo_note(model: str) -> str:
    if model == "sd-2.1":
        return (
            "turbo/distilled models are not covered by this curve: sd-turbo (distilled from SD 2.1) has no "
            "CLIP-vs-steps figures on the figures page; a card for it would need its own, nearly flat curve"
        )
    lv = cited.SDXL_LIGHTNING_CLIP
    share = lv["sdxl-turbo-1"] / lv["sdxl-base-euler-32"]
    return (
        f"turbo/distilled models are not covered by this curve: in {cited.SDXL_LIGHTNING} SDXL-Turbo reaches "
        f"{lv['sdxl-turbo-1']} CLIP at 1 step ({share:.1%} of SDXL base's {lv['sdxl-base-euler-32']} at 32 steps, "
        "same CLIP model), i.e. a turbo card would need its own, nearly flat curve at 1-4 steps"
    )


def measured_quality(frame: Any, trace: Path, sidecar: dict) -> dict | None:
    """Quality block from a trace's CLIP scores (pretrained weights only), or None when it has none."""
    if not str(sidecar.get("weights", "")).startswith("pretrained:"):
        return None
    scored = frame[frame["clip_score_mean"].notna()]
    if scored["steps"].nunique() < 3:
        return None
    per_step = scored.groupby("steps")["clip_score_mean"].mean()
    series = f"trace:{trace.name}"
    points = [QualityPoint(float(s), float(v), series, False) for s, v in per_step.items()]
    clip_model = ",".join(sorted(set(scored["clip_model"].dropna().astype(str)))) or "unrecorded CLIP model"
    return quality_block(
        points,
        f"measured: {shown(trace)} (weights {sidecar['weights']}, prompts {sidecar.get('prompt_set')})",
        f"CLIP score ({clip_model}), mean over batch sizes per step count",
        ["outside data_steps the curve is an extrapolation of the chosen form, not data"],
    )


# --- cost ---------------------------------------------------------------------------------------------------


def _cost_block(fit: CostFit) -> dict:
    return {"fixed": [_sig(v) for v in fit.fixed], "per_step": [_sig(v) for v in fit.per_step]}


def _split_by_batch_share(total: CostFit, share: float) -> CostFit:
    """Split batch-1 fixed and per-step totals into (per call, per image) parts with one batch-scaling share."""
    fixed, per = total.fixed[1], total.per_step[1]
    return CostFit((fixed * (1 - share), fixed * share), (per * (1 - share), per * share), False)


def _batch_share(per_image_b1: float, per_image_big: float, big: int) -> float:
    """Share beta of a call's cost that grows with batch, from one batch-`big` point: call(B) = call(1)(1-beta+beta*B)."""
    return float(np.clip((big * per_image_big / per_image_b1 - 1.0) / (big - 1), 0.0, 1.0))


def _loo_b1(steps: Sequence[int], values: Sequence[float]) -> dict[str, float]:
    """Leave each step count out of a batch-1 fit of the others; signed % error at the left-out one."""
    out = {}
    for i, s in enumerate(steps):
        rest = [j for j in range(len(steps)) if j != i]
        fit = fit_cost([steps[j] for j in rest], [1] * len(rest), [values[j] for j in rest])
        out[str(s)] = round(float(pct_errors(fit.predict(np.array([s]), np.array([1])), [values[i]])[0]), 4)
    return out


def cited_cost(cost: cited.CitedCost, attr: str, big_attr: str) -> tuple[CostFit, float, dict, list]:
    """Fit one cited quantity (latency or energy) of an SD card with >= 3 batch-1 points and a big-batch point."""
    steps, values = list(cost.steps), list(getattr(cost, attr))
    total = fit_cost(steps, [1] * len(steps), values)
    big_value = getattr(cost, big_attr)
    share = _batch_share(values[steps.index(cost.big_batch_steps)], big_value, cost.big_batch)
    fit = _split_by_batch_share(total, share)
    loo = _loo_b1(steps, values)
    middle = str(steps[len(steps) // 2])
    report = {
        "in_sample_b1": error_summary(fit.predict(np.array(steps), np.ones(len(steps))), values),
        "leave_one_out_b1_pct": loo,
        "heldout_pct": loo[middle],
        "big_batch_pct": round(
            float(
                pct_errors(
                    fit.predict(np.array([cost.big_batch_steps]), np.array([cost.big_batch]))
                    / cost.big_batch,
                    [big_value],
                )[0]
            ),
            4,
        ),
    }
    return fit, share, report, steps


def cited_card(model: str, sdxl_card: dict | None = None) -> tuple[dict, list[CostPoint]]:
    """A card from the published figures; SD3.5-Medium (one point) borrows its split from the SDXL card."""
    cost = cited.COSTS.get(model)
    if cost is None:
        raise CalibrationError(f"no published latency/energy figures for model {model!r}")
    if len(cost.steps) >= 3:
        card, points = _cited_sd_card(cost)
    else:
        if sdxl_card is None:
            raise CalibrationError(f"{model}: a single cited point needs the sdxl card to borrow its split")
        card, points = _cited_single_point_card(cost, sdxl_card)
    card["quality"] = cited_quality(model)
    card["sources"]["quality"] = card["quality"]["source"]
    card["assumptions"].extend(n for n in card["quality"]["notes"] if n.startswith("assumed"))
    return card, points


def _base_card(cost: cited.CitedCost) -> dict:
    idle, idle_note = ASSUMED_IDLE_W[cost.gpu]
    return {
        "schema": 1,
        "gpu": cost.gpu,
        "model": cost.model,
        "mode": "eager",
        "resolution": cost.resolution,
        "basis": "cited",
        "sources": {"latency_energy": f"{cost.source}; pipeline {cost.pipeline}"},
        "idle_power_w": idle,
        "idle_power_source": idle_note,
        "assumptions": [
            idle_note,
            "mode 'eager' assumed: the source does not say whether torch.compile or CUDA graphs were used",
            f"resolution {cost.resolution}: {cost.resolution_note}",
        ],
    }


def _cited_sd_card(cost: cited.CitedCost) -> tuple[dict, list[CostPoint]]:
    lat, lat_share, lat_rep, steps = cited_cost(cost, "latency_image_s", "big_batch_latency_image_s")
    en, en_share, en_rep, _ = cited_cost(cost, "energy_image_j", "big_batch_energy_image_j")
    card = _base_card(cost)
    card.update(
        {
            "latency_s": _cost_block(lat),
            "energy_j": {**_cost_block(en), "basis": "gross"},
            "batch_sizes": [1, 2, 4, cost.big_batch],
            "fit": {
                "heldout_steps": [steps[len(steps) // 2]],
                "latency_mape": abs(lat_rep["heldout_pct"]),
                "energy_mape": abs(en_rep["heldout_pct"]),
                "latency": lat_rep,
                "energy": en_rep,
                "batch_share": {"latency": _sig(lat_share), "energy": _sig(en_share)},
                "energy_basis": ENERGY_BASIS_NOTE,
                "notes": (
                    f"batch-1 fixed + per-step parts fitted by least squares on relative error to "
                    f"{len(steps)} published points; held out: the middle step count (fit on the other two). "
                    f"The batch-{cost.big_batch} point fixes the batch share exactly (no held-out check of "
                    "batch scaling is possible); big_batch_pct is its in-sample residual"
                ),
            },
        }
    )
    card["assumptions"].append(
        f"batch scaling: fixed and per-step parts share one batch-scaling share beta (call(b) = call(1) * "
        f"(1 - beta + beta*b)), beta fitted from the single batch-{cost.big_batch} point at "
        f"{cost.big_batch_steps} steps; batches 2 and 4 are interpolations, not data"
    )
    if cost.model == "sd-1.5":
        card["fit"]["cross_check"] = _add_cross_check(lat)
    points = [
        CostPoint(s, 1, lt, e, False)
        for s, lt, e in zip(steps, cost.latency_image_s, cost.energy_image_j, strict=True)
    ]
    b = cost.big_batch
    points.append(
        CostPoint(
            cost.big_batch_steps,
            b,
            cost.big_batch_latency_image_s * b,
            cost.big_batch_energy_image_j * b,
            False,
        )
    )
    return card, points


def _add_cross_check(lat: CostFit) -> dict:
    """Compare the fitted batch-1 latency with an independent published SD 1.5 A100 figure (not fitted)."""
    ref = cited.ADD_SD15_A100
    pred = float(lat.predict(np.array([ref["steps"]]), np.array([1]))[0])
    return {
        "source": ref["source"],
        "steps": ref["steps"],
        "published_latency_image_s": ref["latency_image_s"],
        "card_latency_image_s": _sig(pred, 4),
        "pct": round(float(pct_errors([pred], [ref["latency_image_s"]])[0]), 2),
        "note": "not fitted, for comparison only: different harness and solver (DPM-Solver vs the pipeline default)",
    }


def _cited_single_point_card(cost: cited.CitedCost, donor: dict) -> tuple[dict, list[CostPoint]]:
    steps = cost.steps[0]
    card = _base_card(cost)
    blocks, shares = {}, {}
    for key, value in (("latency_s", cost.latency_image_s[0]), ("energy_j", cost.energy_image_j[0])):
        fixed, per = (sum(donor[key][part]) for part in ("fixed", "per_step"))
        fixed_share = fixed / (fixed + steps * per)  # the donor's fixed share of one image at these steps
        batch_share = donor[key]["fixed"][1] / fixed if fixed > 0 else donor[key]["per_step"][1] / per
        total = CostFit((0.0, value * fixed_share), (0.0, value * (1 - fixed_share) / steps), True)
        blocks[key] = _cost_block(_split_by_batch_share(total, batch_share))
        shares[key] = (fixed_share, batch_share)
    card.update(
        {
            "latency_s": blocks["latency_s"],
            "energy_j": {**blocks["energy_j"], "basis": "gross"},
            "batch_sizes": list(donor["batch_sizes"]),
            "fit": {
                "heldout_steps": [],
                "latency_mape": None,
                "energy_mape": None,
                "energy_basis": ENERGY_BASIS_NOTE,
                "notes": (
                    f"ONE published point ({steps} steps, batch 1): reproduced exactly by construction; no fit "
                    "error, no held-out error can be computed. Everything else is borrowed, see assumptions"
                ),
            },
        }
    )
    card["assumptions"] += [
        f"ASSUMED SPLIT: fixed share of one image at {steps} steps taken from the {donor['gpu']} sdxl card "
        f"(latency {shares['latency_s'][0]:.3f}, energy {shares['energy_j'][0]:.3f}; both 1024 px latent "
        "diffusion with a VAE decode), not measured for SD3.5-Medium",
        f"ASSUMED BATCH SCALING: batch shares of the sdxl card (latency {shares['latency_s'][1]:.3f}, energy "
        f"{shares['energy_j'][1]:.3f}) and its batch sizes; no batch figure exists for SD3.5-Medium",
        "gpu 'h100-cited': the ML.ENERGY v3 H100 (variant not stated on the figures page), a cited single point",
    ]
    points = [CostPoint(steps, 1, cost.latency_image_s[0], cost.energy_image_j[0], False)]
    return card, points


def build_cited_cards(out_dir: Path, plots: bool) -> list[Path]:
    """Write the cards of every model in twin.cited (SD UNet models first: SD3.5 borrows from sdxl)."""
    written, made = [], {}
    for model in tqdm(sorted(cited.COSTS, key=lambda m: len(cited.COSTS[m].steps) < 3), desc="cited cards"):
        card, points = cited_card(model, made.get("sdxl"))
        made[model] = card
        written.append(_write_card(card, points, out_dir, plots))
    return written


# --- measured traces ----------------------------------------------------------------------------------------


def shown(path: Path) -> str:
    """A path as a card records it: relative to the repository when inside it, so cards do not name a checkout."""
    try:
        return str(Path(path).resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def main_group(frame: pd.DataFrame) -> tuple[pd.DataFrame, str, int, int]:
    """The rows a card describes: a card is one (scheduler, resolution), the trace's most measured one. Returns
    those rows, the scheduler, the resolution and how many groups the trace holds."""
    counts = frame.groupby(["scheduler", "resolution"]).size().sort_values(ascending=False)
    scheduler, resolution = counts.index[0]
    rows = frame[(frame["scheduler"] == scheduler) & (frame["resolution"] == resolution)]
    return rows, str(scheduler), int(resolution), len(counts)


def measured_cards(trace: Path, heldout: Sequence[int]) -> list[tuple[dict, list[CostPoint]]]:
    """One card per execution mode found in an ``ok`` part of a trace."""
    try:
        frame, sidecar = read_profile(trace), read_sidecar(trace)
    except TraceSchemaError as exc:
        raise CalibrationError(str(exc)) from None
    ok = frame[frame["status"] == "ok"]
    if ok.empty:
        raise CalibrationError(f"{trace}: no rows with status 'ok'")
    return [_measured_card(part, trace, sidecar, heldout) for _, part in ok.groupby("mode", sort=True)]


def _measured_card(
    frame: Any, trace: Path, sidecar: dict, heldout: Sequence[int]
) -> tuple[dict, list[CostPoint]]:
    rows, scheduler, resolution, groups = main_group(frame)
    model, mode, gpu = str(rows["model"].iloc[0]), str(rows["mode"].iloc[0]), trace.parent.name
    where = f"{shown(trace)} [{mode}]"
    is_out = rows["steps"].isin(list(heldout)).to_numpy()
    s, b = rows["steps"].to_numpy(float), rows["batch"].to_numpy(float)
    lat = rows["latency_batch_mean_s"].to_numpy(float)
    energy = (rows["energy_image_j"] * rows["batch"]).astype("Float64").to_numpy(float, na_value=np.nan)
    # A window the NVML counter could not resolve (flagged short: too brief, or no counter increment) keeps
    # its value in the trace for inspection, but it is not an energy measurement to fit.
    short = rows["energy_short_window"].astype("boolean").fillna(False).to_numpy(bool)
    has_e = ~np.isnan(energy) & ~short
    try:
        lat_fit, lat_rep = _measured_cost(s, b, lat, is_out)
        en_fit, en_rep = _measured_cost(s[has_e], b[has_e], energy[has_e], is_out[has_e])
    except FitError as exc:
        raise CalibrationError(f"{where}: {exc}") from None
    quality = measured_quality(rows, trace, sidecar) or cited_quality(model)
    idle = rows["idle_power_w"].dropna()
    idle_note = f"measured: median idle_power_w of {shown(trace)}" if len(idle) else "not measured"
    assumptions = [n for n in quality["notes"] if n.startswith("assumed")]
    if lat_fit.single_batch:
        assumptions.append("one batch size measured: cost assumed proportional to batch (per-image constant)")
    card = {
        "schema": 1,
        "gpu": gpu,
        "model": model,
        "mode": mode,
        "resolution": int(resolution),
        "basis": "measured",
        "sources": {
            "latency_energy": f"{shown(trace)} ({sidecar['gpu_name']}, weights {sidecar['weights']}, {sidecar['date']})",
            "quality": quality["source"],
        },
        "latency_s": _cost_block(lat_fit),
        "energy_j": {**_cost_block(en_fit), "basis": "gross"},
        "batch_sizes": sorted(int(v) for v in rows["batch"].unique()),
        "idle_power_w": _sig(float(idle.median())) if len(idle) else None,
        "idle_power_source": idle_note,
        "quality": quality,
        "fit": {
            "heldout_steps": sorted(int(v) for v in set(heldout) & set(rows["steps"].astype(int))),
            "heldout_requested": sorted(int(v) for v in heldout),
            "latency_mape": _heldout_mape(lat_rep),
            "energy_mape": _heldout_mape(en_rep),
            "heldout_method": (
                "the held-out step counts"
                if lat_rep["heldout"]["n"]
                else "none of the requested held-out steps is in the trace: leave-one-step-out error instead"
            ),
            "latency": lat_rep,
            "energy": en_rep,
            "scheduler": str(scheduler),
            "energy_basis": ENERGY_BASIS_NOTE,
            "notes": (
                f"non-negative least squares on relative error over {int((~is_out).sum())} ok rows of "
                f"scheduler {scheduler} at {resolution} px ({groups} scheduler/resolution group(s) in the "
                "trace); held-out step counts excluded from the fit"
            ),
        },
        "assumptions": assumptions,
    }
    points = [
        CostPoint(int(si), int(bi), float(li), float(ei) if hi else None, bool(oi))
        for si, bi, li, ei, hi, oi in zip(s, b, lat, energy, has_e, is_out, strict=True)
    ]
    return card, points


def _measured_cost(s: np.ndarray, b: np.ndarray, y: np.ndarray, is_out: np.ndarray) -> tuple[CostFit, dict]:
    """Fit on the rows not held out; report in-sample, held-out and leave-one-step-out errors."""
    fit = fit_cost(s[~is_out], b[~is_out], y[~is_out])
    return fit, {
        "in_sample": error_summary(fit.predict(s[~is_out], b[~is_out]), y[~is_out]),
        "heldout": error_summary(fit.predict(s[is_out], b[is_out]), y[is_out]),
        "leave_one_step_out": leave_one_step_out(s[~is_out], b[~is_out], y[~is_out]),
    }


def _heldout_mape(report: dict) -> float | None:
    return report["heldout"]["mape"] if report["heldout"]["n"] else report["leave_one_step_out"]["mape"]


def calibrate(traces_dir: Path, out_dir: Path, heldout: Sequence[int], plots: bool) -> list[Path]:
    """Write one card per (gpu, model, mode) of the traces under ``traces_dir``."""
    traces = find_traces(traces_dir)
    if not traces:
        raise CalibrationError(
            f"no profile traces found under {traces_dir} (expected <gpu>/<model>.csv; use --cited to build "
            "cards from published figures)"
        )
    written, skipped = [], []
    for trace in tqdm(traces, desc="calibrating"):
        try:
            made = measured_cards(trace, heldout)
        except CalibrationError as exc:
            # One unusable trace (e.g. a CPU smoke run without energy) must not block the others' cards.
            print(f"skipped: {exc}", file=sys.stderr)
            skipped.append(str(exc))
            continue
        written += [_write_card(card, points, out_dir, plots) for card, points in made]
    if not written:
        raise CalibrationError(
            f"no card could be made from the {len(traces)} trace(s) under {traces_dir}: {skipped[0]}"
        )
    return written


# --- output -------------------------------------------------------------------------------------------------


def _write_card(card: dict, points: list[CostPoint], out_dir: Path, plots: bool) -> Path:
    name = card_filename(card["gpu"], card["model"], card["mode"])
    card_from_dict(card, f"<new card {name}>")  # never write a card the twin would refuse
    path = write_json_atomic(Path(out_dir) / name, card)
    if plots:
        from twin.card_plots import plot_card  # matplotlib only when plots are asked for

        plot_card(card, points, Path(out_dir) / PLOTS_SUBDIR / f"{path.stem}.png")
    return path


def _sig(value: float, digits: int = 6) -> float:
    return float(f"{value:.{digits}g}")


def _rounded(values: dict[str, float]) -> dict[str, float]:
    return {k: _sig(v) for k, v in values.items()}


def _parse_steps(text: str) -> tuple[int, ...]:
    try:
        steps = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--heldout-steps must be comma-separated integers, got {text!r}"
        ) from None
    if any(s < 1 for s in steps):
        raise argparse.ArgumentTypeError(f"--heldout-steps must be positive, got {text!r}")
    return steps


class _Parser(argparse.ArgumentParser):
    """argparse that reports bad arguments in one line (no usage block), exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"error: {message} (see --help)", file=sys.stderr)
        raise SystemExit(2)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = _Parser(prog="python -m twin.calibrate", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--traces", type=Path, default=DEFAULT_TRACES, help="folder of <gpu>/<model>.csv traces"
    )
    parser.add_argument("--out", type=Path, default=CARDS_DIR, help="folder the cards are written to")
    parser.add_argument(
        "--heldout-steps", type=_parse_steps, default=DEFAULT_HELDOUT, help="step counts left out of the fit"
    )
    parser.add_argument("--plots", action="store_true", help="also write PNG plots under <out>/plots/")
    parser.add_argument(
        "--cited",
        action="store_true",
        help="build cards from the published figures (twin.cited) instead of traces",
    )
    return parser.parse_args(argv)


def fit_table(cards: Sequence[Path]) -> str:
    """A Markdown table of how well each written card's linear cost model fits its trace (the cards' ``fit``);
    where no held-out step count was measured, the held-out columns give the leave-one-step-out errors."""

    def pct(errors: dict) -> str:
        return "n/a" if errors["mape"] is None else f"{errors['mape']:.1f} % ({errors['max_abs_pct']:.0f} %)"

    def held(report: dict) -> str:
        if report["heldout"]["n"]:
            return pct(report["heldout"])
        return f"{pct(report['leave_one_step_out'])}, leave-one-step-out"

    lines = [
        "| card | latency in-sample MAPE | latency held-out MAPE (max) | energy in-sample MAPE "
        "| energy held-out MAPE (max) | points fitted / held out |",
        "|---|---|---|---|---|---|",
    ]
    for path in cards:
        fit = json.loads(Path(path).read_text())["fit"]
        lat, en = fit["latency"], fit["energy"]
        cells = [
            f"{lat['in_sample']['mape']:.1f} %",
            held(lat),
            f"{en['in_sample']['mape']:.1f} %",
            held(en),
            f"{lat['in_sample']['n']} / {lat['heldout']['n']}",
        ]
        lines.append(f"| {Path(path).stem} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.cited:
            written = build_cited_cards(args.out, args.plots)
        else:
            written = calibrate(args.traces, args.out, args.heldout_steps, args.plots)
    except (CalibrationError, FitError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    config = {
        "command": "python -m twin.calibrate " + " ".join(sys.argv[1:] if argv is None else argv),
        "traces": None if args.cited else shown(args.traces),
        "heldout_steps": list(args.heldout_steps),
        "cards": [p.name for p in written],
    }
    write_json_atomic(
        Path(args.out) / ("calibration-config-cited.json" if args.cited else "calibration-config.json"),
        config,
    )
    for path in written:
        print(path)
    if not args.cited:
        print(fit_table(written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
