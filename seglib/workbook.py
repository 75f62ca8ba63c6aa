"""`make workbook`: train and evaluate on the default data, writing everything under results/.

Until the numbered notebooks exist this is the workbook: a UNet trained with the chosen profile on
the real data when it is at --data_root, else on the synthetic demo set, then scored on the test
split at original resolution, with its curves, tables and figures saved.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .data import OxfordPetDataset
from .engine import PROFILES, config_from_profile, evaluate, fit, load_model, summarize
from .plots import plot_dice_distribution, plot_history, save_figure, save_prediction_figures

__all__ = ["run_workbook", "main"]


def run_workbook(
    profile: str = "quick",
    model: str = "unet",
    data_root: str = "data/oxford-iiit-pet",
    dataset: str = "auto",
    results_dir: str = "results",
) -> Path:
    """Train, evaluate on the test split, save curves, tables and figures; return the output folder."""
    results = Path(results_dir)
    cfg = config_from_profile(profile, model=model, data_root=data_root, dataset=dataset,
                              synthetic_root="data/synthetic-pets", output_dir=str(results / "runs"))  # fmt: skip
    print(f"workbook: profile {profile!r}, model {model!r}, data {dataset!r} at {data_root}")
    run = fit(cfg)
    save_figure(plot_history(run.history), run.run_dir / "history.png")
    test = OxfordPetDataset(run.data_root, "test", image_size=cfg.image_size)
    best = load_model(run.best_checkpoint)
    df = evaluate(best, test, batch_size=cfg.batch_size)
    out = results / "evaluation" / run.run_dir.name
    out.mkdir(parents=True, exist_ok=True)
    df.to_csv(out / "per_image.csv", index=False)
    table = summarize(df)
    table.to_csv(out / "summary.csv")
    save_figure(plot_dice_distribution(df, by="species"), out / "dice_distribution.png")
    save_prediction_figures(
        best, test, df.sort_values("dice").index[:6].tolist(), out / "worst", cfg.image_size
    )
    print(f"\nbest val Dice {run.best_val_dice:.4f} (epoch {run.best_epoch}); test split, {len(df)} images "
          f"({run.data} data):\n{table.round(4).to_string()}\nrun: {run.run_dir}\nevaluation: {out}")  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m seglib.workbook", description=__doc__)
    p.add_argument("--profile", default="quick", choices=sorted(PROFILES))
    p.add_argument("--model", default="unet")
    p.add_argument("--data_root", default="data/oxford-iiit-pet")
    p.add_argument("--dataset", default="auto")
    p.add_argument("--results_dir", default="results")
    a = p.parse_args(argv)
    run_workbook(a.profile, a.model, a.data_root, a.dataset, a.results_dir)


if __name__ == "__main__":
    main()
