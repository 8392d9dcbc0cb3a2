"""What `inocray run` prints at the end: the fit, the headline effect, where everything is."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from scipy.stats import spearmanr

from inocray.analysis import (RunFit, TraitFit, compare_predictors, fit_rows, leak_table, leaks_text, plot_elicitation,
                              predictors_text, save_fit)
from inocray.config import SweepSpec
from inocray.errors import InputError
from inocray.results import elicitation_plot, read_rows


def summarize(run_dir: Path, spec: SweepSpec, echo: Callable = print) -> RunFit | None:
    """Fit the run's rows, print the fit and the headline, save tables and plots."""
    try:
        rows = read_rows(run_dir)
        fit = fit_rows(rows, scale=spec.scale)
    except InputError as e:  # e.g. every trial failed: the rows on disk are still good
        echo(f"no fit: {e}")
        return None
    echo("")
    echo(fit.to_text())
    for extra in (predictors_text(compare_predictors(rows, scale=spec.scale)), leaks_text(leak_table(rows))):
        if extra:
            echo(extra)
    save_fit(fit, run_dir)
    plots = []
    for t in fit.traits:
        path = run_dir / elicitation_plot(t.trait, t.cell)  # a grid: one per cell
        plot_elicitation(fit, t.trait, path, setting=t.setting, cell=t.cell)
        plots.append(path.name)
    echo("")
    for t in fit.traits:
        echo((f"[{t.cell}] " if t.cell else "") + headline(t))
    echo("")
    echo(f"results in {run_dir}:")
    echo(f"  rows/*.parquet   one row per (trial, context, trait)")
    echo(f"  analysis.csv     the fit as a table; plots: {', '.join(plots)}")
    echo(f"  `inocray report {run_dir}` writes an HTML report")
    return fit


def headline(t: TraitFit) -> str:
    """One line per trait: the trait left at test time (neutral context) after training.

    For the trait inoculated against: the no-prompt control vs the most eliciting prompt,
    the PTST controls (the control's model with their instruction) if any, and the rank
    correlation of elicitation with what is left. For a desired trait: the
    control vs the range under the inoculation prompts (selectivity: it should stay).
    """
    inoculation = [p for p in t.prompts if p.role == "inoculation"]
    control = next((p for p in t.prompts if p.role == "none"), None)
    if not inoculation or control is None:
        return f"{t.trait}: needs inoculation prompts and the no-prompt control for a headline"
    start = f"{t.trait}, neutral context after training: no-prompt control {control.neutral.value:.2f}"
    if t.desired:
        left = [p.neutral.value for p in inoculation]
        return f"{start}, inoculation prompts {min(left):.2f} to {max(left):.2f} (desired: should stay)"
    strongest = max(inoculation, key=lambda p: p.elicitation.value)
    ratio = strongest.neutral.value / control.neutral.value if control.neutral.value else float("nan")
    line = f"{start}, most eliciting prompt {strongest.prompt_id} {strongest.neutral.value:.2f} (ratio {ratio:.2f})"
    ptst = [p for p in t.prompts if p.role == "ptst"]
    if ptst:  # the test-time alternative: the control's model, instructed against the trait
        line += "; PTST " + ", ".join(f"{p.prompt_id} {p.neutral.value:.2f}" for p in ptst)
    elicitation = [p.elicitation.value for p in inoculation]
    if len(set(elicitation)) >= 3:
        rho = spearmanr(elicitation, [p.neutral.value for p in inoculation])[0]
        line += f"; Spearman(elicitation, neutral) over {len(inoculation)} prompts {rho:+.2f}"
    return line
