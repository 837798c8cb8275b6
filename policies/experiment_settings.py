"""What ``--quick`` and ``--full`` mean for ``python -m policies.experiments``: scenario, step budgets, seeds,
evaluation days and the settings of each of the six studies, in one place (printed into every config JSON)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

#: The six studies of issue 7, then two investigations: why shaping helps or not (settlement sparsity), and a
#: twin where energy weighs more against image revenue (every price times a level: energy).
STUDIES = ("convergence", "outcome", "prices", "models", "ablations", "sensitivity", "sparsity", "energy")

#: Every learner a study can train: label -> (algorithm, shaping). ``PAPER_LEARNERS`` are the paper's convergence
#: comparison (the budgets' default); sac+perfect is a diagnostic (policies/shapers/perfect.py), run on request.
LEARNERS: dict[str, tuple[str, str]] = {
    "sac+diffusion": ("sac", "diffusion"),
    "sac": ("sac", "none"),
    "sac+mlp": ("sac", "mlp"),
    "sac+linear": ("sac", "linear"),
    "sac+linear+diffusion": ("sac", "linear+diffusion"),
    "sac+linear+mlp": ("sac", "linear+mlp"),
    "td3+diffusion": ("td3", "diffusion"),
    "sac+perfect": ("sac", "perfect"),
}
PAPER_LEARNERS = ("sac+diffusion", "sac", "sac+mlp", "td3+diffusion")
MAIN, PLAIN = "sac+diffusion", "sac"

#: The shaper settings the sensitivity study varies: training setting -> the paper's symbol.
SHAPER_KNOBS = {"shaper_steps": "W", "latent": "M", "eta": "eta"}

#: The return-equivalent reward mix (one of ``policies.replay.REWARD_MIXES``) the sparsity study also trains with.
REDISTRIBUTE = "redistribute"

#: Ablations of the paper: the environment (or the action) changed, the learner the same.
ABLATIONS = ("full", "no-transfer", "fixed-30-steps", "no-renewables", "no-battery")

#: The setting of each study that is the base environment trained as the base: by construction the outcome
#: study's own runs and evaluations again (``experiments.study_settings``), so an index shows it once.
BASE_SETTINGS = {
    "prices": "k=1",
    "models": "heterogeneous",
    "ablations": "full",
    "sparsity": "settle=scenario",
    "energy": "level=1",
}


@dataclass(frozen=True)
class Budget:
    """One experiment size. Training hyperparameters not named here are ``policies.train``'s defaults."""

    name: str
    scenario: str
    total_steps: int
    seeds: tuple[int, ...]
    eval_days: int
    train: dict[str, Any] = field(default_factory=dict)  # extra policies.train.Args fields
    curve_points: int = 40  # grid of the averaged learning curves
    learners: tuple[str, ...] = PAPER_LEARNERS  # studies 1 and 2
    price_k: tuple[float, ...] = (0.5, 1.0, 2.0)
    price_learners: tuple[str, ...] = PAPER_LEARNERS
    model_mixes: tuple[str, ...] = ("heterogeneous", "rotated", "homogeneous-first", "homogeneous-last")
    model_learners: tuple[str, ...] = (MAIN, PLAIN)
    ablations: tuple[str, ...] = ABLATIONS
    ablation_learners: tuple[str, ...] = (MAIN, PLAIN)
    shaper_steps: tuple[int, ...] = (3, 5, 7)
    latent: tuple[int, ...] = (64, 128, 256)
    eta: tuple[float, ...] = (0.2, 0.3, 0.4)
    settlements: tuple[str, ...] = ("scenario", "daily")  # sparsity: the scenario's period, once a day
    # sparsity: settlements also trained with reward_mix=redistribute (each settled amount spread over its slots)
    redistributed: tuple[str, ...] = ("daily",)
    sparsity_learners: tuple[str, ...] = (MAIN, PLAIN)
    # energy: every price times a level (assumed stress test, twin.scenario.Prices); the oracle and the heuristics
    # at every level, the learners trained (and evaluated) at the levels in trained_levels
    price_levels: tuple[float, ...] = (1.0, 10.0, 30.0, 100.0)
    trained_levels: tuple[float, ...] = (1.0, 10.0, 30.0, 100.0)
    energy_learners: tuple[str, ...] = (MAIN, PLAIN)
    s_per_step: float = 0.05  # measured wall seconds per training step of one run (see QUICK and FULL)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


#: Minutes on 2 CPU cores: the tiny scenario, small networks, 2 seeds, 3 held-out days, subsets of settings.
QUICK = Budget(
    name="quick",
    scenario="tiny",
    total_steps=3_000,
    seeds=(0, 1),
    eval_days=3,
    train={
        "learning_starts": 300,
        "shaping_start": 600,
        "shaper_fit_every": 200,
        "shaper_updates": 10,
        "net_width": 64,
        "batch_size": 64,
        "train_freq": 4,
        "buffer_size": 20_000,
        "checkpoint_every": 1_500,
        "eval_every": 300,  # held-out learning curves: the deterministic policy on 3 held-out days, 10 points
        "eval_days": 3,
    },
    curve_points=24,
    price_learners=(MAIN, PLAIN),
    model_mixes=("heterogeneous", "homogeneous-first"),
    ablations=("full", "no-transfer", "fixed-30-steps", "no-renewables", "no-battery"),
    ablation_learners=(MAIN,),
    shaper_steps=(3, 5, 7),
    latent=(64, 128),
    eta=(0.2, 0.4),
    price_levels=(1.0, 10.0, 30.0),
    trained_levels=(1.0, 30.0),  # level 1 is the outcome study's runs again
    # measured: the first --quick run here, 32 runs x 3000 steps took 50.1 min summed (2 cores shared with
    # other work, load average 3-7); on an idle 2-core machine expect about half the wall time.
    s_per_step=0.031,
)

#: The real thing: the default scenario (3 ASPs, 288 five-minute slots), train.py's network sizes.
FULL = Budget(
    name="full",
    scenario="default",
    total_steps=50_000,
    seeds=(0, 1, 2),
    eval_days=20,
    train={
        "learning_starts": 5_000,
        "shaping_start": 5_000,
        "checkpoint_every": 10_000,
        "eval_every": 2_500,
        "eval_days": 3,
        # each run evaluated by its checkpoint best on 6 validation days, not its last: plain SAC on the default
        # scenario peaks near 32k steps and declines after (results/daily-80k-redistribute-sac-val)
        "val_days": 6,
    },
    curve_points=60,
    price_learners=(MAIN, PLAIN),
    ablation_learners=(MAIN,),
    # measured: sac+diffusion on the default scenario with train.py's network sizes, 576 -> 1152 steps in
    # 36.4 s (63 ms per step, this 2-core machine under load ~2-3). Evaluations during training are not counted:
    # 3 held-out + 6 validation days of the default scenario took 1.6 s each with the quick budget's networks
    # (2026-12-04), 21 of them a run.
    s_per_step=0.063,
)

BUDGETS = {"quick": QUICK, "full": FULL}


def budget(name: str, scenario: str | None = None, seeds: int | None = None) -> Budget:
    """The named budget, optionally on another scenario or with the first ``seeds`` seeds."""
    b = BUDGETS[name]
    if scenario is not None:
        b = replace(b, scenario=scenario)
    if seeds is not None:
        b = replace(b, seeds=tuple(range(seeds)))
    return b
