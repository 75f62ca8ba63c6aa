"""The mask viewer in a real browser: JupyterLab + headless Chromium (Playwright), end to end.

A notebook builds a MaskViewer over a small synthetic set with a tiny model; Chromium opens it in
JupyterLab, runs all cells from the Run menu, then moves the sliders with the keyboard, as a user does,
and checks that the picture follows. Screenshots land in results/browser/.

Needs Debian's Chromium (/usr/bin/chromium) and the `playwright` package (the dev extra); without them
the test skips, except in CI (CI=true), where it fails. Never `playwright install`: it drives the
system Chromium.
"""

from __future__ import annotations

import base64
import contextlib
import importlib.util
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest

from seglib.data import make_synthetic_pets

pytestmark = [pytest.mark.browser, pytest.mark.slow]  # a JupyterLab server and a browser: a whole workflow

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
SHOTS = REPO / "results" / "browser"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SERVER_START_S = 90  # JupyterLab answering on its port
KERNEL_S = 90  # kernel start, and all cells run (imports torch)
UI_S = 30_000  # ms, one step in the page
STDERR = '[data-mime-type="application/vnd.jupyter.stderr"]'
WIDGET_ERRORS = ("Error displaying widget", "model not found")
PROJECT_CONFIG = REPO / ".jupyter"  # what `make lab` starts with: quiet (no news pop-up), root allowed
LAB_CONFIG = {"LabApp": {"extension_manager": "readonly"}}  # the test's own: no extension listings
NEWS_QUESTION = "official Jupyter news"  # the pop-up a new user must not get

NOTEBOOK = '''\
import torch
from torch import nn

from seglib.data import OxfordPetDataset
from seglib.viewer import MaskViewer


class Ramp(nn.Module):
    """Logits rising from left to right: the predicted mask moves with the threshold."""

    def forward(self, x):
        w = x.shape[-1]
        return torch.linspace(-4, 4, w).expand(x.shape[0], 1, x.shape[-2], w).contiguous()


ds = OxfordPetDataset({root!r}, "test", image_size=64, limit=6)
viewer = MaskViewer(ds, model=Ramp(), image_size=64, max_side=320)
'''


def _require(ok: bool, reason: str) -> None:
    """Skip when something the test needs is missing; in CI (CI=true) fail instead: CI must run it."""
    if ok:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: the browser test must run in CI)", pytrace=False)
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Lab:
    url: str
    token: str
    root: Path
    log: Path

    def tail(self, n: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-n:] if self.log.exists() else ""


def _isolated_jupyter_env(base: Path) -> dict[str, str]:
    """Config, data and runtime dirs of our own (a new user's), plus the project's .jupyter/ as `make lab`
    has it; the venv's share/jupyter (lab extensions, kernels) stays on the path through sys.prefix,
    which Jupyter always searches."""
    env = dict(os.environ)
    for name in ("config", "data", "runtime"):
        (base / name).mkdir(parents=True)
        env[f"JUPYTER_{name.upper()}_DIR"] = str(base / name)
    env.pop("JUPYTER_PATH", None)
    env["JUPYTER_CONFIG_PATH"] = str(PROJECT_CONFIG)  # no news, no update checks: from the project
    env["IPYTHONDIR"] = str(base / "ipython")
    (base / "config" / "jupyter_server_config.json").write_text(json.dumps(LAB_CONFIG))
    tracker = base / "config" / "lab" / "user-settings" / "@jupyterlab" / "notebook-extension"
    tracker.mkdir(parents=True)  # no "Select Kernel" dialog
    (tracker / "tracker.jupyterlab-settings").write_text(json.dumps({"autoStartDefaultKernel": True}))
    return env


def _stop(proc: subprocess.Popen) -> None:
    """Terminate the server (it shuts its kernels down); kill it, and any kernel it left, if need be."""
    try:
        import psutil  # ipykernel's dependency

        children = psutil.Process(proc.pid).children(recursive=True) if proc.poll() is None else []
    except (ImportError, OSError):
        children = []
    if proc.poll() is None:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=15)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # the server's own process group
    for child in children:  # kernels run in sessions of their own
        with contextlib.suppress(Exception):
            child.kill()
    if proc.poll() is None:
        proc.wait(timeout=10)


@pytest.fixture
def browser_tools() -> None:
    """Chromium and Playwright are there (checked before any server starts)."""
    _require(CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK), f"no Chromium at {CHROMIUM}")
    _require(
        importlib.util.find_spec("playwright") is not None,
        "the playwright package is missing (pip install -e '.[dev]')",
    )


