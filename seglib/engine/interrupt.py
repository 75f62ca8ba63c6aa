"""Ctrl-C during training: a flag the loop reads between two steps, so a run stops where it can resume."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

__all__ = ["Interrupt", "deferred_sigint"]


@dataclass
class Interrupt:
    """Set by the first Ctrl-C; the loop stops at the next step boundary, where model, optimizer,
    scheduler and counters agree."""

    requested: bool = False


@contextmanager
def deferred_sigint() -> Iterator[Interrupt]:
    """Turn the first SIGINT into `Interrupt.requested`; a second one interrupts at once.

    Off the main thread (where Python cannot install handlers) the flag is never set.
    """
    interrupt = Interrupt()
    if threading.current_thread() is not threading.main_thread():
        yield interrupt
        return

    def handler(signum: int, frame: object) -> None:
        if interrupt.requested:
            raise KeyboardInterrupt
        interrupt.requested = True

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield interrupt
    finally:
        signal.signal(signal.SIGINT, previous)
