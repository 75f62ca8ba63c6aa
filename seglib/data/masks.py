"""A folder data set's masks: which pixels are the object (`mask_values`), read into the trimap convention
of the Oxford set (1 object, 2 background; a folder mask has no border band)."""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .files import CorruptSampleError, read_image, reason_unread, stored_and_upright_size, upright_for
from .trimaps import BACKGROUND, PET

__all__ = [
    "LOSSY_TOLERANCE",
    "MaskRule",
    "MaskValueError",
    "MaskValueWarning",
    "check_mask_size",
    "mask_size_message",
    "parse_mask_values",
    "read_folder_mask",
    "read_folder_pair",
    "shown",
]


# How far (RGB distance) a colour in a JPEG or lossy-WebP mask may stray from the colour drawn: as far as
# chroma subsampling moves a saturated box's edge pixels (docs/your-data.md says how far); the colours
# of a label map lie 128 and more apart, so it merges none of them.
LOSSY_TOLERANCE = 80
# Lossy files tint grey a little: an RGB mask whose channels differ by no more than this is grey.
GREY_SPREAD = 16
# A lossy file's black stays this near black (RGB distance) away from an object's edges: an all-black
# mask's noise is no object, a dark object's colour is more than noise.
FAINT_SHARE = 0.001  # a lossy mask with this share of pixels not 0, all near black: small values, not noise
LOSSY_NOISE = 24
# A grey mask with more levels than this besides 0 has a soft edge (anti-aliased, resized, blurred), not
# that many classes: its hint leads with a threshold.
SOFT_LEVELS = 16


# masks whose values are unclear are not skipped (on_corrupt leaves out unreadable files only)
VALUES_TODO = (
    "give mask_values as the lines say, or fix those masks; on_corrupt='skip' leaves out unreadable files"
)


class MaskValueError(ValueError):
    """A mask whose values do not say which pixels are the object: pass `mask_values`."""


class MaskValueWarning(UserWarning):
    """`mask_values` matches no pixel of a mask that is not all background (given once per mask folder)."""


@dataclass(frozen=True)
class MaskRule:
    """Which mask pixels are the object: grey (or palette) `values`, RGB `colours`, values `above` N;
    none of them: the one value besides 0 (the one colour besides black). In a lossy file a colour
    takes the pixels within `lossy_tolerance` of it (`_colour_pixels`)."""

    values: tuple[int, ...] = ()
    colours: tuple[tuple[int, int, int], ...] = ()
    above: int | None = None
    # a field, not only a constant: the rule's repr keys the decode cache, which must not keep masks
    # read before lossy colours matched within it
    lossy_tolerance: int = LOSSY_TOLERANCE

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


def _text(rule: MaskRule) -> str:
    """The `mask_values` text of a (non-auto) rule."""
    if rule.above is not None:
        return f">{rule.above}"
    return ",".join([str(v) for v in rule.values] + [_hex(c) for c in rule.colours])


def _hex(colour: np.ndarray | tuple[int, ...]) -> str:
    return "#" + "".join(f"{int(c):02x}" for c in colour)


def shown(values: list[str]) -> str:
    """The first ten of `values`, comma-separated, and how many in all beyond ten: for error messages."""
    return ", ".join(values[:10]) + (f", ... ({len(values)} in all)" if len(values) > 10 else "")


def _auto_object(
    path: Path,
    found: list[int] | list[tuple[int, int, int]],
    labels: list[str],
    background: object,
    named: list[str] | None = None,
) -> object:
    """The one value besides the background, or MaskValueError listing the values and what to pass
    (`named`: the values to suggest, else those found besides the background)."""
    others = [v for v in found if v != background]
    if len(others) <= 1:
        return others[0] if others else None
    kind = "colours" if isinstance(background, tuple) else "values"
    bg = "black" if kind == "colours" else "0"
    if named is None:
        named = [t for v, t in zip(found, labels, strict=True) if v != background]
    if kind == "values" and found == [1, 2, 3]:  # the Oxford-IIIT Pet's own trimaps: 2 is the background
        what = (
            'they look like an Oxford-IIIT Pet trimap (1 pet, 2 background, 3 border): pass mask_values="1,3" '
            '(the pet with its border, as the original counts it) or "1"'
        )
    elif len(found) == 2:  # two values and neither is the background
        hint = " or ".join(f'mask_values="{t}"' for t in named)
        what = f"neither is {bg}, so which one is the object is unclear; pass {hint}"
    elif kind == "values" and len(others) > SOFT_LEVELS:  # an anti-aliased or blurred edge, not classes
        what = (
            f'its many levels look like a soft edge (anti-aliased, blurred or compressed): pass mask_values=">127" '
            f'(the brighter half is the object), or the object\'s values, e.g. mask_values="{named[0]}"'
        )
    else:
        soft = ', or ">127" for a soft or JPEG-compressed mask' if kind == "values" else ""
        what = (
            f"a mask needs {bg} for the background and one {kind[:-1]} for the object; pass mask_values with "
            f'the object\'s {kind}, e.g. mask_values="{named[0]}"'
            + (f' or "{",".join(named[:2])}"' if len(named) > 1 else "")
            + f" (the rest is background){soft}"
        )
    raise MaskValueError(f"{path}: the mask has {len(found)} {kind} ({shown(labels)}); {what}")


