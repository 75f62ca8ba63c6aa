"""A data set of your own: `images/` and `masks/` paired by file stem, with an optional `splits/`.

    ROOT/images/NAME.jpg        any format PIL opens (jpg, png, tif, bmp, webp, ...)
    ROOT/masks/NAME.png         or NAME_mask.png: 0/1, 0/255, a palette image, or RGB with one colour
    ROOT/splits/train.txt ...   optional: one NAME a line (train.txt, val.txt, test.txt); without it
                                a seeded split (val_fraction, test_fraction, split_seed)

A mask reads into the trimap convention of the Oxford set (1 object, 2 background; a folder mask has
no border band), so that the samples, the decode-once cache, evaluation at the original resolution
and the viewer treat both alike. `mask_values` says which pixels are the object ("": the one value
besides 0, or the one colour besides black).
"""

from __future__ import annotations

import functools
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .base import SegmentationDataset
from .cache import PairReader, ResizedCache
from .dataset import EmptySplitError
from .files import CorruptSampleError, read_image
from .lists import SPLITS
from .synthetic import synthetic_pet
from .transforms import eval_transform
from .trimaps import BACKGROUND, PET, trimap_to_mask

__all__ = [
    "FolderDataset",
    "FolderEntry",
    "check_split_fractions",
    "MaskRule",
    "MaskValueError",
    "find_masks",
    "find_pairs",
    "image_files",
    "is_folder_root",
    "make_synthetic_folder",
    "parse_mask_values",
    "read_folder_mask",
    "seeded_split",
    "write_splits",
]

SPLIT_FILES = ("train", "val", "test")
FOLDER_LAYOUT = (
    "a folder data set holds images/NAME.jpg (any format PIL opens) and masks/NAME.png (or NAME_mask.png), "
    "paired by file name; docs/your-data.md"
)


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


def _shown(values: list[str]) -> str:
    return ", ".join(values[:10]) + (f", ... ({len(values)} in all)" if len(values) > 10 else "")


def _auto_object(path: Path, found: list, shown: list[str], background: object) -> object:
    """The one value besides the background, or MaskValueError listing the values and what to pass."""
    others = [v for v in found if v != background]
    if len(others) <= 1:
        return others[0] if others else None
    kind = "colours" if isinstance(background, tuple) else "values"
    bg = "black" if kind == "colours" else "0"
    named = [t for v, t in zip(found, shown, strict=True) if v != background]
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
    raise MaskValueError(f"{path}: the mask has {len(found)} {kind} ({_shown(shown)}); {what}")


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
            f"{path}: a single-channel mask (values {_shown([str(v) for v in np.unique(arr)])}), but "
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


def read_folder_mask(path: Path, rule: MaskRule = MaskRule()) -> np.ndarray:
    """The mask at `path` as a trimap (uint8 HxW: 1 object, 2 background) under `rule`."""
    try:
        with Image.open(path) as im:
            im.seek(0)  # first frame of a GIF
            if im.mode in ("RGBA", "CMYK", "YCbCr", "LAB", "HSV"):
                im = im.convert("RGB")  # alpha is not the mask: the colours are
            arr = np.asarray(im)
    except (OSError, SyntaxError, ValueError) as e:
        raise CorruptSampleError(
            f"{path}: cannot read the mask ({type(e).__name__}: {e}); the file is truncated or not an "
            "image. Replace it, or pass on_corrupt='skip' to leave such samples out"
        ) from e
    if arr.ndim == 3 and arr.shape[2] == 2:  # grey or palette with alpha: the first channel
        arr = arr[..., 0]
    pixels = _object_pixels(path, arr.astype(np.uint8) if arr.dtype == bool else arr, rule)
    return np.where(pixels, PET, BACKGROUND).astype(np.uint8)


def _check_size(expected: tuple[int, int], mask: np.ndarray, image_path: Path, mask_path: Path) -> None:
    """CorruptSampleError giving both sizes (width x height) when a mask and its image differ."""
    if mask.shape != expected:
        (h, w), (mh, mw) = expected, mask.shape
        raise CorruptSampleError(
            f"{mask_path}: mask size {mw}x{mh} differs from its image's {w}x{h} ({image_path}); a mask must "
            "have its image's size: resize the mask to it with nearest-neighbour sampling (which keeps its "
            "values), or pass on_corrupt='skip' to leave the pair out"
        )


