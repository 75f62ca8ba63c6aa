"""`side_stream_batches`: the device data path's batch preparation one batch ahead, on a CUDA stream of
its own, so that normalising and augmenting batch k+1 can run beside step k (as timm's PrefetchLoader
does for normalisation). Measured by the whole-epoch rows before `fit` takes it up."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch

__all__ = ["side_stream_batches"]

Prep = Callable[[dict[str, Any], int], tuple[torch.Tensor, torch.Tensor]]


def side_stream_batches(
    batches: Iterable[dict[str, Any]], prep: Prep, device: torch.device
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """`prep(batch, step)` of each batch in turn, the next one's started before this one is handed
    out. On CUDA it runs on a side stream that the consumer's stream waits for; elsewhere in order, the
    same tensors `prep` gives."""
    side = torch.cuda.Stream(device) if device.type == "cuda" else None
    it = enumerate(batches)
    first = next(it, None)
    if first is None:
        return
    pending = _start(prep, *first, side)
    for step, batch in it:
        ahead = _start(prep, step, batch, side)  # queued before the consumer queues this step's kernels
        yield _ready(pending)
        pending = ahead
    yield _ready(pending)


Started = tuple[torch.Tensor, torch.Tensor, "torch.cuda.Event | None"]


def _start(prep: Prep, step: int, batch: dict[str, Any], side: torch.cuda.Stream | None) -> Started:
    """`prep(batch, step)` queued on `side`, with the event that marks its end (None off CUDA)."""
    if side is None:
        return (*prep(batch, step), None)
    side.wait_stream(torch.cuda.current_stream())  # the batch was gathered on the consumer's stream
    for t in (batch["image"], batch["mask"]):
        if t.is_cuda:
            t.record_stream(side)  # read there: not to be reused before the side stream is done
    with torch.cuda.stream(side):
        x, y = prep(batch, step)
        done = torch.cuda.Event()
        done.record(side)
    return x, y, done


def _ready(started: Started) -> tuple[torch.Tensor, torch.Tensor]:
    """The prepared batch, the consumer's stream waiting for its preparation alone (not for the next
    one's, queued after it)."""
    x, y, done = started
    if done is not None:
        current = torch.cuda.current_stream()
        current.wait_event(done)
        for t in (x, y):
            t.record_stream(current)  # made on the side stream, used on this one
    return x, y
