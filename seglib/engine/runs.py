"""Run folders: creating one, finding one to resume or read, and writing what a run keeps in it.

A run folder (results/runs/<run_name>/) holds config.json, history.csv (one row per epoch), lr.csv (the lr
of every step), best.pt (by validation Dice), last.pt (the whole `TrainState`, to resume from),
environment.json (the code, libraries and machine of each start of the run) and, with `checkpoint_every`,
epochs/epoch_NNN.pt. Notebooks never share kernel state: later ones read runs here.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import MISSING, dataclass, fields
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
from torch import nn

from ..data import holds_data_set
from .checkpoint import load_checkpoint, save_checkpoint
from .config import TrainConfig
from .environment import first_epoch_on_todays_samples, record_start, samples_changed
from .io import atomic_write_csv
from .marks import MARK, TrainedNow, refuse_if_trained, trained_now_by, training_mark
from .state import TrainState

__all__ = [
    "HISTORY_COLUMNS",
    "RESUME_MAY_DIFFER",
    "RunFolder",
    "new_run",
    "resumed_run",
    "find_resume_dir",
    "load_resume_checkpoint",
    "resume_notes",
    "latest_run",
    "load_history",
    "history_frame",
    "patience_spent",
    "run_ended",
]

HISTORY_COLUMNS = [
    "epoch",
    "train_loss",
    "train_dice",
    "val_loss",
    "val_dice",
    "lr",
    "seconds",
    "skipped",
    "train_size",
]
# Settings a resumed run may change: they do not touch what is computed.
RESUME_MAY_DIFFER = frozenset(
    {
        "progress",
        "log_every",
        "num_workers",
        "use_wandb",
        "wandb_project",
        "overwrite",
        "run_name",
        "output_dir",
        "data_root",
        "synthetic_root",
        "device",
        "cache",
        "cache_dir",
        "checkpoint_every",
        "patience",  # a stopped run resumed with more patience goes on
    }
)
# Settings that None leaves to the machine (fit records its choice in the run's config): a run resumed
# with None keeps what it was trained with.
CHOSEN_BY_MACHINE = frozenset({"channels_last", "device_data", "compile"})


@contextmanager
def new_run(cfg: TrainConfig) -> Iterator[Path]:
    """results/runs/<run_name>, created and marked as trained by this process while the block runs. An
    existing run is never overwritten unless cfg.overwrite (a suffix -2, -3, ... is added instead), nor one
    another process trains (`TrainedNow`)."""
    base = Path(cfg.output_dir)
    name = cfg.run_name or f"{cfg.model}-{cfg.scheduler}-{datetime.now():%Y%m%d-%H%M%S}"
    with ExitStack() as held:
        run_dir = base / name
        if run_dir.is_dir() and cfg.overwrite:
            held.enter_context(training_mark(run_dir, "overwrite"))
            _empty(run_dir)  # the folder and its mark stay: no one else takes it meanwhile
        else:
            run_dir = _new_folder(base, name)
            held.enter_context(training_mark(run_dir))  # before config.json: a resume never sees it unmarked
        cfg.save(run_dir / "config.json")
        yield run_dir


def _empty(run_dir: Path) -> None:
    for entry in run_dir.iterdir():
        if entry.name == MARK:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def _new_folder(base: Path, name: str) -> Path:
    base.mkdir(parents=True, exist_ok=True)
    run_dir, k = base / name, 2
    while True:
        try:
            run_dir.mkdir()  # made here, or taken meanwhile by a run started the same moment: the next
            return run_dir
        except FileExistsError:
            run_dir = base / f"{name}-{k}"
            k += 1


@contextmanager
def resumed_run(cfg: TrainConfig, resume: bool | str | Path) -> Iterator[Path]:
    """`find_resume_dir`'s run folder, marked as trained by this process while the block runs. Of processes
    that resume at the same moment, one gets a run; with resume=True the others go on to the next newest
    that no other process trains, a run given by folder is refused (`TrainedNow`)."""
    with ExitStack() as held:
        for turn in range(3):
            run_dir = find_resume_dir(cfg, resume)
            try:
                held.enter_context(training_mark(run_dir, "resume"))
                break
            except TrainedNow:
                if not isinstance(resume, bool) or turn == 2:
                    raise
        yield run_dir


def find_resume_dir(cfg: TrainConfig, resume: bool | str | Path, marks: bool = True) -> Path:
    """The run folder to resume: of PATH (a folder or its last.pt), else the newest run called cfg.run_name
    (or NAME-2, NAME-3, ...), or the newest run in cfg.output_dir. Newest: the last started or saved; one
    killed before its first save is that run, and is refused rather than an older one resumed.
    `marks=False`: another process's `.training` mark neither refuses a run nor leaves it out (the other
    nodes of a distributed run, whose rank 0 decides: a mark its own machine left, dead, reads as live
    elsewhere)."""
    if not isinstance(resume, bool):
        path = Path(resume)
        if path.suffix == ".pt" and path.name != "last.pt":  # it would quietly become the folder's last.pt
            raise FileNotFoundError(
                f"cannot resume from {path}: a run resumes from its last.pt (optimizer and schedule with the "
                f"weights); give its folder ({path.parent}) or its last.pt, or start a new run"
            )
        run_dir = path.parent if path.suffix == ".pt" else path
    elif cfg.run_name:  # a new run of a used name went to NAME-2, NAME-3, ...: the newest is resumed
        named = _newest_first(_named_runs(Path(cfg.output_dir), cfg.run_name, "config.json"), marks)
        run_dir = named[0] if named else Path(cfg.output_dir) / cfg.run_name
    else:
        every = [p.parent for p in Path(cfg.output_dir).glob("*/config.json")]
        runs = _newest_first(every, marks)
        if not runs:
            busy = f" that no other process trains now ({len(every)} do)" if every else ""
            raise FileNotFoundError(
                f"resume=True but {cfg.output_dir} holds no run with a last.pt{busy}; "
                "start a new run with resume=False"
            )
        run_dir = runs[0]
    if marks:
        refuse_if_trained(run_dir, "resume")  # a folder given, or the only run of the name
    if not (run_dir / "last.pt").is_file():
        # a folder with config.json: a run stopped (a second Ctrl-C, a kill) before its first save
        why = "the run stopped before its first save: start it anew, without resume"
        if isinstance(resume, bool) and (run_dir / "config.json").is_file():
            why += " (it is the newest run; to resume an older one, give its folder)"
        where = why if (run_dir / "config.json").is_file() else f"runs live in {cfg.output_dir}/<run_name>/"
        raise FileNotFoundError(f"cannot resume: {run_dir / 'last.pt'} does not exist; {where}")
    return run_dir


def _newest_first(runs: list[Path], marks: bool = True) -> list[Path]:
    """Run folders by their last start (config.json at the first, environment.json at each) or save
    (last.pt), the newest first; those another process trains now are left out (one being trained beside
    this one, in another notebook or terminal, is never the run meant)."""

    def touched(run: Path) -> float:
        files = ("config.json", "environment.json", "last.pt")
        return max((run / f).stat().st_mtime for f in files if (run / f).is_file())

    return sorted((r for r in runs if not (marks and trained_now_by(r))), key=touched, reverse=True)


def load_resume_checkpoint(cfg: TrainConfig, run_dir: Path, world_size: int) -> dict[str, Any]:
    """`run_dir`/last.pt, checked against `cfg` and the number of processes: a resumed run must compute
    what the uninterrupted run would have."""
    path = run_dir / "last.pt"
    ckpt = load_checkpoint(path)
    # A setting added after the run was saved counts as its default (the run was trained that way).
    saved = {**{f.name: f.default for f in fields(TrainConfig) if f.default is not MISSING}, **ckpt["config"]}
    diff = {
        k: (saved.get(k), v)
        for k, v in cfg.to_dict().items()
        if k not in RESUME_MAY_DIFFER
        and saved.get(k) != v
        and not (k in CHOSEN_BY_MACHINE and v is None)
        and not (k == "epochs" and saved.get("budget_minutes") is not None)  # the run re-plans them
    }
    if diff:
        lines = ", ".join(f"{k}: saved {a!r}, now {b!r}" for k, (a, b) in sorted(diff.items()))
        raise ValueError(
            f"cannot resume {path}: the config differs ({lines}); resume with the saved config "
            "(TrainConfig.load(run_dir / 'config.json'); the command line: train --resume RUN_DIR, without "
            "--profile, --recipe or these options; a notebook: the parameters it trained with) or start a "
            "new run"
        )
    _check_resume_data(cfg, ckpt, path)
    saved_world = ckpt.get("world_size", 1)
    if saved_world != world_size:
        raise ValueError(
            f"cannot resume {path}: it was trained in {saved_world} process(es), this run has {world_size}; "
            "the steps per epoch and the lr schedule depend on it. Resume with as many processes "
            "(torchrun --nnodes x --nproc_per_node)"
        )
    return ckpt


def _check_resume_data(cfg: TrainConfig, ckpt: dict[str, Any], path: Path) -> None:
    """A run resumes on the kind of data it trained on: with its data_root gone (a moved project, a copied
    run), "auto" would go on with the synthetic demo set in its place. The other kinds refuse by themselves."""
    kind = ckpt.get("data")
    if cfg.dataset != "auto" or kind not in ("oxford-pet", "folder"):
        return
    if not holds_data_set(cfg.data_root):
        raise FileNotFoundError(
            f"cannot resume {path}: it trained on {kind} data at {ckpt.get('data_root') or cfg.data_root}, "
            f"and data_root {cfg.data_root!r} holds none from {Path.cwd()} (the synthetic demo set would take "
            "its place); pass data_root (--data_path) with the data's folder"
        )


def resume_notes(run_dir: Path, ckpt: dict[str, Any], kind: str, root: Path, epoch: int) -> list[str]:
    """What a run resumed at `epoch` goes on with that it did not begin with, as lines to say: seglib's
    samples changed since (`samples_changed`), or its data read from another folder (a moved project)."""
    notes = []
    if changed := samples_changed(run_dir, kind):
        epoch = first_epoch_on_todays_samples(run_dir) or epoch  # resumed before under today's seglib
        notes.append(
            f"seglib: {run_dir} began under an older seglib, and since then {'; '.join(changed)}. Its epochs "
            f"from {epoch} on train and validate on today's samples: its val Dice before and after do not "
            "compare, nor will it equal a run begun today (start a new run for one that does)"
        )
    began, now = ckpt.get("data_root"), Path(root).resolve()
    if began and Path(began) != now:
        gone = "" if Path(began).exists() else " (no longer there)"
        notes.append(
            f"seglib: {run_dir} trained on the data in {began}{gone}; it goes on with the data in {now}"
        )
    return notes


@dataclass
class RunFolder:
    """Writes a run's files. Only rank 0 writes (`writes=False` on the other ranks of a distributed run)."""

    path: Path
    cfg: TrainConfig
    spec: dict[str, Any]  # what rebuilds the model (checkpoint.model_spec)
    data: str  # "oxford-pet" | "synthetic" | "folder"
    world_size: int = 1
    writes: bool = True
    data_root: str = ""  # the data's folder, absolute: what evaluate and predict read from any folder
    splits: dict[str, list[str]] | None = None  # a folder's split: what its checkpoints are scored on

    def _save(self, path: Path, model: nn.Module, **extra: Any) -> None:
        saved = {"config": self.cfg.to_dict(), "data": self.data, "data_root": self.data_root}
        saved |= {"splits": self.splits} if self.splits is not None else {}
        save_checkpoint(path, model, self.spec, **saved, **extra)

    def save_last(self, state: TrainState) -> None:
        """last.pt: the whole state, so that the run resumes from here."""
        if not self.writes:
            return
        sd = state.state_dict()
        val_dice = state.history[-1]["val_dice"] if state.history else None
        extra = {k: v for k, v in sd.items() if k != "model"}
        self._save(self.path / "last.pt", state.model, val_dice=val_dice, world_size=self.world_size, **extra)

    def record_start(self, entry: dict[str, Any]) -> None:
        """environment.json gains `entry`: what this start of the run runs on (`environment.run_environment`)."""
        if self.writes:
            record_start(self.path, entry)

    def replan(self, cfg: TrainConfig) -> None:
        """The run goes on with `cfg` (its epochs re-planned under a budget); config.json says so."""
        self.cfg = cfg
        if self.writes:
            cfg.save(self.path / "config.json")

    def end_epoch(self, state: TrainState, steps_per_epoch: int, new_best: bool) -> None:
        """After an epoch: history.csv and lr.csv, best.pt if it is the best, the epoch's model if kept."""
        if not self.writes:
            return
        row, model = state.history[-1], state.eval_model
        atomic_write_csv(history_frame(state.history), self.path / "history.csv")
        lr = pd.DataFrame({"step": range(1, len(state.lr_log) + 1), "lr": state.lr_log})
        lr["epoch"] = (lr["step"] - 1) // steps_per_epoch + 1
        atomic_write_csv(lr, self.path / "lr.csv")
        common = {"epoch": row["epoch"], "val_dice": row["val_dice"]}
        if new_best:
            self._save(self.path / "best.pt", model, **common)
        every, epoch = self.cfg.checkpoint_every, row["epoch"]
        if every and (epoch % every == 0 or epoch == self.cfg.epochs):
            # For Dice-versus-time curves: the model as it stood after this many seconds of training.
            seconds = sum(r["seconds"] for r in state.history)
            self._save(self.path / "epochs" / f"epoch_{epoch:03d}.pt", model, train_seconds=seconds, **common)


