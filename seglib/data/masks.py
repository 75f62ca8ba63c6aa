"""A folder data set's masks: which pixels are the object (`mask_values`), read into the trimap convention
of the Oxford set (1 object, 2 background; a folder mask has no border band)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .files import CorruptSampleError, read_image, stored_and_upright_size, upright_for
from .trimaps import BACKGROUND, PET

__all__ = [
    "MaskRule",
    "MaskValueError",
    "check_mask_size",
    "parse_mask_values",
    "read_folder_mask",
    "read_folder_pair",
    "shown",
]


class MaskValueError(ValueError):
    """A mask whose values do not say which pixels are the object: pass `mask_values`."""


@dataclass(frozen=True)
class MaskRule:
    """Which mask pixels are the object: grey (or palette) `values`, RGB `colours`, values `above` N;
    none of them: the one value besides 0 (the one colour besides black)."""

    values: tuple[int, ...] = ()
    colours: tuple[tuple[int, int, int], ...] = ()
    above: int | None = None

    @property
    def auto(self) -> bool:
        return not (self.values or self.colours or self.above is not None)


def parse_mask_values(text: str) -> MaskRule:
    """`mask_values` -> MaskRule: "" (auto), "1,2" (grey or palette values), ">127", "#ff0000,#00ff00"."""
    items = [t.strip() for t in str(text).split(",") if t.strip()]
    values: list[int] = []
    colours: list[tuple[int, int, int]] = []
    above = None
    for item in items:
        if re.fullmatch(r"\d+", item):
            values.append(int(item))
        elif re.fullmatch(r">\d+", item) and above is None:
            above = int(item[1:])
        elif re.fullmatch(r"#[0-9a-fA-F]{6}", item):
            colours.append((int(item[1:3], 16), int(item[3:5], 16), int(item[5:7], 16)))
        else:
            raise ValueError(
                f"mask_values={text!r}: cannot read {item!r}; give the object's pixel values separated by "
                'commas: grey or palette values ("255" or "1,2"), a threshold (">127"), RGB colours '
                '("#ff0000"), or "" for the one value besides 0'
            )
    if above is not None and (values or colours):
        raise ValueError(f"mask_values={text!r}: a threshold (>N) goes alone, without values or colours")
    return MaskRule(tuple(values), tuple(colours), above)


def _hex(colour: np.ndarray | tuple[int, ...]) -> str:
    return "#" + "".join(f"{int(c):02x}" for c in colour)


def shown(values: list[str]) -> str:
    return ", ".join(values[:10]) + (f", ... ({len(values)} in all)" if len(values) > 10 else "")


def _auto_object(path: Path, found: list, labels: list[str], background: object) -> object:
    """The one value besides the background, or MaskValueError listing the values and what to pass."""
    others = [v for v in found if v != background]
    if len(others) <= 1:
        return others[0] if others else None
    kind = "colours" if isinstance(background, tuple) else "values"
    bg = "black" if kind == "colours" else "0"
    named = [t for v, t in zip(found, labels, strict=True) if v != background]
    if len(found) == 2:  # two values and neither is the background
        hint = " or ".join(f'mask_values="{t}"' for t in named)
        what = f"neither is {bg}, so which one is the object is unclear; pass {hint}"
    else:
        soft = ', or ">127" for a soft or JPEG-compressed mask' if kind == "values" else ""
        what = (
            f"a mask needs {bg} for the background and one {kind[:-1]} for the object; pass mask_values with "
            f'the object\'s {kind}, e.g. mask_values="{named[0]}" or "{",".join(named[:2])}" (the rest is '
            f"background){soft}"
        )
    raise MaskValueError(f"{path}: the mask has {len(found)} {kind} ({shown(labels)}); {what}")


def _packed(rgb: np.ndarray) -> np.ndarray:
    """Each RGB colour as one int32 (0xRRGGBB): a colour per pixel that np.unique and np.isin take."""
    return rgb[..., 0].astype(np.int32) << 16 | rgb[..., 1].astype(np.int32) << 8 | rgb[..., 2]


def _object_pixels(path: Path, arr: np.ndarray, rule: MaskRule) -> np.ndarray:
    """The object's pixels (bool HxW) of a mask array (HxW values or HxWx3 colours) under `rule`."""
    if arr.ndim == 3 and (rule.values or rule.above is not None):
        if (arr == arr[..., :1]).all():  # a grey mask saved as RGB
            arr = arr[..., 0]
        else:
            raise MaskValueError(
                f"{path}: an RGB mask with colours, but mask_values gives grey values; give the object's "
                f'colour instead, e.g. mask_values="{_hex(arr.reshape(-1, 3).max(0))}"'
            )
    if arr.ndim == 2 and rule.colours:
        raise MaskValueError(
            f"{path}: a single-channel mask (values {shown([str(v) for v in np.unique(arr)])}), but "
            'mask_values gives RGB colours; give the object\'s values instead, e.g. mask_values="255"'
        )
    if rule.above is not None:
        return arr > rule.above
    if rule.values:
        return np.isin(arr, rule.values)
    if rule.colours:
        return np.isin(_packed(arr), [r << 16 | g << 8 | b for r, g, b in rule.colours])
    if arr.ndim == 3:
        found = [((int(v) >> 16) & 255, (int(v) >> 8) & 255, int(v) & 255) for v in np.unique(_packed(arr))]
        obj = _auto_object(path, found, [_hex(c) for c in found], (0, 0, 0))
        return np.zeros(arr.shape[:2], bool) if obj is None else (arr == np.array(obj)).all(-1)
    found = [int(v) for v in np.unique(arr)]
    obj = _auto_object(path, found, [str(v) for v in found], 0)
    return np.zeros(arr.shape, bool) if obj is None else arr == obj


