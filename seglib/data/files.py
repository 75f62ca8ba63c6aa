"""The release's files on disk: where the data set lies, how one image or trimap is read, and the
error for a sample that cannot be used. The dataset and the decode-once cache both read through here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from .decode import jpeg_rgb, png_8bit
from .trimaps import check_trimap

__all__ = [
    "CorruptSampleError",
    "UnsupportedImageError",
    "HOW_TO_GET",
    "check_pair",
    "find_root",
    "is_oxford_pet_root",
    "open_rgb",
    "read_image",
    "read_pair",
    "read_trimap",
    "reason_unread",
    "rgb_image",
    "stored_and_upright_size",
    "upright_beside",
    "upright_for",
    "upright_image",
]

_ORIENTATION = 0x0112  # the EXIF tag: how a camera's stored pixels turn to be seen upright (1: as stored)

HOW_TO_GET = (
    "download the real data with `make data` (or `python -m seglib download --data_path DIR`, "
    "or seglib.data.download(DIR)), or make the synthetic demo set with seglib.data.make_synthetic_pets(DIR)"
)


class CorruptSampleError(ValueError):
    """An image or trimap that cannot be used: unreadable, wrong values, or sizes that disagree."""


SKIP_THEM = "replace or fix them, or pass on_corrupt='skip' to leave them out"


def all_problems(messages: list[str], of: str, todo: str) -> str:
    """One message for the problems of a split found in one pass: the message itself when there is one,
    else their count `of` what, ten of them a line each, and `todo`."""
    if len(messages) == 1:
        return messages[0]
    listed = "\n".join(f"- {m}" for m in messages[:10])
    more = f"\n- ... ({len(messages)} in all)" if len(messages) > 10 else ""
    return f"{len(messages)} of {of} cannot be used:\n{listed}{more}\n{todo}"


class UnsupportedImageError(ValueError):
    """An image PIL reads but seglib cannot turn into 8-bit RGB unambiguously; the message says what to do."""


def find_root(root: str | Path) -> Path:
    """The folder holding `images/` and `annotations/`: `root` itself or `root/oxford-iiit-pet`."""
    root = Path(root).expanduser()
    for cand in (root, root / "oxford-iiit-pet"):
        if (cand / "annotations" / "trainval.txt").is_file() and (cand / "images").is_dir():
            return cand
    what = "does not exist" if not root.exists() else "has no images/ and annotations/trainval.txt"
    raise FileNotFoundError(f"data root {str(root)!r} {what} (nor its oxford-iiit-pet/ folder); {HOW_TO_GET}")


def is_oxford_pet_root(root: str | Path) -> bool:
    """True if `root` (or `root/oxford-iiit-pet`) holds the official layout."""
    try:
        find_root(root)
    except FileNotFoundError:
        return False
    return True


def rgb_image(im: Image.Image) -> Image.Image:
    """`im` as 8-bit RGB. A 16-bit grey image (PIL modes I;16 and I) keeps its top 8 bits, the full range
    as viewers show it: PIL's own convert clips it at 255, which turns most of such an image white."""
    if im.mode.startswith("I;16") or im.mode == "I":
        deep = np.clip(np.asarray(im).astype(np.int64), 0, 65535)
        return Image.fromarray((deep >> 8).astype(np.uint8), "L").convert("RGB")
    if im.mode == "F":
        raise UnsupportedImageError(
            "a floating-point image (PIL mode F) has no one scale to 8 bits; save it as 8- or 16-bit"
        )
    return im.convert("RGB")


def open_rgb(path: str | Path, upright: bool = False) -> Image.Image:
    """Open an image whatever its real format (the release has PNG and GIF files named .jpg) as RGB.

    `upright`: turned as its EXIF orientation says, as photo viewers show it (a phone's portrait photo is
    often stored sideways); False: the pixels as stored, which the Oxford set's trimaps follow."""
    with Image.open(path) as im:
        im.seek(0)  # first frame of a GIF
        try:
            return rgb_image(upright_image(im) if upright else im)
        except UnsupportedImageError as e:
            raise UnsupportedImageError(f"{path}: {e}") from None


def upright_image(im: Image.Image) -> Image.Image:
    """`im` turned as its EXIF orientation says; as stored where the EXIF cannot be parsed (Pillow has
    raised assorted errors on phones' malformed EXIF, e.g. python-pillow/Pillow#8348 and #8605)."""
    try:
        return ImageOps.exif_transpose(im)
    except Exception:  # noqa: BLE001 - whatever the parser raised, the pixels are still good
        return im


def _orientation(im: Image.Image) -> int | None:
    """The EXIF orientation tag; None where there is none or the EXIF cannot be parsed (`upright_image`)."""
    try:
        return im.getexif().get(_ORIENTATION)
    except Exception:  # noqa: BLE001
        return None


