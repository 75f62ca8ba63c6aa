"""What `benchmarks/cpu_kind.sh` measured, held against issues 22 and 23's goals, and as rows for docs/.

    .venv/bin/python benchmarks/cpu_kind_rows.py [OUT]        (OUT: results/cpu-kind)

Prints, and writes to OUT/summary.md: per model, notebook 06's test Dice at each budget, the original
recipe beside the recommended one (with the 95% paired interval of their difference over the test
images, where notebook 06 wrote `paired_at_budgets.csv`), and the recommended 12-minute runs of the three seeds (goals: ahead
at every budget; mean >= 0.85, every seed >= 0.84); the epochs a 12-minute budget buys; the quick
workbook's seconds (goal: 600 in all); the benchmark's training steps (goals: every one >= 1.0x the
reference; without native bf16 also UNet at 256 px >= 1.2x and >= 75% of the fp32 matmul ceiling);
multi-scale TTA on the validation images of the recommended runs (the `tta` part), per model.
Writes OUT/recipe_<model>.csv: each run as a row with the columns of docs/experiments/recipe_<model>.csv,
to check and append there (profile, run and headline are left for you).
"""

from __future__ import annotations

import csv
import glob
import json
import re
import statistics
import sys
from datetime import date
from pathlib import Path

import pandas as pd

from seglib.provenance import git_commit
from seglib.study import model_at_budget, recipe_run_prefix

DOCS = Path("docs/experiments")
DATA = "real sample, 3 breeds: 270 train / 30 val / 100 test"
STUDY = (
    ".venv/bin/python -m seglib.workbook --profile recommended --dataset oxford-pet "
    "--data_root ../shared/data/oxford-pet-sample --only 06_recipe_study.ipynb"
)
MODELS = {"unet": "UNet width 16", "resnet34_unet": "ResNet34-UNet width 32 (random init)"}
GOAL_MEAN, GOAL_EACH, GOAL_WORKBOOK_S = 0.85, 0.84, 600


def machine(out: Path) -> tuple[str, bool]:
    """The docs' name for the CPU that ran (as the CSVs name this workplace's kinds) and whether it has bf16."""
    text = (out / "machine.txt").read_text()
    found = re.search(r"cpu_kind: (.*)", text)
    if found is None:
        raise SystemExit(
            f"{out / 'machine.txt'} has no 'cpu_kind:' line; run benchmarks/cpu_kind.sh into {out}"
        )
    kind = found.group(1).strip()
    bf16 = "without" not in kind
    if kind.startswith("AMD EPYC"):
        return (
            "2-core AMD EPYC Zen 4 (native bf16)"
            if bf16
            else "2-core AMD EPYC Zen 3 kind (without native bf16)"
        ), bf16
    if kind.startswith("Intel(R) Xeon(R)") and "amx_bf16" in text:  # the flags line cpu_kind.sh adds
        return "2-core Intel Xeon with AMX (native bf16)", bf16
    return f"2-core {kind}", bf16


def run_config(study: Path, recipe: str, budget: float) -> dict:
    """config.json of the recipe's run for `budget` (the read-along recipe's one run otherwise)."""
    name = glob.escape(recipe_run_prefix(recipe))  # an item such as progressive_sizes=[64] has brackets
    found = sorted(study.glob(f"runs/{name}-{budget:g}min-*/config.json")) or sorted(
        study.glob(f"runs/{name}-*/config.json")
    )
    return json.loads(found[0].read_text()) if found else {}


def study_runs(study: Path, seed: int) -> list[dict]:
    """One dict per (recipe, budget) of a notebook 06 output folder."""
    curve = pd.read_csv(study / "recipes" / "dice_vs_minutes.csv")
    budgets = pd.read_csv(study / "recipes" / "dice_at_budgets.csv", header=[0, 1], index_col=0).index
    recipes = [r for r in curve.recipe.unique() if "stopped early" not in r]
    paired = study / "recipes" / "paired_at_budgets.csv"  # from notebook 06 of this session on
    paired = pd.read_csv(paired) if paired.is_file() else None
    runs = []
    for recipe in recipes:
        for b in (float(x) for x in budgets.dropna()):
            row = model_at_budget(curve[curve.recipe == recipe], b)
            if row is None:
                continue
            cfg = run_config(study, recipe, b)
            first = ", ".join(map(str, cfg.get("progressive_sizes") or ())) or "-"
            params = f"--param recipes={','.join(recipes)} --param budgets={b:g} --param seed={seed}"
            gap = (
                None if paired is None else paired[(paired.recipe == recipe) & (paired["budget (min)"] == b)]
            )
            runs.append(
                {
                    "params": params + " --param checkpoint_every=1000",
                    "recipe": recipe,
                    "budget": b,
                    "seed": seed,
                    "row": row,
                    "size": cfg.get("image_size"),
                    "first": first,
                    "interval": None if gap is None or gap.empty else (gap.low.iloc[0], gap.high.iloc[0]),
                }
            )
    return runs


