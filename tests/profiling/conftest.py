"""Shared fixtures for the profiler's tests: offline hub, a tiny CLIP model and a saved tiny pipeline on disk."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # never touch the network, even by accident

import pytest
import torch


def tiny_clip_config():
    from transformers import CLIPConfig

    text = {"hidden_size": 32, "intermediate_size": 37, "num_attention_heads": 4, "num_hidden_layers": 2}
    text |= {
        "vocab_size": 1000,
        "max_position_embeddings": 77,
        "bos_token_id": 0,
        "eos_token_id": 2,
        "pad_token_id": 1,
    }
    vision = {"hidden_size": 32, "intermediate_size": 37, "num_attention_heads": 4, "num_hidden_layers": 2}
    vision |= {"image_size": 32, "patch_size": 8}
    return CLIPConfig(text_config=text, vision_config=vision, projection_dim=16)


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory):
    """A CLIP model of a few thousand parameters, with the local tokenizer, saved as a hub-style folder."""
    from transformers import CLIPImageProcessor, CLIPModel, CLIPProcessor

    from profiling.pipelines import local_tokenizer

    path = tmp_path_factory.mktemp("tiny-clip")
    torch.manual_seed(0)
    CLIPModel(tiny_clip_config()).save_pretrained(path)
    images = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    CLIPProcessor(image_processor=images, tokenizer=local_tokenizer()).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_pipeline_dir(tmp_path_factory):
    """The tiny registry pipeline saved with save_pretrained, to stand in for a local copy of real weights."""
    from profiling.pipelines import build_random
    from profiling.registry import get_model

    path = tmp_path_factory.mktemp("tiny-pipeline")
    torch.manual_seed(0)
    build_random(get_model("tiny"), "cpu", torch.float32).save_pretrained(path)
    return path


@pytest.fixture(autouse=True)
def _profiling_one_thread(one_torch_thread):
    """Every profiling test runs with one torch thread (``one_torch_thread`` in tests/conftest.py)."""
