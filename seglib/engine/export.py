"""Models that leave the workbook: a checkpoint's model as an ONNX file (for onnxruntime, without seglib)
or a torch.export program (.pt2, for PyTorch without seglib), with dynamic batch, height and width; and
the check that the exported file computes what the checkpoint does.

The input `image` is float32 N x 3 x H x W: RGB scaled to [0, 1], then normalised with the ImageNet mean
and std, as in training; the output `logits` is N x 1 x H x W (a pixel is object where the logit > 0,
i.e. sigmoid > 0.5, where the run kept the default threshold). The ONNX file's metadata carries the model,
the image size it was trained at, the mean, the std and the run's threshold (docs/export.md). ONNX needs
the `export` extra: `pip install -e '.[export]'`.
"""

from __future__ import annotations

import functools
import io
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..atomic import atomic_path, atomic_write
from ..data import IMAGENET_MEAN, IMAGENET_STD, SegmentationDataset
from ..metrics import threshold_logit
from .checkpoint import EXPORTED_SUFFIXES, load_checkpoint, load_model
from .evaluate import checkpoint_image_size, checkpoint_threshold, evaluate, model_image_size

__all__ = [
    "EXPORTED_SUFFIXES",
    "EXPORT_FORMATS",
    "OnnxModel",
    "ProgramModel",
    "check_export",
    "export_model",
    "load_exported",
]

EXPORT_FORMATS = ("onnx", "pt2")
# The smallest height and width the exported graph takes. At 32 px the ResNet34-UNet's deepest map is
# 1 x 1, a size torch.export treats as a special case rather than as one value of the dimension.
MIN_SIDE = {"resnet34_unet": 33}
MAX_SIDE = 8192
# torch's exporter writes opset-18 operators and converts them upward only: a lower opset asked for came
# back as an opset-18 file, after a converter's traceback
MIN_OPSET = 18
PT2_METADATA = "seglib.json"  # the .pt2 archive's extra file with the ONNX file's metadata, as JSON
# An installed seglib has no '.' to install from: name the packages themselves as well
EXTRA_HINT = "pip install -e '.[export]' in a checkout, else pip install onnx onnxruntime onnxscript"


def _require(module: str) -> Any:
    try:
        return __import__(module)
    except ImportError as e:
        raise ImportError(
            f"no {module} package: the ONNX export and its check need the export extra, {EXTRA_HINT}"
        ) from e


def _dynamic_shapes(name: str) -> dict[str, dict[int, Any]]:
    batch = torch.export.Dim("batch", min=1, max=1024)
    height = torch.export.Dim("height", min=MIN_SIDE.get(name, 32), max=MAX_SIDE)
    width = torch.export.Dim("width", min=MIN_SIDE.get(name, 32), max=MAX_SIDE)
    return {"x": {0: batch, 2: height, 3: width}}


def export_model(
    checkpoint: str | Path, path: str | Path | None = None, fmt: str = "onnx", opset: int | None = None
) -> Path:
    """Export the model of a seglib checkpoint to `path` (default: beside it, best.onnx or best.pt2).

    `fmt` "onnx" writes one self-contained ONNX file with the metadata of the module docstring; "pt2"
    a torch.export program (`torch.export.load(path).module()` runs it). Returns the file written.
    """
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; choose one of {list(EXPORT_FORMATS)}")
    path = Path(path) if path is not None else Path(checkpoint).with_suffix(f".{fmt}")
    if path.suffix != f".{fmt}":  # predict and check_export tell the formats apart by the suffix
        raise ValueError(f"{path}: format {fmt} writes a .{fmt} file; name it so, or pick the other --format")
    if opset is not None:
        _check_opset(opset, fmt)
    ckpt = load_checkpoint(checkpoint)
    name = ckpt["model_spec"]["name"]
    image_size, threshold = checkpoint_image_size(ckpt), checkpoint_threshold(ckpt)  # the run's
    if fmt == "pt2" and image_size < MIN_SIDE.get(name, 32):  # predict runs it at that size: it would fail
        raise ValueError(
            f"{checkpoint}: a .pt2 {name} takes images of {MIN_SIDE[name]} px and more, and this run trained "
            f"at {image_size} px, the size predict feeds it; export to ONNX (format onnx, the default), which runs at "
            f"{image_size} px, or train at {MIN_SIDE[name]} px or more"
        )
    model = load_model(checkpoint, checkpoint=ckpt).float().eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    side = max(image_size, 64)  # the example's size: any size within the dimensions' range works
    example = (torch.randn(2, 3, side, side),)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporters' notes on internals a user cannot act on
        meta = _metadata(name, image_size, threshold, checkpoint)
        if fmt == "pt2":
            program = torch.export.export(model, example, dynamic_shapes=_dynamic_shapes(name))
            # Serialised in memory, then written: torch.export.save meets a failed write (a full disk) in
            # C++ and aborts the whole process (c10::Error, exit 134). A kill mid-write leaves the previous file.
            program_bytes = io.BytesIO()
            torch.export.save(program, program_bytes, extra_files={PT2_METADATA: json.dumps(meta)})
            with atomic_write(path) as f:
                f.write(program_bytes.getbuffer())
            return path
        with atomic_path(path) as tmp:
            _export_onnx(model, example, tmp, name, opset)
            _set_metadata(tmp, meta)
    return path


def _check_opset(opset: int, fmt: str) -> None:
    """A ValueError for an opset the ONNX exporter would not write, or given to the other format."""
    if fmt != "onnx":
        raise ValueError(f"opset {opset} is an ONNX setting; format {fmt} has none: leave it out")
    top = _require("onnx").defs.onnx_opset_version()
    if not MIN_OPSET <= opset <= top:
        raise ValueError(
            f"opset {opset}: the exporter writes ONNX opsets {MIN_OPSET} to {top}; give one of them "
            f"({MIN_OPSET} for the oldest runtimes), or leave it out for the exporter's default"
        )


