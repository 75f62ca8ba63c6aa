"""`python -m seglib train|evaluate|predict|export|download`: the original's three scripts, the export
(ONNX, torch.export) and the download.

`train` has an option for every `TrainConfig` setting, derived from the dataclass (`train_options`), so a
setting added there reaches the command line with no edit here.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import io
import json
import os
import re
import sys
import textwrap
import tokenize
import types
import typing
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from .data import (
    SPLITS,
    SegmentationDataset,
    download,
    find_masks,
    holds_data_set,
    image_files,
    parse_mask_values,
    read_folder_mask,
    trimap_to_mask,
    unpaired_masks,
)
from .data.masks import shown
from .engine import (
    PROFILES,
    RECIPES,
    TrainConfig,
    atomic_write_csv,
    checkpoint_image_size,
    checkpoint_threshold,
    config_from_profile,
    evaluate,
    find_resume_dir,
    fit,
    load_checkpoint,
    load_model,
    summarize,
    worst_indices,
)
from .engine.allocator import reexec_with_allocator
from .engine.config import CHOICES, MAX_IMAGE_SIZE
from .engine.distributed import RANK_0_FAILED
from .engine.evaluate import scoring_precision
from .engine.export import EXPORT_FORMATS, EXPORTED_SUFFIXES, check_export, export_model, load_exported
from .engine.loaders import checkpoint_split
from .engine.predictions import predict_dataset, predict_files
from .engine.tta import TTA, UnusedScaleWarning, tta_label, warn_unused_scales
from .pipes import quiet_when_reader_ends
from .plots import plot_dice_distribution, plot_history, save_figure, save_prediction_figures

__all__ = [
    "NOT_OPTIONS",
    "RENAMED",
    "Option",
    "build_parser",
    "field_comments",
    "main",
    "train_config",
    "train_options",
]

# Settings whose option has another name: the original's scripts call the data root --data_path.
RENAMED = {"data_root": "data_path"}
# Settings with no `train` option, each with the reason; every other TrainConfig field has one.
NOT_OPTIONS: dict[str, str] = {}


@dataclasses.dataclass(frozen=True)
class Option:
    """One `train` option: its help section, its flag and the keywords for `add_argument`."""

    section: str
    flag: str
    kwargs: dict[str, Any]


def field_comments(cls: type) -> dict[str, tuple[str, str]]:
    """Each dataclass field's (section, trailing comment), read from the source of the class and its bases.

    The section is the comment line last seen above the field (`# data`, `# machine`). Without the
    source (a build that ships only bytecode) the result is empty and the options go without help.
    """
    found: dict[str, tuple[str, str]] = {}
    for klass in reversed(cls.__mro__):  # a subclass's comment wins over its base's
        if dataclasses.is_dataclass(klass):
            found.update(_class_comments(klass))
    return found


def _class_comments(cls: type) -> dict[str, tuple[str, str]]:
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    found: dict[str, tuple[str, str]] = {}
    section = ""
    code: list[tokenize.TokenInfo] = []  # the logical line being read
    comments: list[tokenize.TokenInfo] = []
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            comments.append(tok)
        elif tok.type == tokenize.NL and not code:  # a line of only a comment, or blank
            if comments and comments[-1].start[1] == 4:  # at the class body's indentation
                section = _text(comments[-1])
            comments = []
        elif tok.type == tokenize.NEWLINE:
            # `name: type = value  # comment` in the class body (a method's locals sit deeper)
            is_field = len(code) > 1 and code[0].type == tokenize.NAME and code[1].string == ":"
            if is_field and code[0].start[1] == 4 and comments:
                found[code[0].string] = (section, _text(comments[0]))
            code, comments = [], []
        elif tok.type not in (tokenize.NL, tokenize.INDENT, tokenize.DEDENT):
            code.append(tok)
    return found


def _text(comment: tokenize.TokenInfo) -> str:
    return comment.string.lstrip("#").strip()


def train_options(config: type[TrainConfig] = TrainConfig) -> dict[str, Option]:
    """The `train` option of each `config` setting but those in NOT_OPTIONS, by setting.

    The type comes from the annotation (`X | None` reads an X: None is a profile's to give), the choices
    from `CHOICES`, the help from the field's comment. Every default is None, "the profile's value": only
    the options given become overrides.
    """
    hints = typing.get_type_hints(config)
    docs = field_comments(config)
    options = {}
    for f in dataclasses.fields(config):
        if f.name in NOT_OPTIONS:
            continue
        section, comment = docs.get(f.name, ("", ""))
        kwargs = _reader(hints[f.name], f.name)
        full = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        kwargs["help"] = _help(f"{comment} (full: {_shown(full)})".strip())  # full: TrainConfig's defaults
        kwargs["default"] = None
        options[f.name] = Option(section, "--" + RENAMED.get(f.name, f.name), kwargs)
    return options


def _reader(hint: Any, name: str) -> dict[str, Any]:
    """The add_argument keywords that read a value of type `hint`."""
    args = typing.get_args(hint)
    if isinstance(hint, types.UnionType) and len(args) == 2 and type(None) in args:
        hint = next(a for a in args if a is not type(None))
    if name in CHOICES:
        return {"choices": CHOICES[name]}
    if hint is bool:
        return {"action": argparse.BooleanOptionalAction}
    if hint in (int, float, str):
        return {"type": hint, "metavar": hint.__name__.upper()}
    if typing.get_origin(hint) is list and typing.get_args(hint) == (int,):
        return {"type": _int_list, "metavar": "N,N,..."}
    if typing.get_origin(hint) is dict:
        return {"type": _json_object, "metavar": "JSON"}
    raise TypeError(
        f"TrainConfig.{name}: no command-line reader for {hint}; add one to seglib.cli._reader "
        "or list the setting in seglib.cli.NOT_OPTIONS with the reason"
    )


def _int_list(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected integers separated by commas, e.g. 30,40; got {text!r}"
        ) from None


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        value = None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(
            f"expected a JSON object, e.g. '{{\"base_channels\": 16}}'; got {text!r}"
        )
    return value


def _help(text: str) -> str:
    return text.replace("%", "%%")  # argparse %-formats help texts ("50% of the epochs")


def _shown(value: Any) -> str:
    return json.dumps(value) if isinstance(value, dict | list) else str(value)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m seglib", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    for add in (_train_parser, _evaluate_parser, _predict_parser, _export_parser, _download_parser):
        add(sub)
    return p


def _defaults() -> dict[str, Any]:
    return {f.name: f.default for f in dataclasses.fields(TrainConfig)}


def _data_args(sp: argparse.ArgumentParser) -> None:
    """The data options evaluate and predict share with train (TrainConfig's defaults and comments)."""
    defaults = _defaults()
    docs = {name: _help(comment) for name, (_, comment) in field_comments(TrainConfig).items()}
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


def _tta(a: argparse.Namespace, size: int, config: dict[str, Any]) -> TTA:
    """--tta (else the run's `config`'s, as it validated) and --tta_scales as one TTA for a model input of
    `size`; a bad scale exits with the reason, a scale that adds no size is named in a warning
    (`_scales_said` keeps it to this one)."""
    flip = bool(config.get("tta", False)) if a.tta is None else a.tta
    try:
        tta = TTA(flip=flip, scales=tuple(a.tta_scales))
    except ValueError as e:
        sys.exit(f"--tta_scales: {e}")
    warn_unused_scales(size, tta, "--tta_scales")
    return tta


@contextmanager
def _scales_said() -> Iterator[None]:
    """A region without `UnusedScaleWarning`: `_tta` said it once; every image's prediction would again."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedScaleWarning)
        yield


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


def train_config(a: argparse.Namespace) -> TrainConfig:
    """The config `train` runs: the profile (and recipe), then the options given, and only those.
    Resuming without --profile or --recipe: the run's saved config.json, then the options given (so that
    `train --resume RUN_DIR` alone goes on as the run was started)."""
    return _train_setup(a)[0]


def _train_setup(a: argparse.Namespace) -> tuple[TrainConfig, bool | str | Path]:
    """`train_config` and what fit resumes: --resume as given, or the run folder whose settings it took."""
    names = [f.name for f in dataclasses.fields(TrainConfig) if f.name not in NOT_OPTIONS]
    over = {name: getattr(a, name) for name in names if getattr(a, name) is not None}
    _given_data_exists(over.get("data_root"), over.get("dataset"))
    if a.base_channels is not None:  # as before: the UNet's kwargs are these, not the profile's plus these
        over["model_kwargs"] = {**over.get("model_kwargs", {}), "base_channels": a.base_channels}
    if a.config is not None:
        if a.resume is not False or a.profile is not None or a.recipe is not None:
            sys.exit("--config takes a run's settings whole: leave out --resume, --profile and --recipe")
        saved = _saved_settings(a.config)
        # never the run it copies: a saved overwrite=True would remove it (unless --overwrite says so)
        here = _paths_from_where_it_ran(saved, _config_file(a.config).parent)
        return TrainConfig.from_dict({**saved, "overwrite": False, **here, **over}), False
    cfg = config_from_profile(a.profile or "full", recipe=a.recipe, **over)
    if a.resume is False or a.profile is not None or a.recipe is not None:
        return cfg, a.resume
    # Looked up once: fit resumes this folder (with the saved run_name and output_dir it could find another,
    # a copy of the run, or none in a moved project).
    run = find_resume_dir(cfg, a.resume)
    if not (run / "config.json").is_file():
        return cfg, run
    saved = _saved_settings(run)  # its relative paths, as --config takes them: from where it was started
    here = _paths_from_where_it_ran(saved, Path(os.path.abspath(run)))
    return TrainConfig.from_dict({**saved, **here, **over}), run


def _saved_settings(path: str | Path) -> dict[str, Any]:
    """A run's config.json (`path`: the file or its run folder) as settings; those TrainConfig no longer
    has are left out. Exits naming the file where there is none or it cannot be read."""
    file = _config_file(path)
    try:
        saved = json.loads(file.read_text())
    except (OSError, ValueError) as e:
        sys.exit(f"--config {path}: cannot read {file} ({e}); give a run folder of results/runs/")
    if not isinstance(saved, dict):
        sys.exit(f"--config {path}: {file} holds no settings; give a run folder of results/runs/")
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    return {k: v for k, v in saved.items() if k in known}


RUN_PATHS = ("data_root", "synthetic_root", "cache_dir")  # taken from where the run was started


def _paths_from_where_it_ran(saved: dict[str, Any], run_dir: Path) -> dict[str, str]:
    """A run's relative paths made absolute, from the folder it was started in: the one its folder
    `run_dir` lies in, less the saved relative output_dir. A new run then goes beside it and reads its data
    from any folder. Nothing where `run_dir` is not that run's folder (a loose config file, a moved run)."""
    out = Path(saved.get("output_dir") or ".")
    if out.is_absolute():
        return {}
    if ".." in out.parts or run_dir.parent.parts[len(run_dir.parent.parts) - len(out.parts) :] != out.parts:
        return {}
    start = run_dir.parent.parents[len(out.parts) - 1] if out.parts else run_dir.parent
    relative = {k: v for k in RUN_PATHS if isinstance(v := saved.get(k), str) and not Path(v).is_absolute()}
    return {"output_dir": str(run_dir.parent)} | {k: str(start / v) for k, v in relative.items()}


def _config_file(path: str | Path) -> Path:
    """The config.json of --config: the file, or the one in the run folder given."""
    file = Path(path) / "config.json" if Path(path).is_dir() else Path(path)
    # absolute, not resolved: a results folder that is a link stays where it is named
    return Path(os.path.abspath(file))


def _train(a: argparse.Namespace) -> None:
    cfg, resume = _train_setup(a)
    result = fit(cfg, resume=resume)
    if not result.is_main:  # under torchrun rank 0 speaks and writes for the run
        return
    save_figure(plot_history(result.history, result.config.loss), result.run_dir / "history.png")
    print(
        f"best val Dice {result.best_val_dice:.4f} at epoch {result.best_epoch}; run folder {result.run_dir}"
    )


def _given_data_exists(path: str | None, dataset: str | None) -> None:
    """A --data_path given must hold data: "auto" would train or score the synthetic demo set in its place,
    made in the working folder, and say little of it (the other kinds say what they miss themselves)."""
    if path is None or dataset not in (None, "auto"):
        return
    if not Path(path).expanduser().exists():  # "--data_path=~/pets": the shell leaves that ~ to us
        sys.exit(f"--data_path {path} does not exist; point it at the data's folder (or leave it out)")
    if not holds_data_set(path):
        sys.exit(
            f"--data_path {path} holds no data set: neither the Oxford-IIIT Pet's images/ and "
            f"annotations/trainval.txt (download --data_path {path} fetches them) nor a folder's images/ "
            "and masks/; point it at the data's folder, or give --dataset synthetic for the demo set"
        )


def _split_and_model(a: argparse.Namespace) -> tuple[SegmentationDataset, nn.Module, int, dict[str, Any]]:
    """The --split of the checkpoint's data (or of --data_path), read as its run read it, the model, its
    image size and its run's config: the checkpoint file read once."""
    _given_data_exists(a.data_path, a.dataset)
    ckpt = load_checkpoint(a.model_path)
    size = a.image_size or checkpoint_image_size(ckpt)
    skip = {} if a.on_corrupt is None else {"on_corrupt": a.on_corrupt}
    ds = checkpoint_split(ckpt, a.split, a.data_path, a.dataset, image_size=size, limit=a.limit, **skip)
    return ds, load_model(a.model_path, checkpoint=ckpt), size, ckpt.get("config", {})


def _evaluate(a: argparse.Namespace) -> None:
    ds, model, size, config = _split_and_model(a)
    tta = _tta(a, size, config)
    threshold = _threshold(a, config)
    precision = scoring_precision(a.device, a.amp)
    with _scales_said():
        df = evaluate(
            model, ds, device=a.device, batch_size=a.batch_size, threshold=threshold, amp=a.amp, tta=tta
        )
        ckpt = Path(a.model_path).resolve()
        # best.pt and last.pt of one run in one folder: a stopped run would leave one's tables by the other's figures
        which = "" if ckpt.name == "best.pt" else f"-{ckpt.stem}"
        out = Path(a.output_dir or f"results/evaluation/{ckpt.parent.name}{which}-{a.split}")
        out.mkdir(parents=True, exist_ok=True)
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
        f"{precision}{exact} {_how(threshold, size, tta)}\n"
        f"{table.round(4).to_string()}\nsaved in {out}"
    )


