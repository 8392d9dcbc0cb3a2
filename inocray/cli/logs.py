"""`inocray logs JOB_ID --address URL [--follow]`: the output of a submitted sweep."""

from __future__ import annotations

import click

from inocray.cli._cluster import address_option
from inocray.errors import reports_input_errors


@click.command("logs")
@click.argument("job_id")
@address_option()
@click.option("--follow", "-f", is_flag=True, help="Keep printing new output until the job ends.")
@reports_input_errors
def command(job_id: str, address: str, follow: bool) -> None:
    """Print the output of job JOB_ID so far (or as it comes, with --follow)."""
    from inocray.run import follow_logs, job_logs

    if follow:
        follow_logs(address, job_id, echo=lambda chunk: click.echo(chunk, nl=False))
    else:
        click.echo(job_logs(address, job_id), nl=False)
