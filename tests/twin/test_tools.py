"""The twin's tools: episode log, day plot and benchmark CLIs, and the no-torch import rule."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd

from tests.twin.conftest import FakeCard, synthetic_data
from twin import bench, plot_day
from twin.env import AIGCTwinEnv
from twin.episode_log import rollout


def test_episode_log_sums_match_info(tiny):
    env = AIGCTwinEnv(tiny, data=synthetic_data(tiny, 50), cards=[FakeCard(), FakeCard()])
    log = rollout(env, lambda obs: env.action_space.sample(), seed=3)
    frame = log.frame()
    assert len(frame) == env.slots
    assert np.isclose(frame["reward"].sum(), tiny.reward_scale * frame["utility"].sum())
    per_dc = frame[[f"utility__{d.name}" for d in tiny.datacenters]].sum(axis=1)
    np.testing.assert_allclose(per_dc, frame["utility"])


def test_plot_day_cli_writes_outputs(tmp_path, capsys):
    assert plot_day.main(["--scenario", "tiny", "--day", "2023-06-05", "--out", str(tmp_path)]) == 0
    for name in ("day.png", "episode.csv", "scenario.toml", "totals.json"):
        assert (tmp_path / name).stat().st_size > 0
    frame = pd.read_csv(tmp_path / "episode.csv")
    assert len(frame) == 96 and (frame["day"] == "2023-06-05").all()
    assert "utility" in capsys.readouterr().out


def test_cli_bad_input_is_one_line(capsys):
    assert plot_day.main(["--scenario", "no-such", "--out", "unused"]) == 2
    assert bench.main(["--scenario", "tiny", "--days", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("error:") for line in err)


def test_bench_runs_and_reports(capsys, tmp_path):
    assert bench.main(["--scenario", "tiny", "--days", "1", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "slots/s" in out and "jobs/s" in out
    assert (tmp_path / "bench.json").is_file() and (tmp_path / "scenario.toml").is_file()


def test_twin_imports_without_torch():
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import twin.env, twin.compute, twin.energy, twin.accounting, twin.exogenous, twin.bench, twin.episode_log\n"
        "assert 'torch' not in {m for m in sys.modules if sys.modules[m] is not None}"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_default_sizing_gives_meaningful_peak_utilisation():
    from twin.scenario import load_scenario
    from twin.sizing import sizing_table

    rows = sizing_table(load_scenario("default"))
    assert [r["model"] for r in rows] == ["sd-1.5", "sdxl", "sd3.5-medium"]
    for r in rows:
        assert 0.4 <= r["util_peak_hour"] <= 0.8, r
        assert sum(x["requests_per_day"] for x in rows) >= 1e5
