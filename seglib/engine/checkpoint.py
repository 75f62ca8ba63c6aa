"""Checkpoints that carry what rebuilds their model: name, arguments and the run's config."""

from __future__ import annotations

import importlib
import pickle
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..models import MODELS, build_model
from .environment import read_environment
from .io import atomic_torch_save

__all__ = [
    "EXPORTED_SUFFIXES",
    "FORMAT",
    "TRAINED_SIZE",
    "model_spec",
    "save_checkpoint",
    "load_checkpoint",
    "load_model",
    "CheckpointError",
]

FORMAT = "seglib-checkpoint-v1"
EXPORTED_SUFFIXES = (".onnx", ".pt2")  # what export_model writes: models without a run's settings
TRAINED_SIZE = "trained_image_size"  # the attribute load_model and fit give a model: its run's image size


def _numpy_reconstruct() -> Callable[..., object]:
    """numpy's array unpickler: numpy 2 moved it; a last.pt written under either numpy names its own."""
    try:
        return importlib.import_module("numpy._core.multiarray")._reconstruct
    except ImportError:  # numpy 1
        return importlib.import_module("numpy.core.multiarray")._reconstruct


# What a seglib checkpoint holds beyond tensors and plain values: numpy's generator state in last.pt.
# torch.load unpickles nothing else, so a checkpoint from elsewhere cannot run code on load.
_ALLOWED: tuple[Callable[..., Any], ...] = (
    np.ndarray,
    np.dtype,
    _numpy_reconstruct(),
    type(np.dtype(np.uint32)),
)


class CheckpointError(ValueError):
    """A file that is not a seglib checkpoint, or one saved for another model."""


def model_spec(model: nn.Module, name: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """What `build_model` needs to rebuild `model`: {"name", "kwargs"} with in/out channels filled in."""
    kw = dict(kwargs)
    kw.setdefault("in_channels", getattr(model, "in_channels", 3))
    kw.setdefault("num_classes", getattr(model, "num_classes", 1))
    kw.pop("encoder_weights", None)  # the weights are in the state_dict; never download again on load
    return {"name": name, "kwargs": kw}


def save_checkpoint(path: str | Path, model: nn.Module, spec: dict[str, Any], **extra: Any) -> None:
    """Atomically save the model's state_dict, its spec and `extra` (config, optimizer, epoch, ...)."""
    state = {"format": FORMAT, "model_spec": spec, "model": model.state_dict(), **extra}
    atomic_torch_save(state, path)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load and check a seglib checkpoint; raise CheckpointError saying what the file is otherwise."""
    path = Path(path)
    if path.is_dir():
        found = sorted(p.name for p in path.glob("*.pt"))
        raise FileNotFoundError(
            f"{str(path)!r} is a folder; pass a checkpoint in it ({', '.join(found) or 'it holds none'}), "
            "e.g. best.pt of a run folder"
        )
    if not path.is_file():
        raise FileNotFoundError(
            f"checkpoint {str(path)!r} does not exist; runs keep theirs in results/runs/<run>/"
        )
    if path.suffix in EXPORTED_SUFFIXES:
        raise CheckpointError(
            f"{path} is an exported model, not a checkpoint: it holds no run settings (split, mask values). "
            "`predict --input` takes it; for a split, point at the checkpoint it was exported from (best.pt)"
        )
    _check_crc(path)
    try:
        with torch.serialization.safe_globals(list(_ALLOWED)):
            ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        with open(path, "rb") as f:  # torch's files: a zip, or its legacy format, a pickle (b"\x80")
            start = f.read(12)
            torch_wrote = start[:1] == b"\x80" or zipfile.is_zipfile(f)
        if torch_wrote:
            raise _unsafe(path, e) from e
        # text (a run's config.json) or another file: torch's words (retry with weights_only=False) would
        # point at an unsafe load of no use
        raise CheckpointError(
            f"{path} is not a checkpoint: neither of torch's formats (a zip, or a pickle); it starts with "
            f"{start!r}. Point at a best.pt or last.pt written by seglib"
        ) from e
    except Exception as e:  # pickle, zip and torch errors: the user needs one message
        raise _unreadable(path, e) from e
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        if isinstance(ckpt, dict) and ckpt and all(isinstance(v, torch.Tensor) for v in ckpt.values()):
            what = f"a bare state_dict ({len(ckpt)} tensors, first key {next(iter(ckpt))!r})"
            hint = "build the model with seglib.models.build_model(...) and call load_state_dict on it"
        else:
            what = f"a {type(ckpt).__name__}" + (
                f" with keys {sorted(ckpt)[:8]}" if isinstance(ckpt, dict) else ""
            )
            hint = "point at a best.pt or last.pt written by seglib"
        raise CheckpointError(f"{path} is not a seglib checkpoint: it holds {what}; {hint}")
    return ckpt


def _unreadable(path: Path, e: Exception) -> CheckpointError:
    return CheckpointError(
        f"{path} is not a checkpoint torch can read ({type(e).__name__}: {e}); point at a best.pt or last.pt "
        "written by seglib"
    )


def _unsafe(path: Path, e: Exception) -> CheckpointError:
    """The error for a file torch.load would read only by running Python objects' code from it."""
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:  # a legacy (non-zip) file: torch's own words name the object
        names = []
    allowed = {f"{f.__module__}.{f.__name__}" for f in _ALLOWED}
    names = sorted(n for n in names if n not in allowed)
    what = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
    return CheckpointError(
        f"{path} is not a seglib checkpoint: loading it would unpickle Python objects "
        f"({what or str(e).splitlines()[-1]}), and seglib loads only tensors and plain values, since such "
        "a file can run any code. Point at a best.pt or last.pt written by seglib (a file you made yourself "
        "and trust, torch.load(path, weights_only=False) reads)"
    )


def _misfit(built: dict[str, torch.Tensor], saved: dict[str, Any]) -> str:
    """What tells the saved weights from those of the model as built: a line, not torch's line per weight."""
    shape = {k: tuple(getattr(v, "shape", ())) for k, v in saved.items()}  # load_state_dict says the rest
    differ = [k for k in built if k in saved and shape[k] != tuple(built[k].shape)]
    missing = [k for k in built if k not in saved]
    unexpected = [k for k in saved if k not in built]
    parts = []
    if differ:
        k, n = differ[0], len(differ)
        first = f"first {k}: {list(shape[k])} saved, {list(built[k].shape)} built"
        parts.append(f"{n} weight{'s' * (n > 1)} of another shape ({first})")
    for what, keys in (("missing from the file", missing), ("not in the model", unexpected)):
        if keys:
            parts.append(f"{len(keys)} {what} ({', '.join(keys[:3])}{', ...' if len(keys) > 3 else ''})")
    return "; ".join(parts)


def _trained_by(path: Path) -> str:
    """Which seglib commit trained the run beside `path`, as its environment.json says, or where to look."""
    try:
        commit = read_environment(path.parent)[-1].get("seglib_commit", "unknown")
    except (ValueError, IndexError, AttributeError):
        commit = "unknown"
    if commit == "unknown":
        return "evaluate it with the seglib that trained it, or train again"
    return (
        f"its environment.json says seglib {commit} trained it: evaluate it there (git checkout {commit}), or "
        "train again"
    )


def _check_crc(path: Path) -> None:
    """Raise CheckpointError when a record of the zip file torch wrote fails its CRC-32.

    torch.load does not check them: a file damaged on disk or in a copy would load and predict garbage.
    Files that are not zips (torch's legacy format, or not checkpoints at all) are left to torch.load.
    """
    try:
        with zipfile.ZipFile(path) as z:
            bad = z.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError):
        return  # not a readable zip: torch.load says what it is
    if bad is not None:
        raise CheckpointError(
            f"{path} is damaged: its record {bad!r} fails its checksum (the file changed after torch wrote it, "
            "e.g. a broken copy or disk); copy it again, or use the run's other checkpoint (best.pt or last.pt)"
        )


