"""The critic probe compares a trained critic's change of Q under a one-notch move of one decision with the change
of the discounted return the twin pays: the twin side must equal two independent episodes from reset that differ
only in that slot's action, the critic side the critic evaluated directly, and bad input must be a one-line
error."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from policies.critic_probe import (
    DAY_SEED0,
    Move,
    critic_value,
    load_checkpoints,
    main,
    moved,
    run_env,
    summarise,
)
from policies.eval_callback import held_out_days
from policies.run_dir import RunDir
from tests.policies.conftest import tiny_run

pytestmark = pytest.mark.usefixtures("one_torch_thread")

STRIDE = 40


@pytest.fixture(scope="module")
def shaped_run(tmp_path_factory):
    """Residual SAC at gamma 0 with an itemising, meter-reading diffusion shaper, the tiny scenario's sparse reward."""
    return tiny_run(
        tmp_path_factory, "shaped", "--residual", "price-greedy", "--gamma", "0", "--reward-mode", "sparse",
        "--reward-mix", "redistribute", "--eta", "1", "--shaping", "diffusion",
        "--shaper-labels", "items", "--shaper-meters", "--shaper-hidden", "32", "--latent", "16", "--shaping-start", "60",
        "--shaper-fit-every", "30", "--shaper-updates", "2", "--shaper-periods", "4",
    )  # fmt: skip


def discounted_from(env, policy, day: int, seed: int, slot: int, override, gamma: float, draw=None) -> float:
    """The discounted return from ``slot`` of a whole episode from reset in which the policy acts
    deterministically up to ``slot``, where ``override(action)`` replaces the twin's action, and after it
    deterministically too, or, given a ``draw``, sampling with the torch seed ``draw`` set at ``slot``."""
    obs, _ = env.reset(seed=seed, options={"split": "eval", "day": day})
    policy.reset(env)
    t, ret, done = 0, 0.0, False
    scale = env.unwrapped.scenario.reward_scale
    while not done:
        policy.deterministic = draw is None or t <= slot
        action = policy.act(obs, env)
        if t == slot:
            action = override(action)
            if draw is not None:
                torch.manual_seed(draw)
        obs, _, terminated, truncated, info = env.step(action)
        if t >= slot:
            ret += gamma ** (t - slot) * scale * info["utility"]
        done, t = terminated or truncated, t + 1
    policy.deterministic = True
    return ret


@pytest.mark.parametrize("draws", [0, 2])
def test_the_twin_side_equals_independent_episodes(residual_run, tmp_path, capsys, draws):
    out = tmp_path / "probe.csv"
    argv = [str(residual_run), "--checkpoints", "latest", "--days", "2", "--stride", str(STRIDE)]
    argv += [
        "--stochastic",
        str(draws),
        "--no-progress",
        "--csv",
        str(out),
        "--png",
        str(tmp_path / "probe.png"),
    ]
    assert main(argv) == 0
    rows = pd.read_csv(out)
    assert (tmp_path / "probe.png").stat().st_size > 0 and "sign_agree" in capsys.readouterr().out
    assert set(rows.slot) == {0, STRIDE, 2 * STRIDE} and set(rows.dim) == {"steps", "battery"}
    assert rows.true_dg.abs().max() > 0  # moving a decision changes what the twin pays somewhere
    step_set = run_env(RunDir(residual_run), RunDir(residual_run).load_config()).unwrapped.step_set
    assert set(rows[rows.dim == "steps"].policy_value) <= set(step_set.tolist())
    assert rows[rows.dim == "battery"].policy_value.abs().max() <= 1

    run = RunDir(residual_run)
    cfg = run.load_config()
    env = run_env(run, cfg)
    (ckpt,) = load_checkpoints(run, cfg, ["latest"], env)
    days = held_out_days(env, 2)
    names = [d.name for d in env.unwrapped.scenario.datacenters]
    steps = rows[rows.dim == "steps"].iloc[-1]
    battery = rows[rows.dim == "battery"].iloc[0]
    for row in (steps, battery):
        m = Move(row.dim, names.index(row.site), 1 if row.direction == "up" else -1)
        i = days.index(int(row.day))
        twin = env.unwrapped

        def move(action, m=m, twin=twin):
            target = moved(twin, action, m)
            if m.kind == "steps":  # the next step count of the set, exactly
                notch = twin.decode_action(target).steps_index - twin.decode_action(action).steps_index
                assert notch.tolist() == [m.direction if s == m.site else 0 for s in range(twin.n_dc)]
            return target

        args = (env, ckpt.policy, int(row.day), DAY_SEED0 + i, int(row.slot))
        gained = [
            discounted_from(*args, move, cfg["gamma"], draw)
            - discounted_from(*args, lambda a: a, cfg["gamma"], draw)
            for draw in (range(draws) if draws else [None])
        ]
        assert row.true_dg == pytest.approx(np.mean(gained), rel=1e-9, abs=1e-12)


def test_the_critic_side_is_the_lower_critic(residual_run):
    run = RunDir(residual_run)
    cfg = run.load_config()
    (ckpt,) = load_checkpoints(run, cfg, ["latest"], run_env(run, cfg))
    model = ckpt.policy.model
    rng = np.random.default_rng(0)
    seen = rng.uniform(-1, 1, model.observation_space.shape).astype(np.float32)
    actions = rng.uniform(-1, 1, (4, *model.action_space.shape)).astype(np.float32)
    with torch.no_grad():
        q1, q2 = model.critic(torch.as_tensor(seen).repeat(4, 1), torch.as_tensor(actions))
    assert critic_value(ckpt.policy, seen, actions) == pytest.approx(torch.minimum(q1, q2).squeeze(1).numpy())


