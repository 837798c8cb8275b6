"""Plot one simulated day for people to look at: prices, load and supply, battery state of charge,
renewables and queues per data centre, from an episode log; also writes the log CSV and the scenario used.

``python -m twin.plot_day [--scenario default] [--day 2023-07-03] [--policy fixed|random] [--out DIR]``"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from traces.atomic import figure_png, write_bytes_atomic, write_json_atomic
from twin.episode_log import rollout
from twin.scenario import ScenarioError


def plot_log(frame: pd.DataFrame, dc_names: list[str], slot_s: int, title: str) -> bytes:
    """PNG bytes of a five-panel day plot from an episode-log frame."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hours = frame["slot"].to_numpy() * slot_s / 3600.0
    fig, ax = plt.subplots(5, 1, figsize=(11, 13), sharex=True)
    panels = [
        ("price", "price (per MWh)"),
        ("load_kwh", "facility load (kWh / slot)"),
        ("renewable_kwh", "renewables available (kWh / slot)"),
        ("soc", "battery state of charge"),
        ("queued", "jobs waiting after the slot"),
    ]
    for axis, (key, label) in zip(ax, panels, strict=True):
        for name in dc_names:
            axis.plot(hours, frame[f"{key}__{name}"], label=name, lw=1.2)
        axis.set_ylabel(label)
        axis.grid(alpha=0.3)
    ax[1].plot(hours, frame["grid_import_kwh"], "k--", lw=1, label="grid import (all)")
    ax[0].legend(loc="upper right", fontsize=8)
    ax[1].legend(loc="upper right", fontsize=8)
    ax[-1].set_xlabel("hour of the day (UTC)")
    fig.suptitle(title)
    fig.tight_layout()
    return figure_png(fig, dpi=90)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m twin.plot_day", description=__doc__.splitlines()[0])
    ap.add_argument("--scenario", default="default", help="bundled scenario name or TOML path")
    ap.add_argument("--day", default=None, help="ISO date from the scenario's calendar (default: drawn)")
    ap.add_argument("--policy", choices=("fixed", "random"), default="fixed",
                    help="fixed: reference steps, no transfers, batteries idle; random: uniform actions")  # fmt: skip
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="runs/plot_day", help="folder for day.png, episode.csv, scenario.toml")
    args = ap.parse_args(argv)
    try:
        from twin.env import AIGCTwinEnv

        env = AIGCTwinEnv(args.scenario)
        n = env.n_dc
        ref = env.step_set[np.argmin(np.abs(env.step_set - env.scenario.reference_steps))]
        fixed = env.encode_action(np.zeros((n, n)), [ref] * n, np.zeros(n))
        env.action_space.seed(args.seed)
        policy = (lambda obs: fixed) if args.policy == "fixed" else (lambda obs: env.action_space.sample())
        options = {"day": args.day} if args.day else None
        log = rollout(env, policy, seed=args.seed, options=options)
    except (ScenarioError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    frame = log.frame()
    out = Path(args.out)
    names = [d.name for d in env.scenario.datacenters]
    day = frame["day"].iloc[0]
    title = f"{env.scenario.name}: {day}, policy {args.policy}, utility {frame['utility'].sum():.2f} {env.scenario.money.currency}"
    write_bytes_atomic(out / "day.png", plot_log(frame, names, env.scenario.slot_s, title))
    log.save(out / "episode.csv")
    env.scenario.dump(out / "scenario.toml")
    totals = {
        k: float(frame[k].sum()) for k in ("revenue", "penalty", "energy_cost", "transfer_cost", "utility")
    }
    write_json_atomic(out / "totals.json", {"day": day, "policy": args.policy, **totals})
    print(f"{day}: " + ", ".join(f"{k} {v:.2f}" for k, v in totals.items()))
    print(f"wrote {out / 'day.png'}, {out / 'episode.csv'}, {out / 'scenario.toml'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
