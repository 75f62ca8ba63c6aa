"""Where an executed workbook's seconds went, from papermill's own times in the executed notebooks.

    .venv/bin/python benchmarks/notebook_times.py RESULTS_DIR [RESULTS_DIR ...]

For each notebook in RESULTS_DIR/notebooks/: papermill's duration, the kernel's start (to its first
cell), the cells, and the end (from the last cell until papermill was done: the kernel's exit); then
the sums (docs/experiments/workbook.md, "a kernel's exit").
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path


def _t(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.rstrip("Z"))


def notebook_times(path: Path) -> dict[str, float]:
    """Seconds of one executed notebook: duration, start, cells, end."""
    nb = json.loads(path.read_text())
    run = nb["metadata"]["papermill"]
    cells = [
        c["metadata"]["papermill"] for c in nb["cells"] if c["metadata"].get("papermill", {}).get("end_time")
    ]
    if not cells:
        sys.exit(f"notebook_times: {path} has no executed cells; give the results folder of a workbook run")
    start = (_t(cells[0]["start_time"]) - _t(run["start_time"])).total_seconds()
    end = (_t(run["end_time"]) - _t(cells[-1]["end_time"])).total_seconds()
    return {"duration": run["duration"], "start": start, "cells": run["duration"] - start - end, "end": end}


def main() -> None:
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    for folder in sys.argv[1:]:
        paths = sorted(Path(folder, "notebooks").glob("*.ipynb"))
        if not paths:
            sys.exit(f"notebook_times: no executed notebooks in {Path(folder, 'notebooks')}")
        rows = {p.name: notebook_times(p) for p in paths}
        print(folder)
        for name, row in {
            **rows,
            "all": {k: sum(r[k] for r in rows.values()) for k in ("duration", "start", "cells", "end")},
        }.items():
            print(f"  {name:32} " + "  ".join(f"{k} {v:6.1f} s" for k, v in row.items()))


if __name__ == "__main__":
    main()
