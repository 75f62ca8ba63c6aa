"""`python -m seglib evaluate`: a checkpoint scored on a split at original resolution, with tables and
figures."""

from __future__ import annotations

import argparse
import errno
import os
from pathlib import Path

from ..engine import atomic_write_csv, evaluate, summarize, worst_indices
from ..engine.evaluate import scoring_precision
from ..engine.tta import tta_label
from ..plots import plot_dice_distribution, save_figure, save_prediction_figures
from .scoring import how, scales_said, split_and_model, threshold_of, tta_of


def writable(out: Path) -> Path:
    """`out`, made: an OSError now, naming it, where it cannot be made or written, not after the scoring
    (a whole split at original resolution) was done for nothing."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        if not os.access(out, os.W_OK):
            raise PermissionError(errno.EACCES, "not writable")
    except OSError as e:
        said = OSError(  # its message alone: OSError(errno, text) would read "[Errno 20] --output_dir ..."
            f"--output_dir {out} cannot hold the results ({e.strerror or e}); give a folder you can "
            "write to (nothing was scored)"
        )
        said.errno = e.errno
        raise said from e
    return out


def run(a: argparse.Namespace) -> None:
    ds, model, size, config = split_and_model(a)
    tta = tta_of(a, size, config)
    threshold = threshold_of(a, config)
    precision = scoring_precision(a.device, a.amp)
    ckpt = Path(a.model_path).resolve()
    # best.pt and last.pt of one run in one folder: a stopped run would leave one's tables by the other's figures
    which = "" if ckpt.name == "best.pt" else f"-{ckpt.stem}"
    out = writable(Path(a.output_dir or f"results/evaluation/{ckpt.parent.name}{which}-{a.split}"))
    with scales_said():
        df = evaluate(
            model, ds, device=a.device, batch_size=a.batch_size, threshold=threshold, amp=a.amp, tta=tta
        )
        atomic_write_csv(df, out / "per_image.csv")
        table = summarize(df)
        # how it was scored, and what: the checkpoint
        saved = table.reset_index().assign(
            precision=precision,
            threshold=threshold,
            tta=tta_label(tta),
            image_size=size,
            split=a.split,
            checkpoint=str(ckpt),
        )
        atomic_write_csv(saved, out / "summary.csv")
        save_figure(plot_dice_distribution(df, by="species"), out / "dice_distribution.png")
        worst = worst_indices(df, ds, a.num_figures)
        save_prediction_figures(model, ds, worst, out / "worst", size, threshold, a.device, tta)
    exact = "" if precision == "fp32" else " (--no-amp scores in fp32, exactly)"
    print(
        f"{a.model_path} on {ds.root} {a.split}: {len(df)} images at original resolution, scored in "
        f"{precision}{exact} {how(threshold, size, tta)}\n"
        f"{table.round(4).to_string()}\nsaved in {out}"
    )
