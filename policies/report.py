"""Figures of the six studies and the README's generated results section (tables, figure links and a "what we
found" text computed from results/*/*.csv): ``python -m policies.report [--out results] [--readme README.md]``."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from scipy import stats

from policies.experiment_settings import BASE_SETTINGS, BUDGETS, LEARNERS, MAIN, PLAIN, SHAPER_KNOBS, STUDIES
from policies.intervals import mean_ci
from traces.atomic import write_png_atomic, write_text_atomic
from traces.revision import short_revision

START, END = "<!-- results:start -->", "<!-- results:end -->"
LEARNER_ORDER = tuple(LEARNERS)


class ReportError(ValueError):
    """Nothing to report from, or a README that cannot be updated."""


# --- statistics ----------------------------------------------------------------------------------------------


def welch(a, b) -> dict[str, float]:
    """Difference of means a - b, its 95% Welch interval and the two-sided p-value (nan if not testable)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    diff = float(a.mean() - b.mean()) if len(a) and len(b) else float("nan")
    if len(a) < 2 or len(b) < 2 or (a.var(ddof=1) + b.var(ddof=1)) == 0:
        return {"diff": diff, "lo": float("nan"), "hi": float("nan"), "p": float("nan")}
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    dof = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = stats.t.ppf(0.975, dof) * np.sqrt(va + vb)
    p = float(stats.ttest_ind(a, b, equal_var=False).pvalue)
    return {"diff": diff, "lo": diff - half, "hi": diff + half, "p": p}


def paired_text(diffs, unit: str = "seeds") -> str:
    """Mean of paired differences (one per seed, or per ``unit``) with its 95% t-interval and one-sample p-value."""
    d = np.asarray(diffs, dtype=float)
    d = d[np.isfinite(d)]
    m, half, n = mean_ci(d)
    if n < 2 or not np.isfinite(half):
        return f"{fmt(m)} (not testable, n = {n} {unit})"
    if d.std(ddof=1) == 0:  # every seed the same difference (identical runs: 0): no spread to test against
        every = "every seed" if unit == "seeds" else f"all {unit}"
        return f"{fmt(m)} on {every} (no spread to test, n = {n} {unit})"
    p = float(stats.ttest_1samp(d, 0.0).pvalue)
    word = "significant" if p < 0.05 else "not significant"
    return (
        f"{fmt(m)} (95% CI {fmt(m - half)} to {fmt(m + half)}, p = {fmt(p)}: {word} at 95%, n = {n} {unit})"
    )


def significance(test: dict[str, float], n: tuple[int, int]) -> str:
    if not np.isfinite(test["p"]):
        return f"not testable at 95% (n = {n[0]} vs {n[1]} seeds)"
    word = "significant" if test["p"] < 0.05 else "not significant"
    return (
        f"difference {fmt(test['diff'])} (95% CI {fmt(test['lo'])} to {fmt(test['hi'])}), "
        f"Welch p = {test['p']:.2g}: {word} at 95% (n = {n[0]} vs {n[1]} seeds)"
    )


def fmt(x: float | None) -> str:
    """A number as the README shows it (the tests format CSV values with this same function)."""
    if x is None or not np.isfinite(x):
        return "n/a"
    if abs(x) >= 100:
        return f"{x:.1f}"
    if abs(x) >= 1:
        return f"{x:.2f}"
    return f"{x:.3g}"


# --- figures -------------------------------------------------------------------------------------------------


def jobs_log_axis(axis) -> None:
    """A log-scaled axis of job counts labelled 20k, 30k, 50k, 100k, ... (the other minor ticks unlabelled)."""
    thousands = matplotlib.ticker.FuncFormatter(
        lambda x, _: (
            f"{x / 1000:g}k" if x > 0 and round(x / 10 ** np.floor(np.log10(x))) in (1, 2, 3, 5) else ""
        )
    )
    axis.set_major_formatter(thousands)
    axis.set_minor_formatter(thousands)


def save_figure(fig, path: Path) -> Path:
    """Save a figure as a PNG atomically, cropped to what is drawn, and close it."""
    return write_png_atomic(path, fig, dpi=120, tight=True)


def ordered(policies) -> list[str]:
    names = list(dict.fromkeys(policies))
    first = [p for p in LEARNER_ORDER if p in names]
    return (
        first
        + sorted(p for p in names if p not in first and p != "oracle")
        + (["oracle"] if "oracle" in names else [])
    )


def held_out_curves(frame: pd.DataFrame) -> bool:
    """Whether every curve point (or convergence row) comes from a held-out evaluation during training
    (``policies.eval_callback``) rather than from a training episode."""
    return "curve_source" in frame.columns and bool((frame["curve_source"] == "held-out").all())


def chosen_curves(curves: pd.DataFrame) -> pd.DataFrame:
    """The deployed-policy curve of every run that selects on validation days: at each evaluation step, the
    held-out utility of the policy its validation days had chosen by then (the best on them so far, the first of
    equal maxima, as ``policies.eval_callback`` keeps it; a step without a validation value keeps the earlier
    choice). An early rise means a good policy was available early. Its last point is the chosen policy's
    utility on the training-time held-out days, which is the run's outcome where the page evaluated on those
    same days. The raw curve asks how good the latest policy is; this one how good the policy a run would
    deploy if stopped at that step is. Runs without validation evaluations are left out (an empty frame where
    none has them)."""
    if curves.empty or "val_utility" not in curves.columns:
        return curves.iloc[0:0]
    knobs = [k for k in SHAPER_KNOBS if k in curves.columns]
    runs = []
    for _, run in curves.groupby(["setting", "policy", "seed", *knobs], sort=False, dropna=False):
        if run.val_utility.isna().all():
            continue
        run = run.sort_values("step")
        best, chosen, utility = -np.inf, np.nan, []
        for val, held in zip(run.val_utility, run.utility, strict=True):
            if val > best:  # strictly (and never for NaN): a later tie does not replace the policy kept
                best, chosen = val, held
            utility.append(chosen)
        runs.append(run.assign(utility=utility))
    return pd.concat(runs, ignore_index=True) if runs else curves.iloc[0:0]


def curve_band(curves: pd.DataFrame, window: int) -> pd.DataFrame:
    """Per policy and step: mean over seeds of the smoothed episode utility and its 95% half-width."""
    rows = []
    for _, g in curves.groupby(["policy", "seed"]):
        g = g.sort_values("step")
        rows.append(g.assign(smooth=g.utility.rolling(window, min_periods=1).mean()))
    smooth = pd.concat(rows)
    out = []
    for (policy, step), g in smooth.groupby(["policy", "step"]):
        m, h, n = mean_ci(g.smooth)
        out.append({"policy": policy, "step": step, "mean": m, "half": h, "n": n})
    return pd.DataFrame(out)


