"""The model cache: directories built once, named by a content hash, complete or absent.

`cached_build(kind, key, build)` returns `CACHE/kind/key`, building it first if needed. The
build writes into a temporary directory beside it that is renamed into place, so a directory
that exists is whole; a file lock makes a second builder (another process, another trial)
wait and reuse the first one's result.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

__all__ = ["cached_build", "default_cache_root"]


def default_cache_root() -> Path:
    """`$INOCRAY_CACHE`, or ~/.cache/inocray."""
    return Path(os.environ.get("INOCRAY_CACHE") or Path.home() / ".cache" / "inocray")


def cached_build(kind: str, key: str, build: Callable[[Path], None], cache_root: Path | None = None) -> tuple[Path, bool]:
    """(the directory `kind/key` in the cache, whether this call built it).

    `build(tmp)` writes the directory's content into `tmp`; if it raises, nothing is left.
    """
    parent = (Path(cache_root) if cache_root is not None else default_cache_root()) / kind
    final = parent / key
    if final.is_dir():
        return final, False
    parent.mkdir(parents=True, exist_ok=True)
    with open(parent / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a second builder waits here, then finds `final`
        if final.is_dir():
            return final, False
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=parent))
        try:
            build(tmp)
            os.rename(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return final, True
