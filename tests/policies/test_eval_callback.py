"""Held-out evaluation during training (``--eval-every``): eval.csv rows at the right steps that equal the
evaluator's numbers for the same policy and days, a resume that does not duplicate rows, training untouched by
the evaluation, experiment-variant runs loadable by the evaluator, and learning curves that prefer eval.csv."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest
import torch

from policies import experiments
from policies.eval_callback import DAY_SEED0, MONEY, day_means
from policies.evaluate import EvaluateError, TrainedPolicy, load_trained
from policies.experiment_env import EnvSpec, make_env, register
from policies.train import Args, main, train

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = ["--learning-starts", "48", "--batch-size", "32", "--net-width", "32", "--buffer-size", "2000",
        "--shaping", "none", "--no-progress", "--no-tensorboard", "--threads", "1"]  # fmt: skip
COLUMNS = ["step", "days", *MONEY, "violation_rate", "wall_s"]


def twin_or_skip() -> gym.Env:
    try:
        import twin.env  # noqa: F401

        return gym.make("AIGCTwin-v0", scenario="tiny")
    except (ImportError, OSError, ValueError):  # missing data/cards: the twin's errors are ValueErrors
        pytest.skip("the twin cannot be built here (data or cards missing)")


def first_held_out_day() -> str:
    u = twin_or_skip().unwrapped
    return u.data.days[u.eval_days[0]]


def actor(path) -> torch.Tensor:
    from stable_baselines3 import SAC

    model = SAC.load(path / "checkpoints" / "step_0000000100" / "model.zip", device="cpu")
    return torch.cat([p.detach().flatten() for p in model.actor.parameters()])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny-scenario run to 100 steps evaluating every 40 (one held-out day), and the same run without."""
    twin_or_skip()
    root = tmp_path_factory.mktemp("runs")
    base = [
        "--scenario",
        "tiny",
        "--reward-mode",
        "sparse",
        "--total-steps",
        "100",
        "--checkpoint-every",
        "48",
    ]
    assert (
        main([*base, *TINY, "--run-dir", str(root / "eval"), "--eval-every", "40", "--eval-days", "1"]) == 0
    )
    assert main([*base, *TINY, "--run-dir", str(root / "plain")]) == 0
    return root


def test_rows_at_the_start_at_every_multiple_and_at_the_end(trained):
    frame = pd.read_csv(trained / "eval" / "eval.csv")
    assert list(frame.columns) == COLUMNS
    assert frame["step"].tolist() == [0, 40, 80, 100] and (frame["days"] == 1).all()
    assert np.isfinite(frame[list(MONEY)].to_numpy()).all()
    terms = frame["revenue"] - frame["penalty"] - frame["energy_cost"] - frame["transfer_cost"]
    assert np.allclose(frame["utility"], terms)
    assert not (trained / "plain" / "eval.csv").exists()


def test_the_last_row_is_what_the_evaluator_gives_for_the_final_checkpoint(trained):
    # the evaluator's policy (load_trained) on the callback's episode: the first held-out day with its seed
    from policies.policy import run_episode
    from twin.env import AIGCTwinEnv

    policy = load_trained(trained / "eval", "tiny")
    totals = run_episode(AIGCTwinEnv("tiny"), policy, day=first_held_out_day(), seed=DAY_SEED0).totals
    last = pd.read_csv(trained / "eval" / "eval.csv").iloc[-1]
    for key in MONEY:
        assert last[key] == pytest.approx(totals[key], rel=1e-12, abs=1e-12), key


def test_evaluation_leaves_training_untouched(trained):
    assert torch.equal(actor(trained / "eval"), actor(trained / "plain"))
    with_eval, without = (pd.read_csv(trained / name / "metrics.csv") for name in ("eval", "plain"))
    pd.testing.assert_series_equal(with_eval["episode_return"], without["episode_return"])


def test_resume_keeps_rows_and_drops_those_after_the_checkpoint(trained):
    run = trained / "eval"
    before = pd.read_csv(run / "eval.csv")
    # an evaluation logged after the checkpoint (step 100) by a run that then died: it is redone, not kept
    stale = pd.concat([before, before.iloc[[-1]].assign(step=120, utility=-1e9)], ignore_index=True)
    stale.to_csv(run / "eval.csv", index=False)
    assert main(["--resume", "--run-dir", str(run), "--total-steps", "160", "--no-progress"]) == 0
    after = pd.read_csv(run / "eval.csv")
    assert after["step"].tolist() == [0, 40, 80, 100, 120, 160]
    pd.testing.assert_frame_equal(after.iloc[:4], before)
    assert (after["utility"] > -1e9).all()


