"""Results: the rows a sweep writes, the run directory that holds them, and where it lives.

    write_rows / read_rows / has_rows   Parquet rows, one file per trial (_rows.py): a trial's
                                        file is its proof of completion (a search's stopped
                                        trials: a folder of their own, never fitted)
    claim / opened / rows_path / ...    the run directory's layout: every name in it (_layout.py)
    hold                                one driver per run directory: its lease (_lease.py)
    storage                             a local path or an s3:// prefix: the file operations a run
                                        directory needs on either (storage.py)
"""

from inocray.results import storage
from inocray.results._layout import (ADAPTERS_DIR, ANALYSIS, CHECKPOINTS_DIR, LEASE, LOGS_DIR, PARTIAL_DIR, REPORT,
                                     ROWS_DIR, RUNS_ROOT, SCREEN, SEARCH_DIR, STOPPED_DIR, SWEEP_RECORD, TRAIN_DIR, TUNE_DIR, Opened, adapter_dir, checkpoint_dir,
                                     claim, default_run_dir, default_screen_dir, elicitation_plot, log_path, opened,
                                     pinned_commits, reachable, record_path, rows_path, run_dir_name, search_path,
                                     sweep_record)
from inocray.results._lease import hold
from inocray.results._rows import (GRID_COLUMNS, LOGPROB_COLUMNS, OPTIONAL_COLUMNS, SCHEMA, has_rows, read_rows,
                                   trial_rows, with_defaults, write_rows)
from inocray.results.storage import Location, write_atomically

__all__ = [
    "storage", "Location", "write_atomically",
    "ADAPTERS_DIR", "ANALYSIS", "CHECKPOINTS_DIR", "LEASE", "LOGS_DIR", "PARTIAL_DIR", "REPORT", "ROWS_DIR",
    "RUNS_ROOT", "SCREEN", "SEARCH_DIR", "STOPPED_DIR",
    "SWEEP_RECORD", "TRAIN_DIR", "TUNE_DIR", "Opened", "adapter_dir", "checkpoint_dir", "claim", "default_run_dir",
    "default_screen_dir", "elicitation_plot", "log_path", "opened", "reachable", "record_path", "rows_path",
    "pinned_commits", "run_dir_name", "search_path", "sweep_record",
    "hold",
    "GRID_COLUMNS", "LOGPROB_COLUMNS", "OPTIONAL_COLUMNS", "SCHEMA", "has_rows", "read_rows", "trial_rows", "with_defaults",
    "write_rows",
]
