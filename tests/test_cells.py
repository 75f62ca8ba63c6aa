"""What a cell run in JupyterLab shows: progress bars and a stopped training, in a real Jupyter kernel sent
cells as JupyterLab sends them (with stdin), their outputs rebuilt as JupyterLab's output area keeps
them."""

import json
import os
from pathlib import Path

import pytest
from conftest import tiny_train_config
from jupyter_client.manager import start_new_kernel

REPO = Path(__file__).resolve().parents[1]
WIDGET = "application/vnd.jupyter.widget-view+json"


@pytest.fixture(scope="module")
def kernel():
    env = {k: v for k, v in os.environ.items() if k != "SEGLIB_PROGRESS"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    km, kc = start_new_kernel(kernel_name="python3", env=env, cwd=str(REPO))
    try:
        yield kc
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def run_cell(kc, code: str, errors: bool = False) -> list[dict]:
    """`code` run as JupyterLab runs a cell; the cell's outputs as its output area holds them: a stream
    joins the stream output before it of the same name, a display update replaces that display's data.
    An error output fails the test unless `errors`."""
    msg_id = kc.execute(code, allow_stdin=True)
    outputs: list[dict] = []
    while True:
        msg = kc.get_iopub_msg(timeout=60)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        kind, content = msg["msg_type"], msg["content"]
        if kind == "status" and content["execution_state"] == "idle":
            return outputs
        if kind == "stream":
            last = outputs[-1] if outputs else {}
            if last.get("type") == "stream" and last["name"] == content["name"]:
                last["text"] += content["text"]
            else:
                outputs.append({"type": "stream", "name": content["name"], "text": content["text"]})
        elif kind == "display_data":
            display_id = content.get("transient", {}).get("display_id")
            outputs.append({"type": "display", "id": display_id, "data": content["data"]})
        elif kind == "update_display_data":
            display_id = content["transient"]["display_id"]
            for out in outputs:
                if out.get("id") == display_id:
                    out["data"] = content["data"]
        elif kind == "error":
            assert errors, f"{content['ename']}: {content['evalue']}"
            outputs.append({"type": "error", **content})


def test_a_trainings_bars_take_turns_in_one_display_of_the_cell(kernel):
    """A training in JupyterLab added two widget bars an epoch to its cell: past 50 outputs JupyterLab
    showed no new ones (the later epochs and a Ctrl-C's message went unseen), and each closed bar came back
    as "Error displaying widget: model not found"."""
    outputs = run_cell(
        kernel,
        "from seglib.engine.progress import progress_bar\n"
        "for epoch in range(30):\n"
        "    for _ in progress_bar(range(4), desc=f'epoch {epoch} train', leave=False): pass\n"
        "    for _ in progress_bar(range(2), desc=f'epoch {epoch} val', leave=False): pass\n"
        "    print(f'epoch {epoch} done')\n"
        "for _ in progress_bar(range(3), desc='evaluate'): pass\n",
    )
    displays = [out for out in outputs if out["type"] == "display"]
    assert [out["type"] for out in outputs] == ["display", "stream"], outputs
    assert outputs[1]["text"] == "".join(f"epoch {e} done\n" for e in range(30))
    assert not any(WIDGET in out["data"] for out in displays)
    final = displays[0]["data"]  # the cell's last bar, left in place (leave=True)
    assert "evaluate" in final["text/plain"] and "3/3" in final["text/plain"]
    assert '<progress value="3" max="3"' in final["text/html"]


def test_nested_bars_take_a_display_each_and_a_bar_stopped_short_keeps_its_state(kernel):
    outputs = run_cell(
        kernel,
        "from seglib.engine.progress import progress_bar\n"
        "for run in progress_bar(range(2), desc='runs'):\n"
        "    for _ in progress_bar(range(3), desc=f'run {run}', leave=False): pass\n"
        "bar = progress_bar(range(10), desc='stopped', leave=False)\n"
        "for i in bar:\n"
        "    if i == 4:\n"
        "        break\n"
        "bar.close()\n",
    )
    runs, inner = (out["data"]["text/plain"] for out in outputs)
    assert len(outputs) == 2 and "runs" in runs and "2/2" in runs
    # the inner bars' display, cleared at their close, then drawn into by the bar stopped at 4 of 10
    assert "stopped" in inner and "4/10" in inner


def test_a_bar_stopped_short_keeps_its_display_and_a_reused_one_is_taken(kernel):
    """A bar stopped short (leave=False) stays as it stopped: the next bar draws below it. A display freed
    by a closed bar and taken again is busy: a bar nested in the one that took it draws in another."""
    outputs = run_cell(
        kernel,
        "from seglib.engine.progress import progress_bar\n"
        "bar = progress_bar(range(10), desc='stopped', leave=False)\n"
        "for i in bar:\n"
        "    if i == 4:\n"
        "        break\n"
        "bar.close()\n"
        "for _ in progress_bar(range(2), desc='after', leave=False): pass\n",
    )
    assert len(outputs) == 2, outputs
    assert "stopped" in outputs[0]["data"]["text/plain"] and "4/10" in outputs[0]["data"]["text/plain"]
    outputs = run_cell(
        kernel,
        "for _ in progress_bar(range(2), desc='first', leave=False): pass\n"
        "for run in progress_bar(range(2), desc='outer'):\n"
        "    for _ in progress_bar(range(3), desc=f'inner {run}', leave=False): pass\n",
    )
    assert len(outputs) == 2, outputs  # the first bar's display, taken by the outer; the inner bars' own
    assert "outer" in outputs[0]["data"]["text/plain"] and "2/2" in outputs[0]["data"]["text/plain"]


def test_a_new_cell_draws_in_displays_of_its_own(kernel):
    first = run_cell(
        kernel, "from seglib.engine.progress import progress_bar\nlist(progress_bar(range(2), desc='a'))"
    )
    second = run_cell(kernel, "list(progress_bar(range(2), desc='b'))")
    assert "a: " in first[0]["data"]["text/plain"] and "b: " in second[0]["data"]["text/plain"]


def test_a_stopped_training_says_its_message_and_the_notebooks_way_on_without_a_traceback(kernel):
    """The stop button in 02 showed a traceback of about 40 lines ending in advice for Python and the
    command line, not the notebook's own resume parameter."""
    outputs = run_cell(
        kernel,
        "from seglib.engine import TrainingInterrupted\n"
        "from seglib.workspace import say_interrupts_briefly\n"
        "say_interrupts_briefly('02_train_unet')\n"
        "def fit():\n"
        "    raise TrainingInterrupted('training stopped in epoch 3; r/last.pt holds everything up to there')\n"
        "fit()\n",
        errors=True,
    )
    (error,) = outputs
    assert error["ename"] == "TrainingInterrupted" and error["evalue"] == (
        "training stopped in epoch 3; r/last.pt holds everything up to there. In this notebook: set "
        "resume = True in the parameters cell and run the notebook again."
    )
    # the message alone, and IPython's line on %tb (the full traceback, where someone wants it)
    assert len(error["traceback"]) == 2 and "%tb" in error["traceback"][0]
    assert "fit()" not in "".join(error["traceback"])
    tb = run_cell(kernel, "%tb", errors=True)  # the traceback, where someone wants it
    assert any("fit()" in line for line in tb[0]["traceback"])
    other = run_cell(kernel, "say_interrupts_briefly('04_evaluation')\nfit()\n", errors=True)
    assert other[0]["evalue"] == "training stopped in epoch 3; r/last.pt holds everything up to there."
    unsaved = run_cell(
        kernel,
        "say_interrupts_briefly('02_train_unet')\n"
        "e = TrainingInterrupted('training stopped before it saved where it stood')\n"
        "e.saved = False\n"
        "raise e\n",
        errors=True,
    )  # nothing to resume: no advice to resume
    assert unsaved[0]["evalue"] == "training stopped before it saved where it stood."


def test_a_training_stopped_in_a_cell_keeps_its_bar_at_the_steps_done(kernel, synthetic_root, tmp_path):
    """The bar left after a stop showed a step fewer than the message ("2/4" beside "after step 3 of 4"):
    tqdm counts a step only when the loop asks for the next."""
    cfg = tiny_train_config(synthetic_root, tmp_path, progress=True)
    outputs = run_cell(
        kernel,
        "import json, os, signal\n"
        "from seglib.engine import TrainConfig, fit\n"
        "from seglib.engine.losses import build_loss\n"
        "from seglib.workspace import say_interrupts_briefly\n"
        "say_interrupts_briefly('02_train_unet')\n"
        "bce, calls = build_loss('bce'), []\n"
        "def stop_at_step_2(logits, target):  # the stop button, pressed in step 2 of 3\n"
        "    calls.append(1)\n"
        "    if len(calls) == 2:\n"
        "        os.kill(os.getpid(), signal.SIGINT)\n"
        "    return bce(logits, target)\n"
        f"fit(TrainConfig.from_dict(json.loads({json.dumps(json.dumps(cfg.to_dict()))})), loss_fn=stop_at_step_2)\n",
        errors=True,
    )
    first_line, bar, error = outputs
    assert first_line["type"] == "stream" and bar["type"] == "display" and error["type"] == "error"
    assert "after step 2 of 3" in error["evalue"] and "set resume = True" in error["evalue"]
    assert "2/3" in bar["data"]["text/plain"], bar["data"]["text/plain"]


def test_each_training_of_a_cell_shows_its_bar_above_its_own_lines(kernel):
    """Notebook 05 trains five models in one cell: their bar stayed above the first one's lines."""
    outputs = run_cell(
        kernel,
        "from seglib.engine.progress import progress_bar, start_new_displays\n"
        "for run in range(2):\n"
        "    start_new_displays()  # as fit() does\n"
        "    print(f'run {run}')\n"
        "    for epoch in range(3):\n"
        "        for _ in progress_bar(range(2), desc=f'run {run} epoch {epoch}', leave=False): pass\n"
        "        print(f'epoch {epoch}')\n"
        "    for _ in progress_bar(range(1), desc=f'run {run} done'): pass\n",
    )
    assert [out["type"] for out in outputs] == ["stream", "display", "stream", "display", "stream"]
    assert outputs[2]["text"].startswith("epoch 0") and outputs[2]["text"].endswith("run 1\n")
    assert (
        "run 0 done" in outputs[1]["data"]["text/plain"] and "run 1 done" in outputs[3]["data"]["text/plain"]
    )
