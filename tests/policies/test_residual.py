"""Residual learners (``--residual``): a zero correction is the heuristic itself, corrections are added and
clipped, the training env's view and the evaluated policy act alike, and bad settings are one-line errors."""

from __future__ import annotations

import json
from dataclasses import asdict

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest

from policies import experiments
from policies.eval_callback import day_means
from policies.evaluate import TrainedPolicy, load_trained
from policies.experiment_env import EnvSpec
from policies.heuristics import HEURISTICS, make_heuristic
from policies.policy import run_episode
from policies.residual import Residual, ResidualEnv, ResidualError, residual_from
from policies.train import Args, TrainError, main, resolve_args

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny() -> gym.Env:
    try:
        import twin.env  # noqa: F401

        return gym.make("AIGCTwin-v0", scenario="tiny")
    except (ImportError, OSError, ValueError):  # missing data/cards: the twin's errors are ValueErrors
        pytest.skip("the twin cannot be built here (data or cards missing)")


class Constant:
    """A stand-in for an SB3 model: the same correction whatever it sees (and what it saw, for the test)."""

    def __init__(self, correction):
        self.correction, self.seen = np.asarray(correction, dtype=np.float32), []

    def predict(self, obs, deterministic=True):
        self.seen.append(np.asarray(obs).copy())
        return self.correction, None


def test_a_zero_correction_is_the_heuristic_itself():
    env = tiny()
    day = int(env.unwrapped.eval_days[0])
    plain = run_episode(env, make_heuristic("price-greedy"), day=day, seed=3)
    zero = Constant(np.zeros(env.action_space.shape))
    policy = TrainedPolicy(zero, "residual", run="", residual=Residual("price-greedy", 1.0))
    residual = run_episode(env, policy, day=day, seed=3)
    assert residual.totals == plain.totals
    # what the learner saw: the twin's observation, then the heuristic's action for that slot
    n_obs = env.observation_space.shape[0]
    assert zero.seen[0].shape == (n_obs + env.action_space.shape[0],)
    assert np.all(np.abs(zero.seen[0][n_obs:]) <= 1.0)


def test_corrections_are_scaled_added_and_clipped():
    r = Residual("production-default", 0.5)
    base = np.array([0.0, 0.8, -0.9], dtype=np.float32)
    np.testing.assert_allclose(r.action(base, [1.0, 1.0, 0.4]), [0.5, 1.0, -0.7], rtol=1e-6)
    np.testing.assert_allclose(r.action(base, [-1.0, -1.0, -1.0]), [-0.5, 0.3, -1.0], rtol=1e-6)
    assert residual_from({"residual": ""}) is None and residual_from({}) is None  # runs made before it
    assert residual_from({"residual": "least-loaded", "residual_scale": 0.25}).scale == 0.25


def test_the_training_view_and_the_evaluated_policy_act_alike():
    """ResidualEnv (what the learner trains in) and TrainedPolicy on the plain twin (what every evaluator runs)
    give the same episode for the same corrections: one rule, two routes."""
    env = tiny()
    day = int(env.unwrapped.eval_days[0])
    correction = np.linspace(-0.6, 0.6, env.action_space.shape[0])
    residual = Residual("price-greedy", 0.5)
    wrapped = ResidualEnv(tiny(), Residual("price-greedy", 0.5))
    assert wrapped.observation_space.shape == (env.observation_space.shape[0] + env.action_space.shape[0],)
    obs, _ = wrapped.reset(seed=5, options={"split": "eval", "day": day})
    utility, done = 0.0, False
    while not done:
        assert wrapped.observation_space.contains(obs)
        obs, _, terminated, truncated, info = wrapped.step(correction)
        utility += info["utility"]
        done = terminated or truncated
    evaluated = run_episode(
        env, TrainedPolicy(Constant(correction), "r", run="", residual=residual), day=day, seed=5
    )
    assert evaluated.totals["utility"] == pytest.approx(utility, rel=1e-12)
    plain = run_episode(env, make_heuristic("price-greedy"), day=day, seed=5)
    assert evaluated.totals["utility"] != pytest.approx(plain.totals["utility"])  # the correction acted