def _packed(rgb: np.ndarray) -> np.ndarray:
    """Each RGB colour as one int32 (0xRRGGBB): a colour per pixel that np.unique and np.isin take."""
    return rgb[..., 0].astype(np.int32) << 16 | rgb[..., 1].astype(np.int32) << 8 | rgb[..., 2]


def _distance(arr: np.ndarray, colour: tuple[int, int, int]) -> np.ndarray:
    """RGB distance of each pixel (HxWx3, or HxW grey as r=g=b) from `colour`."""
    rgb = arr[..., None] if arr.ndim == 2 else arr
    return np.sqrt(((rgb.astype(np.float32) - np.array(colour, np.float32)) ** 2).sum(-1))


def _background(arr: np.ndarray, lossy: bool) -> np.ndarray:
    """The pixels that are background, 0 or black: exactly, or within a lossy file's noise."""
    if not lossy:
        return (arr == 0).all(-1) if arr.ndim == 3 else arr == 0
    return _distance(arr, (0, 0, 0)) <= LOSSY_NOISE


def _colour_pixels(arr: np.ndarray, colours: tuple[tuple[int, int, int], ...], tol: int) -> np.ndarray:
    """Pixels of these colours: exactly (tol 0), or within `tol` of one and nearer it than black, so
    that a dark colour does not take the background's noise."""
    if tol == 0:
        return np.isin(_packed(arr), [r << 16 | g << 8 | b for r, g, b in colours])
    nearest = np.min([_distance(arr, c) for c in colours], axis=0)
    black = np.inf if (0, 0, 0) in colours else _distance(arr, (0, 0, 0))
    return (nearest <= tol) & (nearest < black)


def _common(arr: np.ndarray, tol: int, k: int = 3) -> list[str]:
    """Up to k of the mask's values (colours) besides the background, most common first: what a hint
    names. In a lossy file (tol > 0) each gathers the pixels within `tol` of it, and only those with a
    tenth of the first one's pixels count: a box's blurred edge is not a colour of its own."""
    keys, counts = np.unique(_packed(arr) if arr.ndim == 3 else arr, return_counts=True)
    cols = np.stack([keys >> 16 & 255, keys >> 8 & 255, keys & 255] if arr.ndim == 3 else [keys] * 3, -1)
    keep = np.linalg.norm(cols, axis=1) > (LOSSY_NOISE if tol else 0)
    cols, counts = cols[keep].astype(np.int64), counts[keep]
    picked: list[tuple[tuple[int, ...], int]] = []  # (colour, its pixels)
    while len(cols) and len(picked) < 4 * k:
        near = np.linalg.norm(cols - cols[np.argmax(counts)], axis=1) <= tol
        picked.append((tuple(int(c) for c in cols[np.argmax(counts)]), int(counts[near].sum())))
        cols, counts = cols[~near], counts[~near]
    if not picked:  # only faint colours in a lossy file: name them as a lossless file's
        return _common(arr, 0, k) if tol else []
    picked.sort(key=lambda p: -p[1])
    chosen = [c for c, n in picked if not tol or n >= picked[0][1] / 10][:k]
    return [_hex(c) if arr.ndim == 3 else str(c[0]) for c in chosen]


def _as_grey(arr: np.ndarray, tol: int) -> np.ndarray | None:
    """An RGB mask whose channels agree (within GREY_SPREAD in a lossy file) as grey, else None."""
    spread = arr.max(-1).astype(np.int16) - arr.min(-1)
    if (spread <= (GREY_SPREAD if tol else 0)).all():
        return arr.mean(-1).round().astype(np.uint8) if tol else arr[..., 0]
    return None


_warned: set[tuple[str, MaskRule]] = set()


