"""Train an SB3 SAC/TD3 scheduler on the twin, with or without a learned reward shaper, into a run directory
(config, metrics CSV, TensorBoard, resumable checkpoints): ``python -m policies.train --help``."""

from __future__ import annotations

import argparse
import ast
import inspect
import itertools
import json
import shutil
import sys
import textwrap
import time
from dataclasses import asdict, dataclass, fields, is_dataclass
from pathlib import Path
from typing import Any, get_type_hints

import gymnasium as gym
import torch
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import HParam
from tqdm.auto import tqdm

from policies.agents import (
    ALGOS,
    SHAPINGS,
    AgentConfig,
    AgentError,
    ShaperCallback,
    build_agent,
    build_shaper,
    check_choice,
    check_config,
    flat_dims,
    load_agent,
    quiet_logger,
    shaper_sizes,
)
from policies.delayed import SettlementWrapper
from policies.eval_callback import HeldOutEvalCallback, held_out_days, is_twin, validation_days
from policies.policy import episode_rates
from policies.residual import RESIDUAL_SCALE, ResidualEnv, ResidualError, residual_from
from policies.run_dir import (
    BEST_DIR,
    BUFFER_FILE,
    SHAPER_FILE,
    MetricsLog,
    RunDir,
    RunDirError,
    checkpoint_step,
    load_pickle,
    publish_dir,
    restore_shaper,
    rng_state,
    run_name,
    save_pickle,
    save_shaper,
    set_rng_state,
)
from policies.shapers import RewardShaper, ShaperError
from policies.train_load import TrainLoad, TrainLoadError, check_high
from traces.atomic import write_json_atomic
from twin.env import FLOW_KEYS, STOCK_KEYS  # importing twin.env registers AIGCTwin-v0


class TrainError(ValueError):
    """Bad input to a training run (unknown scenario, resume without a checkpoint, ...)."""