def test_bad_residual_settings_are_one_line_errors(tmp_path, capsys):
    with pytest.raises(ResidualError, match="unknown residual base 'greedy'"):
        Residual("greedy", 1.0)
    with pytest.raises(ResidualError, match="scale must be > 0"):
        Residual("price-greedy", 0.0)
    with pytest.raises(ResidualError, match="needs the twin"):
        ResidualEnv(gym.make("Pendulum-v1"), Residual("price-greedy", 1.0))
    base = ["--no-progress", "--no-tensorboard", "--run-dir"]
    assert main(["--residual", "greedy", *base, str(tmp_path / "a")]) == 2
    known = ", ".join(HEURISTICS)
    assert (
        capsys.readouterr().err.strip()
        == f"error: --residual: unknown residual base 'greedy' (known: {known})"
    )
    assert main(["--residual", "price-greedy", "--residual-scale", "-1", *base, str(tmp_path / "b")]) == 2
    assert "residual scale must be > 0" in capsys.readouterr().err
    assert main(["--env-id", "Pendulum-v1", "--residual", "price-greedy", *base, str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --residual: a residual learner needs the twin") and err.count("\n") == 1
    assert main(["--residual-scale", "0.5", *base, str(tmp_path / "d")]) == 2
    assert (
        capsys.readouterr().err
        == "error: --residual-scale needs --residual (the heuristic it scales corrections to)\n"
    )


@pytest.fixture(scope="module")
def residual_run(tmp_path_factory):
    tiny()
    run = tmp_path_factory.mktemp("runs") / "res"
    args = ["--scenario", "tiny", "--reward-mode", "sparse", "--shaping", "none", "--residual", "price-greedy",
            "--residual-scale", "0.5", "--total-steps", "120", "--learning-starts", "48", "--batch-size", "32",
            "--net-width", "32", "--buffer-size", "2000", "--eval-every", "60", "--eval-days", "1",
            "--checkpoint-every", "60", "--no-progress", "--no-tensorboard", "--run-dir", str(run)]  # fmt: skip
    assert main(args) == 0
    return run, args


def test_a_residual_run_is_evaluated_with_its_heuristic(residual_run):
    run, _ = residual_run
    cfg = json.loads((run / "config.json").read_text())
    assert (cfg["residual"], cfg["residual_scale"]) == ("price-greedy", 0.5)
    policy = load_trained(run, "tiny")
    assert policy.name == "sac+none@price-greedy"  # never merged with a plain sac+none run in one table
    assert policy.residual is not None and policy.residual.base_name == "price-greedy"
    assert policy.residual.scale == 0.5
    env = tiny()
    again = day_means(env, policy, [int(env.unwrapped.eval_days[0])])
    frame = pd.read_csv(run / "eval.csv")
    assert frame["step"].tolist() == [0, 60, 120]
    assert again["utility"] == pytest.approx(frame["utility"].iloc[-1], rel=1e-12)
    # the experiments load it the same way
    job = experiments.TrainJob("sac", 0, EnvSpec("tiny"), 120, (("residual", "price-greedy"),))
    (run.parent / "train").mkdir(exist_ok=True)
    run.rename(job.run_dir(run.parent))
    try:
        loaded, step = experiments.make_policy(experiments.EvalJob("s", "x", "sac", 0, EnvSpec("tiny"), (), (), job),
                                               run.parent)  # fmt: skip
        assert step is None and loaded.residual is not None and loaded.residual.scale == 0.5
    finally:
        job.run_dir(run.parent).rename(run)


def test_a_run_can_be_evaluated_under_a_name_of_its_own(residual_run):
    from policies.evaluate import EvaluateError, build_policies

    run, _ = residual_run
    assert build_policies([f"sac-dense@price-greedy={run}"], "tiny")[0].name == "sac-dense@price-greedy"
    for bad in (f"={run}", f"x={run}/nowhere"):
        with pytest.raises(EvaluateError, match="NAME=RUN_DIR needs a name and a run directory"):
            build_policies([bad], "tiny")


def test_a_residual_run_resumes_only_as_itself(residual_run, capsys):
    run, args = residual_run
    other = [a if a != "0.5" else "1.0" for a in args]
    assert main([*other, "--resume", "--total-steps", "180"]) == 2
    assert "cannot resume with --residual-scale=1.0: the run used 0.5" in capsys.readouterr().err
    assert main([*args, "--resume", "--total-steps", "180"]) == 0
    assert pd.read_csv(run / "eval.csv")["step"].tolist() == [0, 60, 120, 180]


def test_a_run_saved_before_the_setting_resumes_with_its_default(tmp_path):
    run = tmp_path / "old"
    run.mkdir()
    saved = asdict(Args(scenario="tiny", shaping="none", run_dir=str(run)))
    del saved["residual"], saved["residual_scale"]
    (run / "config.json").write_text(json.dumps(saved))
    args, _ = resolve_args(
        Args(scenario="tiny", run_dir=str(run), resume=True, residual_scale=1.0), {"residual_scale"}
    )
    assert (args.residual, args.residual_scale, args.shaping) == ("", 1.0, "none")
    with pytest.raises(TrainError, match=r"cannot resume with --residual=price-greedy: the run used $"):
        resolve_args(
            Args(scenario="tiny", run_dir=str(run), resume=True, residual="price-greedy"), {"residual"}
        )


def loaded_obs(env, load: np.ndarray) -> np.ndarray:
    """A zero observation in which each site's offered load (queued, relative to ``capacity_ref``) is ``load``."""
    from twin.env import OBS_PER_DC, obs_index

    obs = np.zeros(env.observation_space.shape, dtype=np.float32)
    obs[obs_index("queued") + OBS_PER_DC * np.arange(len(load))] = load
    return obs


def test_the_overload_gate_opens_with_a_sites_load_and_gates_its_own_dimensions():
    env = tiny()
    env.reset(seed=0)
    u = env.unwrapped
    r = Residual("quality-first", 1.0, "overload")
    r.reset(env)
    cap = r.capacity  # each site's capacity at the saturating step count, relative to capacity_ref
    # it is the load quality-first serves at that count: a little more and the rule lowers its steps
    rule = make_heuristic("quality-first")
    rule.reset(env)
    saturating = rule.levels[:, 2]
    obs = loaded_obs(env, np.zeros(u.n_dc))
    np.testing.assert_array_equal(rule.plan(obs, u, offered=0.999 * cap).steps_idx, saturating)
    assert np.all(rule.plan(obs, u, offered=1.01 * cap).steps_idx < saturating)
    for shares in (np.linspace(0.5, 0.9, u.n_dc), np.linspace(0.95, 1.2, u.n_dc)):
        np.testing.assert_allclose(r.site_gates(loaded_obs(env, shares * cap)), np.clip((shares - 0.8) / 0.2, 0, 1),
                                   atol=1e-6)  # fmt: skip
    # only the loaded site's dimensions move: its transfers out, its step count, its battery
    load = np.zeros(u.n_dc)
    load[0] = 2.0 * cap[0]
    obs = loaded_obs(env, load)
    base, seen = r.view(obs, env)
    assert seen.shape == r.observation_space(env).shape
    assert seen[-u.n_dc :].tolist() == [1.0] + [0.0] * (u.n_dc - 1)  # the learner sees the gates
    acted = r.action(base, -np.ones(env.action_space.shape))
    own = [u.action_index("steps", 0), u.action_index("battery", 0), *range(u.n_dc - 1)]
    changed = np.flatnonzero(acted != base)
    assert set(changed) <= set(own) and u.action_index("steps", 0) in changed
    moved = acted != np.clip(base - 1.0, -1, 1)
    assert not moved[own].any()  # where it acts, it acts in full


def test_a_gate_that_never_opens_is_the_heuristic_itself():
    """On the tiny scenario no GPU pool is near its capacity (3-8 % busy at the peak): a gated correction,
    however large, leaves the heuristic's actions, and the learner sees closed gates."""
    env = tiny()
    day = int(env.unwrapped.eval_days[0])
    plain = run_episode(env, make_heuristic("overflow"), day=day, seed=3)
    full = Constant(np.ones(env.action_space.shape))
    policy = TrainedPolicy(full, "gated", run="", residual=Residual("overflow", 1.0, "overload"))
    assert run_episode(env, policy, day=day, seed=3).totals == plain.totals
    assert all(np.all(seen[-env.unwrapped.n_dc :] == 0) for seen in full.seen)


def test_bad_gate_settings_are_one_line_errors(tmp_path, capsys):
    with pytest.raises(ResidualError, match="unknown residual gate 'load' \\(known: overload\\)"):
        Residual("overflow", 1.0, "load")
    with pytest.raises(ResidualError, match="needs a view of the slot first"):
        Residual("overflow", 1.0, "overload").action(np.zeros(3, dtype=np.float32), np.zeros(3))
    base = ["--no-progress", "--no-tensorboard", "--run-dir"]
    assert main(["--residual-gate", "overload", *base, str(tmp_path / "a")]) == 2
    assert (
        capsys.readouterr().err
        == "error: --residual-gate needs --residual (the heuristic whose corrections it gates)\n"
    )
    assert main(["--residual", "overflow", "--residual-gate", "x", *base, str(tmp_path / "b")]) == 2
    assert capsys.readouterr().err.startswith("error: --residual: unknown residual gate 'x'")
    assert residual_from({"residual": "overflow", "residual_gate": "overload"}).label == "overflow/overload"
    assert residual_from({"residual": "overflow"}).label == "overflow"  # runs made before the gate


def test_the_critic_probe_reaches_a_move_through_a_half_open_gate():
    """``critic_probe.learner_action`` inverts the gated correction: at a site whose gate is half open the learner
    must move twice as far; where the gate is closed no output of it moves the twin."""
    from policies.critic_probe import learner_action

    env = tiny()
    env.reset(seed=0)
    u = env.unwrapped
    r = Residual("quality-first", 1.0, "overload")
    r.reset(env)
    load = np.zeros(u.n_dc)
    load[0] = 0.9 * r.capacity[0]  # gate 0.5 at site 0, closed elsewhere
    own = np.full(env.action_space.shape, 0.1, dtype=np.float32)
    policy = TrainedPolicy(Constant(own), "gated", run="", residual=r)
    base, _, own, twin_action = policy.decide(loaded_obs(env, load), env)
    battery = u.action_index("battery", 0)
    target = twin_action.copy()
    target[battery] = (
        np.clip(twin_action[battery] + 0.1, -1, 1)
        if twin_action[battery] < 0.9
        else twin_action[battery] - 0.1
    )
    wanted = learner_action(policy, base, own, twin_action, target)
    assert wanted is not None and wanted[battery] == pytest.approx(
        own[battery] + 2 * (target - twin_action)[battery]
    )
    np.testing.assert_allclose(r.action(base, wanted), target, atol=1e-6)
    closed = twin_action.copy()
    closed[u.action_index("battery", 1)] += 0.05 if twin_action[u.action_index("battery", 1)] < 0.9 else -0.05
    assert learner_action(policy, base, own, twin_action, closed) is None


def test_a_gated_run_resumes_only_with_its_gate(tmp_path):
    run = tmp_path / "old"
    run.mkdir()
    saved = asdict(Args(scenario="tiny", shaping="none", residual="overflow", run_dir=str(run)))
    del saved["residual_gate"]  # saved before the gate existed: ungated
    (run / "config.json").write_text(json.dumps(saved))
    args, _ = resolve_args(Args(scenario="tiny", run_dir=str(run), resume=True), set())
    assert (args.residual, args.residual_gate) == ("overflow", "")
    with pytest.raises(TrainError, match=r"cannot resume with --residual-gate=overload: the run used $"):
        resolve_args(
            Args(
                scenario="tiny", run_dir=str(run), resume=True, residual="overflow", residual_gate="overload"
            ),
            {"residual_gate"},
        )
