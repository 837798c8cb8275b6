"""Stable-Baselines3 SAC/TD3 built with a reward shaper plugged in through ``ShapedReplayBuffer`` (the
algorithms are not copied), and the callback that refits the shaper from stored settlement periods."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch
from stable_baselines3 import SAC, TD3
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.noise import NormalActionNoise
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.vec_env import VecEnv

from policies.replay import REWARD_MIXES, ShapedReplayBuffer
from policies.shapers import (
    AnchoredShaper,
    DiffusionShaper,
    LinearShaper,
    MLPShaper,
    PerfectShaper,
    PotentialShaper,
    RewardShaper,
    ShaperError,
)
from policies.shapers.base import pearson
from policies.shapers.linear import FEATURES as LINEAR_FEATURES

ALGOS: dict[str, type[OffPolicyAlgorithm]] = {"sac": SAC, "td3": TD3}
#: ``linear+<network>``: the network fits what the linear decomposition leaves (policies/shapers/anchored.py).
SHAPINGS = ("none", "diffusion", "mlp", "linear", "linear+diffusion", "linear+mlp", "potential", "perfect")
#: The learned shapers with an r_hat(s, a) (a potential has none; perfect's is the hidden reward itself).
LEARNED_SHAPINGS = ("diffusion", "mlp", "linear", "linear+diffusion", "linear+mlp")
ANCHOR = "linear+"
#: What a learned shaper's period sums regress (``AgentConfig.shaper_labels``).
SHAPER_LABELS = ("total", "items")


class AgentError(ValueError):
    """An agent was requested with an unknown algorithm, shaping or invalid hyperparameter."""


@dataclass
class AgentConfig:
    """Hyperparameters of the scheduler and its shaper. Defaults: SB3's SAC defaults except ``buffer_size``
    (SB3: 1e6) and ``learning_starts`` (SB3: 100), which are assumed here; DRESS/paper for shaping."""

    learning_rate: float = 3e-4
    """actor/critic learning rate (SB3 default)"""
    buffer_size: int = 200_000
    """replay buffer capacity in transitions"""
    learning_starts: int = 1_000
    """random-action steps before gradient updates begin"""
    batch_size: int = 256
    """minibatch size of the actor/critic updates (SB3 default)"""
    gamma: float = 0.99
    """discount factor"""
    tau: float = 0.005
    """target-network soft update rate"""
    train_freq: int = 1
    """env steps between updates"""
    gradient_steps: int = 1
    """gradient steps per update"""
    net_width: int = 256
    """width of the two hidden layers of actor and critics"""
    ent_coef: str = "auto"
    """SAC's entropy coefficient: auto (learned, starting at 1.0, SB3's default), auto_X (learned, starting at X)
    or a fixed number"""
    td3_noise: float = 0.1
    """std of TD3's Gaussian exploration noise"""
    eta: float = 0.4
    """weight of the shaping term in r_env + eta * r_hat (paper summary: 0.4 best), or of r_hat's credit
    assignment in reward_mix redistribute"""
    eta_decay_steps: int = 0
    """fade eta linearly to 0 over this many env steps after shaping_start (0: eta stays constant), so the
    shaper steers early learning and the learner ends on the sparse reward alone (assumption, tested in
    results/)"""
    reward_mix: str = "add"
    """how the replay buffer shapes sampled rewards: add (r_env + eta * r_hat, the paper's) | redistribute
    (each settled period's amount R spread over its L slots, R / L + eta * (r_hat - its period mean); R / L
    without a shaper: see policies/replay.py)"""
    shaper_steps: int = 5
    """denoising steps W of the diffusion shaper (paper summary: 5 best of 3, 5, 7)"""
    latent: int = 128
    """latent size M of the diffusion shaper (paper summary: 128 best of 64, 128, 256)"""
    schedule: str = "vp"
    """noise schedule of the diffusion shaper: vp | cosine"""
    shaper_uses_action: bool = True
    """condition the diffusion or mlp shaper's r_hat on the action too (false: r_hat(s), whose credit the actor
    cannot steer through the slot's own action)"""
    shaper_labels: str = "total"
    """what the diffusion or mlp shaper's period sums regress: total (the settled amount, the paper's) | items (the
    settlement itemised per site and term, twin.env's info["settled_items"]: revenue, penalties, energy cost,
    transfer cost, as a site's bills and an ASP's invoices would list them; one r_hat per item, summed)"""
    shaper_meters: bool = False
    """condition the diffusion or mlp shaper's r_hat on the slot's meter readings too (twin.env info["meters"]: per
    site images served and their quality, jobs late and dropped, energy imported and exported, jobs sent away;
    quantities an operator logs per slot, no money): r_hat(s, a, m), still fitted to the settlements only"""
    shaper_hidden: int = 256
    """hidden width of the shaper networks"""
    shaper_lr: float = 3e-4
    """Adam learning rate of the shaper"""
    shaping_start: int = 2_000
    """env steps before the shaping term is added (assumption; DRESS uses 5000)"""
    shaper_fit_every: int = 250
    """refit the shaper every this many env steps"""
    shaper_updates: int = 20
    """shaper gradient steps per refit"""
    shaper_periods: int = 32
    """settlement periods per shaper batch"""
    shaper_max_slots: int = 48
    """slots sampled per period (randomised return decomposition beyond this; a period's length or more fits
    whole periods, which identify more per-slot credit offline but raised no held-out utility: see README)"""
    device: str = "cpu"
    """torch device of the networks and the shaper"""

    @classmethod
    def from_saved(cls, saved: dict) -> AgentConfig:
        """The settings of a run's saved ``config.json`` (fields it lacks keep their defaults)."""
        return cls(**{f.name: saved[f.name] for f in fields(cls) if f.name in saved})


