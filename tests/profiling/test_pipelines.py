"""Pipeline building: the SDXL and SD3 wiring (two and three text encoders, the T5 tokenizer stand-in at 256
tokens) on scaled-down copies of their registry entries, scheduler swaps, modes and the offline error."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from profiling.pipelines import (
    PipelineBuildError,
    apply_mode,
    build_pipeline,
    build_random,
    local_tokenizer,
    weights_label,
)
from profiling.registry import Component, get_model

CLIP = {"vocab_size": 1000, "hidden_size": 16, "intermediate_size": 32, "num_attention_heads": 2}
CLIP |= {"num_hidden_layers": 1, "max_position_embeddings": 77, "bos_token_id": 0, "eos_token_id": 2}
VAE = {"block_out_channels": [8, 16], "norm_num_groups": 8, "layers_per_block": 1}
VAE |= {"down_block_types": ["DownEncoderBlock2D"] * 2, "up_block_types": ["UpDecoderBlock2D"] * 2}


def shrink(name: str, **configs: dict) -> object:
    """The registry entry with each named component's config updated (same kinds, pipeline and tokenizers)."""
    spec = get_model(name)
    comps = {k: Component(v.kind, {**v.config, **configs.get(k, {})}) for k, v in spec.components.items()}
    return dataclasses.replace(spec, components=comps, resolution=32)


def generate(pipe, spec, steps: int = 1) -> torch.Tensor:
    out = pipe(
        prompt=["a red bicycle"],
        num_inference_steps=steps,
        guidance_scale=spec.guidance_scale,
        height=32,
        width=32,
        output_type="pt",
        **spec.call_kwargs,
    )
    return out.images


def test_sdxl_wiring_with_two_text_encoders():
    unet = {
        "block_out_channels": [32, 64],
        "transformer_layers_per_block": [1, 1],
        "attention_head_dim": [2, 4],
    }
    unet |= {"down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D"], "layers_per_block": 1}
    unet |= {
        "up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D"],
        "sample_size": 16,
        "cross_attention_dim": 32,
    }
    unet |= {"addition_time_embed_dim": 8, "projection_class_embeddings_input_dim": 16 + 6 * 8}
    spec = shrink(
        "sdxl", unet=unet, vae=VAE, text_encoder=CLIP, text_encoder_2={**CLIP, "projection_dim": 16}
    )
    torch.manual_seed(0)
    images = generate(apply_mode(build_random(spec, "cpu", torch.float32), "eager"), spec)
    assert images.shape == (1, 3, 32, 32)


def test_sd3_wiring_with_t5_at_256_tokens(monkeypatch):
    t5 = {"vocab_size": 1000, "d_model": 16, "d_kv": 4, "d_ff": 32, "num_layers": 1, "num_heads": 2}
    dit = {"num_layers": 2, "attention_head_dim": 8, "num_attention_heads": 2, "joint_attention_dim": 16}
    dit |= {
        "caption_projection_dim": 16,
        "pooled_projection_dim": 32,
        "sample_size": 16,
        "pos_embed_max_size": 16,
    }
    dit |= {"dual_attention_layers": [0]}
    clip = {**CLIP, "projection_dim": 16}
    vae = {**VAE, "latent_channels": 16}
    spec = shrink(
        "sd3.5-medium", transformer=dit, vae=vae, text_encoder=clip, text_encoder_2=clip, text_encoder_3=t5
    )
    torch.manual_seed(0)
    pipe = apply_mode(build_random(spec, "cpu", torch.float32), "eager")
    seen = []
    real_forward = pipe.text_encoder_3.forward
    monkeypatch.setattr(
        pipe.text_encoder_3, "forward", lambda ids, **kw: seen.append(ids.shape) or real_forward(ids)
    )
    assert generate(pipe, spec).shape == (1, 3, 32, 32)
    assert seen and seen[0][-1] == 256  # the real SD3 T5 sequence length, which sets the encoder's cost


def test_local_tokenizer_pads_to_the_real_lengths_within_the_vocab():
    tok = local_tokenizer(77)
    ids = tok(["a watercolour of a fox"], padding="max_length", max_length=77, return_tensors="pt").input_ids
    assert ids.shape == (1, 77) and int(ids.max()) < len(tok) < 1000  # tiny's text vocab is 1000
    assert len(tok) < 32128 and len(tok) < 49408  # T5 and CLIP vocabularies of the real encoders


def test_scheduler_swap_and_unknown_scheduler():
    spec = get_model("tiny")
    pipe = build_pipeline(spec, "random", "cpu", torch.float32, scheduler="EulerDiscreteScheduler")
    assert type(pipe.scheduler).__name__ == "EulerDiscreteScheduler"
    with pytest.raises(PipelineBuildError, match="unknown scheduler"):
        build_pipeline(spec, "random", "cpu", torch.float32, scheduler="AutoencoderKL")


def test_compile_mode_wraps_the_denoiser_and_unknown_mode_fails():
    pipe = build_random(get_model("tiny"), "cpu", torch.float32)
    apply_mode(pipe, "compile")
    assert type(pipe.unet).__name__ == "OptimizedModule"  # compiled lazily at the first call (GPU runs)
    with pytest.raises(PipelineBuildError, match="unknown mode"):
        apply_mode(pipe, "tensorrt")


def test_pretrained_from_missing_path_and_labels(tmp_path):
    spec = get_model("sd-1.5")
    with pytest.raises(PipelineBuildError, match="no such directory"):
        build_pipeline(spec, "pretrained", "cpu", torch.float32, model_path=str(tmp_path / "absent"))
    assert weights_label(spec, "random", None) == f"random-init:profiling.registry:sd-1.5@{spec.hub_id}"
    assert weights_label(spec, "pretrained", "/models/sd15") == "pretrained:/models/sd15"


def test_committed_tokenizer_files_are_what_the_generator_writes(tmp_path):
    from profiling.assets import make_tokenizer

    make_tokenizer.main(tmp_path)
    for name in ("vocab.json", "merges.txt"):
        assert (tmp_path / name).read_bytes() == (make_tokenizer.HERE / name).read_bytes()
