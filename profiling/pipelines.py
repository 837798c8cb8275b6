"""Build a diffusers text-to-image pipeline for a registry model: pretrained weights from the hub or a local copy,
or the same architecture with random weights from its configs (offline), with a scheduler swap and execution modes."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import diffusers
import torch
import transformers

from profiling.registry import Component, ModelSpec

ASSETS = Path(__file__).resolve().parent / "assets"
MODES = ("eager", "compile")
#: torch.compile of the denoiser with CUDA graphs ("reduce-overhead"): at batch 1 an eager pipeline on an H100 is
#: bound by kernel launches, which graphs remove. No max-autotune: its per-shape GEMM search takes minutes, more
#: than a device session can spend. Compilation happens in the warm-up calls and is not timed.
COMPILE_OPTIONS = {"mode": "reduce-overhead", "fullgraph": False}
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


class PipelineBuildError(ValueError):
    """A pipeline that cannot be built as asked (weights absent, unknown scheduler or mode, ...)."""


def local_tokenizer(model_max_length: int = 77) -> transformers.CLIPTokenizer:
    """The project's tiny offline BPE tokenizer (profiling/assets, see make_tokenizer.py)."""
    return transformers.CLIPTokenizer(
        vocab=str(ASSETS / "vocab.json"), merges=str(ASSETS / "merges.txt"), model_max_length=model_max_length
    )


def _build_component(comp: Component) -> Any:
    cfg = comp.config
    if comp.kind == "unet":
        return diffusers.UNet2DConditionModel.from_config(cfg)
    if comp.kind == "sd3-transformer":
        return diffusers.SD3Transformer2DModel.from_config(cfg)
    if comp.kind == "vae":
        return diffusers.AutoencoderKL.from_config(cfg)
    if comp.kind == "clip-text":
        return transformers.CLIPTextModel(transformers.CLIPTextConfig(**cfg))
    if comp.kind == "clip-text-proj":
        return transformers.CLIPTextModelWithProjection(transformers.CLIPTextConfig(**cfg))
    if comp.kind == "t5":
        return transformers.T5EncoderModel(transformers.T5Config(**cfg))
    if comp.kind == "tokenizer":
        return local_tokenizer(cfg.get("model_max_length", 77))
    raise PipelineBuildError(f"unknown component kind {comp.kind!r}")


def random_components(
    spec: ModelSpec, device: str | torch.device = "cpu", dtype: torch.dtype | None = None
) -> dict[str, Any]:
    """Every component of ``spec`` built from its config with random weights. Modules are created on ``device``
    directly (why: initialising billions of parameters is minutes on a CPU, seconds on a GPU) and cast one by one
    (why: SD3.5's 8 B parameters in float32 at once would be 32 GB)."""
    parts = {}
    with torch.device(device):
        for name, comp in spec.components.items():
            part = _build_component(comp)
            parts[name] = part.to(dtype) if dtype is not None and isinstance(part, torch.nn.Module) else part
    for name, part in parts.items():
        vocab = getattr(getattr(part, "config", None), "vocab_size", None)
        tok = parts.get(name.replace("text_encoder", "tokenizer"))
        if vocab is not None and tok is not None and len(tok) > vocab:
            raise PipelineBuildError(f"{spec.name}: local tokenizer has {len(tok)} ids, {name} only {vocab}")
    return parts


def count_parameters(parts: dict[str, Any]) -> dict[str, int]:
    """Parameter count of each torch module among the components."""
    return {
        k: sum(p.numel() for p in v.parameters()) for k, v in parts.items() if isinstance(v, torch.nn.Module)
    }


def _pipeline_class(spec: ModelSpec) -> type:
    return getattr(diffusers, spec.pipeline)


def _scheduler(spec: ModelSpec, name: str | None, base_config: dict | None = None) -> Any:
    cls_name = name or spec.scheduler
    cls = getattr(diffusers, cls_name, None)
    if cls is None or not cls_name.endswith("Scheduler"):
        raise PipelineBuildError(f"unknown scheduler {cls_name!r} (a diffusers scheduler class name)")
    return cls.from_config(base_config if base_config is not None else spec.scheduler_config)


