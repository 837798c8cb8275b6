"""One profiling session behind `python -m profiling.run`: check the request, build the monitor and pipeline,
run the sweep, and write the provenance sidecar and a summary table."""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from profiling.energy import EnergyMonitor, NoEnergyMonitor, NvmlUnavailableError
from profiling.errors import ProfilingSetupError
from profiling.pipelines import COMPILE_OPTIONS, DTYPES, build_pipeline, count_parameters, weights_label
from profiling.quality import ClipScorer
from profiling.registry import ModelSpec, get_model
from profiling.run import gpu_slug, library_versions, now_iso, parse_int_list
from profiling.sweep import Sweep, SweepConfig, SweepResult, load_existing, measured_keys
from traces.atomic import write_json_atomic
from traces.data_paths import REPO_ROOT
from traces.profile_schema import TraceSchemaError, read_sidecar, sidecar_path
from traces.prompts import load_prompts, prompt_set_name
from traces.revision import code_revision

#: Sidecar keys that must agree between runs appending to one trace (else the rows are not comparable).
CONSISTENT_KEYS = ("gpu_name", "weights", "dtype")


def _check_numbers(args: argparse.Namespace) -> None:
    checks = [
        (args.min_window_s >= 0, "--min-window-s must be >= 0"),
        (args.min_repeats >= 1, "--min-repeats must be >= 1"),
        (args.warmup >= 0, "--warmup must be >= 0"),
        (args.idle_s >= 0, "--idle-s must be >= 0"),
        (args.clip_images >= 1, "--clip-images must be >= 1"),
        (
            args.resolution is None or (args.resolution > 0 and args.resolution % 8 == 0),
            "--resolution: multiple of 8",
        ),
        (args.max_time_s is None or args.max_time_s > 0, "--max-time-s must be > 0"),
    ]
    for ok, message in checks:
        if not ok:
            raise ProfilingSetupError(message)


def resolve_weights(spec: ModelSpec, args: argparse.Namespace) -> str:
    """``pretrained`` or ``random``; tiny has no published weights, so it defaults to random."""
    weights = args.weights or ("random" if spec.name == "tiny" else "pretrained")
    if spec.name == "tiny" and weights == "pretrained" and not args.model_path:
        raise ProfilingSetupError("tiny has no pretrained weights; use --weights random or --model-path DIR")
    return weights


def resolve_device(args: argparse.Namespace, spec: ModelSpec) -> tuple[str, torch.dtype]:
    """The torch device and dtype; a clear error when CUDA is asked for and absent."""
    if args.device == "cuda" and not torch.cuda.is_available():
        raise ProfilingSetupError(
            f"no CUDA GPU on this machine; pass --device cpu to run {spec.name} on the CPU (slow, no energy)"
        )
    device = "cuda:0" if args.device == "cuda" else "cpu"
    name = args.dtype if args.dtype != "auto" else (spec.cuda_dtype if args.device == "cuda" else "float32")
    return device, DTYPES[name]


def make_monitor(args: argparse.Namespace) -> EnergyMonitor | NoEnergyMonitor:
    """NVML energy windows on CUDA; timing-only where that is impossible and --allow-no-energy was given."""
    sync = torch.cuda.synchronize if args.device == "cuda" else None
    if args.device == "cpu":
        if not args.allow_no_energy:
            raise ProfilingSetupError(
                "--device cpu measures no GPU energy; pass --allow-no-energy to time it only"
            )
        return NoEnergyMonitor(sync)
    try:
        return EnergyMonitor(0, sync=sync)
    except NvmlUnavailableError as exc:
        if args.allow_no_energy:
            print(f"profiling.run: warning: {exc}; energy left empty", file=sys.stderr)
            return NoEnergyMonitor(sync)
        raise NvmlUnavailableError(f"{exc}; pass --allow-no-energy to measure latency only") from None


def default_out(spec: ModelSpec, device: str) -> Path:
    name = torch.cuda.get_device_name(0) if device.startswith("cuda") else None
    return REPO_ROOT / "traces" / "profiles" / gpu_slug(name) / f"{spec.name}.csv"