def test_eval_every_with_an_env_id_that_is_not_the_twin_is_one_line(tmp_path, capsys):
    run = tmp_path / "run"
    argv = ["--env-id", "Pendulum-v1", "--eval-every", "10", "--run-dir", str(run), "--no-progress"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "--eval-every needs the twin" in err and len(err.splitlines()) == 1
    assert not (run / "config.json").exists()
    assert (
        main(["--scenario", "tiny", "--eval-every", "10", "--eval-days", "999", "--run-dir", str(run)]) == 2
    )
    assert "--eval-days must be in" in capsys.readouterr().err


def test_an_experiment_variant_run_evaluates_and_loads_for_its_scenario(tmp_path, capsys):
    twin_or_skip()
    run = tmp_path / "run"
    args = Args(algo="sac", shaping="none", env_id=register(EnvSpec("tiny")), total_steps=60,
                learning_starts=30, batch_size=16, net_width=16, buffer_size=500, eval_every=50, eval_days=1,
                run_dir=str(run), progress=False, tensorboard=False)  # fmt: skip
    train(args)
    frame = pd.read_csv(run / "eval.csv")
    assert frame["step"].tolist() == [0, 50, 60]
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["env_spec"] == EnvSpec("tiny").to_dict() and (run / "scenario.toml").is_file()

    capsys.readouterr()
    policy = load_trained(run, "tiny")  # a plain variant of tiny: the scenario itself
    assert policy.step == 60  # no selection: the latest checkpoint's, the end of training
    assert capsys.readouterr().err == "run: evaluating its latest checkpoint, saved at step 60\n"
    env = make_env(EnvSpec("tiny"))
    again = day_means(env, TrainedPolicy(policy.model, "again", ""), [int(env.unwrapped.eval_days[0])])
    assert again["utility"] == pytest.approx(frame["utility"].iloc[-1], rel=1e-12)

    with pytest.raises(EvaluateError, match="not on scenario 'default'"):
        load_trained(run, "default")
    (run / "config.json").write_text(json.dumps({**cfg, "env_spec": {**cfg["env_spec"], "price_k": 2.0}}))
    with pytest.raises(EvaluateError, match="prices or actions changed"):
        load_trained(run, "tiny")
    (run / "config.json").write_text(json.dumps({k: v for k, v in cfg.items() if k != "env_spec"}))
    with pytest.raises(EvaluateError, match="no saved env_spec"):
        load_trained(run, "tiny")


def test_curves_prefer_eval_csv_and_fall_back_to_metrics(tmp_path):
    held, plain = (
        experiments.TrainJob(label, 0, EnvSpec("tiny"), 200, ()) for label in ("sac+diffusion", "sac")
    )
    for job in (held, plain):
        folder = job.run_dir(tmp_path)
        folder.mkdir(parents=True)
        metrics = {"step": [96, 192], "episode": [1, 2], "episode_return": [1.0, 2.0], "info/utility": [5.0, 6.0],
                   "violation_rate": [0.5, 0.4], "shaper/corr_hidden": [0.1, 0.2]}  # fmt: skip
        pd.DataFrame(metrics).to_csv(folder / "metrics.csv", index=False)
    evals = {"step": [100, 200], "days": [2, 2], "utility": [30.0, 31.0], "revenue": [31.0, 32.0],
             "energy_cost": [1.0, 1.0], "penalty": [0.0, 0.0], "transfer_cost": [0.0, 0.0],
             "violation_rate": [0.0, 0.1], "wall_s": [0.5, 0.5]}  # fmt: skip
    pd.DataFrame(evals).to_csv(held.run_dir(tmp_path) / "eval.csv", index=False)

    curves = experiments.curves_table([("base", held), ("base", plain)], tmp_path)
    h, p = curves[curves.policy == "sac+diffusion"], curves[curves.policy == "sac"]
    assert set(h.curve_source) == {"held-out"} and set(p.curve_source) == {"training"}
    assert h.step.tolist() == [100, 200] and h.utility.tolist() == [30.0, 31.0]
    assert h.episode.tolist() == [1, 2] and h.shaper_corr_hidden.tolist() == [0.1, 0.2]  # as of each step
    assert h.episode_return.isna().all()
    assert p.step.tolist() == [96, 192] and p.utility.tolist() == [5.0, 6.0]
    expected = {"policy", "seed", "step", "episode", "episode_return", "utility", "violation_rate", "setting"}
    assert expected <= set(curves.columns) and set(curves.setting) == {"base"}
    summary = experiments.convergence_summary(curves)
    assert len(summary) == 2 and np.isfinite(summary.utility).all()
