"""A least-squares return decomposition: r_hat(s, a) linear in the shaper's (standardised) inputs, fitted in
closed form to every settled period in the buffer, its ridge penalty chosen by the sum error on the latest
periods held out.

Why it exists: refitted on the buffer of a residual SAC run of the default scenario with daily settlements
(results/shaper-probe/README.md), the diffusion and plain-network shapers' credit (correlation of r_hat with
the hidden per-slot reward on the held-out days) reaches 0.73 and 0.76 after 1000 fits, this decomposition 0.93
from the same daily sums: the networks' many ways of matching a few sums, not the one label a day, limited
their credit. Its r_hat is linear in the action for a given state, so the push it gives the actor is the same
at every state unless r_hat also reads the slot's meter readings (``meters``), through which the critic learns
how actions change what a slot pays. ``features`` widens the map with the squared action (an optimum inside the
box) or also every action x state product (a slope that depends on the state); refitted on the buffers of 8
residual runs of the default scenario they lost held-out credit (the squares on 7 of them, the products on all;
``python -m policies.shaper_probe RUN --shaping linear --features ...``, results/shaper-probe).
"""

from __future__ import annotations

import torch

from policies.shapers.base import PeriodBatch, RewardShaper, ShaperError

#: Ridge penalties tried at every fit (on standardised inputs; the bias is not penalised).
RIDGE_GRID = (0.1, 1.0, 10.0, 100.0, 1000.0)
#: Share of the latest periods held out to choose the penalty (the fit then uses all periods).
HELD_OUT = 0.25
#: Feature maps of (s, a): [s, a]; then a^2 (``squares``); then a^2 and every a_i s_j (``interactions``).
FEATURES = ("linear", "squares", "interactions")


class LinearShaper(RewardShaper):
    """r_hat(s, a) = b + w . (x - mu) / sd, x = [s, a] (or s) [+ meters] [+ a^2 [+ a (x) s]] (``features``); no tanh
    bound. ``fit_batch`` wants every slot of the periods it gets (``ShapedReplayBuffer.whole_periods``, as
    ``fits_whole`` tells the callback)."""

    kind = "linear"
    #: fitted once per refit on all whole periods, not by gradient steps on sampled ones
    closed_form = True
    fits_whole = True

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        *,
        uses_action: bool = True,
        meters: int = 0,
        features: str = "linear",
    ):
        super().__init__(obs_dim, act_dim, uses_action=uses_action, meters=meters)
        if features not in FEATURES:
            raise ShaperError(f"unknown linear features {features!r} (known: {', '.join(FEATURES)})")
        if features != "linear" and not uses_action:
            raise ShaperError(
                f"linear features {features!r} are functions of the action: the shaper must use it"
            )
        self.features = features
        if features != "linear":
            self.input_dim += act_dim + (act_dim * obs_dim if features == "interactions" else 0)
        self.register_buffer("mu", torch.zeros(self.input_dim))
        self.register_buffer("sd", torch.ones(self.input_dim))
        self.register_buffer("weight", torch.zeros(self.input_dim))
        self.register_buffer("bias", torch.zeros(()))
        self.register_buffer("ridge", torch.tensor(float("nan")))

    def inputs(
        self, obs: torch.Tensor, actions: torch.Tensor, meters: torch.Tensor | None = None
    ) -> torch.Tensor:
        x = super().inputs(obs, actions, meters)
        if self.features == "linear":
            return x
        parts = [x, actions**2]
        if self.features == "interactions":
            parts.append((actions.unsqueeze(-1) * obs.unsqueeze(-2)).flatten(-2))
        return torch.cat(parts, dim=-1)

    def item_rewards(
        self, obs: torch.Tensor, actions: torch.Tensor, meters: torch.Tensor | None = None
    ) -> torch.Tensor:
        x = (self.inputs(obs, actions, meters) - self.mu) / self.sd
        return (self.bias + x @ self.weight).unsqueeze(-1)

    def fit_batch(self, batch: PeriodBatch) -> dict[str, float]:
        p, k = batch.mask.shape
        if not torch.all(batch.scale == 1):
            raise ShaperError("the linear shaper fits whole periods (every slot): give it whole_periods()")
        if p < 4:
            return {"loss": float("nan")}
        meters = batch.meters.reshape(p * k, -1) if self.meters and batch.meters is not None else None
        x = self.inputs(batch.obs.reshape(p * k, -1), batch.actions.reshape(p * k, -1), meters).double()
        mask = batch.mask.reshape(p * k, 1).double()
        n = mask.sum()
        mu = (x * mask).sum(0) / n
        sd = (((x - mu) ** 2 * mask).sum(0) / n).sqrt() + 1e-8
        z = ((x - mu) / sd * mask).reshape(p, k, -1).sum(1)  # per period: sum over its slots
        design = torch.cat([batch.lengths.double().unsqueeze(1), z], dim=1)
        y = batch.returns.double()
        cut = p - max(2, round(HELD_OUT * p))
        best = None
        for lam in RIDGE_GRID:
            coef = ridge(design[:cut], y[:cut], lam)
            err = float((design[cut:] @ coef - y[cut:]).abs().mean() / y[cut:].abs().mean().clamp(min=1e-12))
            if best is None or err < best[0]:
                best = (err, lam)
        coef = ridge(design, y, best[1])
        self.mu.copy_(mu.float())
        self.sd.copy_(sd.float())
        self.bias.fill_(float(coef[0]))
        self.weight.copy_(coef[1:].float())
        self.ridge.fill_(best[1])
        self.n_updates += 1
        rel = float((design @ coef - y).abs().mean() / y.abs().mean().clamp(min=1e-12))
        return {"loss": rel, "decomp_rel_err": rel, "held_out_rel_err": best[0], "ridge": best[1]}

    def fit_whole(self, batch: PeriodBatch) -> dict[str, float]:
        return self.fit_batch(batch)

    def extra_state(self) -> dict:
        return {}  # no optimizer: the fit is exact, its result is in the buffers

    def load_extra_state(self, state: dict) -> None:
        pass


def ridge(design: torch.Tensor, y: torch.Tensor, lam: float) -> torch.Tensor:
    """argmin |design c - y|^2 + lam |c[1:]|^2 (the first column, the bias's, unpenalised)."""
    penalty = torch.eye(design.shape[1], dtype=design.dtype, device=design.device) * lam
    penalty[0, 0] = 0.0
    return torch.linalg.solve(design.T @ design + penalty, design.T @ y)
