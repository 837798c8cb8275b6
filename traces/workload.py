"""Text-to-image job arrivals for the twin: a doubly stochastic Poisson model fitted on the GenTD26
production trace (Alibaba, Lin et al., SoCC '25), its committed parameters, and a vectorised sampler.

Model, per 5-minute block b of day d at hour-of-day h and weekday w (the trace's own clock, read as UTC;
the trace's timestamps carry an anonymising offset, so "hour" is the trace's hour, not a known local time):

    requests_b ~ Poisson(base_rate * hour_factor[h] * weekday_factor[w] * D_d * G_b * scale)
    D_d ~ LogNormal(-day_sigma^2/2, day_sigma)           (day-to-day level, mean 1)
    G_b = exp(X_b - burst_sigma^2/2),  X_b = burst_phi * X_(b-1) + sqrt(1 - burst_phi^2) * burst_sigma * e_b
                                                         (bursts: persistent log-normal AR(1), mean 1)

and each request independently draws its (predict_type, images, requested steps) class from the trace's
joint frequencies. Prompt lengths are kept as quantiles (trace, and PartiPrompts for comparison).

The burst factor is fitted by moments (its variance and its autocovariance over 12 lags), so the model
matches the trace's dispersion index and lag-1 autocorrelation; it under-predicts empty 5-minute slots (the
trace has on/off sessions even at peak hours). ``params.fit`` records these numbers beside the KS distance.

API:
- ``fit_workload(path, partiprompts=None) -> WorkloadParams`` (reads the CSV; ``WorkloadError`` on bad data)
- ``WorkloadParams.load(path=DEFAULT_PARAMS) -> WorkloadParams``; ``params.save(path)`` (atomic JSON)
- ``sample_arrivals(params, rng, start, slots, slot_s, mean_rate_scale=1.0) -> dict[str, np.ndarray]``
- ``sample_prompt_lengths(params, rng, n) -> np.ndarray``
- CLI: ``python -m traces.workload fit --data PATH --out traces/workload/gentd26.json [--plot PNG]``
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import optimize, special
from tqdm import tqdm

from traces.atomic import write_json_atomic, write_png_atomic
from traces.data_paths import partiprompts_tsv

#: The committed fit of the GenTD26 trace.
DEFAULT_PARAMS = Path(__file__).resolve().parent / "workload" / "gentd26.json"

#: Resolution the model is fitted at (the paper's and the twin's 5-minute slot).
BLOCK_S = 300
SLOTS_PER_DAY = 86400 // BLOCK_S

SOURCE = (
    "GenTD26 LoRA request trace (lora_request_trace.until-2024-11-30.csv), Alibaba clusterdata "
    "cluster-trace-v2026-GenAI; Lin et al., 'Understanding Diffusion Model Serving in Production: A Top-Down "
    "Analysis of Workload, Scheduling, and Resource Efficiency', SoCC '25. No licence file stated."
)
REQUIRED = ("gmt_create", "predict_type", "num_images_per_prompt", "num_inference_steps", "prompt_length")


class WorkloadError(ValueError):
    """A trace or parameter file that cannot be used, or bad sampler arguments (message names which)."""


@dataclass
class WorkloadParams:
    """Fitted arrival model; see the module docstring for the meaning of each part."""

    base_rate: float  # mean requests per 5-minute block
    hour_factors: list[float]  # 24 values, mean 1
    weekday_factors: list[float]  # Monday..Sunday, mean 1
    day_sigma: float
    burst_sigma: float  # stationary sd of the log burst factor
    burst_phi: float  # lag-1 (5-minute) autocorrelation of the log burst factor
    classes: dict  # {"predict_type": [...], "images": [...], "steps": [...], "prob": [...]}
    prompt_length: dict = field(default_factory=dict)
    source: str = SOURCE
    data: dict = field(default_factory=dict)  # file, date range, counts
    fit: dict = field(default_factory=dict)  # fit quality
    assumptions: list[str] = field(default_factory=list)
    schema: int = 1

    def __post_init__(self) -> None:
        _validate(self)

    @property
    def type_names(self) -> list[str]:
        return sorted(set(self.classes["predict_type"]))

    @property
    def step_values(self) -> np.ndarray:
        return np.unique(np.asarray(self.classes["steps"], dtype=np.int64))

    def to_dict(self) -> dict:
        return asdict(self)

    def save(self, path: str | Path) -> Path:
        path = write_json_atomic(path, self.to_dict())
        path.chmod(0o644)  # a committed file, readable by all (the temporary file was private)
        return path

    @classmethod
    def load(cls, path: str | Path = DEFAULT_PARAMS) -> WorkloadParams:
        try:
            obj = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise WorkloadError(f"{path}: cannot read workload parameters ({exc})") from None
        known = set(cls.__dataclass_fields__)
        unknown = set(obj) - known
        if unknown:
            raise WorkloadError(f"{path}: unknown field(s) {sorted(unknown)}")
        try:
            return cls(**obj)
        except TypeError as exc:
            raise WorkloadError(f"{path}: {exc}") from None


def _validate(p: WorkloadParams) -> None:
    if not (np.isfinite(p.base_rate) and p.base_rate >= 0):
        raise WorkloadError(f"base_rate must be finite and >= 0, got {p.base_rate}")
    if len(p.hour_factors) != 24 or len(p.weekday_factors) != 7:
        raise WorkloadError("hour_factors needs 24 values and weekday_factors 7")
    if min(p.hour_factors) < 0 or min(p.weekday_factors) < 0:
        raise WorkloadError("hour_factors and weekday_factors must be >= 0")
    if not (p.day_sigma >= 0 and p.burst_sigma >= 0 and 0 <= p.burst_phi < 1):
        raise WorkloadError(
            f"day_sigma, burst_sigma must be >= 0 and burst_phi in [0, 1), got {p.day_sigma}, "
            f"{p.burst_sigma}, {p.burst_phi}"
        )
    c = p.classes
    n = len(c.get("prob", []))
    if n == 0 or any(len(c.get(k, [])) != n for k in ("predict_type", "images", "steps")):
        raise WorkloadError("classes needs equally long predict_type, images, steps and prob lists")
    prob = np.asarray(c["prob"], dtype=float)
    if (prob < 0).any() or abs(prob.sum() - 1.0) > 1e-6:
        raise WorkloadError(f"class probabilities must be >= 0 and sum to 1 (sum {prob.sum():.6f})")


# ----------------------------------------------------------------------------------------------- reading


def read_trace(path: str | Path) -> pd.DataFrame:
    """The request trace with parsed UTC timestamps; ``WorkloadError`` names the file and line."""
    if not Path(path).is_file():
        raise WorkloadError(f"{path}: no such file")
    try:
        df = pd.read_csv(path)
    except (OSError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise WorkloadError(f"{path}: cannot read as CSV ({exc.__class__.__name__})") from None
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise WorkloadError(f"{path}: missing column(s) {missing}")
    if df.empty:
        raise WorkloadError(f"{path}: no requests")
    t = pd.to_datetime(df["gmt_create"], format="%Y-%m-%d %H:%M:%S", errors="coerce")
    if t.isna().any():
        i = int(np.flatnonzero(t.isna().to_numpy())[0])
        raise WorkloadError(f"{path}: line {i + 2}: cannot parse gmt_create {df['gmt_create'].iloc[i]!r}")
    df["t"] = t.dt.tz_localize("UTC")
    for col in ("num_images_per_prompt", "num_inference_steps", "prompt_length"):
        v = pd.to_numeric(df[col], errors="coerce")
        bad = (df[col].notna() & v.isna()) | (v < 0) | ((v == 0) & (col != "prompt_length"))
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise WorkloadError(f"{path}: line {i + 2}: {col} = {df[col].iloc[i]!r} is not a valid count")
        df[col] = v
    return df.sort_values("t", kind="stable").reset_index(drop=True)


def _window(df: pd.DataFrame, start: str | None, end: str | None, path) -> pd.DataFrame:
    keep = np.ones(len(df), bool)
    for bound, op in ((start, np.greater_equal), (end, np.less)):
        if bound is not None:
            try:
                t = pd.Timestamp(bound)
            except ValueError:
                raise WorkloadError(f"cannot parse time bound {bound!r}") from None
            keep &= op(df["t"], t.tz_localize("UTC") if t.tz is None else t).to_numpy()
    if not keep.any():
        raise WorkloadError(f"{path}: no requests in [{start}, {end})")
    return df[keep].reset_index(drop=True)


def slot_counts(t: pd.Series) -> tuple[pd.Timestamp, np.ndarray]:
    """Requests per 5-minute block over whole days (first day 00:00 to last day 24:00): (day0, [days, 288])."""
    day0 = t.iloc[0].floor("D")
    n_days = int((t.iloc[-1].floor("D") - day0) / pd.Timedelta("1D")) + 1
    idx = ((t - day0) // pd.Timedelta(seconds=BLOCK_S)).to_numpy(dtype=np.int64)
    counts = np.bincount(idx, minlength=n_days * SLOTS_PER_DAY)
    return day0, counts.reshape(n_days, SLOTS_PER_DAY)


# ----------------------------------------------------------------------------------------------- fitting


def _nb_loglik(k: float, x: np.ndarray, m: np.ndarray) -> float:
    """Negative-binomial log likelihood with mean m and shape k (Poisson-Gamma mixture)."""
    m = np.maximum(m, 1e-9)
    return float(
        np.sum(special.gammaln(x + k) - special.gammaln(k) - special.gammaln(x + 1)
               + k * np.log(k / (k + m)) + x * np.log(m / (k + m)))
    )  # fmt: skip


def fit_slot_k(counts: np.ndarray, mean: np.ndarray) -> float:
    """Maximum-likelihood NB shape of block counts given their expected values."""
    x, m = counts.ravel().astype(float), mean.ravel()
    res = optimize.minimize_scalar(lambda lk: -_nb_loglik(np.exp(lk), x, m), bounds=(-8, 8), method="bounded")
    return float(np.exp(res.x))


def _autocov(resid: np.ndarray, m: np.ndarray, lag: int) -> float:
    """Burst-factor covariance at ``lag`` from count residuals: E[(N_t-m_t)(N_t+l-m_t+l)] = m_t m_t+l cov."""
    return float(np.sum(resid[:-lag] * resid[lag:]) / np.sum(m[:-lag] * m[lag:]))


def fit_bursts(counts: np.ndarray, mean: np.ndarray, max_lag: int = 12) -> tuple[float, float]:
    """Variance and lag-1 autocorrelation (of the log) of the burst factor, by the method of moments:
    Var N = m + m^2 v and Cov(N_t, N_t+l) = m_t m_t+l (exp(s^2 phi^l) - 1) with s^2 = log(1 + v)."""
    x, m = counts.ravel().astype(float), mean.ravel()
    resid = x - m
    v = max(float(np.sum(resid**2 - x) / np.sum(m**2)), 1e-9)
    s2 = np.log1p(v)
    lags = np.arange(1, max_lag + 1)
    target = np.array([np.log1p(max(_autocov(resid, m, int(k)), -0.999)) / s2 for k in lags])
    res = optimize.minimize_scalar(lambda p: float(np.sum((p**lags - target) ** 2)), bounds=(0, 0.999),
                                   method="bounded")  # fmt: skip
    return v, float(res.x)


def burst_factors(sigma: float, phi: float, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` mean-1 log-normal burst factors whose log follows a stationary AR(1) (vectorised filter)."""
    from scipy.signal import lfilter

    x0 = sigma * rng.standard_normal()
    eps = rng.standard_normal(n)
    x, _ = lfilter([np.sqrt(1 - phi**2) * sigma], [1.0, -phi], eps, zi=[phi * x0])
    return np.exp(x - sigma**2 / 2)


