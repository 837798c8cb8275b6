"""CLIP score of generated images against their prompts through torchmetrics `CLIPScore` (0-100 scale), with the
small adapter that transformers 5 needs: `get_image_features`/`get_text_features` return output objects there."""

from __future__ import annotations

import statistics

import torch
from torchmetrics.multimodal.clip_score import CLIPScore
from transformers import CLIPModel, CLIPProcessor


class ClipModelError(ValueError):
    """A CLIP model that cannot be loaded for scoring."""


class _FeatureAdapter(torch.nn.Module):
    """Wraps a transformers CLIPModel so the feature getters return the projected embeddings as tensors
    (transformers 5 returns BaseModelOutputWithPooling whose pooler_output holds them; torchmetrics expects a
    tensor and would fail on `.norm`)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model
        self.config = model.config

    @staticmethod
    def _tensor(out: object) -> torch.Tensor:
        return out if torch.is_tensor(out) else out.pooler_output

    def get_image_features(self, *args, **kwargs) -> torch.Tensor:
        return self._tensor(self.model.get_image_features(*args, **kwargs))

    def get_text_features(self, *args, **kwargs) -> torch.Tensor:
        return self._tensor(self.model.get_text_features(*args, **kwargs))


def load_clip(model_name_or_path: str) -> tuple[_FeatureAdapter, CLIPProcessor]:
    """A transformers CLIP model (wrapped in the adapter) and its processor from a hub id or a local folder."""
    try:
        model = CLIPModel.from_pretrained(model_name_or_path).eval()
        processor = CLIPProcessor.from_pretrained(model_name_or_path)
    except (OSError, ValueError) as exc:
        raise ClipModelError(
            f"cannot load CLIP model {model_name_or_path!r} ({type(exc).__name__}); point --clip-model at a "
            "local copy (a folder with the model and its processor)"
        ) from None
    return _FeatureAdapter(model), processor


class ClipScorer:
    """Per-image CLIP scores: 100 x cosine of image and prompt embeddings, as torchmetrics computes them (its
    `compute()` floors the mean at 0; the per-image values here are not floored)."""

    def __init__(self, model_name_or_path: str, device: str = "cpu") -> None:
        # torchmetrics accepts a loader callable: it lets any hub id or local path be used (its own string
        # argument only takes a fixed list of hub ids) and lets the adapter sit around the model.
        self.metric = CLIPScore(model_name_or_path=lambda: load_clip(model_name_or_path))
        self.metric.to(device)
        self.device = torch.device(device)
        self.name = model_name_or_path

    @torch.no_grad()
    def scores(self, images: torch.Tensor, prompts: list[str]) -> list[float]:
        """One score per image; ``images`` is N x 3 x H x W, float in [0, 1] or uint8."""
        if len(images) != len(prompts):
            raise ValueError(f"{len(images)} images but {len(prompts)} prompts")
        if images.dtype.is_floating_point:
            images = (images.clamp(0, 1) * 255).round().to(torch.uint8)
        out = []
        for img, prompt in zip(images, prompts, strict=True):
            # The metric keeps a running sum in `score`; its increment is this image's score.
            before = float(self.metric.score)
            # torchmetrics moves the CLIP model to the image's device: keep the image on the scorer's own.
            self.metric.update(img.to(self.device), prompt)
            out.append(float(self.metric.score) - before)
        return out


def summarise(scores: list[float]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation; None where there are too few scores."""
    if not scores:
        return None, None
    std = statistics.stdev(scores) if len(scores) > 1 else None
    return statistics.fmean(scores), std