@pytest.fixture
def lab(browser_tools: None, tmp_path: Path) -> Iterator[Lab]:
    """JupyterLab from this venv on 127.0.0.1, a free port, a random token; always shut down."""
    root = tmp_path / "root"
    root.mkdir()
    env = _isolated_jupyter_env(tmp_path / "jupyter")
    port, token = _free_port(), secrets.token_hex(24)
    log = tmp_path / "jupyterlab.log"
    cmd = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        "--ip=127.0.0.1",
        f"--port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}",
        "--ServerApp.open_browser=False",
    ]  # root allowed by the project's config (CI runs as root)
    url = f"http://127.0.0.1:{port}"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        lab = Lab(url, token, root, log)
        deadline = time.monotonic() + SERVER_START_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"JupyterLab exited with {proc.returncode}:\n{lab.tail()}", pytrace=False)
            try:
                with urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"JupyterLab did not answer in {SERVER_START_S} s:\n{lab.tail()}", pytrace=False)
            time.sleep(0.5)
        yield lab
    finally:
        _stop(proc)


def _write_notebook(path: Path, data_root: Path) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3 (ipykernel)",
        "language": "python",
    }
    nb.cells = [
        nbformat.v4.new_code_cell(NOTEBOOK.format(root=str(data_root))),
        nbformat.v4.new_code_cell("viewer.widget"),
        nbformat.v4.new_code_cell('print("viewer ready")'),
    ]
    nbformat.write(nb, path)


def _kernel_state(lab: Lab, notebook: str) -> str | None:
    """The execution state of the notebook's kernel, from the server's REST API (None: no kernel)."""
    with urllib.request.urlopen(f"{lab.url}/api/sessions?token={lab.token}", timeout=10) as r:
        sessions = json.load(r)
    states = [
        s["kernel"]["execution_state"] for s in sessions if s.get("path") == notebook and s.get("kernel")
    ]
    return states[0] if states else None


def _wait_kernel_idle(page, lab: Lab, notebook: str, timeout_s: float) -> None:
    """Wait for the notebook's kernel to be up and idle; accept a "Select Kernel" dialog as a user would."""
    deadline = time.monotonic() + timeout_s
    while True:
        accept = page.locator(".jp-Dialog .jp-Dialog-button.jp-mod-accept")
        if accept.count() and accept.first.is_visible():
            accept.first.click()
        ui = page.locator(".jp-Notebook-ExecutionIndicator").first.get_attribute("data-status")
        if _kernel_state(lab, notebook) == "idle" and ui == "idle":
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"the kernel of {notebook} was not idle in {timeout_s} s (UI: {ui})")
        time.sleep(0.5)


def _wait_all_ran(page, n_cells: int, timeout_s: float) -> None:
    """Every code cell shows an execution count ([1]:, not [*]: or [ ]:) and the kernel is idle."""
    page.wait_for_function(
        """(n) => {
            const prompts = [...document.querySelectorAll('.jp-CodeCell .jp-InputArea-prompt')];
            const ran = prompts.filter(p => /\\[\\d+\\]/.test(p.textContent));
            const s = document.querySelector('.jp-Notebook-ExecutionIndicator');
            return ran.length === n && s !== null && s.dataset.status === 'idle';
        }""",
        arg=n_cells,
        timeout=timeout_s * 1000,
    )


def _outputs_text(page) -> str:
    return "\n".join(page.locator(".jp-OutputArea-output").all_inner_texts())


def _shown_png(image) -> bytes:
    """The bytes the <img> shows (its blob: or data: src, fetched in the page)."""
    url = image.evaluate(
        """async img => {
            const blob = await (await fetch(img.src)).blob();
            return await new Promise(done => {
                const reader = new FileReader();
                reader.onload = () => done(reader.result);
                reader.readAsDataURL(blob);
            });
        }"""
    )
    return base64.b64decode(url.split(",", 1)[1])


def _png_once_changed(image, before: bytes, timeout_s: float = 20) -> bytes:
    """What the <img> shows once it differs from `before` (or the last picture after the timeout)."""
    deadline = time.monotonic() + timeout_s
    while True:
        now = _shown_png(image)
        if now != before or time.monotonic() > deadline:
            return now
        time.sleep(0.25)


def _press(page, slider, key: str, times: int) -> None:
    handle = slider.locator(".noUi-handle")
    handle.focus()
    for _ in range(times):
        handle.press(key)
        time.sleep(0.1)


