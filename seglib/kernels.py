"""How the workbook's Jupyter kernels talk to their manager (encrypted or over local sockets, quietly)
and how they end.

By default a kernel's ZMQ sockets are plain TCP on 127.0.0.1, and ipykernel says so at every start
("Kernel is running over TCP without encryption ..."), which users read as a problem. The workbook's
runner (`seglib.workbook.run_workbook`) and its JupyterLab (`make lab`, `.jupyter/jupyter_server_config.py`)
start their kernels with these settings instead. Only that warning goes: every other one stays visible.
The runner's kernels also end without a stray interrupt (`AskFirstKernelManager`).
Light on purpose (no torch): the JupyterLab server imports it.
"""

from __future__ import annotations

import asyncio
import atexit
import gc
import time
from typing import Any

from jupyter_client.manager import AsyncKernelManager

__all__ = ["AskFirstKernelManager", "end_kernel_quickly", "kernel_manager_settings"]


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


class AskFirstKernelManager(AsyncKernelManager):
    """A kernel manager that asks a kernel to end before it interrupts it.

    jupyter_client's shutdown sends SIGINT first, then the shutdown request. papermill shuts a kernel
    down the moment the reply to its last request arrives; a kernel a busy machine has not yet let
    finish that request (ipykernel takes SIGINT while it handles one) caught the interrupt and logged
    "ERROR | KeyboardInterrupt caught in kernel." after every notebook that ran clean. This one
    sends the shutdown request first and interrupts only a kernel still alive after half of
    `shutdown_wait_time` (a cell still running: Ctrl-C stops it, training saves last.pt), then waits
    as jupyter_client does (SIGTERM, SIGKILL).
    """

    # AsyncKernelManager makes shutdown_kernel a coroutine under its own type: ignore; mypy compares
    # this one with KernelManager's synchronous one
    async def shutdown_kernel(self, now: bool = False, restart: bool = False) -> None:  # type: ignore[override]
        if now or restart or not self.owns_kernel or not self.has_kernel:
            await super().shutdown_kernel(now=now, restart=restart)  # as jupyter_client does
            return
        self.shutting_down = True  # the restarter must not start it again
        self.stop_restarter()
        await self.request_shutdown()
        if not await self._exits_within(self.shutdown_wait_time / 2):
            await self.interrupt_kernel()
        await self.finish_shutdown()
        await self.cleanup_resources()

    async def _exits_within(self, seconds: float) -> bool:
        """Whether the kernel process ends within `seconds`."""
        deadline = time.monotonic() + seconds
        while await self.is_alive():
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.05)
        return True


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
