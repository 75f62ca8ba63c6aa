"""Decoding the common files with TorchCodec: 3-channel JPEGs and 8-bit grey or palette PNGs.

TorchCodec's decoders (libjpeg-turbo and libpng, as Pillow's) give the same pixels as Pillow, faster and
without holding the GIL, so that threads reading an evaluation set read in parallel (docs/performance.md,
"On one H200, later the same day"). Anything else (another format, mode or depth, a damaged file, a file
with an EXIF orientation: TorchCodec turns those upright, and these functions give the stored pixels)
returns None and Pillow reads it, naming any fault; so does everything where TorchCodec is missing or
does not load (`DECODER` says which reads).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

try:
    from torchcodec.decoders import decode_jpeg, decode_png

    DECODER = "torchcodec"
except (ImportError, OSError, RuntimeError):  # not installed, or built for another torch
    DECODER = "pillow"  # decode_jpeg and decode_png stay unbound: nothing calls them

__all__ = ["DECODER", "jpeg_rgb", "png_8bit"]

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_ORIENTATION = 0x0112  # the EXIF tag; 1 (and 0, which some cameras write) mean "as stored"


def _turned(im: Image.Image) -> bool:
    """Whether `im` carries an EXIF orientation other than "as stored"."""
    return "exif" in im.info and im.getexif().get(_ORIENTATION, 1) not in (0, 1)


def jpeg_rgb(path: Path, im: Image.Image) -> np.ndarray | None:
    """The stored pixels (uint8 HxWx3) of the JPEG at `path`, which Pillow opened as `im` (its header
    read, its size checked against decompression bombs); None unless it is a 3-channel 8-bit JPEG that
    TorchCodec decodes."""
    if DECODER != "torchcodec" or im.format != "JPEG" or im.mode != "RGB" or _turned(im):
        return None  # grey, CMYK, a PNG or GIF named .jpg, or a phone's sideways photo: Pillow reads those
    try:
        pixels = decode_jpeg(str(path), mode="UNCHANGED")
    except (RuntimeError, ValueError):
        return None
    if not isinstance(pixels, torch.Tensor):  # a list comes only for a list of sources
        return None
    if pixels.dtype != torch.uint8 or pixels.shape != (3, im.height, im.width):
        return None  # the shape too: an orientation Pillow did not see in the header turns it
    return pixels.permute(1, 2, 0).contiguous().numpy()


def png_8bit(path: Path, im: Image.Image) -> np.ndarray | None:
    """The values (uint8 HxW) of the PNG at `path`, which Pillow opened as `im`: grey levels, or palette
    indices as `np.asarray` of Pillow's image gives them; None unless it is an 8-bit grey or palette PNG
    that TorchCodec decodes to one channel."""
    if DECODER != "torchcodec" or im.format != "PNG" or im.mode not in ("L", "P") or _turned(im):
        return None
    data = Path(path).read_bytes()
    # IHDR: bit depth at byte 24, colour type at 25 (0 grey, 3 palette); lower depths scale differently
    if data[:8] != _PNG_SIGNATURE or len(data) < 26 or data[24] != 8 or data[25] not in (0, 3):
        return None
    try:
        values = decode_png(data, mode="UNCHANGED")
    except (RuntimeError, ValueError):
        return None
    if values.dtype != torch.uint8 or values.shape != (1, im.height, im.width):
        return None  # a palette with transparency comes with an alpha channel; a turn, another shape
    return values[0].numpy()