def _warn_unmatched(path: Path, arr: np.ndarray, rule: MaskRule, tol: int) -> None:
    """MaskValueWarning, once per mask folder and rule, for a mask that `rule` leaves empty although it
    is not all background: mask_values that name no value of the file (a typo, a JPEG's shifted
    colour). Not an error: a label map's image without the chosen classes is rightly empty."""
    key = (str(path.parent), rule)
    if key in _warned or _background(arr, tol > 0).all():
        return
    _warned.add(key)
    kind = "colours" if arr.ndim == 3 else "values"
    common = _common(arr, tol)
    warnings.warn(
        f'{path}: mask_values="{_text(rule)}" matches no pixel, yet the mask is not all background (its '
        f"most common {kind} besides the background: {', '.join(common)}); it reads as all background. If "
        f'it holds the object, pass its {kind[:-1]}, e.g. mask_values="{common[0]}" (said once for '
        f"{path.parent})",
        MaskValueWarning,
        stacklevel=2,
    )


def _object_pixels(path: Path, arr: np.ndarray, rule: MaskRule, tol: int = 0) -> np.ndarray:
    """The object's pixels (bool HxW) of a mask array (HxW values or HxWx3 colours) under `rule`; `tol`:
    how far a colour may stray in a lossy file (0: lossless, exact)."""
    if arr.ndim == 3 and not rule.colours:
        grey = _as_grey(arr, tol)  # a grey mask saved as RGB
        if grey is not None:
            arr = grey
        elif not rule.auto:
            common = _common(arr, tol)
            raise MaskValueError(
                f"{path}: an RGB mask with colours, but mask_values gives grey values; give the object's "
                f'colour instead, e.g. mask_values="{common[0]}" (its most common colours besides black: '
                f"{', '.join(common)})"
            )
    if arr.ndim == 2 and rule.colours:
        raise MaskValueError(
            f"{path}: a single-channel mask (values {shown([str(v) for v in np.unique(arr)])}), but "
            'mask_values gives RGB colours; give the object\'s values instead, e.g. mask_values="255"'
        )
    if rule.auto:
        return _auto_pixels(path, arr, tol)
    if rule.above is not None:
        pixels = arr > rule.above
    elif rule.values:
        pixels = np.isin(arr, rule.values)
    else:
        pixels = _colour_pixels(arr, rule.colours, tol)
    if not pixels.any():
        _check_not_faint(path, arr, tol)
        _warn_unmatched(path, arr, rule, tol)
    return pixels


def _check_not_faint(path: Path, arr: np.ndarray, tol: int) -> None:
    """MaskValueError for a lossy mask read as all background whose pixels are not all 0: small values
    (0/1 labels) saved as JPEG lie within the noise taken for black. A black JPEG decodes to exact 0s."""
    if not tol or not _background(arr, True).all():
        return
    share = float((arr.max(-1) if arr.ndim == 3 else arr).astype(bool).mean())
    # two levels, 0 and a faint one: a uniform near-black file (every pixel 10) is an empty mask with an offset
    if FAINT_SHARE <= share < 1 - FAINT_SHARE * 10:
        raise MaskValueError(
            f"{path}: a lossy mask (JPEG, WebP) whose values all lie within its noise of black (0 to "
            f"{int(arr.max())}, {share:.0%} of the pixels not 0): small values such as 0/1 do not survive "
            'lossy compression; save the masks as PNG, or if its pixels above 0 are the object pass mask_values=">0"'
        )


def _auto_pixels(path: Path, arr: np.ndarray, tol: int) -> np.ndarray:
    """The object's pixels without `mask_values`: the one value (colour) besides 0 (black)."""
    if tol and _background(arr, True).all():
        _check_not_faint(path, arr, tol)
        return np.zeros(arr.shape[:2], bool)  # a lossy file's all-black mask: its noise is no object
    if arr.ndim == 3:
        keys, counts = np.unique(_packed(arr), return_counts=True)
        if tol:  # thousands of noise colours: list the most common first
            keys = keys[np.argsort(-counts, kind="stable")]
        found = [((int(v) >> 16) & 255, (int(v) >> 8) & 255, int(v) & 255) for v in keys]
        # the hint names the most common colours: an anti-aliased edge's faint ones come first in value order
        obj = _auto_object(path, found, [_hex(c) for c in found], (0, 0, 0), _common(arr, tol))
        return np.zeros(arr.shape[:2], bool) if obj is None else (arr == np.array(obj)).all(-1)
    levels = [int(v) for v in np.unique(arr)]
    obj = _auto_object(path, levels, [str(v) for v in levels], 0, _common(arr, tol))
    return np.zeros(arr.shape, bool) if obj is None else arr == obj


