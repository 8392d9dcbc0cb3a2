"""`inocray stop JOB_ID --address URL`: stop a submitted sweep."""

from __future__ import annotations

import click

from inocray.cli._cluster import address_option
from inocray.errors import reports_input_errors


@click.command("stop")
@click.argument("job_id")
@address_option()
@click.option("--wait", type=click.FloatRange(min=0), default=60, show_default=True,
              help="Seconds to wait for the job to end.")
@reports_input_errors
def command(job_id: str, address: str, wait: float) -> None:
    """Stop job JOB_ID and print its final status.

    Finished trials keep their rows: submitting the same sweep into the same run
    directory continues where it stopped.
    """
    from inocray.run import stop_job

    status = stop_job(address, job_id, wait_s=wait)
    if status in ("SUCCEEDED", "FAILED", "STOPPED"):
        click.echo(f"job {job_id}: {status}")
    else:
        click.echo(f"job {job_id}: stop requested, still {status} after {wait:g} s")
