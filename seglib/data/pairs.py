"""A folder data set's pairs: `images/NAME.*` with `masks/NAME.*` (or `NAME_mask.*`), by file stem."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

from PIL import Image

from .masks import shown

__all__ = ["FOLDER_LAYOUT", "find_masks", "find_pairs", "image_files", "is_folder_root", "subfolders"]

FOLDER_LAYOUT = (
    "a folder data set holds images/NAME.jpg (any format PIL opens) and masks/NAME.png (or NAME_mask.png), "
    "paired by file name; docs/your-data.md"
)


def is_folder_root(root: str | Path) -> bool:
    """True if `root` holds `images/` and `masks/`."""
    root = Path(root).expanduser()
    return (root / "images").is_dir() and (root / "masks").is_dir()


# Photo formats PIL does not open without a plugin: left out, but said (an iPhone saves HEIC by default).
PHOTO_SUFFIXES = frozenset({".heic", ".heif", ".dng", ".cr2", ".cr3", ".nef", ".arw", ".orf", ".rw2", ".jxl"})


def image_files(folder: str | Path) -> list[Path]:
    """The image files of a folder (the formats PIL opens; hidden files and others, e.g. notes, left out).

    Photos in a format PIL cannot open here (HEIC, camera raw) are left out with a warning naming them."""
    folder = Path(folder)
    # the formats PIL opens, not those it only writes (.pdf, .palm); MPO photos open through its JPEG opener
    known = {e for e, f in Image.registered_extensions().items() if f in Image.OPEN or f == "MPO"}
    shown = [p for p in folder.iterdir() if not p.name.startswith(".")]
    files = [p for p in shown if p.is_file()]
    lacking = sorted(p.name for p in files if p.suffix.lower() in PHOTO_SUFFIXES - known)
    _left_out(folder, lacking, "photo(s) in a format PIL cannot open here", "convert them to JPEG or PNG")
    # `ls` lists a link to a file moved or deleted; left out without a word, it read as a missing file
    broken = sorted(p.name for p in shown if p.is_symlink() and not p.exists())
    _left_out(folder, broken, "link(s) to no file", "point them at their files or remove them")
    return sorted(p for p in files if p.suffix.lower() in known)


def _left_out(folder: Path, names: list[str], what: str, advice: str) -> None:
    if names:
        listed = f"{', '.join(names[:3])}{', ...' if len(names) > 3 else ''}"
        warnings.warn(f"{folder}: {len(names)} {what} are left out ({listed}); {advice}", stacklevel=3)


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


def unpaired_masks(folder: str | Path, names: list[str]) -> list[Path]:
    """The mask files in `folder` that pair with none of the `names` (as `find_masks` pairs them)."""
    names_set = set(names)
    return [path for name, path in _masks_by_name(Path(folder), names_set).items() if name not in names_set]


def subfolders(folder: str | Path) -> list[str]:
    """The names of `folder`'s subfolders (hidden ones left out), which `image_files` does not search."""
    return [p.name for p in sorted(Path(folder).iterdir()) if p.is_dir() and not p.name.startswith(".")]


def _say_subfolders(root: Path, has_images: bool) -> None:
    """images/ or masks/ with subfolders (images/cats/): they are not searched. With no image besides them a
    FileNotFoundError says so (the split said "0 image pairs are too few"), else a warning names them."""
    found = {name: subs for name in ("images", "masks") if (subs := subfolders(root / name))}
    if not found:
        return
    listed = "; ".join(f"{name}/ has {len(subs)} ({shown(subs)})" for name, subs in found.items())
    said = f"{root}: subfolders are not searched: {listed}; put their files directly in images/ and masks/"
    if not has_images:
        raise FileNotFoundError(f"{said} (no image is there yet)")
    warnings.warn(said, stacklevel=3)


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
    _say_subfolders(root, bool(images))
    masks = _masks_by_name(root / "masks", set(images))
    lonely_images = [images[k] for k in images if k not in masks]
    lonely_masks = [masks[k] for k in masks if k not in images]
    if on_missing == "raise" and (lonely_images or lonely_masks):
        lines = []
        if lonely_images:
            lines.append(
                f"{len(lonely_images)} of {len(images)} images have no mask in {root / 'masks'} (looked for "
                f"NAME.* and NAME_mask.*): {shown([p.name for p in lonely_images])}"
            )
        if lonely_masks:
            lines.append(
                f"{len(lonely_masks)} masks have no image in {root / 'images'}: "
                f"{shown([p.name for p in lonely_masks])}"
            )
        raise FileNotFoundError(
            "; ".join(lines)
            + "; add the missing files (or rename them to match), or move the lone files out "
            "of the folder (in Python, FolderDataset(..., on_missing='skip') leaves them out)"
        )
    return {k: (images[k], masks[k]) for k in sorted(images) if k in masks}