#: ``AgentConfig`` fields only a shaper reads (a run without shaping is the same run whatever they are), those only
#: the diffusion shaper reads, and those only SAC (or only TD3) reads.
SHAPER_SETTINGS = ("eta", "eta_decay_steps", "shaper_uses_action", "shaper_labels", "shaper_meters", "shaper_hidden",
                   "shaper_lr", "shaping_start", "shaper_fit_every", "shaper_updates", "shaper_periods", "shaper_max_slots")  # fmt: skip
DIFFUSION_SETTINGS = ("shaper_steps", "latent", "schedule")
ALGO_SETTINGS = {"sac": ("ent_coef",), "td3": ("td3_noise",)}


def unused_settings(algo: str, shaping: str) -> set[str]:
    """The ``AgentConfig`` fields that a run of ``algo`` with ``shaping`` never reads."""
    unused = {k for a, keys in ALGO_SETTINGS.items() if a != algo for k in keys}
    if shaping.removeprefix(ANCHOR) != "diffusion":
        unused |= set(DIFFUSION_SETTINGS)
    if shaping == "none":
        unused |= set(SHAPER_SETTINGS)
    return unused


def check_config(cfg: AgentConfig) -> None:
    """One-line ``AgentError`` for hyperparameters no run could use (before any training starts)."""
    from policies.shapers.diffusion import SCHEDULES

    check_choice("noise schedule", cfg.schedule, SCHEDULES)
    check_choice("reward mix", cfg.reward_mix, REWARD_MIXES)
    check_choice("shaper labels", cfg.shaper_labels, SHAPER_LABELS)
    sac_ent_coef(cfg.ent_coef)
    at_least_one = ("buffer_size", "batch_size", "train_freq", "gradient_steps", "net_width", "shaper_steps", "latent",
                    "shaper_hidden", "shaper_fit_every", "shaper_updates", "shaper_periods", "shaper_max_slots")  # fmt: skip
    for name in at_least_one:
        if getattr(cfg, name) < 1:
            raise AgentError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(cfg, name)}")
    for name in ("learning_rate", "shaper_lr", "tau"):
        if not 0 < getattr(cfg, name) < math.inf:
            raise AgentError(
                f"--{name.replace('_', '-')} must be a positive number, got {getattr(cfg, name)}"
            )
    if cfg.eta_decay_steps < 0:
        raise AgentError(f"--eta-decay-steps must be >= 0, got {cfg.eta_decay_steps}")
    for name in ("eta", "td3_noise"):
        if not 0 <= getattr(cfg, name) < math.inf:
            raise AgentError(f"--{name.replace('_', '-')} must be a number >= 0, got {getattr(cfg, name)}")
    if not 0 <= cfg.gamma <= 1:
        raise AgentError(f"--gamma must be a discount in [0, 1], got {cfg.gamma}")


def check_choice(kind: str, value: str, allowed) -> str:
    if value not in allowed:
        raise AgentError(f"unknown {kind} {value!r}; choose one of {', '.join(allowed)}")
    return value