def read_folder_pair(
    image_path: Path, mask_path: Path, rule: MaskRule = MaskRule()
) -> tuple[np.ndarray, np.ndarray]:
    """An image (uint8 HxWx3) and its mask as a trimap (uint8 HxW), checked to agree in size."""
    image, trimap = read_image(image_path), read_folder_mask(mask_path, rule)
    _check_size(image.shape[:2], trimap, image_path, mask_path)
    return image, trimap


# --- finding the pairs and the split ------------------------------------------------------------------
def is_folder_root(root: str | Path) -> bool:
    """True if `root` holds `images/` and `masks/`."""
    root = Path(root).expanduser()
    return (root / "images").is_dir() and (root / "masks").is_dir()


def image_files(folder: str | Path) -> list[Path]:
    """The image files of a folder (the formats PIL opens; hidden files and others, e.g. notes, left out)."""
    folder = Path(folder)
    known = set(Image.registered_extensions())
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in known
    )


def _by_stem(files: list[Path], stem: Callable[[Path], str], what: str) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for f in files:
        key = stem(f)
        if key in out:
            raise ValueError(
                f"{out[key]} and {f} are two {what} for the name {key!r}; keep one of them (names pair "
                "images with masks, so each must be unique)"
            )
        out[key] = f
    return out


def _masks_by_name(folder: Path, names: set[str]) -> dict[str, Path]:
    """The mask files of `folder` by the name they pair with: NAME.* or NAME_mask.*."""

    def mask_stem(p: Path) -> str:
        stem = p.stem
        return stem[: -len("_mask")] if stem not in names and stem.endswith("_mask") else stem

    return _by_stem(image_files(folder), mask_stem, "masks")


def find_masks(folder: str | Path, names: list[str]) -> dict[str, Path]:
    """{name: mask file} for the `names` that have a mask in `folder` (NAME.* or NAME_mask.*)."""
    masks = _masks_by_name(Path(folder), set(names))
    return {n: masks[n] for n in names if n in masks}


def find_pairs(root: str | Path, on_missing: str = "raise") -> dict[str, tuple[Path, Path]]:
    """{name: (image, mask)} of the folder, by file stem (a mask may add `_mask`: NAME_mask.png).

    An image without a mask, or a mask without an image, raises FileNotFoundError naming them;
    `on_missing="skip"` leaves them out.
    """
    if on_missing not in ("raise", "skip"):
        raise ValueError(f"on_missing={on_missing!r}; choose 'raise' or 'skip'")
    root = Path(root).expanduser()
    if not is_folder_root(root):
        what = "does not exist" if not root.exists() else "has no images/ and masks/ folders"
        raise FileNotFoundError(f"data root {str(root)!r} {what}; {FOLDER_LAYOUT}")
    images = _by_stem(image_files(root / "images"), lambda p: p.stem, "images")
    masks = _masks_by_name(root / "masks", set(images))
    lonely_images = [images[k] for k in images if k not in masks]
    lonely_masks = [masks[k] for k in masks if k not in images]
    if on_missing == "raise" and (lonely_images or lonely_masks):
        lines = []
        if lonely_images:
            lines.append(
                f"{len(lonely_images)} of {len(images)} images have no mask in {root / 'masks'} (looked for "
                f"NAME.* and NAME_mask.*): {_shown([p.name for p in lonely_images])}"
            )
        if lonely_masks:
            lines.append(
                f"{len(lonely_masks)} masks have no image in {root / 'images'}: "
                f"{_shown([p.name for p in lonely_masks])}"
            )
        raise FileNotFoundError(
            "; ".join(lines) + "; add the missing files (or rename them to match), or pass on_missing='skip' "
            "to leave them out"
        )
    return {k: (images[k], masks[k]) for k in sorted(images) if k in masks}


def _count(n: int, fraction: float) -> int:
    return max(1, round(n * fraction)) if fraction > 0 else 0


def check_split_fractions(val_fraction: float, test_fraction: float) -> None:
    """ValueError unless both fractions are in [0, 1) and leave images to train on."""
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ValueError(
            f"val_fraction={val_fraction} and test_fraction={test_fraction} must each be in [0, 1) and "
            "add up to less than 1 (e.g. 0.1 and 0.1: 80% of the images train)"
        )


