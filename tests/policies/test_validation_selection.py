"""Checkpoint selection on validation days (``--val-days``): the days are training days apart from the held-out
ones, the policy kept is the one best on them and is what the evaluators load, checkpoints carry it so a resume
selects as an uninterrupted run would, and bad input is one line."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from policies import critic_probe, eval_callback, experiments, report
from policies.eval_callback import DAY_SEED0, VAL_SEED0, day_means, validation_days
from policies.evaluate import TrainedPolicy, load_trained
from policies.experiment_env import EnvSpec, make_env, register
from policies.run_dir import SHAPER_FILE, RunDir, RunDirError, checkpoint_step, publish_dir
from policies.train import Args, main, train

from .test_eval_callback import twin_or_skip

pytestmark = pytest.mark.usefixtures("one_torch_thread")

JOB = experiments.TrainJob("sac", 0, EnvSpec("tiny"), 120, (("val_days", 2),))


def args(run, total: int = 120) -> Args:
    return Args(algo="sac", shaping="none", env_id=register(EnvSpec("tiny")), total_steps=total,
                learning_starts=30, batch_size=16, net_width=16, buffer_size=500, eval_every=20, eval_days=1,
                val_days=2, checkpoint_every=50, keep_checkpoints=5, run_dir=str(run), progress=False,
                tensorboard=False)  # fmt: skip


@pytest.fixture(scope="module")
def selected(tmp_path_factory):
    """A tiny-scenario run of 120 steps evaluated every 20 on one held-out and two validation days, in the
    folder the experiments give its ``TrainJob``."""
    twin_or_skip()
    root = tmp_path_factory.mktemp("runs")
    train(args(JOB.run_dir(root)))
    return root


def best_of(frame: pd.DataFrame) -> pd.Series:
    return frame.loc[frame.val_utility.idxmax()]  # the first of equal maxima, as ``>`` keeps it


def test_validation_days_are_training_days_spread_over_the_year():
    u = twin_or_skip().unwrapped
    days = validation_days(u, 4)
    train_days = [int(d) for d in u.train_days]
    assert len(set(days)) == 4 and set(days) <= set(train_days)
    assert not set(days) & {int(d) for d in u.eval_days}
    assert days == sorted(days) and train_days[0] not in days and train_days[-1] not in days
    with pytest.raises(ValueError, match="--val-days must be in"):
        validation_days(u, len(train_days) + 1)


def test_the_kept_policy_is_the_best_on_validation_days_and_the_evaluators_load_it(selected, capsys):
    run = RunDir(JOB.run_dir(selected))
    frame = pd.read_csv(run.eval_path)
    assert frame.step.tolist() == [0, 20, 40, 60, 80, 100, 120] and (frame.val_days == 2).all()
    assert frame.val_utility.nunique() > 1  # the policy changed (which step wins: the scripted test below)
    improved = frame.val_utility > frame.val_utility.cummax().shift(fill_value=-np.inf)
    assert frame.val_best.tolist() == improved.tolist()
    best = best_of(frame)
    model_zip, step = run.policy_model()
    assert model_zip == run.best / "model.zip" and step == best.step

    policy = load_trained(run.path, "tiny")  # the selected policy, not the last
    assert policy.step == best.step
    assert capsys.readouterr().err == (
        f"{run.path.name}: evaluating its policy best on validation days, saved at step {best.step}\n"
    )
    env = make_env(EnvSpec("tiny"))
    again = day_means(env, TrainedPolicy(policy.model, "again", ""), validation_days(env, 2), seed0=VAL_SEED0)
    assert again["utility"] == pytest.approx(best.val_utility, rel=1e-12)

    job = experiments.EvalJob("sparsity", "x", "sac", 0, JOB.spec, (), (), JOB)
    policy_obj, job_step = experiments.make_policy(job, selected)
    assert job_step == best.step and isinstance(policy_obj, TrainedPolicy)


def test_the_deployed_policy_curve_follows_the_callbacks_choice_and_ends_at_the_kept_policy(selected):
    run = RunDir(JOB.run_dir(selected))
    frame = pd.read_csv(run.eval_path).assign(setting="s", policy="sac", seed=0)
    chosen = report.chosen_curves(frame)
    assert chosen.step.tolist() == frame.step.tolist()
    kept = None
    for (_, row), deployed in zip(frame.iterrows(), chosen.utility, strict=True):
        kept = row.utility if row.val_best else kept  # what the callback saved to best/ by this step
        assert deployed == kept
    assert chosen.utility.iloc[-1] == best_of(frame).utility


class Scripted:
    """``day_means`` with the validation utility of the k-th evaluation taken from a script (the held-out days'
    numbers are the real ones): a tiny run's validation utility rises almost monotonically, which would
    leave the choice to the last step."""

    def __init__(self, script: list[float]):
        self.script, self.calls = list(script), 0

    def __call__(self, env, policy, days, seed0=DAY_SEED0):
        means = day_means(env, policy, days, seed0)
        if seed0 == VAL_SEED0:
            means["utility"] = self.script[self.calls]
            self.calls += 1
        return means


def test_the_choice_follows_validation_and_checkpoints_carry_it_through_a_resume(tmp_path, monkeypatch):
    twin_or_skip()
    run = RunDir(tmp_path / "run")
    # evaluations at 0, 20, ..., 120, then 140 and 160 after the resume; checkpoints at 50, 100 and 120
    monkeypatch.setattr(eval_callback, "day_means", Scripted([1, 3, 2, 5, 4, 6, 0, 4.5, 5.8]))
    train(args(run.path))
    frame = pd.read_csv(run.eval_path)
    assert frame.val_best.tolist() == [True, True, False, True, False, True, False]
    assert run.policy_model()[1] == 100
    deployed = report.chosen_curves(frame.assign(setting="s", policy="sac", seed=0)).utility.tolist()
    kept = frame.utility.where(
        frame.val_best
    ).ffill()  # the held-out utility of the policy saved by each step
    assert deployed == kept.tolist() and deployed != frame.utility.tolist()
    chosen = {
        checkpoint_step(c): json.loads((c / "best" / "state.json").read_text()) for c in run.checkpoint_dirs()
    }
    assert {k: v["step"] for k, v in chosen.items()} == {
        50: 20,
        100: 100,
        120: 100,
    }  # step 100: evaluated, then saved
    assert chosen[120]["val_utility"] == 6

    # a better policy kept after the last checkpoint by a run that then died: the resume puts the checkpoint's
    # back, and goes on comparing with its utility (6), not with the lost one's nor from scratch
    (run.best / "state.json").write_text(json.dumps({"step": 999, "val_utility": 1e9}))
    train(dataclasses.replace(args(run.path, total=160), resume=True))
    after = pd.read_csv(run.eval_path)
    assert after.step.tolist()[-2:] == [140, 160] and not after.val_best.iloc[-2:].any()
    assert run.policy_model()[1] == 100


def test_a_run_without_selection_evaluates_its_last_checkpoint(tmp_path):
    twin_or_skip()
    run = RunDir(tmp_path / "run")
    train(dataclasses.replace(args(run.path, total=60), val_days=0))
    assert not run.best.exists()
    model_zip, step = run.policy_model()
    assert step == 60 and model_zip.parent.name == "step_0000000060"
    cfg = run.load_config()
    run.save_config({**cfg, "val_days": 2})  # claims selection, has no best/
    with pytest.raises(RunDirError, match="no best/"):
        run.policy_model()


def test_a_fresh_run_ignores_a_leftover_choice_and_a_resume_needs_the_checkpoints(tmp_path, capsys):
    twin_or_skip()
    run = RunDir(tmp_path / "run")
    run.best.mkdir(parents=True)
    (run.best / "state.json").write_text(json.dumps({"step": 999, "val_utility": 1e9}))
    train(args(run.path, total=60))
    assert run.policy_model()[1] <= 60 and pd.read_csv(run.eval_path).val_best.iloc[0]
    for ckpt in run.checkpoint_dirs():  # a checkpoint without the choice (no code writes one)
        shutil.rmtree(ckpt / "best")
    argv = ["--resume", "--run-dir", str(run.path), "--total-steps", "80", "--no-progress"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "holds no best/" in err and len(err.splitlines()) == 1


def test_bad_selection_input_is_one_line(tmp_path, capsys):
    twin_or_skip()
    cases = [
        (["--val-days", "2"], "--val-days needs --eval-every"),
        (["--val-days", "-1", "--eval-every", "10"], "--val-days must be >= 0"),
        (["--scenario", "tiny", "--val-days", "99999", "--eval-every", "10"], "--val-days must be in"),
    ]
    for argv, message in cases:
        assert main([*argv, "--run-dir", str(tmp_path / "run"), "--no-progress"]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1
    with pytest.raises(experiments.ExperimentError, match="--val-days needs --eval-every"):
        experiments.parse_train_settings(["val_days=2"])
    assert experiments.parse_train_settings(["val_days=2"], {"eval_every": 100}) == {"val_days": 2}
    # back to the default where the budget sets it (--full selects): kept, so that it overrides the budget's
    assert experiments.parse_train_settings(["val_days=0"], {"eval_every": 100, "val_days": 6}) == {
        "val_days": 0
    }
    assert experiments.parse_train_settings(["val_days=0"], {"eval_every": 100}) == {}


def test_publish_dir_keeps_the_old_copy_when_writing_fails(tmp_path):
    final = tmp_path / "best"
    publish_dir(final, lambda folder: (folder / "model.zip").write_text("old"))

    def fail(folder):
        (folder / "model.zip").write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        publish_dir(final, fail)
    assert (final / "model.zip").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["best"]  # no temporary folder left behind


def test_the_best_policy_keeps_the_shaper_it_was_trained_with(tmp_path):
    """``best/`` holds the shaper as it was at the chosen policy, which the critic probe loads there."""
    twin_or_skip()
    run = RunDir(tmp_path / "run")
    shaped = dataclasses.replace(
        args(run.path), shaping="linear+mlp", reward_mode="sparse", shaping_start=40, shaper_fit_every=20,
        shaper_updates=2, shaper_periods=4,
    )  # fmt: skip
    train(shaped)
    saved = torch.load(run.best / SHAPER_FILE, weights_only=False)["state"]
    latest = torch.load(run.latest_checkpoint() / SHAPER_FILE, weights_only=False)["state"]
    assert set(saved) == set(latest) and int(saved["n_updates"]) <= int(latest["n_updates"])
    cfg = run.load_config()
    best, last = critic_probe.load_checkpoints(run, cfg, ["best", "latest"], critic_probe.run_env(run, cfg))
    assert best.shaper is not None and best.shaper.kind == "linear+mlp" and last.shaper is not None
    assert torch.equal(best.shaper.anchor.weight, saved["anchor.weight"])
