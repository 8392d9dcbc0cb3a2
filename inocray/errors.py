"""Errors a user can fix. The CLI prints their message as one sentence and exits 2.

Every Ray worker imports this module: it needs nothing beyond the standard library.
"""

from __future__ import annotations

import functools
import sys
from typing import Callable, TypeVar

F = TypeVar("F", bound=Callable)

EXIT_BAD_INPUT = 2


class InputError(ValueError):
    """Bad input from the user (sweep file, data, arguments, run directory)."""


def echo_error(message: str) -> None:
    """Print `message` on stderr as one line, "error: ...": a message quoting the user's
    input (a YAML problem, a file's text) may hold line breaks."""
    print("error: " + " ".join(message.split()), file=sys.stderr, flush=True)


def reports_input_errors(fn: F) -> F:
    """Turn an InputError raised by a command into one line on stderr and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except InputError as e:
            echo_error(str(e))
            sys.exit(EXIT_BAD_INPUT)

    return wrapper  # type: ignore[return-value]