def seeded_split(
    names: list[str], val_fraction: float = 0.1, test_fraction: float = 0.1, seed: int = 0
) -> dict[str, list[str]]:
    """{"train", "val", "test": names}: a permutation of the sorted names from `seed`, cut at the fractions
    (a split with a fraction above 0 gets at least one image); each split in name order."""
    check_split_fractions(val_fraction, test_fraction)
    names = sorted(names)
    n = len(names)
    n_test, n_val = _count(n, test_fraction), _count(n, val_fraction)
    if n - n_test - n_val < 1:
        raise EmptySplitError(
            f"{n} image pair(s) are too few for val_fraction={val_fraction} and "
            f"test_fraction={test_fraction}: "
            "no training image would be left; add images, or lower the fractions"
        )
    order = np.random.default_rng(seed).permutation(n)
    test, val = set(order[:n_test].tolist()), set(order[n_test : n_test + n_val].tolist())
    return {
        "train": [m for i, m in enumerate(names) if i not in test and i not in val],
        "val": [m for i, m in enumerate(names) if i in val],
        "test": [m for i, m in enumerate(names) if i in test],
    }


def _splits(
    root: Path,
    pairs: dict[str, tuple[Path, Path]],
    on_missing: str,
    val_fraction: float,
    test_fraction: float,
    seed: int,
) -> tuple[dict[str, list[str]], str]:
    """The folder's split (its splits/*.txt where it has them, else a seeded one) and where it comes from."""
    if (root / "splits").is_dir():
        return _read_split_files(root / "splits", pairs, on_missing), f"the split files in {root / 'splits'}"
    share = f"{1 - val_fraction - test_fraction:.0%} / {val_fraction:.0%} / {test_fraction:.0%}"
    splits = seeded_split(list(pairs), val_fraction, test_fraction, seed)
    return splits, f"a seeded split (seed {seed}): train / val / test {share} of the pairs"


def _read_split_files(
    folder: Path, pairs: dict[str, tuple[Path, Path]], on_missing: str
) -> dict[str, list[str]]:
    """The names in splits/{train,val,test}.txt (a split without its file is empty); checked."""
    splits: dict[str, list[str]] = {}
    unknown: list[str] = []
    for split in SPLIT_FILES:
        path = folder / f"{split}.txt"
        names = []
        lines = path.read_text().splitlines() if path.is_file() else []
        for lineno, line in enumerate(lines, start=1):
            name = line.strip()
            if not name or name.startswith("#"):
                continue
            name = name if name in pairs else Path(name).stem  # a file name works too
            if name in pairs:
                names.append(name)
            else:
                unknown.append(f"{path.name}:{lineno} {line.strip()!r}")
        splits[split] = names
    if unknown and on_missing == "raise":
        raise FileNotFoundError(
            f"{folder}: {len(unknown)} name(s) have no image and mask pair in images/ and masks/: "
            f"{_shown(unknown)}; fix the names (one file stem a line), add the files, or pass "
            "on_missing='skip'"
        )
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        both = sorted(set(splits[a]) & set(splits[b]))
        if both:
            raise ValueError(
                f"{folder}: {len(both)} name(s) are in both {a}.txt and {b}.txt: {_shown(both)}; an image "
                "must be in one split only (a validation or test image must not be trained on)"
            )
    return splits


def write_splits(splits: dict[str, list[str]], folder: str | Path) -> Path:
    """Write {split: names} as `folder`/train.txt, val.txt, test.txt (a name a line); returns `folder`.

    Copied to a data folder's `splits/`, they fix its split whatever images are added later.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for split in SPLIT_FILES:
        names = splits.get(split, [])
        (folder / f"{split}.txt").write_text("".join(f"{n}\n" for n in names))
    return folder


@dataclass(frozen=True)
class FolderEntry:
    """One pair of a folder data set. `breed` and `species` (the Oxford set's groups, which evaluation
    tables and the viewer show) are the folder's name."""

    name: str
    image: Path
    mask: Path
    group: str

    @property
    def breed(self) -> str:
        return self.group

    @property
    def species(self) -> str:
        return self.group


