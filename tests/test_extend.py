"""A model, loss, scheduler and augmentation of the user's own (seglib.engine.register_*): trained,
recorded, resumed, scored and exported as seglib's own are. Each test runs the user's code in a Python of its own, as a
script or notebook would: a registration lasts as long as its process, and must not reach other tests."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
from pathlib import Path

import albumentations as A
import cv2
import numpy as np
import pytest
import torch
from conftest import REPO, TINY

from seglib.data import OxfordPetDataset, own_train_transform
from seglib.engine import (
    CHOICES,
    TrainConfig,
    TrainingInterrupted,
    fit,
    register_augmentation,
    register_loss,
    register_model,
    register_scheduler,
)
from seglib.engine.loaders import OWN_AUGMENTATIONS, make_datasets

# The researcher's module: a model, a focal loss that counts its calls, a polynomial lr decay.
OWN = """
import os
import albumentations as A
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.lr_scheduler import PolynomialLR

from seglib.engine import register_augmentation, register_loss, register_model, register_scheduler

CALLS = {"loss": 0}
STOP_AT = int(os.environ.get("STOP_AT", "0"))  # a Ctrl-C at this training step (0: none)


class TinyNet(nn.Module):
    def __init__(self, in_channels=3, num_classes=1, width=4):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, num_classes, 1),
        )

    def forward(self, x):
        return self.body(x)


def focal(logits, target):
    if torch.is_grad_enabled():
        CALLS["loss"] += 1
        if CALLS["loss"] == STOP_AT:
            raise KeyboardInterrupt
    bce = F.binary_cross_entropy_with_logits(logits.float(), target, reduction="none")
    return ((1 - torch.exp(-bce)) ** 2 * bce).mean()


register_model("tiny_net", TinyNet)
register_loss("focal", focal)
register_scheduler("poly", lambda cfg, opt, steps: PolynomialLR(opt, total_iters=cfg.epochs, power=2.0))
register_augmentation(
    "flips", lambda size, fill: A.OneOf([A.VerticalFlip(p=1), A.Transpose(p=1), A.NoOp(p=1)], p=0.9)
)
"""

TRAIN = """
import json, sys
import torch
import own
from seglib.engine import TrainConfig, TrainingInterrupted, checkpoint_split, evaluate, export_model, fit, load_model

cfg = TrainConfig(**json.loads(sys.argv[1]))
try:
    run = fit(cfg, resume=sys.argv[2] == "resume")
except TrainingInterrupted:
    print(json.dumps({"stopped": own.CALLS["loss"]}))
    raise SystemExit(0)
