"""Prompt loading: the built-in set, plain text, PartiPrompts TSV (the real file when present), clear errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from traces.prompts import DEFAULT_PROMPTS, PromptFileError, cycle_prompts, load_prompts, prompt_set_name

DATA = Path(os.environ.get("AIGC_TWIN_DATA", Path(__file__).resolve().parents[2] / ".." / "shared" / "data"))
PARTI = DATA / "partiprompts" / "PartiPrompts.tsv"


def test_builtin_set():
    prompts = load_prompts(None)
    assert prompts == list(DEFAULT_PROMPTS) and len(set(prompts)) == len(prompts) >= 8
    assert prompt_set_name(None).startswith("builtin:")


def test_plain_text_skips_blank_and_comment_lines(tmp_path):
    path = tmp_path / "p.txt"
    path.write_text('# my prompts\n a cat \n\nA "quoted" dog\n', encoding="utf-8")
    assert load_prompts(path) == ["a cat", 'A "quoted" dog']
    assert prompt_set_name(path) == f"file:{path.resolve()}"


def test_tsv_reads_the_prompt_column_with_bare_quotes(tmp_path):
    path = tmp_path / "p.tsv"
    path.write_text('Prompt\tCategory\nThe word "PEACE" on a wall\tWriting\n\tEmpty\nbond\tAbstract\n')
    assert load_prompts(path) == ['The word "PEACE" on a wall', "bond"]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("x.tsv", "Text\tCategory\na\tb\n", "no 'Prompt' column"),
        ("empty.txt", "\n# nothing\n", "holds no prompts"),
        ("bad.txt", b"\xff\xfe\x00bad", "not UTF-8"),
    ],
)
def test_bad_files_are_clear_errors(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(PromptFileError, match=message):
        load_prompts(path)


def test_missing_file(tmp_path):
    with pytest.raises(PromptFileError, match="no such prompt file"):
        load_prompts(tmp_path / "absent.txt")


@pytest.mark.skipif(not PARTI.is_file(), reason="PartiPrompts not present under AIGC_TWIN_DATA")
def test_real_partiprompts():
    prompts = load_prompts(PARTI)
    assert len(prompts) == 1632  # the count data/README.md gives for this file


def test_cycle_wraps():
    assert cycle_prompts(["a", "b", "c"], 2, 4) == ["c", "a", "b", "c"]