def _extra_init_kwargs(pipe_cls: type) -> dict[str, Any]:
    """Turn the safety checker off where the pipeline has one (why: it is a separate model, not the generation)."""
    if pipe_cls is diffusers.StableDiffusionPipeline:
        return {"safety_checker": None, "feature_extractor": None, "requires_safety_checker": False}
    return {}


def build_random(spec: ModelSpec, device: str, dtype: torch.dtype, scheduler: str | None = None) -> Any:
    """The pipeline of ``spec`` with random weights from its configs."""
    parts = random_components(spec, device, dtype)
    parts["scheduler"] = _scheduler(spec, scheduler)
    pipe_cls = _pipeline_class(spec)
    return pipe_cls(**parts, **_extra_init_kwargs(pipe_cls))


def build_pretrained(
    spec: ModelSpec,
    device: str,
    dtype: torch.dtype,
    scheduler: str | None = None,
    model_path: str | None = None,
) -> Any:
    """The pipeline of ``spec`` from its hub id (or ``model_path``); a one-line error when it cannot be had."""
    source = model_path or spec.hub_id
    if model_path is not None and not Path(model_path).is_dir():
        raise PipelineBuildError(f"--model-path {model_path}: no such directory")
    pipe_cls = _pipeline_class(spec)
    verbosity = diffusers.utils.logging.get_verbosity()
    diffusers.utils.logging.set_verbosity_error()  # why: the hub client's retry chatter is not our one-line error
    try:
        with warnings.catch_warnings():  # torch_dtype: deprecated in new diffusers, the only name in old ones
            warnings.simplefilter("ignore", FutureWarning)
            pipe = pipe_cls.from_pretrained(source, torch_dtype=dtype, **_extra_init_kwargs(pipe_cls))
    except (OSError, ValueError) as exc:
        offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")
        why = "offline (HF_HUB_OFFLINE set) and not in the local cache" if offline else type(exc).__name__
        raise PipelineBuildError(
            f"cannot load {spec.name} weights from {source!r} ({why}); point --model-path at a local copy "
            "of the pipeline, or use --weights random"
        ) from None
    finally:
        diffusers.utils.logging.set_verbosity(verbosity)
    if scheduler is not None:
        pipe.scheduler = _scheduler(spec, scheduler, pipe.scheduler.config)
    return pipe.to(device)


def apply_mode(pipe: Any, mode: str) -> Any:
    """Apply an execution mode: ``eager`` as built, ``compile`` torch.compile of the denoiser."""
    if mode not in MODES:
        raise PipelineBuildError(f"unknown mode {mode!r}; known: {', '.join(MODES)}")
    if mode == "compile":
        name = "unet" if hasattr(pipe, "unet") else "transformer"
        setattr(pipe, name, torch.compile(getattr(pipe, name), **COMPILE_OPTIONS))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def build_pipeline(
    spec: ModelSpec,
    weights: str,
    device: str,
    dtype: torch.dtype,
    scheduler: str | None = None,
    model_path: str | None = None,
    mode: str = "eager",
) -> Any:
    """Build, move and mode-wrap the pipeline of ``spec`` (``weights`` is ``pretrained`` or ``random``)."""
    if weights == "random":
        pipe = build_random(spec, device, dtype, scheduler)
    elif weights == "pretrained":
        pipe = build_pretrained(spec, device, dtype, scheduler, model_path)
    else:
        raise PipelineBuildError(f"unknown --weights {weights!r}; use pretrained or random")
    return apply_mode(pipe, mode)


def weights_label(spec: ModelSpec, weights: str, model_path: str | None) -> str:
    """The trace's `weights` cell: ``pretrained:<id or path>`` or ``random-init:<config>``."""
    if weights == "random":
        return f"random-init:{spec.config_tag}"
    return f"pretrained:{model_path or spec.hub_id}"