def model_runs(out: Path, model: str) -> list[dict]:
    """The study (seed 42, every budget) and the seeds' 12-minute runs of `model`, as found."""
    runs = []
    for folder in sorted(out.glob(f"{model}-s*")):
        if (folder / "recipes" / "dice_vs_minutes.csv").is_file():
            seed = 42 if folder.name.endswith("-study") else int(folder.name.rsplit("seed", 1)[1])
            runs += [dict(r, study=folder.name.endswith("-study")) for r in study_runs(folder, seed)]
    return runs


def check_model(model: str, runs: list[dict]) -> list[str]:
    """Issue 22's goals for `model`, as lines of markdown."""
    lines = [
        f"## {MODELS[model]}",
        "",
        "| budget | original | recommended | ahead by | 95% paired interval |",
    ]
    lines.append("|---|---|---|---|---|")
    side = {}
    for r in (r for r in runs if r["study"]):
        side.setdefault(r["budget"], {})[
            "original" if r["recipe"].startswith("original") else "recommended"
        ] = r
    for b, pair in sorted(side.items()):
        o, c = (pair[k]["row"].dice if k in pair else float("nan") for k in ("original", "recommended"))
        interval = pair.get("recommended", {}).get("interval")
        span = "not kept" if interval is None else f"{interval[0]:+.4f} to {interval[1]:+.4f}"
        lines.append(f"| {b:g} min | {o:.4f} | {c:.4f} | {c - o:+.4f} | {span} |")
    ahead = all(
        p.get("recommended")
        and p.get("original")
        and p["recommended"]["row"].dice > p["original"]["row"].dice
        for p in side.values()
    )
    # the seeds' runs are at one budget (12 min; SEED_BUDGET in a rehearsal); the study's run at it counts too
    at = max((r["budget"] for r in runs if not r["study"]), default=max(side, default=12))
    twelve = [r for r in runs if r["recipe"] == "recommended" and r["budget"] == at]
    dice = [float(r["row"].dice) for r in twelve]
    lines += ["", f"Ahead at every budget of the study: {'yes' if ahead and side else 'NO'}."]
    if dice:
        mean, sd = statistics.mean(dice), statistics.stdev(dice) if len(dice) > 1 else 0.0
        seeds = ", ".join(
            f"{r['seed']}: {r['row'].dice:.4f} ({int(r['row'].epoch)} epochs, {plan(r)})" for r in twelve
        )
        ok = mean >= GOAL_MEAN and min(dice) >= GOAL_EACH and len(dice) >= 3
        lines.append(
            f"Recommended, {at:g} min: {mean:.4f} ± {sd:.4f} over seeds {seeds}; goal {'met' if ok else 'NOT met'}."
        )
    return lines + [""]


def plan(run: dict) -> str:
    """The run's image sizes: "128 px after 64, 96" with progressive resizing, else "128 px"."""
    return f"{run['size']} px" + (f" after {run['first']}" if run["first"] != "-" else "")


def doc_rows(model: str, runs: list[dict], name: str, bf16: bool, commit: str) -> list[dict]:
    """`runs` as rows of docs/experiments/recipe_<model>.csv (its own columns only)."""
    rows = []
    for r in runs:
        row = r["row"]
        how = "" if r["study"] else f"ran as {r['params']}; "
        rows.append(
            {
                "date": date.today().isoformat(),
                "commit": commit,
                "machine": name,
                "precision": "bf16" if bf16 else "fp32",
                "data": DATA,
                "model": MODELS[model],
                "recipe": r["recipe"].split("+")[0],
                "image_size": r["size"],
                "budget": f"{r['budget']:g} min",
                "seed": r["seed"],
                "epochs": int(row.epoch),
                "minutes": f"{row.train_minutes:.2f}",
                "test_dice": f"{row.dice:.4f}",
                "test_median": f"{row.dice_median:.4f}",
                "test_min": f"{row.dice_min:.4f}",
                "dataset_dice": f"{row.dice_dataset:.4f}",
                "val_dice": f"{row.val_dice:.4f}",
                "command": STUDY + (" --param model_name=unet" if model == "unet" else ""),
                "note": how + plan(r),
            }
        )
    return rows


