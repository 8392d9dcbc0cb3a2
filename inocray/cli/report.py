"""`inocray report RUN_DIR`: write a self-contained report.html into the run directory."""

from __future__ import annotations

from pathlib import Path

import click

from inocray.errors import reports_input_errors


@click.command("report")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--n-boot", type=click.IntRange(min=100), default=1000, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True, help="Bootstrap seed.")
@reports_input_errors
def report(run_dir: Path, n_boot: int, seed: int) -> None:
    """Plots and tables of RUN_DIR in one HTML file; prints its path."""
    from inocray.report import write_report

    click.echo(str(write_report(run_dir, n_boot=n_boot, seed=seed)))


command = report
