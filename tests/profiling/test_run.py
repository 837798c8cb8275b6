"""`python -m profiling.run` end to end with the tiny pipeline on CPU: trace, sidecar, resume, --force, OOM,
CLIP scores for pretrained weights, and every error path as one line on stderr with a non-zero exit."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

import profiling.sweep
from profiling.run import gpu_slug, main, parse_int_list
from traces.profile_schema import KEY_COLUMNS, Provenance, read_profile, read_sidecar, sidecar_path
from traces.revision import code_revision

REPO = Path(__file__).resolve().parents[2]
FAST = ["--min-window-s", "0", "--min-repeats", "1", "--warmup", "1", "--idle-s", "0", "--no-progress"]


def run_tiny(out: Path, *extra: str, steps: str = "1,2", batch: str = "1,2") -> int:
    argv = ["--model", "tiny", "--device", "cpu", "--allow-no-energy", "--steps", steps, "--batch", batch]
    return main([*argv, "--out", str(out), *FAST, *extra])


def test_tiny_run_writes_a_valid_trace_and_sidecar(tmp_path, capsys):
    out = tmp_path / "tiny.csv"
    assert run_tiny(out) == 0
    trace = read_profile(out)
    assert len(trace) == 4 and set(trace["status"]) == {"ok"}
    assert sorted(zip(trace["steps"], trace["batch"], strict=True)) == [(1, 1), (1, 2), (2, 1), (2, 2)]
    assert (trace["n_images"] == trace["n_batches"] * trace["batch"]).all()
    assert (trace["latency_batch_mean_s"] > 0).all()
    per_image = trace["latency_batch_mean_s"] / trace["batch"]
    assert (trace["latency_image_mean_s"] - per_image).abs().max() < 1e-12
    energy_cols = ["energy_window_j", "energy_image_j", "energy_image_net_j", "power_mean_w", "idle_power_w"]
    assert trace[energy_cols].isna().all().all()  # not measured: empty, never 0
    assert trace["clip_score_mean"].isna().all()  # random weights carry no quality
    assert trace["weights"].str.startswith("random-init:").all()
    assert set(trace["resolution"]) == {32} and set(trace["scheduler"]) == {"PNDMScheduler"}
    meta = read_sidecar(out)
    assert set(Provenance.__dataclass_fields__) <= set(meta)
    assert meta["weights"].startswith("random-init:") and meta["dtype"] == "float32"
    assert 0.5e6 < sum(meta["parameters"].values()) < 2e6  # "about a million parameters"
    assert (
        meta["code_revision"] == meta["runs"][-1]["code_revision"] == code_revision()
    )  # which code measured
    assert "steps" in capsys.readouterr().out  # the summary table


def test_rerun_resumes_and_force_remeasures(tmp_path, capsys):
    out = tmp_path / "tiny.csv"
    assert run_tiny(out, steps="1", batch="1") == 0
    first = read_profile(out)
    capsys.readouterr()
    assert run_tiny(out, steps="1", batch="1,2") == 0  # one old point, one new
    assert "1 point(s) measured" in capsys.readouterr().out
    second = read_profile(out)
    old = second[(second["batch"] == 1)].iloc[0]
    assert old["latency_batch_mean_s"] == first.iloc[0]["latency_batch_mean_s"]  # kept, not re-measured
    assert run_tiny(out, "--force", steps="1", batch="1,2") == 0
    assert "2 point(s) measured" in capsys.readouterr().out
    third = read_profile(out)
    assert len(third) == 2 and not third.duplicated(list(KEY_COLUMNS)).any()
    assert len(json.loads(sidecar_path(out).read_text())["runs"]) == 3


def test_out_of_memory_is_recorded_and_larger_batches_skipped(tmp_path, monkeypatch):
    real_call = profiling.sweep.Generator.__call__

    def call(self, steps, batch):
        if batch >= 4:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real_call(self, steps, batch)

    monkeypatch.setattr(profiling.sweep.Generator, "__call__", call)
    out = tmp_path / "tiny.csv"
    assert run_tiny(out, steps="1,2", batch="1,4,8") == 0
    status = read_profile(out).set_index(["steps", "batch"])["status"].to_dict()
    assert status == {
        (1, 1): "ok",
        (1, 4): "oom",
        (1, 8): "skipped-oom",
        (2, 1): "ok",
        (2, 4): "oom",
        (2, 8): "skipped-oom",
    }


def test_pretrained_weights_get_a_clip_score(tmp_path, tiny_pipeline_dir, tiny_clip_dir):
    out = tmp_path / "tiny.csv"
    extra = [
        "--weights",
        "pretrained",
        "--model-path",
        str(tiny_pipeline_dir),
        "--clip-model",
        str(tiny_clip_dir),
    ]
    assert run_tiny(out, *extra, "--clip-images", "2", steps="1", batch="2") == 0
    row = read_profile(out).iloc[0]
    assert row["weights"] == f"pretrained:{tiny_pipeline_dir}"
    assert not pd.isna(row["clip_score_mean"]) and not pd.isna(row["clip_score_std"])
    assert row["clip_model"] == str(tiny_clip_dir)


def test_inconsistent_rerun_is_refused(tmp_path, capsys):
    out = tmp_path / "tiny.csv"
    assert run_tiny(out, steps="1", batch="1") == 0
    meta = json.loads(sidecar_path(out).read_text())
    sidecar_path(out).write_text(json.dumps({**meta, "dtype": "float16"}))
    capsys.readouterr()
    assert run_tiny(out, steps="1", batch="1") == 2
    assert "dtype" in capsys.readouterr().err


def error_line(capsys, argv: list[str]) -> str:
    """Run main, check exit code 2 and a single stderr line, return it."""
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("profiling.run: error:"), err
    return err


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--model", "sd-9"], "known: sd-1.5, sd-2.1, sdxl, sd3.5-medium, sd-turbo, sdxl-turbo, tiny"),
        (["--model", "tiny", "--steps", "1,,2"], "--steps"),
        (["--model", "tiny", "--steps", "0,1"], "--steps"),
        (["--model", "tiny", "--batch", "two"], "--batch"),
        (["--model", "tiny", "--device", "cpu"], "--allow-no-energy"),
        (
            ["--model", "tiny", "--device", "cpu", "--allow-no-energy", "--weights", "pretrained"],
            "--weights random",
        ),
        (
            ["--model", "tiny", "--device", "cpu", "--allow-no-energy", "--prompts", "/nonexistent.txt"],
            "prompt",
        ),
        (["--model", "tiny", "--min-repeats", "0"], "--min-repeats"),
        (
            ["--model", "tiny", "--device", "cpu", "--allow-no-energy", "--scheduler", "Nope"],
            "unknown scheduler",
        ),
    ],
)
def test_bad_input_is_one_line_and_exit_2(capsys, argv, expected):
    assert expected in error_line(capsys, argv)


def test_no_gpu_for_a_real_model(capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert "pass --device cpu" in error_line(capsys, ["--model", "sd-1.5", "--weights", "random"])


def test_nvml_unavailable_without_allow_no_energy(capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setitem(sys.modules, "pynvml", None)
    assert "--allow-no-energy" in error_line(capsys, ["--model", "tiny", "--weights", "random"])


def test_absent_pretrained_weights_offline(capsys):
    err = error_line(capsys, ["--model", "sd-1.5", "--device", "cpu", "--allow-no-energy"])
    assert "--model-path" in err and "--weights random" in err


def test_cli_subprocess_exit_code_and_no_traceback():
    proc = subprocess.run(
        [sys.executable, "-m", "profiling.run", "--model", "nope"],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"},
        timeout=120,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "unknown model 'nope'" in proc.stderr


def test_parse_int_list_and_gpu_slug():
    assert parse_int_list("5, 1,2,2", "--steps") == [1, 2, 5]
    assert gpu_slug("NVIDIA H100 80GB HBM3") == "h100-sxm5-80gb"
    assert gpu_slug("NVIDIA A100-SXM4-40GB") == "a100-sxm4-40gb"
    assert gpu_slug("NVIDIA L4") == "l4"
    assert gpu_slug(None) == "cpu"


def test_final_sidecar_failure_is_a_warning_not_a_new_error(tmp_path, capsys):
    from profiling.session import final_sidecar

    (tmp_path / "a-file").write_text("")
    final_sidecar(
        tmp_path / "a-file" / "t.csv", {"model": "tiny"}, []
    )  # no folder can be made there: warns only
    assert "sidecar ranges not written" in capsys.readouterr().err


def test_notes_of_an_earlier_run_are_carried_into_the_new_sidecar(tmp_path):
    import json

    from profiling.session import check_consistent
    from traces.profile_schema import Provenance

    out = tmp_path / "t.csv"
    old = {k: "x" for k in Provenance.__dataclass_fields__} | {
        "notes": ["filled by hand"],
        "runs": [{"date": "d"}],
    }
    out.with_suffix(".json").write_text(json.dumps(old))
    new = {k: "x" for k in Provenance.__dataclass_fields__}
    assert check_consistent(out, new, force=False) == [{"date": "d"}]
    assert new["notes"] == ["filled by hand"]


def test_a_rerun_with_every_point_measured_builds_no_pipeline(tmp_path, capsys, monkeypatch):
    out = tmp_path / "tiny.csv"
    assert run_tiny(out, steps="1", batch="1,2") == 0
    before = out.read_text()

    def no_build(*a, **k):
        raise AssertionError("the pipeline was built although nothing was left to measure")

    monkeypatch.setattr("profiling.session.build_pipeline", no_build)
    capsys.readouterr()
    assert run_tiny(out, steps="1", batch="1,2") == 0
    assert "all 2 point(s) already measured" in capsys.readouterr().out
    assert out.read_text() == before
    with pytest.raises(AssertionError, match="pipeline was built"):  # one point missing: it must build
        run_tiny(out, steps="1,2", batch="1")
