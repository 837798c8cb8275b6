"""A diagnostic, not a method: the "perfect" shaper, whose term is the hidden per-slot reward itself (the reward
the slot would have paid had it settled alone, which the replay buffer keeps from ``info`` for diagnosis).

It answers what a flawless return decomposition would give a learner under a reward mix, so a learned
shaper's result can be split into what its decomposition's errors cost and what the mix itself allows: with
``reward_mix=add`` a learner sees the sparse reward plus eta times the true per-slot reward; redistributed
with eta = 1, the true per-slot reward itself (the dense reward). No learner can have it outside a simulator.
"""

from __future__ import annotations

import torch

from policies.shapers.base import PeriodBatch, RewardShaper, ShaperError


class PerfectShaper(RewardShaper):
    """r_hat = the hidden per-slot reward, supplied by the replay buffer (``reads_hidden``); nothing to fit."""

    kind = "perfect"
    reads_hidden = True

    def item_rewards(self, obs: torch.Tensor, actions: torch.Tensor, meters=None) -> torch.Tensor:
        raise ShaperError(
            "the perfect shaper has no r_hat(s, a): the replay buffer supplies the hidden reward"
        )

    def fit_batch(self, batch: PeriodBatch) -> dict[str, float]:
        """Nothing to learn; reports how well the hidden rewards sum to the settled amounts (0 when exact)."""
        self.n_updates += 1
        pred = batch.scale * torch.nan_to_num(batch.hidden * batch.mask).sum(dim=1)
        rel = (pred - batch.returns).abs().mean() / batch.returns.abs().mean().clamp(min=1e-8)
        return {"loss": 0.0, "decomp_rel_err": float(rel)}

    def extra_state(self) -> dict:
        return {}

    def load_extra_state(self, state: dict) -> None:
        pass
