"""Shared fixtures: the synthetic set (made once per session) and the real sample when present."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from seglib.data import make_synthetic_pets

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """200 trainval (train 180 / val 20) and 20 test images in the official layout."""
    return make_synthetic_pets(
        tmp_path_factory.mktemp("data") / "synthetic-pets", n_trainval=200, n_test=20, seed=0
    )


@pytest.fixture(scope="session")
def sample_root() -> Path:
    """The real Oxford-IIIT Pet sample named by SEGLIB_SAMPLE_ROOT; skips when it is not there."""
    root = os.environ.get("SEGLIB_SAMPLE_ROOT")
    if not root or not Path(root).exists():
        pytest.skip("SEGLIB_SAMPLE_ROOT does not point at the real sample (CI sets it)")
    return Path(root)


@pytest.fixture(scope="session")
def full_lists_root() -> Path:
    """Full-size official list files (../shared/data/oxford-pet-lists, or SEGLIB_LISTS_ROOT)."""
    root = Path(os.environ.get("SEGLIB_LISTS_ROOT", REPO.parent / "shared" / "data" / "oxford-pet-lists"))
    if not (root / "trainval.txt").is_file():
        pytest.skip(f"no full-size list files at {root}")
    return root
