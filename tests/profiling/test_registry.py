"""The registry's architecture configs: parameter counts against published totals (built on the meta device,
no memory, no weights) and the dimensions that must agree between components."""

from __future__ import annotations

import functools
import re

import pytest

from profiling.pipelines import count_parameters, random_components
from profiling.registry import MODELS, UnknownModelError, get_model


@functools.cache
def params(name: str) -> dict[str, int]:
    return count_parameters(random_components(get_model(name), "meta"))


@pytest.mark.parametrize(
    ("model", "component", "published", "rel"),
    [
        ("sd-1.5", "unet", 860e6, 0.005),  # SD v1.5 model card: "860M UNet"
        ("sd-1.5", "text_encoder", 123e6, 0.005),  # SD v1 model card: "123M text encoder" (CLIP ViT-L/14)
        ("sdxl", "unet", 2.6e9, 0.02),  # SDXL paper (arXiv 2307.01952), Table 1: 2.6B UNet
        ("sd3.5-medium", "text_encoder_3", 4.7e9, 0.02),  # T5-XXL encoder ~4.7B (SD3 paper, arXiv 2403.03206)
    ],
)
def test_parameter_counts_match_published_totals(model, component, published, rel):
    assert params(model)[component] == pytest.approx(published, rel=rel)


def test_sdxl_text_encoders_total_the_published_817m():
    p = params("sdxl")  # SDXL paper, Table 1: text encoders 817M (CLIP ViT-L + OpenCLIP ViT-bigG)
    assert p["text_encoder"] + p["text_encoder_2"] == pytest.approx(817e6, rel=0.005)


def test_tiny_is_about_a_million_parameters():
    assert 0.8e6 < sum(params("tiny").values()) < 1.3e6


@pytest.mark.parametrize("name", list(MODELS))
def test_component_dimensions_agree(name):
    spec = get_model(name)
    c = {k: v.config for k, v in spec.components.items()}
    text = [c[k]["hidden_size"] for k in ("text_encoder", "text_encoder_2") if k in c]
    if "unet" in c:
        assert c["unet"]["cross_attention_dim"] == sum(text)  # SDXL concatenates both encoders' states
        assert c["unet"]["sample_size"] * 2 ** (len(c["vae"]["block_out_channels"]) - 1) == spec.resolution
    else:  # SD3: T5 states joined with the CLIP ones; pooled = both CLIP projections
        assert c["transformer"]["joint_attention_dim"] == c["text_encoder_3"]["d_model"]
        pooled = c["text_encoder"]["projection_dim"] + c["text_encoder_2"]["projection_dim"]
        assert c["transformer"]["pooled_projection_dim"] == pooled
        assert c["transformer"]["in_channels"] == c["vae"]["latent_channels"]
    if "text_time" == c.get("unet", {}).get("addition_embed_type"):
        assert (
            c["unet"]["projection_class_embeddings_input_dim"]
            == c["text_encoder_2"]["projection_dim"] + 6 * 256
        )


def test_guidance_off_only_for_turbo_models():
    assert {m.name for m in MODELS.values() if m.guidance_scale <= 1} == {"sd-turbo", "sdxl-turbo"}


def test_unknown_model_lists_the_known_ones():
    with pytest.raises(UnknownModelError, match=re.escape("known: sd-1.5, sd-2.1, sdxl, sd3.5-medium")):
        get_model("sd-4")
