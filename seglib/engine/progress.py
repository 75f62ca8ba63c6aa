"""Progress bars: widgets in an interactive kernel, plain text under papermill or in a terminal.

tqdm.auto's widget bars do not advance in a notebook executed by papermill (papermill issues 617
and 765), so the workbook runner sets SEGLIB_PROGRESS=text for its kernels.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["progress_bar"]


def progress_bar(iterable: Any = None, **kwargs: Any) -> Any:
    """A tqdm bar: `tqdm.auto` normally, `tqdm.std` (text, every 10 s at most) when SEGLIB_PROGRESS=text."""
    if os.environ.get("SEGLIB_PROGRESS", "auto") == "text":
        from tqdm.std import tqdm

        kwargs.setdefault("mininterval", 10.0)
        return tqdm(iterable, **kwargs)
    from tqdm.auto import tqdm

    return tqdm(iterable, **kwargs)