def convergence_figure(
    curves: pd.DataFrame,
    path: Path,
    config: dict,
    by_setting: bool = False,
    deployed: bool = False,
    legend_below: bool = False,
) -> None:
    """Left: utility per training episode; right: the same minus plain SAC's on the same episode (paired, within
    a setting). ``by_setting``: one curve per policy and setting, labelled with both. ``deployed``: the curves
    are ``chosen_curves`` (the policy chosen on validation days so far), labelled so and not smoothed.
    ``legend_below``: one legend for both panels, below them (for long labels), instead of one in each."""
    from policies.experiments import paired_to_plain

    episodes = curves.groupby(["policy", "setting", "seed"]).size().max()
    window = 1 if deployed else max(1, int(episodes) // 10)
    held = held_out_curves(curves)
    what, unit = ("held-out utility", "evaluation") if held else ("training-episode utility", "episode")
    what = "held-out utility of the policy chosen so far" if deployed else what
    paired = curves.assign(utility=paired_to_plain(curves)).dropna(subset=["utility"])
    paired = paired[paired.policy != PLAIN]
    if by_setting:
        curves, paired = (f.assign(policy=f.policy + " " + f.setting) for f in (curves, paired))
    panels = [(curves, f"{what} ({currency(config)}/day)")]
    if not paired.empty:  # a page of sac alone has nothing to pair: one panel
        panels.append((paired, f"minus {PLAIN} on the same {unit} ({currency(config)}/day)"))
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 4.2), squeeze=False)
    for ax, (data, ylabel) in zip(axes[0], panels, strict=True):
        band = curve_band(data, window)
        drawn = set()
        for i, policy in enumerate(ordered(band.policy)):
            g = band[band.policy == policy]
            line = (tuple(g.step), tuple(np.round(g["mean"], 9)))
            if by_setting and line in drawn:  # the same runs on another page (e.g. its sac): drawn once
                continue
            drawn.add(line)
            color = f"C{list(ordered(curves.policy)).index(policy) if policy in set(curves.policy) else i}"
            ax.plot(g.step, g["mean"], label=policy, color=color)
            ax.fill_between(
                g.step, g["mean"] - g.half.fillna(0), g["mean"] + g.half.fillna(0), alpha=0.2, color=color
            )
        ax.set_xlabel("environment steps")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if not legend_below:
            ax.legend(fontsize=8)
    if legend_below:  # a label's colour is the same in both panels; a line drawn in one only is named too
        named = {}
        for ax in axes[0]:
            for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
                named.setdefault(label, handle)
        handles, labels = list(named.values()), list(named)
        fig.legend(handles, labels, loc="upper center", ncol=1 + (len(labels) > 4), fontsize=8,
                   bbox_to_anchor=(0.5, 0.0))  # fmt: skip
    if len(panels) == 2:
        axes[0, 1].axhline(0, color="k", lw=0.8)
    per_line = curves.groupby(["policy", "setting"]).seed.nunique()
    seeds = f"{per_line.min()}" + (f"-{per_line.max()}" if per_line.max() != per_line.min() else "")
    title = "Deployed policy (best on validation days so far)" if deployed else "Convergence"
    smoothed = f"smoothed over {window} {unit}s" if window > 1 else "not smoothed"
    fig.suptitle(
        f"{title}, sparse reward, {config.get('scenario')}: mean of {seeds} seeds, 95% CI ({smoothed})"
    )
    save_figure(fig, path)


def selection_figure(curves: pd.DataFrame, path: Path, config: dict) -> int:
    """Checkpoint selection on validation days, one panel per setting, learner and shaper setting (one run a
    seed): each seed's held-out curve (thin), the step its validation days chose (dot), and the means of the
    last, the chosen and the held-out peak (which choosing on the held-out days themselves would give: a bound
    no honest selection reaches). Returns the number of panels: 0 (nothing drawn) when no run selected."""
    if "val_utility" not in curves.columns or curves.val_utility.isna().all():
        return 0
    curves = curves.dropna(subset=["val_utility"])
    knobs = [k for k in SHAPER_KNOBS if k in curves.columns]  # older pages label every sensitivity run "base"
    groups = list(curves.groupby(["setting", "policy", *knobs], sort=False, dropna=False))
    cols = min(3, len(groups))
    rows = -(-len(groups) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6.5 * cols, 4.2 * rows), squeeze=False, sharey=True)
    for ax, (key, g) in zip(axes.flat, groups, strict=False):
        setting, policy, *values = key
        ends = {"last": [], "chosen": [], "held-out peak": []}
        for i, (seed, run) in enumerate(g.groupby("seed")):
            run = run.sort_values("step").reset_index(drop=True)
            chosen = run.loc[run.val_utility.idxmax()]  # the first of equal maxima, as the run keeps it
            ax.plot(run.step, run.utility, color=f"C{i}", lw=0.8, alpha=0.6)
            ax.plot(chosen.step, chosen.utility, "o", color=f"C{i}", ms=6, label=f"seed {seed}")
            for name, value in zip(
                ends, (run.utility.iloc[-1], chosen.utility, run.utility.max()), strict=True
            ):
                ends[name].append(value)
        shaper = "".join(
            f" {SHAPER_KNOBS[k]}={v:g}"
            for k, v in zip(knobs, values, strict=True)
            if pd.notna(v) and f"{SHAPER_KNOBS[k]}=" not in setting  # not named twice
        )
        means = ", ".join(f"{k} {fmt(float(np.mean(v)))}" for k, v in ends.items())
        ax.set_title(f"{policy} {setting}{shaper}\nmean over seeds: {means}", fontsize=9)
        ax.set_xlabel("environment steps")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=2)
    for ax in axes.flat[len(groups) :]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_ylabel(f"held-out utility ({currency(config)}/day)")
    fig.suptitle(f"Checkpoints chosen on validation days (dots), {config.get('scenario')}")
    fig.tight_layout()
    save_figure(fig, path)
    return len(groups)


def pages_curves_figure(
    pages: list[Path], path: Path, study: str = "sparsity", deployed: bool = False
) -> Path:
    """One figure of a study's learning curves from several pages, one line per page, learner and setting
    (the right panel pairs each learner with its own page's sac); ``deployed``: their deployed-policy curves
    (``chosen_curves``). A page written ``a+b`` pools pages into one, e.g. a page of a shaped learner and the
    page whose sac ran the same seeds, so that its learners pair with that sac: the pooled pages must share
    their scenario, held-out days and curve labels, and no learner may have a seed on two of them."""
    frames, labels, first_config = [], set(), None
    for group in dict.fromkeys(pages):
        members = [Path(p.strip()) for p in str(group).split("+")]
        if any(not str(m) or str(m) == "." for m in members):
            raise ReportError(f"{group}: an empty page name in a pooled group (PAGE+PAGE)")
        pooled, configs = [], []
        for page in members:
            curves = load_curves(page, study)
            if deployed:
                curves = chosen_curves(curves)
            if curves.empty:
                what = (
                    "deployed-policy curves (runs chosen on validation days)"
                    if deployed
                    else "learning curves"
                )
                raise ReportError(f"no {study} {what} under {page}")
            pooled.append(curves)
            loaded = load_study(page, study)
            configs.append(loaded[1] if loaded else {})
        if first_config is None:
            first_config = configs[0]  # the figure's title names the first page's scenario
        if len(members) > 1:
            check_poolable(str(group), members, pooled, configs)
        label = members[0].name + (
            f" +{len(members) - 1} page{'s' * (len(members) > 2)}" if len(members) > 1 else ""
        )
        if label in labels:  # the legend names a group by its first page
            raise ReportError(
                f"{group}: labelled {label!r} like another group (the two would be drawn as one line)"
            )
        labels.add(label)
        curves = pd.concat(pooled, ignore_index=True)
        frames.append(curves.assign(setting=curves.setting + f" [{label}]"))
    convergence_figure(
        pd.concat(frames, ignore_index=True),
        path,
        first_config or {},
        by_setting=True,
        deployed=deployed,
        legend_below=True,  # the labels name pages
    )
    return path


def check_poolable(label: str, members: list[Path], pooled: list[pd.DataFrame], configs: list[dict]) -> None:
    """Pages pooled into one line per learner: same scenario, held-out days and curve labels, and no learner's
    seed on two of them (ReportError naming what differs)."""
    for key in ("scenario", "eval_days", "eval_day_seeds"):
        values = {json.dumps(c.get(key), sort_keys=True) for c in configs}
        if len(values) > 1:
            raise ReportError(f"{label}: the pooled pages differ in {key} ({', '.join(sorted(values))})")
    names = [sorted(set(c.setting)) for c in pooled]
    if any(n != names[0] for n in names):
        shown = "; ".join(f"{m.name}: {', '.join(n)}" for m, n in zip(members, names, strict=True))
        raise ReportError(f"{label}: the pooled pages label their curves differently ({shown})")
    seen: dict[tuple, str] = {}
    for page, curves in zip(members, pooled, strict=True):
        for policy, seed in sorted(set(zip(curves.policy, curves.seed, strict=True))):
            if (policy, seed) in seen:
                raise ReportError(
                    f"{label}: {policy} seed {seed} is on both {seen[policy, seed]} and {page.name}"
                )
            seen[policy, seed] = page.name


