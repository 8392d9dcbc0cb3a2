"""`inocray submit SWEEP.yaml --address URL`: run a sweep as a Ray Job on a cluster."""

from __future__ import annotations

import click

from inocray.cli._cluster import address_option
from inocray.errors import reports_input_errors


@click.command("submit")
@click.argument("sweep_file", type=click.Path(dir_okay=False))
@address_option()
@click.option("--run-dir", default=None, metavar="PATH",
              help="Where results go, an absolute path on the cluster's shared storage "
                   "[default: /mnt/shared/runs/NAME-HASH]. Resubmitting into the same "
                   "directory skips finished trials.")
@click.option("--validate-only", is_flag=True,
              help="Submit `inocray validate` instead of `inocray run`: checks that the cluster "
                   "has inocray and accepts the sweep, in seconds.")
@reports_input_errors
def command(sweep_file: str, address: str, run_dir: str | None, validate_only: bool) -> None:
    """Check SWEEP_FILE here, then run it on the cluster; print the job id and where to watch it.

    Only the sweep file travels with the job: inocray is installed on the cluster's nodes
    (cluster.yaml), and `model:` must name a directory on the cluster.
    """
    from inocray.run import submit_sweep

    job = submit_sweep(sweep_file, address, run_dir=run_dir, validate_only=validate_only)
    click.echo(f"submitted job {job.job_id}: {job.entrypoint}")
    if job.run_dir:
        click.echo(f"results (on the cluster): {job.run_dir}")
    click.echo(f"dashboard: {job.dashboard_url}")
    click.echo(f"follow it: inocray logs {job.job_id} --address {job.address} --follow")