def _how(threshold: float, size: int, tta: TTA) -> str:
    """How masks were made: what a printout says beside its numbers."""
    return f"at threshold {threshold:g} (the model's input {size} px, TTA {tta_label(tta)})"


def _predict(a: argparse.Namespace) -> None:
    if a.input is not None:
        _predict_files(a)
        return
    ds, model, size, config = _split_and_model(a)
    tta, out, threshold = _tta(a, size, config), Path(a.output_dir), _threshold(a, config)
    with _scales_said():
        df = predict_dataset(model, ds, out, size, threshold, a.device, tta, cutout=a.cutout)
        # of the images predicted, not those left out as unreadable
        worst = worst_indices(df, ds, a.num_figures)
        save_prediction_figures(model, ds, worst, out / "figures", size, threshold, a.device, tta)
    which = (
        f"the first {len(ds)} images of the {a.split} split (--limit)" if a.limit else f"the {a.split} split"
    )
    print(
        f"{len(df)} masks and overlays of {which} {_how(threshold, size, tta)} (mean Dice "
        f"{df.dice.mean():.4f} at original resolution) in {out}, one row each in predictions.csv; image / "
        f"truth / prediction of the {len(worst)} worst in figures/"
    )


def _predict_model(a: argparse.Namespace) -> tuple[nn.Module, int, str, dict[str, Any]]:
    """predict --input's model, image size, device and its run's config: a checkpoint's, or an exported
    file's (.onnx, .pt2: on the CPU, the size and the threshold from its metadata)."""
    if Path(a.model_path).suffix not in EXPORTED_SUFFIXES:
        ckpt = load_checkpoint(a.model_path)  # read once: size, config, weights
        model = load_model(a.model_path, checkpoint=ckpt)
        return model, a.image_size or checkpoint_image_size(ckpt), a.device, ckpt.get("config", {})
    model = load_exported(a.model_path)
    size = a.image_size or int(model.metadata.get("image_size", 0))
    if not size:
        sys.exit(f"{a.model_path} does not say the size its model was trained at; pass --image_size")
    saved = model.metadata.get("threshold")  # files of older seglib versions have none: 0.5
    return model, size, "cpu", {"threshold": float(saved)} if saved else {}


