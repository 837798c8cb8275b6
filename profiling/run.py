"""`python -m profiling.run`: measure a text-to-image model over a sweep of denoising steps and batch sizes
(latency, NVML energy, CLIP score) and write a profile trace with its provenance sidecar."""

from __future__ import annotations

import argparse
import importlib.metadata
import platform
import re
import shlex
import sys
from datetime import UTC, datetime
from typing import NoReturn

from profiling.errors import ProfilingSetupError
from profiling.registry import UnknownModelError, get_model

DEFAULT_CLIP = "openai/clip-vit-large-patch14"  # torchmetrics' default CLIPScore model
#: torch.cuda device names -> the slugs the project's trace folders use.
GPU_SLUGS = {
    r"H100.*HBM3|H100 SXM": "h100-sxm5-80gb",
    r"H100.*PCIe": "h100-pcie-80gb",
    r"H200": "h200-141gb",
    r"A100.*SXM4.*40GB": "a100-sxm4-40gb",
    r"A100.*SXM4.*80GB": "a100-sxm4-80gb",
}
LIBRARIES = (
    "torch",
    "diffusers",
    "transformers",
    "torchmetrics",
    "nvidia-ml-py",
    "numpy",
    "pandas",
    "aigc-twin",
)


def parse_int_list(text: str, flag: str) -> list[int]:
    """``"1,2,5"`` -> ``[1, 2, 5]`` (sorted, unique); a clear error on anything else."""
    parts = [p.strip() for p in text.split(",")]
    if not text.strip() or any(not re.fullmatch(r"\d+", p) for p in parts):
        raise ProfilingSetupError(f"{flag} {text!r}: expected comma-separated positive integers, e.g. 1,2,4")
    values = sorted({int(p) for p in parts})
    if values[0] < 1:
        raise ProfilingSetupError(f"{flag} {text!r}: values must be >= 1")
    return values


def gpu_slug(device_name: str | None) -> str:
    """The trace folder name of a device: ``h100-sxm5-80gb``, ..., ``cpu``."""
    if not device_name:
        return "cpu"
    for pattern, slug in GPU_SLUGS.items():
        if re.search(pattern, device_name):
            return slug
    return re.sub(r"[^a-z0-9]+", "-", device_name.lower().replace("nvidia", "")).strip("-")


class _Parser(argparse.ArgumentParser):
    """argparse with the project's one-line error (no usage block) and exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"profiling.run: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m profiling.run", description=__doc__.splitlines()[0])
    p.add_argument(
        "--model", required=True, help="registry name (sd-1.5, sd-2.1, sdxl, sd3.5-medium, ..., tiny)"
    )
    p.add_argument("--weights", choices=("pretrained", "random"), help="default: pretrained; tiny: random")
    p.add_argument("--model-path", help="local pipeline folder to load pretrained weights from")
    p.add_argument("--steps", default="1,2,5,10,20,30,50", help="denoising steps, comma-separated")
    p.add_argument("--batch", default="1,2,4,8", help="batch sizes (images per call), comma-separated")
    p.add_argument("--scheduler", help="diffusers scheduler class name (default: the model's)")
    p.add_argument("--guidance", type=float, help="guidance scale (default: the model's; <= 1 turns CFG off)")
    p.add_argument("--resolution", type=int, help="image side in pixels (default: the model's native one)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--prompts", help="prompt file: plain text one per line, or PartiPrompts TSV")
    p.add_argument("--out", help="trace CSV (default traces/profiles/<gpu-slug>/<model>[-<mode>].csv)")
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    p.add_argument("--dtype", choices=("auto", "float32", "float16", "bfloat16"), default="auto")
    p.add_argument("--mode", choices=("eager", "compile"), default="eager", help="execution mode")
    p.add_argument("--min-window-s", type=float, default=3.0, help="shortest measured window per point")
    p.add_argument("--min-repeats", type=int, default=2, help="fewest pipeline calls per point")
    p.add_argument("--warmup", type=int, default=2, help="unmeasured calls per new batch size")
    p.add_argument(
        "--idle-s", type=float, default=3.0, help="seconds of idle-power measurement before the sweep"
    )
    p.add_argument(
        "--clip-model", default=DEFAULT_CLIP, help="CLIP hub id or local folder for the CLIP score"
    )
    p.add_argument("--clip-images", type=int, default=16, help="images scored per point")
    p.add_argument("--no-clip", action="store_true", help="do not compute the CLIP score")
    p.add_argument("--allow-no-energy", action="store_true", help="run without NVML (energy left empty)")
    p.add_argument("--force", action="store_true", help="re-measure points already in the trace")
    p.add_argument(
        "--max-time-s",
        type=float,
        help="start no point predicted to end after this many seconds from the start of the run (building the pipeline included; resumable)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def library_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


def quiet_libraries() -> None:
    """Only errors from transformers/diffusers loggers (why: their notices drown the progress bar and summary)."""
    import diffusers
    import transformers

    transformers.logging.set_verbosity_error()
    diffusers.utils.logging.set_verbosity_error()


def main(argv: list[str] | None = None) -> int:
    """Parse, run, report; our own errors become one line on stderr and exit code 2."""
    from profiling.errors import user_errors

    args = build_parser().parse_args(argv)
    try:
        # Cheap checks first (why: importing torch and diffusers takes seconds; a typo should not wait for it).
        get_model(args.model)
        parse_int_list(args.steps, "--steps"), parse_int_list(args.batch, "--batch")
        quiet_libraries()
        from profiling.session import run_session

        return run_session(
            args, command=shlex.join(["python", "-m", "profiling.run", *(argv or sys.argv[1:])])
        )
    except (ProfilingSetupError, UnknownModelError) as exc:
        print(f"profiling.run: error: {exc}", file=sys.stderr)
        return 2
    except user_errors() as exc:
        print(f"profiling.run: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("profiling.run: interrupted; measured points are saved, rerun to resume", file=sys.stderr)
        return 130


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


if __name__ == "__main__":
    sys.exit(main())
