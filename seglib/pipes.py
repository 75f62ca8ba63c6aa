"""Standard output whose reader may end first (`seglib train ... | head`): the work goes on, quietly.

Python raises BrokenPipeError at the first write after the reader has gone (at once where output is
unbuffered, as in most containers), which stopped a training in mid-run, or at its exit flush, which made
a finished command exit 1 with "Broken pipe". Standard library only.
"""

from __future__ import annotations

import os
import sys
from typing import Any, TextIO

__all__ = ["quiet_when_reader_ends"]


class _ReaderMayEnd:
    """`stream`, whose writes go to /dev/null once its reader has ended."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            self._gone()
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            self._gone()

    def _gone(self) -> None:
        # the same file descriptor, now /dev/null: loader workers and Python's flush at exit write there too
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, self._stream.fileno())
        os.close(null)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def quiet_when_reader_ends() -> None:
    """Make this process's stdout drop what it writes once its reader has ended, instead of raising."""
    if not isinstance(sys.stdout, _ReaderMayEnd):
        sys.stdout = _ReaderMayEnd(sys.stdout)
