"""Progress bars: one HTML display per cell in an interactive kernel, plain text under papermill or in a
terminal.

tqdm.auto's widget bars do not advance in a notebook executed by papermill (papermill issues 617
and 765): the executed copy's text keeps "0%". So the workbook runner sets SEGLIB_PROGRESS=text for
its kernels, and a kernel that no one can type into (papermill or nbconvert run by hand) gets text too.
In JupyterLab they were no better: each epoch's two bars added two outputs to the cell, and past 50
outputs JupyterLab stops showing new ones (the epochs and the message of a Ctrl-C went unseen); a closed
widget bar came back as "Error displaying widget: model not found". `CellBar` draws into displays of
the running cell that it updates in place, the bars of one cell taking turns in them.
"""

from __future__ import annotations

import html
import io
import os
import sys
from dataclasses import dataclass
from typing import Any

from tqdm.std import tqdm

__all__ = ["CellBar", "LineBar", "progress_bar", "shell_of_kernel", "start_new_displays", "unattended_kernel"]


def progress_bar(iterable: Any = None, *, summarised: bool = False, **kwargs: Any) -> Any:
    """A tqdm bar over `iterable`, which it iterates once: a `CellBar` in an interactive kernel (JupyterLab),
    `tqdm.std`'s text in a terminal, and text every 10 s at most when SEGLIB_PROGRESS=text or into a log
    (stderr not a terminal: a `LineBar`, a line each).

    `summarised`: the caller prints a line of its own when the loop ends (an epoch's); in text, such a
    loop shorter than 10 s then prints no bar at all, nor does one whose bar goes at its end (`leave=False`).
    Text too in a kernel executed unattended (`unattended_kernel`).
    """
    shell = shell_of_kernel()
    log = shell is None and not _is_terminal(kwargs.get("file") or sys.stderr)
    if os.environ.get("SEGLIB_PROGRESS", "auto") == "text" or unattended_kernel() or log:
        kwargs.setdefault("mininterval", 10.0)
        # A loop of a few seconds whose bar goes (leave=False) or whose caller prints a line of its own: else an
        # executed notebook keeps a "0%" bar, and the blank line that cleared it, each
        if summarised or kwargs.get("leave") is False:
            kwargs.setdefault("delay", 10.0)
        return LineBar(iterable, **kwargs) if log else tqdm(iterable, **kwargs)
    # Not tqdm.auto's bars: its asyncio part calls iter(iterable) when the bar is made, and the loop's own
    # iter() makes a second iterator (tqdm issue 1598); of a DataLoader with persistent workers, that
    # one resets the first and throws its prefetched batches away.
    return CellBar(iterable, **kwargs) if shell is not None else tqdm(iterable, **kwargs)


def _is_terminal(file: Any) -> bool:
    try:
        return bool(file.isatty())
    except (AttributeError, ValueError):  # no isatty, or closed
        return False


class _Lines:
    """A file that drops tqdm's bare line ends and carriage returns: each `LineBar` line ends itself."""

    def __init__(self, file: Any) -> None:
        self._file = file

    def write(self, text: str) -> int:
        return len(text) if text in ("", "\n", "\r") else self._file.write(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._file, name)


