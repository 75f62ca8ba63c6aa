"""The project's own rules: the lock file pins the dev install, environment.yml agrees with pyproject.toml,
and the layers import downwards."""

import ast
import graphlib
import importlib.metadata
import json
import re
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
PKG = REPO / "seglib"


def _lock() -> dict[str, str]:
    """requirements-dev.lock as {canonical name: version}; every line an exact pin."""
    pins = {}
    for line in (REPO / "requirements-dev.lock").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, version = line.partition("==")
        assert sep and re.fullmatch(r"[\w.+!-]+", version), (
            f"requirements-dev.lock: not an exact pin: {line!r}"
        )
        pins[canonicalize_name(name)] = version
    return pins


def _project_requirements(*extras: str) -> list[Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    optional = project["optional-dependencies"]
    return [Requirement(r) for r in project["dependencies"] + [r for e in extras for r in optional[e]]]


def test_the_lock_pins_every_requirement_of_the_dev_install():
    pins = _lock()
    for req in _project_requirements("dev"):
        name = canonicalize_name(req.name)
        assert name in pins, (
            f"{req.name} is in pyproject.toml but not in requirements-dev.lock: run make lock"
        )
        assert req.specifier.contains(pins[name], prereleases=True), f"{req} but the lock has {pins[name]}"
    assert pins["torch"] == "2.14.1" and pins["torchvision"] == "0.29.1"


def test_the_lock_holds_every_dependency_and_is_what_the_tests_run_on():
    """Closed under the dependencies of what it pins, and installed as it says (`make` installs it)."""
    pins = _lock()
    for name, version in pins.items():
        assert importlib.metadata.version(name) == version, (
            f"{name} {importlib.metadata.version(name)} is installed, the lock has {version}: run make"
        )
        for text in importlib.metadata.requires(name) or []:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                dep = canonicalize_name(req.name)  # pip is the venv's own: it installs the rest
                assert dep in pins or dep == "pip", (
                    f"{name} needs {req.name}, which the lock lacks: make lock"
                )


def test_make_installs_from_the_lock():
    make = (REPO / "Makefile").read_text()
    assert "LOCK   := requirements-dev.lock" in make
    assert re.search(r"^\$\(STAMP\): pyproject.toml \$\(LOCK\)$", make, re.M)
    assert "$(PY) -m pip install -r $(LOCK) -e '.[dev]'" in make
    assert "pip-compile --extra dev" in make  # make lock refreshes it


def test_onnx_is_an_optional_extra_not_a_core_dependency():
    onnx = {"onnx", "onnxruntime", "onnxscript"}
    assert not onnx & {r.name for r in _project_requirements()}
    assert onnx <= {r.name for r in _project_requirements("export")}
    assert onnx <= {r.name for r in _project_requirements("dev")}


def test_environment_yml_lists_the_same_packages_as_pyproject():
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    assert "python=3.11" in env["dependencies"]
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert sorted(p for p in pip if not p.startswith("-e")) == sorted(deps)
    assert "torch==2.14.1" in deps and "torchvision==0.29.1" in deps


def _imports(path: Path) -> set[str]:
    """Absolute module names imported by a file (relative imports resolved inside seglib)."""
    tree = ast.parse(path.read_text())
    pkg = ".".join(path.relative_to(REPO).with_suffix("").parts[:-1])
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
                out |= {mod} | {f"{mod}.{a.name}" for a in node.names}
            else:
                out.add(node.module)
    return out


def _layer(sub: str) -> set[str]:
    files = [PKG / f"{sub}.py"] if (PKG / f"{sub}.py").exists() else sorted((PKG / sub).rglob("*.py"))
    return set().union(*(_imports(f) for f in files))


FACES = (
    "seglib.plots",
    "seglib.cli",
    "seglib.workbook",
    "seglib.workspace",
    "seglib.viewer",
    "seglib.bench",
    "seglib.study",
    "seglib.doctables",
    "seglib.fullscale",
    "seglib.params",
    "seglib.kernels",
    "seglib.jemalloc",
    "seglib.pipes",
)


def test_models_import_torch_only():
    def ours(m: str) -> bool:  # torch itself, not torchvision nor torchcodec
        return any(m == p or m.startswith(f"{p}.") for p in ("torch", "seglib.models", "__future__"))

    outside = {m for m in _layer("models") if not ours(m)}
    stdlib = {"os", "pathlib", "collections.abc", "typing"}
    assert outside <= stdlib, outside


def test_data_never_imports_models_or_engine():
    bad = {m for m in _layer("data") if m.startswith(("seglib.models", "seglib.engine", *FACES))}
    assert not bad


def test_metrics_are_pure_tensor_functions():
    assert {m for m in _layer("metrics") if m != "__future__"} == {"torch"}


def test_engine_never_imports_a_face():
    bad = {m for m in _layer("engine") if m.startswith(FACES)}
    assert not bad


def test_the_helpers_below_the_layers_use_the_standard_library_only():
    helpers = ("atomic", "leftovers", "provenance", "allocator")
    for helper in helpers:
        each_other = {f"seglib.{h}" for h in helpers}
        outside = {
            m
            for m in _layer(helper)
            if m.split(".")[0] not in sys.stdlib_module_names and ".".join(m.split(".")[:2]) not in each_other
        }
        assert not outside, (helper, outside)


def test_no_module_imports_one_that_imports_it_back():
    """seglib's imports (lazy ones and packages' __init__ included) form no cycle, within a layer too."""
    files = {
        ".".join(p.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__"): p
        for p in PKG.rglob("*.py")
    }

    def module(name: str) -> str:  # where an imported name lives: seglib.engine.fit is seglib.engine's
        while name and name not in files:
            name = name.rpartition(".")[0]
        return name

    graph = {m: {t for n in _imports(p) if (t := module(n)) and t != m} for m, p in files.items()}
    try:
        tuple(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as e:
        pytest.fail(f"import cycle: {' <- '.join(e.args[1])}")


@pytest.mark.parametrize("nb", sorted((REPO / "notebooks").glob("*.ipynb")), ids=lambda p: p.name)
def test_notebooks_are_committed_without_outputs(nb):
    cells = json.loads(nb.read_text())["cells"]
    assert not any(c.get("outputs") or c.get("execution_count") for c in cells if c["cell_type"] == "code")
    assert any("parameters" in c.get("metadata", {}).get("tags", []) for c in cells)


@pytest.mark.slow
def test_an_installed_seglib_keeps_to_the_users_folder(tmp_path):
    """seglib alone in a site-packages folder, as pip installs it, inside a project of the user's own that is
    a git repository (its .venv within): paths are taken from the user's folder, the project's commit is not
    claimed as seglib's, and the workbook, whose notebooks only a clone has, says so and writes nothing."""
    import os
    import shutil
    import subprocess

    project = tmp_path / "project"
    site = project / ".venv" / "lib" / "site-packages"
    shutil.copytree(PKG, site / "seglib", ignore=shutil.ignore_patterns("__pycache__"))
    git = ["git", "-c", "user.name=u", "-c", "user.email=u@example.org"]
    (project / "notes.txt").write_text("mine\n")
    for args in (["init", "-q"], ["add", "notes.txt"], ["commit", "-q", "-m", "mine"]):
        subprocess.run(git + args, cwd=project, check=True)
    env = {k: v for k, v in os.environ.items() if k != "SEGLIB_COMMIT"} | {"PYTHONPATH": str(site)}
    code = (
        "import seglib; from seglib.workspace import project_path; from seglib.provenance import git_commit, "
        "git_changes; print(seglib.__file__, project_path('data'), git_commit(), git_changes())"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=project, env=env, capture_output=True, text=True)
    assert out.stdout.split() == [
        str(site / "seglib" / "__init__.py"),
        str(project / "data"),
        "unknown",
        "None",
    ], out.stderr
    run = subprocess.run(
        [sys.executable, "-m", "seglib.workbook", "--profile", "tiny"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 1 and "not part of the installed seglib package" in run.stderr, run.stderr
    assert "clone of the repository" in run.stderr
    assert sorted(p.name for p in site.iterdir()) == ["seglib"] and not (project / "results").exists()


@pytest.mark.slow
def test_an_installed_seglib_run_from_a_clones_notebooks_takes_paths_from_the_clone(tmp_path):
    """`pip install .` (not -e), then a notebook of the clone run where VS Code and nbconvert run it, in
    notebooks/: data/ and results/ are the clone's (they were notebooks/data, notebooks/results, and the
    default data_root was refused as missing, "taken from the repository"); elsewhere, the working folder."""
    import os
    import shutil
    import subprocess

    site, clone, elsewhere = tmp_path / "site", tmp_path / "clone", tmp_path / "elsewhere"
    shutil.copytree(PKG, site / "seglib", ignore=shutil.ignore_patterns("__pycache__"))
    (clone / "notebooks").mkdir(parents=True)
    shutil.copy(PKG.parent / "pyproject.toml", clone)
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site)}
    code = (
        "from pathlib import Path\nfrom seglib.workspace import check_data_root, project_path\n"
        "print(project_path('data'))\n"
        "try:\n    check_data_root(project_path('data/nope/oxford-pet'), 'auto')\n"
        "except ValueError as e:\n    print(e)\n"
    )
    for cwd, base in ((clone / "notebooks", clone), (elsewhere, elsewhere)):
        out = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True)
        lines = out.stdout.splitlines()
        assert lines[0] == str(base / "data"), out.stderr
        assert f"(a relative path is taken from {base})" in lines[1]