def _threshold(a: argparse.Namespace, config: dict[str, Any]) -> float:
    """--threshold, else the one the run validated (and chose best.pt) at; 0.5 where it has none."""
    return a.threshold if a.threshold is not None else checkpoint_threshold({"config": config})


def _masks_beside(files: list[Path]) -> tuple[list[Path], dict[str, Path]]:
    """--input's photos, and the masks among its files: NAME_mask.* beside a photo NAME.*, by NAME."""
    stems = {f.stem for f in files}
    beside = {
        f.stem[: -len("_mask")]: f
        for f in files
        if f.stem.endswith("_mask") and f.stem[: -len("_mask")] in stems
    }
    masks = set(beside.values())
    return [f for f in files if f not in masks], beside


def _input_files(a: argparse.Namespace, out: Path) -> list[Path]:
    """predict --input's image files (a file, or a folder's, its subfolders not searched), checked with
    the options that go with it."""
    src = Path(a.input)
    if not src.exists():
        sys.exit(f"--input {src} does not exist")
    if a.split != "test":  # the split's default: a --split given with --input would be silently ignored
        sys.exit(f"--split {a.split} picks a split of --data_path; with --input, leave it out")
    if src.is_dir() and out.resolve() == src.resolve():  # its masks would be read as photos next time
        sys.exit(
            f"--output_dir {out} is the --input folder; write elsewhere, e.g. --output_dir {src / 'out'}"
        )
    if a.masks and not Path(a.masks).is_dir():
        sys.exit(f"--masks {a.masks} is not a folder; point it at the folder of --input's true masks")
    if not src.is_dir():
        return [src]
    files = image_files(src)
    subfolders = [p.name for p in sorted(src.iterdir()) if p.is_dir() and not p.name.startswith(".")]
    named = f"its subfolders ({', '.join(subfolders[:3])}{', ...' if len(subfolders) > 3 else ''}) are not searched"
    if not files:
        hint = f"; {named}: point --input at one" if subfolders else ""
        sys.exit(f"--input {src} holds no image file that PIL opens (jpg, png, tif, bmp, webp, ...){hint}")
    if subfolders:
        print(f"seglib: --input {src}: {named}")
    return files


