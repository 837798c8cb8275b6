"""Code revision of an output: git's commit in a checkout, a hash of the sources where the tree has no .git."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from traces.revision import PACKAGES, ROOT, code_revision, git_commit, short_revision, source_hash


def test_a_checkout_names_its_commit():
    rev = git_commit()
    if rev is None:  # an installed copy without .git: the source hash stands in
        assert code_revision().startswith("sources:")
    else:
        assert len(rev.removesuffix("+dirty")) == 40 and code_revision() == rev


def test_a_tree_without_git_is_named_by_its_sources(tmp_path):
    for pkg in PACKAGES:
        shutil.copytree(ROOT / pkg, tmp_path / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    rev = code_revision(tmp_path)
    assert rev == f"sources:{source_hash(ROOT)}"  # the same sources, the same name
    (tmp_path / "twin" / "env.py").write_text("# changed\n", encoding="utf-8")
    assert code_revision(tmp_path) != rev  # any source change renames it


def git(root, *args):
    subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True)


@pytest.mark.skipif(shutil.which("git") is None, reason="git not installed")
def test_dirty_unless_only_ignored_paths_changed(tmp_path):
    git(tmp_path, "init", "-q")
    (tmp_path / "code.py").write_text("x = 1\n", encoding="utf-8")
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "a.csv").write_text("a\n", encoding="utf-8")
    git(tmp_path, "add", ".")
    git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "first")
    clean = git_commit(tmp_path)
    assert clean is not None and not clean.endswith("+dirty")
    (tmp_path / "results" / "a.csv").write_text("b\n", encoding="utf-8")  # an output rewritten by a run
    assert git_commit(tmp_path, ignore=("results",)) == clean
    assert git_commit(tmp_path) == clean + "+dirty"
    (tmp_path / "code.py").write_text("x = 2\n", encoding="utf-8")
    assert git_commit(tmp_path, ignore=("results",)) == clean + "+dirty"
    assert git_commit(tmp_path / "results") is None  # not the top of the checkout: no commit claimed
    assert short_revision(clean + "+dirty") == clean[:12] + "+dirty"
    assert short_revision("sources:abc") == "sources:abc"
