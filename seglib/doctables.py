"""Markdown tables generated from CSV files: the numbers live in a CSV, the docs show them.

A block in any Markdown file names its CSV (paths from the repository root) and how to show it:

    <!-- table: docs/experiments/recipe_unet.csv "where=budget:12 min" format=test_dice:.4f -->
    | ... the generated table ... |
    <!-- /table -->

`python -m seglib.doctables` (`make docs`) rewrites every block in README.md and docs/**/*.md from its
CSV; `--check` rewrites nothing and exits 1 naming the stale blocks (tests/test_docs.py runs it).
Options, separated by spaces (shell quoting when a value holds one):

- `columns=a,b,c`: the columns shown, in this order (default: all of the CSV's).
- `where=col:v1|v2`: only the rows whose `col` is one of the values; repeat it to require several.
- `format=col:SPEC`, repeatable: a number's format spec (`.4f`, `.3g`; text cells stay as they are),
  or a template in which `{}` is the cell and `{other}` another column of the row (`{:.2f}x`,
  `{} ({low}-{high})`, `` `{}` ``). Empty cells stay empty; a template naming an empty column shows
  the plain value.
- `group=a,b mean=col`: one row per group (in order of first appearance): the group columns, then
  `col` as "mean ± sd" (sample standard deviation; the value alone for one row) and `n`, the rows.
- `list=col` (with `group`): the group's distinct values of `col`, e.g. its seeds. With `group`,
  `columns=` orders the group columns, `col`, `n` and the listed column.

Several CSVs may feed one table (`a.csv+b.csv`): their rows in order, a column missing from one empty.
Headers are the column names with `_` shown as a space. This is a face: the engine never imports it.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import re
import shlex
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "DocTableError",
    "TableSpec",
    "parse_spec",
    "render_table",
    "update_text",
    "markdown_files",
    "stale_blocks",
    "main",
]

REPO = Path(__file__).resolve().parents[1]
OPEN = re.compile(r"^<!-- table: (?P<spec>.+?) -->[ \t]*$", re.MULTILINE)
CLOSE = "<!-- /table -->"


class DocTableError(ValueError):
    """A marker that cannot be rendered: bad option, missing CSV or column, no closing marker."""


@dataclass
class TableSpec:
    """A table marker's settings (`parse_spec` reads them from `<!-- table: ... -->`): its CSV sources, the
    columns, row filters, number formats, and `group` rows shown as the `mean` ± sd of each group."""

    sources: list[str]
    columns: list[str] | None = None
    where: list[tuple[str, set[str]]] = field(default_factory=list)
    formats: dict[str, str] = field(default_factory=dict)
    group: list[str] | None = None
    mean: str | None = None
    list_col: str | None = None


def parse_spec(text: str) -> TableSpec:
    """`PATH[+PATH] key=value ...` (the text of an opening marker) as a TableSpec."""
    try:
        words = shlex.split(text)
    except ValueError as e:
        raise DocTableError(f"cannot read the marker {text!r}: {e}") from None
    if not words or "=" in words[0]:
        raise DocTableError(f"the marker {text!r} must start with the CSV path")
    spec = TableSpec(sources=words[0].split("+"))
    for word in words[1:]:
        key, sep, value = word.partition("=")
        if not sep or not value:
            raise DocTableError(f"option {word!r} in {text!r} is not key=value")
        if key == "columns":
            spec.columns = value.split(",")
        elif key == "where":
            col, sep, values = value.partition(":")
            if not sep:
                raise DocTableError(f"where={value!r} in {text!r}: write where=column:value1|value2")
            spec.where.append((col, set(values.split("|"))))
        elif key == "format":
            col, sep, fmt = value.partition(":")
            if not sep:
                raise DocTableError(f"format={value!r} in {text!r}: write format=column:spec")
            spec.formats[col] = fmt
        elif key == "group":
            spec.group = value.split(",")
        elif key == "mean":
            spec.mean = value
        elif key == "list":
            spec.list_col = value
        else:
            raise DocTableError(
                f"unknown option {key!r} in {text!r}; choose one of columns, where, format, group, mean, list"
            )
    if (spec.group is None) != (spec.mean is None):
        raise DocTableError(f"{text!r}: group= and mean= go together")
    if spec.list_col and spec.group is None:
        raise DocTableError(f"{text!r}: list= needs group= and mean=")
    return spec


def _read(sources: Sequence[str], root: Path) -> tuple[list[str], list[dict[str, str]]]:
    header: list[str] = []
    rows: list[dict[str, str]] = []
    for source in sources:
        path = root / source
        if not path.is_file():
            raise DocTableError(f"{source}: no such CSV file")
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            header += [c for c in reader.fieldnames or [] if c not in header]
            rows += [{k: (v or "").strip() for k, v in row.items() if k is not None} for row in reader]
    return header, rows


def _number(text: str) -> float | int | None:
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _format(value: str, spec: str | None, row: dict[str, str]) -> str:
    if spec is None or not value:
        return value
    number = _number(value)
    if "{" not in spec:
        return value if number is None else format(number, spec)
    names = re.findall(r"\{(\w+)[^}]*\}", spec)
    if any(not row.get(n) for n in names):
        return value
    others = {n: row[n] if _number(row[n]) is None else _number(row[n]) for n in names}
    try:
        return spec.format(value if number is None else number, **others)
    except (ValueError, TypeError):  # a number's spec on a text cell: the plain value
        return value


def _mean_sd(values: list[str], spec: str | None) -> str:
    numbers = [x for x in map(_number, values) if x is not None]
    if not numbers:
        return ""
    plain = spec if spec and "{" not in spec else ".4g"
    mean = sum(numbers) / len(numbers)
    if len(numbers) == 1:
        return format(mean, plain)
    sd = math.sqrt(sum((x - mean) ** 2 for x in numbers) / (len(numbers) - 1))
    return f"{format(mean, plain)} ± {format(sd, plain)}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_table(spec: TableSpec | str, root: Path = REPO) -> str:
    """The Markdown table (header, rule, rows) for a marker's spec."""
    spec = parse_spec(spec) if isinstance(spec, str) else spec
    header, rows = _read(spec.sources, root)
    grouped = spec.group is not None
    named = [c for c, _ in spec.where] + (spec.group or []) + list(spec.formats)
    named += [c for c in (spec.mean, spec.list_col) if c] + ([] if grouped else spec.columns or [])
    missing = [c for c in named if c not in header]
    if missing:
        raise DocTableError(f"{'+'.join(spec.sources)} has no column {missing[0]!r}; it has {header}")
    rows = [r for r in rows if all(r.get(col, "") in values for col, values in spec.where)]
    if spec.group is None:
        heads = spec.columns or header
        body = [[_format(r.get(c, ""), spec.formats.get(c), r) for c in heads] for r in rows]
    elif spec.mean is None:  # parse_spec refuses this; a TableSpec built by hand may not
        raise DocTableError(f"{'+'.join(spec.sources)}: group= and mean= go together")
    else:
        heads, body = _grouped(spec, spec.group, spec.mean, rows)
    lines = ["| " + " | ".join(_cell(h.replace("_", " ")) for h in heads) + " |"]
    lines.append("|" + "---|" * len(heads))
    lines += ["| " + " | ".join(_cell(c) for c in cells) + " |" for cells in body]
    return "\n".join(lines)


