"""Terminal progress for a sweep: trials done of total, elapsed time, an estimate of the rest."""

from __future__ import annotations

import time
from typing import Callable

from ray.tune import Callback
from ray.util.metrics import Counter

from inocray.run._tracking import STEP
from inocray.run._trial import FINISHED


def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    return f"{m}:{s:02d}"


class Progress(Callback):
    """Prints a line when a trial finishes or fails, with an estimate of the time left."""

    def __init__(self, total: int, already_done: int, echo: Callable = print) -> None:
        self.total = total
        self.done = already_done
        self.finished_here = 0
        self.echo = echo
        self.started = time.monotonic()

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self.done += 1
        self.finished_here += 1
        result = trial.last_result or {}
        rates = "  ".join(
            f"{k.removeprefix('neutral_')} {v:.2f}"
            for k, v in sorted(result.items())
            if k.startswith("neutral_") and isinstance(v, float)
        )
        if result.get(FINISHED) != 1:  # a search's scheduler stopped it at a rung
            self.echo(f"[{self.done:>3}/{self.total}] {trial.config['trial_id']:<24} stopped at step "
                      f"{result.get(STEP, 0)}, below its rung's best (neutral: {rates})  {self._times()}")
            return
        self.echo(f"[{self.done:>3}/{self.total}] {trial.config['trial_id']:<24} neutral: {rates}  {self._times()}")
        # Counted here on the driver: a trial's process is gone before Ray exports its metrics.
        Counter("inocray_trials_finished", description="trials whose rows are written",
                tag_keys=("sweep",)).inc(tags={"sweep": result.get("sweep", "")})

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self.echo(f"[{self.done:>3}/{self.total}] {trial.config['trial_id']:<24} FAILED (log: {trial.local_path})")

    def _times(self) -> str:
        elapsed = time.monotonic() - self.started
        left = self.total - self.done
        eta = elapsed / self.finished_here * left
        return f"elapsed {_clock(elapsed)}, ~{_clock(eta)} left"
