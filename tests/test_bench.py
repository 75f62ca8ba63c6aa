"""The benchmark runs (quick mode) and writes a complete JSON. Timings are its output, never asserted."""

import json
import subprocess
import sys

import pytest

EXPECTED = [
    "matmul",
    "train step unet",
    "train step resnet34_unet",
    "data path",
    "cache build",
    "whole epoch",
    "share of time waiting",
    "evaluation",
]


@pytest.mark.slow
def test_quick_benchmark_writes_complete_json(tmp_path):
    out = tmp_path / "bench.json"
    p = subprocess.run(
        [sys.executable, "-m", "seglib.bench", "--quick", "--reps", "1", "--json", str(out)],
        capture_output=True,
        text=True,
    )
    assert p.returncode == 0, p.stderr
    result = json.loads(out.read_text())
    assert {"machine", "torch", "device", "threads", "rows"} <= set(result)
    whats = [r["what"] for r in result["rows"]]
    for key in EXPECTED:
        assert any(key in w for w in whats), key
    for r in result["rows"]:
        assert {"what", "unit", "reference", "seglib", "ratio"} <= set(r)
        assert r["seglib"] is not None and r["seglib"] > 0
    assert "| what | unit | reference | seglib |" in p.stdout
