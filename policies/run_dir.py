"""A training run's directory: its name, the config that produced it, the metrics CSV, and atomically
published checkpoints (``checkpoints/step_*/`` plus a ``latest`` pointer) that ``--resume`` continues from."""

from __future__ import annotations

import json
import os
import pickle
import random
import re
import shutil
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from traces.atomic import write_csv_atomic, write_json_atomic, write_text_atomic

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.csv"
EVAL_FILE = "eval.csv"  # held-out evaluations during training (policies.eval_callback)
LATEST_FILE = "latest"
BEST_DIR = "best"  # the policy best on validation days (eval_callback): model.zip, state.json, shaper
BUFFER_FILE = "replay_buffer.pkl"  # in a checkpoint folder, SB3's save_replay_buffer
SHAPER_FILE = "shaper.pt"  # in a checkpoint or best folder: the shaper's state_dict (save_shaper)
_STEP_DIR = re.compile(r"^step_(\d+)$")


class RunDirError(ValueError):
    """A run directory is missing what was asked of it (config, checkpoint)."""


def run_name(scenario: str, algo: str, shaping: str, seed: int, now: datetime | None = None) -> str:
    """``scenario__algo+shaping__seed__YYYYmmddTHHMMSSZ`` (CleanRL-style, sortable by time)."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    return f"{scenario}__{algo}+{shaping}__{seed}__{stamp}"


class RunDir:
    """Paths and persistence of one run. Nothing is written until a method that writes is called."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.checkpoints = self.path / "checkpoints"
        self.metrics_path = self.path / METRICS_FILE
        self.eval_path = self.path / EVAL_FILE
        self.tensorboard = self.path / "tb"
        self.best = self.path / BEST_DIR

    def save_config(self, config: dict[str, Any], extras: dict[str, str] | None = None) -> None:
        """The config as JSON beside the run, plus any named text files (e.g. the scenario used)."""
        write_json_atomic(self.path / CONFIG_FILE, config)
        for name, text in (extras or {}).items():
            write_text_atomic(self.path / name, text)

    def load_config(self) -> dict[str, Any]:
        path = self.path / CONFIG_FILE
        if not path.is_file():
            raise RunDirError(f"no {CONFIG_FILE} in run directory {self.path}")
        return json.loads(path.read_text(encoding="utf-8"))

    def latest_checkpoint(self) -> Path | None:
        """The checkpoint named by ``latest``; else the highest-step complete one; None if there is none."""
        pointer = self.checkpoints / LATEST_FILE
        if pointer.is_file():
            named = self.checkpoints / pointer.read_text(encoding="utf-8").strip()
            if named.is_dir():
                return named
        steps = sorted(self.checkpoint_dirs(), key=lambda p: int(_STEP_DIR.match(p.name).group(1)))
        return steps[-1] if steps else None

    def checkpoint_dirs(self) -> list[Path]:
        if not self.checkpoints.is_dir():
            return []
        return [p for p in self.checkpoints.iterdir() if p.is_dir() and _STEP_DIR.match(p.name)]

    def save_checkpoint(self, step: int, write: Callable[[Path], None], keep: int = 2) -> Path:
        """Let ``write`` fill a new ``step_<n>`` folder (``publish_dir``), point ``latest`` at it, prune."""
        self.checkpoints.mkdir(parents=True, exist_ok=True)
        final = publish_dir(self.checkpoints / f"step_{step:010d}", write)
        write_text_atomic(self.checkpoints / LATEST_FILE, final.name + "\n")
        self.prune(keep, protect=final)
        return final

    def selects_on_validation(self) -> bool:
        """Whether the run evaluates by its policy best on validation days (config ``val_days`` > 0)."""
        return int(self.load_config().get("val_days", 0)) > 0

    def policy_model(self) -> tuple[Path, int]:
        """The run's policy to evaluate, as (its model.zip, the env step it was saved at): the one best on
        validation days (``best/``) where the run selects on them (config ``val_days`` > 0), else the latest
        checkpoint's."""
        if self.selects_on_validation():
            model, state = self.best / "model.zip", best_state(self.best)
            if state is None or not model.is_file():
                raise RunDirError(
                    f"{self.path} selects its policy on validation days but has no {BEST_DIR}/ yet"
                )
            return model, int(state["step"])
        ckpt = self.latest_checkpoint()
        if ckpt is None or not (ckpt / "model.zip").is_file():
            raise RunDirError(f"{self.path}: no checkpoint with a model.zip under {self.checkpoints}")
        return ckpt / "model.zip", checkpoint_step(ckpt)

    def prune(self, keep: int, protect: Path) -> None:
        dirs = sorted(self.checkpoint_dirs(), key=lambda p: p.name)
        for old in dirs[: max(len(dirs) - keep, 0)]:
            if old != protect:
                shutil.rmtree(old, ignore_errors=True)


