"""`inocray status RUN_DIR` or `inocray status JOB_ID --address URL`: how far a sweep is."""

from __future__ import annotations

import datetime
from pathlib import Path

import click

from inocray.cli._cluster import address_option
from inocray.errors import InputError, reports_input_errors


@click.command("status")
@click.argument("target")
@address_option(required=False)
@reports_input_errors
def command(target: str, address: str | None) -> None:
    """Trials done in run directory TARGET, or the state of job TARGET on the cluster at --address.

    An existing directory or an s3:// URI is read as a run directory (no Ray needed); anything
    else is a job id.
    """
    from inocray.results import storage

    if storage.is_remote(target) or Path(target).is_dir():
        from inocray.run import run_progress

        click.echo(run_progress(target).to_text(), nl=False)
        return
    if not address:
        raise InputError(f"{target} is not a run directory; for a job's status give the cluster's --address")
    from inocray.run import job_info

    info = job_info(address, target)
    click.echo(f"job {target}: {info.status}" + (f" ({info.message})" if info.message else ""))
    click.echo(f"entrypoint: {info.entrypoint}")
    run_dir = (info.metadata or {}).get("inocray_run_dir")
    if run_dir:
        click.echo(f"results (on the cluster): {run_dir}")
    times = [f"{what} {_utc(t)}" for what, t in (("started", info.start_time), ("ended", info.end_time)) if t]
    if times:
        click.echo("; ".join(times))


def _utc(ms: int) -> str:
    return datetime.datetime.fromtimestamp(ms / 1000, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