model = load_model(run.best_checkpoint)
scores = evaluate(model, checkpoint_split(run.best_checkpoint, "val"), "cpu", progress=False)
onnx = export_model(run.best_checkpoint)
torch.save(run.model.state_dict(), run.run_dir / "weights-at-end.pt")
print(json.dumps({
    "calls": own.CALLS["loss"], "run_dir": str(run.run_dir), "lr": run.history["lr"].tolist(),
    "loss": run.history["train_loss"].tolist(), "built": type(model).__name__,
    "scored": len(scores), "dice": float(scores["dice"].mean()), "onnx": str(onnx),
}))
"""


def _python(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, "PYTHONPATH": f"{cwd}{os.pathsep}{REPO}", **env}
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=environ, capture_output=True, text=True, timeout=600
    )


@pytest.fixture
def own_code(tmp_path: Path, synthetic_root: Path):
    """`run(settings, resume=False, **env)`: train.py in a process that imported own.py; its JSON line."""
    (tmp_path / "own.py").write_text(OWN)
    (tmp_path / "train.py").write_text(TRAIN)
    base = {**TINY, "model": "tiny_net", "model_kwargs": {"width": 4}, "loss": "focal", "scheduler": "poly"}
    base |= {"augmentation": "flips"}
    base |= {"data_root": str(synthetic_root), "epochs": 3}

    def run(settings: dict, resume: bool = False, **env: str) -> dict:
        done = _python(
            tmp_path, "train.py", json.dumps(base | settings), "resume" if resume else "new", **env
        )
        assert done.returncode == 0, done.stderr[-3000:]
        return json.loads(done.stdout.strip().splitlines()[-1])

    return run


@pytest.mark.slow
def test_a_model_loss_and_scheduler_of_your_own_train_and_the_run_names_them(own_code, tmp_path: Path):
    out = own_code({"output_dir": str(tmp_path / "runs"), "run_name": "mine"})
    assert out["calls"] == 3 * 3  # 3 epochs of 3 training steps, each through the registered loss
    poly = [1e-3, 1e-3 * (2 / 3) ** 2, 1e-3 * (1 / 3) ** 2]  # PolynomialLR, power 2, over 3 epochs
    assert out["lr"] == pytest.approx(poly)
    assert out["built"] == "TinyNet" and out["scored"] == 20 and 0 <= out["dice"] <= 1  # the 20 val images
    run_dir = Path(out["run_dir"])
    saved = json.loads((run_dir / "config.json").read_text())
    assert (saved["model"], saved["loss"], saved["scheduler"]) == ("tiny_net", "focal", "poly")
    assert saved["augmentation"] == "flips"
    ckpt = torch.load(run_dir / "best.pt", weights_only=True)
    assert (ckpt["config"]["loss"], ckpt["model_spec"]["name"]) == ("focal", "tiny_net")
    assert Path(out["onnx"]).stat().st_size > 0


@pytest.mark.slow
def test_a_resumed_run_of_your_own_equals_the_uninterrupted_one(own_code, tmp_path: Path):
    whole = own_code({"output_dir": str(tmp_path / "a")})
    assert own_code({"output_dir": str(tmp_path / "b")}, STOP_AT="5") == {"stopped": 5}
    resumed = own_code({"output_dir": str(tmp_path / "b")}, resume=True)
    assert resumed["loss"] == whole["loss"] and resumed["lr"] == whole["lr"]
    a, b = (torch.load(Path(r["run_dir"]) / "weights-at-end.pt") for r in (whole, resumed))
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_a_process_that_has_not_registered_them_says_which_to_register(own_code, tmp_path: Path):
    run_dir = Path(own_code({"output_dir": str(tmp_path / "runs"), "epochs": 1})["run_dir"])
    code = (
        "import sys\nfrom seglib.engine import TrainConfig, load_model\n"
        "for load in (lambda: TrainConfig.load(sys.argv[1] + '/config.json'), lambda: load_model(sys.argv[1] + '/best.pt')):\n"
        "    try:\n        load()\n    except Exception as e:\n        print(type(e).__name__, e)\n"
    )
    said = _python(tmp_path, "-c", code, str(run_dir)).stdout
    assert "ValueError unknown model 'tiny_net'" in said and "register_model('tiny_net', ...) first" in said
    assert "CheckpointError" in said and "register_model('tiny_net', YourModel) first" in said
    # reading the run's data needs none of them (the command line's evaluate of a run with its own loss)
    code = "import sys\nfrom seglib.engine import checkpoint_split\nprint(len(checkpoint_split(sys.argv[1], 'val')))"
    assert _python(tmp_path, "-c", code, str(run_dir / "best.pt")).stdout.strip() == "20"


class Net(torch.nn.Module):
    def __init__(self, in_channels: int = 3, num_classes: int = 1) -> None:
        super().__init__()


class Plain(torch.nn.Module):  # seglib could not tell it the channels
    def __init__(self, width: int = 4) -> None:
        super().__init__()


@pytest.mark.parametrize(
    ("register", "args", "message"),
    [
        (register_loss, ("bce", lambda a, b: a), r"'bce' is seglib's own loss; give yours another name"),
        (register_model, ("unet", Net), r"'unet' is seglib's own model"),
        (register_scheduler, ("cosine", lambda c, o, n: None), r"'cosine' is seglib's own scheduler"),
        (register_loss, ("my/loss", lambda a, b: a), r"a name is letters, digits and '_'"),
        (register_loss, ("", lambda a, b: a), r"a name is letters, digits and '_'"),
        (
            register_loss,
            ("focal", 3),
            r"register_loss\('focal', \.\.\.\): the second argument must be callable",
        ),
        (register_model, ("plain", Plain), r"must take in_channels and num_classes"),
        (register_scheduler, ("poly", lambda c, o, n: None, "yes"), r"per_batch must be True or False"),
    ],
)
def test_a_registration_seglib_cannot_use_is_refused_by_name(register, args, message):
    with pytest.raises(ValueError, match=message):
        register(*args)


class AnyKeywords(torch.nn.Module):  # takes in_channels and num_classes among its keywords
    def __init__(self, **kwargs) -> None:
        super().__init__()


def test_a_model_of_keywords_registers_once_however_often_and_old_configs_name_none(own_model):
    """A model taking **kwargs takes in_channels and num_classes; a registration run again (a notebook cell)
    adds no second choice; a config without a setting (written before it existed) used seglib's own."""
    from seglib.engine.extend import own_names
    from seglib.models import MODELS

    for _ in range(2):
        own_model("any_keywords", AnyKeywords)
    assert CHOICES["model"].count("any_keywords") == 1 and MODELS["any_keywords"] is AnyKeywords
    assert own_names({"model": "any_keywords", "loss": "bce"}) == ["model 'any_keywords'"]


