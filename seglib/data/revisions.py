"""Revisions of what seglib's samples hold.

A sample is the image and mask a data set gives for an index and its settings. Where seglib changes how it
reads or resizes them, `SAMPLES_REVISION` goes up and `CHANGES` says since when and for which data sets.
A run begun before such a change and resumed after it trains and validates on other labels than it began
with; the engine says so, and a study does not reuse such a run as if it were today's.
"""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["SAMPLES_REVISION", "CHANGES", "changes_since", "revision_at"]

SAMPLES_REVISION = 3
# (revision, the time of the commit that made it (UTC), the data sets whose samples it changed, what)
CHANGES: tuple[tuple[int, str, tuple[str, ...], str], ...] = (
    (
        2,
        "2026-12-05T06:18:29+00:00",
        ("oxford-pet", "synthetic", "folder"),
        "masks are resized pixel-centred, no longer half a pixel off",
    ),
    (3, "2026-12-06T20:21:50+00:00", ("folder",), "a folder's palette and lossy 0/1 masks are read anew"),
)


def revision_at(started: object) -> int:
    """The revision of a seglib started at `started` (ISO time), for the records that predate the
    revision's own: the last change made by then (a checkout older than its date reads as newer). A time
    that cannot be read counts as the first revision; one without a time zone as UTC."""
    try:
        when = datetime.fromisoformat(started) if isinstance(started, str) else None
    except ValueError:
        when = None
    if when is None:
        return 1
    when = when if when.tzinfo is not None else when.replace(tzinfo=UTC)
    return max((r for r, since, _, _ in CHANGES if when >= datetime.fromisoformat(since)), default=1)


def changes_since(revision: int, kind: str | None) -> list[str]:
    """What changed in the samples of data sets of `kind` (None: any kind) after `revision`, each with
    its date."""
    return [
        f"{what} (since {since[:10]})"
        for r, since, kinds, what in CHANGES
        if r > revision and (kind is None or kind in kinds)
    ]
