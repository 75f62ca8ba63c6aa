"""A notebook's own parameters as papermill passes them: the value taken, or an error naming the parameter."""

import pytest

from seglib.params import choice, flag, probability, whole_number


def test_whole_numbers():
    assert whole_number("worst", 3, 1) == 3 and whole_number("worst", 3.0, 1) == 3  # papermill: -p worst 3.0
    for bad in (-1, 0, 2.5, "5", True, float("nan"), float("inf")):
        with pytest.raises(ValueError, match=rf"worst must be a whole number of at least 1, got {bad!r}"):
            whole_number("worst", bad, 1)


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
        with pytest.raises(ValueError, match=r"resume must be True or False \(papermill: -p resume True\)"):
            flag("resume", bad)
    assert choice("export_format", "pt2", ("onnx", "pt2")) == "pt2"
    with pytest.raises(ValueError, match=r"unknown export_format 'tflite'; choose one of \['onnx', 'pt2'\]"):
        choice("export_format", "tflite", ("onnx", "pt2"))
