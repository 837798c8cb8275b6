"""Training smoke tests that really pass ``learning_starts``: SAC and TD3 with every shaping update their
networks and fit their shapers; the CLI writes config, metrics and checkpoints and resumes where it stopped."""

from __future__ import annotations

import dataclasses
import json

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest
import torch

from policies.agents import (
    DIFFUSION_SETTINGS,
    SHAPER_SETTINGS,
    AgentConfig,
    AgentError,
    ShaperCallback,
    build_agent,
    build_shaper,
    unused_settings,
)
from policies.delayed import SettlementWrapper
from policies.train import main

# One torch thread per test (fixture in tests/conftest.py).
pytestmark = pytest.mark.usefixtures("one_torch_thread")


# Tiny networks and short runs: the point is to exercise every code path, not to learn.
TINY = AgentConfig(
    buffer_size=2_000, learning_starts=48, batch_size=32, net_width=32, shaper_hidden=32, latent=16
)
STEPS = 120
CLI_SMALL = [
    "--learning-starts", "48", "--batch-size", "32", "--net-width", "32", "--shaper-hidden", "32",
    "--latent", "16", "--buffer-size", "2000", "--shaping-start", "60", "--shaper-fit-every", "30",
    "--shaper-updates", "2", "--shaper-periods", "8", "--no-progress", "--threads", "1",
]  # fmt: skip


def twin_tiny() -> gym.Env | None:
    """The twin's tiny scenario in sparse mode, or None where its data or cards are not available."""
    try:
        import twin.env  # noqa: F401

        return gym.make("AIGCTwin-v0", scenario="tiny", reward_mode="sparse")
    except (ImportError, OSError, ValueError):  # missing data/cards: the twin's errors are ValueErrors
        return None


def sparse_pendulum() -> gym.Env:
    """Stand-in with the twin's reward structure: Pendulum paid every 4 steps, 40-step episodes."""
    return SettlementWrapper(gym.make("Pendulum-v1", max_episode_steps=40), period=4)


@pytest.fixture(scope="module")
def env_cli_args() -> list[str]:
    """CLI options selecting the twin's tiny scenario (sparse), or the stand-in where the twin can't run."""
    env = twin_tiny()
    if env is not None:
        env.close()
        return ["--scenario", "tiny", "--reward-mode", "sparse"]
    return ["--env-id", "Pendulum-v1", "--settle-every", "4"]


def params(module: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten().clone() for p in module.parameters()])


@pytest.mark.parametrize("algo", ["sac", "td3"])
@pytest.mark.parametrize(
    "shaping",
    ["none", "diffusion", "mlp", "linear", "linear+diffusion", "linear+mlp", "potential", "perfect"],
)
def test_agents_update_and_shapers_fit(algo, shaping):
    env = twin_tiny() or sparse_pendulum()
    model, shaper = build_agent(algo, env, shaping, TINY, seed=0)
    actor0, critic0 = params(model.actor), params(model.critic)
    callbacks = []
    if shaper is not None:
        callbacks = [ShaperCallback(shaper, start=60, fit_every=30, updates=2, periods=8)]
    model.learn(STEPS, callback=callbacks)
    assert model.num_timesteps == STEPS > TINY.learning_starts
    assert model._n_updates > 0
    assert not torch.equal(params(model.critic), critic0)
    assert not torch.equal(params(model.actor), actor0)
    if shaper is not None:
        cb = callbacks[0]
        bounded = (
            float(shaper.bound) > 0 or shaper.reads_hidden or shaper.kind == "linear"
        )  # linear: unbounded
        assert cb.n_fits >= 2 and shaper.fitted and bounded
        assert model.replay_buffer.shaping_enabled
        assert np.isfinite(cb.last["loss"])
        if shaping.startswith("linear+"):  # the anchor's exact fit, then the residual's gradient steps
            assert np.isfinite(cb.last["anchor_loss"]) and shaper.residual.bound > 0
    env.close()


@pytest.mark.parametrize("shaping", ["none", "diffusion"])
def test_redistributed_training_samples_rewards_that_keep_each_settled_amount(shaping):
    env = sparse_pendulum()  # settles every 4 steps
    model, shaper = build_agent(
        "sac", env, shaping, dataclasses.replace(TINY, reward_mix="redistribute"), seed=0
    )
    callbacks = [ShaperCallback(shaper, start=60, fit_every=30, updates=2, periods=8)] if shaper else []
    model.learn(STEPS, callback=callbacks)
    buffer = model.replay_buffer
    assert buffer.mix == "redistribute" and model._n_updates > 0
    if shaper is not None:  # the period sums of the term were refreshed after the fits
        assert buffer.shaping_enabled and np.any(buffer.period_term[:STEPS, 0] != 0)
        buffer.shaping_enabled = (
            False  # the uniform spread below; with the shaper it is checked in test_shapers
        )
    rewards = buffer._get_samples(np.arange(STEPS)).rewards.reshape(-1, 4).numpy()
    settled = buffer.rewards[:STEPS, 0].reshape(-1, 4).sum(axis=1)
    assert np.allclose(rewards.sum(axis=1), settled, rtol=1e-4) and np.allclose(rewards, rewards[:, :1])
    env.close()


