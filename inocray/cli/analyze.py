"""`inocray analyze RUN_DIR...`: fit the elicitation line and k, print them, save the table."""

from __future__ import annotations

import contextlib

import click

from inocray.cli._limits import N_BOOT, SEED
from inocray.config import BY
from inocray.errors import InputError, reports_input_errors

PREDICTORS = ("sampled", "logprob")  # inocray.analysis.PREDICTORS, without importing the analysis for --help


@click.command("analyze")
@click.argument("run_dirs", nargs=-1, required=True)
@click.option(
    "--scale",
    type=click.Choice(["raw", "logit", "both"]),
    default="raw",
    show_default=True,
    help="Fit rates, or log-odds of Jeffreys-smoothed rates, or both.",
)
@click.option(
    "--n-boot",
    type=N_BOOT,
    default=1000,
    show_default=True,
    help="Bootstrap draws per trait and scale.",
)
@click.option("--seed", type=SEED, default=0, show_default=True, help="Bootstrap seed.")
@click.option("--by", type=click.Choice(BY), default=None, metavar="AXIS",
              help="Also put a grid's cells side by side along AXIS (a grid axis such as train.lr, or "
                   "setting or model): slope, pooled k and the strongest prompt's effect, with intervals.")
@click.option("--predictor", type=click.Choice(PREDICTORS), default=None,
              help="Of the two predictors of the trait left (sampled elicitation, logprob elicitation), "
                   "show this one's line, correlations, lack of fit and leave-one-prompt-out error "
                   "[default: both, and which predicts better].")
@reports_input_errors
def analyze(run_dirs: tuple[str, ...], scale: str, n_boot: int, seed: int, by: str | None,
            predictor: str | None) -> None:
    """Fit RUN_DIR (several pool their seeds) and write analysis.parquet/.csv into the first.

    A RUN_DIR may be a path or an s3:// URI; the tables go to the first one either way. A grid
    sweep's cells are fitted apart.
    """
    from inocray import results
    from inocray.analysis import (compare_predictors, comparisons_text, fit_rows, leak_table, leaks_text, predictors_text,
                                  read_runs, save_fit)

    for d in run_dirs:  # every one, before any is copied
        results.reachable(d)
    with contextlib.ExitStack() as stack:
        runs = [stack.enter_context(results.opened(d)) for d in run_dirs]
        rows = read_runs([run.local for run in runs])
        fit = fit_rows(rows, scale=scale, n_boot=n_boot, seed=seed)
        compared = comparisons_text(fit, by) if by else ""  # an axis the cells do not vary: before writing
        predictors = predictors_text(compare_predictors(rows, n_boot=n_boot, seed=seed, scale=scale), only=predictor)
        if predictor and not predictors:
            raise InputError(f"--predictor {predictor}: these rows have no logprob elicitation (measured since this "
                             "release, with eval.logprob_examples above 0) on four or more trained prompts")
        click.echo(fit.to_text(), nl=False)
        if compared:
            click.echo(f"\ncells side by side, by {by}:\n\n{compared}", nl=False)
        if predictors:
            click.echo(f"\n{predictors}", nl=False)
        leaks = leaks_text(leak_table(rows, seed=seed))
        if leaks:
            click.echo(f"\n{leaks}", nl=False)
        written = save_fit(fit, runs[0].local)
    for path in written:
        click.echo(f"wrote {runs[0].shown(path)}")


command = analyze