def test_mask_viewer_in_jupyterlab_with_chromium(lab: Lab, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    started = time.monotonic()
    SHOTS.mkdir(parents=True, exist_ok=True)
    for old in SHOTS.glob("*.png"):
        old.unlink()
    data_root = make_synthetic_pets(lab.root / "pets", n_trainval=2, n_test=6, seed=0)
    _write_notebook(lab.root / "viewer.ipynb", data_root)

    console: list[str] = []
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),  # fresh and empty
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_FLAGS,
            viewport={"width": 1400, "height": 1100},
        )
        try:
            page = context.pages[0] if context.pages else context.new_page()
            page.set_default_timeout(UI_S)
            page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
            page.on("console", lambda m: m.type == "error" and console.append(f"console: {m.text}"))
            try:
                _drive(page, lab, expect)
            except BaseException:
                page.screenshot(path=str(SHOTS / "failure.png"))
                counts = {m: console.count(m) for m in dict.fromkeys(console)}
                print("browser console errors:\n" + "\n".join(f"{n} x {m}" for m, n in counts.items()))
                print("JupyterLab log (tail):\n" + lab.tail())
                raise
        finally:
            context.close()
    print(f"browser test took {time.monotonic() - started:.1f} s; screenshots in {SHOTS}")


def _drive(page, lab: Lab, expect) -> None:
    page.goto(f"{lab.url}/lab/tree/viewer.ipynb?token={lab.token}", wait_until="domcontentloaded")
    expect(page.locator(".jp-Notebook .jp-CodeCell").first).to_be_visible(timeout=60_000)
    _wait_kernel_idle(page, lab, "viewer.ipynb", KERNEL_S)  # the kernel has started
    assert page.get_by_text(NEWS_QUESTION).count() == 0, "JupyterLab asked about Jupyter news"

    # Run > Run All Cells, from the menu bar.
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
    page.locator(".lm-Menu .lm-Menu-itemLabel:visible", has_text=re.compile(r"^Run All Cells$")).click()
    _wait_all_ran(page, 3, KERNEL_S)
    _wait_kernel_idle(page, lab, "viewer.ipynb", KERNEL_S)
    page.screenshot(path=str(SHOTS / "01-after-run-all.png"))

    # (1) The viewer is there: sliders, buttons, the image; no widget error.
    text = _outputs_text(page)
    for bad in WIDGET_ERRORS:
        assert bad not in text, f"{bad!r} in the outputs: the widget frontend failed:\n{text[:2000]}"
    out = page.locator(".jp-OutputArea-output")
    sliders = out.locator(".widget-hslider")
    assert sliders.count() > 0, (
        "no widget sliders rendered (is the jupyterlab_widgets lab extension missing?); "
        f"the outputs show:\n{text[:2000]}"
    )
    index = out.locator(".widget-hslider", has=page.locator(".widget-label", has_text="index"))
    threshold = out.locator(".widget-hslider", has=page.locator(".widget-label", has_text="threshold"))
    expect(index).to_be_visible()
    expect(threshold).to_be_visible()
    expect(index.locator(".noUi-handle")).to_be_visible()
    expect(out.locator("button", has_text="next")).to_be_visible()
    expect(out.locator("button", has_text="previous")).to_be_visible()
    image = out.locator("img.widget-image")
    expect(image).to_be_visible()
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image.element_handle())
    status = out.locator(".widget-html")
    expect(status).to_contain_text("1/6")
    first = _shown_png(image)
    (SHOTS / "02-image-first.png").write_bytes(first)

    # (2) The index slider, moved with the keyboard, changes the picture.
    _press(page, index, "ArrowRight", 2)
    expect(status).to_contain_text("3/6")
    third = _png_once_changed(image, first)
    (SHOTS / "03-image-index-2.png").write_bytes(third)
    assert third != first, "moving the index slider did not change the displayed image"

    # (3) The threshold slider changes the picture (the ramp model's mask moves).
    expect(status).to_contain_text("threshold 0.50")
    _press(page, threshold, "ArrowRight", 4)
    expect(status).to_contain_text("threshold 0.70")
    higher = _png_once_changed(image, third)
    (SHOTS / "04-image-threshold-0.70.png").write_bytes(higher)
    assert higher != third, "moving the threshold slider did not change the displayed image"
    index.scroll_into_view_if_needed()
    page.screenshot(path=str(SHOTS / "05-after-sliders.png"))

    # (4) No news pop-up (the project's settings), no traceback, no error output anywhere in the notebook.
    assert page.get_by_text(NEWS_QUESTION).count() == 0, "JupyterLab asked about Jupyter news"
    _wait_kernel_idle(page, lab, "viewer.ipynb", KERNEL_S)
    errors = page.locator(f".jp-OutputArea-output{STDERR}, .jp-RenderedText{STDERR}").all_inner_texts()
    assert not [e for e in errors if "Traceback" in e], "\n".join(errors)
    text = _outputs_text(page)
    assert "Traceback" not in text, text[:4000]
    for bad in WIDGET_ERRORS:
        assert bad not in text, text[:4000]
    expect(out.filter(has_text="viewer ready")).to_have_count(1)
