"""A synthetic pet data set in the exact official layout: the embedded default data and the test fixture.

Each image is a smooth, colourful background with flat angular distractors, and one "pet": a rotated
ellipse body with a round head, two ears and a tail, filled with a striped or spotted fur texture.
Pet and background colours come from the same distribution, so colour alone cannot separate them;
the model has to use shape and texture. Trimaps carry a 1-3 px border band (value 3) like the real ones.

`make_synthetic_pets` makes the small demo set; `make_fullsize_pets` a set the size of the release
(3,680 trainval and 3,669 test images, its spread of sizes), in parallel, for full-scale rehearsals.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import shutil
import sys
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from ..atomic import NO_ROOM
from ..leftovers import owner_tag, partial_owner, remove_leftovers
from .lists import BREEDS

__all__ = [
    "RELEASE_SIZES",
    "make_fullsize_pets",
    "make_synthetic_pets",
    "release_image_size",
    "synthetic_pet",
]

# Cats are capitalised in the release; the species column is 1 for cats, 2 for dogs.
_SPECIES = [1 if b[0].isupper() else 2 for b in BREEDS]
_BREED_IDS = [sum(1 for s in _SPECIES[: i + 1] if s == _SPECIES[i]) for i in range(len(BREEDS))]


def _image_size(rng: np.random.Generator) -> tuple[int, int]:
    """(height, width) with the real set's spread: mostly about 500x375, from 150 px to 800 px."""
    long_side = int(np.clip(rng.lognormal(np.log(460), 0.25), 180, 800))
    aspect = rng.uniform(0.6, 1.0)
    short = max(150, int(long_side * aspect))
    return (short, long_side) if rng.random() < 0.7 else (long_side, short)