def _mask_layer(im: Image.Image, rule: MaskRule) -> Image.Image:
    """What says the object: the colours, unless the alpha varies (a cut-out, or an object painted on a
    transparent background): then the alpha, 0 (transparent) the background. Colours in `rule` always
    read the colours."""
    if not rule.colours and (im.mode in ("RGBA", "LA", "PA") or "transparency" in im.info):
        alpha = np.asarray(im.convert("RGBA"))[..., 3]
        if (alpha != alpha.flat[0]).any():
            return Image.fromarray(np.ascontiguousarray(alpha))
    return im.convert("RGB") if im.mode in ("RGBA", "CMYK", "YCbCr", "LAB", "HSV") else im


def read_folder_mask(path: Path, rule: MaskRule = MaskRule()) -> np.ndarray:
    """The mask at `path` as a trimap (uint8 HxW: 1 object, 2 background) under `rule`."""
    try:
        with Image.open(path) as im:
            im.seek(0)  # first frame of a GIF
            arr = np.asarray(_mask_layer(im, rule))
    except (OSError, SyntaxError, ValueError) as e:
        raise CorruptSampleError(
            f"{path}: cannot read the mask ({type(e).__name__}: {e}); the file is truncated or not an "
            "image. Replace it, or pass on_corrupt='skip' to leave such samples out"
        ) from e
    if arr.ndim == 3 and arr.shape[2] == 2:  # grey or palette with alpha: the first channel
        arr = arr[..., 0]
    pixels = _object_pixels(path, arr.astype(np.uint8) if arr.dtype == bool else arr, rule)
    return np.where(pixels, PET, BACKGROUND).astype(np.uint8)


def check_mask_size(expected: tuple[int, int], mask: np.ndarray, image_path: Path, mask_path: Path) -> None:
    """CorruptSampleError giving both sizes (width x height) when a mask and its image differ."""
    if mask.shape != expected:
        (h, w), (mh, mw) = expected, mask.shape
        stored, shown = stored_and_upright_size(image_path)
        turned = (
            f"; the image is stored as {stored[1]}x{stored[0]} and shown turned to {shown[1]}x{shown[0]} by "
            "its EXIF orientation: a mask of either size is taken"
            if stored != shown
            else ""
        )
        raise CorruptSampleError(
            f"{mask_path}: mask size {mw}x{mh} differs from its image's {w}x{h} ({image_path}){turned}; a mask "
            "must have its image's size: resize the mask to it with nearest-neighbour sampling (which keeps "
            "its values), or pass on_corrupt='skip' to leave the pair out"
        )


def read_folder_pair(
    image_path: Path, mask_path: Path, rule: MaskRule = MaskRule()
) -> tuple[np.ndarray, np.ndarray]:
    """An image (uint8 HxWx3) and its mask as a trimap (uint8 HxW), checked to agree in size; the image
    upright (EXIF orientation applied) unless the mask has its stored size only (`files.upright_for`)."""
    trimap = read_folder_mask(mask_path, rule)
    image = read_image(image_path, upright_for(image_path, trimap.shape))
    check_mask_size(image.shape[:2], trimap, image_path, mask_path)
    return image, trimap