@pytest.fixture
def own_augmentation(monkeypatch: pytest.MonkeyPatch):
    """`register(name, build)`: register_augmentation in this process, undone after the test."""
    monkeypatch.setitem(CHOICES, "augmentation", CHOICES["augmentation"])

    def register(name: str, build) -> None:
        monkeypatch.setitem(OWN_AUGMENTATIONS, name, None)  # taken away again after the test
        register_augmentation(name, build)

    return register


def _train_sample(cfg: TrainConfig, i: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    sample = make_datasets(cfg)[0][i, seed]
    return sample["image"].numpy(), sample["mask"].numpy()


def test_an_augmentation_of_your_own_moves_image_and_mask_together(own_augmentation, tiny_config):
    own_augmentation("upside_down", A.VerticalFlip(p=1))  # a transform as it is, or a builder
    image, mask = _train_sample(tiny_config(augmentation="upside_down"), 3, seed=7)
    plain, plain_mask = _train_sample(tiny_config(augment=False), 3, seed=7)
    assert mask.any() and not np.array_equal(mask, mask[:, ::-1])  # a flip shows
    np.testing.assert_array_equal(mask, plain_mask[:, ::-1])
    np.testing.assert_allclose(image, plain[:, ::-1], atol=1e-6)


def test_an_augmentation_of_your_own_is_seeded_per_sample_and_per_transform(own_augmentation, tiny_config):
    # Compose's own seeding gives both flips one seed, so they would always coincide
    own_augmentation(
        "two_flips", lambda size, fill: A.Compose([A.HorizontalFlip(p=0.5), A.VerticalFlip(p=0.5)])
    )
    cfg = tiny_config(augmentation="two_flips")
    plain = _train_sample(tiny_config(augment=False), 3, seed=0)[1]
    seen = set()
    for seed in range(24):
        mask = _train_sample(cfg, 3, seed)[1]
        np.testing.assert_array_equal(mask, _train_sample(cfg, 3, seed)[1])  # the seed alone decides
        flips = {
            (h, v)
            for h in (0, 1)
            for v in (0, 1)
            if np.array_equal(
                mask,
                plain[:, ::-1][:, :, ::-1]
                if h and v
                else plain[:, ::-1]
                if v
                else plain[:, :, ::-1]
                if h
                else plain,
            )
        }
        seen |= flips
    assert seen == {(0, 0), (0, 1), (1, 0), (1, 1)}


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"device_data": True}, r"augmentation 'mine' runs in the data loader: set device_data=False"),
        ({"augmentation": "theirs"}, r"register_augmentation\('theirs', \.\.\.\) first"),
    ],
)
def test_settings_an_augmentation_of_your_own_cannot_take_are_refused(
    own_augmentation, tiny_config, settings, message
):
    own_augmentation("mine", lambda size, fill: A.NoOp())
    with pytest.raises(ValueError, match=message):
        tiny_config(**{"augmentation": "mine", **settings})


