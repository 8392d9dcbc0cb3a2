"""`inocray report RUN_DIR`: write a self-contained report.html into the run directory."""

from __future__ import annotations

import click

from inocray.cli._limits import N_BOOT, SEED
from inocray.errors import reports_input_errors


@click.command("report")
@click.argument("run_dir")
@click.option("--n-boot", type=N_BOOT, default=1000, show_default=True, help="Bootstrap draws per trait.")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Bootstrap seed.")
@reports_input_errors
def report(run_dir: str, n_boot: int, seed: int) -> None:
    """Plots and tables of RUN_DIR (a path or an s3:// URI) in one HTML file; prints where it went."""
    from inocray.analysis import write_report
    from inocray.results import opened

    with opened(run_dir) as run:  # s3://: a temporary copy, the page uploaded
        page = write_report(run.local, n_boot=n_boot, seed=seed)
        if run.local != run.where:  # the page names its run directory: the URI, not the copy
            page.write_text(run.named(page.read_text(encoding="utf-8")), encoding="utf-8")
    click.echo(run.shown(page))


command = report