def best_state(best: Path) -> dict[str, Any] | None:
    """The ``state.json`` of a ``best/`` folder (``step`` and ``val_utility`` of the policy kept there, written by
    ``policies.eval_callback``); None where there is none."""
    path = best / "state.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def publish_dir(final: Path, write: Callable[[Path], None]) -> Path:
    """Let ``write`` fill a temporary folder beside ``final`` and publish it as ``final`` by rename.

    An existing ``final`` is renamed aside (a hidden folder) before the new one takes its name and deleted only
    after, so a crash at any point leaves a complete copy on disk (between the two renames, only the hidden
    one: nothing puts it back, but a checkpoint's ``best/`` is restored from the checkpoint on resume)."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    aside = tmp.with_name(tmp.name + ".old")
    try:
        write(tmp)
        if final.exists():
            os.replace(final, aside)
        os.replace(tmp, final)
    except BaseException:
        if aside.exists() and not final.exists():
            os.replace(aside, final)  # put the old copy back
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(aside, ignore_errors=True)
    return final


def checkpoint_step(path: Path) -> int:
    match = _STEP_DIR.match(Path(path).name)
    if match is None:
        raise RunDirError(f"{path} is not a checkpoint folder (step_<n>)")
    return int(match.group(1))


class MetricsLog:
    """Rows of metrics kept in memory and rewritten atomically as one CSV (columns: the union seen)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.rows: list[dict[str, Any]] = []

    def append(self, row: dict[str, Any]) -> None:
        self.rows.append(dict(row))

    def flush(self) -> None:
        if self.rows:
            write_csv_atomic(self.path, pd.DataFrame(self.rows))

    def resume(self, step: int) -> None:
        """Reload the CSV, dropping rows logged after ``step`` (they are re-run from the checkpoint)."""
        if self.path.is_file() and self.path.stat().st_size > 0:
            frame = pd.read_csv(self.path)
            self.rows = [r for r in frame.to_dict("records") if r.get("step", 0) <= step]
        self.flush()


def rng_state(action_space=None) -> dict[str, Any]:
    """Python, numpy-global, torch and action-space generator states (what SB3 draws from)."""
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),  # noqa: NPY002 (SB3 draws from it)
        "torch": torch.get_rng_state(),
    }
    if action_space is not None:
        state["action_space"] = action_space.np_random.bit_generator.state
    return state


def set_rng_state(state: dict[str, Any], action_space=None) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])  # noqa: NPY002
    torch.set_rng_state(state["torch"])
    if action_space is not None and "action_space" in state:
        action_space.np_random.bit_generator.state = state["action_space"]


def save_pickle(path: Path, obj: Any) -> None:
    with open(path, "wb") as fh:
        pickle.dump(obj, fh)


def load_pickle(path: Path) -> Any:
    with open(path, "rb") as fh:
        return pickle.load(fh)


def save_shaper(path: Path, shaper: Any) -> None:
    """A reward shaper's weights (``state``) and what else it needs to go on training (``extra``: its optimizer)."""
    torch.save({"state": shaper.state_dict(), "extra": shaper.extra_state()}, path)


def restore_shaper(path: Path, shaper: Any, device: str = "cpu") -> Any:
    """``shaper`` (built as the saved one was) with the weights and optimizer ``save_shaper`` wrote to ``path``."""
    saved = torch.load(path, map_location=device, weights_only=False)
    shaper.load_state_dict(saved["state"])
    shaper.load_extra_state(saved["extra"])
    return shaper