class FolderDataset(SegmentationDataset):
    """Your own images and masks (module docstring: the layout), as samples like `OxfordPetDataset`'s.

    Splits: "train", "val", "test" from `splits/*.txt` when the folder has them, else `seeded_split`;
    "trainval" is train and val. `split_source` says which, `splits` holds all three.
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        transform: Callable[..., dict] | None = None,
        image_size: int = 256,
        border: str = "pet",
        limit: int | None = None,
        return_full_mask: bool = False,
        on_missing: str = "raise",
        on_corrupt: str = "raise",
        mask_values: str = "",
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        split_seed: int = 0,
    ) -> None:
        if on_corrupt not in ("raise", "skip"):
            raise ValueError(f"on_corrupt={on_corrupt!r}; choose 'raise' or 'skip'")
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; choose one of {list(SPLITS)}")
        trimap_to_mask(np.full((1, 1), 2, np.uint8), border)  # validates `border` before any work
        self.root, self.split, self.border, self.on_corrupt = (
            Path(root).expanduser(),
            split,
            border,
            on_corrupt,
        )
        self.rule = parse_mask_values(mask_values)
        self.cache_tag = f"mask_values={self.rule}" if not self.rule.auto else ""
        pairs = find_pairs(self.root, on_missing)
        self.splits, self.split_source = _splits(
            self.root, pairs, on_missing, val_fraction, test_fraction, split_seed
        )
        names = self.splits["train"] + self.splits["val"] if split == "trainval" else self.splits[split]
        names = sorted(names)[:limit] if limit is not None else sorted(names)
        if not names:
            raise EmptySplitError(
                f"the {split} split of {self.root} has no images ({self.split_source}: "
                f"{', '.join(f'{k} {len(v)}' for k, v in self.splits.items())}); list some in "
                f"splits/{split}.txt, or remove splits/ for a seeded split"
            )
        self.entries = [FolderEntry(n, *pairs[n], self.root.name) for n in names]
        self._by_name = {e.name: e for e in self.entries}
        self.transform = transform if transform is not None else eval_transform(image_size)
        self.return_full_mask = return_full_mask
        self._sizes: dict[int, tuple[int, int]] = {}
        self.cache: ResizedCache | None = None

    def image_path(self, name: str) -> Path:
        return self._by_name[name].image

    def trimap_path(self, name: str) -> Path:
        """The mask file (read as a trimap: 1 object, 2 background)."""
        return self._by_name[name].mask

    def pair_reader(self) -> PairReader:
        return functools.partial(read_folder_pair, rule=self.rule)

    def load_trimap(self, i: int) -> np.ndarray:
        """Mask i as a trimap (uint8 HxW: 1 object, 2 background), checked against its image's size."""
        e = self.entries[i]
        trimap = read_folder_mask(e.mask, self.rule)
        _check_size(self.original_size(i), trimap, e.image, e.mask)
        return trimap

    def __repr__(self) -> str:
        return f"FolderDataset(root={str(self.root)!r}, split={self.split!r}, n={len(self)})"


# --- a demo folder ------------------------------------------------------------------------------------
_DEMO_PALETTE = [0, 0, 0, 255, 255, 255, 128, 128, 128, 230, 60, 40]  # index 3 is the object


def _save_demo_mask(path: Path, pet: np.ndarray, kind: int) -> Path:
    """Save a 0/1 pet mask in one of the four forms a folder takes: 0/255, 0/1, palette, RGB."""
    if kind == 0:
        Image.fromarray(pet * 255).save(path := path.with_suffix(".png"))
    elif kind == 1:
        Image.fromarray(pet).save(path := path.with_name(path.stem + "_mask.png"))
    elif kind == 2:
        im = Image.frombytes("P", pet.shape[::-1], (pet * 3).tobytes())
        im.putpalette(_DEMO_PALETTE)
        im.save(path := path.with_suffix(".png"))
    else:
        rgb = np.zeros((*pet.shape, 3), np.uint8)
        rgb[pet == 1] = (230, 60, 40)
        Image.fromarray(rgb).save(path := path.with_suffix(".png"))
    return path


def make_synthetic_folder(root: str | Path, n: int = 48, seed: int = 0) -> Path:
    """Write a demo folder data set of `n` synthetic pets (the generator of `make_synthetic_pets`).

    Images are JPEG and PNG; the masks take turns at the four forms a folder may hold (0/255, 0/1 as
    NAME_mask.png, a palette image, an RGB image), the border band counted as object. No splits/: the
    seeded split applies. `root` must be new or empty; deterministic for a seed. Returns `root`.
    """
    final = Path(root)
    if final.exists() and any(final.iterdir()):
        raise FileExistsError(f"{final} is not empty; make the demo folder in a new folder")
    tmp = final.parent / f".{final.name}.partial"  # renamed at the end: never half a data set
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "images").mkdir(parents=True)
    (tmp / "masks").mkdir()
    rng = np.random.default_rng(seed)
    for k in range(n):
        h, w = (int(v) for v in rng.integers(160, 320, size=2))
        image, trimap = synthetic_pet(rng, h, w)
        name = f"photo_{k:03d}"
        Image.fromarray(image).save(
            tmp / "images" / (f"{name}.png" if k % 5 == 4 else f"{name}.jpg"), quality=90
        )
        _save_demo_mask(tmp / "masks" / name, (trimap != BACKGROUND).astype(np.uint8), k % 4)
    if final.exists():
        final.rmdir()
    os.replace(tmp, final)
    return final
