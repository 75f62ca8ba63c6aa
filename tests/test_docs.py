"""The docs: README.md stays a front door, every generated table matches its CSV, every link resolves.

Also `seglib.doctables` itself, on small files in tmp_path: rendering, filters, formats, groups, and
`--check` failing on a stale block.
"""

from __future__ import annotations

import csv
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from seglib import doctables
from seglib.doctables import DocTableError, render_table, stale_blocks, update_text

REPO = Path(__file__).resolve().parents[1]
README_MAX_LINES = 200
DOCS = doctables.markdown_files(REPO)
CSVS = sorted((REPO / "docs").rglob("*.csv"))


def _rel(path: Path) -> str:
    return path.relative_to(REPO).as_posix()


# -------------------------------------------------------------------------------- the repository's docs


def test_readme_is_a_front_door():
    lines = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; move detail into docs/"
    headings = [line for line in lines if line.startswith("## ")]
    for section in ("Set-up", "Quick start", "The notebooks", "Results", "Documentation"):
        assert any(h.startswith(f"## {section}") for h in headings), section


def test_every_generated_table_matches_its_csv():
    stale = stale_blocks(DOCS, REPO)
    assert not stale, "stale tables (run `make docs`):\n" + "\n".join(stale)


def test_the_readme_has_the_generated_results_table():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    assert "<!-- table: docs/experiments/" in text


def test_check_command_passes_on_the_repository():
    assert doctables.main(["--check"]) == 0


def _strip_code(text: str) -> str:
    text = re.sub(r"^```.*?^```", "", text, flags=re.DOTALL | re.MULTILINE)  # fenced blocks
    text = re.sub(r"^(?: {4}|\t).*$", "", text, flags=re.MULTILINE)  # indented blocks
    return re.sub(r"`[^`\n]*`", "", text)  # inline code


LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", path.read_text(encoding="utf-8"), flags=re.DOTALL | re.MULTILINE)
    return {_slug(m) for m in re.findall(r"^#{1,6}\s+(.+?)\s*#*$", text, flags=re.MULTILINE)}


@pytest.mark.parametrize("md", DOCS, ids=_rel)
def test_relative_links_resolve(md: Path):
    broken = []
    for target in LINK.findall(_strip_code(md.read_text(encoding="utf-8"))):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        dest = (md.parent / path).resolve() if path else md
        if not dest.exists():
            broken.append(f"{target} (no such file)")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            broken.append(f"{target} (no heading #{anchor} in {dest.name})")
    assert not broken, f"{_rel(md)}: " + ", ".join(broken)


@pytest.mark.parametrize("path", CSVS, ids=_rel)
def test_every_csv_says_when_where_and_from_which_commit(path: Path):
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert rows, path
    for column in ("date", "commit", "machine"):
        assert column in rows[0], f"{_rel(path)} has no {column!r} column"
        assert all(r[column] for r in rows), f"{_rel(path)}: a row without {column!r}"
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\d", r["date"]) for r in rows)
    assert all(re.fullmatch(r"[0-9a-f]{7,40}", r["commit"]) for r in rows)


@pytest.mark.parametrize("path", CSVS, ids=_rel)
def test_every_csv_feeds_a_table(path: Path):
    markers = "\n".join(m.group(0) for md in DOCS for m in doctables.OPEN.finditer(md.read_text("utf-8")))
    assert _rel(path) in markers, f"{_rel(path)} is in no <!-- table: ... --> block"


def test_the_commits_named_in_the_csvs_exist():
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    commits = set()
    for path in CSVS:
        with path.open(newline="", encoding="utf-8") as f:
            commits |= {r["commit"] for r in csv.DictReader(f)}
    query = "".join(f"{c}^{{commit}}\n" for c in sorted(commits))
    out = subprocess.run(
        ["git", "-C", str(REPO), "cat-file", "--batch-check"],
        input=query,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    if "missing" in out:
        shallow = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--is-shallow-repository"], capture_output=True, text=True
        ).stdout.strip()
        if shallow == "true":
            pytest.skip("a shallow clone lacks the older commits")
    assert "missing" not in out, out


def test_doctables_is_a_face():
    """No lower layer imports it: the engine, models, data and metrics know nothing of the docs."""
    for sub in ("engine", "models", "data"):
        for path in (REPO / "seglib" / sub).rglob("*.py"):
            assert "doctables" not in path.read_text(encoding="utf-8"), path
    assert "doctables" not in (REPO / "seglib" / "metrics.py").read_text(encoding="utf-8")