def _say_unpaired(masks: str, files: list[Path], truths: dict[str, Path], beside: bool) -> None:
    """--masks that pair with no photo stop predict; photos without a mask there, or masks of no photo
    (a name's other case, a typo), are named: both were left unscored without a word. `beside`: the masks
    lie among the photos (--masks is --input), where every other file is a photo."""
    lonely = [f.name for f in files if f.stem not in truths]
    spare = [] if beside else [p.name for p in unpaired_masks(masks, [f.stem for f in files])]
    rule = f"a photo NAME.* pairs with {'' if beside else 'NAME.* or '}NAME_mask.* (case counts)"
    if not truths:
        theirs = f"; it holds {shown(spare)}" if spare else ""
        sys.exit(f"--masks {masks}: none of the {len(files)} photos has a mask there; {rule}{theirs}")
    if lonely:
        print(f"seglib: --masks {masks}: {len(lonely)} of {len(files)} photos have no mask there, so no "
              f"Dice: {shown(lonely)}; {rule}")  # fmt: skip
    if spare:
        print(f"seglib: --masks {masks}: {len(spare)} masks pair with no photo: {shown(spare)}")


def _predict_files(a: argparse.Namespace) -> None:
    model, size, device, config = _predict_model(a)
    saved, threshold = config.get("mask_values", ""), _threshold(a, config)
    tta, out = _tta(a, size, config), Path(a.output_dir)
    (files, beside), truths, read = _masks_beside(_input_files(a, out)), None, None
    if beside and not a.masks:
        print(f"seglib: --input {a.input}: {len(beside)} NAME_mask files beside their photos are taken as "
              f"masks, not photos; --masks {a.input} scores against them")  # fmt: skip
    if a.masks:  # the truth of your own images: read as a folder data set reads its masks
        rule = parse_mask_values(saved if a.mask_values is None else a.mask_values)
        same = Path(a.masks).resolve() == Path(a.input).resolve()  # never a photo as its own mask
        truths = beside if same else find_masks(a.masks, [f.stem for f in files])
        _say_unpaired(a.masks, files, truths, beside=same)

        def read(path: Path) -> np.ndarray:
            return trimap_to_mask(read_folder_mask(path, rule))

    found, files = len(files), files[: a.limit] if a.limit else files
    if truths is not None:  # only the photos predicted: every truth given is read before the first
        truths = {f.stem: truths[f.stem] for f in files if f.stem in truths}
    skip = {} if a.on_corrupt is None else {"on_corrupt": a.on_corrupt}
    with _scales_said():
        df = predict_files(
            model, files, out, size, threshold, device, tta, truths, read, cutout=a.cutout, **skip
        )
    scored = (
        f", {df.dice.notna().sum()} with their truth (mean Dice {df.dice.mean():.4f})" if "dice" in df else ""
    )
    which = f" of the first {len(files)} of {found} photos (--limit)" if len(files) < found else ""
    print(
        f"{len(df)} masks and overlays{which} {_how(threshold, size, tta)} in {out}{scored}; one row each in "
        f"{out / 'predictions.csv'}"
    )


