"""The tilted training distribution (``--train-load``): training resets draw a load in [1, high] and the twin's
arrivals follow it; evaluation resets keep the day's own load; the CLI records it and rejects bad values."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from policies.train import main
from policies.train_load import TrainLoad, TrainLoadError
from tests.policies.test_train import CLI_SMALL, twin_tiny

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def tiny():
    env = twin_tiny()
    if env is None:
        pytest.skip("the twin cannot be built here (data or cards missing)")
    yield env
    env.close()


def test_training_resets_are_tilted_and_evaluation_resets_are_not(tiny):
    env = TrainLoad(tiny, high=4.0, seed=0)
    loads, arrived = [], []
    for s in range(40):
        _, info = env.reset(seed=s)
        loads.append(info["load"])
        arrived.append(env.unwrapped.exogenous()["arrivals"].sum() / info["load"])
    loads = np.array(loads)
    assert ((loads >= 1.0) & (loads <= 4.0)).all() and loads.std() > 0
    assert np.mean(np.log(loads)) == pytest.approx(
        math.log(4.0) / 2, abs=0.2
    )  # log-uniform: the middle in log
    plain = []
    for s in range(40):
        tiny.reset(seed=s)
        plain.append(tiny.unwrapped.exogenous()["arrivals"].sum())
    assert np.mean(arrived) == pytest.approx(
        np.mean(plain), rel=0.15
    )  # arrivals / load: the days as they come
    day = tiny.unwrapped.data.days[tiny.unwrapped.eval_days[0]]
    for options in ({"split": "eval"}, {"day": day}, {"split": "eval", "day": day}):
        assert env.reset(seed=1, options=options)[1]["load"] == 1.0
    assert env.reset(seed=1, options={"load": 2.5})[1]["load"] == 2.5  # a named load is passed on as is
    again = TrainLoad(tiny, high=4.0, seed=0)
    assert [again.reset(seed=s)[1]["load"] for s in range(5)] == pytest.approx(loads[:5].tolist())  # seeded
    with pytest.raises(TrainLoadError, match=">= 1"):
        TrainLoad(tiny, high=0.5, seed=0)


def test_cli_records_the_load_and_rejects_bad_values(tmp_path, tiny, capsys):
    run = tmp_path / "run"
    base = ["--scenario", "tiny", "--reward-mode", "sparse", "--shaping", "none", *CLI_SMALL]
    assert main([*base, "--train-load", "3", "--run-dir", str(run), "--total-steps", "96"]) == 0
    assert json.loads((run / "config.json").read_text())["train_load"] == 3.0
    cases = [
        ([*base, "--train-load", "0.5", "--run-dir", str(tmp_path / "a")], "--train-load: "),
        ([*base, "--train-load", "nan", "--run-dir", str(tmp_path / "b")], "--train-load: "),
        (["--env-id", "Pendulum-v1", "--train-load", "2", *CLI_SMALL, "--run-dir", str(tmp_path / "c")],
         "--train-load scales the twin's arrivals"),
        (["--resume", "--run-dir", str(run), "--train-load", "2", "--total-steps", "144"], "cannot resume"),
    ]  # fmt: skip
    for argv, message in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1
