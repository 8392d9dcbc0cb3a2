"""`inocray analyze RUN_DIR...`: fit the elicitation line and k, print them, save the table."""

from __future__ import annotations

from pathlib import Path

import click

from inocray.errors import reports_input_errors


@click.command("analyze")
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--scale",
    type=click.Choice(["raw", "logit", "both"]),
    default="raw",
    show_default=True,
    help="Fit rates, or log-odds of Jeffreys-smoothed rates, or both.",
)
@click.option(
    "--n-boot",
    type=click.IntRange(min=100),
    default=1000,
    show_default=True,
    help="Bootstrap draws per trait and scale.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Bootstrap seed.")
@reports_input_errors
def analyze(run_dirs: tuple[Path, ...], scale: str, n_boot: int, seed: int) -> None:
    """Fit RUN_DIR (several pool their seeds) and write analysis.parquet/.csv into the first."""
    from inocray.analysis import fit_rows, read_runs, save_fit

    fit = fit_rows(read_runs(run_dirs), scale=scale, n_boot=n_boot, seed=seed)
    click.echo(fit.to_text(), nl=False)
    for path in save_fit(fit, run_dirs[0]):
        click.echo(f"wrote {path}")


command = analyze