def points(table: pd.DataFrame, column: str, ax, settings: list[str], ylabel: str) -> None:
    """Grouped point ranges: x = setting, one marker per policy (mean over seeds) with 95% CI whiskers."""
    policies = ordered(table.policy)
    width = 0.8 / max(len(policies), 1)
    for i, policy in enumerate(policies):
        stats_ = [mean_ci(table[(table.policy == policy) & (table.setting == s)][column]) for s in settings]
        x = np.arange(len(settings)) + (i - (len(policies) - 1) / 2) * width
        yerr = [0 if not np.isfinite(h) else h for _, h, _ in stats_]
        ax.errorbar(x, [m for m, _, _ in stats_], yerr=yerr, fmt="o", label=policy, capsize=3, color=f"C{i}")
    ax.set_xticks(np.arange(len(settings)), settings, rotation=20 if len(settings) > 3 else 0)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)


def outcome_figure(table: pd.DataFrame, path: Path, config: dict, title: str) -> None:
    settings = list(dict.fromkeys(table.setting))
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    points(table, "utility_pct_of_bound", axes[0], settings, "utility, % of oracle bound")
    points(table, "violation_rate", axes[1], settings, "violation rate (late + dropped)")
    points(table, "energy_cost", axes[2], settings, f"energy cost ({currency(config)}/day)")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(
        handles, labels, loc="lower center", ncol=min(len(labels), 8), fontsize=8, bbox_to_anchor=(0.5, -0.06)
    )
    fig.suptitle(
        f"{title} ({config.get('scenario')}, {len(config.get('eval_days', []))} held-out days; mean over seeds, 95% CI)"
    )
    save_figure(fig, path)


def by_factor(ax, table: pd.DataFrame, prefix: str, column: str, skip: tuple[str, ...] = ("oracle",)) -> None:
    """One line per policy: ``column``'s mean and 95% CI over seeds against the number in the setting's name
    (``k=0.5`` with prefix ``k=``), in one colour per policy whatever is skipped; a policy run at only some of the
    settings gets markers without a line (nothing is known between them)."""
    t = table.assign(k=table.setting.str.removeprefix(prefix).astype(float))
    every = sorted(t.k.unique())
    for i, policy in enumerate(ordered(t.policy)):
        if policy in skip:
            continue
        g = [(k, *mean_ci(t[(t.policy == policy) & (t.k == k)][column])) for k in every]
        g = [(k, m, h) for k, m, h, n in g if n > 0]
        ks, ms, hs = zip(*g, strict=True)
        style = "-" if len(ks) == len(every) else "none"
        ax.errorbar(
            ks, ms, yerr=np.nan_to_num(hs), label=policy, marker="o", capsize=3, ls=style, color=f"C{i}"
        )
    ax.grid(alpha=0.3)


def prices_figure(table: pd.DataFrame, path: Path, config: dict) -> None:
    fig, ax = plt.subplots(figsize=(7, 4))
    by_factor(ax, table, "k=", "utility_pct_of_bound")
    ax.set_xlabel("price volatility factor k  (p' = mean + k (p - mean))")
    ax.set_ylabel("utility, % of oracle bound")
    ax.set_title(f"Price fluctuation ({config.get('scenario')})")
    ax.legend(fontsize=8)
    save_figure(fig, path)


def energy_figure(table: pd.DataFrame, path: Path, config: dict) -> None:
    """Utility as % of the oracle bound, and energy cost as % of revenue, against the price level."""
    t = table.assign(energy_share=100 * table.energy_cost / table.revenue)
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.2))
    by_factor(axes[0], t, "level=", "utility_pct_of_bound")
    by_factor(axes[1], t, "level=", "energy_share", skip=())
    axes[0].set_ylabel("utility, % of oracle bound")
    axes[1].set_ylabel("net energy cost, % of revenue")
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlabel("price level (every electricity price x level)")
    axes[1].legend(fontsize=8)  # the right panel has every policy, the oracle too
    fig.suptitle(
        f"Energy weighing more ({config.get('scenario')}, {len(config.get('eval_days', []))} held-out days; "
        "mean over seeds, 95% CI)"
    )
    save_figure(fig, path)


def sensitivity_figure(table: pd.DataFrame, path: Path, config: dict) -> None:
    t = table[table.policy != "oracle"]
    fig, axes = plt.subplots(1, 3, figsize=(13, 4), sharey=True)
    for ax, (name, label) in zip(
        axes, (("W", "denoising steps W"), ("M", "latent size M"), ("eta", "eta")), strict=True
    ):
        sub = t[t.setting.str.startswith(f"{name}=")]
        settings = list(dict.fromkeys(sub.setting))
        stats_ = [mean_ci(sub[sub.setting == s].utility_pct_of_bound) for s in settings]
        yerr = [np.nan_to_num(h) for _, h, _ in stats_]
        ax.errorbar(settings, [m for m, _, _ in stats_], yerr=yerr, fmt="o", capsize=3)
        ax.set_xlabel(label)
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("sac+diffusion utility, % of oracle bound")
    fig.suptitle(f"Shaper sensitivity ({config.get('scenario')}, held-out days)")
    save_figure(fig, path)


def study_figures(
    study: str, folder: Path, table: pd.DataFrame, curves: pd.DataFrame, config: dict
) -> list[Path]:
    """The study's PNG figures (none when its table is empty)."""
    made = []
    if study == "convergence" and not curves.empty:
        convergence_figure(curves, folder / "convergence.png", config)
        made.append(folder / "convergence.png")
    if study in ("sparsity", "energy") and not curves.empty:
        convergence_figure(curves, folder / f"{study}_curves.png", config, by_setting=True)
        made.append(folder / f"{study}_curves.png")
    if not curves.empty and selection_figure(curves, folder / f"{study}_selection.png", config):
        made.append(folder / f"{study}_selection.png")
    chosen = chosen_curves(curves) if study in ("sparsity", "energy") else pd.DataFrame()
    if not chosen.empty:
        path = folder / f"{study}_deployed.png"
        convergence_figure(chosen, path, config, by_setting=True, deployed=True)
        made.append(path)
    if table.empty or study == "convergence":
        return made
    path = folder / f"{study}.png"
    if study == "prices":
        prices_figure(table, path, config)
    elif study == "energy":
        energy_figure(table, path, config)
    elif study == "sensitivity":
        sensitivity_figure(table, path, config)
    else:
        titles = {
            "outcome": "Outcome on held-out days",
            "models": "Model heterogeneity",
            "ablations": "Ablations",
            "sparsity": "Reward sparsity",
        }
        outcome_figure(table, path, config, titles[study])
    return [*made, path]


def currency(config: dict) -> str:
    text = config.get("scenario_toml", "")
    for line in text.splitlines():
        if line.startswith("currency"):
            return line.split("=", 1)[1].strip().strip('"')
    return "currency"


# --- the README section --------------------------------------------------------------------------------------


def load_study(out: Path, study: str) -> tuple[pd.DataFrame, dict] | None:
    path, cfg = out / study / f"{study}.csv", out / study / "config.json"
    if not path.is_file() or not cfg.is_file():
        return None
    return pd.read_csv(path), json.loads(cfg.read_text(encoding="utf-8"))


