"""The reward-shaper interface: a learned model of a complementary reward r_hat(s, a) (or a potential
shaping term) that the replay buffer adds to the environment reward at sample time, refitted from periods."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

#: Headroom of the tanh bound over the largest per-step reward seen (``|R| / L`` of a settled period).
#: Assumption: 4x leaves room for slots that earn well above the period's mean without saturating tanh.
BOUND_HEADROOM = 4.0


class ShaperError(ValueError):
    """A shaper was configured or fed with invalid values."""


@dataclass
class PeriodBatch:
    """Transitions of ``P`` complete settlement periods, ``K`` sampled slots each (padded, see ``mask``).

    ``scale`` is ``L / K_used`` per period (randomised return decomposition: the sum over a random subset of
    a period's slots, scaled, estimates the sum over the whole period). ``items`` is the settlement itemised
    (per site and term, ``twin.env``'s ``settled_items``) where the environment reports it: J labels per period
    instead of one, for a shaper with ``items = J`` outputs. ``hidden`` is a diagnostic per-slot
    value from ``info``, the slot's own reward (NaN where absent); no learned shaper trains on it.
    """

    obs: torch.Tensor  # (P, K, obs_dim)
    actions: torch.Tensor  # (P, K, act_dim)
    next_obs: torch.Tensor  # (P, K, obs_dim)
    dones: torch.Tensor  # (P, K) true terminations (time-outs excluded)
    rewards: torch.Tensor  # (P, K) raw environment rewards of the sampled slots
    reward_to_go: torch.Tensor  # (P, K) discounted env reward from the slot to the period's end
    mask: torch.Tensor  # (P, K) 1.0 for a real slot, 0.0 for padding
    scale: torch.Tensor  # (P,) L / K_used
    returns: torch.Tensor  # (P,) settled amount: sum of raw rewards over the whole period
    lengths: torch.Tensor  # (P,) period length L in slots
    hidden: torch.Tensor  # (P, K) diagnostic per-slot value (NaN where absent)
    items: torch.Tensor | None = None  # (P, J) itemised settled amounts, summing to ``returns`` (None: none)
    meters: torch.Tensor | None = None  # (P, K, M) the slots' meter readings (None: the env reports none)


def sinusoidal_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Transformer-style sinusoidal embedding of (integer) diffusion times, shape (B, dim)."""
    half = dim // 2
    freqs = torch.exp(
        -math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=t.device) / max(half - 1, 1)
    )
    args = t.float().unsqueeze(-1) * freqs
    return torch.cat([args.sin(), args.cos()], dim=-1)


def mlp(sizes: list[int], out_act: nn.Module | None = None) -> nn.Sequential:
    """Linear layers with Mish between them (Mish as in DRESS/Diffusion-QL denoisers)."""
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(nn.Mish())
    if out_act is not None:
        layers.append(out_act)
    return nn.Sequential(*layers)


def pearson(a: torch.Tensor, b: torch.Tensor) -> float:
    """Pearson correlation of two 1-D tensors over their finite pairs; NaN when undefined."""
    keep = torch.isfinite(a) & torch.isfinite(b)
    a, b = a[keep].double(), b[keep].double()
    if a.numel() < 3 or a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(torch.corrcoef(torch.stack([a, b]))[0, 1])


class RewardShaper(nn.Module, ABC):
    """A learned shaping term added (times eta) to the environment reward when the replay buffer samples.

    Subclasses implement ``step_reward`` (r_hat per sample) or override ``shaping_term``; the default loss is
    return decomposition: the (scaled) sum of r_hat over a period's slots regresses the settled amount.
    """

    kind: str = "base"
    #: True for a diagnostic whose term is the buffer's hidden per-slot value, not ``shaping_term`` (see perfect.py)
    reads_hidden: bool = False
    #: True for a shaper fitted exactly, once per refit, on every slot of the whole periods stored (``fit_whole``),
    #: and by no gradient steps (see linear.py); such a shaper ``fits_whole`` too
    closed_form: bool = False
    #: True for a shaper that wants every slot of the whole periods stored at each refit (``fit_whole``), before
    #: any gradient steps (the linear shaper's exact fit, an anchored shaper's anchor)
    fits_whole: bool = False
    #: True where r_hat(s, a) is a random draw (the diffusion shaper's chain starts from noise), not a function
    stochastic: bool = False

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        *,
        lr: float = 3e-4,
        reward_bound: float | None = None,
        uses_action: bool = True,
        items: int = 1,
        meters: int = 0,
    ):
        super().__init__()
        if self.closed_form and not self.fits_whole:
            raise ShaperError(f"the {self.kind} shaper is fitted in closed form but not on whole periods")
        if obs_dim < 1 or act_dim < 1:
            raise ShaperError(f"obs_dim and act_dim must be >= 1, got {obs_dim} and {act_dim}")
        if items < 1 or meters < 0:
            raise ShaperError(f"a shaper needs >= 1 output (items) and >= 0 meters, got {items} and {meters}")
        if reward_bound is not None and not reward_bound > 0:
            raise ShaperError(f"reward_bound must be > 0, got {reward_bound}")
        self.obs_dim, self.act_dim, self.lr = obs_dim, act_dim, lr
        # uses_action=False: r_hat(s), a credit the actor cannot steer through the slot's own action
        self.uses_action = uses_action
        # meters > 0: r_hat also reads the slot's meter readings (what the sites measured in it, no money)
        self.meters = meters
        self.input_dim = (obs_dim + act_dim if uses_action else obs_dim) + meters
        # items > 1: one r_hat per item of an itemised settlement, each fitted to its own amount; r_hat is their sum
        self.items = items
        self.fixed_bound = reward_bound is not None
        # 0 means "not estimated yet": the shaper outputs 0 until it has seen a settled period.
        self.register_buffer("bound", torch.tensor(float(reward_bound or 0.0)))
        self.register_buffer("n_updates", torch.tensor(0, dtype=torch.long))
        self._optimizer: torch.optim.Optimizer | None = None

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        """Adam over the shaper's parameters, built lazily so subclasses can finish ``__init__`` first."""
        if self._optimizer is None:
            self._optimizer = torch.optim.Adam(self.parameters(), lr=self.lr)
        return self._optimizer

    def inputs(
        self, obs: torch.Tensor, actions: torch.Tensor, meters: torch.Tensor | None = None
    ) -> torch.Tensor:
        """What r_hat is conditioned on: [s, a], or s alone when the shaper does not use the action; then the
        slot's meter readings for a shaper that reads them."""
        parts = [obs, actions] if self.uses_action else [obs]
        if self.meters:
            if meters is None or meters.shape[-1] != self.meters:
                got = "none" if meters is None else meters.shape[-1]
                raise ShaperError(f"the shaper reads {self.meters} meter readings per slot, got {got}")
            parts.append(meters)
        return torch.cat(parts, dim=-1)

    @property
    def fitted(self) -> bool:
        return int(self.n_updates) > 0

    @abstractmethod
    def item_rewards(
        self, obs: torch.Tensor, actions: torch.Tensor, meters: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Per-sample r_hat(s, a) of each settlement item, each in [-bound, bound], shape (B, items)."""

    def step_reward(
        self, obs: torch.Tensor, actions: torch.Tensor, meters: torch.Tensor | None = None, **options: Any
    ) -> torch.Tensor:
        """Per-sample r_hat(s, a), the sum over items, shape (B,); ``options`` go to ``item_rewards`` (the
        diffusion shaper's ``noise``)."""
        return self.item_rewards(obs, actions, meters, **options).sum(dim=-1)

    def shaping_term(
        self,
        obs: torch.Tensor,
        actions: torch.Tensor,
        next_obs: torch.Tensor,
        dones: torch.Tensor,
        gamma: float,
        meters: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The term the buffer adds (times eta) to each sampled reward, shape (B,)."""
        return self.step_reward(obs, actions, meters)

    def targets(self, batch: PeriodBatch) -> torch.Tensor:
        """What the outputs' period sums regress, (P, items): the settled amounts, or their items."""
        if self.items == 1:
            return batch.returns.unsqueeze(-1)
        if batch.items is None or torch.isnan(batch.items).any():
            raise ShaperError(
                "the shaper fits itemised settlements but some settlement periods carry none "
                "(the environment does not report info['settled_items'])"
            )
        if batch.items.shape[-1] != self.items:
            raise ShaperError(
                f"settlements list {batch.items.shape[-1]} items, the shaper has {self.items} outputs"
            )
        return batch.items

    def bound_target(self, batch: PeriodBatch) -> float:
        """The tanh bound implied by a batch: headroom times the largest per-slot mean amount of a period (of an
        item, for an itemising shaper)."""
        return BOUND_HEADROOM * float((self.targets(batch).abs() / batch.lengths.clamp(min=1)[:, None]).max())

    def update_bound(self, batch: PeriodBatch) -> None:
        """Grow (never shrink) the output bound so r_hat can represent every period seen."""
        if not self.fixed_bound:
            self.bound.fill_(max(float(self.bound), self.bound_target(batch)))

    def loss(self, batch: PeriodBatch) -> tuple[torch.Tensor, dict[str, float]]:
        """Return-decomposition loss: (scale * sum_k r_hat - R)^2, normalised by bound^2 to be scale-free; with
        items, the same per item, summed over items."""
        p, k = batch.mask.shape
        obs, actions = batch.obs.reshape(p * k, -1), batch.actions.reshape(p * k, -1)
        meters = batch.meters.reshape(p * k, -1) if batch.meters is not None and self.meters else None
        r_hat = self.item_rewards(obs, actions, meters).reshape(p, k, self.items)
        pred = batch.scale[:, None] * (r_hat * batch.mask[..., None]).sum(dim=1)  # (P, items)
        norm = (self.bound * batch.lengths).clamp(min=1e-8) ** 2
        loss = (((pred - self.targets(batch)) ** 2).sum(dim=-1) / norm).mean()
        total = pred.detach().sum(dim=-1)
        rel = (total - batch.returns).abs().mean() / batch.returns.abs().mean().clamp(min=1e-8)
        r_sum = r_hat.detach().sum(dim=-1)
        diag = {"decomp_rel_err": float(rel), "r_hat_mean": float(r_sum[batch.mask > 0].mean())}
        return loss, diag

    def fit_batch(self, batch: PeriodBatch) -> dict[str, float]:
        """One gradient step on one batch of periods; returns the loss and diagnostics."""
        self.update_bound(batch)
        if float(self.bound) <= 0:  # only zero rewards seen so far: nothing to decompose yet
            return {"loss": float("nan")}
        self.train()
        loss, diag = self.loss(batch)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(self.parameters(), 10.0)
        self.optimizer.step()
        self.n_updates += 1
        return {"loss": float(loss.detach()), **diag}

    def fit_whole(self, batch: PeriodBatch) -> dict[str, float]:
        """The part of a refit that reads every slot of the whole periods in ``batch`` (``fits_whole``); a shaper
        that does not want one has none."""
        raise ShaperError(f"the {self.kind} shaper has no fit on whole periods")

    def extra_state(self) -> dict:
        """Everything a checkpoint needs besides ``state_dict``."""
        return {"optimizer": self.optimizer.state_dict()}

    def load_extra_state(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