def _webp_lossy(path: Path) -> bool:
    """Whether a WebP file holds a lossy (VP8) picture rather than a lossless (VP8L) one: PIL does not
    say, the RIFF chunks do (an animation's first frame counts)."""
    with open(path, "rb") as f:
        pos = 12  # after "RIFF", the size and "WEBP"
        for _ in range(64):
            f.seek(pos)
            head = f.read(8)
            if len(head) < 8:
                return False
            tag, size = head[:4], int.from_bytes(head[4:], "little")
            if tag in (b"VP8 ", b"VP8L"):
                return tag == b"VP8 "
            # an ANMF frame's chunks start after its 16-byte header; other chunks are skipped (even-padded)
            pos += 8 + (16 if tag == b"ANMF" else size + size % 2)
    return False


def _lossy(im: Image.Image, path: Path) -> bool:
    """Whether the mask file is lossy-compressed (JPEG, lossy WebP): its colours stray from those drawn."""
    return im.format in ("JPEG", "MPO") or (im.format == "WEBP" and _webp_lossy(path))


def _mask_layer(im: Image.Image, rule: MaskRule) -> Image.Image:
    """What says the object: the colours, unless the alpha varies (a cut-out, or an object painted on a
    transparent background): then the alpha, 0 (transparent) the background. Colours in `rule` always
    read the colours."""
    if not rule.colours and (im.mode in ("RGBA", "LA", "PA") or "transparency" in im.info):
        alpha = np.asarray(im.convert("RGBA"))[..., 3]
        if (alpha != alpha.flat[0]).any():
            return Image.fromarray(np.ascontiguousarray(alpha))
    if im.mode == "P" and (rule.colours or (rule.auto and _black_not_first(im))):
        return im.convert("RGB")  # a palette mask read by its colours: as drawn, black the background
    return im.convert("RGB") if im.mode in ("RGBA", "CMYK", "YCbCr", "LAB", "HSV") else im


def _black_not_first(im: Image.Image) -> bool:
    """A palette mask whose black is at an index other than 0: read as indices, 0 the background, it would
    swap object and background (a white object at index 0 on black at index 1). A palette without black
    (white 0, red 1) reads by its indices, as before."""
    palette = im.getpalette() or [0, 0, 0]
    used = np.unique(np.asarray(im)).tolist()
    return any(i != 0 and palette[3 * i : 3 * i + 3] == [0, 0, 0] for i in used)


def read_folder_mask(path: Path, rule: MaskRule = MaskRule()) -> np.ndarray:
    """The mask at `path` as a trimap (uint8 HxW: 1 object, 2 background) under `rule`."""
    try:
        with Image.open(path) as im:
            im.seek(0)  # first frame of a GIF
            arr = np.asarray(_mask_layer(im, rule))
            tol = rule.lossy_tolerance if _lossy(im, path) else 0
    except Image.DecompressionBombError as e:  # not a damaged file: a large one
        raise CorruptSampleError(
            f"{path}: cannot read the mask ({reason_unread(e)}); or pass on_corrupt='skip' to leave it out"
        ) from e
    except (OSError, SyntaxError, ValueError) as e:
        raise CorruptSampleError(
            f"{path}: cannot read the mask ({type(e).__name__}: {e}); the file is truncated or not an "
            "image. Replace it, or pass on_corrupt='skip' to leave such samples out"
        ) from e
    if arr.ndim == 3 and arr.shape[2] == 2:  # grey or palette with alpha: the first channel
        arr = arr[..., 0]
    pixels = _object_pixels(path, arr.astype(np.uint8) if arr.dtype == bool else arr, rule, tol)
    return np.where(pixels, PET, BACKGROUND).astype(np.uint8)


def check_mask_size(expected: tuple[int, int], mask: np.ndarray, image_path: Path, mask_path: Path) -> None:
    """CorruptSampleError giving both sizes (width x height) when a mask and its image differ."""
    if mask.shape != expected:
        raise CorruptSampleError(mask_size_message(expected, mask.shape, image_path, mask_path))


def mask_size_message(
    expected: tuple[int, int], mask_shape: tuple[int, ...], image_path: Path, mask_path: Path
) -> str:
    """What `check_mask_size` says: both sizes (width x height), the EXIF turn if any, what to do."""
    (h, w), (mh, mw) = expected, mask_shape[:2]
    stored, shown = stored_and_upright_size(image_path)
    turned = (
        f"; the image is stored as {stored[1]}x{stored[0]} and shown turned to {shown[1]}x{shown[0]} by "
        "its EXIF orientation: a mask of either size is taken"
        if stored != shown
        else ""
    )
    return (
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
