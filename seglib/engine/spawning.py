"""Whether loader workers started by spawn (macOS, Windows) can load a data set.

Such a worker gets the data set pickled and imports afresh every function and class it names. One defined
in a notebook, or in `python -c`, lives in a `__main__` that the worker cannot import: the worker died at
its start with "Can't get attribute ... on <module '__main__'>" in the log, and the run said only that a
worker had exited (as if the system had killed it for memory). A lambda or a function defined inside
another cannot be pickled at all. Under fork (Linux) the workers inherit them, and nothing is checked.
"""

from __future__ import annotations

import pickle
import sys
import types
from pathlib import Path
from typing import Any

import torch.multiprocessing as mp

__all__ = ["check_workers_can_load"]


def check_workers_can_load(dataset: Any, num_workers: int, start_method: str | None = None) -> None:
    """Raise ValueError, naming what and what to do, where `num_workers` worker processes started by
    `start_method` (None: this process's) cannot load `dataset`."""
    method = start_method or mp.get_start_method()
    if num_workers == 0 or method == "fork":
        return
    unimportable = not _main_importable()
    finder = _MainFinder(unimportable)
    try:
        finder.dump(dataset)
    except (pickle.PicklingError, AttributeError, TypeError) as e:
        finder.failed = str(e)
    if finder.found:
        names = ", ".join(f"`{n}`" for n in sorted(finder.found))
        what = f"{names}, defined in the notebook (its __main__), which worker processes cannot import"
    elif finder.failed:
        what = f"what cannot be sent to worker processes ({finder.failed})"
    else:
        return
    raise ValueError(
        f"num_workers={num_workers}: loader workers start by {method} here (as on macOS and Windows), and the "
        f"data set holds {what}. Define it in a .py file beside the notebook and import it from there, or set "
        "num_workers=0 (TrainConfig, --num_workers, evaluate's num_workers)"
    )


def _main_importable() -> bool:
    """Whether a spawned process can run `__main__` again to find its names: a script file can; a
    notebook's kernel, `python -c` and standard input cannot."""
    main = sys.modules.get("__main__")
    file = getattr(main, "__file__", None)
    return getattr(main, "__spec__", None) is not None or (file is not None and Path(file).is_file())


class _Sink:
    def write(self, data: Any) -> None:  # the pickle itself is not wanted, only what it names
        pass


class _MainFinder(pickle.Pickler):
    """Pickles to nowhere, noting the functions and classes of an unimportable `__main__` it meets."""

    def __init__(self, main_unimportable: bool) -> None:
        # protocol 5 with a buffer_callback: arrays' data goes nowhere instead of being copied
        super().__init__(_Sink(), protocol=5, buffer_callback=lambda _: None)
        self.main_unimportable = main_unimportable
        self.found: set[str] = set()
        self.failed = ""

    def reducer_override(self, obj: Any) -> Any:
        in_main = (
            isinstance(obj, (types.FunctionType, type)) and getattr(obj, "__module__", None) == "__main__"
        )
        if in_main and self.main_unimportable:
            self.found.add(getattr(obj, "__qualname__", repr(obj)))
        return NotImplemented
