"""Whether loader workers started by spawn (macOS, Windows) can load a data set.

Such a worker gets the data set pickled and imports afresh every function and class it names. One defined
in a notebook, or in `python -c`, lives in a `__main__` that the worker cannot import: the worker died at
its start with "Can't get attribute ... on <module '__main__'>" in the log, and the run said only that a
worker had exited (as if the system had killed it for memory). A script's `__main__` the worker runs again,
but not what it defines under `if __name__ == "__main__":`; a package's `__main__.py` it never runs again.
A lambda or a function defined inside another cannot be pickled at all. Under fork (Linux) the workers
inherit all of it, and nothing is checked.
"""

from __future__ import annotations

import ast
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
    if num_workers == 0:
        return
    # not get_start_method(): it would fix this process's method, and a later set_start_method would fail
    method = start_method or mp.get_start_method(allow_none=True) or mp.get_all_start_methods()[0]
    if method == "fork":
        return
    finder = _MainFinder()
    try:
        finder.dump(dataset)
    except (pickle.PicklingError, AttributeError, TypeError) as e:
        finder.failed = str(e)
    except Exception:  # e.g. a multiprocessing.Value, which pickles only while a process is being spawned
        return  # what this cannot tell, the loader finds out
    lacking, where = _lacking_in_workers(finder.found)
    if lacking:
        what = f"{', '.join(f'`{n}`' for n in sorted(lacking))}, defined {where}"
    elif finder.failed:
        what = f"what cannot be sent to worker processes ({finder.failed})"
    else:
        return
    raise ValueError(
        f"num_workers={num_workers}: loader workers start by {method} here (as on macOS and Windows), and the "
        f"data set holds {what}. Define it at the top of a .py file beside the notebook and import it from "
        "there, or set num_workers=0 (TrainConfig, --num_workers, evaluate's num_workers)"
    )


def _lacking_in_workers(found: set[str]) -> tuple[set[str], str]:
    """Of the `__main__` functions and classes (qualified names) that pickling met, those a spawned worker's
    `__main__` will lack, as multiprocessing.spawn prepares it, and where they are defined."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    gone = "in the notebook (its __main__), which worker processes cannot import"
    if spec is not None:  # `python -m name`: imported again by name, unless it is a package's __main__
        if spec.name == "__main__" or spec.name.endswith(".__main__"):
            return found, gone.replace("the notebook", "the program")
        source = spec.origin
    else:  # a script is run again; a notebook's kernel, `python -c` and standard input are not
        source = getattr(main, "__file__", None)
        if source is None or not Path(source).is_file():
            return found, gone
    guarded = _defined_under_main_guard(source) if found else set()
    lacking = {name for name in found if name.split(".")[0] in guarded}
    return lacking, f'under `if __name__ == "__main__":` in {source}, which worker processes skip'


def _defined_under_main_guard(path: str | None) -> set[str]:
    """The functions and classes a script defines only under `if __name__ == "__main__":` (which a worker
    running it again as `__mp_main__` skips)."""
    try:
        tree = ast.parse(Path(str(path)).read_text())
    except (OSError, SyntaxError, ValueError):
        return set()
    guarded: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.If) and _is_main_guard(node.test):
            guarded |= {d.name for d in ast.walk(node) if isinstance(d, _DEFINITIONS)}
    elsewhere = {d.name for d in tree.body if isinstance(d, _DEFINITIONS)}
    return guarded - elsewhere


_DEFINITIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def _is_main_guard(test: ast.expr) -> bool:
    return (
        isinstance(test, ast.Compare)
        and isinstance(test.left, ast.Name)
        and test.left.id == "__name__"
        and len(test.comparators) == 1
        and isinstance(test.comparators[0], ast.Constant)
        and test.comparators[0].value == "__main__"
    )


class _Sink:
    def write(self, data: Any) -> None:  # the pickle itself is not wanted, only what it names
        pass


class _MainFinder(pickle.Pickler):
    """Pickles to nowhere, noting the functions and classes of `__main__` it meets."""

    def __init__(self) -> None:
        # protocol 5 with a buffer_callback: arrays' data goes nowhere instead of being copied
        super().__init__(_Sink(), protocol=5, buffer_callback=lambda _: None)
        self.found: set[str] = set()
        self.failed = ""

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, (types.FunctionType, type)) and getattr(obj, "__module__", None) == "__main__":
            self.found.add(getattr(obj, "__qualname__", repr(obj)))
        return NotImplemented
