"""Least-squares fits behind the model cards: fixed + per-step cost with batch scaling, and quality(steps).

Pure numpy/scipy (no torch); used by ``twin.calibrate`` and its tests."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares, nnls

from twin.cards import QUALITY_FORMS


class FitError(ValueError):
    """Data that cannot support the requested fit (too few points, non-positive targets...)."""


# --- cost: y = f0 + f1*b + s*(p0 + p1*b) --------------------------------------------------------------------


@dataclass(frozen=True)
class CostFit:
    fixed: tuple[float, float]
    per_step: tuple[float, float]
    single_batch: bool  # only one batch size in the data: batch scaling was assumed, not fitted

    def predict(self, steps: np.ndarray, batch: np.ndarray) -> np.ndarray:
        s, b = np.asarray(steps, float), np.asarray(batch, float)
        return self.fixed[0] + self.fixed[1] * b + s * (self.per_step[0] + self.per_step[1] * b)


def fit_cost(steps: Sequence[float], batch: Sequence[float], y: Sequence[float]) -> CostFit:
    """Non-negative least squares on relative error (every point weighs the same in per cent)."""
    s, b, y = (np.asarray(v, dtype=float) for v in (steps, batch, y))
    if len(y) < 2 or len(np.unique(s)) < 2:
        raise FitError(
            f"need at least 2 distinct step counts to split fixed and per-step cost, got {len(y)} point(s)"
        )
    if np.any(~np.isfinite(y)) or np.any(y <= 0):
        raise FitError("cost targets must be positive and finite")
    single = len(np.unique(b)) == 1
    if single:
        # One batch size: the batch terms are not identifiable; assume cost proportional to b (per-image constant).
        design = np.column_stack([b, s * b])
    else:
        design = np.column_stack([np.ones_like(s), b, s, s * b])
    coef, _ = nnls(design / y[:, None], np.ones_like(y))
    if single:
        return CostFit((0.0, float(coef[0])), (0.0, float(coef[1])), True)
    return CostFit((float(coef[0]), float(coef[1])), (float(coef[2]), float(coef[3])), False)


def pct_errors(pred: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Signed per-cent error of each prediction."""
    return 100.0 * (np.asarray(pred, float) - np.asarray(y, float)) / np.asarray(y, float)


def error_summary(pred: np.ndarray, y: np.ndarray) -> dict[str, float | int | None]:
    """MAPE and max |%| error (None when there are no points)."""
    if len(np.asarray(y)) == 0:
        return {"mape": None, "max_abs_pct": None, "n": 0}
    err = np.abs(pct_errors(pred, y))
    return {
        "mape": round(float(err.mean()), 4),
        "max_abs_pct": round(float(err.max()), 4),
        "n": len(err),
    }


def leave_one_step_out(steps: Sequence[float], batch: Sequence[float], y: Sequence[float]) -> dict:
    """Refit without each step count in turn and predict its rows: held-out error that needs no reserved steps."""
    s, b, y = (np.asarray(v, dtype=float) for v in (steps, batch, y))
    pred, truth = [], []
    for step in np.unique(s):
        out = s == step
        if len(np.unique(s[~out])) < 2:
            continue
        fit = fit_cost(s[~out], b[~out], y[~out])
        pred.append(fit.predict(s[out], b[out]))
        truth.append(y[out])
    if not pred:
        return error_summary(np.array([]), np.array([]))
    return error_summary(np.concatenate(pred), np.concatenate(truth))


# --- quality: value_j = A_j * f(s), one saturation level A_j per source series ----------------------------


#: Search ranges for the shape parameters (q_max is 1: the per-series levels A_j carry the scale).
SHAPE_BOUNDS: dict[str, tuple[tuple[float, float], ...]] = {
    "sigmoid": ((1e-3, 5.0), (-100.0, 60.0)),
    "saturating-exp": ((0.1, 200.0), (-100.0, 50.0)),
    "power-law": ((1e-6, 1e4), (0.05, 10.0)),
}
SHAPE_STARTS: dict[str, tuple[tuple[float, float], ...]] = {
    "sigmoid": ((0.3, 0.0), (0.1, 5.0), (1.0, 3.0), (0.05, -20.0)),
    "saturating-exp": ((5.0, 0.0), (2.0, 2.0), (20.0, -10.0), (1.0, 3.0)),
    "power-law": ((1.0, 1.0), (0.1, 0.5), (10.0, 2.0), (0.5, 1.0)),
}


@dataclass(frozen=True)
class QualityPoint:
    steps: float
    value: float
    series: str
    relative: bool  # True: value is already a share of saturated quality (its level is fixed at 1)


@dataclass(frozen=True)
class QualityFit:
    form: str
    shape: dict[str, float]
    levels: dict[str, float]  # fitted saturation level per clip series (the normaliser)
    residuals: np.ndarray  # (value - A f(s)) / A, i.e. in units of "share of saturated quality"

    @property
    def params(self) -> dict[str, float]:
        return {"q_max": 1.0, **self.shape}

    def q(self, steps: np.ndarray) -> np.ndarray:
        spec = QUALITY_FORMS[self.form]
        return spec.fn(np.asarray(steps, float), *(self.params[n] for n in spec.params))


