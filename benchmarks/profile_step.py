"""Where one training step's device time goes, by torch.profiler: kernel categories, top kernels, modules.

It builds the model (`seglib.models.build_model`), AdamW (lr 1e-4, fused as `fit` trains) and the training loss
(`seglib.engine.losses.bce_loss`, BCEWithLogits), feeds one random batch of the given size again and
again (no data loading: this is the model's step alone), warms up, then profiles `--steps` full steps
(zero_grad, forward, loss, backward, optimizer.step) with `torch.profiler.profile`. On CUDA the model
and input are channels_last, the step runs under bf16 autocast and `cudnn.benchmark` is on (seglib's
GPU path); on the CPU it is fp32 NCHW. `--compile` wraps the model in `torch.compile`.

What it measures: on CUDA the GPU kernels' time (each kernel once, as its launching op records it); on
the CPU each op's self CPU time. It prints, per step:

1. the time by category (conv, batchnorm, elementwise, copy/cat/pad, pool/upsample, optimizer,
   loss/other) and each one's share of the step's profiled time (the shares sum to 1),
2. the phases (zero_grad, forward, loss, backward, optimizer),
3. the top 15 kernels (CUDA) or ops (CPU) by self time, with ms and calls per step,
4. the modules (not with --compile): the model's children and grandchildren (for the ResNet34-UNet
   `encoder.conv1`, the 7x7 stem, `encoder.layer1..4`, `decN.up`, `decN.conv`, `final_up`, `head`),
   forward and backward apart, plus `loss` and `optimizer`,
5. images/s of the profiled steps (batch * steps / wall time); the profiler adds overhead, so this is
   lower than an unprofiled step (benchmarks/gpu.sh, seglib.bench measure those).

Categories (`category`): the first rule that matches, case-insensitive. Everything under the
optimizer's step or zero_grad is "optimizer" and everything the loss computes (forward and backward)
is "loss/other"; the rest goes by the kernel's name on CUDA (the op's on the CPU), in this order
(`RULES`): cuDNN's layout transposes (nchwToNhwc, nhwcToNchw) -> copy/cat/pad; batch_norm, bn_,
welford -> batchnorm; conv, cudnn, implicit gemm, xmma (sm90_xmma...), wgrad, dgrad, fprop, gemm,
cutlass -> conv (the models have no Linear layer, so every GEMM is a convolution's; ConvTranspose2d
counts as conv; never for torch.compile's fused triton_poi/red/per kernels, which are named after the
ops they fuse, but for triton_tem templates); copy, cat, pad, contiguous, transpose, memcpy, clone,
to -> copy/cat/pad; pool, upsample -> pool/upsample; adam, foreach, multi_tensor -> optimizer;
relu, clamp, threshold, add, mul, sub, div, elementwise, where, fill, memset, zero, sigmoid, dropout
-> elementwise; anything else (reductions, allocations, the autograd engine's own time) ->
loss/other. A fused kernel goes to its first match: under --compile
a fused batch_norm + relu kernel counts as batchnorm.

Modules: each op inside a module's forward counts for the innermost labelled module around it; each
backward op for the module whose forward op made its autograd node (matched by sequence number), as
torch.profiler's own backward stack traces do. Ops at a module's edge can land on a neighbour.

On the GPU box (seglib importable, e.g. PYTHONPATH=/path/to/checkout):

    python benchmarks/profile_step.py --device cuda --model resnet34_unet --image_size 256 \\
        --batch_size 8 --csv results/profile-resnet34_unet-256.csv --trace results/profile-r34.json
    python benchmarks/profile_step.py --device cuda --model unet --image_size 256 --batch_size 8 \\
        --csv results/profile-unet-256.csv
    python benchmarks/profile_step.py --device cuda --model resnet34_unet --compile ...

On a CPU (a smoke run): `.venv/bin/python benchmarks/profile_step.py --device cpu --model
resnet34_unet --image_size 64 --batch_size 2`. The CSV has one row per category, phase, top op and
module (column `table`), each with the date, commit, machine, torch version and settings; figures go
to docs/performance.md with the date and the machine they were measured on. `--trace PATH` writes a
Chrome trace (chrome://tracing, ui.perfetto.dev).
"""

from __future__ import annotations

import argparse
import csv
import re
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile, record_function