def per_seed(
    table: pd.DataFrame, policy: str, setting: str | None = None, column: str = "utility"
) -> np.ndarray:
    t = table[table.policy == policy]
    if setting is not None:
        t = t[t.setting == setting]
    return t[column].to_numpy(dtype=float)


def summary_table(table: pd.DataFrame, cur: str) -> str:
    """Markdown: one row per (setting, policy) with mean ± 95% half-width over seeds."""
    cols = [("utility", f"utility ({cur}/day)"), ("utility_pct_of_bound", "% of oracle"), ("violation_rate", "violation rate"),
            ("energy_cost", f"energy cost ({cur}/day)")]  # fmt: skip
    cols = [(c, h) for c, h in cols if c in table.columns]
    lines = ["| setting | policy | seeds | " + " | ".join(h for _, h in cols) + " |"]
    lines.append("|" + "---|" * (3 + len(cols)))
    for setting in dict.fromkeys(table.setting):
        t = table[table.setting == setting]
        for policy in ordered(t.policy):
            cells = []
            for c, _ in cols:
                m, h, n = mean_ci(per_seed(t, policy, column=c))
                cells.append(fmt(m) + (f" ± {fmt(h)}" if np.isfinite(h) else ""))
            lines.append(f"| {setting} | {policy} | {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def compare(
    table: pd.DataFrame, a: str, b: str, setting: str | None, column: str = "utility", paired: bool = True
) -> str:
    """Welch's test of ``a`` against ``b`` over seeds, and, where both ran the same seeds, the paired test: runs
    of one seed share the training env's seed (its days and arrivals) and every evaluation's days and arrivals,
    so pairing removes the day-to-day and seed-to-seed variance both policies see."""
    x, y = per_seed(table, a, setting, column), per_seed(table, b, setting, column)
    if len(x) == 0 or len(y) == 0:
        return f"{a} or {b} missing"
    text = significance(welch(x, y), (len(x), len(y)))
    pair = paired_by_seed(table, a, b, setting, column) if paired else None
    return text if pair is None else f"{text}; paired by seed: {pair}"


def paired_by_seed(table: pd.DataFrame, a: str, b: str, setting: str | None, column: str) -> str | None:
    """``paired_text`` of a - b over the seeds both ran (None with fewer than two, or without a seed column)."""
    if "seed" not in table.columns:
        return None
    t = table if setting is None else table[table.setting == setting]
    pair = seed_pairs(
        t[t.policy == a].groupby("seed")[column].mean(), t[t.policy == b].groupby("seed")[column].mean()
    )
    return paired_text((pair.a - pair.b).to_numpy()) if len(pair) >= 2 else None


def seed_pairs(x: pd.Series, y: pd.Series) -> pd.DataFrame:
    """Two per-seed series side by side (columns ``a`` and ``b``), over the seeds where both are finite."""
    return pd.concat({"a": x, "b": y}, axis=1, join="inner").dropna()


def others_than_plain(policies) -> list[str]:
    """The learners (in ``LEARNER_ORDER``) besides plain sac among ``policies``; none where sac did not run."""
    present = set(policies)
    return [p for p in LEARNER_ORDER if p != PLAIN and p in present] if PLAIN in present else []


def rival(policies) -> str | None:
    """The shaped learner a page compares with plain sac: sac+diffusion, else the first other learner it ran
    (e.g. the sac+perfect diagnostic); None without sac or without another learner."""
    return next(iter(others_than_plain(policies)), None)


def pct(table: pd.DataFrame, policy: str, setting: str | None = None) -> float:
    return mean_ci(per_seed(table, policy, setting, "utility_pct_of_bound"))[0]


def best_baseline(table: pd.DataFrame, setting: str) -> str | None:
    """The non-learned scheduler (a rule or the forecast planner; not the oracle) with the most utility."""
    t = table[(table.setting == setting) & ~table.policy.isin([*LEARNER_ORDER, "oracle"])]
    if t.empty:
        return None
    return str(t.groupby("policy").utility.mean().idxmax())


def found_convergence(t: pd.DataFrame, cur: str) -> list[str]:
    means = {p: mean_ci(per_seed(t, p))[0] for p in ordered(t.policy)}
    rank = ", ".join(f"{p} {fmt(m)}" for p, m in sorted(means.items(), key=lambda kv: -kv[1]))
    held = held_out_curves(t)
    what = "held-out utility during training" if held else "training-episode utility"
    text = (
        f"**Convergence** ({what} over the last quarter of training, {cur}/day): {rank}. "
        f"{MAIN} vs {PLAIN}: {compare(t, MAIN, PLAIN, None, paired=False)}."  # paired below, per curve
    )
    if "utility_minus_sac" in t.columns:
        parts = []
        for p in ordered(t.policy):
            if p != PLAIN:
                d = per_seed(t, p, column="utility_minus_sac")
                parts.append(f"{p} {paired_text(d)}")
        text += (
            f" Paired with {PLAIN} on the same {'held-out evaluations' if held else 'training episodes'} (same days "
            "and arrivals), the last-quarter "
            f"difference is: " + "; ".join(parts) + "."
        )
    if "shaper_corr_hidden" in t.columns:
        corr = t.groupby("policy", sort=False).shaper_corr_hidden.mean().dropna()
        text += (
            " Correlation of each shaper's term with the hidden per-slot utility at the end of training "
            "(a diagnostic the sparse reward never shows the agent): "
            + ", ".join(f"{p} {fmt(c)}" for p, c in corr.items())
            + "."
        )
    return [text]


def found_outcome(t: pd.DataFrame) -> list[str]:
    setting = t.setting.iloc[0]
    parts = [f"{p} {fmt(pct(t, p, setting))}%" for p in ordered(t.policy) if p != "oracle"]
    text = f"**Held-out days**: utility as % of the oracle bound: {', '.join(parts)}. {MAIN} vs {PLAIN}: {compare(t, MAIN, PLAIN, setting)}."
    h = best_baseline(t, setting)
    if h is not None and MAIN in set(t.policy):
        m, half, _ = mean_ci(per_seed(t, MAIN, setting))
        hv = float(t[(t.policy == h) & (t.setting == setting)].utility.mean())
        if np.isfinite(half) and abs(m - hv) <= half:
            rel = "within the 95% interval of"
        else:
            rel = "above" if m > hv else "below"
        text += f" The best baseline is {h} ({fmt(pct(t, h, setting))}% of the oracle); {MAIN} is {rel} it."
    if {"transferred", "arrived", "transfer_cost"} <= set(t.columns):
        share = t.groupby("policy", sort=False)[["transferred", "arrived", "transfer_cost"]].mean()
        parts = [f"{p} {fmt(100 * share.transferred[p] / share.arrived[p])}% ({fmt(share.transfer_cost[p])}/day)"
                 for p in ordered(t.policy) if share.arrived[p] > 0]  # fmt: skip
        text += (
            " Share of arriving jobs transferred to another ASP (and transfer cost): "
            + ", ".join(parts)
            + "."
        )
    if "production-default" in set(t.policy):
        base = pct(t, "production-default", setting)
        text += (
            f" Headroom: the production default (30 steps, local, battery idle) already reaches {fmt(base)}% of "
            f"the bound, so no scheduler can add more than {fmt(100 - base)}% of it here."
        )
    return [text]


def found_by_setting(t: pd.DataFrame, label: str) -> list[str]:
    lines = []
    for setting in dict.fromkeys(t.setting):
        parts = [
            f"{p} {fmt(pct(t, p, setting))}%"
            for p in ordered(t[t.setting == setting].policy)
            if p != "oracle"
        ]
        line = f"{setting}: {', '.join(parts)}"
        present = set(t[t.setting == setting].policy)
        versus = [f"{p} vs {PLAIN}: {compare(t, p, PLAIN, setting)}" for p in others_than_plain(present)]
        versus += versus_baseline(t, setting)
        if versus:
            line += f" ({'; '.join(versus)})"
        lines.append(line)
    return [f"**{label}** (utility as % of the oracle bound): " + "; ".join(lines) + "."]


