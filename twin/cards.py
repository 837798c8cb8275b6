"""Model cards: the compact, validated per-(gpu, model, mode) cost and quality curves the twin runs on.

Written by ``python -m twin.calibrate`` from measured traces or cited figures; read here without torch."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from traces.data_paths import REPO_ROOT

SCHEMA_VERSION = 1

#: Where the committed cards live (``traces/cards/`` beside the ``twin`` package, in a checkout or installed).
CARDS_DIR = REPO_ROOT / "traces" / "cards"

BASES = ("cited", "measured")
ENERGY_BASES = ("gross", "net-of-idle")


class CardError(ValueError):
    """A model card that is missing, malformed or asked for but absent (message names file and field)."""


# --- quality forms: q(steps) in [0, 1], non-decreasing; one definition used by the card and the fit ---------


def _sigmoid(s: np.ndarray, q_max: float, k: float, s0: float) -> np.ndarray:
    return q_max / (1.0 + np.exp(-k * (s - s0)))


def _saturating_exp(s: np.ndarray, q_max: float, tau: float, s_min: float) -> np.ndarray:
    return q_max * (1.0 - np.exp(-np.maximum(s - s_min, 0.0) / tau))


def _power_law(s: np.ndarray, q_max: float, c: float, p: float) -> np.ndarray:
    # q_max * (1 - c * s^-p), floored at 0: the quality deficit shrinks as a power of the step count.
    return q_max * np.maximum(1.0 - c * np.maximum(s, 1e-9) ** (-p), 0.0)


@dataclass(frozen=True)
class QualityForm:
    """One parametric family for quality(steps): its function, parameter names and their allowed ranges."""

    fn: Callable[..., np.ndarray]
    params: tuple[str, ...]
    bounds: tuple[tuple[float, float], ...]  # inclusive (low, high) per parameter
    formula: str


QUALITY_FORMS: dict[str, QualityForm] = {
    "sigmoid": QualityForm(
        _sigmoid, ("q_max", "k", "s0"), ((0.0, 1.0), (1e-6, 50.0), (-200.0, 200.0)), "q_max/(1+exp(-k(s-s0)))"
    ),
    "saturating-exp": QualityForm(
        _saturating_exp,
        ("q_max", "tau", "s_min"),
        ((0.0, 1.0), (1e-6, 500.0), (-200.0, 200.0)),
        "q_max*(1-exp(-max(s-s_min,0)/tau))",
    ),
    "power-law": QualityForm(
        _power_law, ("q_max", "c", "p"), ((0.0, 1.0), (0.0, 1e6), (1e-6, 20.0)), "q_max*max(1-c*s^-p, 0)"
    ),
}


@dataclass(frozen=True)
class QualityCurve:
    """quality(steps) as an explicit curve, with what it measures and where the data came from."""

    form: str
    params: Mapping[str, float]
    metric: str
    normalisation: str
    source: str
    extra: Mapping[str, Any] = field(default_factory=dict)  # comparison of forms, data points, notes

    def __call__(self, steps: Any) -> np.ndarray:
        spec = QUALITY_FORMS[self.form]
        s = np.asarray(steps, dtype=float)
        q = spec.fn(s, *(self.params[name] for name in spec.params))
        return np.clip(q, 0.0, 1.0)


@dataclass(frozen=True)
class ModelCard:
    """Cost of one pipeline call of ``b`` images at ``s`` steps, idle power, and quality(steps).

    Latency and energy per call are ``fixed[0] + fixed[1]*b + s*(per_step[0] + per_step[1]*b)``.
    """

    gpu: str
    model: str
    mode: str
    resolution: int
    basis: str
    sources: Mapping[str, str]
    latency_fixed: tuple[float, float]
    latency_per_step: tuple[float, float]
    energy_fixed: tuple[float, float]
    energy_per_step: tuple[float, float]
    energy_basis: str
    batch_sizes: tuple[int, ...]
    idle_power_w: float | None
    idle_power_source: str
    quality_curve: QualityCurve
    fit: Mapping[str, Any]
    assumptions: tuple[str, ...]
    path: Path | None = None

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.gpu, self.model, self.mode)

    @property
    def max_batch(self) -> int:
        return max(self.batch_sizes)

    def batch_latency_s(self, steps: Any, batch: Any) -> np.ndarray:
        """Seconds for one pipeline call of ``batch`` images at ``steps`` steps (numpy-broadcast)."""
        return _affine(self.latency_fixed, self.latency_per_step, steps, batch)

    def batch_energy_j(self, steps: Any, batch: Any) -> np.ndarray:
        """GPU joules for one pipeline call (basis in ``energy_basis``; "gross" includes the idle floor)."""
        return _affine(self.energy_fixed, self.energy_per_step, steps, batch)

    def image_latency_s(self, steps: Any, batch: Any = 1) -> np.ndarray:
        return self.batch_latency_s(steps, batch) / np.asarray(batch, dtype=float)

    def image_energy_j(self, steps: Any, batch: Any = 1) -> np.ndarray:
        return self.batch_energy_j(steps, batch) / np.asarray(batch, dtype=float)

    def quality(self, steps: Any) -> np.ndarray:
        """Share of the model's saturated quality at ``steps`` steps, in [0, 1], non-decreasing."""
        return self.quality_curve(steps)

    def to_dict(self) -> dict[str, Any]:
        """The card's JSON form (the schema of docs/contracts.md §2)."""
        return {
            "schema": SCHEMA_VERSION,
            "gpu": self.gpu,
            "model": self.model,
            "mode": self.mode,
            "resolution": self.resolution,
            "basis": self.basis,
            "sources": dict(self.sources),
            "latency_s": {"fixed": list(self.latency_fixed), "per_step": list(self.latency_per_step)},
            "energy_j": {
                "fixed": list(self.energy_fixed),
                "per_step": list(self.energy_per_step),
                "basis": self.energy_basis,
            },
            "batch_sizes": list(self.batch_sizes),
            "idle_power_w": self.idle_power_w,
            "idle_power_source": self.idle_power_source,
            "quality": {
                "form": self.quality_curve.form,
                "params": dict(self.quality_curve.params),
                "metric": self.quality_curve.metric,
                "normalisation": self.quality_curve.normalisation,
                "source": self.quality_curve.source,
                **dict(self.quality_curve.extra),
            },
            "fit": dict(self.fit),
            "assumptions": list(self.assumptions),
        }