def test_probe_errors_are_one_line(residual_run, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "alien").mkdir()
    (tmp_path / "alien" / "config.json").write_text(json.dumps({"algo": "sac"}))
    cases = [
        ([str(tmp_path / "empty")], "not a run directory (no config.json)"),
        ([str(tmp_path / "alien")], "neither an env_spec in config.json nor a scenario.toml"),
        ([str(residual_run), "--checkpoints", "step_0000000007"], "no 'step_0000000007' checkpoint"),
        ([str(residual_run), "--checkpoints", "best"], "no 'best' checkpoint"),  # the run selects on none
        ([str(residual_run), "--dims", "steps,transfer"], "unknown --dims transfer"),
        ([str(residual_run), "--stride", "0"], "--stride must be >= 1"),
        ([str(residual_run), "--stochastic", "-1"], "--stochastic >= 0"),
        ([str(residual_run), "--days", "999"], "--days must be in 1.."),
    ]
    for argv, message in cases:
        assert main([*argv, "--no-progress"]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, err


def test_a_plain_run_is_probed_on_its_latest_checkpoint_by_default(plain_run, tmp_path):
    """A learner that acts alone (no residual): the critic's moved action is the twin's own; a run that does not
    select on validation days has no ``best`` and is probed on its latest checkpoint unless told otherwise."""
    out = tmp_path / "plain.csv"
    assert (
        main([str(plain_run), "--days", "1", "--stride", str(STRIDE), "--no-progress", "--csv", str(out)])
        == 0
    )
    rows = pd.read_csv(out)
    assert set(rows.checkpoint) == {"latest"} and set(rows.step) == {120}
    run = RunDir(plain_run)
    cfg = run.load_config()
    env = run_env(run, cfg)
    (ckpt,) = load_checkpoints(run, cfg, ["latest"], env)
    row = rows[rows.dim == "steps"].iloc[0]
    names = [d.name for d in env.unwrapped.scenario.datacenters]
    m = Move("steps", names.index(row.site), 1 if row.direction == "up" else -1)
    args = (env, ckpt.policy, int(row.day), DAY_SEED0, int(row.slot))
    gained = discounted_from(*args, lambda a: moved(env.unwrapped, a, m), cfg["gamma"]) - discounted_from(
        *args, lambda a: a, cfg["gamma"]
    )
    assert row.true_dg == pytest.approx(gained, rel=1e-9, abs=1e-12)


def test_a_shaped_run_has_its_shaper_ranked_against_the_slots_own_reward(shaped_run, tmp_path, capsys):
    """At gamma 0 the discounted return is the slot's own reward: ``true_dr`` must equal ``true_dg``; the shaper
    saved with the checkpoint (one output per settlement item) is the one scored."""
    out = tmp_path / "shaped.csv"
    argv = [str(shaped_run), "--days", "1", "--stride", str(STRIDE), "--no-progress", "--csv", str(out)]
    assert main(argv) == 0
    assert "shaper_sign_agree" in capsys.readouterr().out
    rows = pd.read_csv(out)
    assert np.isfinite(rows.shaper_dr).all() and rows.shaper_dr.abs().max() > 0
    assert np.allclose(rows.true_dr, rows.true_dg, rtol=0, atol=1e-12)
    run = RunDir(shaped_run)
    cfg = run.load_config()
    env = run_env(run, cfg)
    (ckpt,) = load_checkpoints(run, cfg, ["latest"], env)
    assert ckpt.shaper.items == len(env.unwrapped.settlement_items) and ckpt.shaper.fitted
    assert ckpt.shaper.meters == len(env.unwrapped.meter_names)  # r_hat read each move's own meter readings
    saved = torch.load(run.latest_checkpoint() / "shaper.pt", weights_only=False)["state"]
    assert torch.equal(ckpt.shaper.head.weight, saved["head.weight"])


def test_a_checkpoint_without_a_shaper_beside_one_with_it_summarises():
    """A run's best policy may be saved without its shaper while its latest checkpoint has one: the summary
    gives the shaper's agreement where there is one and NaN where not (it once crashed on the mix)."""
    rng = np.random.default_rng(0)
    rows = []
    for ckpt, step, shaped in (("best", 10, False), ("latest", 40, True)):
        for _ in range(6):
            true = rng.normal()
            rows.append({
                "checkpoint": ckpt, "step": step, "dim": "steps", "site": "a", "direction": "up",
                "policy_value": 20.0, "critic_dq": true, "true_dg": true, "true_dg_boot": true,
                "shaper_dr": -true if shaped else np.nan, "true_dr": true,
            })  # fmt: skip
    table = summarise(pd.DataFrame(rows)).set_index("checkpoint")
    assert table.loc["best"].shaper_sign_agree.isna().all()  # nothing to rank
    assert (table.loc["latest"].shaper_sign_agree == 0).all() and (table.loc["latest"].sign_agree == 1).all()
    unshaped = summarise(pd.DataFrame(rows).query("checkpoint == 'best'"))
    assert not any(c.startswith("shaper_") for c in unshaped)
