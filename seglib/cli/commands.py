"""`python -m seglib ...`: the command dispatched, its warnings and errors said as a command line says
them."""

from __future__ import annotations

import argparse
import os
import re
import signal
import sys
import warnings
from pathlib import Path
from typing import Any

from ..allocator import reexec_with_allocator
from ..data import download
from ..engine import loaders
from ..engine.distributed import RANK_0_FAILED
from ..engine.export import check_export, export_model
from ..pipes import quiet_when_reader_ends
from .evaluate import run as _evaluate
from .parser import parse_args
from .predict import run as _predict
from .train import run as _train


def _export(a: argparse.Namespace) -> None:
    path = export_model(a.model_path, a.output, a.format, a.opset)
    print(f"exported {a.model_path} to {path} ({path.stat().st_size / 1e6:.1f} MB)")
    if not a.no_check:
        diff = check_export(path, a.model_path)["max_abs_diff"]
        print(f"check: the largest logit difference from the checkpoint on random images is {diff:.2e}")


def _plain_warning(message: Warning | str, category: type[Warning], *args: Any, **kwargs: Any) -> str:
    """A warning as the command line says it: one line, without the source line that raised it."""
    return f"seglib: warning: {_as_options(str(message))}\n"


# The data's messages name its settings as Python and the notebooks take them (mask_values=">127"); the
# command line takes them as options.
_SETTING = re.compile(r"""\b(mask_values|on_corrupt)=("[^"]*"|'[^']*')""")


def _as_options(message: str) -> str:
    """`message` with `mask_values="V"` and `on_corrupt='skip'` spelt as options: `--mask_values "V"`,
    `--on_corrupt skip`."""

    def option(m: re.Match[str]) -> str:
        value = m[2] if m[1] == "mask_values" else m[2][1:-1]  # quoted: ">127" and "#ff0000" need it
        return f"--{m[1]} {value}"

    return _SETTING.sub(option, message)


# train's Ctrl-C that is not fit's TrainingInterrupted: before the run's first save, or a second during a save
UNSAVED = (
    "It stopped before saving where it stood: resume from the run folder's last.pt if it has one "
    "(its last saved epoch; --resume RUN_FOLDER), else run the command again"
)


class _Terminated:
    """Whether SIGTERM (a batch scheduler's time limit, scancel, kill) stopped this command."""

    seen = False


def _terminate_as_interrupt() -> None:
    """Make SIGTERM stop a training as Ctrl-C does: at the next step boundary, with last.pt saved and the
    resume command said (a batch scheduler waits some 30 s between SIGTERM and SIGKILL); before, SIGTERM
    killed it at once, with no word and nothing saved since the last epoch. A second SIGTERM, as a second
    Ctrl-C, stops it at once. Not under torchrun with several processes: torchrun stops the others with
    SIGTERM when one fails, and they wait for no step boundary then."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return

    def handler(signum: int, frame: Any) -> None:
        _Terminated.seen = True
        sigint = signal.getsignal(signal.SIGINT)  # fit's deferred handler while it trains
        if not callable(sigint):
            raise KeyboardInterrupt
        sigint(signal.SIGINT, frame)

    signal.signal(signal.SIGTERM, handler)
    loaders.WORKERS_LEAVE_SIGTERM = True  # the job's SIGTERM reaches them too: the main process stops them


def _speaks() -> bool:
    """Whether this process says how the command ended: one process a node under torchrun (LOCAL_RANK 0:
    rank 0 on one node), so that each node's terminal says why its processes stopped; any other process."""
    return os.environ.get("LOCAL_RANK", os.environ.get("RANK", "0")) == "0"


def _says_rank_0s(e: BaseException) -> bool:
    """Whether this rank says rank 0's error: rank 1 does, as torchrun stops rank 0 (SIGTERM) once another
    rank has exited, often before rank 0 has said it (a run another job took first: nothing was said)."""
    return os.environ.get("RANK") == "1" and str(e).startswith(RANK_0_FAILED)


def main(argv: list[str] | None = None) -> None:
    a = parse_args(argv)
    out = getattr(a, "output_dir", None)
    if out is not None and Path(out).exists() and not Path(out).is_dir():  # else a bare "File exists"
        sys.exit(f"seglib {a.command}: error: --output_dir {out} is a file; give a folder (made if missing)")
    if argv is None:  # the command line's process, not a caller's (tests, notebooks)
        warnings.formatwarning = _plain_warning
        quiet_when_reader_ends()  # `seglib train ... | head`: the training goes on
    if argv is None and a.command in ("train", "evaluate", "predict"):
        # From the command line: start again under jemalloc when installed (seglib/allocator.py); it
        # keeps the big activation buffers that glibc gives back to the OS at every step. seglib's
        # __main__ has done so before these imports; this is for a `seglib` command installed before it.
        reexec_with_allocator(sys.argv[1:])
    if argv is None and a.command == "train":
        _terminate_as_interrupt()
    try:
        {
            "train": _train,
            "evaluate": _evaluate,
            "predict": _predict,
            "export": _export,
            "download": lambda a: download(a.data_path),
        }[a.command](a)
    except SystemExit as e:  # an option's message (sys.exit(text)): named with its command, as errors below
        if isinstance(e.code, str) and not e.code.startswith("seglib "):
            sys.exit(f"seglib {a.command}: error: {e.code}")
        raise
    except KeyboardInterrupt as e:  # TrainingInterrupted says where last.pt is and how to resume
        how = "stopped by SIGTERM (a time limit, scancel or kill)" if _Terminated.seen else "interrupted"
        if _speaks():  # under torchrun every rank stops; one a node says so
            print(
                f"seglib {a.command}: {how}. {str(e) or (UNSAVED if a.command == 'train' else '')}",
                file=sys.stderr,
            )
        sys.exit(128 + signal.SIGTERM if _Terminated.seen else 130)
    except (ValueError, OSError, RuntimeError, FloatingPointError, ImportError) as e:
        if not _speaks() and not _says_rank_0s(e):
            sys.exit(1)  # under torchrun every rank has it; one a node says it
        sys.exit(f"seglib {a.command}: error: {_as_options(str(e))}")