def fit_rates(counts: np.ndarray, day0: pd.Timestamp) -> dict:
    """Hour, weekday and day-level factors: the Poisson MLE of the day x hour independence model."""
    days, _ = counts.shape
    hourly = counts.reshape(days, 24, SLOTS_PER_DAY // 24).sum(axis=2)
    total = hourly.sum()
    day_tot, hour_tot = hourly.sum(axis=1), hourly.sum(axis=0)
    hour_f = 24 * hour_tot / total
    day_f = day_tot / day_tot.mean()
    weekday = np.asarray((day0 + pd.to_timedelta(np.arange(days), unit="D")).day_of_week)
    n_wd = np.bincount(weekday, minlength=7)
    wd_mean = np.bincount(weekday, weights=day_f, minlength=7) / np.maximum(n_wd, 1)
    wd_f = np.where(n_wd > 0, wd_mean, np.nan)
    wd_f = np.nan_to_num(wd_f / np.nanmean(wd_f), nan=1.0)
    base = total / (days * SLOTS_PER_DAY)
    block_mean = base * day_f[:, None] * np.repeat(hour_f, SLOTS_PER_DAY // 24)[None, :]
    return {"base": float(base), "hour": hour_f, "weekday": wd_f, "weekday_days": n_wd, "day": day_f,
            "weekday_of_day": weekday, "block_mean": block_mean, "hourly": hourly}  # fmt: skip


def fit_day_sigma(day_f: np.ndarray, wd_f: np.ndarray, weekday: np.ndarray, block_mean: np.ndarray,
                  burst_var: float, phi: float) -> float:  # fmt: skip
    """Log-normal sigma of the day level after the weekday shape, net of the within-day sampling noise
    (method of moments; the variance a day total carries from Poisson counts and AR(1) bursts is subtracted)."""
    resid = day_f / np.maximum(wd_f[weekday], 1e-12)
    day_mean = block_mean.sum(axis=1)
    lags = np.abs(np.subtract.outer(np.arange(SLOTS_PER_DAY), np.arange(SLOTS_PER_DAY)))
    corr = np.expm1(np.log1p(burst_var) * phi**lags)  # covariance of the burst factor at each lag
    burst = np.einsum("di,ij,dj->d", block_mean, corr, block_mean)
    noise = (day_mean + burst) / np.maximum(day_mean, 1e-12) ** 2
    net = max(float(resid.var(ddof=1) - np.mean(noise * day_f**2)), 0.0)
    return float(np.sqrt(np.log1p(net / resid.mean() ** 2)))


def fit_classes(df: pd.DataFrame) -> tuple[dict, int]:
    """Joint frequencies of (predict_type, images, steps); rows without images or steps are left out."""
    ok = df["num_images_per_prompt"].notna() & df["num_inference_steps"].notna()
    g = (
        df[ok].groupby(["predict_type", "num_images_per_prompt", "num_inference_steps"]).size()
        .sort_index().reset_index(name="n")
    )  # fmt: skip
    prob = g["n"].to_numpy() / g["n"].sum()
    classes = {"predict_type": g["predict_type"].astype(str).tolist(),
               "images": g["num_images_per_prompt"].astype(int).tolist(),
               "steps": g["num_inference_steps"].astype(int).tolist(),
               "prob": prob.tolist(), "count": g["n"].astype(int).tolist()}  # fmt: skip
    return classes, int((~ok).sum())


def _quantiles(x: np.ndarray) -> dict:
    x = np.asarray(x, dtype=float)
    x = x[np.isfinite(x)]
    return {"n": len(x), "mean": float(x.mean()), "median": float(np.median(x)),
            "quantiles_0_100": np.percentile(x, np.arange(101)).round(3).tolist()}  # fmt: skip


def fit_prompt_lengths(df: pd.DataFrame, partiprompts: Path | None) -> dict:
    """Trace prompt lengths (unit not stated by the trace) and PartiPrompts lengths in characters/words."""
    out = {"trace": _quantiles(df["prompt_length"].to_numpy()),
           "trace_unit": "as recorded in prompt_length; the trace does not state the unit"}  # fmt: skip
    if partiprompts is not None and Path(partiprompts).is_file():
        prompts = pd.read_csv(partiprompts, sep="\t", usecols=["Prompt"])["Prompt"].dropna().astype(str)
        out["partiprompts_chars"] = _quantiles(prompts.str.len().to_numpy())
        out["partiprompts_words"] = _quantiles(prompts.str.split().str.len().to_numpy())
        out["partiprompts_source"] = "PartiPrompts.tsv, google-research/parti (Apache-2.0)"
    return out


def _r2(y: np.ndarray, yhat: np.ndarray) -> float:
    y, yhat = np.ravel(y).astype(float), np.ravel(yhat).astype(float)
    ss = np.sum((y - y.mean()) ** 2)
    return float(1 - np.sum((y - yhat) ** 2) / ss) if ss > 0 else float("nan")


def _ks_discrete(a: np.ndarray, pmf_b: np.ndarray) -> float:
    """Largest CDF gap between the counts ``a`` and a pmf over 0..len(pmf_b)-1."""
    n = max(int(a.max()) + 1, len(pmf_b))
    cdf_a = np.cumsum(np.bincount(a.astype(np.int64), minlength=n)) / a.size
    cdf_b = np.cumsum(np.pad(pmf_b, (0, n - len(pmf_b))))
    return float(np.max(np.abs(cdf_a - cdf_b)))


def _lag1(x: np.ndarray) -> float:
    x = np.asarray(x, dtype=float)
    return float(np.corrcoef(x[:-1], x[1:])[0, 1])


def burst_sigma_marginal_ml(counts: np.ndarray, mean: np.ndarray) -> float:
    """Reference only: the burst sigma that best fits the one-slot count distribution if blocks were
    independent (Poisson-lognormal likelihood by Gauss-Hermite quadrature), ignoring persistence."""
    x, m = counts.ravel().astype(float), np.maximum(mean.ravel(), 1e-9)
    nodes, weights = np.polynomial.hermite_e.hermegauss(32)
    logw = np.log(weights / weights.sum())

    def nll(sig: float) -> float:
        lam = m[:, None] * np.exp(sig * nodes[None, :] - sig**2 / 2)
        lp = x[:, None] * np.log(lam) - lam - special.gammaln(x + 1)[:, None] + logw[None, :]
        return -float(np.sum(special.logsumexp(lp, axis=1)))

    return float(optimize.minimize_scalar(nll, bounds=(0.01, 4.0), method="bounded").x)


def _nb_mixture_pmf(mean: np.ndarray, k: float, size: int) -> np.ndarray:
    """The count distribution of a random block under iid NB(mean_b, k) blocks, over 0..size-1."""
    xs, pmf = np.arange(size), np.zeros(size)
    for chunk in np.array_split(np.maximum(mean, 1e-9), max(1, len(mean) // 2000)):
        p = k / (k + chunk[:, None])
        pmf += np.exp(special.gammaln(xs + k) - special.gammaln(k) - special.gammaln(xs + 1)
                      + k * np.log(p) + xs * np.log1p(-p)).sum(axis=0)  # fmt: skip
    return pmf / len(mean)


def fit_quality(params: WorkloadParams, counts: np.ndarray, rates: dict, day0: pd.Timestamp,
                replicates: int = 40) -> dict:  # fmt: skip
    """How well the model reproduces the trace (in-sample; see each key's name)."""
    k, flat = fit_slot_k(counts, rates["block_mean"]), counts.ravel()
    pmf = _nb_mixture_pmf(rates["block_mean"].ravel(), k, int(flat.max()) * 2 + 50)
    rng = np.random.default_rng(0)
    sims = np.stack([sample_arrivals(params, rng, day0, len(flat), BLOCK_S)["requests"] for _ in
                     tqdm(range(replicates), desc="simulating fit quality", leave=False)])  # fmt: skip
    sim_pmf = np.bincount(sims.ravel()) / sims.size
    half = counts.shape[0] // 2
    h1, h2 = rates["hourly"][:half].sum(0), rates["hourly"][half:].sum(0)
    return {
        "slot_s": BLOCK_S,
        "nb_k_iid_reference": k,
        "burst_sigma_iid_marginal_ml_reference": burst_sigma_marginal_ml(counts, rates["block_mean"]),
        "ks_slot_counts_iid_nb_given_day_levels": _ks_discrete(flat, pmf),
        "ks_slot_counts_simulated": _ks_discrete(flat, sim_pmf),
        "dispersion_index_empirical": float(flat.var() / flat.mean()),
        "dispersion_index_simulated_median": float(np.median(sims.var(1) / np.maximum(sims.mean(1), 1e-12))),
        "zero_share_empirical": float((flat == 0).mean()),
        "zero_share_simulated": float((sims == 0).mean()),
        "lag1_autocorr_empirical": _lag1(flat),
        "lag1_autocorr_simulated_median": float(np.median([_lag1(s) for s in sims])),
        "r2_day_hour_cells": _r2(rates["hourly"], np.outer(rates["hourly"].sum(1), rates["hour"] / 24)),
        "r2_diurnal_profile_split_half": _r2(h2, h1 / h1.sum() * h2.sum()),
        "simulation": f"{replicates} replicates of sample_arrivals over the trace's days, seed 0",
    }


def fit_workload(
    path: str | Path,
    partiprompts: str | Path | None = None,
    quality_replicates: int = 40,
    start: str | None = None,
    end: str | None = None,
) -> WorkloadParams:
    """Fit the arrival model, class frequencies and prompt lengths on a GenTD26-format request trace,
    optionally only on requests in ``[start, end)`` (trace clock, UTC); ``quality_replicates``
    simulations of the fitted model measure the fit quality."""
    df = _window(read_trace(path), start, end, path)
    day0, counts = slot_counts(df["t"])
    rates = fit_rates(counts, day0)
    burst_var, phi = fit_bursts(counts, rates["block_mean"])
    sigma = fit_day_sigma(rates["day"], rates["weekday"], rates["weekday_of_day"], rates["block_mean"],
                          burst_var, phi)  # fmt: skip
    classes, n_no_class = fit_classes(df)
    pp = Path(partiprompts) if partiprompts is not None else partiprompts_tsv()
    types = df["predict_type"].astype(str).value_counts(normalize=True).sort_index()
    models = df["checkpoint_model_version_id"].value_counts(normalize=True) if (
        "checkpoint_model_version_id" in df.columns) else pd.Series(dtype=float)  # fmt: skip
    params = WorkloadParams(
        base_rate=rates["base"], hour_factors=rates["hour"].round(6).tolist(),
        weekday_factors=rates["weekday"].round(6).tolist(), day_sigma=round(sigma, 6),
        burst_sigma=round(float(np.sqrt(np.log1p(burst_var))), 6), burst_phi=round(phi, 6),
        classes=classes, prompt_length=fit_prompt_lengths(df, pp),
        data={"file": Path(path).name, "first_request": str(df["t"].iloc[0]), "last_request": str(df["t"].iloc[-1]),
              "window": [start, end], "days": int(counts.shape[0]), "requests": len(df), "requests_without_class": n_no_class,
              "weekday_days": rates["weekday_days"].tolist(), "daily_requests": counts.sum(1).tolist(),
              "type_share": types.round(6).to_dict(), "models": int(models.size),
              "top10_model_share": models.head(10).round(6).tolist()},
        assumptions=[
            "Whole days from the first request's day 00:00 to the last request's day 24:00 are observed.",
            "Hour of day and weekday are the trace's clock (anonymising offset) read as UTC.",
            "Requests draw their (type, images, steps) class independently of each other and of time.",
            "All requests count as arrivals whatever their predict_status.",
            "Burst factor fitted by moments (variance, and autocovariance over 12 lags of 5 min): it matches "
            "the trace's dispersion and lag-1 autocorrelation, not the exact share of empty slots (see fit).",
        ],
    )  # fmt: skip
    params.fit = fit_quality(params, counts, rates, day0, quality_replicates)
    return params


# ---------------------------------------------------------------------------------------------- sampling


def _fine_step(slot_s: float) -> int:
    s = float(slot_s)
    if not np.isfinite(s) or s <= 0 or s != int(s) or (BLOCK_S % s and s % BLOCK_S):
        raise WorkloadError(f"slot_s must be a whole number of seconds that divides or is a multiple of "
                            f"{BLOCK_S}, got {slot_s!r}")  # fmt: skip
    return int(min(s, BLOCK_S))


def sample_arrivals(
    params: WorkloadParams,
    rng: np.random.Generator,
    start: pd.Timestamp | str,
    slots: int,
    slot_s: float = BLOCK_S,
    mean_rate_scale: float = 1.0,
) -> dict[str, np.ndarray]:
    """Arrivals in ``slots`` slots of ``slot_s`` seconds from ``start`` (naive = UTC), all randomness from
    ``rng``. Returns arrays: ``slot_start`` (datetime64[ns], UTC), ``requests`` and ``images`` (slots,),
    ``rate`` (slots,) the realised Poisson mean, ``requests_by_type`` (slots, T) over ``type_names``,
    ``requests_by_steps`` and ``images_by_steps`` (slots, S) over ``step_values``. The 5-minute burst
    factor is shared by the slots inside one 5-minute block and summed over the blocks of a longer slot."""
    if int(slots) != slots or slots < 1:
        raise WorkloadError(f"slots must be a positive integer, got {slots!r}")
    if not (np.isfinite(mean_rate_scale) and mean_rate_scale >= 0):
        raise WorkloadError(f"mean_rate_scale must be finite and >= 0, got {mean_rate_scale!r}")
    fine = _fine_step(slot_s)
    per_slot, slots = int(slot_s) // fine, int(slots)
    t0 = pd.Timestamp(start)
    t0 = t0.tz_localize("UTC") if t0.tz is None else t0.tz_convert("UTC")
    offs = np.arange(slots * per_slot, dtype=np.int64) * fine  # seconds from start, fine steps
    secs = t0.value // 10**9 + offs  # Unix seconds (UTC): calendar by integer arithmetic, no pandas per call
    epoch_day = secs // 86400
    day, block = epoch_day - epoch_day[0], offs // BLOCK_S
    sig = params.day_sigma
    level = np.exp(sig * rng.standard_normal(int(day[-1]) + 1) - sig**2 / 2)
    burst = burst_factors(params.burst_sigma, params.burst_phi, int(block[-1]) + 1, rng)
    # 1970-01-01 was a Thursday (weekday 3 with Monday = 0)
    shape = (
        np.asarray(params.hour_factors)[(secs // 3600) % 24]
        * np.asarray(params.weekday_factors)[(epoch_day + 3) % 7]
    )
    lam = params.base_rate * (fine / BLOCK_S) * mean_rate_scale * shape * level[day] * burst[block]
    n = rng.poisson(lam).reshape(slots, per_slot).sum(axis=1)
    out = _split_classes(params, rng, n)
    out["slot_start"] = (t0.value + offs[::per_slot] * 10**9).astype("datetime64[ns]")
    out["rate"] = lam.reshape(slots, per_slot).sum(axis=1)
    return out


def _split_classes(params: WorkloadParams, rng: np.random.Generator, n: np.ndarray) -> dict[str, np.ndarray]:
    """Each request draws its class; per-slot tallies by bincount (cost grows with requests, not classes)."""
    c = params.classes
    prob = np.asarray(c["prob"], dtype=float)
    cls = rng.choice(len(prob), size=int(n.sum()), p=prob / prob.sum())
    slot = np.repeat(np.arange(len(n)), n)
    type_names, step_values = np.asarray(params.type_names), params.step_values
    type_of = np.searchsorted(type_names, np.asarray(c["predict_type"]))[cls]
    step_of = np.searchsorted(step_values, np.asarray(c["steps"], dtype=np.int64))[cls]
    img = np.asarray(c["images"], dtype=np.int64)[cls]
    T, S, N = len(type_names), len(step_values), len(n)

    def tally(keys: np.ndarray, width: int, weights: np.ndarray | None = None) -> np.ndarray:
        counts = np.bincount(slot * width + keys, weights=weights, minlength=N * width)
        return counts.reshape(N, width).round().astype(np.int64)

    return {
        "requests": n.astype(np.int64),
        "images": tally(np.zeros_like(slot), 1, img)[:, 0],
        "requests_by_type": tally(type_of, T),
        "requests_by_steps": tally(step_of, S),
        "images_by_steps": tally(step_of, S, img),
        "type_names": type_names,
        "step_values": step_values,
    }


def sample_prompt_lengths(params: WorkloadParams, rng: np.random.Generator, n: int,
                          which: str = "trace") -> np.ndarray:  # fmt: skip
    """Prompt lengths drawn from the stored quantiles by inverse-CDF interpolation."""
    table = params.prompt_length.get(which)
    if table is None:
        raise WorkloadError(f"no prompt-length table {which!r}; have {sorted(params.prompt_length)}")
    q = np.asarray(table["quantiles_0_100"], dtype=float)
    return np.interp(rng.uniform(0, 100, size=int(n)), np.arange(101), q)


# ------------------------------------------------------------------------------------------- plot and CLI


def plot_fit(params: WorkloadParams, trace: str | Path, out: str | Path) -> Path:
    """A PNG: diurnal profile, slot-count distribution, daily totals, images and steps (trace vs model)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    df = read_trace(trace)
    day0, counts = slot_counts(df["t"])
    sim = sample_arrivals(params, np.random.default_rng(1), day0, counts.size, BLOCK_S)
    fig, ax = plt.subplots(2, 2, figsize=(11, 7.5))
    hourly = counts.reshape(counts.shape[0], 24, -1).sum(2).mean(0)
    ax[0, 0].bar(range(24), hourly, color="0.7", label="trace")
    ax[0, 0].plot(
        range(24), np.asarray(params.hour_factors) * params.base_rate * 12, "r.-", label="model mean"
    )
    ax[0, 0].set(xlabel="hour of day (trace clock)", ylabel="requests per hour", title="diurnal shape")
    top = int(np.percentile(counts, 99.5)) + 2
    ax[0, 1].semilogy(
        np.bincount(counts.ravel(), minlength=top)[:top] / counts.size, "ko", ms=3, label="trace"
    )
    ax[0, 1].semilogy(
        np.bincount(sim["requests"], minlength=top)[:top] / counts.size, "r-", label="model (1 draw)"
    )
    ax[0, 1].set(
        xlabel="requests per 5-min slot",
        ylabel="share of slots",
        title=f"burstiness: KS {params.fit.get('ks_slot_counts_simulated', float('nan')):.3f}",
    )
    ax[1, 0].plot(counts.sum(1), "ko-", label="trace")
    ax[1, 0].plot(sim["requests"].reshape(counts.shape).sum(1), "r.-", label="model (1 draw)")
    ax[1, 0].set(xlabel="day", ylabel="requests per day", title=f"day level: sigma {params.day_sigma:.2f}")
    c = params.classes
    img = pd.Series(c["prob"]).groupby(np.asarray(c["images"])).sum()
    ax[1, 1].bar(img.index.astype(str), img.to_numpy(), color="0.5")
    ax[1, 1].set(xlabel="images per request", ylabel="share of requests", title="images per request")
    for a in ax.ravel()[:3]:
        a.legend()
    fig.suptitle("GenTD26 arrival model fit (traces/workload.py)")
    fig.tight_layout()
    return write_png_atomic(out, fig, dpi=90)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m traces.workload", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    fit = sub.add_parser("fit", help="fit the arrival model on a GenTD26-format trace and write JSON")
    fit.add_argument("--data", required=True, help="path of the request trace CSV")
    fit.add_argument("--out", default=str(DEFAULT_PARAMS), help="where to write the fitted JSON")
    fit.add_argument("--partiprompts", default=None, help="PartiPrompts.tsv for the prompt-length comparison")
    fit.add_argument("--plot", default=None, help="also write a PNG of the fit here")
    fit.add_argument("--start", default=None, help="fit only requests at or after this time (trace clock)")
    fit.add_argument("--end", default=None, help="fit only requests before this time (trace clock)")
    fit.add_argument("--replicates", type=int, default=40, help="simulations used to measure fit quality")
    args = ap.parse_args(argv)
    try:
        params = fit_workload(args.data, args.partiprompts, args.replicates, args.start, args.end)
        params.save(args.out)
        if args.plot:
            plot_fit(params, args.data, args.plot)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}: base {params.base_rate:.3f}/5 min, burst sigma {params.burst_sigma:.3f} "
          f"phi {params.burst_phi:.3f}, "
          f"day sigma {params.day_sigma:.3f}, KS {params.fit['ks_slot_counts_simulated']:.3f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