@dataclass
class Args(AgentConfig):
    """Everything a training run takes: the agent's hyperparameters (``AgentConfig``, the one source of
    their defaults) and the run's own settings; each field's docstring is its ``--help`` line."""

    algo: str = "sac"
    """scheduler algorithm: sac | td3"""
    shaping: str = "diffusion"
    """reward shaping: diffusion | mlp | linear | linear+diffusion | linear+mlp (the network fits what the linear
    decomposition leaves) | none | potential | perfect (a diagnostic: the hidden per-slot reward)"""
    scenario: str = "tiny"
    """twin scenario: a bundled name (tiny, default) or a TOML path"""
    reward_mode: str | None = None
    """twin reward: sparse | dense (default: the scenario's own)"""
    seed: int = 0
    """seed of the networks, the replay sampling and the env's first reset"""
    total_steps: int = 20_000
    """env steps to train for in total (with --resume: the new total)"""
    run_dir: str | None = None
    """run directory (default: runs/<scenario>__<algo>+<shaping>__<seed>__<time>)"""
    runs_root: str = "runs"
    """parent folder of auto-named run directories"""
    resume: bool = False
    """continue the run in --run-dir from its latest checkpoint"""
    checkpoint_every: int = 5_000
    """save a checkpoint every this many env steps (and at the end)"""
    keep_checkpoints: int = 2
    """checkpoints kept on disk"""
    env_id: str | None = None
    """train on this gymnasium id instead of the twin (e.g. Pendulum-v1, for smoke tests)"""
    settle_every: int = 0
    """with --env-id: pay rewards as settlements every this many steps (0: dense)"""
    threads: int = 1
    """torch CPU threads (0: torch's default; 1 measured fastest on a busy 2-core box, where 2 threads thrash)"""
    progress: bool = True
    """show a progress bar"""
    tensorboard: bool = True
    """write TensorBoard logs under <run>/tb"""
    eval_every: int = 0
    """evaluate the deterministic policy on held-out days every this many env steps (0: never) into <run>/eval.csv;
    the twin only: an --env-id that is not the twin (an experiment variant is) is an error"""
    eval_days: int = 2
    """held-out days per evaluation (spread over the scenario's held-out split)"""
    val_days: int = 0
    """with --eval-every: also evaluate on this many validation days (training-split days, fresh arrivals) and
    evaluate the run by the policy best on them (<run>/best/) instead of its last; 0: the last policy"""
    residual: str = ""
    """learn a correction to this heuristic's action instead of the action itself (policies.residual):
    a policies.heuristics name (price-greedy, quality-first, ...); empty: none"""
    residual_scale: float = RESIDUAL_SCALE
    """with --residual: the twin's action is clip(heuristic's + residual_scale * learner's, -1, 1)"""
    residual_gate: str = ""
    """with --residual: "overload" multiplies each site's correction by a gate that opens as the site nears its
    capacity (policies.residual); empty: the correction acts everywhere"""
    train_load: float = 1.0
    """each training episode's arrival rates times a factor drawn log-uniformly in [1, this] (policies.train_load:
    more busy days to learn from); held-out and validation days keep their own load; 1: the days as they come"""

    def agent_config(self) -> AgentConfig:
        return AgentConfig(**{f.name: getattr(self, f.name) for f in fields(AgentConfig)})

    def validate(self) -> None:
        check_choice("algorithm", self.algo, ALGOS)
        check_choice("shaping", self.shaping, SHAPINGS)
        check_config(self)
        if self.reward_mode not in (None, "sparse", "dense"):
            raise TrainError(f"unknown reward mode {self.reward_mode!r}; choose sparse or dense")
        positive = (
            "total_steps",
            "checkpoint_every",
            "keep_checkpoints",
            "batch_size",
            "buffer_size",
            "eval_days",
        )
        for name in positive:
            if getattr(self, name) < 1:
                raise TrainError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.eval_every < 0:
            raise TrainError(f"--eval-every must be >= 0, got {self.eval_every}")
        if self.val_days < 0:
            raise TrainError(f"--val-days must be >= 0, got {self.val_days}")
        if self.val_days > 0 and self.eval_every == 0:
            raise TrainError("--val-days needs --eval-every (validation runs with each evaluation)")
        if self.resume and self.run_dir is None:
            raise TrainError("--resume needs --run-dir (the run to continue)")
        try:
            residual_from(asdict(self))
        except ResidualError as exc:
            raise TrainError(f"--residual: {exc}") from None
        if not self.residual and self.residual_scale != RESIDUAL_SCALE:
            raise TrainError("--residual-scale needs --residual (the heuristic it scales corrections to)")
        if not self.residual and self.residual_gate:
            raise TrainError("--residual-gate needs --residual (the heuristic whose corrections it gates)")
        try:
            check_high(self.train_load)
        except TrainLoadError as exc:
            raise TrainError(f"--train-load: {exc}") from None


def field_docs(cls: type) -> dict[str, str]:
    """Attribute docstrings (a string right under a field), as CleanRL/tyro turn into --help; a subclass's
    own docstring of a field wins over its base class's."""
    docs = {}
    for klass in reversed([k for k in cls.__mro__ if is_dataclass(k)]):
        body = ast.parse(textwrap.dedent(inspect.getsource(klass))).body[0].body
        for node, nxt in itertools.pairwise(body):
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(nxt, ast.Expr)
                and isinstance(nxt.value, ast.Constant)
            ):
                docs[node.target.id] = str(nxt.value.value)
    return docs


def field_types() -> dict[str, type]:
    """Each ``Args`` field's value type on the command line: bool, int, float or str (``X | None`` gives X)."""
    out = {}
    for name, kind in get_type_hints(Args).items():
        if kind is bool:
            out[name] = bool
        else:
            out[name] = next(
                (t for t in (int, float, str) if t == kind or t in getattr(kind, "__args__", ())), str
            )
    return out