def _export(a: argparse.Namespace) -> None:
    path = export_model(a.model_path, a.output, a.format, a.opset)
    print(f"exported {a.model_path} to {path} ({path.stat().st_size / 1e6:.1f} MB)")
    if not a.no_check:
        diff = check_export(path, a.model_path)["max_abs_diff"]
        print(f"check: the largest logit difference from the checkpoint on random images is {diff:.2e}")


def _plain_warning(message: Warning | str, category: type[Warning], *args: Any, **kwargs: Any) -> str:
    """A warning as the command line says it: one line, without the source line that raised it."""
    return f"seglib: warning: {_as_options(str(message))}\n"


# The data's messages name its settings as Python and the notebooks take them (mask_values=">127"); the
# command line takes them as options.
_SETTING = re.compile(r"""\b(mask_values|on_corrupt)=("[^"]*"|'[^']*')""")


def _as_options(message: str) -> str:
    """`message` with `mask_values="V"` and `on_corrupt='skip'` spelt as options: `--mask_values "V"`,
    `--on_corrupt skip`."""

    def option(m: re.Match[str]) -> str:
        value = m[2] if m[1] == "mask_values" else m[2][1:-1]  # quoted: ">127" and "#ff0000" need it
        return f"--{m[1]} {value}"

    return _SETTING.sub(option, message)


