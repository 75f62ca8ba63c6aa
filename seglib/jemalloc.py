"""`python -m seglib.jemalloc`: the environment that starts a process under seglib's allocator.

    env $(.venv/bin/python -m seglib.jemalloc) .venv/bin/python benchmarks/budget_size.py unet 128 0

Prints `LD_PRELOAD=... MALLOC_CONF=...` where jemalloc is installed, nothing where it is not or where
SEGLIB_JEMALLOC=0 (seglib.engine.allocator says why it pays). Its own module, not the allocator's:
`python -m` on a module its package has already imported warns (runpy's RuntimeWarning).
"""

from __future__ import annotations

from .engine.allocator import allocator_env

if __name__ == "__main__":
    print(" ".join(f"{k}={v}" for k, v in allocator_env().items()))