REPO = Path(__file__).resolve().parents[1]
try:
    import seglib  # noqa: F401
except ImportError:  # run from a checkout that is not installed: python benchmarks/profile_step.py
    sys.path.insert(0, str(REPO))

from seglib.models import MODELS, build_model  # noqa: E402  (torch only; seglib.engine loads in main)
from seglib.provenance import stamp  # noqa: E402  (standard library only)

CATEGORIES = ("conv", "batchnorm", "elementwise", "copy/cat/pad", "pool/upsample", "optimizer", "loss/other")
PHASES = ("zero_grad", "forward", "loss", "backward", "optimizer")
MODULE_PREFIX, STEP_PREFIX = "module::", "step::"  # the record_function ranges this script opens
AUTOGRAD = "(autograd engine)"  # backward work of no module: AccumulateGrad of parameters, the seed gradient


def _word(w: str) -> str:
    """`w` not inside a longer word of letters (underscores and digits do not count: _cat_, ::bn_)."""
    return rf"(?<![a-z]){w}(?![a-z])"


# (category, regex) on the lower-cased kernel (CUDA) or op (CPU) name; the first match wins.
RULES: tuple[tuple[str, re.Pattern], ...] = tuple(
    (cat, re.compile(rx))
    for cat, rx in (
        ("loss/other", rf"^({MODULE_PREFIX}|{STEP_PREFIX})"),  # our ranges' own (Python) time
        ("copy/cat/pad", r"nchwtonhwc|nhwctonchw|nchw2nhwc|nhwc2nchw"),  # before "cudnn" below
        ("batchnorm", rf"batch_?norm|{_word('bn')}_|welford"),
        ("conv", r"conv|cudnn|implicit_?gemm|xmma|wgrad|dgrad|fprop|gemm|cutlass|winograd"),
        (
            "copy/cat/pad",
            rf"copy|{_word('cat')}|catarray|concat|pad|contiguous|transpose|memcpy|clone|{_word('to')}",
        ),
        ("pool/upsample", r"pool|upsample|interpolate"),
        ("optimizer", r"adam|foreach|multi_tensor"),
        (
            "elementwise",
            r"relu|clamp|threshold|add|mul|sub|div|elementwise|where|fill|memset|zero|sigmoid|dropout",
        ),
    )
)
_FUSED_TRITON = re.compile(r"^triton_(poi|red|per)_")  # inductor's fused kernels: never a convolution


def category(name: str, phase: str = "", module: str = "") -> str:
    """The category of a kernel (or CPU op) `name`, launched in `phase` for `module` (see the docstring)."""
    if phase in ("optimizer", "zero_grad"):
        return "optimizer"
    if module == "loss" or phase == "loss":
        return "loss/other"
    low = name.lower()
    for cat, rx in RULES:
        if cat == "conv" and _FUSED_TRITON.match(low):
            continue
        if rx.search(low):
            return cat
    return "loss/other"


# --- torch.profiler's API across versions ----------------------------------------------------------


def self_device_us(evt) -> float:
    """Self device time of a FunctionEvent(Avg) in us: `self_device_time_total` (torch >= 2.4), else
    the older `self_cuda_time_total` (deprecated since, with a FutureWarning)."""
    if hasattr(evt, "self_device_time_total"):
        return float(evt.self_device_time_total)
    return float(evt.self_cuda_time_total)


def annotations(events: Iterable) -> set[str]:
    """Names of the record_function ranges (ours, the optimizer's, ProfilerStep#N): recent torch mirrors
    them on the GPU timeline as device events ("gpu_user_annotation") that span kernels, not kernels."""
    names = {e.name for e in events if getattr(e, "is_user_annotation", False)}
    return names | {e.name for e in events if e.name.startswith((MODULE_PREFIX, STEP_PREFIX, "ProfilerStep"))}


def is_device_event(evt, skip: set[str]) -> bool:
    """A kernel, memcpy or memset on the GPU: not a CPU op, nor a range named in `skip` (annotations)."""
    if evt.device_type == DeviceType.CPU or getattr(evt, "is_user_annotation", False):
        return False
    return (evt.key if hasattr(evt, "key") else evt.name) not in skip


