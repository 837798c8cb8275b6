"""Prompts for profiling runs: a small built-in set written for this project, or a file (plain text, one prompt
a line, or a PartiPrompts TSV with a `Prompt` column)."""

from __future__ import annotations

import csv
from pathlib import Path

#: Written for this project (not taken from a dataset): varied subjects, styles and lengths, so that text
#: encoding and CLIP scoring see short and long prompts alike.
DEFAULT_PROMPTS: tuple[str, ...] = (
    "a red bicycle leaning against a brick wall",
    "a lighthouse on a rocky coast at sunset, oil painting",
    "a bowl of ramen with a soft-boiled egg, top-down photo",
    "an astronaut reading a newspaper on a park bench",
    "a watercolour of a fox sleeping under a pine tree in the snow",
    "a futuristic train crossing a desert bridge at night, neon lights",
    "a close-up photo of a honeybee on a lavender flower",
    "a cosy library with tall wooden shelves and a green reading lamp",
    "a pixel-art castle on a floating island",
    "two cats playing chess in a Victorian living room",
    "a mountain lake reflecting autumn trees, early morning mist",
    "a robot watering tomato plants in a greenhouse",
    "a street market in the rain, people with colourful umbrellas",
    "a sketch of a sailing ship in a storm, charcoal on paper",
    "a glass teapot with blooming tea on a wooden table",
    "an owl wearing round glasses, studio portrait",
)
DEFAULT_NAME = "builtin:aigc-twin-default-v1"


class PromptFileError(ValueError):
    """A prompt file that cannot be read or holds no prompts."""


def _read_tsv(path: Path, text: str) -> list[str]:
    # QUOTE_NONE: PartiPrompts cells hold bare quote characters that are part of the prompt.
    reader = csv.DictReader(text.splitlines(), delimiter="\t", quoting=csv.QUOTE_NONE)
    header = reader.fieldnames or []
    if "Prompt" not in header:
        raise PromptFileError(f"{path}: TSV has no 'Prompt' column (columns: {', '.join(header)})")
    return [r["Prompt"].strip() for r in reader if (r.get("Prompt") or "").strip()]


def load_prompts(path: str | Path | None = None) -> list[str]:
    """Prompts from ``path`` (.tsv: PartiPrompts layout; otherwise one prompt a line, blank lines and lines
    starting with '#' skipped), or the built-in default set when ``path`` is None."""
    if path is None:
        return list(DEFAULT_PROMPTS)
    path = Path(path)
    if not path.is_file():
        raise PromptFileError(f"{path}: no such prompt file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise PromptFileError(f"{path}: not UTF-8 text") from None
    if path.suffix.lower() == ".tsv":
        prompts = _read_tsv(path, text)
    else:
        prompts = [s.strip() for s in text.splitlines() if s.strip() and not s.lstrip().startswith("#")]
    if not prompts:
        raise PromptFileError(f"{path}: holds no prompts")
    return prompts


def prompt_set_name(path: str | Path | None) -> str:
    """How the trace's sidecar names the prompt set."""
    return DEFAULT_NAME if path is None else f"file:{Path(path).resolve()}"


def cycle_prompts(prompts: list[str], start: int, count: int) -> list[str]:
    """``count`` prompts from ``start`` onward, wrapping round (why: each call of a window gets new prompts)."""
    return [prompts[(start + i) % len(prompts)] for i in range(count)]