def parse_value(name: str, text: str) -> Any:
    """``text`` as the value of field ``name``; ValueError when it is not one (bool: true/false, yes/no, 1/0)."""
    kind = field_types()[name]
    if kind is bool:
        words = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
        if text.strip().lower() not in words:
            raise ValueError(f"{name} takes true or false, got {text!r}")
        return words[text.strip().lower()]
    return kind(text.strip())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m policies.train", description=__doc__.splitlines()[0])
    docs, types = field_docs(Args), field_types()
    for f in fields(Args):
        flag, kind = "--" + f.name.replace("_", "-"), types[f.name]
        helptext = f"{docs.get(f.name, '')} (default: {f.default})"
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default, help=helptext)
        else:
            parser.add_argument(flag, type=kind, default=f.default, help=helptext)
    return parser


def parse_args(argv: list[str] | None = None) -> tuple[Args, set[str]]:
    """The parsed Args and the names of the options given explicitly on the command line."""
    argv = sys.argv[1:] if argv is None else list(argv)
    ns = build_parser().parse_args(argv)
    flags = [a.split("=", 1)[0][2:] for a in argv if a.startswith("--")]
    explicit = {f.removeprefix("no-").replace("-", "_") for f in flags}
    return Args(**vars(ns)), explicit


# --- environment ---------------------------------------------------------------------------------------------


def make_env(args: Args) -> tuple[gym.Env, dict[str, str]]:
    """The training env and the text files to save beside the run (the scenario used)."""
    if args.env_id is not None:
        try:
            env = gym.make(args.env_id)
        except gym.error.Error as exc:
            raise TrainError(f"cannot make env {args.env_id!r}: {exc}") from None
        if args.settle_every > 0:
            env = SettlementWrapper(env, args.settle_every)
        return env, {"scenario.toml": env.unwrapped.scenario.to_toml()} if is_twin(env) else {}
    from twin.scenario import ScenarioError

    try:
        env = gym.make("AIGCTwin-v0", scenario=args.scenario, reward_mode=args.reward_mode)
    except (ScenarioError, OSError, ValueError) as exc:  # the twin's data and card errors are ValueErrors
        raise TrainError(f"scenario {args.scenario!r}: {exc}") from None
    return env, {"scenario.toml": env.unwrapped.scenario.to_toml()}


def learner_env(env: gym.Env, args: Args) -> gym.Env:
    """The env the learner acts in: ``env`` itself, or a residual learner's view of it (``ResidualEnv``)."""
    residual = residual_from(asdict(args))
    if residual is None:
        return env
    try:
        return ResidualEnv(env, residual)
    except ResidualError as exc:
        env.close()
        raise TrainError(f"--residual: {exc}") from None


def env_record(args: Args) -> dict[str, Any]:
    """What config.json keeps about the env beyond Args: an experiment variant's ``EnvSpec`` (``env_spec``), so
    the evaluator can tell which scenario a run made through its registered gym id was trained on."""
    if args.env_id is None:
        return {}
    spec = gym.spec(args.env_id)
    if spec.entry_point != "policies.experiment_env:make_env" or "spec" not in spec.kwargs:
        return {}
    return {"env_spec": dict(spec.kwargs["spec"])}


def check_eval(args: Args, env: gym.Env) -> None:
    """``--eval-every`` needs the twin's held-out days, at least ``--eval-days`` of them (and ``--val-days``
    training days)."""
    if args.eval_every == 0:
        return
    if not is_twin(env):
        raise TrainError(f"--eval-every needs the twin's held-out days; env {args.env_id!r} has none")
    try:
        held_out_days(env, args.eval_days)
        if args.val_days > 0:
            validation_days(env, args.val_days)
    except ValueError as exc:
        raise TrainError(str(exc)) from None


def scenario_label(args: Args) -> str:
    label = args.env_id or Path(args.scenario).stem
    return label.replace("/", "-")


# --- callbacks -----------------------------------------------------------------------------------------------

#: The rates of ``policies.policy.episode_rates`` written to metrics.csv (and re-exported from here).
METRIC_RATES = ("violation_rate", "quality_violation_rate")


