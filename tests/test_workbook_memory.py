"""benchmarks/workbook_memory.py: the peaks it reports are the memory the command's processes held, told
apart by the notebook the runner says it is running, and its CSV carries what docs' tables need."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "workbook_memory.py"

# a runner's two "notebooks": the first holds 300 MB in a child process (a kernel), the second little
CHILD = "import time; a = bytearray(300_000_000); a[::4096] = b'x' * len(a[::4096]); time.sleep(2)"
RUNNER = (
    "import subprocess, sys, time\n"
    "print('workbook: running 01_a.ipynb (quick) into x', flush=True)\n"
    f"subprocess.run([sys.executable, '-c', {CHILD!r}])\n"
    "print('workbook: running 02_b.ipynb (quick) into x', flush=True)\n"
    "time.sleep(1.5)\n"
    "sys.exit(3)\n"
)


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/smaps_rollup").exists(), reason="PSS is read from Linux's /proc")
def test_peaks_are_the_trees_memory_per_notebook_and_the_exit_status_is_the_commands(tmp_path):
    out = tmp_path / "memory.csv"
    p = subprocess.run(
        [sys.executable, SCRIPT, "--every", "0.2", "--csv", out, "--", sys.executable, "-c", RUNNER],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 3, p.stdout + p.stderr  # the command's own
    rows = {r["phase"]: r for r in csv.DictReader(out.open())}
    pss = {phase: int(r["peak_pss_mb"]) for phase, r in rows.items()}
    assert 280 <= pss["01_a.ipynb"] < 450  # the child's 300 MB and the runner's interpreter
    assert 280 <= int(rows["01_a.ipynb"]["largest_rss_mb"]) < 450
    assert pss["02_b.ipynb"] < 100  # the child has ended
    assert pss["all"] == pss["01_a.ipynb"]
    first = rows["all"]
    assert first["date"] and first["commit"] and "core" in first["machine"] and "-c" in first["command"]
