"""`python -m seglib.jemalloc`: the environment that starts a process under seglib's allocator.

    env $(.venv/bin/python -m seglib.jemalloc) .venv/bin/python benchmarks/budget_size.py unet 128 0

Prints `LD_PRELOAD=... MALLOC_CONF=...` where jemalloc is installed, nothing where it is not or where
SEGLIB_JEMALLOC=0 (seglib.allocator says why it pays). Its own module, not the allocator's:
`python -m` on a module its package has already imported warns (runpy's RuntimeWarning).

`python -m seglib.jemalloc --kernel` installs a Jupyter kernel, "Python (seglib, jemalloc)", that starts
this Python under it: for front ends that start their own kernels (VS Code, nbconvert, `jupyter
execute --kernel_name seglib`), where `make lab` and the workbook choose it for theirs. One such kernel
per user: installed from another clone's Python, it replaces the first (and says so).
"""

from __future__ import annotations

import sys

from .allocator import allocator_env, jemalloc_env

KERNEL_NAME = "seglib"


def install_kernel() -> str:
    """Install (for this user) the kernel `KERNEL_NAME`: this Python, under jemalloc; what it says."""
    from ipykernel.kernelspec import install
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    env = jemalloc_env()  # whatever this process was started with (a terminal of `make lab` is under it)
    if not env:
        raise SystemExit(
            "seglib.jemalloc: jemalloc is not installed (apt-get install libjemalloc2, or conda's jemalloc), "
            "or SEGLIB_JEMALLOC=0: no kernel installed"
        )
    try:  # one kernel of this name for the user: a second clone's replaces the first's
        before = KernelSpecManager().get_kernel_spec(KERNEL_NAME).argv[0]
    except NoSuchKernel:
        before = None
    where = install(user=True, kernel_name=KERNEL_NAME, display_name="Python (seglib, jemalloc)", env=env)
    replaced = f"; it replaces the one that started {before}" if before not in (None, sys.executable) else ""
    return f"installed the kernel {KERNEL_NAME!r} (Python {sys.executable}) in {where}{replaced}"


if __name__ == "__main__":
    if sys.argv[1:] == ["--kernel"]:
        print(f"seglib.jemalloc: {install_kernel()}")
    elif sys.argv[1:]:
        raise SystemExit("usage: python -m seglib.jemalloc [--kernel]")
    else:
        print(" ".join(f"{k}={v}" for k, v in allocator_env().items()))
