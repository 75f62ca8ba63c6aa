"""Runs survive interruption, writes are atomic, and bad inputs fail early with a clear message."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pandas as pd
import psutil
import pytest
import torch
from conftest import run_with_file_limit, tiny_train_config
from PIL import Image

from seglib.atomic import atomic_path, atomic_write
from seglib.data import CorruptSampleError, EmptySplitError, OxfordPetDataset, describe
from seglib.engine import TrainConfig, fit, load_checkpoint, load_model
from seglib.engine.environment import read_environment
from seglib.engine.io import atomic_torch_save
from seglib.engine.train import NonFiniteLossError, TrainingInterrupted

RELIABLE = dict(epochs=3, train_limit=14, lr=3e-3, run_name="r")


def cfg_for(root, out, **kw) -> TrainConfig:
    return tiny_train_config(root, out, **{**RELIABLE, **kw})


def same_run(a_dir, b_dir):
    ha, hb = pd.read_csv(a_dir / "history.csv"), pd.read_csv(b_dir / "history.csv")
    cols = [c for c in ha.columns if c != "seconds"]
    pd.testing.assert_frame_equal(ha[cols], hb[cols], check_exact=True)
    pd.testing.assert_frame_equal(
        pd.read_csv(a_dir / "lr.csv"), pd.read_csv(b_dir / "lr.csv"), check_exact=True
    )
    sa, sb = load_checkpoint(a_dir / "last.pt")["model"], load_checkpoint(b_dir / "last.pt")["model"]
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k
    la, lb = load_checkpoint(a_dir / "last.pt"), load_checkpoint(b_dir / "last.pt")
    for k in la["optimizer"]["state"]:
        assert torch.equal(
            la["optimizer"]["state"][k]["exp_avg_sq"], lb["optimizer"]["state"][k]["exp_avg_sq"]
        )
    # the best epoch so far travels too: a resumed run that forgot it would save a later, worse best.pt
    assert (la["best_val_dice"], la["best_epoch"]) == (lb["best_val_dice"], lb["best_epoch"])
    ba, bb = load_checkpoint(a_dir / "best.pt"), load_checkpoint(b_dir / "best.pt")
    assert (ba["epoch"], ba["val_dice"]) == (bb["epoch"], bb["val_dice"])
    for k in ba["model"]:
        assert torch.equal(ba["model"][k], bb["model"][k]), k


@pytest.mark.slow
@pytest.mark.parametrize("scheduler", ["onecycle", "cosine"])
@pytest.mark.parametrize("stop_at", [5, 8, 4], ids=["mid-epoch", "end-of-epoch", "end-of-first-epoch"])
def test_resumed_run_equals_uninterrupted_run(synthetic_root, tmp_path, loss_at_step, scheduler, stop_at):
    # with dropout (the recommended UNet's): the model's own random numbers must resume where they stopped
    model = {"base_channels": 4, "dropout": 0.2}
    whole = fit(cfg_for(synthetic_root, tmp_path / "a", scheduler=scheduler, model_kwargs=model))
    with pytest.raises(TrainingInterrupted, match=r"Resume with fit\(cfg, resume="):
        fit(
            cfg_for(synthetic_root, tmp_path / "b", scheduler=scheduler, model_kwargs=model),
            loss_fn=loss_at_step("ctrl_c", stop_at),
        )
    saved = load_checkpoint(tmp_path / "b" / "r" / "last.pt")
    assert saved["global_step"] == stop_at
    assert (saved["partial"] or {}).get("step") == stop_at - 4 * saved["epoch"]
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        resumed = fit(
            cfg_for(synthetic_root, tmp_path / "b", scheduler=scheduler, model_kwargs=model, num_workers=1),
            resume=True,
        )
    assert resumed.run_dir == tmp_path / "b" / "r"
    # environment.json: one entry per start, the second saying where the run went on
    epoch, step = saved["epoch"], (saved["partial"] or {}).get("step", 0)
    assert [(s["epoch"], s["step"]) for s in read_environment(resumed.run_dir)] == [(0, 0), (epoch, step)]
    same_run(whole.run_dir, resumed.run_dir)
    # resumed after the first epoch's last step (4 steps an epoch), its lr step comes before this process's
    # first optimizer step: torch's warning that the schedule's first value is skipped would be false
    assert not [w for w in said if "lr_scheduler.step()" in str(w.message)]


@pytest.mark.slow
def test_a_stop_during_validation_saves_the_trained_epoch_and_resumes_to_the_same_run(
    synthetic_root, tmp_path
):
    """Ctrl-C (or the command line's SIGTERM, a batch job's time limit) during validation stops at its next
    batch: last.pt holds the epoch's training, and the resumed run validates it and goes on as if never
    stopped."""
    from seglib.engine.losses import build_loss

    real, calls = build_loss("bce"), {"val": 0}

    def stop_in_validation(logits, target):
        if not torch.is_grad_enabled():
            calls["val"] += 1
            if calls["val"] == 1:  # the first validation batch of epoch 1
                os.kill(os.getpid(), signal.SIGINT)
        return real(logits, target)

    whole = fit(cfg_for(synthetic_root, tmp_path / "a"))
    with pytest.raises(TrainingInterrupted, match=r"training stopped in epoch 1 after step 4 of 4"):
        fit(cfg_for(synthetic_root, tmp_path / "b"), loss_fn=stop_in_validation)
    saved = load_checkpoint(tmp_path / "b" / "r" / "last.pt")
    assert (saved["epoch"], saved["global_step"], saved["partial"]["step"]) == (0, 4, 4)
    same_run(whole.run_dir, fit(cfg_for(synthetic_root, tmp_path / "b"), resume=True).run_dir)


@pytest.mark.slow
def test_resume_checks_the_config(synthetic_root, tmp_path, loss_at_step):
    with pytest.raises(TrainingInterrupted):
        fit(cfg_for(synthetic_root, tmp_path), loss_fn=loss_at_step("ctrl_c", 2))
    with pytest.raises(
        ValueError, match=r"cannot resume .*last\.pt: the config differs \(lr: saved 0\.003, now 0\.1\)"
    ):
        fit(cfg_for(synthetic_root, tmp_path, lr=0.1), resume=True)
    with pytest.raises(FileNotFoundError, match="holds no run with a last.pt"):
        fit(cfg_for(synthetic_root, tmp_path / "empty", run_name=None), resume=True)


# The worker is killed in a child process: torch's SIGCHLD handler raises wherever the main thread is,
# which inside pytest's own process can be pytest's reporting.
KILL_A_WORKER = """
import multiprocessing, os, signal, sys
import torch
from seglib.engine import TrainConfig, fit
from seglib.engine.losses import build_loss

