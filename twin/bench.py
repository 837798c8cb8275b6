"""Benchmark of the twin: simulated slots and jobs per second for a scenario under a fixed policy (30 steps,
no transfers, batteries idle) and under random actions. Prints numbers; asserts no time.

``python -m twin.bench [--scenario default] [--days 5] [--out DIR]``"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from traces.atomic import write_json_atomic
from twin.scenario import ScenarioError


def _fixed_action(env) -> np.ndarray:
    n = env.n_dc
    ref = env.step_set[np.argmin(np.abs(env.step_set - env.scenario.reference_steps))]
    return env.encode_action(np.zeros((n, n)), [ref] * n, np.zeros(n))


def run_days(env, days: int, policy: str, seed: int = 0) -> dict[str, float]:
    """Simulate ``days`` episodes; returns wall-clock and CPU seconds spent in step(), wall seconds in reset(),
    slots and jobs. CPU time is what a busy shared machine does not distort."""
    fixed = _fixed_action(env)
    env.action_space.seed(seed)
    step_s = reset_s = cpu_s = 0.0
    slots = jobs = 0
    for day in tqdm(range(days), desc=f"bench {policy}", unit="day"):
        t0 = time.perf_counter()
        env.reset(seed=seed + day)
        reset_s += time.perf_counter() - t0
        actions = [fixed if policy == "fixed" else env.action_space.sample() for _ in range(env.slots)]
        t0, c0 = time.perf_counter(), time.process_time()
        for a in actions:
            _, _, _, _, info = env.step(a)
            jobs += info["arrived"]
        step_s += time.perf_counter() - t0
        cpu_s += time.process_time() - c0
        slots += env.slots
    return {"step_s": step_s, "cpu_s": cpu_s, "reset_s": reset_s, "slots": slots, "jobs": jobs}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m twin.bench", description=__doc__.splitlines()[0])
    ap.add_argument("--scenario", default="default", help="bundled scenario name or TOML path")
    ap.add_argument("--days", type=int, default=5, help="episodes (days) per policy")
    ap.add_argument("--out", default=None, help="folder to write bench.json and the scenario used")
    args = ap.parse_args(argv)
    if args.days < 1:
        print("error: --days must be at least 1", file=sys.stderr)
        return 2
    try:
        from twin.env import AIGCTwinEnv

        t0 = time.perf_counter()
        env = AIGCTwinEnv(args.scenario)
        init_s = time.perf_counter() - t0
    except (ScenarioError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    result = {"scenario": env.scenario.name, "init_s": init_s, "python": platform.python_version(),
              "machine": platform.machine(), "processor": platform.processor()}  # fmt: skip
    for policy in ("fixed", "random"):
        r = run_days(env, args.days, policy)
        res = {**r, "slots_per_s": r["slots"] / r["step_s"], "jobs_per_s": r["jobs"] / r["step_s"],
               "slots_per_cpu_s": r["slots"] / r["cpu_s"], "jobs_per_cpu_s": r["jobs"] / r["cpu_s"],
               "day_s": r["step_s"] / args.days, "day_cpu_s": r["cpu_s"] / args.days,
               "reset_per_day_s": r["reset_s"] / args.days}  # fmt: skip
        result[policy] = res
        print(
            f"{policy:>6}: {res['slots_per_s']:,.0f} slots/s, {res['jobs_per_s']:,.0f} jobs/s wall "
            f"({res['slots_per_cpu_s']:,.0f} slots/s, {res['jobs_per_cpu_s']:,.0f} jobs/s per CPU-second); "
            f"{res['day_s'] * 1e3:.0f} ms wall, {res['day_cpu_s'] * 1e3:.0f} ms CPU per simulated day "
            f"({r['jobs'] / args.days:,.0f} jobs/day); reset {res['reset_per_day_s'] * 1e3:.0f} ms"
        )
    print(f"env construction (loads series, cards, workload fit): {init_s:.2f} s")
    if args.out:
        out = Path(args.out)
        write_json_atomic(out / "bench.json", result)
        env.scenario.dump(out / "scenario.toml")
        print(f"wrote {out / 'bench.json'} and {out / 'scenario.toml'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