def sac_ent_coef(value: str) -> str | float:
    """``AgentConfig.ent_coef`` as SB3's SAC takes it; a one-line ``AgentError`` for anything else."""
    text = str(value).strip()
    number_text = "1" if text == "auto" else text.removeprefix("auto_")
    try:  # Python reads "1_0" as 10, SB3 would read the part after the first "_" only: no "_" in the number
        number = float(number_text) if "_" not in number_text else math.nan
    except ValueError:
        number = math.nan
    if not 0 < number < math.inf:
        raise AgentError(f"entropy coefficient must be auto, auto_X or a number, X > 0; got {value!r}")
    return text if text.startswith("auto") else number


def env_names(env, attr: str) -> tuple[str, ...]:
    """``attr`` of ``env`` (a gymnasium env through its wrappers, or the first env of a VecEnv), () without it."""
    try:
        return tuple(env.get_attr(attr)[0] if isinstance(env, VecEnv) else env.get_wrapper_attr(attr))
    except AttributeError:
        return ()


def shaper_sizes(env, shaping: str, cfg: AgentConfig) -> dict[str, int]:
    """``build_shaper``'s sizes on ``env``: ``items``, the outputs (the items ``env`` itemises its settlements into
    where ``cfg.shaper_labels`` is ``items``, else 1), and ``meters``, the meter readings per slot r_hat reads
    (``env``'s where ``cfg.shaper_meters``, else 0); one-line error where ``env`` reports none."""
    sizes = {"items": 1, "meters": 0}
    if shaping == "none":
        return sizes
    if cfg.shaper_labels == "items":
        sizes["items"] = len(env_names(env, "settlement_items"))
        if not sizes["items"]:
            raise AgentError(
                "shaper labels 'items' need an environment that itemises its settlements (the twin)"
            )
    if cfg.shaper_meters:
        sizes["meters"] = len(env_names(env, "meter_names"))
        if not sizes["meters"]:
            raise AgentError("--shaper-meters needs an environment that reports meter readings (the twin)")
    return sizes


def build_shaper(
    shaping: str,
    obs_dim: int,
    act_dim: int,
    cfg: AgentConfig,
    items: int = 1,
    meters: int = 0,
    features: str = "linear",
) -> RewardShaper | None:
    """The shaper named by ``shaping`` ("none" gives None), on ``cfg.device``; ``items`` outputs where
    ``cfg.shaper_labels`` is ``items``, ``meters`` meter readings read where ``cfg.shaper_meters``
    (``shaper_sizes``); ``features``, the linear shaper's feature map (``policies.shaper_probe --features``)."""
    check_choice("shaping", shaping, SHAPINGS)
    check_choice("linear features", features, LINEAR_FEATURES)
    if features != "linear" and shaping != "linear":
        raise AgentError(f"features {features!r} are the linear shaper's, not the {shaping!r} shaper's")
    check_choice("shaper labels", cfg.shaper_labels, SHAPER_LABELS)
    itemised = cfg.shaper_labels == "items"
    if itemised and shaping in ("potential", "perfect"):
        raise AgentError(f"shaper labels 'items' need a diffusion or mlp shaper, got {shaping!r}")
    if cfg.shaper_meters and shaping in ("potential", "perfect"):
        raise AgentError(f"--shaper-meters needs a diffusion, mlp or linear shaper, got {shaping!r}")
    common = {
        "hidden": cfg.shaper_hidden, "lr": cfg.shaper_lr, "uses_action": cfg.shaper_uses_action,
        "items": items if itemised else 1, "meters": meters if cfg.shaper_meters else 0,
    }  # fmt: skip
    if shaping.startswith(ANCHOR):
        if itemised:
            raise AgentError(
                f"the {shaping} shaper fits the settled amount: shaper labels 'items' are not supported"
            )
        anchor = build_shaper("linear", obs_dim, act_dim, cfg, meters=meters)
        residual = build_shaper(shaping.removeprefix(ANCHOR), obs_dim, act_dim, cfg, meters=meters)
        try:
            return AnchoredShaper(anchor, residual).to(cfg.device)
        except ShaperError as exc:
            raise AgentError(str(exc)) from exc
    try:
        if shaping == "diffusion":
            shaper = DiffusionShaper(
                obs_dim, act_dim, steps=cfg.shaper_steps, latent=cfg.latent, schedule=cfg.schedule, **common
            )
        elif shaping == "mlp":
            shaper = MLPShaper(obs_dim, act_dim, **common)
        elif shaping == "linear":
            if itemised:
                raise AgentError(
                    "the linear shaper fits the settled amount: shaper labels 'items' are not supported"
                )
            shaper = LinearShaper(
                obs_dim,
                act_dim,
                uses_action=cfg.shaper_uses_action,
                meters=common["meters"],
                features=features,
            )
        elif shaping == "potential":
            # Phi(s) is a function of the state alone whatever shaper_uses_action says
            shaper = PotentialShaper(obs_dim, act_dim, hidden=cfg.shaper_hidden, lr=cfg.shaper_lr)
        elif shaping == "perfect":
            shaper = PerfectShaper(obs_dim, act_dim)
        else:
            return None
    except ShaperError as exc:
        raise AgentError(str(exc)) from exc
    return shaper.to(cfg.device)


