"""Which process trains a run folder now: its `.training` file, made atomically, names it (`HOST-PID`).

Two processes training one run folder at once (two resumes of it, or an overwrite of a run being trained)
would mix their epochs in its files. The first to make the mark trains; the others are refused, with the
process named. The mark of a process killed on this machine is removed by the next process that looks;
another machine's (a shared disk) only by hand.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..leftovers import owner_tag, writer_is_gone

__all__ = ["MARK", "TrainedNow", "refuse_if_trained", "trained_now_by", "training_mark"]

MARK = ".training"
OLDER = ".training-"  # + HOST-PID: the mark of seglib before 2026-12-06, still read (a run trained meanwhile)


class TrainedNow(RuntimeError):
    """Another process trains the run folder."""


def _read(mark: Path) -> str | None:
    try:
        text = mark.read_text().strip()
    except FileNotFoundError:
        return None
    return text or "unknown-?"  # made without hard links and not written yet: a process that lives


def _holder(run_dir: Path) -> str | None:
    """`HOST-PID` of the process whose mark `run_dir` holds (this one's included), or None. A killed
    process's mark is removed first."""
    if (older := _older_mark(run_dir)) is not None:
        return older
    mark = run_dir / MARK
    for _ in range(3):  # each turn removes one killed process's mark
        tag = _read(mark)
        if tag is None or not writer_is_gone(tag):
            return tag
        _remove_dead(mark, tag)
    return _read(mark)


def _older_mark(run_dir: Path) -> str | None:
    """`HOST-PID` of a process of an older seglib that trains `run_dir` (its mark: `.training-HOST-PID`, a
    file per process), or None; a killed one's mark is removed."""
    for mark in run_dir.glob(f"{OLDER}*"):
        tag = mark.name[len(OLDER) :]
        if not writer_is_gone(tag):
            return tag
        mark.unlink(missing_ok=True)
    return None


def _remove_dead(mark: Path, tag: str) -> None:
    """Remove `mark` if it still names `tag`, a killed process. One remover at a time: between one's read and
    its unlink, another could have removed it and a live process made it anew."""
    removing = mark.with_name(f"{MARK}.removing")
    try:
        fd = os.open(removing, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        if writer_is_gone(_read(removing) or ""):  # a remover killed in its turn: the next turn goes on
            removing.unlink(missing_ok=True)
        return  # another process removes it now
    try:
        os.write(fd, owner_tag().encode())
        if _read(mark) == tag:  # no one else makes the mark while it exists, so it is still the dead one
            mark.unlink(missing_ok=True)
    finally:
        os.close(fd)
        removing.unlink(missing_ok=True)


def trained_now_by(run_dir: Path) -> str | None:
    """`HOST-PID` of another process that trains `run_dir` now, else None (another machine's mark counts as
    live)."""
    tag = _holder(Path(run_dir))
    return None if tag == owner_tag() else tag


def _refusal(run_dir: Path, tag: str, doing: str) -> TrainedNow:
    machine, _, pid = tag.rpartition("-")
    older = run_dir / f"{OLDER}{tag}"
    return TrainedNow(
        f"cannot {doing} {run_dir}: process {pid} on {machine} trains it now; wait for it or stop it "
        f"(if nothing trains it, delete {older if older.exists() else run_dir / MARK})"
    )


def refuse_if_trained(run_dir: Path, doing: str) -> None:
    """`TrainedNow` (saying it cannot `doing` the run) where another process trains `run_dir`."""
    if tag := trained_now_by(run_dir):
        raise _refusal(run_dir, tag, doing)


def _make(run_dir: Path, tag: str) -> bool:
    """Make `run_dir`/.training naming `tag`, whole or not at all; False where it exists."""
    # Written under a temporary name, then linked: the mark never exists without its name in it. The name
    # is the atomic writes' (`.<file>.HOST-PID.<random>.tmp`): a killed process's is removed by the next save.
    tmp = run_dir / f"{MARK}.{tag}.mark.tmp"
    tmp.write_text(tag)
    try:
        os.link(tmp, run_dir / MARK)
        return True
    except FileExistsError:
        return False
    except OSError:  # a file system without hard links
        try:
            fd = os.open(run_dir / MARK, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as f:
            f.write(tag)
        return True
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def training_mark(run_dir: Path, doing: str = "train") -> Iterator[Path]:
    """Mark `run_dir` as trained by this process while the block runs; `TrainedNow` (saying it cannot
    `doing` the run) if another process trains it. Of processes that mark one run at the same moment,
    exactly one gets it."""
    run_dir, tag = Path(run_dir), owner_tag()
    holder = _holder(run_dir)  # an older seglib's mark included: it does not look for .training
    if holder == tag:  # this process holds it already: the outer block removes it
        yield run_dir
        return
    if holder is not None:
        raise _refusal(run_dir, holder, doing)
    for _ in range(3):  # a killed process's mark found in the way is removed, then the next turn makes it
        if _make(run_dir, tag):
            break
        if (other := _holder(run_dir)) is not None:
            raise _refusal(run_dir, other, doing)
    else:
        raise _refusal(run_dir, _holder(run_dir) or "unknown-?", doing)  # marks made and gone again
    try:
        yield run_dir
    finally:
        if _read(run_dir / MARK) == tag:
            (run_dir / MARK).unlink(missing_ok=True)
