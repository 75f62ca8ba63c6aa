"""What another busy program does to the memory-format probe: fresh-process probes with an empty cache,
beside 0, 1 and 2 programs spinning on the CPU (taking turns), each format's images/s, the choice, the
cores the others used (as the probe measures them) and whether the answer was cached.

    env $(.venv/bin/python -m seglib.jemalloc) .venv/bin/python benchmarks/probe_busy.py \
        [--model M] [--size S] [--kwargs JSON] [--repeats R] [--csv FILE]

Defaults: the bench's quick ResNet34-UNet step (width 64, 64 px, batch 4), 3 repeats.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from seglib.engine.runtime import cpu_kind
from seglib.provenance import stamp

PROBE = """
import json, sys, torch
from seglib.engine.fastpath import choose_memory_format
from seglib.engine.runtime import default_amp
model, size, kwargs, batch = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3]), int(sys.argv[4])
cpu = torch.device("cpu")
c = choose_memory_format(model, kwargs, size, batch, cpu, default_amp(cpu))
print(json.dumps({"channels_last": c.channels_last, "rates": c.rates, "others": c.others}))
"""
SPIN = "import sys; print(flush=True)\nwhile True: pass"


def probe(args: argparse.Namespace, spinners: int) -> dict:
    """One probe in a fresh process with an empty cache, beside `spinners` busy programs."""
    spin = [subprocess.Popen([sys.executable, "-c", SPIN], stdout=subprocess.PIPE) for _ in range(spinners)]
    try:
        for s in spin:
            s.stdout.readline()  # spinning from here on
        with tempfile.TemporaryDirectory(prefix="seglib-probe-") as tmp:
            cache = Path(tmp) / "fastpath.json"
            cmd = [sys.executable, "-c", PROBE, args.model, str(args.size), args.kwargs, str(args.batch)]
            env = {**os.environ, "SEGLIB_PROBE_CACHE": str(cache)}
            out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
            got = json.loads(out.stdout.strip().splitlines()[-1])
            return {**got, "cached": cache.exists()}
    finally:
        for s in spin:
            s.kill()
            s.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="resnet34_unet")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--kwargs", default="{}")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--csv", type=Path, help="write the rows here (date, commit and machine with each)")
    args = ap.parse_args()
    head = {**stamp(), "machine": cpu_kind(), "model": f"{args.model} {args.kwargs}", "image_size": args.size}
    print(f"{head['machine']}: {args.model} {args.kwargs} {args.size} px b{args.batch}, a fresh probe each")
    rows = []
    for rep in range(1, args.repeats + 1):
        for spinners in (0, 1, 2):
            got = probe(args, spinners)
            cl, nchw = got["rates"]["channels_last"], got["rates"]["nchw"]
            others = "-" if got["others"] is None else f"{got['others']:.2f}"
            choice = "channels_last" if got["channels_last"] else "nchw"
            rows.append({**head, "repeat": rep, "busy_programs": spinners, "channels_last": f"{cl:.1f}",
                         "nchw": f"{nchw:.1f}", "choice": choice, "others_cores": others,
                         "cached": "yes" if got["cached"] else "no"})  # fmt: skip
            print(
                f"repeat {rep}, {spinners} busy: channels_last {cl:.1f}, nchw {nchw:.1f} images/s -> {choice}; "
                f"others {others} cores; cached: {rows[-1]['cached']}",
                flush=True,
            )
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)


if __name__ == "__main__":
    main()
