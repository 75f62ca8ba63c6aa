"""Distributed training under torchrun: 2 CPU processes (gloo) run the same `fit` as one process does.

The slow tests start `python -m torch.distributed.run --nproc_per_node=2` on 127.0.0.1, each process with one
thread (2 processes on a 2-core machine); a launch is slow, mostly imports: every such test is marked slow.
"""

import json
import os
import re
import socket
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pandas as pd
import psutil
import pytest
import torch

from seglib.data import EpochSampler, OxfordPetDataset
from seglib.engine import TrainConfig, evaluate, fit, load_checkpoint, load_model
from seglib.engine.environment import read_environment
from seglib.models import build_model

# --- the sampler's shares (no processes needed) ----------------------------------------------------------


def test_epoch_sampler_shares():
    single = EpochSampler(11, shuffle=True, seed=3)
    single.set_epoch(2)
    whole = list(single)
    shares = []
    for r in range(2):
        s = EpochSampler(11, shuffle=True, seed=3, rank=r, world_size=2)
        s.set_epoch(2)
        shares.append(list(s))
    assert len(shares[0]) == len(shares[1]) == 6  # padded: the ranks step together
    assert shares[0] == whole[0::2] and shares[1] == whole[1::2] + whole[:1]  # padding repeats the first pair
    # The ranks' batches of 2 at a step hold what one process's batch of 4 holds, with the same seeds.
    assert sorted(shares[0][:2] + shares[1][:2]) == sorted(whole[:4])
    # Resuming mid-epoch: `start` counts this rank's samples.
    s = EpochSampler(11, shuffle=True, seed=3, rank=1, world_size=2)
    s.set_epoch(2, start=4)
    assert list(s) == shares[1][4:] and len(s) == 2
    # Evaluation shares: rank r takes r, r + W, ...; every index exactly once.
    val = [list(EpochSampler(7, shuffle=False, rank=r, world_size=2, pad=False)) for r in range(2)]
    assert [i for i, _ in val[0]] == [0, 2, 4, 6] and [i for i, _ in val[1]] == [1, 3, 5]
    with pytest.raises(ValueError, match="rank must be in"):
        EpochSampler(5, rank=2, world_size=2)


def test_new_settings_are_validated():
    with pytest.raises(ValueError, match="sync_bn must be True or False, got 1"):
        TrainConfig(sync_bn=1)
    with pytest.raises(ValueError, match="shuffle must be True or False, got 'no'"):
        TrainConfig(shuffle="no")


