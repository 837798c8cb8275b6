"""scripts/gpu_sweep.sh: its budget and ordering logic against a stub python (fast), and a real tiny CPU run (slow)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from traces.profile_schema import read_profile

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "gpu_sweep.sh"
pytestmark = pytest.mark.skipif(not shutil.which("bash") or not shutil.which("timeout"), reason="needs bash")

STUB = """#!/usr/bin/env bash
# Stands in for python: records profiling.run calls, writes the --out file, fails for model 'broken'.
echo "$*" >> "$CALLS"
for a in "$@"; do [ "$prev" = --out ] && out=$a; [ "$prev" = --model ] && model=$a; prev=$a; done
[ -n "$out" ] && echo "stub" > "$out"
[ "$model" = broken ] && exit 3
exit 0
"""


def run_script(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    stub = tmp_path / "python"
    stub.write_text(STUB)
    stub.chmod(0o755)
    base = {
        "PATH": os.environ["PATH"],
        "PYTHON": str(stub),
        "CALLS": str(tmp_path / "calls.txt"),
        "OUT": str(tmp_path / "out"),
        "GPU_SWEEP_TRACE_DIR": str(tmp_path / "traces" / "h100"),
        "GPU_SWEEP_WHEELS": str(tmp_path / "no-wheels"),
        "GPU_SWEEP_DEVICE": "cpu",
    }
    return subprocess.run(
        ["bash", str(SCRIPT)], cwd=REPO, env={**base, **env}, capture_output=True, text=True
    )


def calls(tmp_path: Path) -> list[str]:
    return [c for c in (tmp_path / "calls.txt").read_text().splitlines() if "profiling.run" in c]


def test_eager_for_every_model_before_the_optimised_mode(tmp_path):
    proc = run_script(tmp_path, GPU_SWEEP_MODELS="m1 m2", GPU_SWEEP_MODES="eager compile")
    assert proc.returncode == 0, proc.stderr
    order = [(c.split("--model ")[1].split()[0], c.split("--mode ")[1].split()[0]) for c in calls(tmp_path)]
    assert order == [("m1", "eager"), ("m2", "eager"), ("m1", "compile"), ("m2", "compile")]
    first = calls(tmp_path)[0]
    assert "--weights random" in first and "--steps 1,2,5,10,20,25,30,40,42,50" in first
    assert "--batch 1,2,4,8" in first and "--allow-no-energy" in first and "--max-time-s" in first
    assert "--batch 1,2 " in calls(tmp_path)[2]  # compile mode: fewer shapes, each one a compilation
    with tarfile.open(tmp_path / "out" / "traces.tar.gz") as tar:
        assert {"h100/m1.csv", "h100/m2.csv"} <= set(tar.getnames())


def test_no_run_starts_once_the_budget_is_spent(tmp_path):
    proc = run_script(tmp_path, GPU_SWEEP_MODELS="m1", GPU_SWEEP_BUDGET_S="30", GPU_SWEEP_BUILD_S="45")
    assert proc.returncode == 0
    assert not (tmp_path / "calls.txt").exists() or not calls(tmp_path)
    assert "budget spent" in proc.stdout


def test_a_failed_model_does_not_stop_the_others_but_fails_the_script(tmp_path):
    proc = run_script(tmp_path, GPU_SWEEP_MODELS="broken m2", GPU_SWEEP_MODES="eager")
    assert proc.returncode == 1
    assert len(calls(tmp_path)) == 2 and "broken eager exited 3" in proc.stdout


@pytest.mark.slow
def test_real_tiny_sweep_on_cpu(tmp_path):
    env = {
        "PYTHON": sys.executable,
        "GPU_SWEEP_MODELS": "tiny",
        "GPU_SWEEP_MODES": "eager",
        "GPU_SWEEP_STEPS": "1,2",
        "GPU_SWEEP_BATCH": "1,2",
        "GPU_SWEEP_WINDOW_S": "0",
    }
    proc = run_script(tmp_path, **env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    trace = read_profile(tmp_path / "traces" / "h100" / "tiny.csv")
    assert len(trace) == 4 and set(trace["status"]) == {"ok"}
