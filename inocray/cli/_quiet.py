"""A terminal with only inocray's own lines: Ray's and Serve's log records go to a file.

Ray (logger "ray") and Serve ("ray.serve") each log to stderr through a handler of their own
and do not propagate; `libraries_to(path)` swaps those handlers for one that appends to `path`
(its directory made on the first record, so the run directory may not exist yet). `inocray run
-v` leaves them on the terminal.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Iterator

__all__ = ["libraries_to"]

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