# --- the step ----------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    p.add_argument("--model", choices=sorted(MODELS), default="resnet34_unet")
    p.add_argument("--base_channels", type=int, default=None, help="UNet's width (default the model's, 64)")
    p.add_argument("--image_size", type=int, default=256)
    p.add_argument("--batch_size", type=int, default=8)
    p.add_argument("--warmup", type=int, default=None, help="steps before profiling (default 5 CUDA, 1 CPU)")
    p.add_argument("--steps", type=int, default=None, help="profiled steps (default 10 CUDA, 2 CPU)")
    p.add_argument("--compile", action="store_true", help="wrap the model in torch.compile")
    p.add_argument("--top", type=int, default=15, help="how many kernels/ops to list")
    p.add_argument("--csv", type=Path, default=None, help="write the tables here")
    p.add_argument("--trace", type=Path, default=None, help="write a Chrome trace here")
    args = p.parse_args(argv)
    if args.base_channels is not None and args.model != "unet":
        p.error("--base_channels is UNet's option")
    cuda = args.device == "cuda"
    args.warmup = (5 if cuda else 1) if args.warmup is None else args.warmup
    args.steps = (10 if cuda else 2) if args.steps is None else args.steps
    if args.steps < 1 or args.warmup < 0 or args.image_size < 1 or args.batch_size < 1:
        p.error("--steps, --image_size and --batch_size must be >= 1, --warmup >= 0")
    return args


def module_labels(model: nn.Module, depth: int = 2) -> list[tuple[str, nn.Module]]:
    """The modules to time: children and grandchildren, not the numbered members of a Sequential."""
    out = []
    for name, mod in model.named_modules():
        parts = name.split(".") if name else []
        if 1 <= len(parts) <= depth and not (len(parts) > 1 and parts[-1].isdigit()):
            out.append((name, mod))
    return out


def label_modules(model: nn.Module) -> list[str]:
    """Open a record_function range "module::<name>" around each labelled module's forward."""
    labels = []
    for name, mod in module_labels(model):
        stack: list[AbstractContextManager] = []

        def pre(_m, _inp, label=MODULE_PREFIX + name, stack=stack):
            rf = record_function(label)
            rf.__enter__()
            stack.append(rf)

        def post(_m, _inp, _out, stack=stack):
            stack.pop().__exit__(None, None, None)

        mod.register_forward_pre_hook(pre)
        mod.register_forward_hook(post)
        labels.append(name)
    return labels


def make_step(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor, cuda: bool):
    from seglib.engine.losses import bce_loss  # the training loss: BCEWithLogits, in fp32 under autocast

    amp = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if cuda else nullcontext

    def step() -> None:
        with record_function(STEP_PREFIX + "zero_grad"):
            opt.zero_grad(set_to_none=True)
        with amp():
            with record_function(STEP_PREFIX + "forward"):
                logits = model(x)
            with record_function(STEP_PREFIX + "loss"):
                loss = bce_loss(logits, y)
        with record_function(STEP_PREFIX + "backward"):
            loss.backward()
        with record_function(STEP_PREFIX + "optimizer"):
            opt.step()

    return step


# --- attribution -------------------------------------------------------------------------------------


@dataclass
class Unit:
    """One piece of device time: a kernel (CUDA) or an op's self time (CPU)."""

    name: str  # the kernel's (CUDA) or op's (CPU) name
    op: str  # the CPU op that launched it (CUDA), its own name (CPU)
    us: float
    phase: str
    module: str


def _context(evt, memo: dict[int, tuple]) -> tuple[str | None, str | None, object]:
    """(innermost module label, step phase, backward node) of a CPU event, from its ancestors."""
    key = id(evt)
    if key in memo:
        return memo[key]
    name = evt.name
    if name.startswith(MODULE_PREFIX):
        mine: tuple = (name[len(MODULE_PREFIX) :], None, None)
    elif name.startswith(STEP_PREFIX):
        mine = (None, name[len(STEP_PREFIX) :], None)
    elif getattr(evt, "scope", 0) == 1:  # RecordScope.BACKWARD_FUNCTION: an autograd node running
        mine = (None, None, evt)
    elif name.startswith("autograd::engine::evaluate_function"):  # a node and the engine's work for it
        nodes = [c for c in evt.cpu_children if getattr(c, "scope", 0) == 1]
        mine = (None, None, nodes[0] if nodes else None)
    else:
        mine = (None, None, None)
    parent = evt.cpu_parent
    if parent is not None:
        pm, pp, pb = _context(parent, memo)
        mine = (mine[0] or pm, mine[1] or pp, mine[2] or pb)
    memo[key] = mine
    return mine


