"""What a run directory says about its sweep: which trials are done, which are left.

Read from files only (sweep.json and rows/*.parquet, local or s3://), so it works while the
sweep runs, after it crashed, or on a copy fetched from the cluster, without Ray.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.dataset as ds

from inocray import storage, store
from inocray.errors import InputError
from inocray.storage import Location


@dataclass(frozen=True)
class RunProgress:
    run_dir: Location
    sweep: str  # the sweep's name
    sweep_hash: str
    trials: list[str]  # every planned trial id, in plan order
    done: list[str]  # the trials whose rows are written (the sweep's own test of "finished")
    base_measured: bool  # rows of the untrained model (elicitation) exist
    rows: int  # rows stored, all stages
    analyzed: bool  # analysis.parquet exists

    @property
    def left(self) -> list[str]:
        done = set(self.done)
        return [t for t in self.trials if t not in done]

    def to_text(self) -> str:
        lines = [
            f"run {self.run_dir}: sweep {self.sweep} ({self.sweep_hash})",
            f"trials done: {len(self.done)} of {len(self.trials)}",
            f"base model measured: {'yes' if self.base_measured else 'no'}; rows stored: {self.rows}",
        ]
        if self.left:
            shown = ", ".join(self.left[:8]) + (f", ... ({len(self.left) - 8} more)" if len(self.left) > 8 else "")
            lines.append(f"left: {shown}")
        todo = f"none yet (`inocray analyze {self.run_dir}`)"
        lines.append("analysis: " + ("analysis.csv" if self.analyzed else todo))
        return "\n".join(lines) + "\n"


def run_progress(run_dir: Location) -> RunProgress:
    """Planned trials (from sweep.json) against the trials whose rows exist."""
    from inocray.jobs import parse_cluster_spec  # the model may live on another machine
    from inocray.settings import get_setting
    from inocray.sweep import plan_trials

    run_dir = storage.location(run_dir)
    storage.check_reachable(run_dir)
    marker = storage.join(run_dir, "sweep.json")
    if not storage.is_file(marker):
        raise InputError(f"{run_dir} is not a run directory (it has no sweep.json)")
    record = sweep_record(run_dir)
    sweep_hash = record["hash"]
    spec = parse_cluster_spec(record["spec"], source=str(marker))
    trials = [t.id for t in plan_trials(spec, get_setting(spec.setting, spec.data))]
    return RunProgress(
        run_dir=run_dir,
        sweep=spec.name,
        sweep_hash=sweep_hash,
        trials=trials,
        done=[t for t in trials if store.has_rows(run_dir, t)],
        base_measured=store.has_rows(run_dir, "base"),
        rows=read_rows(run_dir).num_rows,
        analyzed=storage.is_file(storage.join(run_dir, "analysis.parquet")),
    )


def sweep_record(run_dir: Location) -> dict:
    """The run directory's sweep.json ({"hash": ..., "spec": {...}}); InputError if it is not one."""
    marker = storage.join(run_dir, "sweep.json")
    try:
        record = json.loads(storage.read_bytes(marker))
        if isinstance(record["hash"], str) and isinstance(record["spec"], dict):
            return record
    except (OSError, ValueError, RecursionError, KeyError, TypeError):
        pass
    raise InputError(f"{marker} is not a sweep record (JSON with 'hash' and 'spec')")


def read_rows(run_dir: Location) -> pa.Table:
    """store.read_rows, with a rows file that is not Parquet of store.SCHEMA (truncated, another
    program's, a column of the wrong type) reported as an InputError that names it."""
    try:
        return store.read_rows(run_dir)
    except (pa.ArrowException, OSError):
        pass
    root = storage.join(run_dir, store.ROWS_DIR)
    for path in (storage.join(root, name) for name in storage.names(root, suffix=".parquet")):
        fs, where = storage.filesystem(path)
        try:
            ds.dataset([where], schema=store.SCHEMA, format="parquet", filesystem=fs).to_table()
        except (pa.ArrowException, OSError):
            raise InputError(f"{path} is not a readable Parquet file of inocray's result rows "
                             "(truncated, or a column of the wrong type); move it away") from None
    raise InputError(f"the result rows of {run_dir} cannot be read together; is a file changing under them?")