def load_model(
    path: str | Path,
    map_location: str | torch.device = "cpu",
    expect_model: str | None = None,
    expect_num_classes: int | None = None,
    checkpoint: dict[str, Any] | None = None,
) -> nn.Module:
    """Rebuild the model a checkpoint was saved for, load its weights, and return it in eval mode.

    `expect_model` / `expect_num_classes`, when given, must match what the checkpoint was saved for.
    `checkpoint`: what `load_checkpoint(path)` already returned, so that the file is read once.
    """
    ckpt = load_checkpoint(path, map_location) if checkpoint is None else checkpoint
    spec = ckpt["model_spec"]
    name, kwargs = spec["name"], spec["kwargs"]
    saved_for = f"model {name!r} with {kwargs}"
    if name not in MODELS:
        raise CheckpointError(
            f"{path} was saved for {saved_for}, which this seglib does not know ({sorted(MODELS)}); "
            f"a model of your own: seglib.engine.register_model({name!r}, YourModel) first"
        )
    if expect_model is not None and expect_model != name:
        raise CheckpointError(
            f"{path} was saved for {saved_for}, not for model {expect_model!r}; pick a checkpoint "
            f"of a {expect_model!r} run or set the model to {name!r}"
        )
    if expect_num_classes is not None and kwargs.get("num_classes") != expect_num_classes:
        raise CheckpointError(
            f"{path} was saved for {saved_for}: num_classes={kwargs.get('num_classes')}, "
            f"not {expect_num_classes}"
        )
    model = build_model(name, **kwargs)
    misfit = _misfit(model.state_dict(), ckpt["model"])
    if misfit:
        raise CheckpointError(
            f"{path}: its weights do not fit {saved_for} as this seglib builds it: {misfit}. The model's "
            f"code has changed since the run: {_trained_by(Path(path))}"
        )
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as e:  # what _misfit does not look at (e.g. a weight that is not a tensor)
        raise CheckpointError(f"{path}: its weights do not fit {saved_for}: {e}") from e
    size = ckpt.get("config", {}).get("image_size")
    if size is not None:  # predict() and the viewer then see images at the size the model learned
        setattr(model, TRAINED_SIZE, int(size))
    return model.to(map_location).eval()
