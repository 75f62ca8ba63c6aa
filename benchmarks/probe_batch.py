"""Does the memory-format probe's answer depend on the batch it trains at? Each probe runs in a fresh
process with an empty cache, at batch 2 (what the probe used to train at) and at the run's batch of 8,
taking turns, and prints both formats' images/s and the choice.

    env $(.venv/bin/python -m seglib.jemalloc) .venv/bin/python benchmarks/probe_batch.py \
        [MODEL] [SIZE] [KWARGS_JSON] [REPEATS]

Defaults: the recommended ResNet34-UNet (width 32, 160 px), 3 repeats.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

PROBE = """
import json, sys, torch
from seglib.engine.fastpath import choose_memory_format
from seglib.engine.runtime import default_amp
model, size, kwargs, batch = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3]), int(sys.argv[4])
cpu = torch.device("cpu")
choice = choose_memory_format(model, kwargs, size, batch, cpu, default_amp(cpu))
print(json.dumps({"channels_last": choice.channels_last, "rates": choice.rates}))
"""


def probe(model: str, size: int, kwargs: str, batch: int) -> dict:
    """One probe in a fresh process with an empty cache: {"channels_last", "rates"}."""
    with tempfile.TemporaryDirectory(prefix="seglib-probe-") as tmp:
        env = {**os.environ, "SEGLIB_PROBE_CACHE": f"{tmp}/fastpath.json"}
        out = subprocess.run(
            [sys.executable, "-c", PROBE, model, str(size), kwargs, str(batch)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    model = sys.argv[1] if len(sys.argv) > 1 else "resnet34_unet"
    size = int(sys.argv[2]) if len(sys.argv) > 2 else 160
    kwargs = sys.argv[3] if len(sys.argv) > 3 else '{"base_channels": 32}'
    repeats = int(sys.argv[4]) if len(sys.argv) > 4 else 3
    print(f"{model} {kwargs} {size} px, a fresh process and cache per probe")
    for rep in range(repeats):
        for batch in (2, 8):
            got = probe(model, size, kwargs, batch)
            rates = got["rates"]
            chosen = "channels_last" if got["channels_last"] else "nchw"
            print(
                f"repeat {rep + 1} batch {batch}: channels_last {rates['channels_last']:.1f}, "
                f"nchw {rates['nchw']:.1f} images/s (cl/nchw {rates['channels_last'] / rates['nchw']:.2f}x) "
                f"-> {chosen}",
                flush=True,
            )


if __name__ == "__main__":
    main()