def flat_dims(env) -> tuple[int, int]:
    obs_shape, act_shape = env.observation_space.shape, env.action_space.shape
    if obs_shape is None or act_shape is None or len(act_shape) != 1:
        raise AgentError("the environment needs a Box observation space and a 1-D Box action space")
    return int(np.prod(obs_shape)), int(act_shape[0])


def build_agent(
    algo: str, env, shaping: str, cfg: AgentConfig, *, seed: int, tensorboard_log: str | None = None
) -> tuple[OffPolicyAlgorithm, RewardShaper | None]:
    """A fresh SB3 ``algo`` on ``env`` whose replay buffer shapes sampled rewards with a new shaper."""
    check_choice("algorithm", algo, ALGOS)
    check_choice("shaping", shaping, SHAPINGS)
    obs_dim, act_dim = flat_dims(env)
    kwargs = dict(
        learning_rate=cfg.learning_rate,
        buffer_size=cfg.buffer_size,
        learning_starts=cfg.learning_starts,
        batch_size=cfg.batch_size,
        gamma=cfg.gamma,
        tau=cfg.tau,
        train_freq=cfg.train_freq,
        gradient_steps=cfg.gradient_steps,
        policy_kwargs={"net_arch": [cfg.net_width, cfg.net_width]},
        replay_buffer_class=ShapedReplayBuffer,
        replay_buffer_kwargs={"eta": cfg.eta, "gamma": cfg.gamma, "mix": cfg.reward_mix},
        tensorboard_log=tensorboard_log,
        seed=seed,
        device=cfg.device,
        verbose=0,
    )
    if algo == "sac":
        kwargs["ent_coef"] = sac_ent_coef(cfg.ent_coef)
    if algo == "td3":
        sigma = cfg.td3_noise * np.ones(act_dim)
        kwargs["action_noise"] = NormalActionNoise(np.zeros(act_dim), sigma)
    torch.manual_seed(seed)  # the shaper's initial weights are seeded like the networks'
    shaper = build_shaper(shaping, obs_dim, act_dim, cfg, **shaper_sizes(env, shaping, cfg))
    model = ALGOS[algo]("MlpPolicy", env, **kwargs)
    model.replay_buffer.attach_shaper(shaper)
    if tensorboard_log is None:
        quiet_logger(model)
    return model, shaper


def quiet_logger(model: OffPolicyAlgorithm) -> None:
    """Give ``model`` a logger that keeps the values it records (callbacks read them) and writes nothing.
    Without one SB3 configures its own at every ``learn``, and with no TensorBoard folder that makes an empty
    tempdir/SB3-<time> folder per run."""
    model.set_logger(Logger(folder=None, output_formats=[]))


def load_agent(
    algo: str, model_path: Path, buffer_path: Path, env, shaper: RewardShaper | None, device: str = "cpu"
) -> OffPolicyAlgorithm:
    """Reload a saved agent and its replay buffer, and re-attach the (separately restored) shaper."""
    check_choice("algorithm", algo, ALGOS)
    model = ALGOS[algo].load(model_path, env=env, device=device)
    model.load_replay_buffer(buffer_path)
    model.replay_buffer.attach_shaper(shaper)
    return model


