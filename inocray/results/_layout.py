"""The run directory's layout: every name in it is written here and used from here.

    RUN_DIR/                 a local or NFS path, or an s3:// prefix (storage.py)
      sweep.json             the validated spec and its hash: the directory belongs to one sweep
      driver.lease           the driver running the sweep now, and its heartbeat (_lease.py)
      rows/TRIAL.parquet     the trial's result rows (_rows.py), its proof of completion;
                             rows/base.parquet and rows/data.parquet for the untrained model
      adapters/TRIAL/        the trial's final adapter (or full model)
      checkpoints/TRIAL/     its DeepSpeed checkpoints, to resume from
      logs/TRIAL.log         its training progress and each evaluation
      train/, tune/          Ray Train's and Ray Tune's own records
      analysis.parquet, analysis.csv        the fit (inocray.analysis)
      elicitation-TRAIT[-CELL].png          its plot per trait (and grid cell)
      report.html                           the report (inocray analyze/report)

TRIAL is an id of the plan (config.Trial.id, config.Measurement.id). Unless told, a run
directory is RUNS_ROOT/NAME-HASH (on a cluster, under its shared mount) and a screen's is
RUNS_ROOT/screen-NAME-DIGEST, holding screen.parquet and screen.csv.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from inocray.results import storage
from inocray.errors import InputError
from inocray.results.storage import Location

if TYPE_CHECKING:
    from inocray.config import SweepSpec

SWEEP_RECORD = "sweep.json"
LEASE = "driver.lease"
ROWS_DIR = "rows"
STOPPED_DIR = "stopped"  # rows of the trials a search's scheduler stopped early (not finished: never fitted)
PARTIAL_DIR = "partial"  # a search's trial's rows so far, published to STOPPED_DIR if it is stopped
SEARCH_DIR = "search"  # a search's own files: SEARCH_FILES
SEARCH_FILES = {"record": "search.json", "summary": "summary.json", "grid": "grid.yaml"}
ADAPTERS_DIR = "adapters"
CHECKPOINTS_DIR = "checkpoints"
LOGS_DIR = "logs"
TRAIN_DIR = "train"
TUNE_DIR = "tune"
ANALYSIS = "analysis"  # ANALYSIS.parquet and ANALYSIS.csv: the fit
REPORT = "report.html"
RUNS_ROOT = Path("runs")  # where commands put run and screen directories unless told
SCREEN = "screen"  # SCREEN.parquet and SCREEN.csv: a screen's table, in a directory of its own


def run_dir_name(spec: SweepSpec) -> str:
    """NAME-HASH: the run directory of a sweep, under RUNS_ROOT or a cluster's shared mount."""
    return f"{spec.name}-{spec.hash()}"


def default_run_dir(spec: SweepSpec) -> Path:
    return RUNS_ROOT / run_dir_name(spec)


def default_screen_dir(sweep_name: str, digest: str) -> Path:
    """Where a screen of sweep `sweep_name` writes unless told; `digest` names what it screened."""
    return RUNS_ROOT / f"screen-{sweep_name}-{digest}"


def elicitation_plot(trait: str, cell: str = "") -> str:
    """The file name of a trait's elicitation plot (in a grid, one per cell)."""
    return f"elicitation-{trait}{f'-{cell}' if cell else ''}.png"


def rows_path(run_dir: Location | os.PathLike, trial_id: str, folder: str = ROWS_DIR) -> Location:
    """A trial's rows file: in ROWS_DIR when it finished, STOPPED_DIR or PARTIAL_DIR in a search."""
    if not trial_id or "/" in trial_id or trial_id.startswith("."):
        raise ValueError(f"trial id {trial_id!r} is not a plain file name")
    return storage.join(run_dir, folder, f"{trial_id}.parquet")


def search_path(run_dir: Location, what: str) -> Location:
    """A search's file (`what`: record, summary or grid) in its run directory."""
    return storage.join(run_dir, SEARCH_DIR, SEARCH_FILES[what])


def adapter_dir(run_dir: Location, trial_id: str) -> Location:
    return storage.join(run_dir, ADAPTERS_DIR, trial_id)


def checkpoint_dir(run_dir: Location, trial_id: str) -> Location:
    return storage.join(run_dir, CHECKPOINTS_DIR, trial_id)


def log_path(run_dir: Location, trial_id: str) -> Location:
    return storage.join(run_dir, LOGS_DIR, f"{trial_id}.log")


def record_path(run_dir: Location | os.PathLike) -> Location:
    return storage.join(run_dir, SWEEP_RECORD)


def sweep_record(run_dir: Location | os.PathLike) -> dict:
    """The run directory's sweep.json ({"hash": ..., "spec": {...}}); InputError if it is not one."""
    marker = record_path(run_dir)
    try:
        record = json.loads(storage.read_bytes(marker))
        if isinstance(record["hash"], str) and isinstance(record["spec"], dict):
            return record
    except (OSError, ValueError, RecursionError, KeyError, TypeError):
        pass
    raise InputError(f"{marker} is not a sweep record (JSON with 'hash' and 'spec')")


def pinned_commits(run_dir: Location) -> dict[str, str]:
    """The Hub commit of each Hub id a run directory's sweep was begun with ({} for a new one)."""
    if not storage.exists(record_path(run_dir)):
        return {}
    return dict(sweep_record(run_dir).get("hub", {}))


def claim(spec: SweepSpec, run_dir: Location, create: bool = True, hub: dict[str, str] | None = None) -> None:
    """Create the run directory (unless `create` is False), or check that an existing one
    belongs to this sweep. `hub`: the commit of each Hub id the sweep names, recorded beside
    the spec (`pinned_commits` reads it back for a rerun)."""
    storage.check_reachable(run_dir)
    marker = record_path(run_dir)
    record = {"hash": spec.hash(), "spec": spec.record()} | ({"hub": hub} if hub else {})
    if storage.exists(marker):
        old = sweep_record(run_dir)["hash"]
        if old != spec.hash():
            raise InputError(f"{run_dir} holds sweep {old}, not this sweep ({spec.hash()}); choose another --run-dir")
        return
    if not create:
        return
    storage.make_dir(run_dir)
    storage.write_atomically(marker, lambda tmp: Path(tmp).write_text(json.dumps(record, indent=2)))


@dataclass(frozen=True)
class Opened:
    """A run directory as the user named it (`where`) and a local directory standing for it."""

    where: Location
    local: Path

    def named(self, text: str) -> str:
        """`text` with the local copy's path replaced by the run directory's: what users see."""
        return text.replace(str(self.local), str(self.where)) if self.local != self.where else text

    def shown(self, local_file: Path | str) -> str:
        """Where a file written at the top of the local copy went."""
        return storage.shown(self.where, local_file)


def reachable(run_dir: str | Location) -> Location:
    """The run directory `run_dir` names (a path or an s3:// URI); InputError if its bucket is out of reach."""
    where = storage.location(run_dir)
    storage.check_reachable(where)
    return where


@contextlib.contextmanager
def opened(run_dir: str | Location) -> Iterator[Opened]:
    """Resolve `run_dir`, check that it can be reached, and work in a local copy of its sweep
    record and rows (storage.working_copy: for an s3:// run, what the block writes is uploaded)."""
    where = reachable(run_dir)
    with storage.working_copy(where, fetch=(SWEEP_RECORD, ROWS_DIR)) as local:
        yield Opened(where, local)
