"""`inocray run SWEEP.yaml`: train, evaluate and fit every trial of a sweep."""

from __future__ import annotations

import tempfile
from pathlib import Path

import click

from inocray.cli._quiet import quiet_terminal, verbose_option
from inocray.errors import InputError, reports_input_errors


@click.command("run")
@click.argument("sweep_file", type=click.Path(dir_okay=False), required=False)
@click.option("--run-dir", default=None, metavar="PATH|s3://BUCKET/PREFIX",
              help="Where rows, adapters and plots go [default: runs/NAME-HASH]: a local or NFS path, "
                   "or an S3 prefix. Rerunning into the same directory skips finished trials.")
@click.option("--resume", "resume", default=None, metavar="RUN_DIR",
              help="Continue the sweep recorded in this run directory (no sweep file needed): "
                   "finished trials are kept, unfinished ones continue from their last checkpoint.")
@click.option("--trust", is_flag=True,
              help="With --resume and no sweep file: import the setting module (a module path or .py file) "
                   "that the run directory's sweep.json names. Without it only built-in settings, or those "
                   "your own sweep file names, are imported.")
@click.option("--address", default=None,
              help="Address of a running Ray cluster; by default a local Ray is started.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Interface that a local Ray's dashboard listens on; 0.0.0.0 exposes it to the "
                   "network, without authentication (Serve listens on none: no HTTP proxy).")
@click.option("--take-over", is_flag=True,
              help="Run even though the run directory's lease names another driver whose heartbeat is "
                   "still fresh (that driver is gone, or must stop). A stale lease is taken over without it.")
@verbose_option("RUN_DIR/logs/ray.log")
@reports_input_errors
def command(sweep_file: str | None, run_dir: str | None, resume: str | None, trust: bool, address: str | None,
            host: str, take_over: bool, verbose: bool) -> None:
    """Run the sweep in SWEEP_FILE and print the fitted elicitation line and k."""
    from inocray import results
    from inocray.config import check_spec, load_sweep, parse_spec
    from inocray.run import log_fit, run_sweep, summarize

    if resume is not None:
        if run_dir is not None:
            raise InputError("give --resume RUN_DIR or --run-dir, not both")
        run_dir = resume = results.reachable(resume)
        source = str(results.record_path(resume))
        own = load_sweep(sweep_file) if sweep_file else None
        fields = parse_spec(results.sweep_record(resume)["spec"], source=source)  # its fields: imports nothing
        if not trust:
            _refuse_foreign_code(fields, own, source)
        recorded = check_spec(fields, source)  # imports the settings it names
        spec = own or recorded
        if spec.hash() != recorded.hash():
            raise InputError(f"{resume} holds sweep {recorded.hash()}, not {sweep_file} ({spec.hash()})")
    elif sweep_file is None:
        raise InputError("give a sweep file, or --resume RUN_DIR to continue a run")
    else:
        spec = load_sweep(sweep_file)
    run_dir = results.storage.location(run_dir) if run_dir else results.default_run_dir(spec)
    # Ray's and Serve's lines: the run directory's logs/ray.log, or a local file for an s3:// one.
    library_log = (results.log_path(run_dir, "ray") if isinstance(run_dir, Path)
                   else Path(tempfile.gettempdir()) / f"inocray-{spec.hash()}-ray.log")
    with quiet_terminal(verbose, library_log):
        run_dir = run_sweep(spec, run_dir, address=address, echo=click.echo, host=host, take_over=take_over)
    with results.opened(run_dir) as run:  # s3://: a temporary copy, its new files uploaded
        # The summary names its directory: the run directory, not the temporary copy.
        fit = summarize(run.local, spec, echo=lambda line: click.echo(run.named(line)))
    if fit is not None and (spec.tracking.mlflow or spec.tracking.wandb.project):
        log_fit(spec, fit)


def _refuse_foreign_code(recorded, own, source: str) -> None:
    """InputError if the run directory's sweep names a setting module (code) the user did not name."""
    from inocray.config import setting_entries
    from inocray.settings import BUILTIN

    named = {e.setting for e in setting_entries(own)} if own is not None else set()
    for entry in setting_entries(recorded):
        if entry.setting not in BUILTIN and entry.setting not in named:
            raise InputError(f"{source} names the setting module {entry.setting!r}, which would run as code "
                             "when imported; give the sweep file that names it (inocray run SWEEP --resume DIR), "
                             "or --trust if you trust this run directory")