def stored_and_upright_size(path: str | Path) -> tuple[tuple[int, int], tuple[int, int]]:
    """(height, width) of the image at `path` as stored and as shown upright (EXIF orientation 5-8 turn
    it a quarter), read from its header."""
    with Image.open(path) as im:
        turns = _orientation(im) in (5, 6, 7, 8)
        return (im.height, im.width), ((im.width, im.height) if turns else (im.height, im.width))


def upright_for(path: str | Path, mask_shape: tuple[int, int] | None) -> bool:
    """Whether to read the image at `path` upright (EXIF orientation applied) beside a mask of `mask_shape`.

    Upright, as viewers and annotation tools show it, unless the mask has the stored size only: then it
    was drawn on the stored pixels. Without a mask (prediction): upright."""
    if mask_shape is None:
        return True
    try:
        sizes = stored_and_upright_size(path)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return True  # unreadable: reading the image says so, naming the file
    return upright_beside(*sizes, mask_shape)


def upright_beside(
    stored: tuple[int, int], shown: tuple[int, int], mask_shape: tuple[int, int] | None
) -> bool:
    """`upright_for` from the image's two sizes (`stored_and_upright_size`)."""
    return mask_shape is None or not (tuple(mask_shape) == stored and stored != shown)


def reason_unread(e: Exception) -> str:
    """Why Pillow could not read a file, in words: its pixel limit said as such, with what to do."""
    if isinstance(e, Image.DecompressionBombError):  # "Image size (N pixels) exceeds limit of M pixels, ..."
        said = str(e).split(",")[0]
        return (
            f"{said}: more pixels than Pillow opens, downscale it (and its mask) or raise "
            "PIL.Image.MAX_IMAGE_PIXELS in Python if you trust the file"
        )
    return f"{type(e).__name__}: {e}"


def read_image(path: Path, upright: bool = False) -> np.ndarray:
    """The image at `path` as uint8 HxWx3 RGB at its original resolution (`upright`: as `open_rgb`)."""
    try:
        if not upright:
            with Image.open(path) as im:
                pixels = jpeg_rgb(path, im)  # most files: TorchCodec decodes them (decode.py)
            if pixels is not None:
                return pixels
        return np.asarray(open_rgb(path, upright))
    except UnsupportedImageError as e:
        raise CorruptSampleError(f"{e}, or pass on_corrupt='skip' to leave it out") from e
    except Image.DecompressionBombError as e:  # not a damaged file: a large one
        raise CorruptSampleError(
            f"{path}: cannot read the image ({reason_unread(e)}); or pass on_corrupt='skip' to leave it out"
        ) from e
    except (OSError, SyntaxError, ValueError) as e:
        raise CorruptSampleError(
            f"{path}: cannot read the image ({type(e).__name__}: {e}); the file is truncated or not an image. "
            "Replace it (the Oxford-IIIT Pet set: download it again), or pass on_corrupt='skip' to leave such samples out "
            "(they are counted and reported at the end of each epoch)"
        ) from e


def read_trimap(path: Path) -> np.ndarray:
    """The trimap at `path` as uint8 HxW, its values checked to be in {1, 2, 3}."""
    try:
        with Image.open(path) as im:
            trimap = png_8bit(path, im)  # most files: TorchCodec decodes them (decode.py)
            if trimap is None:
                trimap = np.asarray(im)
    except (OSError, SyntaxError) as e:
        raise CorruptSampleError(
            f"{path}: cannot read the trimap ({e}); re-download the data or pass on_corrupt='skip'"
        ) from e
    if trimap.ndim != 2:
        raise CorruptSampleError(f"{path}: a trimap has one channel, this file has shape {trimap.shape}")
    try:
        check_trimap(trimap, str(path))
    except ValueError as e:
        raise CorruptSampleError(str(e)) from None
    return trimap


def check_pair(image: np.ndarray, trimap: np.ndarray, image_path: Path, trimap_path: Path) -> None:
    """Raise CorruptSampleError naming both files if the trimap (or its mask) and the image differ in size."""
    if image.shape[:2] != trimap.shape:
        raise CorruptSampleError(
            f"{trimap_path}: trimap size {trimap.shape[::-1]} differs from its image's "
            f"{image.shape[1::-1]} ({image_path}); the pair is damaged"
        )


def read_pair(image_path: Path, trimap_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """An Oxford-IIIT Pet image (uint8 HxWx3) and its trimap (uint8 HxW), checked to agree in size."""
    image, trimap = read_image(image_path), read_trimap(trimap_path)
    check_pair(image, trimap, image_path, trimap_path)
    return image, trimap
