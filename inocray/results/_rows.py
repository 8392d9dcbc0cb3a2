"""Parquet results: one schema, one file per trial, written atomically.

A run directory holds ``rows/<trial_id>.parquet`` (rundir.py). Each file is written to a temporary
name and renamed into place (in an s3:// run directory: uploaded whole, see storage.py), so a
reader (or a resumed sweep) sees a trial's rows completely or not at all, and a retried
trial replaces its file instead of adding rows.
"""

from __future__ import annotations

import os
from typing import Iterable, Mapping

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from inocray.results import storage
from inocray.errors import InputError
from inocray.config import AXES, axis_type
from inocray.results._layout import ROWS_DIR, record_path, rows_path, sweep_record
from inocray.results.storage import Location, write_atomically

__all__ = ["SCHEMA", "write_atomically", "write_rows", "has_rows", "read_rows"]

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
        ("context", pa.string()),  # "neutral" (C0) | "prompt" (Cs) | "probe:NAME" (a leak probe)
        ("trait", pa.string()),
        ("desired", pa.bool_()),  # the trait training should keep (not inoculate)
        ("rate", pa.float64()),  # fraction of the n samples that show the trait
        ("n", pa.int64()),  # completions scored (0: none could be, rate is NaN)
        # Where in the sweep's grid (grid.py) the row belongs: added after the first release,
        # so rows written before lack them; read back as model "" and cell "", axes null.
        ("model", pa.string()),  # the base model as the sweep names it
        ("cell", pa.string()),  # the grid cell (grid.Cell.id); "" untrained, or without a grid
        # the value of each axis a grid can vary, in the cell (untrained rows: eval axes only)
        *[(axis, {float: pa.float64(), int: pa.int64(), str: pa.string()}[axis_type(axis)]) for axis in AXES],
        # Base-model rows: the prompt's logprob elicitation L(s) (evaluation/_logprob.py) and its
        # interval, the same on each trait's row; null on other rows, and in older run directories.
        ("logprob", pa.float64()),
        ("logprob_low", pa.float64()),
        ("logprob_high", pa.float64()),
        # The Ray node (its id) whose training group finished the trial; null on untrained rows,
        # and in run directories written before it was recorded.
        ("node", pa.string()),
    ]
)
LOGPROB_COLUMNS = ("logprob", "logprob_low", "logprob_high")
GRID_COLUMNS = ("model", "cell", *AXES)  # null when a row does not give them
NODE_COLUMNS = ("node",)
OPTIONAL_COLUMNS = (*GRID_COLUMNS, *LOGPROB_COLUMNS, *NODE_COLUMNS)  # absent from older rows, or null where they do not apply

def write_rows(run_dir: Location | os.PathLike, trial_id: str, rows: Iterable[Mapping], folder: str = ROWS_DIR) -> Location:
    """Write one trial's rows atomically (temp file + rename, or one upload); replaces earlier rows.
    `folder`: ROWS_DIR for a finished trial (its proof), or a search's STOPPED_DIR / PARTIAL_DIR."""
    rows = [{c: None for c in OPTIONAL_COLUMNS} | dict(r) for r in rows]
    for r in rows:
        missing = [name for name in SCHEMA.names if name not in r]
        if missing:  # from_pylist would store nulls silently
            raise ValueError(f"a row of trial {trial_id!r} lacks {', '.join(missing)}")
    table = pa.Table.from_pylist(rows, schema=SCHEMA)
    path = rows_path(run_dir, trial_id, folder)
    storage.make_dir(storage.join(run_dir, folder))
    return write_atomically(path, lambda tmp: pq.write_table(table, tmp))


def has_rows(run_dir: Location | os.PathLike, trial_id: str, sweep_hash: str, folder: str = ROWS_DIR) -> bool:
    """Whether the trial's rows file proves that it finished: Parquet of SCHEMA, at least one row,
    every row of sweep `sweep_hash`, and rows of this trial among them (the no-prompt control's
    file also holds its PTST rows, under their own ids). A damaged, empty or foreign file is
    redone, not trusted. `folder` STOPPED_DIR: whether a search stopped it early."""
    path = rows_path(run_dir, trial_id, folder)
    if not storage.exists(path):  # an unreachable s3 endpoint raises here: not "unfinished"
        return False
    fs, where = storage.filesystem(path)
    try:
        table = pq.read_table(where, filesystem=fs)
    except (OSError, pa.ArrowException):
        return False
    if not _of_schema(table.schema) or table.num_rows == 0:
        return False
    hashes = set(table.column("sweep_hash").to_pylist())
    return hashes == {sweep_hash} and trial_id in set(table.column("trial_id").to_pylist())


