"""The ``inocray`` command: one click group, one small module per subcommand."""

from __future__ import annotations

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="inocray")
def main() -> None:
    """Run inoculation-prompting sweeps and fit what they show."""


def _register() -> None:
    # Imported here so that `inocray --help` stays fast and each command owns its imports.
    from inocray.cli import analyze, logs, report, run, screen, status, stop, submit, validate

    for module in (run, validate, screen, analyze, report, submit, status, logs, stop):
        main.add_command(module.command)


_register()
