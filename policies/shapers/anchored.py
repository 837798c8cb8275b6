"""A network shaper anchored on the linear decomposition: r_hat(s, a) = linear(s, a) + residual(s, a), the linear
part fitted exactly on every whole period stored (``LinearShaper``), the network (diffusion or mlp) fitted by
return decomposition to what the linear part leaves of each settled amount.

Why it exists. On the buffer of a residual SAC run with daily settlements the linear decomposition's credit is
as good as the networks' (held-out correlation with the hidden per-slot reward 0.925 against 0.86-0.92,
results/shaper-probe), and it gets the sign of what a one-notch move of the action changes right more often
than the networks did (results/critic-probe): its one slope per input is identified from every state at once,
the networks' slopes from the little the action varies around each state. Anchoring starts r_hat from the linear
fit and lets the network fit what the daily sums say the linear part misses. Nothing holds the network to a
small correction: its tanh bound is a plain shaper's (from the settled amounts), and the anchor is refitted at
every refit on a growing buffer while the residual goes on from where it was. The diffusion residual starts at
exactly 0 (its head is zero-initialised); the mlp residual starts from its random initialisation, as the plain
mlp shaper does. Measured (results/residual-g0-eta1-anchored-40k, 8 seeds): both anchored learners end about a
point of the oracle bound above plain SAC; above the linear shaper alone by 0.4-0.5 points, not significant. On 8
fresh seeds (results/residual-g0-eta1-seeds8-15-40k) they end level with the linear shaper (-0.07 and +0.04
points): the network on top of the decomposition adds nothing measurable.
"""

from __future__ import annotations

import torch

from policies.shapers.base import PeriodBatch, RewardShaper, ShaperError
from policies.shapers.diffusion import DiffusionShaper
from policies.shapers.linear import LinearShaper
from policies.shapers.mlp import MLPShaper


class AnchoredShaper(RewardShaper):
    """r_hat = ``anchor``'s linear r_hat + ``residual``'s r_hat (one output: the settled total). The residual's own
    optimizer and update count are not used: this shaper's optimizer steps the residual's parameters (the anchor
    has none) and counts the steps."""

    fits_whole = True  # the anchor's exact fit, then the residual's gradient steps

    def __init__(self, anchor: LinearShaper, residual: DiffusionShaper | MLPShaper):
        if not isinstance(anchor, LinearShaper) or not isinstance(residual, DiffusionShaper | MLPShaper):
            raise ShaperError(
                f"an anchored shaper is a linear anchor plus a diffusion or mlp residual, got {anchor.kind} plus "
                f"{residual.kind}"
            )
        if residual.items != 1:
            raise ShaperError(
                f"the residual fits the settled total (one output), got {residual.items} outputs"
            )
        if reads(anchor) != reads(residual):
            raise ShaperError("the linear anchor and its residual must read the same inputs")
        obs_dim, act_dim, uses_action, meters = reads(residual)
        super().__init__(obs_dim, act_dim, lr=residual.lr, uses_action=uses_action, meters=meters)
        self.kind = f"linear+{residual.kind}"
        self.stochastic = residual.stochastic
        self.anchor, self.residual = anchor, residual
        self.fixed_bound = residual.fixed_bound
        self.bound.copy_(residual.bound)

    @property
    def fitted(self) -> bool:
        return self.anchor.fitted

    def item_rewards(
        self, obs: torch.Tensor, actions: torch.Tensor, meters: torch.Tensor | None = None, **options
    ) -> torch.Tensor:
        return self.anchor.item_rewards(obs, actions, meters) + self.residual.item_rewards(
            obs, actions, meters, **options
        )

    def update_bound(self, batch: PeriodBatch) -> None:
        """The residual's tanh bound grows as a plain shaper's would; the loss is normalised by the same bound."""
        self.residual.update_bound(batch)
        self.bound.copy_(self.residual.bound)

    def fit_whole(self, batch: PeriodBatch) -> dict[str, float]:
        return {f"anchor_{k}": v for k, v in self.anchor.fit_whole(batch).items()}

    def fit_batch(self, batch: PeriodBatch) -> dict[str, float]:
        """One gradient step of the residual on sampled periods, the anchor as last fitted by ``fit_whole``;
        nothing before the anchor's first fit."""
        if not self.anchor.fitted:
            return {"loss": float("nan")}
        return super().fit_batch(batch)


def reads(shaper: RewardShaper) -> tuple[int, int, bool, int]:
    """What a shaper's r_hat reads: observation and action sizes, whether it reads the action, meter readings."""
    return shaper.obs_dim, shaper.act_dim, shaper.uses_action, shaper.meters