def found_ablations(t: pd.DataFrame) -> list[str]:
    lines = found_by_setting(t, "Ablations")
    if "full" not in set(t.setting):
        return lines
    full = per_seed(t, MAIN, "full")
    deltas = []
    for setting in dict.fromkeys(t.setting):
        if setting != "full" and len(per_seed(t, MAIN, setting)):
            deltas.append(
                f"{setting}: {significance(welch(per_seed(t, MAIN, setting), full), (len(per_seed(t, MAIN, setting)), len(full)))}"
            )
    if deltas:
        lines.append(f"{MAIN} utility in each ablation minus the full system: " + "; ".join(deltas) + ".")
    return lines


DEFAULT_SHAPER = {"W": "W=5", "M": "M=128", "eta": "eta=0.4"}


def found_sensitivity(t: pd.DataFrame) -> list[str]:
    """Each setting against the paper's best (W = 5, M = 128, eta = 0.4), never best-vs-worst (post hoc)."""
    t = t[t.policy == MAIN]
    lines = []
    for name, ref in DEFAULT_SHAPER.items():
        sub = t[t.setting.str.startswith(f"{name}=")]
        if sub.empty:
            continue
        text = f"{name}: " + ", ".join(f"{s} {fmt(pct(sub, MAIN, s))}%" for s in dict.fromkeys(sub.setting))
        base = per_seed(sub, MAIN, ref)
        tests = [
            f"{s} minus {ref}: {significance(welch(per_seed(sub, MAIN, s), base), (len(per_seed(sub, MAIN, s)), len(base)))}"
            for s in dict.fromkeys(sub.setting)
            if s != ref and len(base)
        ]
        lines.append(text + ("" if not tests else " (" + "; ".join(tests) + ")"))
    head = (
        f"**Shaper sensitivity** ({MAIN}, held-out utility as % of the oracle bound; differences per day): "
    )
    return [head + "; ".join(lines) + "."]


def load_curves(out: Path, study: str) -> pd.DataFrame:
    path = out / study / f"{study}_curves.csv"
    return pd.read_csv(path) if path.is_file() else pd.DataFrame()


def curve_course(curves: pd.DataFrame, cur: str) -> list[str]:
    """Per setting and learner: the seed-mean curve's first, best and last point, and the shaper's correlation
    with the hidden per-slot utility at the first and last point (does training improve on where it starts?).
    Held-out curves only: training episodes are different days at every point."""
    if curves.empty or not held_out_curves(curves):
        return []
    parts = []
    for (setting, policy), g in curves.groupby(["setting", "policy"], sort=False):
        mean = g.groupby("step").mean(numeric_only=True)
        u = mean.utility
        text = (f"{setting} {policy}: {fmt(u.iloc[0])} at step {u.index[0]}, best {fmt(u.max())} at step "
                f"{u.idxmax()}, {fmt(u.iloc[-1])} at step {u.index[-1]}")  # fmt: skip
        corr = mean.get("shaper_corr_hidden", pd.Series(dtype=float)).dropna()
        if len(corr):
            ends = f"{fmt(corr.iloc[0])} -> {fmt(corr.iloc[-1])}"
            text += f" (shaper term's correlation with the hidden per-slot utility {ends})"
        parts.append(text)
    head = f"**Learning curves** (mean over seeds of the held-out evaluations during training, {cur}/day): "
    return [head + "; ".join(parts) + ".", *curve_area_comparison(curves, cur)]


def curve_area_comparison(curves: pd.DataFrame, cur: str) -> list[str]:
    """Per setting, the area under the held-out learning curve (a seed's mean over its evaluations after step
    0: higher means it learned sooner or better) of every other learner minus PLAIN, paired by seed; then the
    same under the deployed-policy curve (``chosen_curves``) where the runs selected on validation days."""
    lines = []
    for frame, head in (
        (curves, "**Area under the learning curve** (a seed's mean held-out utility over its evaluations after "
                 f"step 0, {cur}/day), paired by seed: "),
        (chosen_curves(curves), "**Area under the deployed-policy curve** (a seed's mean, over its evaluations "
                                "after step 0, of the held-out utility of the policy its validation days had "
                                f"chosen by then, {cur}/day), paired by seed: "),
    ):  # fmt: skip
        parts = area_differences(frame)
        if parts:
            lines.append(head + "; ".join(parts) + ".")
    return lines


def area_differences(curves: pd.DataFrame) -> list[str]:
    """Per setting, every other learner's area (a seed's mean utility over its evaluations after step 0) minus
    PLAIN's, paired by seed."""
    area = seed_areas(curves)
    parts = []
    for setting in area.setting.unique():
        for learner in others_than_plain(set(area[area.setting == setting].policy)):
            text = paired_by_seed(area, learner, PLAIN, setting, "utility")
            if text is not None:
                parts.append(f"{setting}: {learner} − {PLAIN} {text}")
    return parts


def seed_areas(curves: pd.DataFrame, steps: list[int] | None = None) -> pd.DataFrame:
    """A run's area under its curve: its mean utility over its evaluations after step 0 (the untrained policy),
    one row per setting, policy and seed. Given ``steps`` (e.g. the evaluations two pages share), the mean over
    exactly those, NaN for a run that lacks a finite value at one of them."""
    keys = ["setting", "policy", "seed"]
    if curves.empty:
        return pd.DataFrame(columns=[*keys, "utility"])
    if steps is None:
        return curves[curves.step > 0].groupby(keys, as_index=False, dropna=False).utility.mean()
    kept = (
        curves[curves.step.isin(steps)].groupby([*keys, "step"], as_index=False, dropna=False).utility.mean()
    )
    area = kept.groupby(keys, as_index=False, dropna=False).agg(
        utility=("utility", "mean"), n=("utility", "count")
    )
    area.loc[area.n < len(set(steps)), "utility"] = np.nan
    return area.drop(columns="n")


def versus_baseline(t: pd.DataFrame, setting: str) -> list[str]:
    """Each learner against the setting's best baseline, in points of the oracle bound: the baseline is
    deterministic (one run on the same days and arrivals), so the interval is over the learner's seeds."""
    h = best_baseline(t, setting)
    rows = t[t.setting == setting]
    learners = [p for p in ordered(rows.policy) if p in LEARNER_ORDER]
    if h is None or not learners:
        return []
    base = pct(t, h, setting)
    parts = [f"{p} {paired_text(per_seed(t, p, setting, 'utility_pct_of_bound') - base)}" for p in learners]
    return [f"learner − {h} (the best baseline, {fmt(base)}%), points: " + ", ".join(parts)]


def found_sparsity(t: pd.DataFrame, curves: pd.DataFrame, cur: str) -> list[str]:
    label = "Sparsity (settlement period in slots; scenario = its own)"
    return found_by_setting(t, label) + curve_course(curves, cur)


def found_energy(t: pd.DataFrame, curves: pd.DataFrame, cur: str) -> list[str]:
    """The by-setting findings, where each policy's money goes (net energy cost as % of revenue) per level, and
    the learning curves."""
    shares = []
    for setting in dict.fromkeys(t.setting):
        g = t[t.setting == setting].groupby("policy", sort=False)[["energy_cost", "revenue"]].mean()
        parts = [f"{p} {fmt(100 * g.energy_cost[p] / g.revenue[p])}%" for p in ordered(g.index)]
        shares.append(f"{setting}: {', '.join(parts)}")
    return [
        *found_by_setting(t, "Energy weighing more (every electricity price x level)"),
        f"**Net energy cost as % of revenue** (means over the held-out days and seeds): {'; '.join(shares)}.",
        *curve_course(curves, cur),
    ]


