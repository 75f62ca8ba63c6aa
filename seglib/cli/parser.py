"""`python -m seglib train|evaluate|predict|export|download`: the original's three scripts, the export
(ONNX, torch.export) and the download.

`train` has an option for every `TrainConfig` setting, derived from the dataclass (`train_options`), so a
setting added there reaches the command line with no edit here.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..data import SPLITS
from ..engine import PROFILES, RECIPES, TrainConfig
from ..engine.config import CHOICES, MAX_IMAGE_SIZE
from ..engine.export import EXPORT_FORMATS
from .options import field_comments, help_text, train_options


def build_parser() -> argparse.ArgumentParser:
    # the installed `seglib` command, or `python -m seglib`: each usage line names what was typed
    prog = "seglib" if Path(sys.argv[0]).name == "seglib" else "python -m seglib"
    p = argparse.ArgumentParser(prog=prog, description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    for add in (_train_parser, _evaluate_parser, _predict_parser, _export_parser, _download_parser):
        add(sub)
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line `argv` (None: sys.argv's) parsed; an option its command does not know is named by
    that command's parser, with its usage line (argparse's own says the top-level usage: `python -m
    seglib [-h] {train,...}`, which does not show what `train` takes)."""
    p = build_parser()
    a, unknown = p.parse_known_args(argv)
    if unknown:
        commands = next(x for x in p._actions if isinstance(x, argparse._SubParsersAction))
        commands.choices[a.command].error(f"unrecognized arguments: {' '.join(unknown)}")
    return a


def _defaults() -> dict[str, Any]:
    return {f.name: f.default for f in dataclasses.fields(TrainConfig)}


def _data_args(sp: argparse.ArgumentParser) -> None:
    """The data options evaluate and predict share with train (TrainConfig's defaults and comments)."""
    defaults = _defaults()
    docs = {name: help_text(comment) for name, (_, comment) in field_comments(TrainConfig).items()}
    run_s = "; default: the data the checkpoint's run trained on"
    sp.add_argument("--data_path", help=f"{docs.get('data_root')}{run_s}")
    sp.add_argument("--dataset", choices=CHOICES["dataset"], help=f"{docs.get('dataset')}{run_s}")
    sp.add_argument("--device", default=defaults["device"], help=docs.get("device"))
    sp.add_argument(
        "--on_corrupt",
        choices=CHOICES["on_corrupt"],
        help="an unreadable image or mask of the split: raise (naming it) or skip (named, left out); "
        "default: the run's",
    )


def _train_parser(sub: Any) -> None:
    t = sub.add_parser(
        "train",
        help="train a model; the run lands in --output_dir/<run_name>",
        description="Train a model. An option left out takes the --profile's value (with its recipe's); "
        "(full: ...) shows the full profile's, the original's settings.",
    )
    t.add_argument(
        "--profile",
        choices=sorted(PROFILES),
        help="default full: the original's settings (with --resume: the run's saved settings)",
    )
    t.add_argument(
        "--recipe",
        choices=sorted(RECIPES),
        help="the optimisation and augmentation settings; default: the profile's",
    )
    t.add_argument(
        "--resume",
        nargs="?",
        const=True,
        default=False,
        metavar="RUN_DIR",
        help="continue from last.pt: of --run_name, of RUN_DIR, or (alone) of the newest run; with the "
        "run's saved settings (config.json) unless --profile or --recipe is given",
    )
    t.add_argument(
        "--resume_or_start",
        action="store_true",
        help="with --run_name: resume that run where it has a last.pt (the newest of NAME, NAME-2, ...), else "
        "start it; the one command for a batch job that may be requeued",
    )
    t.add_argument(
        "--config",
        metavar="RUN_DIR",
        help="a new run with the settings of a run folder (its config.json, or that file): the same run "
        "again, beside it (NAME-2 for a run called NAME); options given change single settings",
    )
    groups: dict[str, Any] = {}  # argparse's groups by section
    for name, option in train_options().items():
        if option.section not in groups:
            groups[option.section] = t.add_argument_group(option.section or "settings")
        groups[option.section].add_argument(option.flag, dest=name, **option.kwargs)
    groups.get("model", t).add_argument(
        "--base_channels", type=int, help="model width (64 in the original, both models), into model_kwargs"
    )