class MetricsCallback(BaseCallback):
    """One CSV row (and TensorBoard scalars) per finished episode: return, the twin's info flows summed and
    stocks at the episode's end, rates, losses."""

    def __init__(
        self,
        log: MetricsLog,
        shaper_cb: ShaperCallback | None,
        episodes: int = 0,
        hparams: dict | None = None,
    ):
        super().__init__()
        self.log, self.shaper_cb, self.episodes, self.hparams = log, shaper_cb, episodes, hparams
        self.t0 = time.perf_counter()
        self.sums: list[dict[str, float]] = []
        self.losses: dict[str, float] = {}

    def _on_training_start(self) -> None:
        self.sums = [dict() for _ in range(self.training_env.num_envs)]
        self.t0, self.step0 = time.perf_counter(), self.num_timesteps
        if self.hparams:  # the hyperparameters as a TensorBoard table, as CleanRL does
            plain = {k: v for k, v in self.hparams.items() if isinstance(v, int | float | str | bool)}
            metrics = {"charts/episode_return": 0.0, "charts/violation_rate": 0.0}
            self.logger.record("hparams", HParam(plain, metrics), exclude=("stdout", "log", "json", "csv"))

    def _on_step(self) -> bool:
        self.losses.update({k: v for k, v in self.logger.name_to_value.items() if k.startswith("train/")})
        for i, (info, reward, done) in enumerate(
            zip(self.locals["infos"], self.locals["rewards"], self.locals["dones"], strict=True)
        ):
            acc = self.sums[i]
            acc["return"] = acc.get("return", 0.0) + float(reward)
            acc["length"] = acc.get("length", 0) + 1
            for key in FLOW_KEYS:  # an env other than the twin may carry some of them (e.g. utility)
                if key in info:
                    acc[key] = acc.get(key, 0.0) + float(info[key])
            acc.update({key: float(info[key]) for key in STOCK_KEYS if key in info})  # the last slot's
            if done:
                self.finish_episode(acc)
                self.sums[i] = {}
        return True

    def finish_episode(self, acc: dict[str, float]) -> None:
        self.episodes += 1
        elapsed = time.perf_counter() - self.t0
        row: dict[str, Any] = {
            "step": self.num_timesteps,
            "episode": self.episodes,
            "wall_s": round(elapsed, 2),
        }
        row["sps"] = (self.num_timesteps - self.step0) / max(elapsed, 1e-9)
        row["episode_return"], row["episode_length"] = acc.pop("return"), acc.pop("length")
        row.update({f"info/{k}": v for k, v in acc.items()})
        rates = episode_rates(acc)
        row.update({k: rates[k] for k in METRIC_RATES if k in rates})
        row.update({f"losses/{k.split('/', 1)[1]}": v for k, v in self.losses.items()})
        if self.shaper_cb is not None:
            row.update({f"shaper/{k}": v for k, v in self.shaper_cb.last.items()})
        for key in ("episode_return", "violation_rate", "info/utility"):
            if key in row:
                self.logger.record(f"charts/{key.replace('info/', '')}", row[key])
        self.log.append(row)
        self.log.flush()


class CheckpointCallback(BaseCallback):
    """Every ``every`` env steps (and at the end): model, replay buffer, shaper, RNG states, counters, and a
    copy of the policy best on validation days so far (``best/``), if any."""

    def __init__(
        self, run: RunDir, args: Args, shaper: RewardShaper | None, shaper_cb, metrics_cb, keep: int
    ):
        super().__init__()
        self.run, self.args, self.shaper, self.keep = run, args, shaper, keep
        self.shaper_cb, self.metrics_cb = shaper_cb, metrics_cb
        self.last_saved = -1

    # Saved when a rollout starts, i.e. after the previous step's gradient update, so a resumed run does
    # exactly the updates an uninterrupted one would.
    def _on_training_start(self) -> None:
        self.last_saved = self.num_timesteps

    def _on_rollout_start(self) -> None:
        if self.num_timesteps - self.last_saved >= self.args.checkpoint_every:
            self.save()

    def _on_step(self) -> bool:
        return True

    def _on_training_end(self) -> None:
        self.save()

    def save(self) -> Path:
        def write(folder: Path) -> None:
            self.model.save(folder / "model.zip")
            self.model.save_replay_buffer(folder / BUFFER_FILE)
            if self.shaper is not None:
                save_shaper(folder / SHAPER_FILE, self.shaper)
            save_pickle(folder / "rng.pkl", rng_state(self.model.action_space))
            state = {
                "step": self.num_timesteps,
                "episodes": self.metrics_cb.episodes,
                "shaper_fits": self.shaper_cb.n_fits if self.shaper_cb else 0,
            }
            write_json_atomic(folder / "state.json", state)
            if self.run.best.is_dir():
                shutil.copytree(self.run.best, folder / BEST_DIR)

        self.metrics_cb.log.flush()
        self.last_saved = self.num_timesteps
        return self.run.save_checkpoint(self.num_timesteps, write, keep=self.keep)