def device_label(device: str) -> str:
    if device.startswith("cuda"):
        return f"{device} {torch.cuda.get_device_name(0)}"
    return "cpu"


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo where there is one (platform.processor() is often empty on Linux)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def provenance(args, spec, device, dtype, monitor, weights, params, command) -> dict[str, Any]:
    """The sidecar: the Provenance contract's fields plus what else this run knows."""
    info = monitor.gpu_info()
    gpu_name = info["gpu_name"] or (torch.cuda.get_device_name(0) if device.startswith("cuda") else None)
    return {
        "gpu_name": gpu_name or f"cpu: {cpu_name()}",
        "driver": info["driver"],
        "power_source": info.get("power_source"),
        "power_limit_w": info["power_limit_w"],
        "weights": weights,
        "prompt_set": prompt_set_name(args.prompts),
        "date": now_iso(),
        "command": command,
        "code_revision": code_revision(ignore=("traces/profiles",)),  # its own output
        "library_versions": library_versions(),
        "model": spec.name,
        "hub_id": spec.hub_id,
        "pipeline": spec.pipeline,
        "dtype": str(dtype).removeprefix("torch."),
        "device": device_label(device),
        "cuda": torch.version.cuda,
        "parameters": params,
        "idle_power_w": monitor.idle_power_w,
        "protocol": {
            "min_window_s": args.min_window_s,
            "min_repeats": args.min_repeats,
            "warmup_calls": args.warmup,
            "idle_s": args.idle_s,
            "output_type": "pt (PIL encoding not timed)",
            "mode": args.mode,
            "compile_options": COMPILE_OPTIONS if args.mode == "compile" else None,
            "clip_model": None if weights.startswith("random") or args.no_clip else args.clip_model,
        },
    }


def check_consistent(out: Path, new: dict[str, Any], force: bool) -> list[dict[str, Any]]:
    """Earlier runs recorded in the sidecar; an error if they measured something not comparable. The old
    sidecar's ``notes`` (remarks on earlier runs) are carried into ``new``."""
    if not sidecar_path(out).is_file():
        return []
    old = read_sidecar(out)
    if old.get("notes"):
        new["notes"] = list(old["notes"])
    for key in CONSISTENT_KEYS:
        if old.get(key) != new.get(key) and not force:
            raise ProfilingSetupError(
                f"{out} was measured with {key}={old.get(key)!r}, this run has {new.get(key)!r}; "
                "use another --out or pass --force"
            )
    runs = old.get("runs", [])
    return runs or [{"date": old.get("date"), "command": old.get("command")}]


def state_ranges(frame: pd.DataFrame) -> dict[str, Any]:
    """Temperature and clock ranges over the measured rows (None when not measured)."""

    def span(*cols: str) -> list[float] | None:
        vals = pd.concat([frame[c] for c in cols]).dropna()
        return [float(vals.min()), float(vals.max())] if len(vals) else None

    return {
        "temperature_c_range": span("temperature_c_start", "temperature_c_end"),
        "sm_clock_mhz_range": span("sm_clock_mhz_mean"),
    }


def summary_table(frame: pd.DataFrame, mode: str) -> str:
    """A short table of this mode's points: latency and energy per image, CLIP score."""
    cols = [
        "steps",
        "batch",
        "status",
        "n_images",
        "latency_image_mean_s",
        "energy_image_j",
        "clip_score_mean",
    ]
    rows = frame[frame["mode"] == mode].sort_values(["steps", "batch"]).loc[:, cols]
    rows = rows.rename(
        columns={"latency_image_mean_s": "s/image", "energy_image_j": "J/image", "clip_score_mean": "CLIP"}
    )
    return rows.to_string(index=False, float_format=lambda v: f"{v:.4g}", na_rep="-")


def sweep_config(args, spec, pipe, weights, prompts, steps, batches, device) -> SweepConfig:
    """The sweep's settings from the command line and the built pipeline."""
    return SweepConfig(
        model=spec.name,
        scheduler=type(pipe.scheduler).__name__,
        resolution=args.resolution or spec.resolution,
        mode=args.mode,
        guidance_scale=spec.guidance_scale if args.guidance is None else args.guidance,
        steps=steps,
        batches=batches,
        prompts=prompts,
        weights=weights,
        device_label=device_label(device),
        seed=args.seed,
        min_window_s=args.min_window_s,
        min_repeats=args.min_repeats,
        warmup=args.warmup,
        clip_images=args.clip_images,
        force=args.force,
        max_time_s=args.max_time_s,
        call_kwargs=dict(spec.call_kwargs),
    )