def history_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """A run's history rows as a table: `HISTORY_COLUMNS`, then the metrics of `fit`'s `on_epoch` hook in
    the order they first came (NaN in an epoch without one)."""
    extra = dict.fromkeys(k for row in rows for k in row if k not in HISTORY_COLUMNS)
    return pd.DataFrame(rows, columns=[*HISTORY_COLUMNS, *extra])


def _named_runs(runs_dir: Path, name: str, file: str) -> list[Path]:
    """The run folders called `name` or `name-2`, `name-3`, ... that hold `file`, oldest `file` first."""
    found = [
        p.parent
        for p in runs_dir.glob(f"{name}*/{file}")
        if p.parent.name == name
        or (p.parent.name.startswith(f"{name}-") and p.parent.name[len(name) + 1 :].isdigit())
    ]
    return sorted(found, key=lambda p: (p / file).stat().st_mtime)


def latest_run(runs_dir: str | Path, name: str) -> Path:
    """The newest run folder called `name` or `name-2`, `name-3`, ... that has a best.pt."""
    found = _named_runs(Path(runs_dir), name, "best.pt")
    if not found:
        raise FileNotFoundError(
            f"no run called {name!r} with a best.pt in {runs_dir}; run the training notebook "
            "(02 or 03) first, or set the run parameter to an existing run folder"
        )
    return found[-1]


def patience_spent(epochs_done: int, best_epoch: int, patience: int | None) -> bool:
    """Whether `patience` epochs have gone by since the best val Dice's (`TrainConfig.patience`)."""
    return patience is not None and epochs_done - best_epoch >= patience


def run_ended(history: pd.DataFrame, cfg: TrainConfig) -> bool:
    """Whether a run's training is over: its (re-planned) epochs done, or stopped by its patience (its best
    epoch: the first of its highest val Dice, as training keeps it)."""
    if len(history) >= cfg.epochs:
        return True
    dice = history["val_dice"].reset_index(drop=True) if "val_dice" in history else pd.Series(dtype=float)
    best = 0 if dice.isna().all() else int(dice.idxmax()) + 1
    return patience_spent(len(history), best, cfg.patience)


def load_history(run_dir: str | Path) -> tuple[pd.DataFrame, TrainConfig]:
    """A run's per-epoch history (the metrics of an `on_epoch` hook after `HISTORY_COLUMNS`) and its config."""
    run_dir = Path(run_dir)
    return pd.read_csv(run_dir / "history.csv"), TrainConfig.load(run_dir / "config.json")