def test_an_augmentation_of_your_own_switched_off_leaves_device_data_free(own_augmentation, tiny_config):
    """augment=False runs no augmentation, so none in the data loader: device_data is no conflict."""
    own_augmentation("mine", lambda size, fill: A.NoOp())
    assert tiny_config(augmentation="mine", augment=False, device_data=True).device_data is True


@pytest.mark.parametrize(
    ("name", "build", "message"),
    [
        ("default", lambda s, f: A.NoOp(), r"'default' is seglib's own augmentation"),
        (
            "torchvision",
            lambda s, f: lambda image, mask: (image, mask),
            r"must give an Albumentations transform",
        ),
        ("flips", 3, r"the second argument must be callable"),
        (
            "normalised",  # one sample tried would pass it half the time: the transforms are looked at
            A.Compose([A.HorizontalFlip(), A.OneOf([A.Normalize(), A.NoOp()])], p=0.5),
            r"it holds Normalize: leave A.Normalize, A.ToFloat and ToTensorV2 out",
        ),
        ("sized", lambda size: A.NoOp(), r"build must take \(image_size, mask_fill\)"),
    ],
)
def test_an_augmentation_seglib_cannot_use_is_refused_by_name(own_augmentation, name, build, message):
    with pytest.raises(ValueError, match=rf"register_augmentation\('{name}', \.\.\.\)(.*){message}"):
        own_augmentation(name, build)
    assert name not in CHOICES["augmentation"][1:]


def test_the_zoom_of_scale_jitter_comes_before_an_augmentation_of_your_own(own_augmentation, tiny_config):
    own_augmentation("nothing", A.NoOp())
    plain = _train_sample(tiny_config(augment=False), 3, seed=0)[1]
    same = [
        np.array_equal(_train_sample(tiny_config(augmentation="nothing"), 3, s)[1], plain) for s in range(6)
    ]
    zoomed = [_train_sample(tiny_config(augmentation="nothing", scale_jitter=0.5), 3, s)[1] for s in range(6)]
    assert all(same) and not all(np.array_equal(m, plain) for m in zoomed)
    steps = [type(t).__name__ for t in own_train_transform(A.NoOp(), 32, 0, 0.5).transforms]
    assert steps == [
        "Resize",
        "Affine",
        "NoOp",
        "Lambda",
        "Resize",
        "Normalize",
        "ToTensorV2",
    ]  # the check: Lambda


