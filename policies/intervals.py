"""The 95% confidence interval of a mean, one definition for the evaluator's tables and figures and the reports
(numpy only at import; scipy when first used)."""

from __future__ import annotations

import numpy as np


def mean_ci(values) -> tuple[float, float, int]:
    """Mean, half-width of its 95% t confidence interval (nan for one value) and n, over the finite values."""
    from scipy import stats

    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return float("nan"), float("nan"), 0
    if len(v) == 1:
        return float(v[0]), float("nan"), 1
    half = stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v))
    return float(v.mean()), float(half), len(v)