cfg, at, real, n = TrainConfig.load(sys.argv[1]), int(sys.argv[2]), build_loss("bce"), 0
how = getattr(signal, sys.argv[3])

def loss_fn(logits, target):  # kills a loader worker at training step `at`, as the out-of-memory killer does
    global n
    n += torch.is_grad_enabled()
    if n == at and torch.is_grad_enabled():
        os.kill(multiprocessing.active_children()[0].pid, how)
    return real(logits, target)

try:
    fit(cfg, loss_fn=loss_fn)
except RuntimeError as e:
    print(e, flush=True)
    os._exit(3)
"""


@pytest.mark.slow
def test_a_killed_loader_worker_says_whether_the_run_was_saved_and_how_to_resume(synthetic_root, tmp_path):
    cfg = cfg_for(synthetic_root, tmp_path, num_workers=1, run_name="w")
    cfg.save(tmp_path / "w.json")

    def killed_at(step: int, how: str = "SIGKILL") -> str:
        cmd = [sys.executable, "-c", KILL_A_WORKER, str(tmp_path / "w.json"), str(step), how]
        # in tmp_path: where core dumps are on, the crashed worker's lands there
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path)
        assert p.returncode == 3, p.stderr[-2000:]
        return p.stdout

    out = killed_at(1)  # epoch 1: no last.pt yet
    # in torch's words also where the reset connection of a batch on its way said it first
    said = (
        r"DataLoader worker \(pid \d+\) is killed by signal: Killed\. A loader worker was killed from outside"
    )
    assert re.search(f"{said}.*nothing was saved yet", out), out
    out = killed_at(6)  # epoch 2 (4 steps an epoch): epoch 1's last.pt stands
    assert re.search(said, out), out
    run = tmp_path / "w-2"
    assert f"{run / 'last.pt'} holds the run up to its last save: resume with" in out, out
    assert f"train --resume {run}" in out
    assert len(fit(cfg, resume=run).history) == 3
    # a worker's own crash is not said as the system's doing
    out = killed_at(1, "SIGSEGV")
    assert re.search(
        r"is killed by signal: Segmentation fault\. A loader worker crashed in what it runs", out
    ), out


def test_torch_has_nothing_left_to_report_of_a_killed_worker_once_it_was_waited_for():
    """A worker killed while it passed a batch shows first as a reset connection. torch's own report of its
    death (its SIGCHLD handler) then came wherever Python was: in the middle of fit's message, which it
    replaced. Here the report is held back as in that race; after `ended_workers` nothing is left of it."""
    from torch.utils.data import DataLoader

    from seglib.engine.workers import death_said, ended_workers, stop_workers, worker_processes

    loader = DataLoader(range(64), batch_size=4, num_workers=1, persistent_workers=True)
    next(iter(loader))
    (worker,) = worker_processes([loader])
    torchs = signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # held back: the death not yet reported
    try:
        os.kill(worker.pid, signal.SIGKILL)
        os.waitid(os.P_PID, worker.pid, os.WEXITED | os.WNOWAIT)  # dead, and not reaped
    finally:
        signal.signal(signal.SIGCHLD, torchs)
    try:
        assert ended_workers([loader], wait=10) == [worker]
        reset = ConnectionResetError(104, "Connection reset by peer")  # what fit met first
        assert (
            death_said(reset, [worker]) == f"DataLoader worker (pid {worker.pid}) is killed by signal: Killed"
        )
        subprocess.run(
            [sys.executable, "-c", ""], check=True
        )  # a child ends: torch's handler runs, and is quiet
        time.sleep(0.1)  # Python runs a signal's handler between two steps of its own
    finally:
        stop_workers([loader])
    assert worker_processes([loader]) == []


def test_stopping_the_workers_takes_torchs_late_report_of_one_that_died():
    """A worker killed after it had passed all its batches: torch's report came while fit or evaluate
    ended the workers (the others' ends are SIGCHLDs too) and failed a finished run, or hid its error."""
    from torch.utils.data import DataLoader

    from seglib.engine.workers import stop_workers, worker_processes

    loader = DataLoader(range(64), batch_size=4, num_workers=2, persistent_workers=True)
    next(iter(loader))
    first, second = worker_processes([loader])
    torchs = signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # held back: the death not yet reported
    try:
        os.kill(second.pid, signal.SIGKILL)
        os.waitid(os.P_PID, second.pid, os.WEXITED | os.WNOWAIT)
    finally:
        signal.signal(signal.SIGCHLD, torchs)
    stop_workers([loader])  # the first ends: its SIGCHLD runs torch's handler, which finds the second
    # not first.is_alive(): the report can come just after join's waitpid took the first's end, which
    # multiprocessing then never learns (is_alive stays True); the process itself is gone
    for pid in (first.pid, second.pid):
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_only_a_lost_worker_or_process_is_advised_as_one(tmp_path):
    """A connection reset where no loader has workers (num_workers=0, a resident set) is no killed worker;
    gloo's "closed by peer" in a run of one process is no lost process: both are left as they are (None)."""
    from types import SimpleNamespace

    from seglib.engine.distributed import DistInfo
    from seglib.engine.messages import lost_process_advice
    from seglib.engine.workers import death_said

    reset = ConnectionResetError(104, "Connection reset by peer")
    alone, two = DistInfo(), DistInfo(world_size=2, backend="gloo")
    assert lost_process_advice(reset, [SimpleNamespace(num_workers=0)], tmp_path, alone) is None
    # a worker's own error, passed on by torch: the worker lives, and the error is the data's or the code's
    own = RuntimeError("Caught RuntimeError in DataLoader worker process 0.\nOriginal Traceback ...")
    assert lost_process_advice(own, [SimpleNamespace(num_workers=2)], tmp_path, alone) is None
    said = lost_process_advice(reset, [SimpleNamespace(num_workers=2)], tmp_path, alone)
    assert said.startswith("A loader worker was killed from outside") and "nothing was saved yet" in said
    # by how the worker ended: the out-of-memory killer's SIGKILL, a crash, shared memory, its own exit
    workers = [SimpleNamespace(num_workers=2)]
    killed = RuntimeError("DataLoader worker (pid 7) is killed by signal: Killed. ")
    for code, says in [
        (None, "killed from outside, most often by the system for want of memory"),
        (-signal.SIGKILL, "killed from outside, most often by the system for want of memory"),
        (
            -signal.SIGSEGV,
            "crashed in what it runs .* num_workers=0 the main process reads the data and shows where",
        ),
        (-signal.SIGBUS, r"out of shared memory \(/dev/shm\).*--shm-size"),
        (3, r"ended by itself \(exit code 3;.*num_workers=0"),
    ]:
        said = lost_process_advice(killed, workers, tmp_path, alone, code)
        assert re.search(f"{says}.*nothing was saved yet", said), (code, said)
    # torch's own report stays as it came: for a bus error it says what to do
    bus = RuntimeError("DataLoader worker (pid 7) is killed by signal: Bus error. It is possible that ...")
    assert death_said(bus, [SimpleNamespace(pid=7, exitcode=-signal.SIGBUS)]) == str(bus).rstrip(".")
    assert death_said(reset, [SimpleNamespace(pid=7, exitcode=1)]) == str(reset)  # no signal to name
    peer = RuntimeError("[gloo/transport/tcp/pair.cc:534] Connection closed by peer [127.0.0.1]:29500")
    assert lost_process_advice(peer, [], tmp_path, alone) is None
    assert lost_process_advice(peer, [], tmp_path, two).startswith("Another process of this run has ended")


@pytest.mark.slow
def test_resume_takes_the_newest_run_of_the_name_and_a_finished_one_trains_no_more(
    synthetic_root, tmp_path, loss_at_step, capsys
):
    done = fit(cfg_for(synthetic_root, tmp_path))  # "r", finished
    with pytest.raises(TrainingInterrupted):  # the same name again: "r-2", stopped in epoch 2
        fit(cfg_for(synthetic_root, tmp_path), loss_fn=loss_at_step("ctrl_c", 6))
    resumed = fit(cfg_for(synthetic_root, tmp_path), resume=True)  # notebook 02's resume=True
    assert resumed.run_dir == tmp_path / "r-2" != done.run_dir
    assert f"resuming {tmp_path / 'r-2'} at step 2 of epoch 2" in capsys.readouterr().out
    same_run(done.run_dir, resumed.run_dir)
    recorded = (resumed.run_dir / "environment.json").read_bytes()
    again = fit(cfg_for(synthetic_root, tmp_path), resume=True)
    assert len(again.history) == len(done.history)
    assert (resumed.run_dir / "environment.json").read_bytes() == recorded  # no start recorded: none trained
    said = capsys.readouterr().out
    assert f"{tmp_path / 'r-2'} has finished its {len(done.history)} epochs: nothing to resume" in said
    assert "parameters) on" not in said  # not the banner of a training that does not take place
    one = fit(cfg_for(synthetic_root, tmp_path, epochs=1, run_name="one"))
    fit(cfg_for(synthetic_root, tmp_path, epochs=1, run_name="one"), resume=True)
    assert f"{one.run_dir} has finished its 1 epoch: nothing to resume" in capsys.readouterr().out


@pytest.mark.slow
def test_a_run_whose_data_is_gone_is_not_resumed_on_the_demo_set(synthetic_root, tmp_path, loss_at_step):
    """A moved project or a copied run: "auto" went on with the synthetic demo set made in its place."""
    data = shutil.copytree(synthetic_root, tmp_path / "data")
    cfg = cfg_for(data, tmp_path / "runs", dataset="auto", synthetic_root=str(tmp_path / "demo"))
    with pytest.raises(TrainingInterrupted):
        fit(cfg, loss_fn=loss_at_step("ctrl_c", 2))
    data.rename(tmp_path / "moved")
    with pytest.raises(
        FileNotFoundError, match=r"it trained on oxford-pet data at .*the synthetic demo set would"
    ):
        fit(cfg, resume=True)
    assert not (tmp_path / "demo").exists()


@pytest.mark.slow
def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(synthetic_root, tmp_path, loss_at_step):
    with pytest.raises(
        NonFiniteLossError, match=r"in epoch 1 at step 2; training stopped\. Nothing was saved"
    ):
        fit(cfg_for(synthetic_root, tmp_path / "first"), loss_fn=loss_at_step("nan", 2))  # no last.pt yet
    with pytest.raises(NonFiniteLossError, match=r"in epoch 2 at step 2.*end of epoch 1.*lr=0\.003"):
        fit(cfg_for(synthetic_root, tmp_path), loss_fn=loss_at_step("nan", 6))  # epoch 2, step 2
    last = load_checkpoint(tmp_path / "r" / "last.pt")
    assert last["epoch"] == 1 and all(
        torch.isfinite(v).all() for v in last["model"].values() if v.is_floating_point()
    )
    # stopped at step 2 of epoch 2, resumed, NaN at the next step: last.pt holds step 2 of epoch 2
    with pytest.raises(TrainingInterrupted):
        fit(cfg_for(synthetic_root, tmp_path / "b"), loss_fn=loss_at_step("ctrl_c", 6))
    with pytest.raises(NonFiniteLossError, match=r"in epoch 2 at step 3.*\(step 2 of epoch 2\)"):
        fit(cfg_for(synthetic_root, tmp_path / "b"), resume=True, loss_fn=loss_at_step("nan", 1))


@pytest.mark.slow
def test_a_gpu_out_of_memory_names_the_settings_to_lower_and_what_was_kept(
    synthetic_root, tmp_path, loss_at_step
):
    """CUDA's error says how many bytes it could not find, not which setting decides that, nor whether
    the run kept anything; in a notebook, the kernel still holds the run's tensors."""
    with pytest.raises(torch.OutOfMemoryError) as first:
        fit(cfg_for(synthetic_root, tmp_path / "a", batch_size=8), loss_fn=loss_at_step("oom", 1))
    said = str(first.value)
    assert re.match(
        r"cpu ran out of memory in epoch 1 \(training, batches of 8 at 32 px\): CUDA out of memory\. "
        r"Tried to allocate 2\.00 GiB\. .* this process has 6\.50 GiB memory in use\. Nothing was saved yet\. "
        r"Start a new run with a smaller batch_size \(say 4\) or image_size, .*restart the kernel first",
        said,
    ), said
    assert "Of the allocated memory" not in said and "expandable_segments" not in said  # torch's details
    with pytest.raises(
        torch.OutOfMemoryError, match=r"in epoch 2 \(validation, .* at 32 px\).*end of epoch 1"
    ):
        fit(
            cfg_for(synthetic_root, tmp_path / "b"), loss_fn=loss_at_step("oom_val", 5)
        )  # after epoch 2's steps
    assert load_checkpoint(tmp_path / "b" / "r" / "last.pt")["epoch"] == 1


FULL_DISK_FIT = """
import json, sys
import seglib.engine.io as io
from seglib.engine import TrainConfig, fit

real_save, saves = io.torch.save, []

def save(obj, f):
    saves.append(f)
    if len(saves) == 3:  # epoch 1 wrote best.pt and last.pt; then no file may grow past 4 kB
        limit_file_size(4096)
    real_save(obj, f)

io.torch.save = save
try:
    fit(TrainConfig(**json.loads(sys.argv[1])))
except OSError as e:
    print(type(e).__name__, e)
"""


@pytest.mark.slow
def test_disk_full_keeps_the_previous_checkpoint(synthetic_root, tmp_path):
    """A real failing write (torch's C++ writer raised `unexpected pos ...`, naming no file) names the
    checkpoint, and the previous one is intact."""
    cfg = cfg_for(synthetic_root, tmp_path, num_workers=0)
    p = run_with_file_limit(FULL_DISK_FIT, json.dumps(cfg.to_dict()))
    assert re.search(
        r"OSError \[Errno 27\] could not write .*/r/(best|last)\.pt \(File too large\); the previous version "
        r"of the file, if any, is intact\. Free some disk space",
        p.stdout,
    ), p.stdout + p.stderr[-3000:]
    assert load_checkpoint(tmp_path / "r" / "last.pt")["epoch"] == 1
    assert load_model(tmp_path / "r" / "best.pt") is not None
    assert not list((tmp_path / "r").glob(".*.tmp"))


WRITE_PAST_LIMIT = """
import sys
from seglib.atomic import atomic_write
with atomic_write(sys.argv[1]) as f:
    f.write(b"the previous version")
limit_file_size(4096)
try:
    with atomic_write(sys.argv[1]) as f:
        f.write(bytes(100_000))
except OSError as e:
    print(e)
"""


def test_a_failed_write_names_its_file_for_every_writer(tmp_path):
    """`seglib.atomic` names the file (predictions, figures, exports wrote `[Errno 28] No space left on
    device` alone)."""
    target = tmp_path / "cat_mask.png"
    p = run_with_file_limit(WRITE_PAST_LIMIT, str(target))
    assert p.stdout.strip() == (
        f"[Errno 27] could not write {target} (File too large); the previous version of the file, if any, "
        "is intact. Free some disk space, or write to another folder"
    ), p.stderr
    assert target.read_bytes() == b"the previous version"
    assert [p.name for p in tmp_path.iterdir()] == ["cat_mask.png"]


LONG_NAME_SAVE = """
import sys, time
from seglib.atomic import atomic_write
with atomic_write(sys.argv[1]) as f:
    print("saving", flush=True)
    time.sleep(600)  # killed here, mid-save
"""


def test_a_long_legal_name_is_written_and_a_killed_writers_leftover_removed(tmp_path, capsys):
    """A 247-byte name is legal; its temporary name was 30 bytes longer (`File name too long`)."""
    long = "c" * 238 + "_mask.png"
    for name in (long, "é" * 119 + "_mask.png"):  # two-byte characters: cut whole
        with atomic_write(tmp_path / name) as f:
            f.write(b"x")
        assert (tmp_path / name).read_bytes() == b"x"
    killed = subprocess.Popen(
        [sys.executable, "-c", LONG_NAME_SAVE, str(tmp_path / long)], stdout=subprocess.PIPE
    )
    try:
        assert killed.stdout.readline() == b"saving\n"
    finally:
        killed.kill()
        killed.wait()
    (left,) = tmp_path.glob(".*.tmp")
    assert f"-{killed.pid}." in left.name  # its writer, read back by the leftovers cleanup
    with atomic_write(tmp_path / long) as f:
        f.write(b"y")
    assert "removed 1 unfinished save(s)" in capsys.readouterr().out and not left.exists()
    assert (tmp_path / long).read_bytes() == b"y" and len(list(tmp_path.iterdir())) == 2


KILL_SCRIPT = """
import sys, torch
from seglib.engine.environment import read_environment
from seglib.engine.io import atomic_torch_save
i = 0
while True:
    i += 1
    atomic_torch_save({"i": i, "x": torch.full((4_000_000,), float(i))}, sys.argv[1])
    print(i, flush=True)
"""


@pytest.mark.slow
def test_a_kill_during_saving_leaves_a_complete_file(tmp_path):
    path = tmp_path / "last.pt"
    for delay in (0.05, 0.21, 0.37):
        proc = subprocess.Popen(
            [sys.executable, "-c", KILL_SCRIPT, str(path)], stdout=subprocess.PIPE, text=True
        )
        proc.stdout.readline()  # one complete save exists
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        state = torch.load(path, weights_only=True)
        assert state["x"].shape == (4_000_000,) and bool((state["x"] == state["i"]).all())


BLOCKED_SAVE = """
import sys, time
from seglib.engine.io import atomic_write
with atomic_write(sys.argv[1]) as f:
    f.write(b"half a checkpoint")
    print("saving", flush=True)
    time.sleep(600)  # killed here, mid-save
"""


@pytest.mark.slow  # two processes that import torch, one killed
def test_a_killed_save_is_cleaned_up_by_the_next_save_and_a_live_one_kept(tmp_path, capsys):
    path = tmp_path / "last.pt"
    savers = [
        subprocess.Popen([sys.executable, "-c", BLOCKED_SAVE, str(path)], stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    killed, live = savers
    try:
        for proc in savers:
            assert proc.stdout.readline() == "saving\n"
        killed.kill()
        killed.wait()
        tmp = {p.name: p for p in tmp_path.glob(".last.pt.*.tmp")}
        assert len(tmp) == 2
        (left,) = [p for name, p in tmp.items() if f"-{killed.pid}." in name]
        atomic_torch_save({"v": 1}, path)
        said = capsys.readouterr().out
        assert not left.exists() and len(list(tmp_path.glob(".last.pt.*.tmp"))) == 1  # the live save's
        assert "removed 1 unfinished save(s) left by processes that no longer run" in said
        assert left.name in said and torch.load(path)["v"] == 1
    finally:
        live.kill()
        live.wait()


def test_atomic_write_error_removes_the_temporary_file(tmp_path):
    atomic_torch_save({"v": 1}, tmp_path / "c.pt")
    with pytest.raises((AttributeError, TypeError)):
        atomic_torch_save({"v": lambda: 0}, tmp_path / "c.pt")  # cannot be pickled
    assert torch.load(tmp_path / "c.pt")["v"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]


def test_a_writer_that_takes_a_file_name_keeps_the_previous_file_when_it_fails(tmp_path):
    """The exporters write by file name (atomic_path): a failure halfway leaves the previous file."""
    target = tmp_path / "best.onnx"
    target.write_bytes(b"the previous export")
    with pytest.raises(RuntimeError, match="the exporter failed"), atomic_path(target) as tmp:
        tmp.write_bytes(b"half of a")
        raise RuntimeError("the exporter failed")
    assert target.read_bytes() == b"the previous export"
    assert [p.name for p in tmp_path.iterdir()] == ["best.onnx"]
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"the new export")
    assert target.read_bytes() == b"the new export" and len(list(tmp_path.iterdir())) == 1


def test_a_failed_write_within_a_write_is_named_once(tmp_path):
    """An exporter writing its weights' file inside its own atomic write: the full disk's error names the
    file whose write failed, once, not wrapped again in the outer file's."""
    import errno

    data = tmp_path / "best.onnx.data"
    with pytest.raises(OSError) as e, atomic_path(tmp_path / "best.onnx"), atomic_write(data) as f:
        f.write(b"half of the weights")
        raise OSError(errno.ENOSPC, "No space left on device")
    assert e.value.errno == errno.ENOSPC and str(e.value) == (
        f"[Errno 28] could not write {data} (No space left on device); the previous version of the file, if "
        "any, is intact. Free some disk space, or write to another folder"
    )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_saved_files_get_the_mode_open_gives(tmp_path, umask):
    """Others may read what a run saves as they may read any file the user makes (mkstemp alone: 0600)."""
    code = (
        f"import os; os.umask({umask}); from pathlib import Path; from seglib.atomic import atomic_path, atomic_write\n"
        f"d = Path({str(tmp_path)!r}); open(d / 'plain', 'w').close()\n"
        "with atomic_write(d / 'written') as f: f.write(b'x')\n"
        "with atomic_path(d / 'named') as p: p.write_bytes(b'x')\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    modes = {p.name: p.stat().st_mode & 0o777 for p in tmp_path.iterdir()}
    assert modes == {"plain": 0o666 & ~umask, "written": 0o666 & ~umask, "named": 0o666 & ~umask}


# --- bad data ------------------------------------------------------------------------------------------
@pytest.fixture
def damaged_root(synthetic_root, tmp_path):
    root = shutil.copytree(synthetic_root, tmp_path / "damaged")
    name = OxfordPetDataset(root, "train").names[5]
    jpg = root / "images" / f"{name}.jpg"
    jpg.write_bytes(jpg.read_bytes()[:600])  # truncated in the middle
    return root, name


@pytest.mark.slow
def test_corrupt_image_raise_names_the_file(damaged_root, tmp_path):
    root, name = damaged_root
    with pytest.raises(CorruptSampleError, match=rf"{name}\.jpg: cannot read the image.*on_corrupt='skip'"):
        fit(cfg_for(root, tmp_path / "runs", epochs=1, train_limit=8, num_workers=0))


@pytest.mark.slow
def test_corrupt_image_raise_from_a_worker_still_names_the_file(damaged_root, tmp_path):
    root, name = damaged_root
    with pytest.raises(CorruptSampleError, match=rf"{name}\.jpg: cannot read the image"):
        fit(cfg_for(root, tmp_path / "runs", epochs=1, train_limit=8, num_workers=1))


@pytest.mark.slow
def test_corrupt_image_skip_is_counted_and_reported(damaged_root, tmp_path, capsys):
    root, name = damaged_root
    result = fit(cfg_for(root, tmp_path / "runs", epochs=2, on_corrupt="skip", num_workers=1))
    assert result.history.skipped.tolist() == [1, 1]
    assert f"skipped 1 unreadable sample(s): {name}" in capsys.readouterr().out


def test_a_split_with_no_readable_image_stops_the_run(tmp_path):
    """Every image skipped as unreadable: the epoch's loss and Dice would be zeros, and a best.pt of an
    untrained model would be saved; the run stops naming the files instead."""
    from seglib.data import make_synthetic_folder

    root = make_synthetic_folder(tmp_path / "mine", n=12, seed=0)
    for image in (root / "images").iterdir():
        image.write_bytes(image.read_bytes()[:200])  # every transfer broke
    cfg = tiny_train_config(root, tmp_path / "runs", dataset="folder", on_corrupt="skip", run_name="r")
    with pytest.raises(
        CorruptSampleError, match=r"epoch 1: none of the training images could be read \(10 skipped: photo_"
    ):
        fit(cfg)
    assert not (tmp_path / "runs" / "r" / "best.pt").exists()


def test_fit_on_an_empty_split_stops_before_any_work(synthetic_root, tmp_path):
    root = shutil.copytree(synthetic_root, tmp_path / "copy")
    (root / "annotations" / "trainval.txt").write_text("")
    with pytest.raises(EmptySplitError, match=r"the train split has no images: .*trainval\.txt lists 0"):
        fit(cfg_for(root, tmp_path / "runs", cache=True, cache_dir=str(tmp_path / "cache")))
    assert not (tmp_path / "runs").exists() and not (tmp_path / "cache").exists()


def test_trimap_with_foreign_values(synthetic_root, tmp_path):
    root = shutil.copytree(synthetic_root, tmp_path / "copy")
    ds = OxfordPetDataset(root, "val")
    Image.fromarray((ds.load_trimap(0) * 50).astype("uint8")).save(ds.trimap_path(ds.names[0]))
    with pytest.raises(CorruptSampleError, match=rf"{ds.names[0]}\.png: trimap values must be 1 \(pet\), 2"):
        ds[0]
    skipping = OxfordPetDataset(root, "val", on_corrupt="skip")
    assert "skipped" in skipping[0]
    with pytest.warns(UserWarning, match=rf"describe: 1 unreadable mask\(s\) left out: {ds.names[0]}"):
        assert describe(skipping).name.tolist() == ds.names[1:]  # notebook 01's table of the rest


def _live_children() -> list[int]:
    """This process's children that still run (not zombies), from /proc."""
    alive = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended meanwhile
        if int(fields[1]) == os.getpid() and fields[0] != "Z":
            alive.append(int(stat.parent.name))
    return alive


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads child processes from /proc")
def test_a_stopped_fit_leaves_no_workers_and_the_process_as_it_was(synthetic_root, tmp_path, loss_at_step):
    """A notebook keeps the last exception (sys.last_traceback), whose frames hold the loaders: their
    workers, each a copy of the kernel, ran on beside the next cell. And the determinism switches fit sets
    stayed set for the cells after it."""
    before = (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic)
    others = set(_live_children())  # the suite's own (a resource tracker, ...)
    cfg = cfg_for(synthetic_root, tmp_path, num_workers=2, deterministic=True)
    with pytest.raises(TrainingInterrupted) as kept:  # held here, as the notebook holds it
        fit(cfg, loss_fn=loss_at_step("ctrl_c", 2))
    assert kept.value is not None and set(_live_children()) <= others
    assert (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic) == before
    fit(cfg_for(synthetic_root, tmp_path, deterministic=False, run_name="fast", epochs=1))
    assert (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic) == before


# --- a run resumed on what it did not begin with ---------------------------------------------------------
def _stopped_after_epoch_1(cfg: TrainConfig) -> Path:
    """The run of `cfg` stopped after its first epoch (last.pt saved), as Ctrl-C would stop it."""

    def stop(end):
        raise KeyboardInterrupt

    with pytest.raises(TrainingInterrupted):
        fit(cfg, on_epoch=stop)
    return Path(cfg.output_dir) / cfg.run_name


@pytest.mark.slow
def test_a_run_begun_before_seglibs_samples_changed_says_so_when_resumed(tiny_config, capsys):
    """A run stopped before 2026-12-05 (masks then resized half a pixel off) went on with the new masks
    without a word: its val Dice before and after did not compare, nor did it equal an uninterrupted run."""
    today = _stopped_after_epoch_1(tiny_config(run_name="today"))
    old = _stopped_after_epoch_1(tiny_config(run_name="old", epochs=3))
    starts = read_environment(old)
    for start in starts:  # as seglib wrote it on 2026-12-04: no revision, the start's time
        start.pop("samples_revision", None)
        start["started"] = "2026-12-04T10:00:00+00:00"
    (old / "environment.json").write_text(json.dumps(starts))
    capsys.readouterr()
    fit(tiny_config(run_name="today"), resume=today)
    assert "older seglib" not in capsys.readouterr().out
    note = (
        f"seglib: {old} began under an older seglib, and since then masks are resized pixel-centred, no "
        "longer half a pixel off (since 2026-12-05). Its epochs from 2 on train and validate on today's samples"
    )
    with pytest.raises(TrainingInterrupted):  # stopped again, after epoch 2
        fit(tiny_config(run_name="old", epochs=3), resume=old, on_epoch=_stop_at(2))
    said = capsys.readouterr().out
    assert note in said and "palette" not in said  # a folder's masks only changed next: not this data set's
    fit(tiny_config(run_name="old", epochs=3), resume=old)
    assert note in capsys.readouterr().out  # still from 2: epoch 2 trained on today's samples too
    assert read_environment(old)[-1]["samples_revision"] == read_environment(today)[-1]["samples_revision"]


def _stop_at(epoch: int):
    def stop(end):
        if end.epoch == epoch:
            raise KeyboardInterrupt

    return stop


def test_start_records_seglib_cannot_read_count_as_the_oldest(tmp_path):
    """A start's time without a time zone, or not a time, made a resume and notebook 06 raise TypeError."""
    from seglib.engine.environment import samples_changed

    pixel_centred, folder_masks = 1, 1  # the changes after revision 1, and the folder-only one after 2
    for starts, kind, changes in (
        ([{"started": "2026-12-06T10:00:00"}], "folder", folder_masks),  # taken as UTC: revision 2
        ([{"started": "2026-12-06T10:00:00"}], "oxford-pet", 0),
        ([{"started": "06/12/2026 10:00"}], "oxford-pet", pixel_centred),
        ([{"started": 5}, "not a start"], "oxford-pet", pixel_centred),
        ([{"samples_revision": "3", "started": "2026-12-07T00:00:00+00:00"}], "folder", 0),
        ([], "oxford-pet", pixel_centred),
    ):
        (tmp_path / "environment.json").write_text(json.dumps(starts))
        assert len(samples_changed(tmp_path, kind)) == changes, (starts, kind)


def test_a_seglib_started_at_a_changes_commit_time_has_that_revision():
    """A start record's time against the commits that changed the samples: from the second of the commit
    on, the new revision (a run begun then reads today's masks)."""
    from seglib.data.revisions import revision_at

    assert revision_at("2026-12-05T06:18:28+00:00") == 1
    assert revision_at("2026-12-05T06:18:29+00:00") == 2
    assert revision_at("2026-12-06T21:21:50+01:00") == 3  # the same moment in another time zone


@pytest.mark.slow
def test_a_run_resumed_on_data_in_another_folder_names_both(tiny_config, synthetic_root, tmp_path, capsys):
    """A run whose data folder had moved went on with whatever data_root now named, without a word."""
    began = tmp_path / "pets"
    shutil.copytree(synthetic_root, began)
    run = _stopped_after_epoch_1(tiny_config(data_root=str(began), run_name="moved"))
    moved = began.rename(tmp_path / "pets-moved")
    capsys.readouterr()
    fit(tiny_config(data_root=str(moved), run_name="moved"), resume=run)
    said = capsys.readouterr().out
    assert (
        f"seglib: {run} trained on the data in {began} (no longer there); it goes on with the data in {moved}"
        in said
    )