def _colour(rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(25, 230, size=3)


def _smooth_field(rng: np.random.Generator, h: int, w: int, cells: int) -> np.ndarray:
    """A low-frequency colour field: a small random grid up-sampled bicubically. float HxWx3."""
    grid = rng.uniform(25, 230, size=(cells, cells, 3)).astype(np.uint8)
    return np.asarray(Image.fromarray(grid).resize((w, h), Image.Resampling.BICUBIC), dtype=np.float32)


def synthetic_pet(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic image (uint8 HxWx3) and its trimap (uint8 HxW, 1 pet / 2 background / 3 border)."""
    return _draw_pet(rng, h, w)()


def _draw_pet(rng: np.random.Generator, h: int, w: int) -> Callable[[], tuple[np.ndarray, np.ndarray]]:
    """Draw one pet from `rng`, in the generator's fixed order; returns what renders it. The rendering
    (most of the time) no longer needs the generator, so several can run at once in threads."""
    image = _background(rng, h, w)
    pet = _silhouette(rng, h, w)
    fur = _fur(rng, h, w)
    noise = rng.normal(0, 6, size=image.shape)  # sensor noise
    radius = rng.uniform(0.3, 1.0)
    band = int(rng.integers(1, 4))  # the trimap's border band, 1-3 px

    def render() -> tuple[np.ndarray, np.ndarray]:
        image[pet] = fur()[pet]
        image[...] += noise
        out = np.clip(image, 0, 255).astype(np.uint8)
        out = np.asarray(Image.fromarray(out).filter(ImageFilter.GaussianBlur(radius)))
        return out, _trimap(band, pet)

    return render


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A smooth colour field with flat angular distractors in the pets' own colours (float32 HxWx3)."""
    s = min(h, w)
    image = _smooth_field(rng, h, w, int(rng.integers(2, 5)))
    canvas = Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    for _ in range(int(rng.integers(2, 6))):
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        rw, rh = rng.uniform(0.05, 0.3) * s, rng.uniform(0.05, 0.3) * s
        if rng.random() < 0.5:
            draw.rectangle([cx - rw, cy - rh, cx + rw, cy + rh], fill=tuple(int(c) for c in _colour(rng)))
        else:
            pts = [(cx + rw * np.cos(a), cy + rh * np.sin(a)) for a in rng.uniform(0, 2 * np.pi, 3)]
            draw.polygon(pts, fill=tuple(int(c) for c in _colour(rng)))
    return np.asarray(canvas, dtype=np.float32)


def _silhouette(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """The pet's shape (bool HxW): body ellipse, head, two ears, tail."""
    s = min(h, w)
    sil = Image.new("L", (w, h), 0)
    d = ImageDraw.Draw(sil)
    cx, cy = rng.uniform(0.35, 0.65) * w, rng.uniform(0.4, 0.65) * h
    a, b = rng.uniform(0.18, 0.32) * s, rng.uniform(0.11, 0.2) * s
    theta = rng.uniform(-0.6, 0.6) + (np.pi if rng.random() < 0.5 else 0.0)
    ang = np.linspace(0, 2 * np.pi, 64, endpoint=False)
    ct, st = np.cos(theta), np.sin(theta)
    body = [
        (cx + a * np.cos(t) * ct - b * np.sin(t) * st, cy + a * np.cos(t) * st + b * np.sin(t) * ct)
        for t in ang
    ]
    d.polygon(body, fill=255)
    hr = rng.uniform(0.5, 0.8) * b  # head radius
    hx, hy = cx + 0.95 * a * ct, cy + 0.95 * a * st - 0.6 * b
    d.ellipse([hx - hr, hy - hr, hx + hr, hy + hr], fill=255)
    for side in (-1, 1):
        ex = hx + side * 0.6 * hr
        ear = [
            (ex - 0.4 * hr, hy - 0.5 * hr),
            (ex + 0.4 * hr, hy - 0.5 * hr),
            (ex + side * 0.2 * hr, hy - 1.5 * hr),
        ]
        d.polygon(ear, fill=255)
    tx, ty = cx - 0.9 * a * ct, cy - 0.9 * a * st
    tail = [(tx, ty), (tx - 0.5 * a * ct, ty - rng.uniform(0.3, 0.9) * a)]
    d.line(tail, fill=255, width=max(2, int(0.12 * b)))
    return np.asarray(sil) > 127


def _fur(rng: np.random.Generator, h: int, w: int) -> Callable[[], np.ndarray]:
    """The pet's base colour modulated by stripes or spots at a scale relative to the image: drawn now,
    rendered (float HxWx3) by the function returned."""
    period = rng.uniform(0.05, 0.1) * min(h, w)
    stripes = rng.random() < 0.6
    phi = rng.uniform(0, np.pi) if stripes else 0.0
    base, second = _colour(rng), _colour(rng)
    strength = rng.uniform(0.5, 1.0)

    def render() -> np.ndarray:
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        if stripes:
            pattern = np.sin(2 * np.pi * (xx * np.cos(phi) + yy * np.sin(phi)) / period)
        else:
            pattern = np.sin(2 * np.pi * xx / period) * np.sin(2 * np.pi * yy / period)
        mix = (0.5 + 0.5 * pattern)[..., None] * strength
        return base * (1 - mix) + second * mix

    return render


def _trimap(band: int, pet: np.ndarray) -> np.ndarray:
    """Eroded pet = 1, background = 2, a `band` px band across the outline = 3 (uint8 HxW)."""
    grow, shrink = (band + 1) // 2, band // 2
    m = Image.fromarray(pet.astype(np.uint8) * 255)
    outer = np.asarray(m.filter(ImageFilter.MaxFilter(2 * grow + 1))) > 127
    inner = np.asarray(m.filter(ImageFilter.MinFilter(2 * shrink + 1))) > 127 if shrink else pet
    trimap = np.full(pet.shape, 2, np.uint8)
    trimap[outer] = 3
    trimap[inner] = 1
    return trimap


def make_synthetic_pets(
    root: str | Path, n_trainval: int = 400, n_test: int = 100, seed: int = 0, jpeg_quality: int = 90
) -> Path:
    """Write `images/NAME.jpg`, `annotations/trimaps/NAME.png`, `annotations/{trainval,test,list}.txt` under root.

    Names are `<Breed>_<k>` over the 37 real breed names; the list lines carry the official class,
    species and breed ids. `root` must be new or empty. Returns `root`. Deterministic for a given seed.
    """
    final, root = start_folder(root, OXFORD_FOLDERS)
    with unfinished_removed(final, root):
        rng = np.random.default_rng(seed)
        counters = [0] * len(BREEDS)
        lists: dict[str, list[str]] = {"trainval": [], "test": []}
        threads = min(8, os.cpu_count() or 1)
        # One generator draws every image in turn (the set depends on that order); the threads render
        # and write them, which numpy and Pillow do mostly without holding the GIL.
        with ThreadPoolExecutor(threads) as pool:
            pending: deque[Future[None]] = deque()
            for split, n in (("trainval", n_trainval), ("test", n_test)):
                for _ in range(n):
                    c = int(rng.integers(len(BREEDS)))
                    counters[c] += 1
                    name = f"{BREEDS[c]}_{counters[c]}"
                    render = _draw_pet(rng, *_image_size(rng))
                    pending.append(pool.submit(_write_pet, render, root, name, jpeg_quality))
                    lists[split].append(f"{name} {c + 1} {_SPECIES[c]} {_BREED_IDS[c]}")
                    if len(pending) > 2 * threads:  # a few drawn images at a time, not the whole set
                        pending.popleft().result()
            for done in pending:
                done.result()
        return _finish_folder(root, final, lists)


def _write_pet(
    render: Callable[[], tuple[np.ndarray, np.ndarray]], root: Path, name: str, quality: int
) -> None:
    image, trimap = render()
    Image.fromarray(image).save(root / "images" / f"{name}.jpg", quality=quality)
    Image.fromarray(trimap).save(root / "annotations" / "trimaps" / f"{name}.png")


OXFORD_FOLDERS = ("images", "annotations/trimaps")


def start_folder(root: str | Path, subfolders: tuple[str, ...]) -> tuple[Path, Path]:
    """(the target, the folder to build in beside it, with `subfolders`): an interrupted build never leaves
    half a data set, and two processes building the same set at once each build in their own folder
    (`.NAME.partial-HOST-PID`); those of builders that no longer run are removed first."""
    final = Path(root)
    if final.exists() and any(final.iterdir()):
        raise FileExistsError(f"{final} is not empty; make the data set in a new folder")
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(final.parent, f".{final.name}.partial-*", partial_owner, what="half-made data set")
    partial = final.parent / f".{final.name}.partial-{owner_tag()}"
    shutil.rmtree(partial, ignore_errors=True)
    for sub in subfolders:
        (partial / sub).mkdir(parents=True)
    return final, partial


@contextlib.contextmanager
def unfinished_removed(final: Path, partial: Path) -> Iterator[None]:
    """Remove the `partial` folder of `final` where the block fails to write it; a full disk's error, which
    names no file, names the data set and says what to do."""
    try:
        yield
    except BaseException as e:
        shutil.rmtree(partial, ignore_errors=True)
        if isinstance(e, OSError) and e.errno in NO_ROOM:
            raise OSError(
                e.errno,
                f"could not make the data set {final} ({e.strerror}); free some disk space, or make it elsewhere",
            ) from e
        raise


def publish_folder(partial: Path, final: Path) -> Path:
    """Rename the finished `partial` to `final`; where another process finished the same set first, keep
    theirs and remove this one."""
    if final.exists() and not any(final.iterdir()):
        final.rmdir()
    try:
        os.replace(partial, final)
    except OSError:  # `final` was made meanwhile, whole: a builder renames only a finished set
        shutil.rmtree(partial, ignore_errors=True)
    return final


def _finish_folder(root: Path, final: Path, lists: dict[str, list[str]]) -> Path:
    """Write the list files into `root`, then rename it to `final`."""
    for split, lines in lists.items():
        (root / "annotations" / f"{split}.txt").write_text("\n".join(lines) + "\n")
    header = "#Image CLASS-ID SPECIES BREED ID\n#ID: 1:37 Class ids\n#SPECIES: 1:Cat 2:Dog\n#BREED ID: 1-25:Dog 1:12:Cat\n"
    (root / "annotations" / "list.txt").write_text(
        header + "\n".join(lists["trainval"] + lists["test"]) + "\n"
    )
    return publish_folder(root, final)


# --- a set the size of the release ------------------------------------------------------------------
RELEASE_SIZES = {"n_trainval": 3680, "n_test": 3669}  # the release's split sizes
# (height, width) of the release's widest and narrowest images: the 2nd and 3rd of each split (training).
_EXTREMES = ((2448, 3264), (152, 114))


def release_image_size(rng: np.random.Generator) -> tuple[int, int]:
    """(height, width) drawn like the release's images (its real files in the sample were the model).

    The long side is 500 px for two thirds of the images, 300 px for a sixth, 150-500 px for most of
    the rest and 500-3264 px for one in twenty; the short side is mostly 2/3 or 3/4 of it; one image in
    three is portrait. Both sides stay within the release's 114-3264 px.
    """
    u = rng.random()
    if u < 0.66:
        long_side = 500
    elif u < 0.82:
        long_side = 300
    elif u < 0.95:
        long_side = int(rng.integers(150, 500))
    else:
        long_side = int(500 + 500 * rng.lognormal(-0.3, 0.8))
    ratio = float(rng.choice([2 / 3, 3 / 4])) if rng.random() < 0.7 else rng.uniform(0.55, 1.0)
    short_side = round(long_side * ratio)
    h, w = (long_side, short_side) if rng.random() < 0.32 else (short_side, long_side)
    return int(np.clip(h, 114, 3264)), int(np.clip(w, 114, 3264))


def _plan(n_trainval: int, n_test: int) -> tuple[list[tuple[int, str, int]], dict[str, list[str]]]:
    """[(index, name, size slot)], the list lines: breeds in blocks, in the official lists' order."""
    counters = [0] * len(BREEDS)
    jobs: list[tuple[int, str, int]] = []
    lists: dict[str, list[str]] = {"trainval": [], "test": []}
    index = 0
    for split, n in (("trainval", n_trainval), ("test", n_test)):
        for i in range(n):
            c = i * len(BREEDS) // n
            counters[c] += 1
            name = f"{BREEDS[c]}_{counters[c]}"
            jobs.append((index, name, i - 1))  # slots 0 and 1 (images 1 and 2): the extremes
            lists[split].append(f"{name} {c + 1} {_SPECIES[c]} {_BREED_IDS[c]}")
            index += 1
    return jobs, lists


def _render(root: Path, seed: int, jpeg_quality: int, jobs: list[tuple[int, str, int]]) -> None:
    """Draw and write the images of `jobs`; each from its own generator, so any worker gives the same."""
    for index, name, slot in jobs:
        rng = np.random.default_rng([seed, index])
        size = _EXTREMES[slot] if 0 <= slot < len(_EXTREMES) else release_image_size(rng)
        _write_pet(_draw_pet(rng, *size), root, name, jpeg_quality)


def make_fullsize_pets(
    root: str | Path,
    n_trainval: int = RELEASE_SIZES["n_trainval"],
    n_test: int = RELEASE_SIZES["n_test"],
    seed: int = 0,
    workers: int | None = None,
    jpeg_quality: int = 90,
) -> Path:
    """A synthetic set the size of the release, in its layout: 3,680 trainval and 3,669 test images
    by default, sized by `release_image_size` (the 2nd and 3rd image of each split at the release's
    widest and narrowest size), 37 breeds in blocks as in the official lists.

    `workers` processes draw the images (None: one per core); the set is the same for any number of
    them (each image has its own generator from `seed` and its index). `root` must be new or empty.
    """
    final, partial = start_folder(root, OXFORD_FOLDERS)
    with unfinished_removed(final, partial):
        jobs, lists = _plan(n_trainval, n_test)
        workers = (os.cpu_count() or 1) if workers is None else max(1, workers)
        chunks = [jobs[k : k + 16] for k in range(0, len(jobs), 16)]
        if workers == 1:
            for chunk in chunks:
                _render(partial, seed, jpeg_quality, chunk)
        else:  # fork on Linux: the workers need nothing re-imported; macOS's fork is unsafe (as in cache.py)
            ctx = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else None)
            with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
                list(
                    pool.map(_render, *zip(*((partial, seed, jpeg_quality, c) for c in chunks), strict=True))
                )
        return _finish_folder(partial, final, lists)
