"""A folder data set's split: its `splits/{train,val,test}.txt` where it has them, else a seeded one."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from ..atomic import atomic_write
from .dataset import EmptySplitError
from .masks import shown

__all__ = [
    "SPLIT_FILES",
    "check_split_fractions",
    "folder_split",
    "recorded_split",
    "seeded_split",
    "write_splits",
]

SPLIT_FILES = ("train", "val", "test")


def _count(n: int, fraction: float) -> int:
    return max(1, round(n * fraction)) if fraction > 0 else 0


def check_split_fractions(val_fraction: float, test_fraction: float) -> None:
    """ValueError unless both fractions are in [0, 1) and leave images to train on."""
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if isinstance(value, bool) or not isinstance(value, int | float):  # papermill passes "abc" as text
            raise ValueError(f"{name} must be a number in [0, 1) (e.g. 0.1), got {value!r}")
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


def folder_split(
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


RECORDED = "the split its run recorded (in the checkpoint, and splits/ in the run folder)"


def recorded_split(
    root: Path,
    pairs: dict[str, tuple[Path, Path]],
    recorded: dict[str, list[str]],
    on_missing: str,
    strict: bool = True,
) -> tuple[dict[str, list[str]], str] | None:
    """The split a run recorded (its checkpoint's), as `folder_split` gives one: what its checkpoints are
    scored on and a resume trains on, whatever images the folder gained, lost or split files it got since.
    Not `strict` (a folder other than the run's: a copy, or other data), None where the folder lacks any
    image of it: that folder is read with its own split."""
    gone = sorted({n for names in recorded.values() for n in names} - set(pairs))
    if gone and not strict:
        warnings.warn(
            f"{root} lacks images of the run's recorded split: read with its own split", stacklevel=4
        )
        return None
    if gone and on_missing == "raise":
        raise FileNotFoundError(
            f"{root}: {len(gone)} image(s) of the run's recorded split are not in images/ and masks/: "
            f"{shown(gone)}; put them back (the run folder's splits/ lists its split)"
        )
    return {s: [n for n in recorded.get(s, []) if n in pairs] for s in SPLIT_FILES}, RECORDED


def _hand_written(line: str) -> str:
    """A line as typed: without a byte-order mark (Windows Notepad starts a file with one) and spaces."""
    return line.removeprefix("\ufeff").strip()


def _listed(line: str, pairs: dict[str, tuple[Path, Path]]) -> str | None:
    """The pair that a split file's line names (as a name, or a file name: cat1 or cat1.jpg), else None.

    The line as it is comes first: `write_splits` writes names as they are, `#hash` or ` photo ` too, and
    they must read back. Then the line as typed, stray spaces and a byte-order mark left out.
    """
    for text in (line, _hand_written(line)):
        for name in (text, Path(text).stem):
            if name in pairs:
                return name
    return None


def _split_file_text(path: Path) -> str:
    """A split file's text: UTF-8 (names not in UTF-8 kept as their bytes). UTF-16, which Windows Notepad
    saves as "Unicode" and PowerShell's `>` writes, read as garbled names: refused, saying so."""
    data = path.read_bytes()
    if data[:2] in (b"\xff\xfe", b"\xfe\xff") or b"\x00" in data:
        raise ValueError(
            f"{path} is UTF-16 text (Windows Notepad's \"Unicode\", PowerShell's >), not UTF-8; save it as "
            "UTF-8 (Notepad: Save As, Encoding UTF-8; PowerShell: Out-File -Encoding utf8)"
        )
    text = data.decode("utf-8", errors="surrogateescape")
    return text.replace("\r\n", "\n").replace("\r", "\n")  # line ends as read_text reads them


def _read_split_files(
    folder: Path, pairs: dict[str, tuple[Path, Path]], on_missing: str
) -> dict[str, list[str]]:
    """The names in splits/{train,val,test}.txt (a split without its file is empty); checked."""
    splits: dict[str, list[str]] = {}
    unknown: list[str] = []
    twice: list[str] = []  # a name listed again in its file: trained (or scored) twice as often
    for split in SPLIT_FILES:
        path = folder / f"{split}.txt"
        names, seen = [], set()
        # split("\n"), not splitlines(): that also cuts at \f, \x1c, \x85, \u2028, legal in a file name
        lines = _split_file_text(path).split("\n") if path.is_file() else []
        for lineno, line in enumerate(lines, start=1):
            name = _listed(line, pairs)
            if name is not None and name in seen:
                twice.append(f"{path.name}:{lineno} {name!r}")
            elif name is not None:
                names.append(name)
                seen.add(name)
            elif (text := _hand_written(line)) and not text.startswith("#"):
                unknown.append(f"{path.name}:{lineno} {text!r}")
        splits[split] = names
    if unknown and on_missing == "raise":
        raise FileNotFoundError(
            f"{folder}: {len(unknown)} name(s) have no image and mask pair in images/ and masks/: "
            f"{shown(unknown)}; fix the names (one file stem a line), add the files, or delete those lines "
            "(in Python, FolderDataset(..., on_missing='skip') leaves them out)"
        )
    if twice:
        raise ValueError(
            f"{folder}: {len(twice)} line(s) name an image already listed above them: {shown(twice)}; delete "
            "those lines (an image listed twice would train, or be scored, twice)"
        )
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        both = sorted(set(splits[a]) & set(splits[b]))
        if both:
            raise ValueError(
                f"{folder}: {len(both)} name(s) are in both {a}.txt and {b}.txt: {shown(both)}; an image "
                "must be in one split only (a validation or test image must not be trained on)"
            )
    return splits


def write_splits(splits: dict[str, list[str]], folder: str | Path) -> Path:
    """Write {split: names} as `folder`/train.txt, val.txt, test.txt (a name a line); returns `folder`.

    Copied to a data folder's `splits/`, they fix its split whatever images are added later; each name
    reads back as written. A name with a line break raises ValueError.
    """
    folder = Path(folder)
    broken = sorted(repr(n) for names in splits.values() for n in names if "\n" in n or "\r" in n)
    if broken:  # written, such a name would read back as two lines
        raise ValueError(
            f"{folder}: {len(broken)} name(s) hold a line break, which a split file (one name a line) "
            f"cannot: {shown(broken)}; rename those images and their masks"
        )
    folder.mkdir(parents=True, exist_ok=True)
    for split in SPLIT_FILES:
        names = splits.get(split, [])
        with atomic_write(folder / f"{split}.txt", "w", encoding="utf-8") as f:
            f.write("".join(f"{n}\n" for n in names))
    return folder
