"""Where a CPU training step's convolution time goes: each convolution of a model, timed alone in both
memory formats, forward, backward-data (dx) and backward-weights (dw), with the GFLOP/s each reaches.

    .venv/bin/python benchmarks/conv_profile.py --csv docs/performance/conv_profile_zen3.csv

`machine` names the instruction sets the kernels were allowed: ATen's CPU capability and oneDNN's
`ONEDNN_MAX_CPU_ISA`. An AVX-512 CPU run with `ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2` takes
the kernels an AVX2-only CPU (the Zen 3 kind) takes: their relative speeds, not that CPU's absolute ones.
`--totals-csv` also writes each model's seconds per format and pass.

Run it under the allocator seglib trains with (LD_PRELOAD=... jemalloc, see docs/performance.md), on a
quiet machine. Each pass is the best of 2 timed calls after a warm-up, on random tensors at batch 8.
"""

from __future__ import annotations

import argparse
import csv
import os
import time
from collections import OrderedDict

import torch
from torch import nn

from seglib.engine.runtime import cpu_name, native_bf16
from seglib.models import build_model
from seglib.provenance import stamp

aten = torch.ops.aten


def conv_shapes(name: str, size: int) -> OrderedDict:
    """(kind, input shape, weight shape, stride, padding, output_padding) -> how many layers have it."""
    model, found = build_model(name), OrderedDict()

    def hook(mod: nn.Module, inp: tuple, out: torch.Tensor) -> None:
        key = (
            type(mod).__name__,
            tuple(inp[0].shape[1:]),
            tuple(mod.weight.shape),
            mod.stride,
            mod.padding,
            getattr(mod, "output_padding", (0, 0)),
        )
        found[key] = found.get(key, 0) + 1

    for mod in model.modules():
        if isinstance(mod, (nn.Conv2d, nn.ConvTranspose2d)):
            mod.register_forward_hook(hook)
    with torch.no_grad():
        model(torch.randn(1, 3, size, size))
    return found


def _label(key: tuple) -> str:
    """e.g. "Conv2d 64->128 @128": kind, input -> output channels, input size."""
    kind, xs, ws = key[:3]
    out = ws[1] if kind == "ConvTranspose2d" else ws[0]  # ConvTranspose2d's weight is (in, out, kh, kw)
    return f"{kind} {xs[0]}->{out} @{xs[1]}"


def best_of(fn, reps: int = 2) -> float:
    fn()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def time_layer(key: tuple, batch: int, channels_last: bool) -> tuple[dict[str, float], float]:
    """Seconds of forward, dx and dw for one layer, and the forward's FLOPs (dx and dw have as many)."""
    kind, xs, ws, stride, pad, opad = key
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(batch, *xs).contiguous(memory_format=fmt)
    w = (torch.randn(ws) * 0.01).contiguous(memory_format=fmt)
    tr = kind == "ConvTranspose2d"
    args = (stride, pad, (1, 1), tr, opad, 1)
    out = aten.convolution(x, w, None, *args)
    g = torch.randn_like(out)
    sec = {
        "fwd": best_of(lambda: aten.convolution(x, w, None, *args)),
        "dx": best_of(lambda: aten.convolution_backward(g, x, w, None, *args, [True, False, False])),
        "dw": best_of(lambda: aten.convolution_backward(g, x, w, None, *args, [False, True, False])),
    }
    per_out = ws[1] * ws[2] * ws[3]  # multiply-adds per output element (input channels x kernel)
    flops = 2 * (x.numel() if tr else out.numel()) * per_out
    return sec, flops


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="unet:256,resnet34_unet:256,resnet34_unet:96")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--csv", help="also write the rows to this CSV file")
    p.add_argument("--totals-csv", help="also write each model's totals (seconds per format and pass)")
    a = p.parse_args()
    machine = f"{cpu_name()} ({'native bf16' if native_bf16(torch.device('cpu')) else 'without native bf16'})"
    isa = os.environ.get("ONEDNN_MAX_CPU_ISA", "")
    machine += f", ATen {torch.backends.cpu.get_cpu_capability()}" + (
        f", oneDNN at most {isa}" if isa else ""
    )
    print(f"{machine}, torch {torch.__version__}, {torch.get_num_threads()} threads, batch {a.batch}")
    rows, total_rows = [], []
    for spec in a.models.split(","):
        name, size = spec.split(":")
        totals = {f: dict.fromkeys(("fwd", "dx", "dw"), 0.0) for f in ("nchw", "channels_last")}
        for key, count in conv_shapes(name, int(size)).items():
            row = {
                "model": name,
                "size": size,
                "layer": _label(key),
                "count": count,
            }
            for fmt in ("nchw", "channels_last"):
                sec, flops = time_layer(key, a.batch, fmt == "channels_last")
                for k, s in sec.items():
                    totals[fmt][k] += s * count
                    row[f"{fmt}_{k}_s"] = round(s, 4)
                    row[f"{fmt}_{k}_gflops"] = round(flops / s / 1e9, 1)
            rows.append(row)
            print(" | ".join(str(v) for v in row.values()), flush=True)
        for fmt, t in totals.items():
            print(f"{name} {size}px {fmt}: " + ", ".join(f"{k} {v:.2f} s" for k, v in t.items()))
            total = {f"{k}_s": round(v, 2) for k, v in t.items()}
            total_rows.append(
                {"model": name, "size": size, "format": fmt, **total, "total_s": round(sum(t.values()), 2)}
            )
    for path, table in ((a.csv, rows), (a.totals_csv, total_rows)):
        if path:
            write_rows(path, table, machine)


def write_rows(path: str, rows: list[dict], machine: str) -> None:
    """The rows, each stamped with the date, commit, machine and torch version."""
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["date", "commit", "machine", "torch", *rows[0]])
        w.writeheader()
        for r in rows:
            w.writerow({**stamp(), "machine": machine, "torch": torch.__version__, **r})


if __name__ == "__main__":
    main()
