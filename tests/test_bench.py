"""The benchmark runs (quick mode) and writes a complete JSON; its step worker keeps its protocol.
Timings are output, never asserted (only that they are positive)."""

import json
import subprocess
import sys

import pytest

from seglib.bench.run import main as bench_main
from seglib.bench.workers import StepWorker, StepWorkerError, run_rounds, step_workers
from seglib.engine.fastpath import FORMATS

EXPECTED = [
    "matmul",
    "train step unet",
    "train step resnet34_unet",
    "data path",
    "cache build",
    "whole epoch",
    "share of time waiting",
    "device data path (cache resident)",
    "device data path: share of time waiting",
    "evaluation",
    "test set cached",
]
TINY = {"model": "unet", "model_kwargs": {"base_channels": 4}, "size": 32, "batch": 2, "steps": 1}


@pytest.fixture(autouse=True)
def probe_cache(tmp_path, monkeypatch):
    """The memory-format probe caches into the test's own file (the workers inherit the variable)."""
    monkeypatch.setenv("SEGLIB_PROBE_CACHE", str(tmp_path / "fastpath.json"))


def _step_rows(rows: list[dict]) -> list[dict]:
    """The main row of each training step: not its achieved, candidate or memory rows."""
    extras = (" achieved", " candidate ", " memory", " cudnn.benchmark", " torch.compile")
    return [r for r in rows if r["what"].startswith("train step") and not any(e in r["what"] for e in extras)]


@pytest.mark.slow
def test_quick_benchmark_writes_complete_json(tmp_path):
    out = tmp_path / "bench.json"
    p = subprocess.run(
        [sys.executable, "-m", "seglib.bench", "--quick", "--reps", "1", "--json", str(out)],
        capture_output=True,
        text=True,
    )
    assert p.returncode == 0, p.stderr
    result = json.loads(out.read_text())
    assert {"machine", "torch", "device", "threads", "decoder", "rows", "choices"} <= set(result)
    assert f"loader workers started by {result['start_method']}" in p.stdout  # the reference's start so
    assert result["decoder"] == "torchcodec"  # installed with seglib
    whats = [r["what"] for r in result["rows"]]
    for key in EXPECTED:
        assert any(key in w for w in whats), key
    for r in result["rows"]:
        assert {"what", "unit", "reference", "seglib", "ratio"} <= set(r)
        assert r["seglib"] is not None and r["seglib"] > 0
    assert "| what | unit | reference | seglib |" in p.stdout
    if result["device"] == "cpu":
        _check_cpu_step_rows(result)


def _check_cpu_step_rows(result: dict) -> None:
    """Each CPU step row: candidates in both formats, a choice naming one, seglib = the chosen candidate."""
    rows = {r["what"]: r for r in result["rows"]}
    steps = _step_rows(result["rows"])
    assert len(steps) == 2
    for row in steps:
        what = row["what"]
        candidates = {w: r for w, r in rows.items() if w.startswith(f"{what} candidate ")}
        for fmt in FORMATS:
            assert any(w.startswith(f"{what} candidate {fmt} + ") for w in candidates), (what, fmt)
        for r in candidates.values():
            assert r["reference"] == row["reference"]  # against the original, in every candidate row
        choice = result["choices"][what]
        assert choice["format"] in FORMATS and choice["describe"]
        chosen = candidates[f"{what} candidate {choice['format']} + {choice['allocator']}"]
        assert (row["seglib"], row["seglib_min"], row["seglib_max"]) == (
            chosen["seglib"],
            chosen["seglib_min"],
            chosen["seglib_max"],
        )  # the chosen candidate's median (and spread) is seglib's figure
        assert f"{what} memory" in rows and f"{what} achieved" in rows
    epoch = next(w for w in rows if w.startswith("whole epoch"))
    assert result["choices"][epoch]["format"] in FORMATS


@pytest.mark.slow
def test_step_worker_times_each_format_and_quits():
    spec = {**TINY, "mode": "seglib", "formats": list(FORMATS), "choose": True}
    with StepWorker(spec) as worker:
        ready = worker.start()
        assert ready["formats"] == list(FORMATS) and ready["allocator"] in ("glibc", "jemalloc")
        assert ready["choice"]["format"] in FORMATS and ready["choice"]["source"] == "probe"
        answers = [worker.run(), worker.run()]
    assert worker.returncode == 0
    for answer in answers:
        assert set(answer["rates"]) == set(FORMATS) == set(answer["peak_mb"])
        assert all(v > 0 for v in answer["rates"].values())
        assert all(v > 0 for v in answer["peak_mb"].values())


@pytest.mark.slow
def test_step_workers_take_turns():
    configs = {
        "reference": ({**TINY, "mode": "reference"}, None),
        "seglib": ({**TINY, "mode": "seglib", "formats": ["nchw"]}, None),
    }
    with step_workers(configs) as workers:
        answers = run_rounds(workers, 2)
    assert {label: len(a) for label, a in answers.items()} == {"reference": 2, "seglib": 2}
    assert all(a["rates"]["nchw"] > 0 for runs in answers.values() for a in runs)
    assert all(w.returncode == 0 for w in workers.values())


@pytest.mark.slow
def test_step_worker_reports_a_bad_spec_clearly():
    with (
        pytest.raises(StepWorkerError, match="unknown model 'nope'") as err,
        StepWorker({**TINY, "model": "nope", "mode": "seglib"}) as worker,
    ):
        worker.start()
    assert "stderr ends" in str(err.value)
    assert worker.returncode not in (0, None)


@pytest.mark.slow
def test_step_worker_rejects_a_reference_in_channels_last():
    with (
        pytest.raises(StepWorkerError, match="NCHW only"),
        StepWorker({**TINY, "mode": "reference", "formats": ["channels_last"]}) as worker,
    ):
        worker.start()


@pytest.mark.slow
def test_only_runs_the_groups_asked_for(tmp_path):
    out = tmp_path / "bench.json"
    cmd = [sys.executable, "-m", "seglib.bench", "--quick", "--reps", "1", "--json", str(out), "--only"]
    p = subprocess.run([*cmd, "eval"], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    whats = [r["what"] for r in json.loads(out.read_text())["rows"]]
    assert any(w.startswith("evaluation ") for w in whats)
    assert not any(w.startswith(("train step", "data path", "whole epoch")) for w in whats)


def test_only_names_a_group_it_does_not_know(capsys):
    with pytest.raises(SystemExit) as e:  # before any measuring
        bench_main(["--quick", "--only", "eval,steps2"])
    assert e.value.code != 0 and "--only eval,steps2: unknown steps2" in capsys.readouterr().err


def test_the_oxford_sized_set_is_made_once_and_renamed_into_place(tmp_path, monkeypatch):
    from seglib.bench import datapath

    made = []
    real = datapath.make_oxford_sized

    def counted(*args, **kwargs):
        made.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(datapath, "make_oxford_sized", counted)
    first = datapath.oxford_sized_set(4, n_test=2, under=tmp_path)
    again = datapath.oxford_sized_set(4, n_test=2, under=tmp_path)
    other = datapath.oxford_sized_set(4, n_test=3, under=tmp_path)
    assert first == again != other and len(made) == 2
    assert [len(list((d / "images").glob("*.jpg"))) for d in (first, other)] == [6, 7]
    # renamed into place: no half-made folder is left beside the sets
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([first.name, other.name])
