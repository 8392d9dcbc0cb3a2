"""What the commands that talk to a cluster (submit, status, logs, stop) share."""

from __future__ import annotations

import click

ADDRESS_HELP = ("The head's dashboard URL, e.g. http://127.0.0.1:8265 through an ssh tunnel "
                "[env: RAY_API_SERVER_ADDRESS].")


def address_option(required: bool = True):
    """`--address URL` of the cluster's dashboard, also read from RAY_API_SERVER_ADDRESS."""
    return click.option("--address", envvar="RAY_API_SERVER_ADDRESS", required=required,
                        metavar="URL", help=ADDRESS_HELP)

