"""Run directories in, analysis tables out; every file written atomically."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from inocray.errors import InputError
from inocray.results import ANALYSIS, read_rows, write_atomically

if TYPE_CHECKING:
    from inocray.analysis._result import RunFit

def save_fit(fit: RunFit, directory: str | os.PathLike) -> tuple[Path, Path]:
    """Write fit.to_table() as analysis.parquet and analysis.csv into `directory`."""
    table = fit.to_table()
    root = Path(directory)
    return (
        write_atomically(root / f"{ANALYSIS}.parquet", lambda tmp: pq.write_table(table, tmp)),
        write_atomically(root / f"{ANALYSIS}.csv", lambda tmp: pa_csv.write_csv(table, tmp)),
    )


def read_runs(run_dirs: Sequence[str | os.PathLike]) -> pa.Table:
    """The rows of every run directory, pooled; InputError for a missing or empty one."""
    paths = [Path(d) for d in run_dirs]
    if not paths:
        raise InputError("no run directory was given")
    if len({p.resolve() for p in paths}) < len(paths):
        raise InputError("a run directory was given twice; its trials would count double")
    tables = []
    for path in paths:
        if not path.is_dir():
            why = "is not a directory" if path.exists() else "does not exist"
            raise InputError(f"run directory {str(path)!r} {why}")
        table = read_rows(path)
        if table.num_rows == 0:
            raise InputError(f"run directory {str(path)!r} holds no result rows yet")
        tables.append(table)
    return pa.concat_tables(tables)
