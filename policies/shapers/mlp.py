"""The plain-network reward shaper (the paper's "DNN-based shaping" ablation): the same interface and
return-decomposition training as the diffusion shaper, with one MLP from (s, a) to a bounded r_hat."""

from __future__ import annotations

from typing import Any

import torch

from policies.shapers.base import RewardShaper, ShaperError, mlp


class MLPShaper(RewardShaper):
    """r_hat(s, a) = bound * tanh(MLP(s, a)) (or MLP(s) without the action), fitted so its sum over a settlement
    period matches the settlement."""

    kind = "mlp"

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        *,
        hidden: int = 256,
        layers: int = 3,
        **common: Any,
    ):
        """``common``: ``RewardShaper``'s keywords (lr, reward_bound, uses_action, items, meters)."""
        super().__init__(obs_dim, act_dim, **common)
        if hidden < 1 or layers < 1:
            raise ShaperError(f"hidden width and layer count must be >= 1, got {hidden} and {layers}")
        self.net = mlp([self.input_dim, *([hidden] * layers), self.items])

    def item_rewards(
        self, obs: torch.Tensor, actions: torch.Tensor, meters: torch.Tensor | None = None
    ) -> torch.Tensor:
        return self.bound * torch.tanh(self.net(self.inputs(obs, actions, meters)))
