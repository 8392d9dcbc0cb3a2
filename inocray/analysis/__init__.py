"""The aggregator: fit the elicitation line and the generalization factor k of a sweep.

Public entry point: `fit_rows(table) -> RunFit`. See docs/analysis.md for every quantity,
the equations (Wichers et al. App. H), the logit smoothing and the bootstrap scheme.
"""

from inocray.analysis._bootstrap import SCALES, on_scale
from inocray.analysis._compare import Comparison, compare, comparisons_text, varying
from inocray.analysis._data import NO_PROMPT
from inocray.analysis._fit import fit_rows
from inocray.analysis._io import read_runs, save_fit
from inocray.analysis._leaks import Leak, leak_table, leaks_text
from inocray.analysis._predictors import PREDICTORS, PredictorComparison, compare_predictors, predictors_text
from inocray.analysis._result import (
    ElicitationLine,
    Estimate,
    PooledK,
    PromptFit,
    RunFit,
    TraitFit,
)
from inocray.analysis._text import COLUMNS, prompt_cells, trait_lines, trait_notes, trait_title
from inocray.analysis._search import Confirmed, Finalist, Objective, c0_rates, confirm
from inocray.analysis._report import plot_elicitation, plot_predictors, write_report

__all__ = [
    "COLUMNS",
    "Confirmed",
    "Finalist",
    "Objective",
    "c0_rates",
    "confirm",
    "Comparison",
    "compare",
    "comparisons_text",
    "varying",
    "NO_PROMPT",
    "SCALES",
    "ElicitationLine",
    "Estimate",
    "PooledK",
    "PromptFit",
    "RunFit",
    "TraitFit",
    "fit_rows",
    "on_scale",
    "prompt_cells",
    "read_runs",
    "save_fit",
    "trait_lines",
    "trait_notes",
    "trait_title",
    "plot_elicitation",
    "plot_predictors",
    "write_report",
    "Leak",
    "leak_table",
    "leaks_text",
    "PREDICTORS",
    "PredictorComparison",
    "compare_predictors",
    "predictors_text",
]
