"""Code revision of an output: git's commit in a checkout, a hash of the sources where the tree has no .git."""

from __future__ import annotations

import shutil

from traces.revision import PACKAGES, ROOT, code_revision, git_commit, source_hash


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