def _grouped(
    spec: TableSpec, group: list[str], mean: str, rows: list[dict[str, str]]
) -> tuple[list[str], list[list[str]]]:
    """The headers and rows of a group= table: one row per group, `mean` as mean ± sd."""
    keys = [*group, mean, "n"] + ([spec.list_col] if spec.list_col else [])
    order = spec.columns or keys
    if set(order) - set(keys):
        raise DocTableError(f"with group=, columns= names only {keys}, not {sorted(set(order) - set(keys))}")
    groups: dict[tuple[str, ...], list[dict[str, str]]] = {}
    for row in rows:
        groups.setdefault(tuple(row.get(c, "") for c in group), []).append(row)
    body = []
    for key, members in groups.items():
        cells = {c: _format(v, spec.formats.get(c), members[0]) for c, v in zip(group, key, strict=True)}
        cells[mean] = _mean_sd([m.get(mean, "") for m in members], spec.formats.get(mean))
        cells["n"] = str(len(members))
        if spec.list_col:
            seen = dict.fromkeys(m.get(spec.list_col, "") for m in members if m.get(spec.list_col))
            cells[spec.list_col] = ", ".join(seen)
        body.append([cells[c] for c in order])
    return [f"{c} mean ± sd" if c == mean else c for c in order], body