def trial_rows(run_dir: Location | os.PathLike, trial_id: str, folder: str = ROWS_DIR) -> list[dict]:
    """The rows of one trial's file in `folder` ([] if it has none)."""
    path = rows_path(run_dir, trial_id, folder)
    if not storage.exists(path):
        return []
    fs, where = storage.filesystem(path)
    return pq.read_table(where, filesystem=fs).to_pylist()


def _of_schema(schema: pa.Schema) -> bool:
    """Every column is one of SCHEMA's, of its type, and only the grid's and the node's columns
    may be absent (rows written before they were recorded)."""
    for name in schema.names:
        if name not in SCHEMA.names or not schema.field(name).type.equals(SCHEMA.field(name).type):
            return False
    return all(name in schema.names for name in SCHEMA.names if name not in (*GRID_COLUMNS, *NODE_COLUMNS))


def read_rows(run_dir: Location | os.PathLike, other_sweeps: bool = False, folder: str = ROWS_DIR) -> pa.Table:
    """All finished rows of a run as one Arrow table (empty table if none yet).

    A rows file that is not Parquet of SCHEMA (truncated, another program's, a column of the
    wrong type) is an InputError that names it, and so are rows of another sweep than the run
    directory's (its sweep.json; without one, rows of more than one sweep), unless
    `other_sweeps` (what `inocray status` counts). `folder` STOPPED_DIR: the rows of the trials a
    search stopped early instead.
    """
    root = storage.join(run_dir, folder)
    names = storage.names(root, suffix=".parquet")
    if not names:
        return SCHEMA.empty_table()
    fs, path = storage.filesystem(root)
    try:
        table = with_defaults(ds.dataset([f"{path}/{n}" for n in names], schema=SCHEMA, format="parquet",
                                         filesystem=fs).to_table())
    except (pa.ArrowException, OSError):
        table = None
    if table is None:
        for name in names:
            try:
                ds.dataset([f"{path}/{name}"], schema=SCHEMA, format="parquet", filesystem=fs).to_table()
            except (pa.ArrowException, OSError):
                raise InputError(f"{storage.join(root, name)} is not a readable Parquet file of inocray's result rows "
                                 "(truncated, or a column of the wrong type); move it away") from None
        raise InputError(f"the result rows of {run_dir} cannot be read together; is a file changing under them?")
    if not other_sweeps:
        _check_one_sweep(run_dir, table)
    return table


def _check_one_sweep(run_dir: Location | os.PathLike, table: pa.Table) -> None:
    """InputError when `table` holds rows of a sweep other than the run directory's own."""
    hashes = sorted(set(table.column("sweep_hash").to_pylist()), key=str)
    own = sweep_record(run_dir)["hash"] if storage.is_file(record_path(run_dir)) else hashes[0]
    foreign = [h for h in hashes if h != own]
    if foreign:
        where = [t for t, h in zip(table.column("trial_id").to_pylist(), table.column("sweep_hash").to_pylist())
                 if h == foreign[0]]
        raise InputError(f"{run_dir} holds rows of sweep {foreign[0]} (trial {where[0]}), not only of its own sweep "
                         f"{own}; move those rows files out of {storage.join(run_dir, ROWS_DIR)}")


def with_defaults(table: pa.Table) -> pa.Table:
    """`table` in SCHEMA, with the grid's columns that rows of an older release lack (null, or
    absent from the table) read as model "" and cell "" (the one cell of a sweep)."""
    for name in SCHEMA.names:
        if name not in table.column_names:
            table = table.append_column(SCHEMA.field(name), pa.nulls(table.num_rows, SCHEMA.field(name).type))
    for name in ("model", "cell"):
        filled = table.column(name).fill_null("")
        table = table.set_column(table.column_names.index(name), name, filled)
    return table.select(SCHEMA.names)
