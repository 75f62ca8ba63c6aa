"""`make lab`: JupyterLab starts on notebooks/ (as root too, as containers run it), says its URL, and
starts quiet, with its settings from the project's .jupyter/ and none written to the user's home."""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # a JupyterLab server

REPO = Path(__file__).resolve().parents[1]
START_S = 90


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.load(r)


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM to make and JupyterLab (one process group), SIGKILL if they linger."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def test_make_lab_starts_on_the_notebooks_as_any_user_and_quiet(tmp_path: Path) -> None:
    make = shutil.which("make")
    if make is None:
        pytest.skip("no make")
    home = tmp_path / "home"  # the user's Jupyter dirs: empty, and nothing may be written there
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(home / ".jupyter"),
        "JUPYTER_DATA_DIR": str(home / "data"),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
    }
    env.pop("JUPYTER_CONFIG_PATH", None)
    port, token = _free_port(), secrets.token_hex(16)
    args = f"--no-browser --ip=127.0.0.1 --port={port} --ServerApp.port_retries=0 --IdentityProvider.token={token}"
    venv = Path(sys.prefix)  # this interpreter's venv; -o: never reinstall it from here
    cmd = [make, "-o", f"{venv}/.installed", "lab", f"VENV={venv}", f"LAB_ARGS={args}"]
    log = tmp_path / "lab.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_S
        while not re.search(rf"{re.escape(url)}/lab\?token=", log.read_text(errors="replace")):
            assert proc.poll() is None, f"make lab exited with {proc.returncode}:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"no URL in {START_S} s:\n{log.read_text()[-3000:]}"
            time.sleep(0.5)
        while True:  # the URL it said answers
            with contextlib.suppress(OSError):
                if _get(f"{url}/api/status?token={token}"):
                    break
            assert time.monotonic() < deadline, f"{url} did not answer:\n{log.read_text()[-3000:]}"
            time.sleep(0.5)
        names = {c["name"] for c in _get(f"{url}/api/contents?token={token}")["content"]}
        assert "01_data_exploration.ipynb" in names, names  # it opens on notebooks/
        notification = _get(
            f"{url}/lab/api/settings/@jupyterlab/apputils-extension:notification?token={token}"
        )
        props = notification["schema"]["properties"]  # the project's overrides are the defaults
        assert props["fetchNews"]["default"] == "false" and props["checkForUpdates"]["default"] is False
        assert _get(f"{url}/lab/api/news?token={token}") == {"news": []}
    finally:
        _stop(proc)
    text = log.read_text(errors="replace")
    if os.geteuid() == 0:  # containers and CI: the case that failed ("Use --allow-root to bypass")
        assert "Running as root is not recommended" not in text
    assert not (home / ".jupyter" / "lab" / "user-settings").exists()  # nothing written to the home