def _source_note(spec: TableSpec, md_path: Path, root: Path) -> str:
    links = []
    for source in spec.sources:
        target = Path(os.path.relpath(root / source, md_path.resolve().parent)).as_posix()
        links.append(f"[{Path(source).name}]({target})")
    return f"<sub>Generated from {', '.join(links)} by `make docs`; edit the CSV, not this table.</sub>"


def update_text(text: str, md_path: Path, root: Path = REPO) -> tuple[str, list[str]]:
    """`text` with every table block rendered afresh, and the specs of the blocks that changed."""
    out: list[str] = []
    stale: list[str] = []
    pos = 0
    for match in OPEN.finditer(text):
        if match.start() < pos:
            continue  # an opening marker inside a block we already replaced
        end = text.find(CLOSE, match.end())
        if end < 0:
            line = text.count("\n", 0, match.start()) + 1
            raise DocTableError(f"{md_path}:{line}: {match.group(0)!r} has no closing {CLOSE}")
        spec_text = match.group("spec")
        try:
            spec = parse_spec(spec_text)
            block = f"\n{render_table(spec, root)}\n\n{_source_note(spec, md_path, root)}\n"
        except DocTableError as e:
            line = text.count("\n", 0, match.start()) + 1
            raise DocTableError(f"{md_path}:{line}: {e}") from None
        if text[match.end() : end] != block:
            stale.append(spec_text)
        out += [text[pos : match.end()], block]
        pos = end
    out.append(text[pos:])
    return "".join(out), stale


def markdown_files(root: Path = REPO) -> list[Path]:
    """README.md and every .md file under docs/."""
    files = [root / "README.md"] if (root / "README.md").exists() else []
    return files + sorted((root / "docs").rglob("*.md"))


def stale_blocks(paths: Iterable[Path] | None = None, root: Path = REPO) -> list[str]:
    """`file: spec` for each block whose table differs from what its CSV gives (nothing is written)."""
    found = []
    for path in paths if paths is not None else markdown_files(root):
        _, stale = update_text(path.read_text(encoding="utf-8"), path, root)
        found += [f"{path.relative_to(root) if path.is_relative_to(root) else path}: {s}" for s in stale]
    return found


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m seglib.doctables` (`make docs`): rewrite the pages' tables, or `--check` that none is stale."""
    parser = argparse.ArgumentParser(
        prog="python -m seglib.doctables",
        description="Rewrite the tables between <!-- table: CSV ... --> and <!-- /table --> from their CSV.",
    )
    parser.add_argument(
        "files", nargs="*", type=Path, help="Markdown files (default: README.md, docs/**/*.md)"
    )
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a table is stale")
    parser.add_argument("--root", type=Path, default=REPO, help="where the CSV paths start (the repository)")
    args = parser.parse_args(argv)
    root = args.root.resolve()
    files = [f.resolve() for f in args.files] or markdown_files(root)
    try:
        if args.check:
            stale = stale_blocks(files, root)
            for line in stale:
                print(f"stale table: {line}", file=sys.stderr)
            if stale:
                print("run `make docs` (python -m seglib.doctables) to regenerate them", file=sys.stderr)
            return 1 if stale else 0
        for path in files:
            old = path.read_text(encoding="utf-8")
            new, stale = update_text(old, path, root)
            if new != old:
                path.write_text(new, encoding="utf-8")
                print(
                    f"{path.relative_to(root) if path.is_relative_to(root) else path}: {len(stale)} table(s)"
                )
    except DocTableError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
