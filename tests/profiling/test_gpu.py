"""On a CUDA machine only: the tiny pipeline through profiling.run with NVML energy windows (skipped elsewhere)."""

from __future__ import annotations

import pytest
import torch

from profiling.run import main
from traces.profile_schema import read_profile, read_sidecar

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


def test_tiny_on_cuda_measures_energy(tmp_path):
    pytest.importorskip("pynvml")
    out = tmp_path / "tiny.csv"
    argv = ["--model", "tiny", "--steps", "1,5", "--batch", "1,4", "--out", str(out), "--no-progress"]
    assert main([*argv, "--min-window-s", "1.5", "--idle-s", "1"]) == 0
    trace = read_profile(out)
    assert (trace["energy_window_j"] > 0).all() and (trace["idle_power_w"] > 0).all()
    assert trace["energy_check_rel"].notna().all() and trace["temperature_c_start"].notna().all()
    assert read_sidecar(out)["driver"]