def _evaluate_parser(sub: Any) -> None:
    e = sub.add_parser("evaluate", help="score a checkpoint on a split at original resolution; save figures")
    _data_args(e)
    e.add_argument("--model_path", required=True, help="a best.pt or last.pt")
    _split_args(e)
    e.add_argument("--batch_size", type=_at_least(1), default=8)
    e.add_argument(
        "--threshold",
        type=_probability,
        help="probability above which a pixel is object; default: the checkpoint's run's (0.5 for a "
        "checkpoint that has none)",
    )
    e.add_argument(
        "--amp",
        action=argparse.BooleanOptionalAction,
        help="run the model in bf16 autocast (--amp) or in fp32 (--no-amp); default: bf16 on CUDA and on "
        "CPUs with native bf16, else fp32. fp32 gives the exact scores (as predict's); bf16 can move an "
        "image's Dice in the second or third decimal. The summary and summary.csv say which scored",
    )
    e.add_argument(
        "--output_dir",
        help="where the tables and figures go; default: results/evaluation/<run>-<split>, <run> being the "
        "checkpoint's folder (beside notebook 04's results/evaluation/<model>/, not over them), and "
        "<run>-last-<split> for its last.pt (another checkpoint: its name)",
    )
    _tta_args(e)


def _split_args(sp: argparse.ArgumentParser) -> None:
    """The split options evaluate and predict share: which split, how many of its images, the figures."""
    sp.add_argument("--split", default="test", choices=SPLITS)
    sp.add_argument(
        "--image_size", type=_at_least(32, MAX_IMAGE_SIZE), help="default: the model's training size"
    )
    sp.add_argument(
        "--limit",
        type=_at_least(1),
        help="only the first N images of the split (predict --input: of the photos, by name); default: all",
    )
    sp.add_argument(
        "--num_figures",
        type=_at_least(0),
        default=10,
        help="image/truth/prediction figures of the worst images",
    )


def _at_least(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse type: an integer of at least `low` (and at most `high`; argparse names the option)."""

    def parse(text: str) -> int:
        value = int(text)
        if value < low:
            raise argparse.ArgumentTypeError(f"{value} is below {low}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"{value} is above {high}")
        return value

    parse.__name__ = "int"  # argparse's "invalid int value" for text that is no number
    return parse


def _probability(text: str) -> float:
    """An argparse type: a number in (0, 1), as TrainConfig's threshold."""
    value = float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not in (0, 1)")
    return value


def _tta_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--tta",
        action=argparse.BooleanOptionalAction,
        help="average with the mirror image's prediction; default: as the checkpoint's run validated (its "
        "tta setting; off for an exported model)",
    )
    p.add_argument(
        "--tta_scales",
        type=float,
        nargs="+",
        default=(),
        metavar="SCALE",
        help="also average in the image at these sizes relative to the model's, resized from the original "
        "(1.2: 192 px beside 160; with --tta each flipped too)",
    )


def _predict_parser(sub: Any) -> None:
    r = sub.add_parser(
        "predict",
        help="segment images (a file or a folder), or a data split with its truth: per image a 0/255 mask "
        "PNG at the original size, an overlay PNG, and a row of predictions.csv",
    )
    _data_args(r)
    r.add_argument("--model_path", required=True)
    r.add_argument("--input", help="an image or a folder of images; without it, the --split of --data_path")
    r.add_argument(
        "--masks", help="a folder of --input's true masks (NAME.* or NAME_mask.*): Dice and IoU in the CSV"
    )
    r.add_argument("--mask_values", help="how --masks read (see train --mask_values); default: the run's")
    _split_args(r)
    r.add_argument(
        "--threshold",
        type=_probability,
        help="probability above which a pixel is object; default: the checkpoint's run's (0.5 for an "
        "exported model or a checkpoint that has none)",
    )
    r.add_argument(
        "--cutout",
        action="store_true",
        help="also write NAME_cutout.png: the image, its background transparent",
    )
    r.add_argument("--output_dir", default="results/predictions")
    _tta_args(r)


def _export_parser(sub: Any) -> None:
    x = sub.add_parser(
        "export",
        help="export a checkpoint's model to ONNX (onnxruntime) or a torch.export program (.pt2)",
        description="Export with dynamic batch, height and width, then compare the file's logits with "
        "the checkpoint's on random images. Input: float32 N x 3 x H x W, RGB / 255 normalised with the "
        "ImageNet mean and std; output: logits N x 1 x H x W (docs/export.md).",
    )
    x.add_argument("--model_path", required=True, help="a best.pt or last.pt")
    x.add_argument(
        "--format", default="onnx", choices=EXPORT_FORMATS, help="onnx (default) | pt2 (torch.export)"
    )
    x.add_argument("--output", help="the file to write; default: beside the checkpoint (best.onnx, best.pt2)")
    x.add_argument("--opset", type=int, help="the ONNX opset (18 or later); default: the exporter's")
    x.add_argument("--no_check", action="store_true", help="skip comparing the file with the checkpoint")


def _download_parser(sub: Any) -> None:
    d = sub.add_parser("download", help="download the real data set (with MD5 checks) into --data_path")
    d.add_argument("--data_path", default=_defaults()["data_root"])