def attribute(events: Iterable, cuda: bool) -> list[Unit]:
    """The step's device time as Units, each with its phase and module (see the module docstring)."""
    events = list(events)
    skip = annotations(events)
    memo: dict[int, tuple] = {}
    cpu_events = [e for e in events if e.device_type == DeviceType.CPU and not e.is_async]
    fwd_module: dict[tuple[int, int], str] = {}  # (sequence_nr, thread) of a forward op -> its module
    for e in cpu_events:
        module, phase, bw = _context(e, memo)
        if bw is None and e.sequence_nr >= 0 and phase in ("forward", "loss"):
            fwd_module.setdefault(
                (e.sequence_nr, e.thread), "loss" if phase == "loss" else module or "(model)"
            )
    units: list[Unit] = []
    attached: dict[str, float] = defaultdict(float)
    for e in cpu_events:
        module, phase, bw = _context(e, memo)
        if bw is not None:
            fwd_thread = getattr(bw, "fwd_thread", None) or bw.thread
            module, phase = fwd_module.get((bw.sequence_nr, fwd_thread), AUTOGRAD), "backward"
        elif phase in ("optimizer", "zero_grad"):
            module = "optimizer"
        elif phase == "loss":
            module = "loss"
        elif phase == "backward":  # the engine's own work outside any node: the loss's seed gradient
            module = AUTOGRAD
        phase = phase or "(outside the step)"
        module = module or ("(model)" if phase == "forward" else "(unattributed)")
        if cuda:
            for k in e.kernels:
                if k.name in skip:  # an annotation's GPU range, attached like a kernel
                    continue
                units.append(Unit(k.name, e.name, float(k.duration), phase, module))
                attached[k.name] += float(k.duration)
        elif e.self_cpu_time_total > 0:
            units.append(Unit(e.name, e.name, float(e.self_cpu_time_total), phase, module))
    if cuda:  # kernels no CPU op claimed (launched outside any op): by name, so that none is lost
        total: dict[str, float] = defaultdict(float)
        for e in events:
            if is_device_event(e, skip):
                total[e.name] += e.time_range.elapsed_us()
        for name, us in total.items():
            if us - attached.get(name, 0.0) > 0.5:
                units.append(
                    Unit(
                        name, "(no CPU op)", us - attached.get(name, 0.0), "(unattributed)", "(unattributed)"
                    )
                )
    return units


# --- tables ------------------------------------------------------------------------------------------


def top_ops(prof, cuda: bool, steps: int, n: int, units: list[Unit]) -> list[dict]:
    """The n kernels (CUDA) or ops (CPU) of most self time, from key_averages(); shares of the units'
    total, as the categories'."""
    skip = annotations(prof.events())
    launcher: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for u in units:
        launcher[u.name][u.op] += u.us
    rows = []
    for avg in prof.key_averages():
        if cuda:
            if not is_device_event(avg, skip):
                continue
            us = self_device_us(avg)
        else:
            if avg.device_type != DeviceType.CPU:
                continue
            us = float(avg.self_cpu_time_total)
        if us <= 0:
            continue
        ops = launcher.get(avg.key, {})
        rows.append(
            {
                "name": avg.key,
                "us": us,
                "calls": avg.count,
                "launched_by": max(ops, key=ops.get) if cuda and ops else "",
            }
        )
    rows.sort(key=lambda r: -r["us"])
    total = sum(u.us for u in units) or 1.0
    return [
        dict(r, ms_per_step=r["us"] / 1e3 / steps, share=r["us"] / total, calls_per_step=r["calls"] / steps)
        for r in rows[:n]
    ]


def grouped(units: list[Unit], key, order: Iterable[str], steps: int) -> list[dict]:
    """ms per step, share and calls per step of the units grouped by key(unit), in `order` first."""
    us: dict[str, float] = defaultdict(float)
    calls: dict[str, int] = defaultdict(int)
    for u in units:
        us[key(u)] += u.us
        calls[key(u)] += 1
    total = sum(us.values()) or 1.0
    names = [k for k in order if k in us] + sorted(k for k in us if k not in order)
    return [
        {
            "name": k,
            "ms_per_step": us[k] / 1e3 / steps,
            "share": us[k] / total,
            "calls_per_step": calls[k] / steps,
        }
        for k in names
    ]