def test_a_crop_of_your_own_comes_back_to_the_training_size(own_augmentation, tiny_config):
    """A crop for the training size (24 of 32 px) is taken at registration, where seglib tries no sample."""
    own_augmentation("crop", lambda size, fill: A.RandomCrop(size * 3 // 4, size * 3 // 4))
    image, mask = _train_sample(tiny_config(augmentation="crop"), 3, seed=1)
    assert image.shape == (3, 32, 32) and mask.shape == (1, 32, 32) and set(np.unique(mask)) <= {0, 1}


def test_an_augmentation_that_smears_the_mask_is_named_not_trained_on(own_augmentation, tiny_config):
    """A rotation interpolating the mask made border values (255) into 5, 7, ..., 254: the loss went
    negative without a word."""
    own_augmentation("smeared", A.Rotate(limit=(30, 30), mask_interpolation=cv2.INTER_LINEAR, p=1))
    with pytest.raises(
        ValueError, match=r"augmentation 'smeared' gave back mask values \[.*\] besides 0, 1 and 255"
    ):
        _train_sample(tiny_config(augmentation="smeared", border="ignore"), 3, seed=1)


@pytest.mark.slow
def test_the_first_line_names_an_augmentation_of_your_own_only_where_it_augments(
    own_augmentation, tiny_config, capsys
):
    own_augmentation("mine", A.HorizontalFlip())
    fit(tiny_config(augmentation="mine", epochs=1, run_name="on"))
    assert ", augmentation mine, device" in capsys.readouterr().out
    fit(tiny_config(augmentation="mine", augment=False, epochs=1, run_name="off"))
    said = capsys.readouterr().out
    assert "parameters) on oxford-pet data" in said and "augmentation mine" not in said  # it trains without


def _as_floats(image: np.ndarray, **kwargs) -> np.ndarray:
    return image.astype(np.float32)


def test_an_augmentation_that_gives_back_floats_is_named_and_border_labels_pass(
    own_augmentation, tiny_config
):
    """An image given back as floats would be normalised as if it were uint8; the border label (255) that
    `border="ignore"` keeps is no smeared mask value."""
    own_augmentation("floats", A.Lambda(image=_as_floats))
    with pytest.raises(
        ValueError,
        match=r"augmentation 'floats' gave back an image of float32 \(32, 32, 3\), not uint8 \(H, W, 3\)",
    ):
        _train_sample(tiny_config(augmentation="floats"), 3, seed=1)
    own_augmentation("flipped", A.HorizontalFlip(p=1))
    mask = _train_sample(tiny_config(augmentation="flipped", border="ignore"), 3, seed=1)[1]
    assert set(np.unique(mask)) == {0, 1, 255}


def test_a_run_of_your_own_is_told_to_resume_where_it_can_register(own_augmentation, tiny_config):
    """The command line cannot register an augmentation: its `train --resume` was advised, and refused."""
    own_augmentation("mine", A.HorizontalFlip())

    def stop(end):
        raise KeyboardInterrupt

    with pytest.raises(TrainingInterrupted) as e:
        fit(tiny_config(augmentation="mine"), on_epoch=stop)
    assert "in a process that has registered augmentation 'mine' (the command line cannot)" in str(e.value)
    assert "train --resume" not in str(e.value)


# A notebook on macOS or Windows: its code lives in a __main__ with no file, and loader workers start by spawn.
NOTEBOOK = """
import json, multiprocessing, sys
import albumentations as A
from seglib.engine import TrainConfig, fit, register_augmentation
{define}

multiprocessing.set_start_method("spawn", force=True)
register_augmentation("brighter", A.Compose([A.Lambda(image=brighten), A.HorizontalFlip()]))
try:
    fit(TrainConfig(**json.loads(sys.argv[1])))
except ValueError as e:
    print(e)
"""
BRIGHTEN = "def brighten(image, **kwargs):\n    return (image // 2 + 64).astype(image.dtype)\n"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("define", "workers", "trains"),
    [
        (BRIGHTEN, 1, False),  # the worker cannot import the notebook's function
        (BRIGHTEN, 0, True),  # no worker, nothing to import
        ("from brighten import brighten", 1, True),  # a function of a .py file beside the notebook
    ],
)
def test_a_notebooks_own_function_in_spawned_workers_is_named_before_training(
    tmp_path: Path, synthetic_root: Path, define: str, workers: int, trains: bool
):
    """A spawned worker died at its start on `Can't get attribute 'brighten' on <module '__main__'>`, and
    the run said a worker was killed from outside, most often for want of memory."""
    (tmp_path / "brighten.py").write_text(BRIGHTEN)
    settings = {**TINY, "dataset": "synthetic", "data_root": str(synthetic_root), "epochs": 1}
    settings |= {"output_dir": str(tmp_path / "runs"), "augmentation": "brighter", "num_workers": workers}
    done = _python(tmp_path, "-c", NOTEBOOK.format(define=define), json.dumps(settings))
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "runs").exists() == trains, done.stdout[-3000:]
    if not trains:
        said = done.stdout.strip().splitlines()[-1]
        assert said.startswith(
            "num_workers=1: loader workers start by spawn here (as on macOS and Windows), and the data set "
            "holds `brighten`, defined in the notebook (its __main__), which worker processes cannot import."
        ), said
        assert "set num_workers=0" in said