def test_a_decaying_eta_fades_to_zero_and_the_shaper_stops_fitting():
    env = sparse_pendulum()
    cfg = dataclasses.replace(TINY, reward_mix="redistribute", shaping_start=60, eta_decay_steps=40)
    model, shaper = build_agent("sac", env, "mlp", cfg, seed=0)
    cb = ShaperCallback(shaper, cfg, fit_every=10, updates=1, periods=4)
    assert [cb.eta_at(s) for s in (0, 60, 70, 90, 100, 500)] == pytest.approx([0.4, 0.4, 0.3, 0.1, 0.0, 0.0])
    model.learn(STEPS, callback=[cb])
    assert model.replay_buffer.eta == 0.0 and cb.last["eta"] > 0  # the last fit came before the fade ended
    assert cb.last_fit_step < 100 and cb.n_fits >= 3  # fits every 10 steps until step 100, none after
    env.close()


@pytest.mark.parametrize(("ent_coef", "start"), [("auto", 1.0), ("auto_0.1", 0.1), ("0.05", 0.05)])
def test_sac_entropy_coefficient_starts_where_asked(ent_coef, start):
    env = sparse_pendulum()
    model, _ = build_agent("sac", env, "none", dataclasses.replace(TINY, ent_coef=ent_coef), seed=0)
    assert (model.log_ent_coef is None) == (not ent_coef.startswith("auto"))  # learned or fixed, as asked
    if model.log_ent_coef is None:
        assert float(model.ent_coef_tensor) == pytest.approx(start)
    else:
        assert float(model.log_ent_coef.exp()) == pytest.approx(start)
    env.close()


def test_cli_trains_checkpoints_and_resumes(tmp_path, env_cli_args, capsys):
    run = tmp_path / "run"
    base = [*env_cli_args, "--algo", "sac", "--shaping", "diffusion", "--run-dir", str(run), *CLI_SMALL]
    assert main([*base, "--total-steps", "96", "--checkpoint-every", "48"]) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["shaping"] == "diffusion" and config["total_steps"] == 96
    assert (run / "checkpoints" / "latest").read_text().strip() == "step_0000000096"
    ckpt = run / "checkpoints" / "step_0000000096"
    assert {p.name for p in ckpt.iterdir()} >= {"model.zip", "replay_buffer.pkl", "shaper.pt", "rng.pkl"}
    state = json.loads((ckpt / "state.json").read_text())
    assert state["step"] == 96 and state["shaper_fits"] >= 1

    assert main(["--resume", "--run-dir", str(run), "--total-steps", "144", "--no-progress"]) == 0
    latest = run / "checkpoints" / "step_0000000144"
    assert json.loads((latest / "state.json").read_text())["step"] == 144
    from stable_baselines3 import SAC

    model = SAC.load(latest / "model.zip", device="cpu")
    model.load_replay_buffer(latest / "replay_buffer.pkl")
    assert model.num_timesteps == 144
    assert model.replay_buffer.pos == 144  # the buffer continued, it was not refilled from scratch
    assert model.replay_buffer.shaper is None  # never pickled
    metrics = pd.read_csv(run / "metrics.csv")
    assert metrics["step"].is_monotonic_increasing and metrics["step"].max() <= 144
    assert {"episode_return", "losses/critic_loss", "shaper/corr_hidden"} <= set(metrics.columns)
    assert len(list((run / "checkpoints").glob("step_*"))) <= 2  # older ones pruned


def test_itemised_shaper_trains_checkpoints_and_resumes(tmp_path, env_cli_args):
    if "--scenario" not in env_cli_args:
        pytest.skip("the twin's tiny scenario is not available: only the twin itemises its settlements")
    run = tmp_path / "run"
    base = [*env_cli_args, "--algo", "sac", "--shaping", "diffusion", "--shaper-labels", "items"]
    assert (
        main([*base, "--run-dir", str(run), *CLI_SMALL, "--total-steps", "96", "--checkpoint-every", "48"])
        == 0
    )
    assert main(["--resume", "--run-dir", str(run), "--total-steps", "144", "--no-progress"]) == 0
    saved = torch.load(run / "checkpoints" / "step_0000000144" / "shaper.pt", weights_only=False)
    items = len(twin_tiny().unwrapped.settlement_items)
    assert saved["state"]["head.weight"].shape == (items, 16)  # one output per item, restored as built
    assert saved["state"]["n_updates"] > 0 and saved["state"]["bound"] > 0
    metrics = pd.read_csv(run / "metrics.csv")
    assert np.isfinite(metrics["shaper/loss"].dropna()).all() and metrics["shaper/loss"].notna().any()