# train's Ctrl-C that is not fit's TrainingInterrupted: before the run's first save, or a second during a save
UNSAVED = (
    "It stopped before saving where it stood: resume from the run folder's last.pt if it has one "
    "(its last saved epoch; --resume RUN_FOLDER), else run the command again"
)


def _says_rank_0s(e: BaseException) -> bool:
    """Whether this rank says rank 0's error: rank 1 does, as torchrun stops rank 0 (SIGTERM) once another
    rank has exited, often before rank 0 has said it (a run another job took first: nothing was said)."""
    return os.environ.get("RANK") == "1" and str(e).startswith(RANK_0_FAILED)


def main(argv: list[str] | None = None) -> None:
    a = build_parser().parse_args(argv)
    out = getattr(a, "output_dir", None)
    if out is not None and Path(out).exists() and not Path(out).is_dir():  # else a bare "File exists"
        sys.exit(f"--output_dir {out} is a file; give a folder (made if missing)")
    if argv is None:  # the command line's process, not a caller's (tests, notebooks)
        warnings.formatwarning = _plain_warning
        quiet_when_reader_ends()  # `seglib train ... | head`: the training goes on
    if argv is None and a.command in ("train", "evaluate", "predict"):
        # From the command line: start again under jemalloc when installed (engine/allocator.py); it
        # keeps the big activation buffers that glibc gives back to the OS at every step.
        reexec_with_allocator(sys.argv[1:])
    try:
        {
            "train": _train,
            "evaluate": _evaluate,
            "predict": _predict,
            "export": _export,
            "download": lambda a: download(a.data_path),
        }[a.command](a)
    except KeyboardInterrupt as e:  # TrainingInterrupted says where last.pt is and how to resume
        if os.environ.get("RANK", "0") == "0":  # under torchrun every rank stops; rank 0 says so
            print(
                f"seglib {a.command}: interrupted. {str(e) or (UNSAVED if a.command == 'train' else '')}",
                file=sys.stderr,
            )
        sys.exit(130)
    except (ValueError, OSError, RuntimeError, FloatingPointError, ImportError) as e:
        if os.environ.get("RANK", "0") != "0" and not _says_rank_0s(e):
            sys.exit(1)  # under torchrun every rank has it; rank 0 says it once
        sys.exit(f"seglib {a.command}: error: {_as_options(str(e))}")