def module_rows(units: list[Unit], labels: list[str], steps: int) -> list[dict]:
    """Per module: forward and backward ms per step, both together and their share of the step."""
    fwd: dict[str, float] = defaultdict(float)
    bwd: dict[str, float] = defaultdict(float)
    for u in units:
        (bwd if u.phase == "backward" else fwd)[u.module] += u.us
    total = (sum(fwd.values()) + sum(bwd.values())) or 1.0
    order = [*labels, "(model)", "loss", AUTOGRAD, "optimizer"]
    names = [k for k in order if k in fwd or k in bwd] + sorted((set(fwd) | set(bwd)) - set(order))
    return [
        {
            "name": k,
            "forward_ms": fwd[k] / 1e3 / steps,
            "backward_ms": bwd[k] / 1e3 / steps,
            "ms_per_step": (fwd[k] + bwd[k]) / 1e3 / steps,
            "share": (fwd[k] + bwd[k]) / total,
        }
        for k in names
    ]


def _short(name: str, width: int) -> str:
    return name if len(name) <= width else name[: width - 3] + "..."


def print_table(title: str, rows: list[dict], cols: list[tuple[str, str, str]], width: int = 60) -> None:
    """cols: (key, header, format); the first column is the name."""
    print(f"\n{title}")
    print(f"  {'':<{width}}" + "".join(f"{h:>12}" for _, h, _ in cols))
    for r in rows:
        cells = "".join(f"{format(r[k], f) if r.get(k, '') != '' else '':>12}" for k, _, f in cols)
        print(f"  {_short(r['name'], width):<{width}}{cells}")


# --- run ---------------------------------------------------------------------------------------------


def machine(device: torch.device) -> str:
    from seglib.engine.runtime import cpu_name, native_bf16

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    bf16 = "with" if native_bf16(torch.device("cpu")) else "without"
    threads = torch.get_num_threads()
    return f"{cpu_name()} ({bf16} native bf16, {threads} thread{'s' if threads != 1 else ''})"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: no CUDA device here; use --device cpu", file=sys.stderr)
        return 2
    device = torch.device(args.device)
    step, sync, labels = build(args, device)
    prof, wall = profiled(step, sync, args.warmup, args.steps, device.type == "cuda")
    tables, busy_ms = summarize(prof, labels, args)
    meta = report(tables, busy_ms, wall, machine(device), args)
    if args.csv:
        write_csv(args.csv, meta, tables)
        print(f"wrote {args.csv}")
    if args.trace:
        args.trace.parent.mkdir(parents=True, exist_ok=True)
        prof.export_chrome_trace(str(args.trace))
        print(f"wrote {args.trace}")
    return 0


def build(
    args: argparse.Namespace, device: torch.device
) -> tuple[Callable[[], None], Callable[[], None], list]:
    """The step to profile (seglib's GPU path on CUDA, fp32 NCHW on the CPU), a device sync, and the
    module labels (none under --compile)."""
    cuda = device.type == "cuda"
    torch.manual_seed(0)
    kwargs = {} if args.base_channels is None else {"base_channels": args.base_channels}
    model = build_model(args.model, **kwargs).to(device).train()
    fmt = torch.channels_last if cuda else torch.contiguous_format
    if cuda:
        torch.backends.cudnn.benchmark = True
        model = model.to(memory_format=torch.channels_last)
    labels = [] if args.compile else label_modules(model)
    from seglib.engine.optimizer import build_optimizer  # fit's AdamW: fused on the CPU and CUDA

    opt = build_optimizer(model.parameters(), 1e-4, 1e-4)
    net = torch.compile(model) if args.compile else model
    size, batch = args.image_size, args.batch_size
    x = torch.randn(batch, 3, size, size, device=device).contiguous(memory_format=fmt)
    y = (torch.rand(batch, 1, size, size, device=device) > 0.5).float()
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    return make_step(net, opt, x, y, cuda), sync, labels