# The same as a script run by `python train.py` or as a package run by `python -m pets`: spawned workers run
# its __main__ again, as __mp_main__ (so without what the main guard defines); a package's __main__ never.
SCRIPT = """
import json, multiprocessing, sys
import albumentations as A
from seglib.engine import TrainConfig, fit, register_augmentation
{top}
if __name__ == "__main__":
{guarded}
    multiprocessing.set_start_method("spawn", force=True)
    register_augmentation("brighter", A.Compose([A.Lambda(image=brighten), A.HorizontalFlip()]))
    try:
        fit(TrainConfig(**json.loads(sys.argv[-1])))
    except ValueError as e:
        print(e)
"""


@pytest.mark.slow
@pytest.mark.parametrize(
    ("how", "guarded", "refused"),
    [
        ("script", False, None),  # defined at the top: the worker's __mp_main__ has it
        ("script", True, 'defined under `if __name__ == "__main__":` in '),
        ("script", "both", None),  # at the top and again under the guard: the worker has the top's
        ("package", False, "defined in the program (its __main__), which worker processes cannot import"),
    ],
)
def test_a_scripts_function_that_spawned_workers_lack_is_named(
    tmp_path: Path, synthetic_root: Path, how: str, guarded: bool | str, refused: str | None
):
    indented = "".join(f"    {line}\n" for line in BRIGHTEN.splitlines())
    code = SCRIPT.format(top="" if guarded is True else BRIGHTEN, guarded=indented if guarded else "")
    if how == "script":
        (tmp_path / "train.py").write_text(code)
        args = ["train.py"]
    else:
        (tmp_path / "pets").mkdir()
        (tmp_path / "pets" / "__init__.py").write_text("")
        (tmp_path / "pets" / "__main__.py").write_text(code)
        args = ["-m", "pets"]
    settings = {**TINY, "dataset": "synthetic", "data_root": str(synthetic_root), "epochs": 1}
    settings |= {"output_dir": str(tmp_path / "runs"), "augmentation": "brighter", "num_workers": 1}
    done = _python(tmp_path, *args, json.dumps(settings))
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "runs").exists() == (refused is None), done.stdout[-3000:]
    if refused:
        assert refused in done.stdout.strip().splitlines()[-1] and "`brighten`" in done.stdout, done.stdout


def test_what_pickles_only_while_spawning_is_left_to_the_loader(synthetic_root: Path):
    """A data set holding a multiprocessing.Value (which pickles only while a process is spawned) was
    refused with a RuntimeError, though spawned workers load it."""
    from seglib.engine.spawning import check_workers_can_load

    ds = OxfordPetDataset(synthetic_root, "val", image_size=32, limit=4)
    ds.counter = multiprocessing.get_context("spawn").Value("i", 0)
    check_workers_can_load(ds, 1, "spawn")
    ds.counter = lambda: 0  # what no process can receive is named
    with pytest.raises(ValueError, match=r"what cannot be sent to worker processes \(Can't pickle"):
        check_workers_can_load(ds, 1, "spawn")
    check_workers_can_load(ds, 1, "fork")  # forked workers inherit it all: nothing to send, nothing refused


@pytest.mark.slow
@pytest.mark.parametrize("workers", [0, 2])
def test_the_spawn_check_leaves_the_start_method_unset(tmp_path: Path, synthetic_root: Path, workers: int):
    """The check asked for the start method, which fixed it: a user's set_start_method("spawn") after a
    loader made without workers raised "context has already been set"."""
    code = (
        "import multiprocessing, sys\n"
        "from seglib.data import OxfordPetDataset\n"
        "from seglib.engine.spawning import check_workers_can_load\n"
        "check_workers_can_load(OxfordPetDataset(sys.argv[1], 'val', limit=2), int(sys.argv[2]))\n"
        "multiprocessing.set_start_method('spawn')\n"
        "print(multiprocessing.get_start_method())\n"
    )
    done = _python(tmp_path, "-c", code, str(synthetic_root), str(workers))
    assert done.returncode == 0 and done.stdout.strip() == "spawn", done.stderr[-2000:]
