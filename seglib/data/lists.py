"""The official list files (`annotations/trainval.txt`, `annotations/test.txt`) and the split rule.

A line reads `NAME CLASS_ID SPECIES BREED_ID`: class 1..37, species 1 = cat, 2 = dog, breed id within
the species. Lines starting with `#` are comments (the release's `list.txt` has them).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["BREEDS", "SPLITS", "ListEntry", "read_list", "select_split"]

# The 37 breeds in class-id order (cats are capitalised in the release, dogs are not).
BREEDS: tuple[str, ...] = (
    "Abyssinian",
    "american_bulldog",
    "american_pit_bull_terrier",
    "basset_hound",
    "beagle",
    "Bengal",
    "Birman",
    "Bombay",
    "boxer",
    "British_Shorthair",
    "chihuahua",
    "Egyptian_Mau",
    "english_cocker_spaniel",
    "english_setter",
    "german_shorthaired",
    "great_pyrenees",
    "havanese",
    "japanese_chin",
    "keeshond",
    "leonberger",
    "Maine_Coon",
    "miniature_pinscher",
    "newfoundland",
    "Persian",
    "pomeranian",
    "pug",
    "Ragdoll",
    "Russian_Blue",
    "saint_bernard",
    "samoyed",
    "scottish_terrier",
    "shiba_inu",
    "Siamese",
    "Sphynx",
    "staffordshire_bull_terrier",
    "wheaten_terrier",
    "yorkshire_terrier",
)
SPECIES = {1: "cat", 2: "dog"}
SPLITS = ("train", "val", "trainval", "test")


@dataclass(frozen=True)
class ListEntry:
    """One line of a list file."""

    name: str
    class_id: int
    species_id: int
    breed_id: int

    @property
    def breed(self) -> str:
        return BREEDS[self.class_id - 1]

    @property
    def species(self) -> str:
        return SPECIES[self.species_id]


def read_list(path: str | Path) -> list[ListEntry]:
    """Parse a list file; a malformed line raises ValueError naming the file and the line number."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing: the Oxford-IIIT Pet's annotations/ holds trainval.txt and test.txt; download "
            "the data again (python -m seglib download --data_path <its folder>), or copy that file back"
        )
    entries = []
    # utf-8-sig: a list saved by Windows Notepad starts with a byte-order mark, which read into the first name
    for lineno, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        try:
            name, cls, species, breed = parts[0], int(parts[1]), int(parts[2]), int(parts[3])
            if not (1 <= cls <= len(BREEDS) and species in SPECIES):
                raise ValueError
        except (IndexError, ValueError):
            raise ValueError(
                f"{path}:{lineno}: expected 'NAME CLASS_ID(1-37) SPECIES(1|2) BREED_ID', got {line!r}; "
                "is this an official Oxford-IIIT Pet list file?"
            ) from None
        entries.append(ListEntry(name, cls, species, breed))
    return entries


def select_split(entries: list[ListEntry], split: str) -> list[ListEntry]:
    """The original's rule on trainval.txt: line i (from 0) is val when i % 10 == 0, else train.

    For "trainval" and "test" every entry of the (respective) list is kept.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {list(SPLITS)}")
    if split == "train":
        return [e for i, e in enumerate(entries) if i % 10 != 0]
    if split == "val":
        return [e for i, e in enumerate(entries) if i % 10 == 0]
    return list(entries)