def write_rows(path: Path, header: list[str], rows: list[dict]) -> None:
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=header, extrasaction="ignore", lineterminator="\n")
        w.writeheader()
        w.writerows(rows)


def workbook_lines(out: Path) -> list[str]:
    log = out / "workbook.log"
    if not log.is_file():
        return []
    done = re.findall(r"workbook: (\S+)\.ipynb done in (\d+) s", log.read_text())
    total = sum(int(s) for _, s in done)
    per = ", ".join(f"{n[:2]} {s}" for n, s in done)
    return [
        "## The quick workbook",
        "",
        f"{total} s in all ({per}); goal {GOAL_WORKBOOK_S} s: {'met' if total <= GOAL_WORKBOOK_S and len(done) >= 7 else 'NOT met'}.",
        "",
    ]


def bench_lines(out: Path, bf16: bool) -> list[str]:
    path = out / "bench.json"
    if not path.is_file():
        return []
    rows = {r["what"]: r for r in json.loads(path.read_text())["rows"]}
    steps = {
        w: r
        for w, r in rows.items()
        if w.startswith("train step") and r["unit"] == "images/s" and "candidate" not in w
    }
    lines = ["## The benchmark's training steps", "", "| what | seglib / reference |", "|---|---|"]
    lines += [f"| {w} | {r['ratio']:.2f}x |" for w, r in steps.items()]
    ok = all(r["ratio"] >= 1.0 for r in steps.values())
    lines += ["", f"Every step >= 1.0x: {'yes' if ok else 'NO'}."]
    unet = next((w for w in steps if w.startswith("train step unet 256px")), None)
    ceiling = next((r["seglib"] for w, r in rows.items() if w.startswith("fp32 matmul")), None)
    if unet and not bf16 and ceiling:
        share = rows[f"{unet} achieved"]["seglib"] / ceiling
        lines.append(
            f"UNet 256 px: {steps[unet]['ratio']:.2f}x (goal 1.2x), {share:.0%} of the fp32 ceiling (goal 75%)."
        )
    return lines + [""]


def measured_commit(out: Path) -> str:
    """The commit cpu_kind.sh ran (its log's last start line; "+changes" where the tree differed), else HEAD's."""
    log = out / "log.txt"
    found = re.findall(r"^start \S+ commit (\S+)", log.read_text(), re.M) if log.is_file() else []
    if found:
        return found[-1]  # the latest invocation's (parts split over sessions: check each part's commit)
    return git_commit()


def tta_lines(out: Path) -> list[str]:
    """Per model: what `evaluate` with TTA(flip=True, scales=(1.2,)) gains on the validation images over
    no TTA, from the tta part's CSV (docs/experiments/recipe_study.md, "Multi-scale test-time augmentation")."""
    path = out / "tta.csv"
    if not path.is_file():
        return []
    df = pd.read_csv(path)
    lines = ["## Multi-scale TTA on validation (evaluate, flip + 1.2x, against no TTA)", ""]
    for model, g in df.groupby("model"):
        gain = g.val_dice_evaluate_flip_scale - g.val_dice_evaluate_plain
        slower = (g.evaluate_flip_scale_s / g.evaluate_plain_s).median()
        lines.append(
            f"- {model}: {gain.mean():+.4f} over {len(g)} runs, {(gain > 0).sum()} ahead; "
            f"evaluation {slower:.1f}x as long"
        )
    return lines + [""]


def main() -> None:
    if len(sys.argv) > 2 or sys.argv[1:2] in (["-h"], ["--help"]):
        raise SystemExit(__doc__)
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "results/cpu-kind")
    name, bf16 = machine(out)
    commit = measured_commit(out)
    lines = [f"# {name}, {date.today()}, commit {commit}", ""]
    for model in MODELS:
        runs = model_runs(out, model)
        if runs:
            lines += check_model(model, runs)
            header = next(csv.reader((DOCS / f"recipe_{model}.csv").open()))
            write_rows(out / f"recipe_{model}.csv", header, doc_rows(model, runs, name, bf16, commit))
    if (out / "epochs.log").is_file():
        bought = re.findall(r"^(\w+ \d+ px, .*epochs)$", (out / "epochs.log").read_text(), re.M)
        lines += ["## Epochs a 12-minute budget buys", "", *[f"- {b}" for b in bought], ""]
    lines += workbook_lines(out) + bench_lines(out, bf16) + tta_lines(out)
    (out / "summary.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
