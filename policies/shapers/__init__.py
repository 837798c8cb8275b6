"""Learned reward shapers for the off-policy schedulers: diffusion (the paper's), plain MLP (its ablation), a
least-squares linear decomposition, either network anchored on it, and potential-based (policy-invariant); all
fitted from settlement periods stored in the replay buffer. The "perfect" shaper is a diagnostic (the hidden
per-slot reward), not a method."""

from policies.shapers.anchored import AnchoredShaper
from policies.shapers.base import PeriodBatch, RewardShaper, ShaperError
from policies.shapers.diffusion import DiffusionShaper
from policies.shapers.linear import LinearShaper
from policies.shapers.mlp import MLPShaper
from policies.shapers.perfect import PerfectShaper
from policies.shapers.potential import PotentialShaper

__all__ = [
    "AnchoredShaper",
    "DiffusionShaper",
    "LinearShaper",
    "MLPShaper",
    "PerfectShaper",
    "PeriodBatch",
    "PotentialShaper",
    "RewardShaper",
    "ShaperError",
]
