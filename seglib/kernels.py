"""How the workbook's Jupyter kernels talk to their manager (encrypted or over local sockets, quietly)
and how they end.

By default a kernel's ZMQ sockets are plain TCP on 127.0.0.1, and ipykernel says so at every start
("Kernel is running over TCP without encryption ..."), which users read as a problem. The workbook's
runner (`seglib.workbook.run_workbook`) and its JupyterLab (`make lab`, `.jupyter/jupyter_server_config.py`)
start their kernels with these settings instead. Only that warning goes: every other one stays visible.
Light on purpose (no torch): the JupyterLab server imports it.
"""

from __future__ import annotations

import atexit
import gc
from typing import Any

__all__ = ["end_kernel_quickly", "kernel_manager_settings"]


def kernel_manager_settings() -> dict[str, Any]:
    """`KernelManager` trait values: CurveZMQ encryption where pyzmq and jupyter_client have it (the
    kernel spec must declare it, as ipykernel's does), else IPC sockets, else none (TCP, as before)."""
    import zmq
    from jupyter_client import KernelManager

    if zmq.has("curve") and "transport_encryption" in KernelManager.class_trait_names():
        return {"transport_encryption": "auto"}
    if zmq.has("ipc"):
        return {"transport": "ipc"}
    return {}


def end_kernel_quickly() -> None:
    """At this kernel's exit, leave the libraries' objects to the operating system (once per process).

    At exit Python tears its modules down and runs the cycle collector over every object still alive,
    several times: with torch, pandas and matplotlib loaded that takes longer than most cells, and
    papermill counts a notebook done only when its kernel has exited. The exit handler this registers
    first clears IPython's user namespace (as IPython's own exit handler, which runs after it, does),
    collects the garbage once (so the notebook's objects, cycles too, are finalized as before: open
    files flushed), then freezes what is left (modules and what they hold) out of the collector's
    reach. The other exit handlers still run. Outside IPython the handler does nothing.
    """
    global _exit_registered
    if not _exit_registered:
        atexit.register(_release_then_freeze)
        _exit_registered = True


_exit_registered = False


def _release_then_freeze() -> None:
    from IPython import get_ipython

    shell = get_ipython()
    if shell is None:
        return
    shell.reset(new_session=False)
    gc.collect()
    gc.freeze()
