"""What a run directory says about its sweep: which trials are done, which are left.

Read from files only (sweep.json and rows/*.parquet), so it works while the sweep runs,
after it crashed, or on a copy fetched from the cluster, without Ray.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from inocray import store
from inocray.errors import InputError


@dataclass(frozen=True)
class RunProgress:
    run_dir: Path
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


def run_progress(run_dir: str | Path) -> RunProgress:
    """Planned trials (from sweep.json) against the trials whose rows exist."""
    from inocray.jobs import parse_cluster_spec  # the model may live on another machine
    from inocray.settings import get_setting
    from inocray.sweep import plan_trials

    run_dir = Path(run_dir)
    marker = run_dir / "sweep.json"
    if not marker.is_file():
        raise InputError(f"{run_dir} is not a run directory (it has no sweep.json)")
    try:
        record = json.loads(marker.read_text())
        data, sweep_hash = record["spec"], record["hash"]
    except (ValueError, KeyError, TypeError):
        raise InputError(f"{marker} is not a sweep record (JSON with 'hash' and 'spec')") from None
    spec = parse_cluster_spec(data, source=str(marker))
    trials = [t.id for t in plan_trials(spec, get_setting(spec.setting))]
    return RunProgress(
        run_dir=run_dir,
        sweep=spec.name,
        sweep_hash=sweep_hash,
        trials=trials,
        done=[t for t in trials if store.has_rows(run_dir, t)],
        base_measured=store.has_rows(run_dir, "base"),
        rows=store.read_rows(run_dir).num_rows,
        analyzed=(run_dir / "analysis.parquet").is_file(),
    )
