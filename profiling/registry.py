"""The model registry: hub id, pipeline, native resolution, default scheduler/guidance and architecture configs
of every text-to-image model the profiler knows, so `--weights random` can rebuild the real architecture offline."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class UnknownModelError(ValueError):
    """A model name that is not in the registry (the message lists the known ones)."""


# The architecture configs below mirror the `config.json` / `scheduler_config.json` files of each hub repository
# (named in `hub_id`), written from the public files as known to the author, not downloaded here (no hub access).
# tests/profiling/test_registry.py checks the parameter counts they give against the published totals.

_SCALED_LINEAR = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
}

_SD_VAE = {  # AutoencoderKL of SD 1.x / 2.x / SDXL (SDXL: scaling_factor 0.13025, force_upcast)
    "in_channels": 3,
    "out_channels": 3,
    "latent_channels": 4,
    "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "act_fn": "silu",
    "scaling_factor": 0.18215,
}

_CLIP_L = {  # openai/clip-vit-large-patch14 text tower (SD 1.x, SDXL encoder 1, SD3 encoder 1)
    "vocab_size": 49408,
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_attention_heads": 12,
    "num_hidden_layers": 12,
    "max_position_embeddings": 77,
    "hidden_act": "quick_gelu",
    "projection_dim": 768,
}

_OPENCLIP_H = {  # laion OpenCLIP ViT-H/14 text tower, last layer dropped (SD 2.x: 23 of 24 layers)
    "vocab_size": 49408,
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "num_attention_heads": 16,
    "num_hidden_layers": 23,
    "max_position_embeddings": 77,
    "hidden_act": "gelu",
    "projection_dim": 512,
}

_OPENCLIP_BIGG = {  # laion OpenCLIP ViT-bigG/14 text tower (SDXL encoder 2, SD3 encoder 2)
    "vocab_size": 49408,
    "hidden_size": 1280,
    "intermediate_size": 5120,
    "num_attention_heads": 20,
    "num_hidden_layers": 32,
    "max_position_embeddings": 77,
    "hidden_act": "gelu",
    "projection_dim": 1280,
}

_T5_XXL = {  # google/t5-v1_1-xxl encoder (SD3 text_encoder_3)
    "vocab_size": 32128,
    "d_model": 4096,
    "d_kv": 64,
    "d_ff": 10240,
    "num_layers": 24,
    "num_heads": 64,
    "relative_attention_num_buckets": 32,
    "relative_attention_max_distance": 128,
    "feed_forward_proj": "gated-gelu",
    "layer_norm_epsilon": 1e-6,
    "is_encoder_decoder": False,
    "use_cache": False,
}

_SD15_UNET = {
    "sample_size": 64,
    "in_channels": 4,
    "out_channels": 4,
    "layers_per_block": 2,
    "block_out_channels": [320, 640, 1280, 1280],
    "down_block_types": ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
    "up_block_types": ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3,
    "cross_attention_dim": 768,
    "attention_head_dim": 8,
}

_SD21_UNET = {
    **_SD15_UNET,
    "sample_size": 96,
    "cross_attention_dim": 1024,
    "attention_head_dim": [5, 10, 20, 20],
    "use_linear_projection": True,
    "upcast_attention": True,
}

_SDXL_UNET = {
    "sample_size": 128,
    "in_channels": 4,
    "out_channels": 4,
    "layers_per_block": 2,
    "block_out_channels": [320, 640, 1280],
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    "transformer_layers_per_block": [1, 2, 10],
    "cross_attention_dim": 2048,
    "attention_head_dim": [5, 10, 20],
    "use_linear_projection": True,
    "addition_embed_type": "text_time",
    "addition_time_embed_dim": 256,
    "projection_class_embeddings_input_dim": 2816,
}

# SD3Transformer2DModel, "MMDiT-X" of stabilityai/stable-diffusion-3.5-medium: 2.243 B parameters plus a 226.5 M
# positional-embedding buffer; with VAE and both CLIPs 3,371,793,763, KerasHub's published preset count (traces/README.md).
_SD35M_TRANSFORMER = {
    "sample_size": 128,
    "patch_size": 2,
    "in_channels": 16,
    "out_channels": 16,
    "num_layers": 24,
    "attention_head_dim": 64,
    "num_attention_heads": 24,
    "joint_attention_dim": 4096,
    "caption_projection_dim": 1536,
    "pooled_projection_dim": 2048,
    "pos_embed_max_size": 384,
    "qk_norm": "rms_norm",
    "dual_attention_layers": list(range(13)),
}

_SD3_VAE = {
    **_SD_VAE,
    "latent_channels": 16,
    "scaling_factor": 1.5305,
    "shift_factor": 0.0609,
    "use_quant_conv": False,
    "use_post_quant_conv": False,
    "force_upcast": True,
}

# tiny: an SD-1.x-shaped pipeline of about a million parameters for CPU tests (sizes chosen here, assumption).
_TINY_UNET = {
    "sample_size": 16,
    "in_channels": 4,
    "out_channels": 4,
    "layers_per_block": 1,
    "block_out_channels": [32, 64],
    "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
    "cross_attention_dim": 32,
    "attention_head_dim": 8,
    "norm_num_groups": 32,
}
_TINY_VAE = {**_SD_VAE, "block_out_channels": [16, 32], "layers_per_block": 1, "norm_num_groups": 8}
_TINY_VAE["down_block_types"] = ["DownEncoderBlock2D"] * 2
_TINY_VAE["up_block_types"] = ["UpDecoderBlock2D"] * 2
_TINY_TEXT = {
    "vocab_size": 1000,
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_attention_heads": 4,
    "num_hidden_layers": 2,
    "max_position_embeddings": 77,
    "hidden_act": "quick_gelu",
    "projection_dim": 32,
    # The legacy ids of SD 1.x text-encoder configs (pooling then takes the highest id, the tokenizer's EOS).
    "bos_token_id": 0,
    "eos_token_id": 2,
    "pad_token_id": 1,
}


@dataclass(frozen=True)
class Component:
    """One pipeline component built from a config: ``kind`` names the builder in profiling.pipelines."""

    kind: str  # "unet", "sd3-transformer", "vae", "clip-text", "clip-text-proj", "t5", "tokenizer"
    config: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelSpec:
    """What the profiler needs to know of one model."""

    name: str
    hub_id: str
    pipeline: str  # diffusers pipeline class name
    resolution: int  # native image side, pixels
    scheduler: str  # default scheduler class name
    scheduler_config: dict[str, Any]
    guidance_scale: float  # default guidance; <= 1 means classifier-free guidance off (turbo models)
    cuda_dtype: str  # the precision a service runs it in on a GPU
    components: dict[str, Component]
    call_kwargs: dict[str, Any] = field(default_factory=dict)  # extra pipeline-call arguments

    @property
    def config_tag(self) -> str:
        """How a random-weights run names its configs in the trace: `random-init:<tag>`."""
        return f"profiling.registry:{self.name}" + (f"@{self.hub_id}" if self.hub_id else "")


def _sd_components(unet: dict, vae: dict, text: dict, text_kind: str = "clip-text") -> dict[str, Component]:
    return {
        "unet": Component("unet", unet),
        "vae": Component("vae", vae),
        "text_encoder": Component(text_kind, text),
        "tokenizer": Component("tokenizer", {"model_max_length": 77}),
    }


def _sdxl_components(unet: dict) -> dict[str, Component]:
    return {
        "unet": Component("unet", unet),
        "vae": Component("vae", {**_SD_VAE, "scaling_factor": 0.13025, "force_upcast": True}),
        "text_encoder": Component("clip-text", _CLIP_L),
        "text_encoder_2": Component("clip-text-proj", _OPENCLIP_BIGG),
        "tokenizer": Component("tokenizer", {"model_max_length": 77}),
        "tokenizer_2": Component("tokenizer", {"model_max_length": 77}),
    }


_MODELS: tuple[ModelSpec, ...] = (
    ModelSpec(
        name="sd-1.5",
        hub_id="stable-diffusion-v1-5/stable-diffusion-v1-5",
        pipeline="StableDiffusionPipeline",
        resolution=512,
        scheduler="PNDMScheduler",
        scheduler_config={
            **_SCALED_LINEAR,
            "skip_prk_steps": True,
            "set_alpha_to_one": False,
            "steps_offset": 1,
        },
        guidance_scale=7.5,
        cuda_dtype="float16",
        components=_sd_components(_SD15_UNET, _SD_VAE, _CLIP_L),
    ),
    ModelSpec(
        name="sd-2.1",
        hub_id="stabilityai/stable-diffusion-2-1",
        pipeline="StableDiffusionPipeline",
        resolution=768,
        scheduler="DDIMScheduler",
        scheduler_config={
            **_SCALED_LINEAR,
            "prediction_type": "v_prediction",
            "clip_sample": False,
            "set_alpha_to_one": False,
            "steps_offset": 1,
        },
        guidance_scale=7.5,
        cuda_dtype="float16",
        components=_sd_components(_SD21_UNET, _SD_VAE, _OPENCLIP_H),
    ),
    ModelSpec(
        name="sdxl",
        hub_id="stabilityai/stable-diffusion-xl-base-1.0",
        pipeline="StableDiffusionXLPipeline",
        resolution=1024,
        scheduler="EulerDiscreteScheduler",
        scheduler_config={**_SCALED_LINEAR, "steps_offset": 1, "timestep_spacing": "leading"},
        guidance_scale=5.0,
        cuda_dtype="float16",
        components=_sdxl_components(_SDXL_UNET),
    ),
    ModelSpec(
        name="sd3.5-medium",
        hub_id="stabilityai/stable-diffusion-3.5-medium",
        pipeline="StableDiffusion3Pipeline",
        resolution=1024,
        scheduler="FlowMatchEulerDiscreteScheduler",
        scheduler_config={"num_train_timesteps": 1000, "shift": 3.0},
        guidance_scale=7.0,  # the diffusers pipeline's default; any value > 1 costs the same (CFG doubles the batch)
        cuda_dtype="bfloat16",  # as the hub model card runs it
        components={
            "transformer": Component("sd3-transformer", _SD35M_TRANSFORMER),
            "vae": Component("vae", _SD3_VAE),
            "text_encoder": Component("clip-text-proj", _CLIP_L),
            "text_encoder_2": Component("clip-text-proj", _OPENCLIP_BIGG),
            "text_encoder_3": Component("t5", _T5_XXL),
            "tokenizer": Component("tokenizer", {"model_max_length": 77}),
            "tokenizer_2": Component("tokenizer", {"model_max_length": 77}),
            # T5's own SentencePiece tokenizer is not available offline; the local BPE tokenizer padded to the
            # pipeline's max_sequence_length (256) gives the T5 encoder the real sequence length, which sets its cost.
            "tokenizer_3": Component("tokenizer", {"model_max_length": 256}),
        },
        call_kwargs={"max_sequence_length": 256},
    ),
    ModelSpec(
        name="sd-turbo",
        hub_id="stabilityai/sd-turbo",
        pipeline="StableDiffusionPipeline",
        resolution=512,
        scheduler="EulerDiscreteScheduler",
        scheduler_config={**_SCALED_LINEAR, "steps_offset": 1, "timestep_spacing": "trailing"},
        guidance_scale=0.0,
        cuda_dtype="float16",
        components=_sd_components({**_SD21_UNET, "sample_size": 64}, _SD_VAE, _OPENCLIP_H),
    ),
    ModelSpec(
        name="sdxl-turbo",
        hub_id="stabilityai/sdxl-turbo",
        pipeline="StableDiffusionXLPipeline",
        resolution=512,
        scheduler="EulerAncestralDiscreteScheduler",
        scheduler_config={**_SCALED_LINEAR, "steps_offset": 1, "timestep_spacing": "trailing"},
        guidance_scale=0.0,
        cuda_dtype="float16",
        components=_sdxl_components({**_SDXL_UNET, "sample_size": 64}),
    ),
    ModelSpec(
        name="tiny",
        hub_id="",  # none: built from configs for tests
        pipeline="StableDiffusionPipeline",
        resolution=32,
        scheduler="PNDMScheduler",
        scheduler_config={
            **_SCALED_LINEAR,
            "skip_prk_steps": True,
            "set_alpha_to_one": False,
            "steps_offset": 1,
        },
        guidance_scale=7.5,
        cuda_dtype="float32",
        components=_sd_components(_TINY_UNET, _TINY_VAE, _TINY_TEXT),
    ),
)

MODELS: dict[str, ModelSpec] = {m.name: m for m in _MODELS}


def get_model(name: str) -> ModelSpec:
    """The registry entry for ``name``; a clear error listing the known names otherwise."""
    try:
        return MODELS[name]
    except KeyError:
        raise UnknownModelError(f"unknown model {name!r}; known: {', '.join(MODELS)}") from None
