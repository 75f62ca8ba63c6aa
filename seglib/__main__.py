"""`python -m seglib ...` and the `seglib` command: the command line (seglib.cli)."""

import sys
from pathlib import Path

from .allocator import reexec_with_allocator

# The commands that train or run a model start again under jemalloc (allocator.py)
REEXECUTED = ("train", "evaluate", "predict")


def run() -> None:
    """The command line. A command of `REEXECUTED` re-executes itself under jemalloc first, before it
    imports seglib.cli: those imports (torch, albumentations) take seconds, and the new process would
    repeat them."""
    if sys.argv[1:2] and sys.argv[1] in REEXECUTED:
        # started again as it was started: `python -m seglib`, or the installed `seglib` script
        started = ("-m", "seglib") if Path(sys.argv[0]).name == "__main__.py" else (sys.argv[0],)
        reexec_with_allocator(sys.argv[1:], started)
    from .cli import main

    main()


if __name__ == "__main__":
    run()