class LineBar(tqdm):
    """A bar for a log (stderr not a terminal, `python -m seglib train ... > log.txt 2>&1` on a cluster):
    each update a line of its own, none cleared. tqdm's own redraws one line with carriage returns,
    several a second: a log of a 2-epoch run held a 3 kB line of them."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["file"] = _Lines(kwargs.get("file") or sys.stderr)
        super().__init__(*args, **kwargs)

    def display(self, msg: str | None = None, pos: int | None = None) -> bool:
        if msg == "":  # tqdm clears a leave=False bar at its close: a log keeps its lines
            return False
        if msg is None and getattr(self, "_shown_n", None) == self.n:  # its close draws the last again
            return True
        self._shown_n = self.n
        self.fp.write(f"{self if msg is None else msg}\n")
        self.fp.flush()
        return True


class CellBar(tqdm):
    """A tqdm bar drawn as HTML (text in a text/plain copy) into a display of the running cell, updated
    in place. A bar closed with `leave=False` frees its display for the cell's next bar: a training of
    100 epochs shows one bar, not 200. Nested bars take a display each; a bar left in place (`leave=True`,
    or stopped short by Ctrl-C or an error) keeps its display."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._slot: _Slot | None = None
        kwargs["file"] = io.StringIO()  # not the cell's stderr: the display is the bar
        super().__init__(*args, **kwargs)

    def display(self, msg: str | None = None, pos: int | None = None) -> bool:
        if msg == "" and not self._stopped_short():  # tqdm clears a leave=False bar at its close
            text, markup = "", ""
        else:  # a bar stopped short keeps where it stopped
            text, markup = str(self), self._html()
        if self._slot is None:
            self._slot = _take_slot()
        self._slot.show(text, markup)
        return True

    def close(self) -> None:
        try:
            super().close()
        finally:
            if self._slot is not None:  # a bar left in place keeps its display; a cleared one frees it
                self._slot.busy = self.leave is not False or self._stopped_short()
                self._slot = None

    def _stopped_short(self) -> bool:
        return self.total is not None and self.n < self.total

    def _html(self) -> str:
        fmt = self.format_dict
        fmt["bar_format"] = (fmt["bar_format"] or "{l_bar}{bar}{r_bar}").replace("{bar}", "\0")
        left, _, right = self.format_meter(**fmt).partition("\0")
        bar = (
            f'<progress value="{self.n}" max="{self.total}" style="width: 20em; vertical-align: middle"></progress>'
            if self.total
            else ""
        )
        left, right = html.escape(left.rstrip("|")), html.escape(right.lstrip("|"))
        return f'<pre style="margin: 0; background: none">{left} {bar} {right}</pre>'


@dataclass
class _Slot:
    """One display of a cell; `busy` while a bar draws into it."""

    busy: bool = True
    handle: Any = None

    def show(self, text: str, html_text: str) -> None:
        from IPython.display import display

        bundle = {"text/plain": text, "text/html": html_text}
        if self.handle is None:
            self.handle = display(bundle, raw=True, display_id=True)
        else:
            self.handle.update(bundle, raw=True)


_SLOTS: dict[str, list[_Slot]] = {}  # the running cell's displays, by its request's message id


def start_new_displays() -> None:
    """The bars made from now on in the running cell take new displays, below what it has shown so far:
    a second training in one cell (notebook 05's) then shows its bar above its own lines. A bar still
    open keeps its display."""
    _SLOTS.clear()


def _take_slot() -> _Slot:
    """A free display of the running cell (a new one where all are taken): the displays of an earlier
    cell are its own, never drawn into again."""
    shell = shell_of_kernel()
    cell = (getattr(shell, "parent_header", None) or {}).get("msg_id", "")
    if cell not in _SLOTS:
        _SLOTS.clear()
        _SLOTS[cell] = []
    slots = _SLOTS[cell]
    for slot in slots:
        if not slot.busy:
            slot.busy = True
            return slot
    slots.append(_Slot())
    return slots[-1]


def shell_of_kernel() -> Any:
    """IPython's shell where this process is a Jupyter kernel, else None (and no import for the CLI's
    sake)."""
    if "IPython" not in sys.modules:
        return None
    shell = sys.modules["IPython"].get_ipython()
    return shell if getattr(shell, "kernel", None) is not None else None


def unattended_kernel() -> bool:
    """True in a Jupyter kernel whose cell was sent without stdin: by nbclient (papermill, nbconvert
    --execute), which never allows it, where JupyterLab always does. False outside a kernel."""
    shell = shell_of_kernel()
    # ipykernel keeps the running request's allow_stdin there (what its input() checks); a kernel
    # without the attribute keeps the displays.
    return shell is not None and getattr(shell.kernel, "_allow_stdin", True) is False