class ProgressCallback(BaseCallback):
    """A tqdm bar over env steps that starts at the resumed step count."""

    def __init__(self, total: int):
        super().__init__()
        self.total, self.bar = total, None

    def _on_training_start(self) -> None:
        self.bar = tqdm(total=self.total, initial=self.num_timesteps, unit="step", dynamic_ncols=True)

    def _on_step(self) -> bool:
        self.bar.update(1)
        return True

    def _on_training_end(self) -> None:
        self.bar.close()


# --- the run -------------------------------------------------------------------------------------------------

FIXED_ON_RESUME = (
    "algo", "shaping", "scenario", "seed", "env_id", "reward_mode", "settle_every", "residual", "residual_scale",
    "residual_gate", "train_load",
)  # fmt: skip


def resolve_args(args: Args, explicit: set[str]) -> tuple[Args, RunDir]:
    """The run's Args and directory: a new auto-named run, or the saved config of a resumed one."""
    args.validate()
    if not args.resume:
        name = run_name(scenario_label(args), args.algo, args.shaping, args.seed)
        run = RunDir(args.run_dir or Path(args.runs_root) / name)
        if (run.path / "config.json").exists() or run.checkpoint_dirs():
            raise TrainError(
                f"{run.path} already holds a run: continue it with --resume or pick another --run-dir"
            )
        return args, run
    run = RunDir(args.run_dir)
    try:
        saved = run.load_config()
    except RunDirError as exc:
        raise TrainError(f"cannot resume: {exc}") from None
    defaults = {f.name: f.default for f in fields(Args)}
    for name in FIXED_ON_RESUME:  # a run saved before a setting existed had its default
        if name in explicit and getattr(args, name) != saved.get(name, defaults[name]):
            raise TrainError(
                f"cannot resume with --{name.replace('_', '-')}={getattr(args, name)}: the run used "
                f"{saved.get(name, defaults[name])}"
            )
    keep = {"total_steps", "resume", "run_dir", "progress", "threads"}
    merged = {**{k: v for k, v in saved.items() if k in {f.name for f in fields(Args)}}}
    merged.update({k: getattr(args, k) for k in keep})
    return Args(**merged), run


def train(args: Args, explicit: set[str] | None = None) -> Path:
    """Run (or resume) training; returns the run directory."""
    args, run = resolve_args(args, explicit or set())
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    ckpt = run.latest_checkpoint() if args.resume else None
    if args.resume and ckpt is None:
        raise TrainError(f"cannot resume: no checkpoint in {run.checkpoints}")
    env, extras = make_env(args)
    try:
        check_eval(args, env)
    except TrainError:
        env.close()
        raise
    if args.train_load != 1.0:
        if not is_twin(env):
            env.close()
            raise TrainError(f"--train-load scales the twin's arrivals; env {args.env_id!r} has none")
        env = TrainLoad(env, args.train_load, args.seed)
    env = learner_env(env, args)
    cfg = args.agent_config()
    tb = str(run.tensorboard) if args.tensorboard else None
    if ckpt is None:
        shutil.rmtree(run.best, ignore_errors=True)  # a fresh run's choice starts from nothing
        run.save_config({**asdict(args), **env_record(args)}, extras)
        model, shaper = build_agent(args.algo, env, args.shaping, cfg, seed=args.seed, tensorboard_log=tb)
        state: dict[str, Any] = {"step": 0, "episodes": 0, "shaper_fits": 0}
    else:
        model, shaper, state = restore(args, run, ckpt, env, cfg)
    log = MetricsLog(run.metrics_path)
    log.resume(state["step"])
    callbacks = build_callbacks(args, run, shaper, log, state)
    remaining = args.total_steps - model.num_timesteps
    if remaining > 0:
        model.learn(
            remaining, callback=callbacks, log_interval=1, tb_log_name="tb", reset_num_timesteps=ckpt is None
        )
    log.flush()
    env.close()
    return run.path


