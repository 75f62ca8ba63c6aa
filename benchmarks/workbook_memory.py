"""The memory a command's processes hold at their peak; by default the quick workbook, as `make workbook`
runs it.

    .venv/bin/python benchmarks/workbook_memory.py [--every S] [--csv FILE] [-- COMMAND ...]

Every `--every` seconds (default 0.5) it reads the command's process tree: the workbook runner, its
notebook kernels and their loader workers. It takes two readings:
- the sum of their PSS, where a page shared by forked processes counts once, divided among them: what
  the machine must hold;
- the largest single process's RSS.
It prints each notebook's peaks (the runner's "workbook: running NAME" lines say which notebook is
running), then the whole command's peaks and exit status. `--csv` appends a row per phase to a CSV
(docs/performance/workbook_memory_*.csv).

Linux only: PSS comes from /proc/PID/smaps_rollup. Run it on a quiet machine; other programs do not
count, but they slow the command.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
DEFAULT = [sys.executable, "-m", "seglib.workbook", "--profile", "quick"]


def tree_memory(root: psutil.Process) -> tuple[float, float]:
    """(sum of PSS, largest RSS) in MB over `root` and its descendants; processes that end meanwhile are
    left out."""
    pss, rss = 0.0, 0.0
    for p in [root, *root.children(recursive=True)]:
        try:
            info = p.memory_full_info()
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        pss += info.pss / 1e6
        rss = max(rss, info.rss / 1e6)
    return pss, rss


def _follow(stream, phase: list[str]) -> None:
    """Echo the command's output and keep `phase[0]` at the notebook it says it is running."""
    for line in iter(stream.readline, ""):
        sys.stdout.write(line)
        if line.startswith("workbook: running "):
            phase[0] = line.split()[2]


def watch(command: list[str], every: float) -> tuple[int, dict[str, list[float]]]:
    """Run `command` from the repository; its exit status and, per phase, [peak PSS, peak RSS] in MB."""
    proc = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    phase = ["(set-up)"]
    reader = threading.Thread(target=_follow, args=(proc.stdout, phase), daemon=True)
    reader.start()
    root, peaks = psutil.Process(proc.pid), {}
    while proc.poll() is None:
        pss, rss = tree_memory(root)
        peak = peaks.setdefault(phase[0], [0.0, 0.0])
        peak[0], peak[1] = max(peak[0], pss), max(peak[1], rss)
        time.sleep(every)
    reader.join(timeout=5)
    return proc.returncode, peaks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--every", type=float, default=0.5, help="seconds between readings")
    parser.add_argument("--csv", type=Path, help="append date, commit, machine, ... rows to this CSV")
    parser.add_argument("command", nargs="*", help="the command (after --); default: the quick workbook")
    a = parser.parse_args()
    command = a.command or DEFAULT
    t0 = time.perf_counter()
    code, peaks = watch(command, a.every)
    minutes = (time.perf_counter() - t0) / 60
    print(f"\n{' '.join(command)}: exit {code}, {minutes:.1f} min")
    print(f"{'phase':<32} {'peak PSS (MB)':>14} {'largest RSS (MB)':>17}")
    for name, (pss, rss) in peaks.items():
        print(f"{name:<32} {pss:>14.0f} {rss:>17.0f}")
    total = [max(p[0] for p in peaks.values()), max(p[1] for p in peaks.values())]
    print(f"{'all':<32} {total[0]:>14.0f} {total[1]:>17.0f}")
    if a.csv is not None:
        _append_csv(a.csv, command, {**peaks, "all": total})
    sys.exit(code)


def _append_csv(path: Path, command: list[str], peaks: dict[str, list[float]]) -> None:
    """A row per phase, with the date, commit, machine and torch the project's CSVs carry."""
    import csv

    import torch

    from seglib.engine.runtime import cpu_kind
    from seglib.provenance import stamp

    new = not path.exists()
    with path.open("a", newline="") as f:
        w = csv.writer(f)
        if new:
            w.writerow(
                ["date", "commit", "machine", "torch", "command", "phase", "peak_pss_mb", "largest_rss_mb"]
            )
        first = stamp()
        machine = f"{psutil.cpu_count()}-core {cpu_kind()}"
        shown = " ".join(Path(c).name if i == 0 else c for i, c in enumerate(command))
        for name, (pss, rss) in peaks.items():
            w.writerow(
                [
                    first["date"],
                    first["commit"],
                    machine,
                    torch.__version__,
                    shown,
                    name,
                    round(pss),
                    round(rss),
                ]
            )


if __name__ == "__main__":
    main()