def _affine(fixed: tuple[float, float], per: tuple[float, float], steps: Any, batch: Any) -> np.ndarray:
    s = np.asarray(steps, dtype=float)
    b = np.asarray(batch, dtype=float)
    return fixed[0] + fixed[1] * b + s * (per[0] + per[1] * b)


# --- validation ---------------------------------------------------------------------------------------------


class _Checker:
    """Reads fields from a card dict, raising CardError that names the file and the field."""

    def __init__(self, source: str, data: Any):
        self.source = source
        if not isinstance(data, dict):
            self.fail("<root>", "must be a JSON object")
        self.data = data

    def fail(self, name: str, why: str) -> None:
        raise CardError(f"{self.source}: field {name!r} {why}")

    def get(self, name: str, kind: type | tuple[type, ...], where: dict | None = None) -> Any:
        where = self.data if where is None else where
        if name not in where:
            self.fail(name, "is missing")
        value = where[name]
        if isinstance(value, bool) or not isinstance(value, kind):
            self.fail(name, f"must be {_kind_name(kind)}, got {type(value).__name__}")
        return value

    def text(self, name: str, where: dict | None = None) -> str:
        value = self.get(name, str, where)
        if not value.strip():
            self.fail(name, "must not be empty")
        return value

    def number(self, name: str, value: Any, low: float = -math.inf, high: float = math.inf) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            self.fail(name, f"must be a finite number, got {value!r}")
        if not low <= value <= high:
            self.fail(name, f"must be in [{low}, {high}], got {value!r}")
        return float(value)

    def pair(self, block: str, name: str) -> tuple[float, float]:
        part = self.get(block, dict)
        values = self.get(name, list, part)
        if len(values) != 2:
            self.fail(f"{block}.{name}", f"must hold 2 numbers, got {len(values)}")
        a, b = (self.number(f"{block}.{name}", v, low=0.0) for v in values)
        return (a, b)


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {
        "str": "a string",
        "dict": "an object",
        "list": "a list",
        "int": "an integer",
        "float": "a number",
    }
    return " or ".join(names.get(k.__name__, k.__name__) for k in kinds)


def _quality_from(check: _Checker) -> QualityCurve:
    block = check.get("quality", dict)
    form = check.text("form", block)
    if form not in QUALITY_FORMS:
        check.fail("quality.form", f"must be one of {sorted(QUALITY_FORMS)}, got {form!r}")
    spec = QUALITY_FORMS[form]
    params = check.get("params", dict, block)
    values = {}
    for name, (low, high) in zip(spec.params, spec.bounds, strict=True):
        if name not in params:
            check.fail(f"quality.params.{name}", f"is missing (form {form!r} needs {', '.join(spec.params)})")
        values[name] = check.number(f"quality.params.{name}", params[name], low, high)
    core = {"form", "params", "metric", "normalisation", "source"}
    extra = {k: v for k, v in block.items() if k not in core}
    return QualityCurve(
        form=form,
        params=values,
        metric=check.text("metric", block),
        normalisation=check.text("normalisation", block),
        source=check.text("source", block),
        extra=extra,
    )


def _batch_sizes_from(check: _Checker) -> tuple[int, ...]:
    sizes = check.get("batch_sizes", list)
    if not sizes or any(isinstance(b, bool) or not isinstance(b, int) or b < 1 for b in sizes):
        check.fail("batch_sizes", f"must be a non-empty list of positive integers, got {sizes!r}")
    if list(sizes) != sorted(set(sizes)):
        check.fail("batch_sizes", f"must be strictly increasing, got {sizes!r}")
    return tuple(sizes)


