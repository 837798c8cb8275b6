"""Learned reward shapers for the off-policy schedulers: diffusion (the paper's), plain MLP (its ablation)
and potential-based (policy-invariant); all fitted from settlement periods stored in the replay buffer."""

from policies.shapers.base import PeriodBatch, RewardShaper, ShaperError
from policies.shapers.diffusion import DiffusionShaper
from policies.shapers.mlp import MLPShaper
from policies.shapers.potential import PotentialShaper

__all__ = ["DiffusionShaper", "MLPShaper", "PeriodBatch", "PotentialShaper", "RewardShaper", "ShaperError"]