def found_selection(t: pd.DataFrame) -> list[str]:
    """The steps whose policies runs that select on validation days chose (``policy_step``), per setting and
    learner, seed by seed."""
    if "policy_step" not in t.columns or t.policy_step.isna().all():
        return []
    chosen = t.dropna(subset=["policy_step"]).drop_duplicates(["setting", "policy", "seed"])
    parts = [
        f"{setting} {policy}: {', '.join(str(int(x)) for x in g.sort_values('seed').policy_step)} (seeds "
        f"{', '.join(str(int(x)) for x in sorted(g.seed))})"
        for (setting, policy), g in chosen.groupby(["setting", "policy"], sort=False)
    ]
    return ["**Checkpoint selection** (the step of the policy each run chose on its validation days): "
            + "; ".join(parts) + "."]  # fmt: skip


def findings(loaded: dict[str, tuple[pd.DataFrame, dict]], folder: Path) -> list[str]:
    out = []
    cur = currency(next(iter(loaded.values()))[1]) if loaded else "currency"
    handlers = {
        "convergence": lambda t: found_convergence(t, cur),
        "outcome": found_outcome,
        "prices": lambda t: found_by_setting(t, "Price fluctuation"),
        "models": lambda t: found_by_setting(t, "Model heterogeneity"),
        "ablations": found_ablations,
        "sensitivity": found_sensitivity,
        "sparsity": lambda t: found_sparsity(t, load_curves(folder, "sparsity"), cur),
        "energy": lambda t: found_energy(t, load_curves(folder, "energy"), cur),
    }
    for study, (table, _) in loaded.items():
        out += handlers[study](table) + found_selection(table)
    seeds = min(len(cfg.get("budget", {}).get("seeds", [])) for _, cfg in loaded.values())
    if seeds < 5:
        out.append(
            f"**Caveat**: {seeds} seeds per learner, so intervals are wide and single p-values below 0.05 among the "
            "many comparisons above are fragile (no correction for multiple comparisons); treat them as hints."
        )
    return out


def provenance(loaded: dict[str, tuple[pd.DataFrame, dict]]) -> list[str]:
    """One row per distinct (command, commit, scenario, budget): which invocation produced which studies."""
    groups: dict[tuple, list[str]] = {}
    for study, (_, cfg) in loaded.items():
        b = cfg.get("budget", {})
        key = (cfg.get("command"), cfg.get("commit", ""), cfg.get("scenario"), b.get("name"), b.get("total_steps"),
               len(b.get("seeds", [])), len(cfg.get("eval_days", [])), cfg.get("started_utc"))  # fmt: skip
        groups.setdefault(key, []).append(study)
    head = ["| studies | command | commit | scenario | budget | steps/run | seeds | held-out days | started (UTC) |",
            "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    rows = [f"| {', '.join(studies)} | `{k[0]}` | `{short_revision(k[1])}` | "
            f"{k[2]} | {k[3]} | {k[4]} | {k[5]} | {k[6]} | {k[7]} |" for k, studies in groups.items()]  # fmt: skip
    return head + rows


def compute_text(loaded: dict[str, tuple[pd.DataFrame, dict]]) -> str:
    """The latest invocation's wall time and the run time of all its jobs (each counted once)."""
    cfg = max((c for _, c in loaded.values()), key=lambda c: c.get("finished_utc", ""))
    js = cfg.get("job_seconds", {})
    return (
        f"Latest invocation: {fmt(cfg.get('invocation_wall_s', float('nan')) / 60)} min wall time (finished runs "
        f"are skipped on resumption). Its {js.get('train_runs', 0)} training runs took {fmt(js.get('train_s', 0) / 60)} "
        f"min and its {js.get('evals', 0)} evaluations {fmt(js.get('eval_s', 0) / 60)} min, summed single-threaded "
        "(whichever invocation ran them; the pool runs two at a time)."
    )


def budget_text(cfg: dict, studies=STUDIES) -> str:
    """What the budget of a run meant, from its config JSON (so the README says exactly what was run); the
    settings of studies not in ``studies`` are left out."""
    b = cfg.get("budget", {})
    train = b.get("train", {})
    from policies.agents import AgentConfig

    shaper = {k: train.get(k, getattr(AgentConfig, k)) for k in SHAPER_KNOBS}
    other = ", ".join(f"{k}={v}" for k, v in train.items())
    parts = {
        "convergence": f"learners {', '.join(b.get('learners', []))} (studies 1-2)",
        "prices": f"price volatility k in {b.get('price_k')} for {', '.join(b.get('price_learners', []))} trained "
        "at k = 1",
        "models": f"model mixes {', '.join(b.get('model_mixes', []))} for {', '.join(b.get('model_learners', []))}",
        "ablations": f"ablations {', '.join(b.get('ablations', []))} for {', '.join(b.get('ablation_learners', []))}",
        "sensitivity": f"shaper W in {b.get('shaper_steps')}, M in {b.get('latent')}, eta in {b.get('eta')} (one "
        "changed at a time from the run's own)",
        "sparsity": f"settlement periods {', '.join(b.get('settlements', []))} for "
        f"{', '.join(b.get('sparsity_learners', []))}"
        + (
            f" (also with reward_mix=redistribute: {', '.join(b['redistributed'])})"
            if b.get("redistributed")
            else ""
        ),
        "energy": f"price levels {', '.join(f'{k:g}' for k in b.get('price_levels', []))} for the oracle and the "
        f"heuristics, {', '.join(b.get('energy_learners', []))} trained at levels "
        f"{', '.join(f'{k:g}' for k in b.get('trained_levels', [])) or 'none'}",
    }
    chosen = [
        text
        for study, text in parts.items()
        if study in studies or (study == "convergence" and "outcome" in studies)
    ]
    return (
        f"Budget `{b.get('name')}` on scenario `{cfg.get('scenario')}`: {b.get('total_steps')} environment steps per "
        f"training run (sparse reward; other settings: {other or 'policies.train defaults'}), seeds "
        f"{', '.join(map(str, b.get('seeds', [])))}, {len(cfg.get('eval_days', []))} held-out days with fixed "
        f"arrival seeds. Shaper: {', '.join(f'{SHAPER_KNOBS[k]} = {v:g}' for k, v in shaper.items())}. "
        + "; ".join(c[0].upper() + c[1:] if k == 0 else c for k, c in enumerate(chosen))
        + ". The oracle bound is evaluated in every setting, the heuristics where a study's table lists them "
        "(every study but sensitivity, and sparsity on older pages). `--full` (scenario `default`, see `policies/experiment_settings.py`) is estimated at "
        f"{fmt(cfg.get('full_estimate_h', float('nan')))} h of training on 2 CPU cores (measured seconds per step x "
        "steps / 2 workers)." + mix_text(train)
    )


def mix_text(train: dict) -> str:
    """What the learners' names mean under a reward mix other than the paper's additive one, under a fading
    eta, and under checkpoint selection."""
    text = ""
    if train.get("reward_mix", "add") != "add":
        text += (
            " Reward mix `redistribute` (`policies/replay.py`): every learner learns from each settled amount R "
            "spread over its period's L slots, so a learner without a shaper (sac) learns from the uniform spread "
            "R / L, and a shaped one from R / L + eta x (r_hat - r_hat's mean over the period)."
        )
    if int(train.get("val_days", 0)) > 0:
        text += (
            f" Checkpoint selection (`val_days={train['val_days']}`): with each held-out evaluation during training "
            f"the policy also ran {train['val_days']} validation days (training-split days spread over the year, "
            "with arrival seeds of their own), and each run is evaluated by its policy best on them, not its last; "
            "the held-out days play no part in the choice (`policy_step` in the CSVs: the step chosen)."
        )
    if int(train.get("eta_decay_steps", 0)) > 0:
        text += (
            f" Eta fades linearly to 0 over the {train['eta_decay_steps']} steps after shaping_start "
            "(`eta_decay_steps`); from then on a shaped learner learns from the same reward as its unshaped twin "
            "and its shaper is no longer fitted."
        )
    return text


