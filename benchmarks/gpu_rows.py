"""`benchmarks/gpu.sh`'s JSON as rows of docs/performance/gpu_h200.csv (or another CSV of its columns).

    .venv/bin/python benchmarks/gpu_rows.py JSON COMMIT [--date 2026-12-04] [--csv docs/performance/gpu_h200.csv]

COMMIT is the commit the run measured (the device machine runs a copy of the tree, without git), DATE
the day it ran. Appends one row per measured row of the JSON, with the GPU, the core count and the torch
version it recorded; `make docs` then renders the tables that read the CSV.
"""

from __future__ import annotations

import argparse
import csv
import json
from datetime import date
from pathlib import Path

COLUMNS = [
    "date",
    "commit",
    "machine",
    "torch",
    "what",
    "unit",
    "reference",
    "reference_min",
    "reference_max",
    "seglib",
    "seglib_min",
    "seglib_max",
    "ratio",
]


def _cell(value: float | None) -> str:
    """Three significant figures, as the bench's own table shows them; empty where nothing was measured."""
    if value is None:
        return ""
    return f"{float(f'{value:.3g}'):g}" if abs(value) >= 1 else f"{value:.3g}"


def rows(result: dict, commit: str, day: str) -> list[dict[str, str]]:
    """The CSV rows of one `seglib.bench --json` result."""
    machine = f"{result['device_name']}, {result['cpu_count']} cores"
    out = []
    for r in result["rows"]:
        row = {"date": day, "commit": commit, "machine": machine, "torch": result["torch"]}
        row.update({"what": r["what"], "unit": r["unit"]})
        for key in COLUMNS[6:]:
            row[key] = f"{r[key]:.2f}" if key == "ratio" and r.get(key) else _cell(r.get(key))
        out.append(row)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("json", type=Path)
    p.add_argument("commit")
    p.add_argument("--date", default=date.today().isoformat())
    p.add_argument("--csv", type=Path, default=Path("docs/performance/gpu_h200.csv"))
    a = p.parse_args()
    new = rows(json.loads(a.json.read_text()), a.commit, a.date)
    fresh = not a.csv.exists()
    with a.csv.open("a", newline="") as f:
        writer = csv.DictWriter(f, COLUMNS)
        if fresh:
            writer.writeheader()
        writer.writerows(new)
    print(f"{a.csv}: {len(new)} rows of {a.json} ({a.commit}, {a.date})")


if __name__ == "__main__":
    main()
