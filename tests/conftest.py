"""Shared fixtures: the synthetic set (made once per session), the tiny training config, and the real
sample when present.

Tiers: `pytest -m "not slow"` (`make test-fast`) leaves out every test marked slow, i.e. every test that
trains beyond the tiny config's few steps, starts another Python that imports torch, or runs a whole
workflow (pyproject.toml says it in full); `make test` (CI) runs them all.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import torch

from seglib.data import make_synthetic_pets

if TYPE_CHECKING:
    from seglib.engine import TrainConfig

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session", autouse=True)
def probe_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The memory-format probe's cache (engine.fastpath) in the session's tmp folder, not in ~/.cache;
    the processes the tests start inherit it."""
    path = tmp_path_factory.mktemp("probe") / "fastpath.json"
    os.environ["SEGLIB_PROBE_CACHE"] = str(path)
    # every probe is cached, also one that other programs on this machine slowed down: the tests that
    # read the cache must not depend on a quiet machine (test_fastpath checks the busy rule itself)
    os.environ["SEGLIB_PROBE_BUSY_CORES"] = "inf"
    return path


# The smallest run that still goes through everything: a width-4 UNet at 32 px, 12 training images in
# batches of 4 (3 steps an epoch), 6 validation images, 2 epochs, no progress bars.
TINY: dict[str, Any] = dict(
    model="unet",
    model_kwargs={"base_channels": 4},
    dataset="oxford-pet",
    image_size=32,
    epochs=2,
    batch_size=4,
    train_limit=12,
    val_limit=6,
    progress=False,
    lr=1e-3,
)


def tiny_train_config(data_root: str | Path, output_dir: str | Path, **overrides: Any) -> TrainConfig:
    """The tiny config on the data at `data_root`, run folders under `output_dir`; `overrides` last.

    For module helpers that pick their own data or folders; tests take the `tiny_config` fixture.
    """
    from seglib.engine import TrainConfig  # here, so that the data and model tests collect without the engine

    return TrainConfig(**{**TINY, "data_root": str(data_root), "output_dir": str(output_dir), **overrides})


# Defines `limit_file_size(n)` in the new Python: from then on a write that would take a file past n bytes
# fails with EFBIG, a real failing write as on a full disk, without root or a mount (SIGXFSZ would kill it).
FILE_LIMIT = """
import resource, signal
def limit_file_size(n):
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (n, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
"""


def run_with_file_limit(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`code` in a new Python that may call `limit_file_size(n)` (FILE_LIMIT), with `args` as sys.argv[1:];
    the limit stays in that process, not in the tests'."""
    return subprocess.run(
        [sys.executable, "-c", FILE_LIMIT + code, *args], capture_output=True, text=True, timeout=600
    )


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """200 trainval (train 180 / val 20) and 20 test images in the official layout."""
    return make_synthetic_pets(
        tmp_path_factory.mktemp("data") / "synthetic-pets", n_trainval=200, n_test=20, seed=0
    )


@pytest.fixture
def tiny_config(synthetic_root: Path, tmp_path: Path) -> Callable[..., TrainConfig]:
    """`tiny_config(**overrides)`: the tiny config on the synthetic set, run folders in tmp_path/runs.

    Overrides win, `data_root` and `output_dir` included.
    """

    def make(**overrides: Any) -> TrainConfig:
        root = overrides.pop("data_root", synthetic_root)
        return tiny_train_config(root, overrides.pop("output_dir", tmp_path / "runs"), **overrides)

    return make


@pytest.fixture
def own_model(monkeypatch: pytest.MonkeyPatch) -> Callable[[str, Any], None]:
    """`register(name, model_class)`: register_model in this process, undone after the test."""
    from seglib.engine import register_model  # here, as in tiny_train_config
    from seglib.engine.config import CHOICES
    from seglib.models import MODELS

    monkeypatch.setitem(CHOICES, "model", CHOICES["model"])

    def register(name: str, model_class: Any) -> None:
        monkeypatch.setitem(MODELS, name, None)  # taken away again after the test
        register_model(name, model_class)

    return register


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


# torch 2.x's words for a CUDA allocation that failed (c10/cuda/CUDACachingAllocator.cpp)
CUDA_OOM = (
    "CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 7.63 GiB of which 1.12 GiB "
    "is free. Including non-PyTorch memory, this process has 6.50 GiB memory in use. Of the allocated memory "
    "5.90 GiB is allocated by PyTorch, and 401.20 MiB is reserved by PyTorch but unallocated. If reserved but "
    "unallocated memory is large try setting PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True to avoid "
    "fragmentation.  See documentation for Memory Management  "
    "(https://pytorch.org/docs/stable/notes/cuda.html#environment-variables)"
)


@pytest.fixture
def loss_at_step():
    """`make(event, at)`: a `fit(..., loss_fn=...)` that acts at training step `at` (counted over the run):
    "ctrl_c" sends SIGINT (what Jupyter's interrupt button sends the kernel), "nan" makes the loss NaN,
    "oom" raises CUDA's out-of-memory error (its text as torch words it), "oom_val" raises it at the first
    validation batch after step `at`.

    Training steps are the loss calls with gradients on; validation's are not counted. The event reaches
    the loop exactly where a real one would.
    """
    from seglib.engine.losses import build_loss

    def make(event: str, at: int, loss: str = "bce"):
        real, count = build_loss(loss), {"n": 0}

        def loss_fn(logits, target):
            out = real(logits, target)
            if not torch.is_grad_enabled():
                if event == "oom_val" and count["n"] >= at:
                    raise torch.OutOfMemoryError(CUDA_OOM)
                return out
            count["n"] += 1
            if count["n"] == at and event == "ctrl_c":
                os.kill(os.getpid(), signal.SIGINT)
            elif count["n"] == at and event == "oom":
                raise torch.OutOfMemoryError(CUDA_OOM)
            elif count["n"] == at and event == "nan":
                out = out * float("nan")
            return out

        return loss_fn

    return make


@pytest.fixture
def pids() -> Iterator[tuple[int, int]]:
    """(the pid of a process that runs, the pid of one that ended): the writers that marks and half-made
    folders name, live and killed."""
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    yield live.pid, ended.pid
    live.kill()
    live.wait()
