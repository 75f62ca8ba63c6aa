"""How the workbook's Jupyter kernels talk to their manager: encrypted or over local sockets, quietly.

By default a kernel's ZMQ sockets are plain TCP on 127.0.0.1, and ipykernel says so at every start
("Kernel is running over TCP without encryption ..."), which users read as a problem. The workbook's
runner (`seglib.workbook.run_workbook`) and its JupyterLab (`make lab`, `.jupyter/jupyter_server_config.py`)
start their kernels with these settings instead. Only that warning goes: every other one stays visible.
Light on purpose (no torch): the JupyterLab server imports it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["kernel_manager_settings"]


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