def test_itemised_labels_need_a_learned_shaper_and_an_itemising_env():
    with pytest.raises(AgentError, match="itemises its settlements"):
        build_agent("sac", sparse_pendulum(), "mlp", dataclasses.replace(TINY, shaper_labels="items"), seed=0)
    with pytest.raises(AgentError, match="reports meter readings"):
        build_agent("sac", sparse_pendulum(), "mlp", dataclasses.replace(TINY, shaper_meters=True), seed=0)
    with pytest.raises(AgentError, match="--shaper-meters needs a diffusion, mlp or linear shaper"):
        build_shaper("perfect", 3, 2, dataclasses.replace(TINY, shaper_meters=True), 1, 4)
    with pytest.raises(AgentError, match="need a diffusion or mlp shaper"):
        build_shaper("potential", 3, 2, dataclasses.replace(TINY, shaper_labels="items"), 4)
    with pytest.raises(AgentError, match="linear\\+mlp shaper fits the settled amount"):
        build_shaper("linear+mlp", 3, 2, dataclasses.replace(TINY, shaper_labels="items"), 4)
    _, shaper = build_agent(
        "sac", sparse_pendulum(), "none", dataclasses.replace(TINY, shaper_labels="items"), seed=0
    )
    assert shaper is None  # no shaper, nothing itemised to fit: the setting is unused


def test_a_run_without_tensorboard_leaves_no_logger_folder_and_still_logs_its_losses(
    tmp_path, env_cli_args, monkeypatch
):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where SB3 would make its SB3-<time> folders
    run = tmp_path / "run"
    base = [*env_cli_args, "--algo", "sac", "--shaping", "none", "--run-dir", str(run), "--no-tensorboard"]
    assert main([*base, *CLI_SMALL, "--total-steps", "96", "--checkpoint-every", "48"]) == 0
    assert main(["--resume", "--run-dir", str(run), "--total-steps", "144", "--no-progress"]) == 0
    assert not list(tmp_path.glob("SB3-*")) and not (run / "tb").exists()
    metrics = pd.read_csv(run / "metrics.csv")
    assert metrics["losses/critic_loss"].notna().any()
    assert (run / "checkpoints" / "latest").read_text().strip() == "step_0000000144"  # the resume trained too


def test_bad_input_is_one_line(tmp_path, capsys):
    cases = [
        (["--algo", "ppo"], "unknown algorithm"),
        (["--shaping", "magic"], "unknown shaping"),
        (["--ent-coef", "auto_x"], "entropy coefficient must be"),
        (["--eta-decay-steps", "-1"], "--eta-decay-steps must be >= 0"),
        (["--shaper-labels", "bills"], "unknown shaper labels"),
        (["--gamma", "1.5"], "--gamma must be a discount in [0, 1]"),
        (["--resume"], "--resume needs --run-dir"),
        (["--resume", "--run-dir", str(tmp_path)], "no config.json"),
    ]
    for argv, message in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1


def test_unknown_scenario_is_one_line(capsys):
    if twin_tiny() is None:
        pytest.skip("the twin cannot be built here (data or cards missing)")
    assert main(["--scenario", "atlantis", "--no-progress", "--total-steps", "10"]) == 2
    err = capsys.readouterr().err.strip()
    assert "atlantis" in err and len(err.splitlines()) == 1


def test_resume_without_checkpoint_is_one_line(tmp_path, capsys):
    (tmp_path / "config.json").write_text(json.dumps({"algo": "sac"}))
    assert main(["--resume", "--run-dir", str(tmp_path)]) == 2
    assert "no checkpoint" in capsys.readouterr().err
    assert main(["--run-dir", str(tmp_path)]) == 2  # a new run never overwrites an old one
    assert "already holds a run" in capsys.readouterr().err


def test_help_lists_field_docs(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "denoising steps W" in out and "--shaping-start" in out


def test_an_anchored_shaper_reads_the_diffusion_settings_only_with_a_diffusion_residual():
    assert set(DIFFUSION_SETTINGS) <= unused_settings("sac", "linear+mlp")
    assert not set(DIFFUSION_SETTINGS) & unused_settings("sac", "linear+diffusion")
    assert not set(SHAPER_SETTINGS) & unused_settings("sac", "linear+mlp")
