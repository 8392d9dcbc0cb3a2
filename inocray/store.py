"""Parquet results: one schema, one file per trial, written atomically.

A run directory holds ``rows/<trial_id>.parquet``. Each file is written to a temporary
name and renamed into place, so a reader (or a resumed sweep) sees a trial's rows
completely or not at all, and a retried trial replaces its file instead of adding rows.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable, Iterable, Mapping

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

# One row per (trial, context, trait). Base-model rows (stage "base") carry the
# elicitation T(M0, Cs) and T(M0, C0); rows of stage "data" carry T*, the trait level
# of the training responses; rows of stage "trained" carry T(Ms, C0) and T(Ms, Cs), and
# rows of stage "checkpoint" the same for an intermediate snapshot of the trial (at `step`).
SCHEMA = pa.schema(
    [
        ("sweep_hash", pa.string()),  # hash of the validated sweep spec
        ("setting", pa.string()),
        ("trial_id", pa.string()),  # "base" / "data" for the untrained model and data
        ("stage", pa.string()),  # "base" | "data" | "checkpoint" | "trained"
        ("prompt_id", pa.string()),  # prompt s; "none" for the no-prompt control
        ("prompt_text", pa.string()),
        ("prompt_role", pa.string()),  # "inoculation" | "none" | "irrelevant"
        ("seed", pa.int64()),  # training seed; 0 where no training happened
        ("step", pa.int64()),  # optimizer steps behind the measurement; 0 untrained
        ("context", pa.string()),  # "neutral" (C0) | "prompt" (Cs)
        ("trait", pa.string()),
        ("desired", pa.bool_()),  # the trait training should keep (not inoculate)
        ("rate", pa.float64()),  # fraction of the n samples that show the trait
        ("n", pa.int64()),  # completions scored (0: none could be, rate is NaN)
    ]
)

ROWS_DIR = "rows"


def rows_path(run_dir: str | os.PathLike, trial_id: str) -> Path:
    if not trial_id or "/" in trial_id or trial_id.startswith("."):
        raise ValueError(f"trial id {trial_id!r} is not a plain file name")
    return Path(run_dir) / ROWS_DIR / f"{trial_id}.parquet"


def write_atomically(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Call write(temporary path) beside `path`, then rename it into place.

    A reader sees the old file or the new one, never half of one; a failed write leaves
    nothing behind.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a result is for everyone to read
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def write_rows(run_dir: str | os.PathLike, trial_id: str, rows: Iterable[Mapping]) -> Path:
    """Write one trial's rows atomically (temp file + rename); replaces earlier rows."""
    rows = list(rows)
    for r in rows:
        missing = [name for name in SCHEMA.names if name not in r]
        if missing:  # from_pylist would store nulls silently
            raise ValueError(f"a row of trial {trial_id!r} lacks {', '.join(missing)}")
    table = pa.Table.from_pylist(rows, schema=SCHEMA)
    path = rows_path(run_dir, trial_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_atomically(path, lambda tmp: pq.write_table(table, tmp))


def has_rows(run_dir: str | os.PathLike, trial_id: str) -> bool:
    """Whether the trial's rows file exists and is whole (a damaged one is redone, not trusted)."""
    path = rows_path(run_dir, trial_id)
    if not path.exists():
        return False
    try:
        pq.read_metadata(path)
    except (OSError, pa.ArrowException):
        return False
    return True


def read_rows(run_dir: str | os.PathLike) -> pa.Table:
    """All finished rows of a run as one Arrow table (empty table if none yet)."""
    root = Path(run_dir) / ROWS_DIR
    files = sorted(str(p) for p in root.glob("*.parquet")) if root.is_dir() else []
    if not files:
        return SCHEMA.empty_table()
    return ds.dataset(files, schema=SCHEMA, format="parquet").to_table()
