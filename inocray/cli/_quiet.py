"""A terminal with only inocray's own lines: Ray's and Serve's log records go to a file.

Ray (logger "ray") and Serve ("ray.serve") each log to stderr through a handler of their own
and do not propagate; `libraries_to(path)` swaps those handlers for one that appends to `path`
(its directory made on the first record, so the run directory may not exist yet).
`quiet_terminal` is what the commands that start Ray use (run, make-data, screen): their
`-v` (`verbose_option`) leaves the lines on the terminal, and without it the file is named
once the command's work is done.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Callable, Iterator

import click

__all__ = ["libraries_to", "quiet_terminal", "verbose_option"]

LIBRARY_LOGGERS = ("ray", "ray.serve")  # the loggers with handlers of their own on the driver
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class _LazyFile(logging.FileHandler):
    """A FileHandler that makes its file's directory when the first record comes."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, delay=True, encoding="utf-8")
        self.setFormatter(logging.Formatter(FORMAT))

    def _open(self):
        Path(self.baseFilename).parent.mkdir(parents=True, exist_ok=True)
        return super()._open()


@contextlib.contextmanager
def libraries_to(path: Path) -> Iterator[None]:
    """Within the block, Ray's and Serve's driver-side records go to `path`, not the terminal."""
    import ray  # noqa: F401 (configures the "ray" logger)
    import ray.serve  # noqa: F401 (configures "ray.serve")

    handler = _LazyFile(path)
    saved = {}
    for name in LIBRARY_LOGGERS:
        logger = logging.getLogger(name)
        saved[name] = logger.handlers[:]
        logger.handlers = [handler]
    try:
        yield
    finally:
        for name, handlers in saved.items():
            logging.getLogger(name).handlers = handlers
        handler.close()


def verbose_option(where: str):
    """The `-v/--verbose` flag of a command that starts Ray; `where`: the file the lines go to without it."""
    return click.option("-v", "--verbose", is_flag=True,
                        help=f"Show Ray's and Serve's own log lines on the terminal; by default they go to {where}.")


@contextlib.contextmanager
def quiet_terminal(verbose: bool, path: Path, echo: Callable[[str], None] = click.echo) -> Iterator[None]:
    """Within the block, Ray's and Serve's lines go to `path` (unless `verbose`); after it, one
    line names that file if anything was written to it."""
    if verbose:
        yield
        return
    with libraries_to(path):
        yield
    if path.exists():
        echo(f"Ray's and Serve's log: {path}")
