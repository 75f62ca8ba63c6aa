"""Where a measured figure comes from: the date and the commit of the checkout that measured it.

Every CSV of measured figures starts with these columns (and the machine's kind), so a table in the
docs can say which code and which day its numbers are from. Standard library only.
"""

from __future__ import annotations

import os
import re
import subprocess
from datetime import date
from pathlib import Path

__all__ = ["REPO", "git_commit", "git_changes", "stamp"]

REPO = Path(__file__).resolve().parents[1]


def git_commit(repo: str | Path = REPO) -> str:
    """The short commit of `repo`'s checkout (seglib's own by default, not the current directory's), or
    "unknown" where there is none: a copy of the tree without .git, or no git.

    `SEGLIB_COMMIT` in the environment names it instead: a copy of the tree run on another machine may
    carry a .git whose HEAD is not the commit it holds (a device run's did, 2026-12-04).
    """
    given = os.environ.get("SEGLIB_COMMIT", "").strip()
    if given:
        if not re.fullmatch(r"[0-9a-f]{7,40}", given):
            raise ValueError(f"SEGLIB_COMMIT={given!r} is not a commit: give `git rev-parse --short HEAD`")
        return given
    if not _own_checkout(repo):  # an installed seglib inside someone else's repository: not seglib's commit
        return "unknown"
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else "unknown"


def _own_checkout(repo: str | Path) -> bool:
    """Whether `repo` is the top of a git work tree (seglib's checkout), not a folder inside another one."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--show-toplevel"], cwd=repo, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return out.returncode == 0 and Path(out.stdout.strip()).resolve() == Path(repo).resolve()


def git_changes(repo: str | Path = REPO) -> bool | None:
    """Whether `repo`'s checkout has changes to tracked files; None where that is unknown: no checkout,
    no git, or a commit given by SEGLIB_COMMIT, whose copy of the tree this checkout may not describe."""
    if os.environ.get("SEGLIB_COMMIT", "").strip() or not _own_checkout(repo):
        return None
    try:
        out = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=repo,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return bool(out.stdout.strip()) if out.returncode == 0 else None


def stamp() -> dict[str, str]:
    """{"date": today in ISO form, "commit": `git_commit()`}: the first columns of a measured CSV."""
    return {"date": date.today().isoformat(), "commit": git_commit()}