def _unpack(form: str, theta: np.ndarray, series: list[str]) -> tuple[dict[str, float], dict[str, float]]:
    names = QUALITY_FORMS[form].params[1:]
    return dict(zip(names, map(float, theta[:2]), strict=True)), dict(
        zip(series, map(float, theta[2:]), strict=True)
    )


def fit_quality(
    points: Sequence[QualityPoint], form: str, starts: Sequence[tuple[float, float]] | None = None
) -> QualityFit:
    """Fit one form's shape jointly with one level per absolute-score series (best of several starts)."""
    if form not in SHAPE_BOUNDS:
        raise FitError(f"unknown quality form {form!r}")
    if len(points) < 3:
        raise FitError(f"need at least 3 quality points, got {len(points)}")
    spec = QUALITY_FORMS[form]
    s = np.array([p.steps for p in points], float)
    v = np.array([p.value for p in points], float)
    clip_series = sorted({p.series for p in points if not p.relative})
    idx = np.array([clip_series.index(p.series) if not p.relative else -1 for p in points])
    unit = np.array(
        [1.0 if p.relative else max(q.value for q in points if q.series == p.series) for p in points]
    )

    def residual(theta: np.ndarray) -> np.ndarray:
        level = np.where(idx >= 0, theta[2:][idx] if clip_series else 1.0, 1.0)
        return (v - level * spec.fn(s, 1.0, theta[0], theta[1])) / unit

    lo = [b[0] for b in SHAPE_BOUNDS[form]] + [0.0] * len(clip_series)
    hi = [b[1] for b in SHAPE_BOUNDS[form]] + [np.inf] * len(clip_series)
    best = None
    for start in starts or SHAPE_STARTS[form]:
        levels0 = [max(p.value for p in points if p.series == name) for name in clip_series]
        theta0 = np.clip(np.array([*start, *levels0], float), lo, np.array(hi) - 1e-9)
        sol = least_squares(residual, theta0, bounds=(lo, hi), method="trf")
        if best is None or sol.cost < best.cost:
            best = sol
    shape, levels = _unpack(form, best.x, clip_series)
    lev = np.where(idx >= 0, best.x[2:][idx] if clip_series else 1.0, 1.0)
    return QualityFit(form, shape, levels, (v - lev * spec.fn(s, 1.0, *best.x[:2])) / lev)


def compare_quality_forms(points: Sequence[QualityPoint], forms: Sequence[str]) -> dict[str, dict]:
    """Per form: RSS, AICc, BIC and leave-one-out RMSE (all in units of share of saturated quality)."""
    out = {}
    n = len(points)
    for form in forms:
        fit = fit_quality(points, form)
        k = 2 + len(fit.levels)
        rss = float(np.sum(fit.residuals**2))
        loglik_term = n * np.log(max(rss, 1e-300) / n)
        aicc = loglik_term + 2 * k + (2 * k * (k + 1) / (n - k - 1) if n - k - 1 > 0 else np.inf)
        out[form] = {
            "fit": fit,
            "rss": rss,
            "rmse": float(np.sqrt(rss / n)),
            "aicc": float(aicc),
            "bic": float(loglik_term + k * np.log(n)),
            "loo_rmse": _loo_rmse(points, form, tuple(fit.shape.values())),
            "n_points": n,
            "n_params": k,
        }
    return out


def _loo_rmse(points: Sequence[QualityPoint], form: str, start: tuple[float, float]) -> float | None:
    """Refit without each point in turn; error of the left-out point against its series' refitted level."""
    errs = []
    for i, left in enumerate(points):
        rest = [p for j, p in enumerate(points) if j != i]
        if len(rest) < 3 or (not left.relative and not any(p.series == left.series for p in rest)):
            continue
        fit = fit_quality(rest, form, starts=[start])  # warm start from the full fit: one solve per point
        level = 1.0 if left.relative else fit.levels[left.series]
        errs.append(left.value / level - float(fit.q(np.array([left.steps]))[0]))
    return float(np.sqrt(np.mean(np.square(errs)))) if errs else None


def choose_form(comparison: dict[str, dict], preferred: str = "sigmoid", tie_rel: float = 0.05) -> str:
    """Lowest leave-one-out RMSE (AICc where LOO is unavailable); the paper's sigmoid is kept unless another
    form beats it by more than ``tie_rel`` (a few-per-cent LOO difference on ~20 points is noise)."""

    def score(name: str) -> float:
        row = comparison[name]
        return row["loo_rmse"] if row["loo_rmse"] is not None else row["aicc"]

    best = min(comparison, key=score)
    if preferred in comparison and best != preferred:
        ref, alt = score(preferred), score(best)
        # AICc is on a log scale (can be negative): compare differences there, ratios for LOO RMSE.
        uses_loo = comparison[best]["loo_rmse"] is not None and comparison[preferred]["loo_rmse"] is not None
        if (uses_loo and ref <= alt * (1 + tie_rel)) or (not uses_loo and ref - alt <= 2.0):
            return preferred
    return best