class ShaperCallback(BaseCallback):
    """Refits the shaper every ``fit_every`` env steps, switches shaping on after ``start`` steps and sets the
    buffer's eta for the current step (``eta_at``: constant, or fading to 0 over ``eta_decay_steps``).

    Logs ``shaper/*`` diagnostics, among them the Pearson correlation of the shaping term with the hidden
    per-slot value the buffer stored from ``info`` (diagnosis only: it never reaches the losses).
    """

    def __init__(
        self,
        shaper: RewardShaper,
        config: AgentConfig | None = None,
        *,
        start: int | None = None,
        fit_every: int | None = None,
        updates: int | None = None,
        periods: int | None = None,
        max_slots: int | None = None,
        diag_samples: int = 1024,
    ):
        """Settings left as None come from ``config`` (default: ``AgentConfig()``): ``start`` is its
        ``shaping_start``, the others its ``shaper_<name>`` fields."""
        cfg = config if config is not None else AgentConfig()
        start = cfg.shaping_start if start is None else start
        fit_every = cfg.shaper_fit_every if fit_every is None else fit_every
        updates = cfg.shaper_updates if updates is None else updates
        periods = cfg.shaper_periods if periods is None else periods
        max_slots = cfg.shaper_max_slots if max_slots is None else max_slots
        super().__init__()
        if min(fit_every, updates, periods, max_slots) < 1:
            raise AgentError("shaper fit_every, updates, periods and max_slots must all be >= 1")
        self.shaper, self.start, self.fit_every, self.updates = shaper, start, fit_every, updates
        self.periods, self.max_slots, self.diag_samples = periods, max_slots, diag_samples
        self.eta, self.eta_decay_steps = cfg.eta, cfg.eta_decay_steps
        self.n_fits, self.last_fit_step = 0, 0
        self.last: dict[str, float] = {}

    @property
    def buffer(self) -> ShapedReplayBuffer:
        return self.model.replay_buffer

    def _on_step(self) -> bool:
        # ">=" rather than "%": with several envs num_timesteps moves in strides and can skip a multiple
        due = self.num_timesteps - self.last_fit_step >= self.fit_every and not self.faded(self.num_timesteps)
        if due and self.buffer.n_complete_periods() > 0:
            self.last_fit_step = self.num_timesteps
            self.fit()
        self.buffer.shaping_enabled = self.num_timesteps >= self.start and self.shaper.fitted
        self.buffer.eta = self.eta_at(self.num_timesteps)
        return True

    def faded(self, step: int) -> bool:
        """True once a decaying eta has reached 0 for good: the shaper is no longer fitted."""
        return self.eta_decay_steps > 0 and step >= self.start + self.eta_decay_steps

    def eta_at(self, step: int) -> float:
        """The shaping weight at env step ``step``: eta, faded linearly to 0 over ``eta_decay_steps`` steps
        after ``start`` when that is > 0."""
        if self.eta_decay_steps == 0:
            return self.eta
        return self.eta * max(0.0, 1.0 - max(0, step - self.start) / self.eta_decay_steps)

    def fit(self) -> dict[str, float]:
        """The shaper's fit on every whole period stored where it wants one (``fits_whole``), then ``updates``
        gradient steps on sampled periods unless it is fitted in closed form; diagnostics recorded to the SB3
        logger."""
        stats: list[dict[str, float]] = []
        if self.shaper.fits_whole:  # an exact fit on every whole period stored (the linear shaper, an anchor)
            stats.append(self.shaper.fit_whole(self.buffer.whole_periods()))
        if not self.shaper.closed_form:
            for _ in range(self.updates):
                stats.append(self.shaper.fit_batch(self.buffer.sample_periods(self.periods, self.max_slots)))
        self.buffer.refresh_periods(self.max_slots)
        self.n_fits += 1
        # a key NaN in every fit (nothing settled yet) averages to NaN, quietly
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            keys = dict.fromkeys(k for s in stats for k in s)
            self.last = {k: float(np.nanmean([s.get(k, np.nan) for s in stats])) for k in keys}
        self.last.update(self.diagnostics())
        self.last["fits"] = self.n_fits
        self.last["enabled"] = float(self.buffer.shaping_enabled)
        self.last["eta"] = self.buffer.eta
        for key, value in self.last.items():
            self.logger.record(f"shaper/{key}", value)
        return self.last

    def diagnostics(self) -> dict[str, float]:
        obs, act, nxt, dones, _, hidden, meters = self.buffer.sample_transitions(self.diag_samples)
        term = self.buffer.shaping_terms(obs, act, nxt, dones, hidden, meters)
        return {
            "bound": float(self.shaper.bound),
            "term_mean": float(term.mean()),
            "term_std": float(term.std()),
            "corr_hidden": pearson(term, hidden),
        }