# --- torchrun --------------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(*args, out: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run `args` (a script or `-m module` and its arguments) in 2 processes; fail with their output."""
    # faulthandler: a rank that dies by a signal (a rare SIGABRT after the last epoch, seen three times in
    # full suites, never alone) prints every thread's Python stack, which this assertion shows
    env = {**os.environ, "OMP_NUM_THREADS": "1", "SEGLIB_TEST_OUT": str(out), "PYTHONFAULTHANDLER": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "--master_addr=127.0.0.1",
        f"--master_port={free_port()}",
        *map(str, args),
    ]
    with subprocess.Popen(
        cmd, cwd=out, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as launcher:
        try:
            stdout, stderr = launcher.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            # the ranks too: torchrun starts each in a session of its own, and killing the launcher alone
            # left them running (and holding the pipes this reads, so the test waited for them to end)
            for process in [*psutil.Process(launcher.pid).children(recursive=True), launcher]:
                process.kill()
            stdout, stderr = launcher.communicate()
            pytest.fail(
                f"torchrun ran past {timeout} s; its ranks are stopped\n{stdout[-4000:]}\n{stderr[-4000:]}"
            )
    p = subprocess.CompletedProcess(cmd, launcher.returncode, stdout, stderr)
    fatal = p.stderr.find("Fatal Python error")  # the stacks come before a long list of extension modules
    stacks = p.stderr[fatal : fatal + 6000] if fatal >= 0 else ""
    assert p.returncode == 0, f"{p.stdout[-4000:]}\n{stacks}\n{p.stderr[-4000:]}"
    return p


# The real CLI (seglib.cli.main, as `python -m seglib` runs it), with two observers per rank: the files this
# rank writes (every write of the run folder goes through seglib.engine.io._atomic) and its final weights.
CLI_SCRIPT = """
import os, sys
from pathlib import Path
import torch
import seglib.cli as cli
import seglib.engine.io as io

out, rank = Path(os.environ["SEGLIB_TEST_OUT"]), os.environ["RANK"]
real_atomic, real_fit = io._atomic, cli.train.fit

def atomic(path, write, mode="wb"):
    with open(out / f"writes{rank}.txt", "a") as f:
        f.write(Path(path).name + "\\n")
    real_atomic(path, write, mode)

def fit(cfg, resume=False):
    result = real_fit(cfg, resume)
    torch.save(result.model.state_dict(), out / f"weights{rank}.pt")
    return result

io._atomic, cli.train.fit = atomic, fit
cli.main(sys.argv[1:])
"""

FIT_SCRIPT = """
import json, sys
from seglib.engine import TrainConfig, fit
fit(TrainConfig(**json.loads(sys.argv[1])))
"""

# fit with observers: each training step's dropout masks on this rank (which channels Dropout2d zeroed),
# and Ctrl-C sent to rank 0 at training step `stop_at` (0: never); an interrupted run exits cleanly.
DROPOUT_SCRIPT = """
import json, os, signal, sys
from pathlib import Path
import torch
from seglib.engine import TrainConfig, fit
from seglib.engine.losses import build_loss
from seglib.engine.train import TrainingInterrupted

out, rank = Path(os.environ["SEGLIB_TEST_OUT"]), int(os.environ["RANK"])
cfg, stop_at, tag = TrainConfig(**json.loads(sys.argv[1])), int(sys.argv[2]), sys.argv[3]
masks, bce, steps = [], build_loss("bce"), {"n": 0}

def record(module, inputs, output):
    if module.training:
        masks.append((output == 0).all(dim=(2, 3)) & (inputs[0] != 0).any(dim=(2, 3)))

def loss_fn(logits, target):
    if torch.is_grad_enabled():
        steps["n"] += 1
        if steps["n"] == stop_at and rank == 0:
            os.kill(os.getpid(), signal.SIGINT)
    return bce(logits, target)

import seglib.models.unet as unet
real_init = unet.UNet.__init__
def init(self, *a, **k):
    real_init(self, *a, **k)
    self.dropout.register_forward_hook(record)
unet.UNet.__init__ = init
try:
    fit(cfg, resume=tag == "resumed", loss_fn=loss_fn)
except TrainingInterrupted:
    pass
torch.save(masks, out / f"masks-{tag}-{rank}.pt")
"""

EVALUATE_SCRIPT = """
import os, sys
from seglib.data import OxfordPetDataset
from seglib.engine import evaluate
from seglib.engine.distributed import cleanup, init_distributed

info = init_distributed("cpu")
ds = OxfordPetDataset(sys.argv[1], "test", image_size=32, limit=7)
df = evaluate(sys.argv[2], ds, device="cpu", batch_size=2, progress=False)
df.to_pickle(os.path.join(os.environ["SEGLIB_TEST_OUT"], f"rank{info.rank}.pkl"))
cleanup(info)
"""


@pytest.fixture(scope="module")
def cli_run(synthetic_root, tmp_path_factory):
    """`train` through the CLI under torchrun: 12 training images (6 per rank), 7 validation images."""
    out = tmp_path_factory.mktemp("cli")
    (out / "cli_script.py").write_text(CLI_SCRIPT)
    p = torchrun(
        "cli_script.py",
        "train",
        "--data_path",
        synthetic_root,
        "--base_channels",
        4,
        "--epochs",
        2,
        "--image_size",
        32,
        "--batch_size",
        4,
        "--train_limit",
        12,
        "--val_limit",
        7,
        "--lr",
        1e-3,
        "--output_dir",
        out / "runs",
        "--run_name",
        "ddp",
        out=out,
    )
    return out, p


@pytest.mark.slow
def test_training_under_torchrun_through_the_cli(cli_run):
    out, p = cli_run
    assert p.stdout.count("seglib: unet") == 1 and p.stdout.count("best val Dice") == 1  # rank 0 speaks
    assert "batch 4 per process x 2 processes = 8 effective (gloo)" in p.stdout
    assert [d.name for d in (out / "runs").iterdir()] == ["ddp"]  # one run folder, not one per rank
    run = out / "runs" / "ddp"
    assert {f.name for f in run.iterdir()} == {
        "config.json",
        "history.csv",
        "lr.csv",
        "best.pt",
        "last.pt",
        "history.png",
        "environment.json",
    }
    # Rank 0 alone writes, each file once per epoch (config.json once); rank 1 writes nothing.
    assert not (out / "writes1.txt").exists()
    writes = (out / "writes0.txt").read_text().split()
    assert writes.count("config.json") == writes.count("environment.json") == 1
    assert [s["world_size"] for s in read_environment(run)] == [2]
    assert writes.count("history.csv") == writes.count("lr.csv") == writes.count("last.pt") == 2
    assert 1 <= writes.count("best.pt") <= 2
    assert pd.read_csv(run / "history.csv").epoch.tolist() == [1, 2]
    # 6 images per rank in batches of 4: 2 optimizer steps per epoch, the lr logged once per step.
    last = load_checkpoint(run / "last.pt")
    assert last["global_step"] == 4 and len(pd.read_csv(run / "lr.csv")) == 4 and last["world_size"] == 2
    # DDP keeps the ranks' weights equal (and rank 0's BatchNorm statistics are given to all), bit for bit.
    w0, w1 = torch.load(out / "weights0.pt"), torch.load(out / "weights1.pt")
    assert w0.keys() == w1.keys()
    for k in w0:
        assert torch.equal(w0[k], w1[k]), k
    # The checkpoint holds the unwrapped model: no "module." prefixes, loads into the single-process model.
    assert not any(k.startswith("module.") for k in last["model"])
    assert all(torch.equal(last["model"][k], w0[k]) for k in w0)
    assert isinstance(load_model(run / "best.pt"), type(build_model("unet", base_channels=4)))


@pytest.mark.slow
def test_distributed_validation_dice_equals_single_process(cli_run, synthetic_root):
    """7 validation images on 2 ranks (4 + 3): summed per-image Dice over 7 images, no padding duplicate."""
    out, _ = cli_run
    run = out / "runs" / "ddp"
    val_dice = pd.read_csv(run / "history.csv").val_dice.iloc[-1]
    ds = OxfordPetDataset(synthetic_root, "val", image_size=32, limit=7)
    df = evaluate(run / "last.pt", ds, device="cpu", progress=False)  # one process, the same weights
    # dice_model is validation's Dice (model resolution); the tolerance only covers the summation order.
    assert val_dice == pytest.approx(df.dice_model.mean(), abs=1e-12)
    padded = (df.dice_model.sum() + df.dice_model.iloc[0]) / 8  # what padding rank 1 to 4 images would give
    assert abs(padded - val_dice) > 1e-6


@pytest.mark.slow
def test_distributed_evaluate_equals_single_process(cli_run, synthetic_root):
    out, _ = cli_run
    ckpt = out / "runs" / "ddp" / "best.pt"
    (out / "evaluate_script.py").write_text(EVALUATE_SCRIPT)
    torchrun("evaluate_script.py", synthetic_root, ckpt, out=out)
    ds = OxfordPetDataset(synthetic_root, "test", image_size=32, limit=7)
    single = evaluate(ckpt, ds, device="cpu", batch_size=2, progress=False)
    assert len(single) == 7
    for rank in (0, 1):  # every rank returns all rows, in dataset order, each image scored once
        pd.testing.assert_frame_equal(pd.read_pickle(out / f"rank{rank}.pkl"), single, check_exact=True)


@pytest.mark.slow
def test_sync_bn_two_ranks_match_one_rank_with_twice_the_batch(tiny_config, tmp_path):
    """2 ranks x batch 4 with SyncBatchNorm train like 1 process with batch 8: the same 8 images in every
    step (rank r takes r, r + 2, ...), BatchNorm statistics of all 8, the gradient of their mean loss.

    Only the float summation order differs (DDP averages two half-batch gradients; CpuSyncBatchNorm sums
    two partial sums), and AdamW, which divides by the gradient's scale, amplifies it for weights whose
    gradient is near zero. Measured after 4 steps: largest weight difference 4e-5, difference / update
    1e-5, losses 1e-7. Without SyncBatchNorm (each rank normalises its 4 images) they are 4e-2, 0.16 and
    6e-4, so the tolerances below (1e-3, 1e-3, 1e-5) tell the two apart with room on both sides.
    """
    cfg = tiny_config(
        train_limit=16, val_limit=7, augment=False, shuffle=False, seed=0, sync_bn=True, amp=False
    )
    # amp=False above: fp32, since bf16's rounding would swamp the summation-order differences measured here.
    (tmp_path / "fit_script.py").write_text(FIT_SCRIPT)
    two = replace(cfg, batch_size=4, run_name="two")
    torchrun("fit_script.py", json.dumps(two.to_dict()), out=tmp_path)
    one = fit(replace(cfg, batch_size=8, run_name="one"))

    torch.manual_seed(0)
    start = build_model("unet", base_channels=4).state_dict()  # fit's initial weights (seed 0)
    a = load_checkpoint(one.last_checkpoint)["model"]
    b = load_checkpoint(tmp_path / "runs" / "two" / "last.pt")["model"]
    diff = update = 0.0
    for k in a:
        if a[k].is_floating_point():
            assert (a[k] - b[k]).abs().max().item() < 1e-3, k
            diff += (a[k] - b[k]).double().pow(2).sum().item()
            update += (a[k] - start[k]).double().pow(2).sum().item()
        else:
            assert torch.equal(a[k], b[k]), k  # num_batches_tracked: the same number of steps
    assert (diff / update) ** 0.5 < 1e-3
    ha, hb = pd.read_csv(one.run_dir / "history.csv"), pd.read_csv(tmp_path / "runs" / "two" / "history.csv")
    for col in ("train_loss", "val_loss"):
        assert hb[col].tolist() == pytest.approx(ha[col].tolist(), abs=1e-5), col


# fit with settings of its own on rank 1, as two nodes started with other options; each rank's error kept
SETTINGS_SCRIPT = """
import dataclasses, json, os, sys
from pathlib import Path
from seglib.engine import TrainConfig, fit

out, rank = Path(os.environ["SEGLIB_TEST_OUT"]), os.environ["RANK"]
cfg = TrainConfig(**json.loads(sys.argv[1]))
if rank == "1":
    cfg = dataclasses.replace(cfg, lr=0.05, seed=7, num_workers=1)
try:
    fit(cfg)
except ValueError as e:
    (out / f"error{rank}.txt").write_text(str(e))
"""


@pytest.mark.slow
def test_processes_started_with_other_settings_are_refused_before_any_work(tiny_config, tmp_path):
    """Two nodes given another lr and seed trained, exit 0, a run worse than either recorded with rank 0's
    settings; other epochs or batch sizes waited for each other until the timeout."""
    cfg = tiny_config(train_limit=16, run_name="mixed")
    (tmp_path / "settings_script.py").write_text(SETTINGS_SCRIPT)
    torchrun("settings_script.py", json.dumps(cfg.to_dict()), out=tmp_path)
    for rank in (0, 1):
        said = (tmp_path / f"error{rank}.txt").read_text()
        assert said.startswith(
            "the 2 processes were started with other settings (lr: rank 0 0.001, rank 1 0.05; "
        )
        assert "seed: rank 0 42, rank 1 7" in said and "num_workers" not in said  # a node's own
    assert not (tmp_path / "runs" / "mixed").exists()


@pytest.mark.slow
def test_a_budget_run_under_torchrun_replans_the_same_on_every_rank(tiny_config, tmp_path):
    """Rank 0's epoch times decide the plan for both ranks: both stop after the same epoch (a rank going on
    alone would wait in its next all-reduce until the timeout)."""
    cfg = tiny_config(train_limit=16, epochs=6, budget_minutes=1e-4, scheduler="onecycle", run_name="budget")
    (tmp_path / "fit_script.py").write_text(FIT_SCRIPT)
    p = torchrun("fit_script.py", json.dumps(cfg.to_dict()), out=tmp_path)
    assert p.stdout.count("re-planned 6 -> 3 epochs") == 1  # said once, by rank 0
    run = tmp_path / "runs" / "budget"
    assert pd.read_csv(run / "history.csv").epoch.tolist() == [1, 2, 3]
    assert json.loads((run / "config.json").read_text())["epochs"] == 3


# A sweep under torchrun: two trainings in one process, each ending with seglib's own group.
TWO_FITS_SCRIPT = """
import json, sys
from seglib.engine import TrainConfig, fit
for name in ("first", "second"):
    fit(TrainConfig(**{**json.loads(sys.argv[1]), "run_name": name}))
"""


@pytest.mark.slow
def test_two_trainings_in_one_torchrun_process_both_run(tiny_config, tmp_path):
    """The second fit waited forever: one rank joined the first fit's group store, still up on rank 0, and
    went on alone while rank 0 made a new group."""
    cfg = tiny_config(train_limit=16, epochs=1)
    (tmp_path / "two_fits.py").write_text(TWO_FITS_SCRIPT)
    torchrun("two_fits.py", json.dumps(cfg.to_dict()), out=tmp_path)
    for name in ("first", "second"):
        assert pd.read_csv(tmp_path / "runs" / name / "history.csv").epoch.tolist() == [1]


@pytest.mark.slow
def test_ranks_draw_their_own_dropout_masks_and_resume_them(tiny_config, tmp_path):
    """Every rank drops other channels (the same masks on all ranks would thin the regularisation of the
    global batch), and a run stopped by Ctrl-C mid-epoch and resumed equals the uninterrupted run, bit for
    bit: rank 0's generator comes back from last.pt, the other ranks' follow (seed, step, rank)."""
    model = {"base_channels": 4, "dropout": 0.5}
    # 2 steps an epoch; the memory format given, so that no probe runs a UNet besides the run's
    cfg = tiny_config(train_limit=16, epochs=3, log_every=1, model_kwargs=model, channels_last=False)
    (tmp_path / "dropout_script.py").write_text(DROPOUT_SCRIPT)

    def run(name: str, stop_at: int, tag: str) -> Path:
        c = json.dumps(replace(cfg, run_name=name).to_dict())
        torchrun("dropout_script.py", c, stop_at, tag, out=tmp_path)
        return tmp_path / "runs" / name

    whole = run("whole", 0, "whole")
    stopped = run("stopped", 3, "stopped")
    assert load_checkpoint(stopped / "last.pt")["global_step"] == 3
    resumed = run("stopped", 0, "resumed")
    masks = {
        (t, r): torch.load(tmp_path / f"masks-{t}-{r}.pt")
        for t in ("whole", "stopped", "resumed")
        for r in (0, 1)
    }
    assert len(masks["whole", 0]) == len(masks["whole", 1]) == 12  # 6 steps, 2 dropout layers
    for a, b in zip(masks["whole", 0], masks["whole", 1], strict=True):
        assert not torch.equal(a, b)  # 4 images, about half of their channels dropped
    for r in (0, 1):  # the interrupted run drew the uninterrupted run's masks before and after the stop
        both = masks["stopped", r] + masks["resumed", r]
        assert len(both) == 12 and all(
            torch.equal(a, b) for a, b in zip(both, masks["whole", r], strict=True)
        ), r
    a, b = load_checkpoint(whole / "last.pt")["model"], load_checkpoint(resumed / "last.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    ha, hb = pd.read_csv(whole / "history.csv"), pd.read_csv(resumed / "history.csv")
    pd.testing.assert_frame_equal(ha.drop(columns="seconds"), hb.drop(columns="seconds"), check_exact=True)


# fit in a process of a two-node run whose other node is lost in its fourth training step (rank 1 ends at
# once, as a killed process or a node that lost power does); what rank 0 is told is written out.
LOST_SCRIPT = """
import json, os, sys
from pathlib import Path
import torch
from seglib.engine import TrainConfig, fit
from seglib.engine.losses import build_loss

out, rank = Path(os.environ["SEGLIB_TEST_OUT"]), os.environ["RANK"]
bce, steps = build_loss("bce"), []

def loss_fn(logits, target):
    if torch.is_grad_enabled():
        steps.append(1)
        if rank == "1" and len(steps) == 4:
            os._exit(1)
    return bce(logits, target)

try:
    fit(TrainConfig(**json.loads(sys.argv[1])), loss_fn=loss_fn)
except RuntimeError as e:
    (out / f"error{rank}.txt").write_text(str(e))
"""


@pytest.mark.slow
def test_a_process_lost_mid_run_leaves_the_others_saying_how_to_resume(tiny_config, tmp_path):
    """Rank 0 said only gloo's "Connection reset by peer ... GLHF!" when another node's process ended.

    Each process is started as torchrun starts it on its own node (one process per node, so no torchrun
    agent stops the survivor first)."""
    cfg = tiny_config(train_limit=16, epochs=3, run_name="lost", channels_last=False)  # 2 steps an epoch
    (tmp_path / "lost_script.py").write_text(LOST_SCRIPT)
    port = str(free_port())
    procs = []
    for rank in ("0", "1"):
        env = {**os.environ, "OMP_NUM_THREADS": "1", "SEGLIB_TEST_OUT": str(tmp_path), "RANK": rank}
        env.update(
            LOCAL_RANK="0", WORLD_SIZE="2", LOCAL_WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=port
        )
        cmd = [sys.executable, "lost_script.py", json.dumps(cfg.to_dict())]
        procs.append(
            subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        )
    try:
        logs = [p.communicate(timeout=120)[0].decode() for p in procs]
    finally:
        for p in procs:
            p.kill()
    assert procs[1].returncode == 1, logs[1][-3000:]
    assert procs[0].returncode == 0, logs[0][-3000:]  # the survivor ends, told why
    said = (tmp_path / "error0.txt").read_text()
    run = tmp_path / "runs" / "lost"
    # gloo's own words first: "Connection reset by peer" or "Connection closed by peer", as the socket ended
    assert re.search(r"Connection (reset|closed) by peer", said), said
    assert "Another process of this run has ended (killed, out of memory, or its node lost" in said
    assert (
        f"resume with fit(cfg, resume={str(run)!r}) or `torchrun ... -m seglib train --resume {run}`" in said
    )
    assert load_checkpoint(run / "last.pt")["epoch"] == 1
    assert not list(run.glob(".training*"))  # rank 0's mark is gone: the resume is not refused as busy