def profiled(
    step: Callable[[], None], sync: Callable[[], None], warmup: int, steps: int, cuda: bool
) -> tuple[profile, float]:
    """`warmup` steps, then `steps` steps under torch.profiler: the profile and its wall seconds."""
    for _ in range(warmup):
        step()
    sync()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        start = time.perf_counter()
        for _ in range(steps):
            step()
        sync()
        wall = time.perf_counter() - start
    return prof, wall


def summarize(prof: profile, labels: list, args: argparse.Namespace) -> tuple[dict[str, list[dict]], float]:
    """The tables of a profile, per step (by category, phase, top op and module), and the profiled
    time of a step in ms."""
    cuda, steps = args.device == "cuda", args.steps
    units = attribute(prof.events(), cuda)
    tables = {
        "category": grouped(units, lambda u: category(u.name, u.phase, u.module), CATEGORIES, steps),
        "phase": grouped(units, lambda u: u.phase, PHASES, steps),
        "op": top_ops(prof, cuda, steps, args.top, units),
        "module": module_rows(units, labels, steps) if labels else [],
    }
    return tables, sum(u.us for u in units) / 1e3 / steps


def report(
    tables: dict[str, list[dict]], busy_ms: float, wall: float, where: str, args: argparse.Namespace
) -> dict[str, object]:
    """Print the tables; return the CSV's columns that every row shares."""
    cuda, steps, size, batch = args.device == "cuda", args.steps, args.image_size, args.batch_size
    wall_ms, images_s = wall * 1e3 / steps, batch * steps / wall
    what = "GPU kernel time" if cuda else "self CPU time"
    mode = "channels_last bf16 autocast" if cuda else "fp32 NCHW"
    print(
        f"{args.model} {size}px batch {batch} on {where}, {mode}{', torch.compile' if args.compile else ''}, "
        f"torch {torch.__version__}; {args.warmup} warm-up steps, {steps} profiled"
    )
    cols = [
        ("ms_per_step", "ms/step", ".3f"),
        ("share", "share", ".1%"),
        ("calls_per_step", "calls/step", ".1f"),
    ]
    print_table(f"By category ({what}):", tables["category"], cols)
    print_table("By phase:", tables["phase"], cols)
    tops = tables["op"]
    kind = "kernels" if cuda else "ops"
    print_table(f"Top {len(tops)} {kind} by self {'device' if cuda else 'CPU'} time:", tops, cols, width=80)
    if cuda:
        launched = "; ".join(f"{_short(t['name'], 40)} <- {t['launched_by']}" for t in tops[:5])
        print("\n  launched by: " + launched)
    if tables["module"]:
        mcols = [("forward_ms", "fwd ms", ".3f"), ("backward_ms", "bwd ms", ".3f"), *cols[:2]]
        title = "By module (forward ops by module; backward ops by the forward op of their node):"
        print_table(title, tables["module"], mcols)
    else:
        print("\nBy module: not with --compile (inductor fuses across modules)")
    busy = f" (the GPU busy {busy_ms / wall_ms:.0%} of the wall time)" if cuda else ""
    print(
        f"\n{what} {busy_ms:.2f} ms/step; wall {wall_ms:.2f} ms/step{busy}, {images_s:.1f} images/s over "
        "the profiled steps (the profiler adds overhead: an unprofiled step is faster)"
    )
    return {
        **stamp(),
        "machine": where,
        "torch": torch.__version__,
        "device": args.device,
        "model": args.model,
        "image_size": size,
        "batch_size": batch,
        "compile": args.compile,
        "steps": steps,
        "wall_ms_per_step": round(wall_ms, 3),
        "images_per_s": round(images_s, 3),
    }


def write_csv(path: Path, meta: dict[str, object], tables: dict[str, list[dict]]) -> None:
    """One row per category, phase, top op and module (column `table`), each with `meta`'s columns."""
    fields = [*meta, "table", "name", "ms_per_step", "share", "calls_per_step", "forward_ms", "backward_ms"]
    fields.append("launched_by")
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        for table in ("category", "phase", "op", "module"):
            for r in tables[table]:
                w.writerow({**meta, "table": table, **{k: _round(v) for k, v in r.items()}})


def _round(v):
    return round(v, 5) if isinstance(v, float) else v


if __name__ == "__main__":
    sys.exit(main())
