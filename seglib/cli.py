"""`python -m seglib train|evaluate|predict|download`: the original's three scripts, plus the download."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from .data import OxfordPetDataset, download, resolve_data_root
from .engine import (
    PROFILES,
    RECIPES,
    SCHEDULERS,
    checkpoint_image_size,
    config_from_profile,
    evaluate,
    fit,
    load_model,
    predict,
    summarize,
)
from .models import MODELS
from .plots import plot_dice_distribution, plot_history, plot_prediction, save_figure, save_prediction_figures

__all__ = ["main", "build_parser"]

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp"}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m seglib", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    def data_args(sp: argparse.ArgumentParser) -> None:
        sp.add_argument(
            "--data_path", default="data/oxford-iiit-pet", help="Oxford-IIIT Pet root (official layout)"
        )
        sp.add_argument(
            "--dataset",
            default="auto",
            choices=["auto", "oxford-pet", "synthetic"],
            help="auto: the real data if present at --data_path, else the synthetic demo set",
        )
        sp.add_argument("--device", default="auto")

    t = sub.add_parser("train", help="train a model; the run lands in --output_dir/<run_name>")
    data_args(t)
    t.add_argument(
        "--profile", default="full", choices=sorted(PROFILES), help="full: the original's settings"
    )
    t.add_argument("--model", default="unet", choices=sorted(MODELS))
    t.add_argument("--epochs", type=int)
    t.add_argument("--scheduler", choices=SCHEDULERS)
    t.add_argument("--image_size", type=int)
    t.add_argument("--batch_size", type=int)
    t.add_argument("--lr", type=float)
    t.add_argument("--weight_decay", type=float)
    t.add_argument("--base_channels", type=int, help="UNet width (64 in the original)")
    t.add_argument("--border", choices=["pet", "ignore"])
    t.add_argument(
        "--loss", choices=["bce", "bce_dice"], help="bce: the original's; bce_dice: BCE + soft Dice"
    )
    t.add_argument(
        "--recipe",
        choices=sorted(RECIPES),
        help="the optimisation and augmentation settings; default: the profile's",
    )
    t.add_argument("--ema_decay", type=float, help="weight EMA decay, e.g. 0.99 (0: off)")
    t.add_argument("--scale_jitter", type=float, help="random zoom in [1-j, 1+j] (0: off)")
    t.add_argument(
        "--copy_paste", type=float, help="paste another image's pet with this probability (0: off)"
    )
    t.add_argument("--pct_start", type=float, help="onecycle's warm-up fraction")
    t.add_argument(
        "--tta",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="validate with horizontal-flip test-time augmentation",
    )
    t.add_argument(
        "--amp",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="mixed precision (default: on for CUDA and for a CPU with native bf16)",
    )
    t.add_argument("--checkpoint_every", type=int, help="also keep every N-th epoch's model in <run>/epochs/")
    t.add_argument("--train_limit", type=int)
    t.add_argument("--val_limit", type=int)
    t.add_argument("--num_workers", type=int)
    t.add_argument("--seed", type=int)
    t.add_argument(
        "--sync_bn",
        action="store_true",
        help="under torchrun: BatchNorm over the global batch (all processes)",
    )
    t.add_argument("--output_dir", default="results/runs")
    t.add_argument("--run_name")
    t.add_argument("--overwrite", action="store_true")
    t.add_argument("--use_wandb", action="store_true")
    t.add_argument(
        "--on_corrupt", choices=["raise", "skip"], help="an unreadable image: stop (default) or skip it"
    )
    t.add_argument(
        "--resume",
        nargs="?",
        const=True,
        default=False,
        metavar="RUN_DIR",
        help="continue from last.pt: of --run_name, of RUN_DIR, or (alone) of the newest run",
    )

    e = sub.add_parser("evaluate", help="score a checkpoint on a split at original resolution; save figures")
    data_args(e)
    e.add_argument("--model_path", required=True, help="a best.pt or last.pt")
    e.add_argument("--split", default="test", choices=["train", "val", "trainval", "test"])
    e.add_argument("--image_size", type=int, help="default: the checkpoint's training size")
    e.add_argument("--batch_size", type=int, default=8)
    e.add_argument("--limit", type=int, help="only the first N images")
    e.add_argument(
        "--num_figures", type=int, default=10, help="image/truth/prediction figures of the worst images"
    )
    e.add_argument("--output_dir", default="results/evaluation")
    e.add_argument("--tta", action="store_true", help="average with the mirror image's prediction")

    r = sub.add_parser("predict", help="segment images (a file or a folder), or a data split with its truth")
    data_args(r)
    r.add_argument("--model_path", required=True)
    r.add_argument("--input", help="an image or a folder of images; without it, the --split of --data_path")
    r.add_argument("--split", default="test")
    r.add_argument("--limit", type=int, default=10, help="images of the split to show")
    r.add_argument("--image_size", type=int)
    r.add_argument("--threshold", type=float, default=0.5)
    r.add_argument("--output_dir", default="results/predictions")
    r.add_argument("--tta", action="store_true", help="average with the mirror image's prediction")

    d = sub.add_parser("download", help="download the real data set (with MD5 checks) into --data_path")
    d.add_argument("--data_path", default="data/oxford-iiit-pet")
    return p


def _train(a: argparse.Namespace) -> None:
    keys = (
        "model",
        "epochs",
        "scheduler",
        "image_size",
        "batch_size",
        "lr",
        "weight_decay",
        "border",
        "train_limit",
        "val_limit",
        "num_workers",
        "seed",
        "output_dir",
        "run_name",
        "on_corrupt",
        "loss",
        "ema_decay",
        "scale_jitter",
        "copy_paste",
        "pct_start",
        "tta",
        "checkpoint_every",
        "amp",
    )
    over = {k: getattr(a, k) for k in keys if getattr(a, k) is not None}
    over.update(
        data_root=a.data_path,
        dataset=a.dataset,
        device=a.device,
        overwrite=a.overwrite,
        use_wandb=a.use_wandb,
    )
    if a.base_channels is not None:
        over["model_kwargs"] = {"base_channels": a.base_channels}
    if a.sync_bn:
        over["sync_bn"] = True
    result = fit(config_from_profile(a.profile, recipe=a.recipe, **over), resume=a.resume)
    if not result.is_main:  # under torchrun rank 0 speaks and writes for the run
        return
    save_figure(plot_history(result.history), result.run_dir / "history.png")
    print(
        f"best val Dice {result.best_val_dice:.4f} at epoch {result.best_epoch}; run folder {result.run_dir}"
    )


def _evaluate(a: argparse.Namespace) -> None:
    size = a.image_size or checkpoint_image_size(a.model_path)
    root, kind = resolve_data_root(a.data_path, a.dataset)
    ds = OxfordPetDataset(root, a.split, image_size=size, limit=a.limit)
    model = load_model(a.model_path)
    df = evaluate(model, ds, device=a.device, batch_size=a.batch_size, tta=a.tta)
    out = Path(a.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    df.to_csv(out / "per_image.csv", index=False)
    table = summarize(df)
    table.to_csv(out / "summary.csv")
    save_figure(plot_dice_distribution(df, by="species"), out / "dice_distribution.png")
    worst = df.sort_values("dice").index[: a.num_figures].tolist()
    save_prediction_figures(model, ds, worst, out / "worst", size, device=a.device)
    print(
        f"{kind} {a.split}: {len(df)} images at original resolution\n{table.round(4).to_string()}\nsaved in {out}"
    )


def _predict(a: argparse.Namespace) -> None:
    size = a.image_size or checkpoint_image_size(a.model_path)
    model = load_model(a.model_path)
    out = Path(a.output_dir)
    if a.input is None:
        root, _ = resolve_data_root(a.data_path, a.dataset)
        ds = OxfordPetDataset(root, a.split, image_size=size, limit=a.limit)
        paths = save_prediction_figures(model, ds, range(len(ds)), out, size, a.threshold, a.device)
        print(f"{len(paths)} image / truth / prediction figures in {out}")
        return
    src = Path(a.input)
    if not src.exists():
        sys.exit(f"--input {src} does not exist")
    files = sorted(f for f in src.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES) if src.is_dir() else [src]
    out.mkdir(parents=True, exist_ok=True)
    for f in files:
        mask = predict(model, f, size, a.threshold, a.device, tta=a.tta)
        Image.fromarray(mask * 255).save(out / f"{f.stem}_mask.png")
        image = np.asarray(Image.open(f).convert("RGB"))
        save_figure(plot_prediction(image, None, mask, title=f.name), out / f"{f.stem}_figure.png")
    print(f"{len(files)} masks and figures in {out}")


def main(argv: list[str] | None = None) -> None:
    a = build_parser().parse_args(argv)
    try:
        {
            "train": _train,
            "evaluate": _evaluate,
            "predict": _predict,
            "download": lambda a: download(a.data_path),
        }[a.command](a)
    except KeyboardInterrupt as e:  # TrainingInterrupted says where last.pt is and how to resume
        if os.environ.get("RANK", "0") == "0":  # under torchrun every rank stops; rank 0 says so
            print(f"seglib {a.command}: interrupted. {e}", file=sys.stderr)
        sys.exit(130)
    except (ValueError, OSError, RuntimeError, FloatingPointError) as e:
        sys.exit(f"seglib {a.command}: error: {e}")
