"""Progress bars: widgets in an interactive kernel, plain text under papermill or in a terminal.

tqdm.auto's widget bars do not advance in a notebook executed by papermill (papermill issues 617
and 765): the executed copy's text keeps "0%". So the workbook runner sets SEGLIB_PROGRESS=text for
its kernels, and a kernel that no one can type into (papermill or nbconvert run by hand) gets text too.
"""

from __future__ import annotations

import os
import sys
import warnings
from typing import Any

__all__ = ["progress_bar", "unattended_kernel"]


def progress_bar(iterable: Any = None, *, summarised: bool = False, **kwargs: Any) -> Any:
    """A tqdm bar over `iterable`, which it iterates once: tqdm.autonotebook's (widgets in a notebook,
    text elsewhere), or `tqdm.std` (text, every 10 s at most) when SEGLIB_PROGRESS=text.

    `summarised`: the caller prints a line of its own when the loop ends (an epoch's); in text, such a
    loop shorter than 10 s then prints no bar at all. Text too in a kernel executed unattended
    (`unattended_kernel`).
    """
    if os.environ.get("SEGLIB_PROGRESS", "auto") == "text" or unattended_kernel():
        from tqdm.std import tqdm

        kwargs.setdefault("mininterval", 10.0)
        if summarised:  # else an executed notebook keeps a "0%" bar, and the blank line that cleared it, each
            kwargs.setdefault("delay", 10.0)
        return tqdm(iterable, **kwargs)
    # Not tqdm.auto: its asyncio part calls iter(iterable) when the bar is made, and the loop's own
    # iter() makes a second iterator (tqdm issue 1598); of a DataLoader with persistent workers, that
    # one resets the first and throws its prefetched batches away.
    from tqdm.std import TqdmExperimentalWarning

    with warnings.catch_warnings():  # the warning tqdm.auto also silences
        warnings.simplefilter("ignore", category=TqdmExperimentalWarning)
        from tqdm.autonotebook import tqdm

    return tqdm(iterable, **kwargs)


def unattended_kernel() -> bool:
    """True in a Jupyter kernel whose cell was sent without stdin: by nbclient (papermill, nbconvert
    --execute), which never allows it, where JupyterLab always does. False outside a kernel."""
    if "IPython" not in sys.modules:  # never imported: not a kernel (and no import for the CLI's sake)
        return False
    kernel = getattr(sys.modules["IPython"].get_ipython(), "kernel", None)
    # ipykernel keeps the running request's allow_stdin there (what its input() checks); a kernel
    # without the attribute keeps the widgets.
    return kernel is not None and getattr(kernel, "_allow_stdin", True) is False
