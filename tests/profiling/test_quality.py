"""CLIP scoring through torchmetrics with a tiny CLIP model built from configs (transformers 5 adapter)."""

from __future__ import annotations

import pytest
import torch
from transformers import CLIPModel, CLIPProcessor

from profiling.quality import ClipModelError, ClipScorer, summarise


def test_scores_match_a_direct_clip_computation(tiny_clip_dir):
    torch.manual_seed(1)
    images = torch.rand(3, 3, 48, 48)
    prompts = ["a red bicycle", "a lighthouse at sunset", "two cats playing chess"]
    got = ClipScorer(str(tiny_clip_dir)).scores(images, prompts)
    model, proc = CLIPModel.from_pretrained(tiny_clip_dir), CLIPProcessor.from_pretrained(tiny_clip_dir)
    as_uint8 = (images * 255).round().to(torch.uint8)
    for img, prompt, score in zip(as_uint8, prompts, got, strict=True):
        out = model(**proc(text=[prompt], images=[img], return_tensors="pt", padding=True))
        expected = 100 * torch.nn.functional.cosine_similarity(out.image_embeds, out.text_embeds).item()
        assert score == pytest.approx(expected, abs=1e-3)
    assert len(set(got)) == 3  # different prompts, different scores


def test_uint8_and_float_images_score_the_same(tiny_clip_dir):
    scorer = ClipScorer(str(tiny_clip_dir))
    img = torch.randint(0, 256, (1, 3, 32, 32), dtype=torch.uint8)
    a = scorer.scores(img, ["a cat"])
    b = scorer.scores(img.float() / 255, ["a cat"])
    assert a == pytest.approx(b, abs=1e-4)


def test_count_mismatch_and_missing_model_are_errors(tiny_clip_dir, tmp_path):
    with pytest.raises(ValueError, match="2 images but 1 prompts"):
        ClipScorer(str(tiny_clip_dir)).scores(torch.rand(2, 3, 32, 32), ["one"])
    with pytest.raises(ClipModelError, match="--clip-model"):
        ClipScorer(str(tmp_path / "absent"))


def test_summarise():
    assert summarise([]) == (None, None)
    assert summarise([20.0]) == (20.0, None)
    mean, std = summarise([20.0, 22.0])
    assert mean == pytest.approx(21.0) and std == pytest.approx(2**0.5)