def _metadata(name: str, image_size: int, threshold: float, checkpoint: str | Path) -> dict[str, str]:
    """The ONNX file's metadata_props: what an inference script needs besides the graph."""
    cut = threshold_logit(threshold)  # 0 at 0.5
    return {
        "model": name,
        "image_size": str(image_size),
        "mean": json.dumps(list(IMAGENET_MEAN)),
        "std": json.dumps(list(IMAGENET_STD)),
        "threshold": repr(threshold),
        "input": "image: float32 N x 3 x H x W, RGB / 255, then (x - mean) / std",
        "output": f"logits: float32 N x 1 x H x W; object where logits > {cut:.9g} (sigmoid > {threshold!r})",
        "source": str(Path(checkpoint).resolve()),
    }


def _export_onnx(
    model: nn.Module, example: tuple[torch.Tensor], path: Path, name: str, opset: int | None
) -> None:
    _require("onnxscript")  # the dynamo exporter's translator
    torch.onnx.export(
        model,
        example,
        path,
        input_names=["image"],
        output_names=["logits"],
        dynamic_shapes=_dynamic_shapes(name),
        opset_version=opset,
        dynamo=True,
        external_data=False,  # one file to hand on
        verbose=False,
    )


def _set_metadata(path: Path, meta: dict[str, str]) -> None:
    """Replace the ONNX file's metadata_props (onnxruntime: `get_modelmeta().custom_metadata_map`)."""
    onnx = _require("onnx")
    proto = onnx.load(path)
    del proto.metadata_props[:]
    for key, value in meta.items():
        proto.metadata_props.add(key=key, value=value)
    onnx.save(proto, path)


class OnnxModel(nn.Module):
    """An ONNX file run by onnxruntime on the CPU, called like the PyTorch model (images -> logits), so
    that `evaluate` and `predict` score the exported file itself."""

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        ort = _require("onnxruntime")
        self.path = Path(path)
        self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        self.metadata: dict[str, str] = dict(self.session.get_modelmeta().custom_metadata_map)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        image = x.detach().float().cpu().contiguous().numpy()
        (logits,) = self.session.run(["logits"], {"image": image})
        return torch.from_numpy(logits).to(x.device)


class ProgramModel(nn.Module):
    """A torch.export program (.pt2) called like the PyTorch model. Its module is kept outside the module
    tree: an exported module refuses `.eval()`, which `evaluate` calls."""

    program: nn.Module  # set with object.__setattr__, which keeps it out of the tree

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        self.path = Path(path)
        extra = {PT2_METADATA: ""}
        object.__setattr__(self, "program", torch.export.load(self.path, extra_files=extra).module())
        # the ONNX file's metadata (image_size, mean, std, ...); empty for files of older seglib versions
        self.metadata: dict[str, str] = json.loads(extra[PT2_METADATA] or "{}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.program(x)


def load_exported(path: str | Path) -> OnnxModel | ProgramModel:
    """An exported file as a module: an `OnnxModel` for .onnx, a `ProgramModel` for .pt2."""
    path = Path(path)
    kinds: dict[str, tuple[type[OnnxModel | ProgramModel], str]] = {
        ".onnx": (OnnxModel, "an ONNX file onnxruntime"),
        ".pt2": (ProgramModel, "a program torch.export"),
    }
    if path.suffix not in kinds:
        raise ValueError(f"{path}: not an exported model; export_model writes .onnx and .pt2 files")
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; `python -m seglib export` writes one beside best.pt")
    build, what = kinds[path.suffix]
    try:
        return build(path)
    except ImportError:
        raise
    except Exception as e:  # protobuf, zip and pickle errors: the user needs one message
        raise ValueError(
            f"{path} is not {what} can read ({type(e).__name__}: {str(e)[:200]}); export it again with "
            f"`python -m seglib export --model_path <run>/best.pt --format {path.suffix[1:]}`"
        ) from e


@torch.no_grad()
def check_export(
    exported: str | Path,
    checkpoint: str | Path,
    dataset: SegmentationDataset | None = None,
    sizes: tuple[tuple[int, int, int], ...] | None = None,
    seed: int = 0,
) -> dict[str, float]:
    """Compare an exported file with its checkpoint's model: `max_abs_diff` of the logits on random
    images of `sizes` (batch, height, width; None: the training size, 64 x 64 and 97 x 131); with a
    `dataset` also the mean Dice of both at the original resolution (`dice_torch`, `dice_exported`) and
    the largest per-image Dice difference."""
    model, other = load_model(checkpoint).float().eval(), load_exported(exported)
    if sizes is None:  # the training size too: the one predict feeds it
        side = model_image_size(model)
        sizes = tuple(dict.fromkeys([(1, side, side), (1, 64, 64), (3, 97, 131)]))
    gen = torch.Generator().manual_seed(seed)
    diff = 0.0
    for n, h, w in sizes:
        x = torch.randn(n, 3, h, w, generator=gen)
        diff = max(diff, float((model(x) - other(x)).abs().max()))
    out = {"max_abs_diff": diff}
    if dataset is not None:
        on_cpu = functools.partial(evaluate, device="cpu", amp=False, progress=False, channels_last=False)
        a, b = on_cpu(model, dataset), on_cpu(other, dataset)
        out |= {
            "dice_torch": float(a.dice.mean()),
            "dice_exported": float(b.dice.mean()),
            "max_image_dice_diff": float(np.abs(a.dice.to_numpy() - b.dice.to_numpy()).max()),
        }
    return out
