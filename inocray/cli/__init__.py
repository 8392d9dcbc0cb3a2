"""The ``inocray`` command: one click group, one small module per subcommand."""

from __future__ import annotations

import contextlib
from typing import Iterator

import click

from inocray.errors import EXIT_BAD_INPUT, echo_error

__all__ = ["main"]


class _UsageLine(click.ClickException):
    """A usage error of click's (unknown option, a value out of range), shown as InputError is."""

    exit_code = EXIT_BAD_INPUT

    def show(self, file=None) -> None:
        echo_error(self.message)


@contextlib.contextmanager
def _usage_in_one_line() -> Iterator[None]:
    try:
        yield
    except click.exceptions.NoArgsIsHelpError:  # bare `inocray`: the help text is the answer
        raise
    except click.NoSuchOption as e:
        maybe = f" (did you mean {' or '.join(sorted(e.possibilities))}?)" if e.possibilities else ""
        raise _UsageLine(f"no such option {e.option_name}{maybe}{_help_hint(e)}") from None
    except click.ClickException as e:
        message = e.format_message().rstrip(".")
        if message[:1].isupper() and message[1:2].islower():  # click's "Invalid value ..." style
            message = message[0].lower() + message[1:]
        raise _UsageLine(message + _help_hint(e)) from None


def _help_hint(e: click.ClickException) -> str:
    ctx = getattr(e, "ctx", None)
    return f" (see '{ctx.command_path} --help')" if ctx is not None else ""


class _Group(click.Group):
    """A group whose own usage errors, like every InputError, are one line and exit code 2."""

    def make_context(self, *args, **kwargs) -> click.Context:
        with _usage_in_one_line():
            return super().make_context(*args, **kwargs)

    def invoke(self, ctx: click.Context):
        with _usage_in_one_line():  # parsing a subcommand's arguments happens in here
            return super().invoke(ctx)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="inocray")
def main() -> None:
    """Run inoculation-prompting sweeps and fit what they show."""


def _register() -> None:
    # Imported here so that `inocray --help` stays fast and each command owns its imports.
    from inocray.cli import analyze, logs, make_data, power, report, run, screen, search, status, stop, submit, validate

    for module in (run, validate, screen, search, make_data, power, analyze, report, submit, status, logs, stop):
        main.add_command(module.command)


_register()
