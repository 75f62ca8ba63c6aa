"""A notebook's own parameters as papermill passes them: the value taken, or an error naming the parameter."""

import pytest

from seglib.params import choice, flag, name_list, probability, text, whole_number


def test_whole_numbers():
    assert whole_number("worst", 3, 1) == 3 and whole_number("worst", 3.0, 1) == 3  # papermill: -p worst 3.0
    for bad in (-1, 0, 2.5, "5", True, float("nan"), float("inf")):
        with pytest.raises(ValueError, match=rf"worst must be a whole number of at least 1, got {bad!r}"):
            whole_number("worst", bad, 1)
    with pytest.raises(
        ValueError,
        match=r"got '3' \(text: write epochs = 3 without quotes, or -p epochs 3 to papermill, not -r\)",
    ):
        whole_number("epochs", "3")  # papermill -r epochs 3


def test_probabilities():
    assert probability("threshold", 0.3) == 0.3
    assert probability("threshold", 0, zero_means="each run's own") == 0.0
    for bad in (0, 1, 1.5, -0.1, "abc", float("inf"), False):
        with pytest.raises(
            ValueError, match=r"threshold must be a number between 0 and 1 \(e\.g\. 0\.5\), got"
        ):
            probability("threshold", bad)
    with pytest.raises(ValueError, match=r"or 0 \(each run's own\), got 'abc'"):
        probability("threshold", "abc", zero_means="each run's own")


def test_flags_and_choices():
    assert flag("resume", True) is True and flag("resume", False) is False
    for bad in ("true", "false", 1, 0, "True"):  # papermill reads only True and False as booleans
        with pytest.raises(
            ValueError,
            match=r"resume must be True or False \(resume = True, or -p resume True to papermill\)",
        ):
            flag("resume", bad)
    assert choice("export_format", "pt2", ("onnx", "pt2")) == "pt2"
    with pytest.raises(ValueError, match=r"unknown export_format 'tflite'; choose one of \['onnx', 'pt2'\]"):
        choice("export_format", "tflite", ("onnx", "pt2"))


def test_texts_and_name_lists():
    """-p results_dir 2024 reached pathlib as a number, -p device None reached torch, "" wrote into the
    repository; -y "schedulers: [cosine, onecycle]" failed on list.split."""
    assert text("results_dir", "out") == "out"
    for bad in ("", "  ", 2024, None):
        with pytest.raises(ValueError, match=rf"results_dir must be text that is not empty .* got {bad!r}"):
            text("results_dir", bad)
    assert name_list("schedulers", ["cosine", "onecycle"]) == "cosine,onecycle"
    assert name_list("schedulers", "cosine,step") == "cosine,step" and name_list("recipes", "") == ""
    for bad in (None, 3, ["cosine", 3]):
        with pytest.raises(
            ValueError, match=r"schedulers must be comma-separated names \(e\.g\. -p schedulers a,b\)"
        ):
            name_list("schedulers", bad)
