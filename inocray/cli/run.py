"""`inocray run SWEEP.yaml`: train, evaluate and fit every trial of a sweep."""

from __future__ import annotations

from pathlib import Path

import click

from inocray.errors import reports_input_errors


@click.command("run")
@click.argument("sweep_file", type=click.Path(dir_okay=False))
@click.option("--run-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where rows, adapters and plots go [default: runs/NAME-HASH]. "
                   "Rerunning into the same directory skips finished trials.")
@click.option("--address", default=None,
              help="Address of a running Ray cluster; by default a local Ray is started.")
@reports_input_errors
def command(sweep_file: str, run_dir: Path | None, address: str | None) -> None:
    """Run the sweep in SWEEP_FILE and print the fitted elicitation line and k."""
    from inocray.spec import load_spec
    from inocray.summary import summarize
    from inocray.sweep import default_run_dir, run_sweep

    spec = load_spec(sweep_file)
    run_dir = run_sweep(spec, run_dir or default_run_dir(spec), address=address, echo=click.echo)
    summarize(run_dir, spec, echo=click.echo)
