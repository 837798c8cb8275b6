"""Where the shared real data lives (never inside the repository): env var ``AIGC_TWIN_DATA``, else
``<repo>/../shared/data``; ``None`` when neither exists, so callers and tests can skip cleanly."""

from __future__ import annotations

import os
from pathlib import Path

#: Environment variable that overrides the default data folder.
DATA_ENV = "AIGC_TWIN_DATA"

#: The repository root (the folder holding ``traces/``).
REPO_ROOT = Path(__file__).resolve().parent.parent


def data_root() -> Path | None:
    """The shared data folder, or ``None`` when it is not there."""
    override = os.environ.get(DATA_ENV)
    root = Path(override) if override else REPO_ROOT.parent / "shared" / "data"
    return root if root.is_dir() else None


def data_file(*parts: str) -> Path | None:
    """A file under the shared data folder, or ``None`` when the folder or the file is absent."""
    root = data_root()
    if root is None:
        return None
    path = root.joinpath(*parts)
    return path if path.is_file() else None


def gentd26_trace() -> Path | None:
    """The GenTD26 LoRA request trace (Alibaba clusterdata, Lin et al., SoCC '25), if present."""
    return data_file("gentd26", "lora_request_trace.until-2024-11-30.csv")


def partiprompts_tsv() -> Path | None:
    """PartiPrompts (google-research/parti, Apache-2.0), if present."""
    return data_file("partiprompts", "PartiPrompts.tsv")
