"""The project's own rules: environment.yml agrees with pyproject.toml, and the layers import downwards."""

import ast
import json
import tomllib
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
PKG = REPO / "seglib"


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
    "seglib.viewer",
    "seglib.bench",
    "seglib.study",
    "seglib.doctables",
)


def test_models_import_torch_only():
    outside = {m for m in _layer("models") if not m.startswith(("torch", "seglib.models", "__future__"))}
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


@pytest.mark.parametrize("nb", sorted((REPO / "notebooks").glob("*.ipynb")), ids=lambda p: p.name)
def test_notebooks_are_committed_without_outputs(nb):
    cells = json.loads(nb.read_text())["cells"]
    assert not any(c.get("outputs") or c.get("execution_count") for c in cells if c["cell_type"] == "code")
    assert any("parameters" in c.get("metadata", {}).get("tags", []) for c in cells)
