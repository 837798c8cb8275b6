"""Potential-based shaping F = gamma * Phi(s') - Phi(s) (Ng, Harada & Russell 1999: keeps the optimal policy),
with Phi learned as a value-like regression of the discounted reward still to come until the next settlement."""

from __future__ import annotations

import torch

from policies.shapers.base import BOUND_HEADROOM, PeriodBatch, RewardShaper, ShaperError, mlp


class PotentialShaper(RewardShaper):
    """Phi(s) = bound * tanh(MLP(s)); the shaping term is gamma * (1 - done) * Phi(s') - Phi(s).

    Phi(terminal) = 0, as policy invariance on episodic tasks requires; a time-out is not a termination
    (the buffer's ``dones`` exclude time-outs), so it keeps gamma * Phi(s'). ``step_reward`` is not defined
    for a potential; the buffer only calls ``shaping_term``.
    """

    kind = "potential"

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        *,
        hidden: int = 256,
        layers: int = 2,
        lr: float = 3e-4,
        reward_bound: float | None = None,
    ):
        super().__init__(obs_dim, act_dim, lr=lr, reward_bound=reward_bound)
        if hidden < 1 or layers < 1:
            raise ShaperError(f"hidden width and layer count must be >= 1, got {hidden} and {layers}")
        self.net = mlp([obs_dim, *([hidden] * layers), 1])

    def potential(self, obs: torch.Tensor) -> torch.Tensor:
        return self.bound * torch.tanh(self.net(obs).squeeze(-1))

    def item_rewards(self, obs: torch.Tensor, actions: torch.Tensor, meters=None) -> torch.Tensor:
        raise NotImplementedError("a potential shaper has no r_hat(s, a); use shaping_term")

    def shaping_term(
        self,
        obs: torch.Tensor,
        actions: torch.Tensor,
        next_obs: torch.Tensor,
        dones: torch.Tensor,
        gamma: float,
        meters: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return gamma * (1 - dones.reshape(-1)) * self.potential(next_obs) - self.potential(obs)

    def bound_target(self, batch: PeriodBatch) -> float:
        return BOUND_HEADROOM * float(batch.reward_to_go[batch.mask > 0].abs().max())

    def loss(self, batch: PeriodBatch) -> tuple[torch.Tensor, dict[str, float]]:
        """Masked MSE of Phi(s_t) against the discounted reward-to-settlement, normalised by bound^2."""
        p, k = batch.mask.shape
        phi = self.potential(batch.obs.reshape(p * k, -1)).reshape(p, k)
        err = (phi - batch.reward_to_go) ** 2 * batch.mask
        loss = err.sum() / batch.mask.sum().clamp(min=1) / self.bound.clamp(min=1e-8) ** 2
        return loss, {"phi_mean": float(phi.detach()[batch.mask > 0].mean())}
