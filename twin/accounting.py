"""The one utility formula of the twin: revenue minus penalties minus energy cost minus transfer cost, per
slot, with every term kept apart so any evaluation adds up from the same numbers."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

KWH_PER_MWH = 1000.0  # prices are per MWh, energies in kWh


def battery_settlement(initial_kwh, final_kwh, eta_discharge, mean_price):
    """Value (currency) of the stored energy used up over the episode, paid on its last slot: the change of
    stored energy, as delivered through the discharge efficiency, at the episode's mean price per MWh."""
    return (initial_kwh - final_kwh) * eta_discharge * mean_price / KWH_PER_MWH


@dataclass(frozen=True)
class Tariffs:
    """Money parameters as arrays: revenue per image per origin (O,), per-job penalties, transfer cost."""

    revenue_per_image: np.ndarray
    penalty_late: float
    penalty_quality: float
    penalty_drop: float
    transfer_cost_per_image: float
    min_quality: float


#: The terms of a DC's utility an itemised settlement lists (``SlotMoney.items``), in that order.
ITEM_TERMS = ("revenue", "penalty", "energy_cost", "transfer_cost")


@dataclass
class SlotMoney:
    """Money of one slot (currency); arrays are per DC where the term belongs to a site."""

    revenue: np.ndarray  # (N,) by serving DC
    penalty_late: np.ndarray  # (N,)
    penalty_quality: np.ndarray  # (N,)
    penalty_drop: np.ndarray  # (N,)
    energy_cost: np.ndarray  # (N,) grid import cost minus export income (battery settlement included)
    battery_settlement: (
        np.ndarray
    )  # (N,) part of energy_cost: stored energy used up, valued at the mean price
    transfer_cost: np.ndarray  # (N,) by origin

    @property
    def penalty(self) -> np.ndarray:
        return self.penalty_late + self.penalty_quality + self.penalty_drop

    @property
    def utility(self) -> np.ndarray:
        return self.revenue - self.penalty - self.energy_cost - self.transfer_cost

    def items(self) -> np.ndarray:
        """(N, len(ITEM_TERMS)) the terms of ``utility`` per DC, signed as they add up to it (what an itemised
        bill and invoice per site would list: costs negative)."""
        return np.stack([self.revenue, -self.penalty, -self.energy_cost, -self.transfer_cost], axis=1)

    def totals(self) -> dict[str, float]:
        """Scalar totals over DCs (the info dict's money keys)."""
        return {
            "revenue": float(self.revenue.sum()),
            "penalty": float(self.penalty.sum()),
            "penalty_late": float(self.penalty_late.sum()),
            "penalty_quality": float(self.penalty_quality.sum()),
            "penalty_drop": float(self.penalty_drop.sum()),
            "energy_cost": float(self.energy_cost.sum()),
            "battery_settlement": float(self.battery_settlement.sum()),
            "transfer_cost": float(self.transfer_cost.sum()),
            "utility": float(self.utility.sum()),
        }


def slot_money(
    tariffs: Tariffs,
    served: np.ndarray,
    late: np.ndarray,
    dropped: np.ndarray,
    transfers: np.ndarray,
    quality: np.ndarray,
    images: np.ndarray,
    grid_import_kwh: np.ndarray,
    export_kwh: np.ndarray,
    price: np.ndarray,
    export_price: np.ndarray,
    battery_settlement: np.ndarray,
) -> SlotMoney:
    """Utility terms of one slot. ``served``/``late`` are (N, A+1, K, O) jobs, ``dropped`` (N, K, O),
    ``transfers`` (O, J, K), ``quality`` (N,) delivered quality, prices per MWh (N,)."""
    served_io = np.einsum("iako,k->io", served, images)  # images served at i for origin o
    revenue = quality * (served_io @ tariffs.revenue_per_image)
    jobs_served = served.sum(axis=(1, 2, 3))
    low_quality = quality < tariffs.min_quality
    kept = np.einsum("ook->ok", transfers)  # the diagonal: jobs served where they arrived do not travel
    moved_images = (transfers.sum(axis=1) - kept) @ images
    energy = (grid_import_kwh * price - export_kwh * export_price) / KWH_PER_MWH + battery_settlement
    return SlotMoney(
        revenue=revenue,
        penalty_late=tariffs.penalty_late * late.sum(axis=(1, 2, 3)),
        penalty_quality=tariffs.penalty_quality * np.where(low_quality, jobs_served, 0),
        penalty_drop=tariffs.penalty_drop * dropped.sum(axis=(1, 2)),
        energy_cost=energy,
        battery_settlement=battery_settlement,
        transfer_cost=tariffs.transfer_cost_per_image * moved_images,
    )