TITLES = {
    "convergence": "1. Convergence (sparse reward)",
    "outcome": "2. Outcome on held-out days",
    "prices": "3. Electricity-price fluctuation",
    "models": "4. Model heterogeneity",
    "ablations": "5. Ablations",
    "sensitivity": "6. Shaper sensitivity",
    "sparsity": "7. Investigation: how sparse the reward is",
    "energy": "8. Investigation: energy weighing more",
}


NOTES = {
    "convergence": "Utility per held-out evaluation during training (the deterministic policy on held-out days spread "
    "over the year, every `eval_every` steps) where the runs logged one, else per training episode (one day, stochastic "
    "actions); smoothed over a tenth of the points; mean over seeds with a 95% t-interval. The table: last quarter "
    "of training.",
    "outcome": "Each run's policy (its last checkpoint, or the one chosen on validation days where the budget "
    "says so) acting deterministically on held-out days (same days and arrival seeds for "
    "every policy); % of oracle = mean utility / mean LP bound on those episodes. Violation rate = (late + "
    "dropped) / (served + dropped).",
    "prices": "Policies trained at k = 1, evaluated with p' = m + k (p - m), m each site's mean price of the day.",
    "models": "Models reassigned to sites (per-model revenue and relative quality move with the model), GPU "
    "pools re-sized by twin.sizing; learners trained per mix.",
    "ablations": "No transfer and fixed 30 steps restrict the action by a wrapper (learners trained so); the "
    "oracle bound stays the LP of the unrestricted scenario (still an upper bound, looser).",
    "sensitivity": "One shaper setting changed at a time from W = 5, M = 128, eta = 0.4; held-out days.",
    "sparsity": "Learners trained with the reward settled every slot period named (the scenario's own, or "
    "once a day), evaluated on the held-out days; the oracle column is the same bound.",
    "energy": "Every electricity price (grid import, export, the battery's end-of-day settlement) times the level: an "
    "assumed stress test in which energy weighs that many times more against image revenue (level 1 is the "
    "scenario). Learners trained and evaluated at the same level; the observation divides the level out.",
}


def results_section(out: Path, readme_dir: Path) -> str:
    """The generated Markdown between the README markers."""
    loaded = {s: r for s in STUDIES if (r := load_study(out, s)) is not None}
    if not loaded:
        raise ReportError(f"no study results under {out}/ (run python -m policies.experiments --quick first)")
    cur = currency(next(iter(loaded.values()))[1])
    md = [START, "", "_Generated by `python -m policies.report` from the CSVs under "
          f"`{os.path.relpath(out, readme_dir)}/`; do not edit by hand._", ""]  # fmt: skip
    md += ["Produced by:", "", *provenance(loaded), "", compute_text(loaded), ""]
    md += [budget_text(next(iter(loaded.values()))[1], tuple(loaded)), ""]
    md += ["### What we found", "", *(f"- {line}" for line in findings(loaded, out)), ""]
    for study, (table, _) in loaded.items():
        md += [f"### {TITLES[study]}", "", NOTES[study], ""]
        for png in sorted((out / study).glob("*.png")):
            md += [f"![{study}]({os.path.relpath(png, readme_dir)})", ""]
        md += [summary_table(table, cur), ""]
        md += [f"CSV: `{os.path.relpath(out / study / f'{study}.csv', readme_dir)}`", ""]
    md.append(END)
    return "\n".join(md)


def redraw_figures(out: Path) -> list[Path]:
    """Every study's figures under ``out`` drawn again from its CSVs, so a page made by older code shows what the
    current report draws (the experiments driver draws them itself when it writes a study)."""
    made = []
    for study in STUDIES:
        loaded = load_study(out, study)
        if loaded is None:
            continue
        table, config = loaded
        made += study_figures(study, out / study, table, load_curves(out, study), config)
    return made


def update_readme(readme: Path, out: Path) -> Path:
    """Replace the text between the markers (adding a "## Results" heading and markers at the end if absent)."""
    text = readme.read_text(encoding="utf-8") if readme.is_file() else ""
    section = results_section(out, readme.resolve().parent)
    new = replace_between(text, START, END, section)
    if new is None:
        new = text.rstrip("\n") + ("\n\n" if text else "") + "## Results\n\n" + section + "\n"
    return write_text_atomic(readme, new)


# --- the index of further study pages ------------------------------------------------------------------------

INDEX_START, INDEX_END = "<!-- studies:start -->", "<!-- studies:end -->"
#: Studies whose held-out outcome (% of the oracle bound) the index shows, one row per setting.
INDEX_STUDIES = ("outcome", "sparsity", "ablations", "prices", "models", "energy")
#: Settings that change what is evaluated, not what is trained: not shown as a page's overrides.
EVAL_ONLY = ("eval_every", "eval_days", "checkpoint_every")


def run_overrides(cfg: dict) -> str:
    """The training settings a page changed from its named budget (``--train``), e.g. ``ent_coef=auto_0.1``."""
    b = cfg.get("budget", {})
    base = BUDGETS[b["name"]].train if b.get("name") in BUDGETS else {}
    train = b.get("train", {})
    return ", ".join(f"{k}={v}" for k, v in train.items() if k not in EVAL_ONLY and base.get(k) != v)


def index_cell(table: pd.DataFrame, policy: str, setting: str) -> str:
    m, half, n = mean_ci(per_seed(table, policy, setting, "utility_pct_of_bound"))
    if n == 0:
        return "–"
    return fmt(m) + (f" ± {fmt(half)}" if np.isfinite(half) else "")


def paired_points(table: pd.DataFrame, setting: str, shaped: str = MAIN) -> str:
    """``shaped`` minus sac in points of the oracle bound, paired by seed: mean, 95% CI, p, n."""
    t = table[table.setting == setting]
    x = t[t.policy == shaped].groupby("seed").utility_pct_of_bound.mean()
    y = t[t.policy == PLAIN].groupby("seed").utility_pct_of_bound.mean()
    return compact_paired((x - y).dropna().to_numpy())


def setting_curves(curves: pd.DataFrame, policy: str, setting: str, ran_in) -> pd.DataFrame | None:
    """The curves of ``policy`` in ``setting`` (None where they cannot be told apart). Curves carry the table's
    setting names; pages written before that named them after the run's spec (``settle=288+redistribute`` where
    the table says ``settle=daily``), so a label that differs from the table's is taken only where ``setting`` is
    the one setting the learner ran in (``ran_in``: its settings in the table) and its curves have one label."""
    curves = curves[curves.policy == policy]
    names = set(curves.setting)
    if setting in names:
        return curves[curves.setting == setting]
    return curves if set(ran_in) == {setting} and len(names) == 1 else None


def deployed_area_difference(curves: pd.DataFrame, table: pd.DataFrame, setting: str, shaped: str) -> str:
    """``shaped`` minus sac in the area under the deployed-policy curve (``chosen_curves``; a seed's mean over
    the evaluations after step 0), paired by seed; "–" where the runs did not select on validation days or a
    learner's curves in ``setting`` cannot be told apart (``setting_curves``)."""
    if curves.empty or not held_out_curves(curves) or "setting" not in curves.columns:
        return "–"
    found = [
        setting_curves(curves, p, setting, set(table[table.policy == p].setting)) for p in (shaped, PLAIN)
    ]
    if any(f is None for f in found):
        return "–"
    area = seed_areas(chosen_curves(pd.concat(found)))
    if area.empty or not {shaped, PLAIN} <= set(area.policy):
        return "–"
    per_seed = area.pivot_table(index="seed", columns="policy", values="utility")
    return compact_paired((per_seed[shaped] - per_seed[PLAIN]).dropna().to_numpy())


