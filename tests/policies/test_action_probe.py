"""The action probe reports how a trained policy's own output moves over a day's slots: its rows must be what an
independent episode from reset gives, its dimension names where the twin puts each decision, its varying share 0
for a constant correction and 1 for one with no constant part, and bad input a one-line error."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from policies.action_probe import action_names, day_actions, main, probe_run, slot_load, summarise
from policies.critic_probe import DAY_SEED0, load_checkpoints, run_env
from policies.eval_callback import held_out_days
from policies.run_dir import RunDir

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def loaded(path):
    run = RunDir(path)
    cfg = run.load_config()
    env = run_env(run, cfg)
    return env, load_checkpoints(run, cfg, ["latest"], env)[0]


def test_action_names_follow_the_twins_layout(residual_run):
    env, _ = loaded(residual_run)
    twin = env.unwrapped
    names = action_names(twin)
    assert len(names) == twin.action_space.shape[0] == len(set(names))
    for i, dc in enumerate(twin.scenario.datacenters):
        assert names[twin.action_index("steps", i)] == f"steps@{dc.name}"
        assert names[twin.action_index("battery", i)] == f"battery@{dc.name}"
    assert all(n.startswith("transfer ") for n in names[: twin.action_index("steps", 0)])


def test_day_actions_are_the_policys_own_and_the_twins(residual_run):
    env, ckpt = loaded(residual_run)
    day = held_out_days(env, 1)[0]
    acts = day_actions(env, ckpt, day, DAY_SEED0)
    slots = env.unwrapped.scenario.slots_per_episode
    assert acts["own"].shape == acts["twin"].shape == acts["base"].shape == (slots, env.action_space.shape[0])
    assert acts["load"].shape == (slots,) and (acts["load"] >= 0).all() and acts["load"].max() > 0
    assert np.abs(acts["own"]).max() <= 1
    # the twin got the base heuristic's action plus the scaled correction, clipped to the box
    residual = ckpt.policy.residual
    expect = np.clip(acts["base"] + residual.scale * acts["own"], -1, 1)
    np.testing.assert_allclose(acts["twin"], expect, atol=1e-6)
    # an independent episode from reset with the same seed replays the same actions
    again = day_actions(env, ckpt, day, DAY_SEED0)
    np.testing.assert_array_equal(acts["own"], again["own"])


def test_slot_load_sums_the_sites_arrivals():
    from twin.env import OBS_PER_DC, obs_index

    obs = np.zeros(2 * OBS_PER_DC + 3)
    obs[obs_index("arrived")] = 0.25
    obs[OBS_PER_DC + obs_index("arrived")] = 0.5
    obs[obs_index("queued")] = 9.0  # queued images are not arrivals
    assert slot_load(obs, 2) == pytest.approx(0.75)


def test_rows_summarise_the_days_actions(residual_run, plain_run):
    rows = probe_run(residual_run, ["latest"], 1, progress=False)
    env, ckpt = loaded(residual_run)
    acts = day_actions(env, ckpt, held_out_days(env, 1)[0], DAY_SEED0)
    assert list(rows.dim) == action_names(env.unwrapped)
    np.testing.assert_allclose(rows.own_mean, acts["own"].mean(0))
    np.testing.assert_allclose(rows.own_sd, acts["own"].std(0))
    np.testing.assert_allclose(rows.base_sd, acts["base"].std(0))
    assert set(rows.reward) == {"settle=1"}  # tiny_run's reward is paid every slot
    plain = probe_run(plain_run, ["latest"], 1, progress=False)
    assert plain.base_sd.isna().all()  # no base heuristic
    np.testing.assert_allclose(plain.own_sd, plain.twin_sd, atol=1e-6)  # its own output is the twin's action


def synthetic(own_mean, own_sd):
    n = len(own_mean)
    return pd.DataFrame({
        "run": "r", "policy": "p", "checkpoint": "best", "step": 10, "day": "d", "dim": [f"x{i}" for i in range(n)],
        "own_mean": own_mean, "own_sd": own_sd, "twin_sd": 0.3, "base_sd": 0.2, "load_corr": np.linspace(-0.5, 0.2, n),
    })  # fmt: skip


def test_varying_share_is_zero_for_a_constant_correction_and_one_without_a_constant_part():
    assert summarise(synthetic([0.3, -0.2], [0.0, 0.0])).varying_share.item() == 0
    assert summarise(synthetic([0.0, 0.0], [0.1, 0.4])).varying_share.item() == 1
    half = summarise(synthetic([0.3, 0.0], [0.0, 0.3]))
    assert half.varying_share.item() == pytest.approx(0.5)
    assert half.mean_abs_own.item() == pytest.approx(0.15)
    assert half.max_abs_load_corr.item() == pytest.approx(0.5)
    # pooled over the dimensions (0.01 / 0.1), not the mean of per-dimension shares (0.5)
    assert summarise(synthetic([0.3, 0.0], [0.0, 0.1])).varying_share.item() == pytest.approx(0.1)
    # an ablated dimension (forced by the env) is left out
    rows = synthetic([0.3, 0.0], [0.0, 0.1]).assign(ablated=[False, True])
    assert summarise(rows).varying_share.item() == 0


def test_main_writes_csv_and_png_and_refuses_bad_input(residual_run, tmp_path, capsys):
    csv, png = tmp_path / "rows.csv", tmp_path / "probe.png"
    assert (
        main([str(residual_run), "--days", "1", "--csv", str(csv), "--png", str(png), "--no-progress"]) == 0
    )
    assert png.stat().st_size > 0
    assert len(pd.read_csv(csv)) == len(action_names(loaded(residual_run)[0].unwrapped))
    assert "varying_share" in capsys.readouterr().out
    for bad in ([str(tmp_path)], [str(residual_run), "--days", "100000"],
                [str(residual_run), "--checkpoints", "step_0000099999"]):  # fmt: skip
        assert main([*bad, "--no-progress"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "\n" not in err


def test_an_ablated_runs_forced_dimensions_are_flagged_and_the_twin_action_is_the_forced_one():
    from policies.action_probe import ablated
    from policies.experiment_env import RestrictedActions
    from twin.env import AIGCTwinEnv

    env = RestrictedActions(AIGCTwinEnv("tiny"), no_transfer=True, fixed_steps=None)
    names = action_names(env.unwrapped)
    flags = ablated(env, names)
    assert [n for n, f in zip(names, flags, strict=True) if f] == [
        n for n in names if n.startswith("transfer ")
    ]
    assert not any(ablated(env.unwrapped, names))