def build_callbacks(args: Args, run: RunDir, shaper, log: MetricsLog, state: dict) -> list[BaseCallback]:
    shaper_cb = None
    if shaper is not None:
        shaper_cb = ShaperCallback(shaper, args.agent_config())
        shaper_cb.n_fits = state["shaper_fits"]
    metrics_cb = MetricsCallback(log, shaper_cb, episodes=state["episodes"], hparams=asdict(args))
    ckpt_cb = CheckpointCallback(run, args, shaper, shaper_cb, metrics_cb, keep=args.keep_checkpoints)
    eval_cb = None
    if args.eval_every > 0:  # its own env instance, built from the same args as the training env
        # the plain twin, as every evaluator runs it: a residual learner's policy applies its heuristic itself
        eval_cb = HeldOutEvalCallback(
            lambda: make_env(args)[0], run.eval_path, args.eval_every, args.eval_days, args.val_days, run.best,
            residual=residual_from(asdict(args)),
        )  # fmt: skip
        eval_cb.resume(state["step"])
    # The evaluation before the checkpoint of the same step, so that the checkpoint holds its best policy.
    callbacks: list[BaseCallback] = [c for c in (shaper_cb, metrics_cb, eval_cb, ckpt_cb) if c is not None]
    if args.progress:
        callbacks.append(ProgressCallback(args.total_steps))
    return callbacks


def restore(args: Args, run: RunDir, ckpt: Path, env, cfg: AgentConfig):
    """Model, replay buffer, shaper and RNG states from ``ckpt``; the env restarts with a fresh episode."""
    obs_dim, act_dim = flat_dims(env)
    shaper = build_shaper(args.shaping, obs_dim, act_dim, cfg, **shaper_sizes(env, args.shaping, cfg))
    if shaper is not None:
        restore_shaper(ckpt / SHAPER_FILE, shaper, cfg.device)
    model = load_agent(args.algo, ckpt / "model.zip", ckpt / BUFFER_FILE, env, shaper, cfg.device)
    model.tensorboard_log = str(run.tensorboard) if args.tensorboard else None
    if not args.tensorboard:
        quiet_logger(model)
    # The env cannot be checkpointed mid-episode: the open settlement period can never be settled, so
    # it is abandoned, and the env is reset with a seed derived from the step count.
    model.replay_buffer.break_periods()
    model._last_obs = None
    model.env.seed(args.seed + checkpoint_step(ckpt))
    set_rng_state(load_pickle(ckpt / "rng.pkl"), model.action_space)
    if args.val_days > 0:  # the best policy as of the checkpoint, not a later one
        if not (ckpt / BEST_DIR).is_dir():
            raise TrainError(
                f"cannot resume: {ckpt} holds no {BEST_DIR}/ (the policy chosen on validation days)"
            )
        publish_dir(run.best, lambda folder: shutil.copytree(ckpt / BEST_DIR, folder, dirs_exist_ok=True))
    state = json.loads((ckpt / "state.json").read_text(encoding="utf-8"))
    return model, shaper, state


def main(argv: list[str] | None = None) -> int:
    args, explicit = parse_args(argv)
    try:
        path = train(args, explicit)
    except (TrainError, AgentError, ShaperError, RunDirError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
