"""The commit a measured CSV names: the checkout's, or "unknown" where there is none."""

import subprocess

import pytest

from seglib.provenance import REPO, git_commit, stamp


def _git(cwd, *args):
    cmd = ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()


def test_git_commit_names_the_checkouts_head(tmp_path):
    _git(tmp_path, "init", "-q")
    (tmp_path / "a.txt").write_text("a\n")
    _git(tmp_path, "add", "a.txt")
    _git(tmp_path, "commit", "-q", "-m", "a")
    assert git_commit(tmp_path) == _git(tmp_path, "rev-parse", "--short", "HEAD")


def test_git_commit_without_a_checkout_is_unknown(tmp_path):
    assert git_commit(tmp_path) == "unknown"
    assert git_commit(tmp_path / "missing") == "unknown"


def test_stamp_is_seglibs_own_commit_whatever_the_current_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # not a checkout: the commit still comes from seglib's tree
    assert stamp()["commit"] == git_commit(REPO)
    assert len(stamp()["date"]) == 10


def test_a_commit_given_in_the_environment_wins_and_is_checked(tmp_path, monkeypatch):
    monkeypatch.setenv("SEGLIB_COMMIT", "4b0dc51")
    assert git_commit(tmp_path) == "4b0dc51" and stamp()["commit"] == "4b0dc51"
    monkeypatch.setenv("SEGLIB_COMMIT", "main")
    with pytest.raises(ValueError, match="SEGLIB_COMMIT='main' is not a commit"):
        git_commit()