def run_session(args: argparse.Namespace, command: str) -> int:
    """Everything `python -m profiling.run` does after parsing; returns the exit code."""
    started = time.perf_counter()
    spec = get_model(args.model)
    steps, batches = parse_int_list(args.steps, "--steps"), parse_int_list(args.batch, "--batch")
    _check_numbers(args)
    weights = resolve_weights(spec, args)
    prompts = load_prompts(args.prompts)
    device, dtype = resolve_device(args, spec)
    monitor = make_monitor(args)
    out = Path(args.out) if args.out else default_out(spec, device)
    label = weights_label(spec, weights, args.model_path)
    meta = provenance(args, spec, device, dtype, monitor, label, {}, command)
    this_run = {"date": meta["date"], "command": command, "code_revision": meta["code_revision"]}
    runs = [*check_consistent(out, meta, args.force), this_run]
    if not args.force and nothing_left(out, spec, args, weights, steps, batches):
        monitor.close()  # a resumed sweep with every point in its trace: no pipeline is built (GPU time)
        print(f"{out}: all {len(steps) * len(batches)} point(s) already measured (use --force to re-measure)")
        return 0
    torch.manual_seed(args.seed)
    pipe = build_pipeline(spec, weights, device, dtype, args.scheduler, args.model_path, args.mode)
    meta["parameters"] = count_parameters(
        {k: v for k, v in pipe.components.items() if isinstance(v, torch.nn.Module)}
    )
    meta["idle_power_w"] = monitor.measure_idle(args.idle_s)
    scorer = ClipScorer(args.clip_model, device) if weights == "pretrained" and not args.no_clip else None
    cfg = sweep_config(args, spec, pipe, label, prompts, steps, batches, device)
    # --max-time-s counts from the start of the run: building the pipeline included
    if cfg.max_time_s is not None:
        cfg.max_time_s = max(0.0, cfg.max_time_s - (time.perf_counter() - started))
    write_json_atomic(sidecar_path(out), {**meta, "runs": runs})
    try:
        result = Sweep(pipe, monitor, cfg, out, scorer).run(progress=not args.no_progress)
    finally:  # an interrupted run's sidecar gets its ranges too (its points are in the trace)
        final_sidecar(out, meta, runs)
        monitor.close()
    report(result, out, args.mode)
    return 0


def nothing_left(
    out: Path, spec: ModelSpec, args, weights: str, steps: list[int], batches: list[int]
) -> bool:
    """Whether the trace at ``out`` already holds every (steps, batch) point of this run. Only where the point
    keys are known before building the pipeline: random weights (the registry's scheduler) or --scheduler."""
    scheduler = args.scheduler or (spec.scheduler if weights == "random" else None)
    if scheduler is None or not out.is_file():
        return False
    resolution = args.resolution or spec.resolution
    wanted = {(spec.name, scheduler, resolution, b, s, args.mode) for s in steps for b in batches}
    return wanted <= measured_keys(load_existing(out))


def final_sidecar(out: Path, meta: dict[str, Any], runs: list[dict]) -> None:
    """Rewrite the sidecar with the trace's temperature and clock ranges; a failure here is reported, and never
    replaces the error (or interruption) that ended the sweep."""
    try:
        write_json_atomic(sidecar_path(out), {**meta, **state_ranges(load_existing(out)), "runs": runs})
    except (OSError, TraceSchemaError) as exc:
        print(f"profiling.run: warning: sidecar ranges not written: {exc}", file=sys.stderr)


def report(result: SweepResult, out: Path, mode: str) -> None:
    print(summary_table(result.frame, mode))
    print(
        f"{out}: {result.measured} point(s) measured ({result.oom} out of memory), "
        f"{result.skipped} already there (use --force to re-measure)"
    )
    if result.left:
        print(f"time budget reached: {result.left} point(s) left; rerun the same command to resume")
