"""The profile-trace contract: the columns one measured (model, scheduler, resolution, batch, steps, mode)
point carries, shared by the profiler that writes traces and the calibration that reads them."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

#: Columns that identify one measured point; a sweep is resumable on this key.
KEY_COLUMNS: tuple[str, ...] = ("model", "scheduler", "resolution", "batch", "steps", "mode")

#: Every column of a profile trace, in order, with its dtype. Empty cells mean "not measured" (never 0).
COLUMNS: dict[str, str] = {
    "model": "string",  # registry name, e.g. "sd-1.5"
    "scheduler": "string",  # diffusers scheduler class name, e.g. "PNDMScheduler"
    "resolution": "Int64",  # image side in pixels (height == width)
    "batch": "Int64",  # images per pipeline call
    "steps": "Int64",  # denoising steps
    "mode": "string",  # execution mode: "eager", "compile", "cuda-graph", ...
    "guidance_scale": "Float64",  # classifier-free guidance scale (<= 1 means CFG off)
    "status": "string",  # "ok", "oom" (out of memory at this batch), "skipped-oom" (a smaller batch ran OOM)
    "n_batches": "Int64",  # pipeline calls inside the measured window
    "n_images": "Int64",  # images generated inside the measured window
    "window_s": "Float64",  # wall-clock length of the measured window (CUDA-synchronised edges)
    "latency_batch_mean_s": "Float64",  # per pipeline call
    "latency_batch_std_s": "Float64",
    "latency_batch_p50_s": "Float64",
    "latency_batch_p95_s": "Float64",
    "latency_image_mean_s": "Float64",  # latency_batch_mean_s / batch
    "energy_window_j": "Float64",  # NVML total-energy counter delta over the window (empty if not measured)
    "energy_image_j": "Float64",  # energy_window_j / n_images (gross, idle included)
    "energy_image_net_j": "Float64",  # (energy_window_j - idle_power_w * window_s) / n_images
    "energy_integrated_j": "Float64",  # trapezoid of sampled power over the window (cross-check)
    "energy_check_rel": "Float64",  # |counter - integrated| / counter
    "energy_short_window": "boolean",  # window shorter than the counter can resolve (flag, value kept)
    "power_mean_w": "Float64",  # energy_window_j / window_s
    "idle_power_w": "Float64",  # measured idle power of the GPU before the sweep
    "temperature_c_start": "Float64",
    "temperature_c_end": "Float64",
    "sm_clock_mhz_mean": "Float64",
    "power_limit_w": "Float64",
    "clip_score_mean": "Float64",  # torchmetrics CLIPScore (0-100); empty for random weights
    "clip_score_std": "Float64",
    "clip_model": "string",  # CLIP model used for the score (hub id or path); empty when not scored
    "weights": "string",  # "pretrained:<id or path>" or "random-init:<config>"
    "device": "string",  # "cuda:0 NVIDIA H100 80GB HBM3", "cpu"
    "measured_at": "string",  # ISO-8601 UTC time the window closed
}


class TraceSchemaError(ValueError):
    """A profile trace that does not follow the contract (message names the file and the problem)."""


def empty_profile() -> pd.DataFrame:
    """An empty trace with the contract's columns and dtypes."""
    return pd.DataFrame({name: pd.Series(dtype=dtype) for name, dtype in COLUMNS.items()})


def coerce_profile(frame: pd.DataFrame, source: str = "<frame>") -> pd.DataFrame:
    """Return ``frame`` with exactly the contract's columns, in order and typed; raise on missing columns."""
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise TraceSchemaError(f"{source}: profile trace lacks column(s) {', '.join(missing)}")
    out = frame.loc[:, list(COLUMNS)].copy()
    for name, dtype in COLUMNS.items():
        try:
            out[name] = out[name].astype(dtype)
        except (TypeError, ValueError) as exc:
            raise TraceSchemaError(f"{source}: column {name!r} is not {dtype}: {exc}") from None
    dup = out.duplicated(list(KEY_COLUMNS), keep=False)
    if dup.any():
        first = out.loc[dup, list(KEY_COLUMNS)].iloc[0].to_dict()
        raise TraceSchemaError(f"{source}: duplicate measured point {first}")
    return out.reset_index(drop=True)


def read_profile(path: str | Path) -> pd.DataFrame:
    """Read and validate one profile trace CSV."""
    path = Path(path)
    if not path.is_file():
        raise TraceSchemaError(f"{path}: no such profile trace")
    try:
        frame = pd.read_csv(path, keep_default_na=True)
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise TraceSchemaError(f"{path}: not a readable CSV ({exc})") from None
    return coerce_profile(frame, str(path))


def find_traces(traces_dir: str | Path) -> list[Path]:
    """Profile traces laid out as ``<traces_dir>/<gpu-slug>/<model>.csv``, sorted."""
    return sorted(p for p in Path(traces_dir).glob("*/*.csv") if p.is_file())


def sidecar_path(trace_path: str | Path) -> Path:
    """The JSON provenance sidecar that sits beside a trace: ``foo.csv`` -> ``foo.json``."""
    return Path(trace_path).with_suffix(".json")


@dataclass(frozen=True)
class Provenance:
    """What a trace's sidecar must say (other keys are allowed and kept)."""

    gpu_name: str
    driver: str | None
    power_limit_w: float | None
    weights: str  # "pretrained:<id or path>" or "random-init:<config>"
    prompt_set: str
    date: str
    command: str
    library_versions: dict[str, str]


def read_sidecar(trace_path: str | Path) -> dict:
    """Read the provenance sidecar of a trace; raise if it is absent or lacks a required key."""
    path = sidecar_path(trace_path)
    if not path.is_file():
        raise TraceSchemaError(f"{path}: trace has no provenance sidecar")
    data = json.loads(path.read_text(encoding="utf-8"))
    missing = [k for k in Provenance.__dataclass_fields__ if k not in data]
    if missing:
        raise TraceSchemaError(f"{path}: sidecar lacks {', '.join(missing)}")
    return data