# -------------------------------------------------------------------------------- seglib.doctables


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "runs.csv").write_text(
        "model,seed,dice,low,high,note\n"
        "unet,42,0.86671,0.8,0.9,a | b\n"
        "unet,7,0.8635,,,\n"
        "resnet,42,0.8249,,,\n",
        encoding="utf-8",
    )
    return tmp_path


def test_render_selects_filters_and_formats(project: Path):
    table = render_table(
        "docs/runs.csv columns=model,seed,dice,note where=model:unet format=dice:.3f", project
    )
    assert table.splitlines() == [
        "| model | seed | dice | note |",
        "|---|---|---|---|",
        "| unet | 42 | 0.867 | a \\| b |",
        "| unet | 7 | 0.864 |  |",
    ]


def test_render_templates_fall_back_when_a_column_is_empty(project: Path):
    table = render_table('docs/runs.csv columns=seed,dice "format=dice:{:.2f} ({low}-{high})"', project)
    assert table.splitlines()[2:] == ["| 42 | 0.87 (0.8-0.9) |", "| 7 | 0.8635 |", "| 42 | 0.8249 |"]


def test_render_groups_with_mean_sd_n_and_list(project: Path):
    table = render_table("docs/runs.csv group=model mean=dice list=seed format=dice:.4f", project)
    # unet: mean 0.865105, sample sd 0.002341
    assert table.splitlines() == [
        "| model | dice mean ± sd | n | seed |",
        "|---|---|---|---|",
        "| unet | 0.8651 ± 0.0023 | 2 | 42, 7 |",
        "| resnet | 0.8249 | 1 | 42 |",
    ]
    ordered = render_table("docs/runs.csv group=model mean=dice columns=dice,model format=dice:.2f", project)
    assert ordered.splitlines()[0] == "| dice mean ± sd | model |"


def test_render_joins_several_csvs(project: Path):
    (project / "docs" / "more.csv").write_text("model,dice,extra\nunet_big,0.9,x\n", encoding="utf-8")
    table = render_table("docs/runs.csv+docs/more.csv columns=model,dice,extra", project)
    assert table.splitlines()[-1] == "| unet_big | 0.9 | x |"
    assert table.splitlines()[2] == "| unet | 0.86671 |  |"


@pytest.mark.parametrize(
    "spec, message",
    [
        ("docs/nope.csv", "no such CSV"),
        ("docs/runs.csv columns=model,missing", "no column 'missing'"),
        ("docs/runs.csv colour=red", "unknown option"),
        ("docs/runs.csv group=model", "go together"),
        ("docs/runs.csv where=model", "where=column:value"),
    ],
)
def test_bad_markers_say_what_is_wrong(project: Path, spec: str, message: str):
    with pytest.raises(DocTableError, match=message):
        render_table(spec, project)


def test_a_spec_built_by_hand_needs_mean_with_group(project: Path):
    # parse_spec refuses group= without mean=; before, a TableSpec built so rendered a "None" column
    with pytest.raises(DocTableError, match="docs/runs.csv: group= and mean= go together"):
        render_table(doctables.TableSpec(["docs/runs.csv"], group=["model"]), project)


def test_update_fills_a_block_and_check_fails_when_it_goes_stale(project: Path):
    md = project / "docs" / "page.md"
    md.write_text(
        "Intro.\n\n<!-- table: docs/runs.csv columns=model,dice -->\n<!-- /table -->\n\nEnd.\n", "utf-8"
    )
    assert doctables.main(["--root", str(project), "--check", str(md)]) == 1
    assert doctables.main(["--root", str(project), str(md)]) == 0
    text = md.read_text(encoding="utf-8")
    assert "| unet | 0.86671 |" in text and text.startswith("Intro.") and text.endswith("End.\n")
    assert "[runs.csv](runs.csv)" in text  # the source, linked relative to the page
    assert doctables.main(["--root", str(project), "--check", str(md)]) == 0
    assert update_text(text, md, project) == (text, [])

    with (project / "docs" / "runs.csv").open("a", encoding="utf-8") as f:
        f.write("unet,1,0.8573,,,\n")
    assert stale_blocks([md], project) == ["docs/page.md: docs/runs.csv columns=model,dice"]
    assert doctables.main(["--root", str(project), "--check", str(md)]) == 1


def test_an_unclosed_block_is_an_error(project: Path):
    md = project / "README.md"
    md.write_text("<!-- table: docs/runs.csv -->\n| old |\n", encoding="utf-8")
    with pytest.raises(DocTableError, match="no closing"):
        update_text(md.read_text(encoding="utf-8"), md, project)
    assert doctables.main(["--root", str(project), "--check"]) == 2
