"""Tiny trained runs shared by the probes' tests (``policies.critic_probe``, ``policies.action_probe``)."""

from __future__ import annotations

import pytest


def tiny_run(tmp_path_factory, name: str, *extra: str):
    """A 120-step SAC run on the tiny twin with a per-slot reward (``extra``: more policies.train flags)."""
    pytest.importorskip("twin.env")
    from policies.train import main as train  # torch and SB3: only for the tests that train

    run = tmp_path_factory.mktemp("runs") / name
    args = ["--scenario", "tiny", "--reward-mode", "dense", "--shaping", "none", *extra, "--total-steps", "120",
            "--learning-starts", "48", "--batch-size", "32", "--net-width", "32", "--buffer-size", "2000",
            "--eval-every", "60", "--eval-days", "1", "--checkpoint-every", "60", "--no-progress",
            "--no-tensorboard", "--run-dir", str(run)]  # fmt: skip
    try:
        assert train(args) == 0
    except (OSError, ValueError):  # the twin's data or cards missing here
        pytest.skip("the twin cannot be built here")
    return run


@pytest.fixture(scope="module")
def residual_run(tmp_path_factory):
    return tiny_run(tmp_path_factory, "res", "--residual", "price-greedy", "--residual-scale", "0.5")


@pytest.fixture(scope="module")
def plain_run(tmp_path_factory):
    return tiny_run(tmp_path_factory, "plain")