def compact_paired(d: np.ndarray) -> str:
    """Paired differences as ``+m (lo to hi), p = .., better on k/n seeds`` (one decimal), for the index."""
    m, half, n = mean_ci(d)
    if n < 2 or not np.isfinite(half):
        return "–" if n == 0 else f"{m:+.1f} (n = {n})"
    p = float(stats.ttest_1samp(d, 0.0).pvalue) if d.std(ddof=1) > 0 else float("nan")
    wins = int((d > 0).sum())
    return f"{m:+.1f} ({m - half:+.1f} to {m + half:+.1f}), p = {fmt(p)}, better on {wins}/{n} seeds"


def index_rows(page: Path, readme_dir: Path) -> list[str]:
    """Rows of one results page: every setting of its outcome-like studies."""
    rows = []
    has_outcome = load_study(page, "outcome") is not None
    for study in INDEX_STUDIES:
        loaded = load_study(page, study)
        if loaded is None:
            continue
        table, cfg = loaded
        curves = load_curves(page, study)
        b = cfg.get("budget", {})
        changed = run_overrides(cfg)
        target = page / "README.md" if (page / "README.md").is_file() else page  # a page, else its folder
        link = f"[{page.name}]({os.path.relpath(target, readme_dir)})"
        run = f"{cfg.get('scenario')}, {b.get('total_steps')} × {len(b.get('seeds', []))}"
        for setting in dict.fromkeys(table.setting):
            if has_outcome and BASE_SETTINGS.get(study) == setting:
                continue  # the outcome study's own runs and evaluations again: shown once, as outcome: base
            t = table[table.setting == setting]
            h = best_baseline(table, setting)
            cells = [index_cell(table, p, setting) for p in LEARNER_ORDER]
            cells.append(f"{h} {index_cell(table, h, setting)}" if h else "–")
            cells.append(index_cell(table, "production-default", setting))
            shaped = rival(t.policy)
            paired = paired_points(table, setting, shaped) if shaped else "–"
            cells.append(paired if shaped in (MAIN, None) else f"{shaped}: {paired}")
            cells.append(deployed_area_difference(curves, table, setting, shaped) if shaped else "–")
            name = f"{study}: {setting}" + (f" ({changed})" if changed else "")
            rows.append(
                f"| {link} | {name} | {run} | `{short_revision(cfg.get('commit', ''))}` | "
                + " | ".join(cells)
                + " |"
            )
    return rows


def studies_index(pages: list[Path], readme: Path) -> str:
    """The generated Markdown between the index markers: one table over every page's held-out outcomes."""
    readme_dir = readme.resolve().parent
    rows = []
    for page in pages:
        page_rows = index_rows(page, readme_dir)
        if not page_rows:
            raise ReportError(
                f"no study results under {page} (a page the index lists is gone: --replace-index)"
            )
        rows += page_rows
    head = ("| page | study: setting | scenario, steps × seeds | commit | " + " | ".join(LEARNER_ORDER)
            + f" | best baseline | production default | {MAIN} (or the learner named) − {PLAIN} (points, paired by seed, 95% CI) "
            f"| the same learner − {PLAIN}: area under the deployed-policy curve (page's currency/day, paired by seed, 95% CI) |")  # fmt: skip
    command = f"python -m policies.report --index {','.join(os.path.relpath(p, readme_dir) for p in pages)}"
    return "\n".join([
        INDEX_START, "",
        f"_Generated by `{command} --readme {readme.name}` (in the README's folder) from each page's CSVs; do not "
        "edit by hand._ Held-out utility as % of the oracle bound, mean ± 95% "
        "t-interval over seeds (baselines are deterministic: one run). The last column: a seed's mean, over its "
        "evaluations during training after step 0, of the held-out utility of the policy its validation days had "
        "chosen by then (pages whose runs did not choose on validation days: –).",
        "", head, "|" + "---|" * (head.count("|") - 1), *rows, "", INDEX_END,
    ])  # fmt: skip


def replace_between(text: str, start: str, end: str, section: str) -> str | None:
    """``text`` with the part from ``start`` to ``end`` replaced by ``section``; None without both markers."""
    if start in text and end in text and text.index(start) < text.index(end):
        head, rest = text.split(start, 1)
        return head + section + rest.split(end, 1)[1]
    return None


INDEX_COMMAND = re.compile(r"python -m policies\.report --index (\S+)")


def indexed_pages(text: str, readme: Path) -> list[Path]:
    """The pages a README's generated index lists (its command line), as paths from the working directory."""
    section = text.split(INDEX_START, 1)[1].split(INDEX_END, 1)[0] if INDEX_START in text else ""
    found = INDEX_COMMAND.search(section)
    readme_dir = readme.resolve().parent  # the base studies_index writes the paths against
    return [readme_dir / p for p in found.group(1).split(",") if p] if found else []


def update_index(readme: Path, pages: list[Path], replace: bool = False) -> Path:
    """Write the index between its markers (appended at the end of the README if absent).

    ``pages`` are added to those the README's index already lists (in their order, each once), so adding a page
    cannot drop the others; ``replace`` writes exactly ``pages``.
    """
    text = readme.read_text(encoding="utf-8") if readme.is_file() else ""
    if not replace:
        known = indexed_pages(text, readme)
        pages = list({p.resolve(): p for p in [*known, *pages]}.values())
    section = studies_index(pages, readme)
    new = replace_between(text, INDEX_START, INDEX_END, section)
    return write_text_atomic(readme, new if new is not None else text.rstrip("\n") + "\n\n" + section + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m policies.report", description=__doc__.splitlines()[0])
    ap.add_argument(
        "--out", default="results", help="results folder written by policies.experiments (figures redrawn)"
    )
    ap.add_argument("--readme", default="README.md", help="README whose results section is replaced")
    ap.add_argument(
        "--index",
        help="comma-separated results pages (folders written with --out): add them to the pages the README's "
        "table of held-out outcomes (between the studies markers) lists, and rewrite that table instead",
    )
    ap.add_argument(
        "--replace-index",
        action="store_true",
        help="with --index: the table lists exactly these pages (drops the others)",
    )
    ap.add_argument(
        "--curves",
        help="comma-separated results pages: draw their sparsity learning curves into one figure, --png; "
        "PAGE+PAGE pools pages into one line per learner (no learner's seed on two of them)",
    )
    ap.add_argument("--png", help="the figure --curves writes")
    ap.add_argument(
        "--deployed",
        action="store_true",
        help="with --curves: draw each run's deployed-policy curve (at each evaluation, the held-out utility of "
        "the policy its validation days had chosen by then) instead of its latest policy's",
    )
    args = ap.parse_args(argv)
    try:
        if args.curves:
            if not args.png:
                raise ReportError("--curves needs --png (the figure to write)")
            pages = [Path(p.strip()) for p in args.curves.split(",") if p.strip()]
            print(f"curves written to {pages_curves_figure(pages, Path(args.png), deployed=args.deployed)}")
            return 0
        if args.deployed:
            raise ReportError("--deployed draws the curves of --curves; give --curves too")
        if args.replace_index and not args.index:
            raise ReportError("--replace-index needs --index (the pages to list)")
        if args.index:
            pages = [Path(p.strip()) for p in args.index.split(",") if p.strip()]
            path = update_index(Path(args.readme), pages, replace=args.replace_index)
            print(f"studies index written to {path}")
            return 0
        redraw_figures(Path(args.out))
        path = update_readme(Path(args.readme), Path(args.out))
    except (ReportError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"results section written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
