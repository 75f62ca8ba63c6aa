"""The six notebooks, executed top to bottom with papermill on the synthetic set (tiny profile)."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import papermill as pm
import pytest
import torch

from seglib.data import (
    FolderDataset,
    OxfordPetDataset,
    make_synthetic_folder,
    make_synthetic_pets,
    resolve_data_root,
    seeded_split,
)
from seglib.engine import TrainConfig
from seglib.study import recipe_run_name
from seglib.workbook import (
    FOLDER_NOTEBOOKS,
    NOTEBOOKS,
    execute_notebook,
    folder_params,
    main,
    notebook_params,
    run_notebook,
    run_workbook,
    select_notebooks,
)
from seglib.workspace import REPO, project_path, start

COMMON = {"data_root", "dataset", "profile", "results_dir", "device"}


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_parameters_are_documented(name):
    params = pm.inspect_notebook(str(REPO / "notebooks" / name))
    assert set(params) >= COMMON
    cell = next(
        c
        for c in json.loads((REPO / "notebooks" / name).read_text())["cells"]
        if "parameters" in c["metadata"].get("tags", [])
    )
    declared = [
        line.split(":")[0] for line in "".join(cell["source"]).splitlines() if re.match(r"\w+: ", line)
    ]
    assert list(params) == declared, name  # papermill drops a line it cannot parse ("=" in its comment)
    assert all(p["help"] for p in params.values()), name  # papermill --help-notebook shows them
    assert params["profile"]["default"] == '"quick"'
    assert params["device"]["default"] == '"auto"'  # the GPU when there is one


def test_the_lists_written_by_hand_name_every_model_and_scheduler():
    """The help of --model and --scheduler (TrainConfig's comments) and the notebooks' parameter comments
    list the names by hand: a model or scheduler added to MODELS or SCHEDULERS must join them there."""
    from seglib.cli.options import train_options
    from seglib.engine import SCHEDULERS
    from seglib.models import MODELS

    options = train_options()
    helps = {
        f"--{key}": (options[key].kwargs["help"], names)
        for key, names in (("model", MODELS), ("scheduler", SCHEDULERS))
    }
    for name in NOTEBOOKS:
        params = pm.inspect_notebook(str(REPO / "notebooks" / name))
        for key, names in (("model_name", MODELS), ("scheduler", SCHEDULERS)):
            if key in params:
                helps[f"{name}: {key}"] = (params[key]["help"], names)
    assert len(helps) == 2 + 5 + 2  # model_name in 02, 03, 05, 06, 07; scheduler in 02, 03
    for where, (text, names) in helps.items():
        missing = set(names) - set(re.findall(r'"(\w+)"', text))
        assert not missing, f"{where} does not name {sorted(missing)}: {text}"


def test_no_notebook_plot_or_viewer_call_pins_the_cpu():
    """Every model call of the notebooks takes the notebook's `device`; the faces default to "auto"."""
    pinned = re.compile(r"""device\s*[:=][^=\n]*["']cpu["']""")
    for name in NOTEBOOKS:
        cells = json.loads((REPO / "notebooks" / name).read_text())["cells"]
        code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
        assert not pinned.search(code), name
    faces = [REPO / "seglib" / f for f in ("plots.py", "viewer.py")]
    for face in faces + sorted((REPO / "seglib" / "study").glob("*.py")):
        assert not pinned.search(face.read_text()), face


def test_start_takes_the_device(tmp_path, synthetic_root, capsys):
    from seglib.engine.runtime import native_bf16

    ws = start("test", str(synthetic_root), "oxford-pet", "tiny", str(tmp_path), device="cpu")
    assert ws.device == "cpu" and ws.config("unet").device == "cpu"
    # the first line names the CPU's kind: what a timed budget buys depends on it
    kind = "with" if native_bf16(torch.device("cpu")) else "without"
    assert ws.machine.endswith(f"({kind} native bf16))")
    assert f"device {ws.machine}; results" in capsys.readouterr().out
    assert (
        start("test", str(synthetic_root), "oxford-pet", "tiny", str(tmp_path)).config("unet").device
        == "auto"
    )
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            start("test", str(synthetic_root), "oxford-pet", "tiny", str(tmp_path), device="cuda")


def test_workbook_params_go_to_the_notebooks_that_have_them():
    extra = notebook_params(
        ["model_name=unet", "budgets=12", "seed=7", "keep_epoch_models=true"], ("06_recipe_study.ipynb",)
    )  # budgets is a str parameter: "12" stays a string
    assert extra == {
        "06_recipe_study.ipynb": {"model_name": "unet", "budgets": "12", "seed": 7, "keep_epoch_models": True}
    }
    assert set(notebook_params(["budgets=3"])) == {"06_recipe_study.ipynb"}  # only 06 has budgets
    # numbers as papermill's -p reads them (JSON took .5 for text: "threshold must be a number, got '.5'")
    numbers = notebook_params(
        ["threshold=.5", "lr=2.", "seed=None", "epochs=1_000"],
        ("04_evaluation.ipynb", "05_scheduler_comparison.ipynb"),
    )
    assert numbers == {
        "04_evaluation.ipynb": {"threshold": 0.5},
        "05_scheduler_comparison.ipynb": {"lr": 2.0, "seed": None, "epochs": 1000},  # papermill: int 1000
    }
    for own in ("profile=tiny", "results_dir=elsewhere", "data_root=x", "dataset=synthetic"):
        # the runner's own options: as --param they reached the notebooks only (results_dir: the runs went
        # to one folder, the executed notebooks to another)
        key = own.split("=")[0]
        with pytest.raises(
            ValueError, match=f"--param '{key}' is the runner's own option: pass it as --{key}"
        ):
            notebook_params(["seed=1", own], NOTEBOOKS[:2])
    assert notebook_params([]) == {}
    with pytest.raises(
        ValueError, match=r"--param 'model_name': no notebook of \['01_data_exploration.ipynb'\]"
    ) as e:
        notebook_params(["model_name=unet"], NOTEBOOKS[:1])
    # the list it offers holds only names --param takes; the runner's own are named as options
    offered = str(e.value).split("their parameters: ")[1]
    assert (
        "'device'" in offered and "'profile'" not in offered and "(and the runner's own --profile" in offered
    )
    with pytest.raises(ValueError, match=r"--param 'model_name' is not NAME=VALUE"):
        notebook_params(["model_name"])
    # to 02 and 03 both, each trained a ResNet34-UNet, and 04 compared older runs of the UNet
    with pytest.raises(
        ValueError,
        match=r"--param model_name=resnet34_unet would reach 02_train_unet.ipynb and 03_train_resnet34_unet.ipynb, "
        r"which train one model each for 04 to compare: give --only",
    ):
        notebook_params(["model_name=resnet34_unet"])
    assert notebook_params(["model_name=unet"], NOTEBOOKS[1:2]) == {NOTEBOOKS[1]: {"model_name": "unet"}}


def test_only_takes_names_without_ipynb_and_numbers(tmp_path):
    names = ["02_train_unet.ipynb", "02_train_unet", "02", "07_your_own_data", "03"]
    assert select_notebooks(names) == (
        "02_train_unet.ipynb",
        "07_your_own_data.ipynb",
        "03_train_resnet34_unet.ipynb",
    )
    with pytest.raises(
        ValueError, match=r"no notebook '2', 'unet' in the workbook; choose from 01_data_exploration"
    ):
        select_notebooks(["2", "unet", "01"])


def test_an_unknown_only_name_stops_the_runner_before_any_notebook_runs(tmp_path):
    results = tmp_path / "results"
    with pytest.raises(SystemExit) as stop:  # 02 first: it must not train before nonsense is found
        main(
            [
                "--only",
                "02_train_unet.ipynb",
                "nonsense.ipynb",
                "--profile",
                "tiny",
                "--results_dir",
                str(results),
            ]
        )
    said = str(stop.value.code)
    assert said.startswith("workbook: error: no notebook 'nonsense.ipynb' in the workbook; choose from ")
    assert "\n" not in said and all(name in said for name in NOTEBOOKS)  # one line, the valid names
    assert not results.exists()  # nothing ran, nothing was written
    with pytest.raises(SystemExit) as stop:  # an empty --only (a glob that matched nothing) is no "all"
        main(["--only", "--profile", "tiny", "--results_dir", str(results)])
    assert stop.value.code == 2 and not results.exists()
    typo = tmp_path / "oxford-iit-pet"  # a mistyped --data_root: "auto" would train on a demo set beside it
    with pytest.raises(SystemExit, match=rf"--data_root {typo} does not exist; give the data's folder"):
        main(["--data_root", str(typo), "--only", "02", "--profile", "tiny", "--results_dir", str(results)])
    assert not results.exists() and not (tmp_path / "synthetic-pets").exists()
    nested = tmp_path / "nested"  # it exists, but its data set is one folder further down
    (nested / "my_data" / "images").mkdir(parents=True)
    with pytest.raises(
        SystemExit, match=rf"data_root {nested} holds no data set: .* or give dataset='synthetic'"
    ):
        main(["--data_root", str(nested), "--only", "01", "--profile", "tiny", "--results_dir", str(results)])
    assert not results.exists() and not (tmp_path / "synthetic-pets").exists()


def test_a_synthetic_data_root_not_made_yet_is_no_typo_to_the_runner(tmp_path):
    """--dataset synthetic makes its set where it is told: a --data_root not there yet is taken, and the
    runner goes on (here to the unknown --only name, before any notebook runs)."""
    results = tmp_path / "results"
    args = ["--data_root", str(tmp_path / "new" / "synthetic-pets"), "--dataset", "synthetic"]
    with pytest.raises(SystemExit) as stop:
        main([*args, "--only", "nonsense", "--profile", "tiny", "--results_dir", str(results)])
    assert str(stop.value.code).startswith("workbook: error: no notebook 'nonsense' in the workbook")
    assert not results.exists()


def test_synthetic_takes_the_set_at_data_root_else_the_demo_set_beside_it(tmp_path, capsys):
    mine = make_synthetic_pets(tmp_path / "mine", n_trainval=8, n_test=4)
    ws = start("t", str(mine), "synthetic", "tiny", str(tmp_path / "r"), "cpu")
    assert capsys.readouterr().out.startswith(f"t: a SYNTHETIC set at {mine};")  # the user's, not the demo
    cfg = ws.config("unet")
    assert (ws.kind, ws.root) == ("synthetic", mine)
    assert resolve_data_root(cfg.data_root, cfg.dataset, cfg.synthetic_root) == (
        mine,
        "synthetic",
    )  # runs too
    assert not (tmp_path / "synthetic-pets").exists()  # no demo set made beside it
    # No set at data_root (the default data/oxford-iiit-pet without the real data), or the real data's
    # folder: the demo set beside it, as before.
    demo = make_synthetic_pets(tmp_path / "data" / "synthetic-pets", n_trainval=8, n_test=4)
    real = tmp_path / "data" / "oxford-iiit-pet"
    assert start("t", str(real), "synthetic", "tiny", str(tmp_path / "r"), "cpu").root == demo
    assert capsys.readouterr().out.startswith(f"t: the SYNTHETIC demo set at {demo};")
    make_synthetic_pets(real, n_trainval=8, n_test=4)  # stands in for the real data
    ws = start("t", str(real), "synthetic", "tiny", str(tmp_path / "r"), "cpu")
    cfg = ws.config("unet")
    assert ws.root == demo and resolve_data_root(cfg.data_root, cfg.dataset, cfg.synthetic_root)[0] == demo
    assert start("t", str(real), "auto", "tiny", str(tmp_path / "r"), "cpu").kind == "oxford-pet"


def test_start_takes_a_folder_and_its_settings(tmp_path):
    root = make_synthetic_folder(tmp_path / "mine", n=12, seed=0)
    ws = start("t", str(root), "folder", "tiny", str(tmp_path / "r"), "cpu", mask_values="255", split_seed=3)
    cfg = ws.config("unet")
    assert ws.kind == "folder" and (cfg.dataset, cfg.mask_values, cfg.split_seed) == ("folder", "255", 3)
    assert ws.data_split("test").names == FolderDataset(root, "test", mask_values="255", split_seed=3).names
    with pytest.raises(ValueError, match=r"mask_values='#12': cannot read '#12'"):
        start("t", str(root), "folder", "tiny", str(tmp_path / "r"), "cpu", mask_values="#12")
    assert folder_params(root, "folder") == {} and folder_params(root, "auto") == {}  # the folder given
    demo = folder_params(tmp_path / "data" / "oxford-iiit-pet", "auto")  # none given: the demo, made once
    assert demo == {"data_root": str(tmp_path / "data" / "folder-demo"), "dataset": "folder"}
    assert len(FolderDataset(demo["data_root"], "trainval")) == 43  # 48 pairs, 5 held out for testing


def test_a_run_is_scored_on_its_split_read_as_it_read_it(tmp_path, synthetic_root):
    # notebook 04 read every run's test split with the default border and the notebook's folder split
    ws = start("t", str(synthetic_root), "oxford-pet", "tiny", str(tmp_path / "r"), "cpu")
    ignored = ws.run_split({"config": {"border": "ignore"}}, "test", image_size=32, return_full_mask=True)
    want = OxfordPetDataset(synthetic_root, "test", image_size=32, border="ignore", return_full_mask=True)
    assert np.array_equal(ignored[0]["mask_full"], want[0]["mask_full"])
    assert not np.array_equal(
        ignored[0]["mask_full"], ws.data_split("test", return_full_mask=True)[0]["mask_full"]
    )
    root = make_synthetic_folder(tmp_path / "mine", n=12, seed=0)
    run = {"config": {"split_seed": 3, "mask_values": "255", "test_fraction": 0.25}}
    ws = start("t", str(root), "folder", "tiny", str(tmp_path / "r"), "cpu")
    want = FolderDataset(root, "test", mask_values="255", split_seed=3, test_fraction=0.25)
    assert ws.run_split(run, "test").names == want.names != ws.data_split("test").names
    ws = start("t", str(root), "folder", "tiny", str(tmp_path / "r"), "cpu", mask_values=">127")
    assert ws.run_split(run, "test").rule == FolderDataset(root, "test", mask_values=">127").rule  # given


def test_start_checks_the_folder_settings_as_papermill_passes_them(tmp_path):
    root = make_synthetic_folder(tmp_path / "mine", n=12, seed=0)
    args = ("t", str(root), "folder", "tiny", str(tmp_path / "r"), "cpu")
    with pytest.raises(
        ValueError, match=r"val_fraction must be a number in \[0, 1\) \(e\.g\. 0\.1\), got 'abc'"
    ):
        start(*args, val_fraction="abc")
    with pytest.raises(ValueError, match=r'on_corrupt must be "raise" or "skip", got \'ignore\''):
        start(*args, on_corrupt="ignore")
    ws = start(*args, on_corrupt="skip")
    assert ws.config("unet").on_corrupt == "skip" and ws.data_split("test").on_corrupt == "skip"
    # -p split_seed None drew another split at each reading: 07 scored "test" images the run trained on
    assert (
        start(*args, split_seed=3.0).folder["split_seed"] == 3
    )  # papermill -p split_seed 3.0: numpy took no float
    for seed, shown in (
        (None, "None"),
        ("abc", "'abc'"),
        (-1, "-1"),
        ("3", r"'3' \(text: write split_seed = 3 without quotes"),
    ):
        with pytest.raises(
            ValueError, match=rf"split_seed must be a whole number of at least 0, got {shown}"
        ):
            start(*args, split_seed=seed)


@pytest.mark.parametrize(
    ("i", "value", "message"),
    [
        (
            1,
            "",
            r'data_root must be text that is not empty \(data_root = "VALUE", or -r data_root VALUE to papermill\), got '
            "",
        ),
        (4, 2024, r"results_dir must be text .* got 2024"),  # papermill -p results_dir 2024: a number
        (4, None, r"results_dir must be text .* got None"),
        (5, None, r"device must be text .* got None"),
        (2, "pets", r"unknown dataset 'pets'; choose one of"),
        (
            1,
            "{typo}/oxford-iiit-pet",
            r"data_root .*typo/oxford-iiit-pet does not exist; give the data's folder",
        ),
        (1, "{here}/oxford-iit-pet", r"data_root .*/oxford-iit-pet does not exist"),
    ],
)
def test_start_refuses_common_parameters_papermill_passed_wrong(tmp_path, i, value, message):
    """An empty results_dir wrote into the repository, -p results_dir 2024 failed in pathlib, and a mistyped
    data_root made a demo set there (in folders it created) and trained on it."""
    if isinstance(value, str):
        value = value.format(typo=tmp_path / "typo", here=tmp_path)
    args = ["t", str(tmp_path / "oxford-iiit-pet"), "auto", "tiny", str(tmp_path / "r"), "cpu"]
    args[i] = value
    with pytest.raises(ValueError, match=message):
        start(*args)
    assert not (tmp_path / "typo").exists() and not (tmp_path / "synthetic-pets").exists()


@pytest.mark.slow
def test_a_run_is_a_folder_with_a_best_pt_and_its_data_is_checked(tmp_path, synthetic_root):
    (tmp_path / "empty").mkdir()
    ws = start("t", str(tmp_path / "empty" / "oxford-iiit-pet"), "auto", "tiny", str(tmp_path / "r"), "cpu")
    assert ws.kind == "synthetic"  # no data where the real data would be: the demo set beside it
    run = tmp_path / "r" / "runs" / "unet-tiny"
    run.mkdir(parents=True)
    with pytest.raises(ValueError, match=rf"unet_run='{run}': {run} holds no best\.pt; give a run folder"):
        ws.run_folder(str(run), "unet-tiny", "unet_run")
    (run / "best.pt").write_bytes(b"")
    assert ws.run_folder(str(run), "unet-tiny", "unet_run") == run == ws.run_folder("", "unet-tiny")
    # the newest run may be one stopped early (a second 02 interrupted): 04 says how far it got
    TrainConfig(epochs=30).save(run / "config.json")
    pd.DataFrame({"epoch": [1]}).to_csv(run / "history.csv", index=False)
    assert ws.describe_run(run).startswith(f"{run} (STOPPED at epoch 1 of 30: its best.pt is from those")
    pd.DataFrame({"epoch": range(1, 31)}).to_csv(run / "history.csv", index=False)
    assert ws.describe_run(run) == f"{run} (30 epochs)"
    # a UNet run given for the ResNet34-UNet: 04's tables called it resnet34_unet
    assert ws.run_folder(str(run), "unet-tiny", "unet_run", model="unet") == run
    with pytest.raises(
        ValueError,
        match=rf"resnet_run='{run}': its run trained a unet .* give a resnet34_unet run \(the unet run to the notebook's parameter for unet runs.*"
        rf"--model_path {run}/best.pt` scores it\)",
    ):
        ws.run_folder(str(run), "resnet34_unet-tiny", "resnet_run", model="resnet34_unet")
    with pytest.raises(
        ValueError, match=rf"unet_run='.*best\.pt' is a file; give the run folder that holds it \({run}\)"
    ):
        ws.run_folder(str(run / "best.pt"), "unet-tiny", "unet_run")
    for number in (7, None):  # papermill -p unet_run 7: a TypeError in pathlib
        with pytest.raises(
            ValueError, match=rf'unet_run must be a run folder, or "" for the newest run, got {number}'
        ):
            ws.run_folder(number, "unet-tiny", "unet_run")
    # A run that trained on the real data, scored on the demo set only because data_root holds none: refused.
    real = {"data": "oxford-pet", "data_root": "/data/oxford-iiit-pet"}
    with pytest.raises(
        ValueError,
        match=r"unet_run: its run trained on oxford-pet data at /data/oxford-iiit-pet, but data_root=.*empty/oxford-iiit-pet holds no data",
    ):
        ws.check_run_data(real, "unet_run")
    assert ws.check_run_data({"data": "synthetic", "data_root": str(ws.root)}) == ""  # its own data
    assert ws.check_run_data({}) == ""  # older checkpoints do not say
    chosen = start("t", str(synthetic_root), "synthetic", "tiny", str(tmp_path / "r"), "cpu")  # on purpose
    assert chosen.check_run_data(real, "unet_run").startswith("unet_run: its run trained on oxford-pet data")


def test_a_run_stopped_by_its_patience_or_of_other_data_or_of_no_saved_model_is_described(
    tmp_path, synthetic_root
):
    ws = start("t", str(synthetic_root), "synthetic", "tiny", str(tmp_path / "r"), "cpu")
    run = tmp_path / "r" / "runs" / "unet-tiny"
    run.mkdir(parents=True)
    (run / "best.pt").write_bytes(b"")
    # no config.json: which model it trained is unknown, so it is not refused for either
    assert ws.run_folder(str(run), "resnet34_unet-tiny", "resnet_run", model="resnet34_unet") == run
    # patience 2 stopped it 2 epochs after its best (epoch 1): ended, not STOPPED halfway
    TrainConfig(epochs=30, patience=2).save(run / "config.json")
    pd.DataFrame({"epoch": [1, 2, 3], "val_dice": [0.5, 0.4, 0.3]}).to_csv(run / "history.csv", index=False)
    assert ws.describe_run(run) == f"{run} (3 of 30 epochs: stopped by its patience, 2)"
    # data of the same kind in another folder: said, not passed over as the notebook's own
    other = str(tmp_path / "elsewhere" / "synthetic-pets")
    assert ws.check_run_data({"data": "synthetic", "data_root": other}, "unet_run") == (
        f"unet_run: its run trained on synthetic data at {other}; scored here on synthetic data at {ws.root}"
    )


@pytest.fixture(scope="module")
def workbook(synthetic_root, tmp_path_factory):
    """The whole workbook, tiny profile, with its device set; the synthetic set of the session stands in
    for the demo set."""
    results = tmp_path_factory.mktemp("results")
    data_root = synthetic_root.parent / "oxford-iiit-pet"  # absent: "auto" takes ../synthetic-pets
    extra = {name: {"device": "cpu"} for name in NOTEBOOKS}  # the CPU in CI; the same path as a GPU's
    extra["04_evaluation.ipynb"] |= {"tta_scales": "1.5", "worst": 3, "inference_figures": 2}  # TTA runs too
    extra["07_your_own_data.ipynb"]["threshold"] = 0.3  # carried to the run, the export and its check
    before = dict(os.environ)
    run_workbook("tiny", data_root=data_root, dataset="auto", results_dir=results, extra=extra)
    assert dict(os.environ) == before  # the kernels' settings (text bars, jemalloc) stayed theirs
    return results


@pytest.mark.slow
def test_every_notebook_ran_clean(workbook):
    for name in NOTEBOOKS:
        nb = nbformat.read(workbook / "notebooks" / name, as_version=4)
        outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
        assert not [o for o in outputs if o.output_type == "error"], name
        text = json.dumps([o.get("text", "") for o in outputs])
        data = "the folder data set" if name in FOLDER_NOTEBOOKS else "SYNTHETIC demo set"
        assert "Traceback" not in text and data in text, name
        assert any(c.metadata.get("tags") == ["injected-parameters"] for c in nb.cells), name


@pytest.mark.slow
def test_workbook_artifacts_hold_sane_values(workbook, synthetic_root):
    facts = pd.read_csv(workbook / "exploration" / "per_image_facts.csv")
    assert len(facts) == 220 and facts.fg_fraction.between(0, 1).all()
    for model in ("unet", "resnet34_unet"):
        run = workbook / "runs" / f"{model}-tiny"
        assert (run / "best.pt").is_file() and (run / "history.png").is_file()
        per_image = pd.read_csv(workbook / "evaluation" / model / "per_image.csv")
        assert len(per_image) == 20 and per_image.name.is_unique  # one row per test image
        assert per_image[["dice", "iou", "dice_model"]].apply(lambda c: c.between(0, 1)).all().all()
        assert len(list((workbook / "evaluation" / model / "worst").glob("*.png"))) == 3  # as asked
        assert len(list((workbook / "inference" / model).glob("*.png"))) == 2
    summary = pd.read_csv(workbook / "evaluation" / "summary.csv")
    assert set(summary.model) == {"unet", "resnet34_unet"} and summary.dice_mean.between(0, 1).all()
    assert (summary.dice_low <= summary.dice_mean).all() and (summary.dice_mean <= summary.dice_high).all()
    executed = nbformat.read(workbook / "notebooks" / "04_evaluation.ipynb", as_version=4)
    said = json.dumps([o.get("data", {}) for c in executed.cells if c.cell_type == "code" for o in c.outputs])
    assert (
        "unet minus resnet34_unet, mean Dice" in said
    )  # the two models on the same images, with an interval
    assert re.search(
        r"It compares these two runs \(resnet34_unet \d+ px, \d+ epochs on \d+ training images; unet \d+ px",
        said,
    )
    by_breed = pd.read_csv(workbook / "evaluation" / "dice_by_breed.csv")
    assert by_breed.images.sum() == 20  # each test image counted once, not once per model
    assert "test images). On the synthetic set each image's breed and species are drawn at random" in said
    assert said.count("at model resolution (threshold 0.5, scored in ") == 2  # each run's own: tiny's 0.5
    assert set(summary.threshold) == {0.5} and summary.precision.nunique() == 1  # as the CLI's summary.csv
    assert (set(summary.tta), set(summary.split)) == ({"scales 1.5"}, {"test"})  # tta_scales, given
    assert all(
        c.endswith(f"/{m}-tiny/best.pt") for m, c in zip(summary.model, summary.checkpoint, strict=True)
    )
    timing = pd.read_csv(workbook / "evaluation" / "timing.csv", index_col="model")
    assert timing.device.to_dict() == {"unet": "cpu", "resnet34_unet": "cpu"}  # the models' parameters
    assert (timing.images == 20).all() and (timing.seconds > 0).all()
    schedulers = pd.read_csv(workbook / "schedulers" / "summary.csv", index_col=0)
    assert list(schedulers.index) == ["none", "cosine", "onecycle", "step", "multistep"]
    assert schedulers["best val Dice"].between(0, 1).all()
    assert (workbook / "schedulers" / "lr_curves.png").is_file()
    curves = pd.read_csv(workbook / "recipes" / "dice_vs_minutes.csv")
    recipes = {"original": [1, 2], "recommended+tta=true": [1, 2]}  # tiny's study: an item with a change
    assert curves.groupby("recipe").epoch.apply(list).to_dict() == recipes
    assert curves.groupby("recipe").train_minutes.apply(lambda m: m.is_monotonic_increasing).all()
    assert curves[["dice", "val_dice", "dice_dataset"]].apply(lambda c: c.between(0, 1)).all().all()
    assert curves.groupby("recipe").tta.first().to_dict() == {"original": False, "recommended+tta=true": True}
    paired = pd.read_csv(workbook / "recipes" / "paired_at_budgets.csv")  # image by image, per budget
    assert paired.recipe.tolist() == ["recommended+tta=true"] and (paired.against == "original").all()
    assert (
        (paired.low <= paired.gap).all()
        and (paired.gap <= paired.high).all()
        and set(paired.images) == set(curves.test_images)
    )
    final = pd.read_csv(workbook / "recipes" / "final.csv", index_col=0)
    assert list(final.index) == list(recipes) and (final.epochs == 2).all()
    assert (workbook / "recipes" / "dice_vs_minutes.png").is_file()
    run = workbook / "runs" / recipe_run_name("original", None, "resnet34_unet", 42, "tiny")
    assert (run / "dice_vs_minutes.csv").is_file() and not (run / "epochs").exists()  # scored, then removed
    assert (workbook / "recipes" / "resnet34_unet-s42" / "final.csv").is_file()  # its own tables, kept


@pytest.mark.slow
def test_the_folder_notebook_trains_evaluates_predicts_exports_and_checks(workbook, synthetic_root):
    demo = synthetic_root.parent / "folder-demo"  # made by the runner beside the data root
    split = seeded_split(sorted(p.stem for p in (demo / "images").iterdir()), 0.1, 0.1, seed=0)
    run = workbook / "runs" / "folder-unet-tiny"
    assert (run / "best.pt").is_file()
    for name, names in split.items():  # the run keeps the split it used
        assert (run / "splits" / f"{name}.txt").read_text().split() == names
    out = workbook / "your-data"
    per_image = pd.read_csv(out / "per_image.csv")
    assert list(per_image.name) == split["test"] and per_image.dice.between(0, 1).all()
    predictions = pd.read_csv(out / "predictions" / "predictions.csv")
    assert list(predictions.name) == split["test"] and predictions.dice.between(0, 1).all()
    assert all((out / "predictions" / f"{n}_mask.png").is_file() for n in split["test"])
    check = pd.read_csv(out / "export_check.csv", index_col=0).iloc[:, 0]
    assert check["max_abs_diff"] <= 1e-4 and check["dice_exported"] == pytest.approx(check["dice_torch"])
    assert (out / "model.onnx").is_file()
    # The notebook's threshold throughout: the run validated at it, the file carries it, and onnxruntime's
    # mask cut at it agrees with seglib's (cut at 0.5's logit, 0, it did not).
    assert TrainConfig.load(run / "config.json").threshold == 0.3
    executed = nbformat.read(workbook / "notebooks" / "07_your_own_data.ipynb", as_version=4)
    said = json.dumps([o.get("data", {}) for c in executed.cells if c.cell_type == "code" for o in c.outputs])
    agree = re.search(r"onnxruntime and seglib agree on ([0-9.]+)% of the pixels", said)
    assert agree and float(agree.group(1)) >= 99.9, agree


@pytest.mark.slow
@pytest.mark.parametrize(
    "name, param, error",
    [
        ("01_data_exploration.ipynb", {"profile": "fast"}, "ValueError: unknown profile"),
        # a notebook's own parameter, checked before any work (nothing scored)
        ("04_evaluation.ipynb", {"worst": -1}, "ValueError: worst must be a whole number of at least 1"),
        ("04_evaluation.ipynb", {"tta_scales": "abc"}, "ValueError: tta_scales='abc': give numbers"),
    ],
)
def test_a_failing_notebook_is_named_with_its_cell(synthetic_root, tmp_path, capfd, name, param, error):
    earlier = tmp_path / "notebooks" / "05_scheduler_comparison.ipynb"  # an earlier run's executed copy
    earlier.parent.mkdir()
    earlier.write_text("{}")
    with pytest.raises(RuntimeError, match=rf"{re.escape(name)} failed in cell \d+ .*{error}"):
        run_workbook(
            "tiny",
            data_root=synthetic_root.parent / "oxford-iiit-pet",
            results_dir=tmp_path,
            notebooks=(name, earlier.name),
            extra={name: param},
        )
    assert (tmp_path / "notebooks" / name).is_file() and not (tmp_path / "evaluation").exists()
    said = capfd.readouterr()  # the kernel's own log reaches this process's stderr
    assert f"running {name} (tiny) into {tmp_path / 'notebooks' / name}" in said.out
    assert (
        f"not run this time, their copies in {earlier.parent} are an earlier run's: {earlier.name}"
        in said.out
    )
    assert "without encryption" not in said.err + said.out


@pytest.mark.slow
@pytest.mark.parametrize(
    "name, param, error",
    [
        # named as the notebook's parameters (TrainConfig said "positive integer", though 0 is the profile's,
        # and "unknown model"), and checked before the demo set is made
        ("02_train_unet.ipynb", {"epochs": -3}, "epochs must be a whole number of at least 0, got -3"),
        ("05_scheduler_comparison.ipynb", {"model_name": "foo"}, "unknown model_name 'foo'; choose one of"),
        ("06_recipe_study.ipynb", {"epochs": 1.5}, "epochs must be a whole number of at least 0, got 1.5"),
    ],
)
def test_a_training_notebook_checks_its_settings_before_it_makes_data(tmp_path, name, param, error):
    data_root = tmp_path / "data" / "oxford-iiit-pet"  # absent: "auto" would make the demo set beside it
    with pytest.raises(RuntimeError, match=rf"{name} failed in cell \d+ .*ValueError: {re.escape(error)}"):
        run_workbook(
            "tiny", data_root, results_dir=tmp_path / "results", notebooks=(name,), extra={name: param}
        )
    assert not (tmp_path / "data").exists()


WARNS = """
import warnings
warnings.warn("a warning the user should see")
print("ran")
"""

# A kernel that a busy machine keeps from finishing a request after its reply went out: papermill shuts
# it down on the reply to its last request (kernel_info), while ipykernel still takes SIGINT.
STALLS = """
import time
kernel = get_ipython().kernel
answer = kernel.shell_handlers["kernel_info_request"]
async def answer_then_stall(*args):
    await answer(*args)
    time.sleep(0.5)
kernel.shell_handlers["kernel_info_request"] = answer_then_stall
"""


@pytest.mark.slow
def test_notebook_07_resumes_its_run_instead_of_training_another(workbook, synthetic_root, tmp_path):
    """07 had no resume parameter: run again after a stop, it trained a new run (NAME-2) from the start."""
    name = "07_your_own_data.ipynb"
    results = tmp_path / "results"  # a copy of the run the workbook's 07 trained, on the demo it made
    run = shutil.copytree(workbook / "runs" / "folder-unet-tiny", results / "runs" / "folder-unet-tiny")
    threshold = TrainConfig.load(run / "config.json").threshold  # the workbook's, as 07 runs it again
    extra = {name: {"device": "cpu", "resume": True, "threshold": threshold}}
    run_workbook(
        "tiny", synthetic_root.parent / "oxford-iiit-pet", "auto", results, notebooks=(name,), extra=extra
    )
    assert sorted(p.name for p in (results / "runs").iterdir()) == ["folder-unet-tiny"]
    executed = nbformat.read(results / "notebooks" / name, as_version=4)
    said = "".join(o.get("text", "") for c in executed.cells if c.cell_type == "code" for o in c.outputs)
    assert re.search(r"folder-unet-tiny has finished its \d+ epochs?: nothing to resume", said), said[-2000:]


@pytest.mark.slow
def test_a_kernel_killed_mid_cell_is_named_with_the_notebook_the_cell_and_the_copy(tmp_path):
    """The out-of-memory killer's SIGKILL: nbclient's DeadKernelError alone named no notebook or cell."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    kill = "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)"
    nb.cells = [
        nbformat.v4.new_code_cell("x = 1"),
        nbformat.v4.new_code_cell(kill),
        nbformat.v4.new_code_cell(""),
    ]
    nbformat.write(nb, tmp_path / "dies.ipynb")
    with pytest.raises(RuntimeError) as e:
        run_notebook(tmp_path / "dies.ipynb", tmp_path / "out.ipynb", {})
    assert str(e.value).startswith("dies.ipynb: its kernel died in cell 1, killed from outside")
    assert f"the executed copy up to there is {tmp_path / 'out.ipynb'}" in str(e.value)
    assert "--param resume=True" in str(e.value)


@pytest.mark.slow
def test_workbook_kernels_are_quiet_but_warnings_stay_visible(tmp_path, capfd):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(WARNS), nbformat.v4.new_code_cell(STALLS)]
    here = tmp_path / "runs {x} {profile}"  # papermill formats paths with the parameters: braces stay braces
    here.mkdir()
    nbformat.write(nb, here / "warns.ipynb")
    execute_notebook(here / "warns.ipynb", here / "out.ipynb", {})
    said = capfd.readouterr()
    assert "Kernel is running over TCP without encryption" not in said.err + said.out
    # a notebook that ran clean ends without an interrupt: no "ERROR | KeyboardInterrupt caught in kernel."
    assert "ERROR" not in said.err + said.out and "KeyboardInterrupt" not in said.err + said.out
    outputs = nbformat.read(here / "out.ipynb", as_version=4).cells[0].outputs
    assert any(o.get("name") == "stderr" and "a warning the user should see" in o.text for o in outputs)
    assert any(o.get("name") == "stdout" and o.text == "ran\n" for o in outputs)


def test_relative_paths_are_taken_from_the_repository_whatever_the_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert project_path("data/oxford-iiit-pet") == REPO / "data" / "oxford-iiit-pet"
    assert project_path("results/../results/runs/unet-quick") == REPO / "results" / "runs" / "unet-quick"
    assert project_path(tmp_path / "elsewhere") == tmp_path / "elsewhere"  # absolute: as given


@pytest.fixture
def checkout(tmp_path, synthetic_root):
    """A copy of the repository's code and notebooks, with the session's synthetic set as its demo data;
    its kernels import seglib from it (PYTHONPATH), so its "repository" is the copy."""
    repo = tmp_path / "work" / "repo"
    for part in ("seglib", "notebooks"):
        shutil.copytree(
            REPO / part, repo / part, ignore=shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints")
        )
    shutil.copytree(synthetic_root, repo / "data" / "synthetic-pets")
    return repo


@pytest.mark.slow
def test_papermill_by_hand_uses_the_repositorys_folders_from_any_folder(checkout):
    """The README's example, from the repository root and from an unrelated folder; its progress bars
    text, not widgets (whose text an executed copy keeps at 0%), without the runner's SEGLIB_PROGRESS."""
    papermill = Path(sys.executable).with_name("papermill")
    elsewhere = checkout.parent / "elsewhere" / "deeper"
    elsewhere.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if k != "SEGLIB_PROGRESS"} | {"PYTHONPATH": str(checkout)}
    runs = [
        (checkout, "notebooks/02_train_unet.ipynb"),
        (elsewhere, str(checkout / "notebooks" / "02_train_unet.ipynb")),
    ]
    for cwd, notebook in runs:
        subprocess.run(
            [str(papermill), notebook, "out.ipynb", "-p", "profile", "tiny"],
            cwd=cwd,
            env=env,
            check=True,
            timeout=600,
        )
        nb = nbformat.read(cwd / "out.ipynb", as_version=4)
        outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
        assert not [o for o in outputs if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
        start_cell = next(c for c in nb.cells if "ws = start(" in c.source)
        first = start_cell.outputs[0]["text"].splitlines()[0]
        assert first.startswith("02_train_unet: the SYNTHETIC demo set"), first
        assert f"at {checkout / 'data' / 'synthetic-pets'};" in first and first.endswith(
            f"results in {checkout / 'results'}"
        )
    assert sorted(p.name for p in (checkout / "results" / "runs").iterdir()) == ["unet-tiny", "unet-tiny-2"]
    assert sorted(p.name for p in checkout.parent.iterdir()) == [
        "elsewhere",
        "repo",
    ]  # nothing beside the repo
    assert [p.name for p in elsewhere.iterdir()] == ["out.ipynb"] and not (elsewhere.parent / "data").exists()


ENDING = """
import gc, sys, types
from seglib.kernels import end_kernel_quickly
def a_function():  # the user namespace in a cycle with its functions, as in any notebook
    pass
log = open(folder + "/global.txt", "w")
log.write("kept" * 1000)
class Holder:
    pass
h = Holder()
h.me = h  # a file held only by a reference cycle of the notebook's
h.file = open(folder + "/cycle.txt", "w")
h.file.write("kept" * 1000)
lib = types.ModuleType("a_library")  # a library's objects in cycles, with a finalizer
sys.modules["a_library"] = lib
exec(  # the finalizer binds what it needs: at exit the module's globals may be gone
    "class C:\\n    def __del__(self, touch=open):\\n        touch(self.mark, 'w').close()\\n",
    lib.__dict__,
)
for name in ("collected_now", "left_at_exit"):
    c = lib.C()
    c.me, c.mark = c, f"{folder}/{name}.txt"
    setattr(lib, name, c)
del lib.collected_now, c, lib
gc.collect()  # the control: this cycle's finalizer writes its mark when the collector finds it
end_kernel_quickly()
"""


@pytest.mark.slow
def test_a_kernel_ends_quickly_and_loses_nothing(tmp_path, capfd):
    """The quick ending finalizes the notebook's objects (cycles too) and leaves the libraries' to the
    OS. (Python's own exit is no reference to compare with: where it outlasts half of jupyter_client's
    shutdown_wait_time the kernel is terminated, and a file held by a cycle lost its buffer in 2 of 25
    such runs here.)"""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell('folder = ""', metadata={"tags": ["parameters"]})]
    nb.cells.append(nbformat.v4.new_code_cell(ENDING))
    nbformat.write(nb, tmp_path / "ending.ipynb")
    execute_notebook(tmp_path / "ending.ipynb", tmp_path / "out.ipynb", {"folder": str(tmp_path)})
    # the kernel has exited: the notebook's open files were flushed and closed, the cycle's too
    assert (tmp_path / "global.txt").read_text() == "kept" * 1000
    assert (tmp_path / "cycle.txt").read_text() == "kept" * 1000
    # a library's cycle: its finalizer writes when collected (the control), but not at the quick exit
    assert (tmp_path / "collected_now.txt").exists()
    assert not (tmp_path / "left_at_exit.txt").exists()
    said = capfd.readouterr()
    assert "Exception ignored" not in said.err and "Traceback" not in said.err
