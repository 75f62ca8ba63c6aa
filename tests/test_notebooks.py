"""The six notebooks, executed top to bottom with papermill on the synthetic set (tiny profile)."""

import json

import nbformat
import pandas as pd
import papermill as pm
import pytest

from seglib.workbook import NOTEBOOKS, REPO, notebook_params, run_workbook

COMMON = {"data_root", "dataset", "profile", "results_dir"}


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_parameters_are_documented(name):
    params = pm.inspect_notebook(str(REPO / "notebooks" / name))
    assert set(params) >= COMMON
    assert all(p["help"] for p in params.values()), name  # papermill --help-notebook shows them
    assert params["profile"]["default"] == '"quick"'


def test_workbook_params_go_to_the_notebooks_that_have_them():
    extra = notebook_params(
        ["model_name=unet", "budgets=12", "seed=7", "keep_epoch_models=true"], ("06_recipe_study.ipynb",)
    )  # budgets is a str parameter: "12" stays a string
    assert extra == {
        "06_recipe_study.ipynb": {"model_name": "unet", "budgets": "12", "seed": 7, "keep_epoch_models": True}
    }
    assert set(notebook_params(["budgets=3"])) == {"06_recipe_study.ipynb"}  # only 06 has budgets
    assert notebook_params(["profile=tiny"], NOTEBOOKS[:2]) == {
        name: {"profile": "tiny"} for name in NOTEBOOKS[:2]
    }
    assert notebook_params([]) == {}
    with pytest.raises(
        ValueError, match=r"--param 'model_name': no notebook of \['01_data_exploration.ipynb'\]"
    ):
        notebook_params(["model_name=unet"], NOTEBOOKS[:1])
    with pytest.raises(ValueError, match=r"--param 'model_name' is not NAME=VALUE"):
        notebook_params(["model_name"])


@pytest.fixture(scope="module")
def workbook(synthetic_root, tmp_path_factory):
    """The whole workbook, tiny profile; the synthetic set of the session stands in for the demo set."""
    results = tmp_path_factory.mktemp("results")
    data_root = synthetic_root.parent / "oxford-iiit-pet"  # absent: "auto" takes ../synthetic-pets
    run_workbook("tiny", data_root=data_root, dataset="auto", results_dir=results)
    return results


@pytest.mark.slow
def test_every_notebook_ran_clean(workbook):
    for name in NOTEBOOKS:
        nb = nbformat.read(workbook / "notebooks" / name, as_version=4)
        outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
        assert not [o for o in outputs if o.output_type == "error"], name
        text = json.dumps([o.get("text", "") for o in outputs])
        assert "Traceback" not in text and "SYNTHETIC demo set" in text, name
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
        assert len(list((workbook / "evaluation" / model / "worst").glob("*.png"))) == 10
        assert len(list((workbook / "inference" / model).glob("*.png"))) == 5
    summary = pd.read_csv(workbook / "evaluation" / "summary.csv")
    assert set(summary.model) == {"unet", "resnet34_unet"} and summary.dice_mean.between(0, 1).all()
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
    final = pd.read_csv(workbook / "recipes" / "final.csv", index_col=0)
    assert list(final.index) == list(recipes) and (final.epochs == 2).all()
    assert (workbook / "recipes" / "dice_vs_minutes.png").is_file()
    assert not (workbook / "runs" / "recipe-original-tiny" / "epochs").exists()  # scored, then removed


@pytest.mark.slow
def test_a_failing_notebook_is_named_with_its_cell(synthetic_root, tmp_path):
    with pytest.raises(
        RuntimeError, match=r"01_data_exploration\.ipynb failed in cell \d+ .*ValueError: unknown profile"
    ):
        run_workbook(
            "tiny",
            data_root=synthetic_root.parent / "oxford-iiit-pet",
            results_dir=tmp_path,
            notebooks=("01_data_exploration.ipynb",),
            extra={"01_data_exploration.ipynb": {"profile": "fast"}},
        )
    assert (tmp_path / "notebooks" / "01_data_exploration.ipynb").is_file()