def _fit_from(check: _Checker) -> dict[str, Any]:
    fit = check.get("fit", dict)
    steps = check.get("heldout_steps", list, fit)
    if any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in steps):
        check.fail("fit.heldout_steps", f"must be a list of positive integers, got {steps!r}")
    for name in ("latency_mape", "energy_mape"):
        value = check.get(name, (int, float, type(None)), fit)
        if value is not None:
            check.number(f"fit.{name}", value, low=0.0)
    return fit


def card_from_dict(data: Any, source: str = "<card>") -> ModelCard:
    """Validate a card's JSON object and build the ModelCard; raise CardError naming the bad field."""
    check = _Checker(source, data)
    if check.get("schema", int) != SCHEMA_VERSION:
        check.fail("schema", f"must be {SCHEMA_VERSION}, got {data['schema']!r}")
    basis = check.text("basis")
    if basis not in BASES:
        check.fail("basis", f"must be one of {BASES}, got {basis!r}")
    sources = check.get("sources", dict)
    for name in ("latency_energy", "quality"):
        check.text(name, sources)
    latency_per, energy_per = check.pair("latency_s", "per_step"), check.pair("energy_j", "per_step")
    if sum(latency_per) <= 0 or sum(energy_per) <= 0:
        check.fail("latency_s/energy_j.per_step", "must have a positive per-step cost")
    energy_basis = data["energy_j"].get("basis", "gross")
    if energy_basis not in ENERGY_BASES:
        check.fail("energy_j.basis", f"must be one of {ENERGY_BASES}, got {energy_basis!r}")
    idle = check.get("idle_power_w", (int, float, type(None)))
    resolution = check.get("resolution", int)
    if resolution < 1:
        check.fail("resolution", f"must be a positive integer, got {resolution}")
    assumptions = check.get("assumptions", list)
    if any(not isinstance(a, str) for a in assumptions):
        check.fail("assumptions", "must be a list of strings")
    return ModelCard(
        gpu=check.text("gpu"),
        model=check.text("model"),
        mode=check.text("mode"),
        resolution=resolution,
        basis=basis,
        sources=dict(sources),
        latency_fixed=check.pair("latency_s", "fixed"),
        latency_per_step=latency_per,
        energy_fixed=check.pair("energy_j", "fixed"),
        energy_per_step=energy_per,
        energy_basis=energy_basis,
        batch_sizes=_batch_sizes_from(check),
        idle_power_w=None if idle is None else check.number("idle_power_w", idle, low=1e-9),
        idle_power_source=str(data.get("idle_power_source", "")),
        quality_curve=_quality_from(check),
        fit=_fit_from(check),
        assumptions=tuple(assumptions),
        path=None if source.startswith("<") else Path(source),
    )


# --- loading ------------------------------------------------------------------------------------------------


def card_filename(gpu: str, model: str, mode: str) -> str:
    """The file name of a card: ``<gpu>__<model>__<mode>.json``."""
    return f"{gpu}__{model}__{mode}.json"


def load_card(path: str | Path) -> ModelCard:
    """Read and validate one card file."""
    path = Path(path)
    if not path.is_file():
        raise CardError(f"{path}: no such model card")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CardError(f"{path}: not valid JSON ({exc})") from None
    return card_from_dict(data, str(path))


def load_cards(directory: str | Path = CARDS_DIR) -> dict[tuple[str, str, str], ModelCard]:
    """Every card in ``directory`` keyed by (gpu, model, mode); an absent folder is an error."""
    directory = Path(directory)
    if not directory.is_dir():
        raise CardError(f"{directory}: no such model-card folder")
    cards = {}
    for path in sorted(directory.glob("*__*__*.json")):
        card = load_card(path)
        if path.name != card_filename(*card.key):
            # The name is the index find_card relies on; a renamed copy would shadow or duplicate a card.
            raise CardError(
                f"{path}: file name does not match its fields (expected {card_filename(*card.key)})"
            )
        cards[card.key] = card
    return cards


def find_card(
    model: str, gpu: str | None = None, mode: str = "eager", directory: str | Path = CARDS_DIR
) -> ModelCard:
    """The card for ``model`` on ``gpu``; with gpu None, a measured card is preferred over a cited one."""
    cards = load_cards(directory)
    matches = [c for c in cards.values() if c.model == model and c.mode == mode and gpu in (None, c.gpu)]
    if not matches:
        have = ", ".join("/".join(k) for k in sorted(cards)) or "none"
        raise CardError(
            f"{directory}: no model card for model={model!r} gpu={gpu!r} mode={mode!r} (have: {have})"
        )
    # Measured beats cited; among equals the order is by gpu name so the choice is reproducible.
    return min(matches, key=lambda c: (c.basis != "measured", c.gpu))
