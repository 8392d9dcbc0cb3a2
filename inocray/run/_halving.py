"""A search's halving stage inside Tune: the scheduler that stops poor candidates at a rung, and
the driver's side of a stopped trial.

    rungs(total, first, eta)          the steps where candidates are compared: first, first*eta, ...
    Halving(total, first, eta, ...)   Tune's ASHA over the objective the trials report at each
                                      rung (one bracket), never stopping the no-prompt control,
                                      and starting from the results a resumed search recorded
    Budget(steps)                     a Tune stopper: every trial stopped once the stage has
                                      trained that many steps
    StopTrials(run_dir, queue, ids)   a Tune callback: when the scheduler stops a trial, its
                                      training job ends at once (the group takes the next job)
                                      and its rows so far are published to stopped/
    halving_stage(plan, trials, ...)  the three for the launcher (_launch.py)
"""

from __future__ import annotations

from dataclasses import dataclass

from ray.tune import Callback
from ray.tune.stopper import Stopper
from ray.tune.schedulers import ASHAScheduler, TrialScheduler

from inocray.analysis import Objective, c0_rates
from inocray.config import DATA, NONE, Plan
from inocray.results import PARTIAL_DIR, STOPPED_DIR, Location, rows_path, storage, trial_rows, write_rows
from inocray.run._tracking import STEP
from inocray.run._trial import FINISHED, OBJECTIVE, Search


def rungs(total: int, first: int, eta: int) -> list[int]:
    """The steps where candidates are compared before the end: first, first*eta, ... while a
    rung leaves room for the next (ASHA's milestones; one in the last eta-th of the run would
    cost a snapshot for a decision the final model's report makes anyway)."""
    out, step = [], first
    while step * eta <= total:
        out.append(step)
        step *= eta
    return out


class Halving(ASHAScheduler):
    """Asynchronous successive halving (Tune's ASHA, one bracket) over the reported OBJECTIVE at
    each rung: a trial below the top 1/eta of those recorded at its rung is stopped.

    `exempt`: trial ids it never stops (the no-prompt control, the reference). `history`:
    (trial id, step, objective) of trials a previous run of the search finished or stopped, recorded
    at their rungs before any trial of this run reports."""

    def __init__(self, total: int, first: int, eta: int, exempt: set[str], history: list[tuple[str, int, float]]):
        super().__init__(time_attr=STEP, metric=OBJECTIVE, mode="max", grace_period=first, max_t=total,
                         reduction_factor=eta, brackets=1, stop_last_trials=False)
        self.exempt = exempt
        bracket = self._brackets[0]  # its rungs are `rungs(total, first, eta)` (and `total` if on the grid)
        for trial_id, step, value in history:
            bracket.on_result(_Recorded(f"past:{trial_id}"), step, value)

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        if trial.config.get("trial_id") in self.exempt:
            return TrialScheduler.CONTINUE
        return super().on_trial_result(tune_controller, trial, result)

    def on_trial_complete(self, tune_controller, trial, result: dict) -> None:
        if trial.config.get("trial_id") in self.exempt:
            self._trial_info.pop(trial.trial_id, None)
            return
        super().on_trial_complete(tune_controller, trial, result)


class Budget(Stopper):
    """Stops every trial once the stage's trials have trained `budget` optimizer steps together
    (each counted to the furthest step it reported; `spent`: before this run)."""

    def __init__(self, budget: int, spent: int = 0) -> None:
        self.budget, self.spent, self.reached = budget, spent, {}

    def __call__(self, trial_id: str, result: dict) -> bool:
        self.reached[trial_id] = max(self.reached.get(trial_id, 0), int(result.get(STEP, 0) or 0))
        return False

    def stop_all(self) -> bool:
        return self.spent + sum(self.reached.values()) >= self.budget


class _Recorded:
    """A trial of an earlier run of the search, as ASHA's bookkeeping names it."""

    def __init__(self, trial_id: str) -> None:
        self.trial_id = trial_id


class StopTrials(Callback):
    """The driver's side of a trial the scheduler stopped (it ended without its final report):
    its job is told to stop (queue.stop: the group ends it before its next step and takes the
    next job), and the rows it evaluated so far go to stopped/TRIAL.parquet."""

    def __init__(self, run_dir: Location, queue, stoppable: set[str]) -> None:
        self.run_dir, self.queue, self.stoppable = run_dir, queue, stoppable

    def on_trial_complete(self, iteration: int, trials: list, trial, **info) -> None:
        trial_id = trial.config.get("trial_id")
        if trial_id not in self.stoppable or (trial.last_result or {}).get(FINISHED) == 1:
            return
        self.queue.stop.remote(trial_id)
        rows = trial_rows(self.run_dir, trial_id, PARTIAL_DIR)
        if rows:
            write_rows(self.run_dir, trial_id, rows, folder=STOPPED_DIR)
            storage.delete(rows_path(self.run_dir, trial_id, PARTIAL_DIR))


@dataclass(frozen=True)
class HalvingStage:
    """What the launcher gives Tune for a search's halving stage."""

    search: Search  # what each trial reports
    scheduler: Halving
    stop: StopTrials
    budget: Budget | None


def data_levels(run_dir: Location) -> dict[str, float]:
    """T*, each trait's level in the training data (rows/data.parquet): the reference of the
    objective while the control trains. The suppression term then differs from the control's by
    a constant for every candidate, and a desired trait's loss is counted against what the data
    teaches, where the trained control tends."""
    return {r["trait"]: r["rate"] for r in trial_rows(run_dir, DATA)}


def reached(run_dir: Location, trial_id: str) -> dict[int, dict[str, float]]:
    """The C0 rates of a trial of the stage at each step it was evaluated (rung or end), from its
    finished rows or, if the scheduler stopped it, its stopped ones: {step: {trait: rate}}."""
    rows = trial_rows(run_dir, trial_id) or trial_rows(run_dir, trial_id, STOPPED_DIR)
    return {**c0_rates(rows, trial_id, "checkpoint"), **c0_rates(rows, trial_id, "trained")}


def halving_stage(plan: Plan, trials: tuple[str, ...], objective: Objective, first_rung: int, eta: int, budget: int,
                  run_dir: Location, queue) -> HalvingStage:
    """The halving stage over `trials` of `plan` (a sweep of one cell): the objective against the
    training data's trait levels, the scheduler seeded with the objective at each rung of the trials an
    earlier run of the search finished or stopped."""
    search = Search(objective, data_levels(run_dir))
    control = {t.id for t in plan.trials if t.prompt_id == NONE}
    history, spent = [], 0
    for trial_id in trials:
        steps = reached(run_dir, trial_id)
        spent += max(steps, default=0)
        if trial_id not in control:
            history += [(trial_id, step, objective.value(rates, search.reference)) for step, rates in sorted(steps.items())]
    scheduler = Halving(plan.spec.train.total_steps(), first_rung, eta, control, history)
    return HalvingStage(search, scheduler, StopTrials(run_dir, queue, set(trials) - control),
                        Budget(budget, spent) if budget else None)
