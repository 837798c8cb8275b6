"""Which code produced an output: the git commit of the checkout, or (where the tree travelled without its
``.git``, as on the lent GPU machine) a hash of the Python sources, so every trace and result names its code."""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Iterable
from pathlib import Path

from traces.data_paths import REPO_ROOT as ROOT

PACKAGES = ("profiling", "traces", "twin", "policies")


def git_commit(root: Path = ROOT, ignore: Iterable[str] = ()) -> str | None:
    """HEAD's hash, with ``+dirty`` when tracked or new files differ (paths in ``ignore`` do not count);
    None where ``root`` is not the top of a git checkout (an installed copy inside some other repository
    must not report that repository's commit) or git is missing."""
    git = ["git", "-C", str(root)]
    try:
        top = subprocess.run(
            [*git, "rev-parse", "--show-toplevel"], capture_output=True, text=True, check=True
        )
        if Path(top.stdout.strip()).resolve() != Path(root).resolve():
            return None
        head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True)
        dirty = subprocess.run(
            [*git, "status", "--porcelain", "--", ".", *(f":!{p}" for p in ignore)],
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def source_hash(root: Path = ROOT, packages: Iterable[str] = PACKAGES) -> str:
    """SHA-1 over the relative paths and bytes of the packages' ``.py`` files (first 12 hex digits)."""
    h = hashlib.sha1()
    for pkg in packages:
        for path in sorted((root / pkg).rglob("*.py")):
            h.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:12]


def code_revision(root: Path = ROOT, ignore: Iterable[str] = ()) -> str:
    """``git_commit`` where there is one, else ``sources:<source_hash>``."""
    return git_commit(root, ignore) or f"sources:{source_hash(root)}"


def short_revision(revision: str) -> str:
    """A revision as tables show it: 12 hex digits of a commit (keeping ``+dirty``), a source hash whole."""
    if revision.startswith("sources:") or not revision:
        return revision
    commit, plus, flag = revision.partition("+")
    return commit[:12] + plus + flag
