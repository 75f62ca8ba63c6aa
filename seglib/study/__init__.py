"""The studies of notebooks 05 and 06 as named plans, and the recipe study's measures.

`SCHEDULER_STUDIES[profile]` and `RECIPE_STUDIES[profile]` say what each notebook trains for a profile;
`plan_scheduler_study` and `plan_recipe_study` turn one into the runs' configs (training nothing).
The recipe study: Dice versus minutes of training, per recipe, at a budget set in minutes.

`settings` (recipe items, a study's settings), `budgets` (the epochs a budget buys, and at which size),
`curves` (Dice against minutes, the model a budget buys), `schedulers` (notebook 05), `recipes`
(notebook 06), `runs` (06's runs trained or reused, each scored curve kept in its folder), `report` (the
summaries: who leads, ties said as ties), `paired` (each budget's models compared image by image). This
is a face: the engine never imports it.
"""

from .budgets import epochs_for_budget, estimate_epoch_seconds, fit_to_budget, ladder
from .curves import (
    StudyCurves,
    budget_reading,
    dice_at_budgets,
    dice_versus_minutes,
    epoch_column,
    model_at_budget,
    models_at_budget,
    score_kept_models,
    study_curves,
)
from .paired import describe_paired, paired_at_budgets
from .recipes import (
    RECIPE_STUDIES,
    RecipePlan,
    RecipeStudy,
    check_budgets,
    plan_recipe_study,
    recipe_run_name,
    recipe_run_prefix,
)
from .report import head_to_head, leaders, level, recipe_summary
from .runs import CURVE_FILE, IMAGE_DICE_FILE, StudyRun, matching_runs, run_recipe_job, same_config
from .schedulers import (
    SCHEDULER_STUDIES,
    SchedulerPlan,
    SchedulerStudy,
    plan_scheduler_study,
    scheduler_summary,
    scheduler_table,
    train_once,
)
from .settings import json_or_text, parse_recipes

__all__ = [
    "json_or_text",
    "parse_recipes",
    "estimate_epoch_seconds",
    "epochs_for_budget",
    "fit_to_budget",
    "ladder",
    "dice_versus_minutes",
    "score_kept_models",
    "epoch_column",
    "dice_at_budgets",
    "budget_reading",
    "SchedulerStudy",
    "SchedulerPlan",
    "SCHEDULER_STUDIES",
    "plan_scheduler_study",
    "RecipeStudy",
    "RecipePlan",
    "RECIPE_STUDIES",
    "plan_recipe_study",
    "model_at_budget",
    "recipe_run_prefix",
    "recipe_run_name",
    "check_budgets",
    "scheduler_table",
    "train_once",
    "scheduler_summary",
    "StudyCurves",
    "study_curves",
    "models_at_budget",
    "level",
    "leaders",
    "head_to_head",
    "recipe_summary",
    "paired_at_budgets",
    "describe_paired",
    "CURVE_FILE",
    "IMAGE_DICE_FILE",
    "StudyRun",
    "same_config",
    "matching_runs",
    "run_recipe_job",
]
