"""What a run directory says about its sweep: which trials are done, which are left.

Read from files only (the sweep record and the rows, local or s3://; see inocray.results), so it
works while the sweep runs, after it crashed, or on a copy fetched from the cluster, without
Ray, and without the setting's data files or models, which may exist only on the cluster.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from inocray.config import make_plan, parse_spec
from inocray.errors import InputError

from inocray.results import ANALYSIS, STOPPED_DIR, SWEEP_RECORD, Location, has_rows, reachable, read_rows, \
    record_path, search_path, storage, sweep_record


@dataclass(frozen=True)
class RunProgress:
    run_dir: Location
    sweep: str  # the sweep's name
    sweep_hash: str
    trials: list[str]  # every planned trial id, in plan order
    done: list[str]  # the trials whose rows prove them finished (results.has_rows, the sweep's own test)
    base_measured: bool  # rows of the untrained model (elicitation) exist, for every base model
    rows: int  # rows of this sweep stored, all stages
    analyzed: bool  # analysis.parquet exists
    cells: dict[str, list[str]] = field(default_factory=dict)  # grid cell -> its trial ids; {} without a grid
    foreign_rows: int = 0  # rows of another sweep in rows/: analyze refuses the run directory until they go
    stopped: list[str] = field(default_factory=list)  # a search's trials its scheduler stopped early (stopped/)
    search: dict | None = None  # a search's run directory: its summary.json once it ended, else {}

    @property
    def left(self) -> list[str]:
        done = set(self.done)
        return [t for t in self.trials if t not in done]

    def to_text(self) -> str:
        lines = [
            f"run {self.run_dir}: sweep {self.sweep} ({self.sweep_hash})",
            f"trials done: {len(self.done)} of {len(self.trials)}",
        ]
        if self.search is not None:
            lines[-1] = (f"a search over the grid of {len(self.trials)} trials: {len(self.done)} trained to the end, "
                         f"{len(self.stopped)} stopped early at a rung (not finished: rows in {STOPPED_DIR}/, never fitted)")
            if self.search.get("winner"):
                lines.append(f"winner: {self.search['winner']} ({self.search['steps']} training steps, "
                             f"{self.search['share_of_grid']:.0%} of the grid's)")
        done = set(self.done)
        lines += [f"  cell {cell}: {sum(t in done for t in ids)} of {len(ids)}" for cell, ids in self.cells.items()]
        lines.append(f"base model measured: {'yes' if self.base_measured else 'no'}; rows stored: {self.rows}")
        if self.foreign_rows:
            lines.append(f"rows of another sweep: {self.foreign_rows} (not counted; `inocray analyze` refuses this "
                         "run directory until their files are moved out of rows/)")
        if self.left and self.search is None:  # a search leaves most of its grid untried by design
            shown = ", ".join(self.left[:8]) + (f", ... ({len(self.left) - 8} more)" if len(self.left) > 8 else "")
            lines.append(f"left: {shown}")
        todo = f"none yet (`inocray analyze {self.run_dir}`)"
        lines.append("analysis: " + (f"{ANALYSIS}.csv" if self.analyzed else todo))
        return "\n".join(lines) + "\n"


def run_progress(run_dir: str | Location) -> RunProgress:
    """Planned trials (from the sweep record) against the trials whose rows exist."""
    run_dir = reachable(run_dir)
    marker = record_path(run_dir)
    if not storage.is_file(marker):
        raise InputError(f"{run_dir} is not a run directory (it has no {SWEEP_RECORD})")
    record = sweep_record(run_dir)
    plan = make_plan(parse_spec(record["spec"], source=str(marker)))  # its fields only: the plan needs no more
    trials = [t.id for t in plan.trials]
    cells = {c.id: [t.id for t in plan.cell_trials(c)] for c in plan.cells} if plan.is_grid else {}
    rows = read_rows(run_dir, other_sweeps=True)
    own = rows.column("sweep_hash").to_pylist().count(record["hash"])
    return RunProgress(
        run_dir=run_dir,
        sweep=plan.spec.name,
        sweep_hash=record["hash"],
        trials=trials,
        done=[t for t in trials if has_rows(run_dir, t, record["hash"])],
        base_measured=all(has_rows(run_dir, m.id, record["hash"]) for m in plan.base),
        rows=own,
        foreign_rows=rows.num_rows - own,
        analyzed=storage.is_file(storage.join(run_dir, f"{ANALYSIS}.parquet")),
        cells=cells,
        stopped=[t for t in trials if has_rows(run_dir, t, record["hash"], STOPPED_DIR)],
        search=_search_summary(run_dir),
    )


def _search_summary(run_dir: Location) -> dict | None:
    """None unless `run_dir` is a search's; then its summary ({} while the search runs)."""
    if not storage.is_file(search_path(run_dir, "record")):
        return None
    summary = search_path(run_dir, "summary")
    return json.loads(storage.read_bytes(summary)) if storage.is_file(summary) else {}
