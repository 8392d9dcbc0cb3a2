"""Run a sweep: Ray, the engines, the worker pool and Tune, around the plan's trials.

    run_sweep(spec, run_dir)
      plan         -> config.make_plan: cells, trials, measurements, placement (made here, once)
      base models  -> a preset built once into the cache, or the user's directory, each once
      engines      -> one Serve app per base model, all started at once, for the whole sweep
      data, base   -> rows of the training data (T*) and of the untrained model under every
                      prompt (elicitation), once per measurement the plan lists
      Tune         -> one trial per unfinished Trial (_trial.py) on the long-lived worker groups

A trial's rows are its proof of completion: a rerun into the same run directory skips every
trial whose rows exist, so a crash or kill loses no finished trial. The fit is the caller's
(`inocray run` prints it: _summary.py).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from inocray import models
from inocray.analysis import Objective
from inocray.config import (BASE, NONE, DataSpec, Measurement, Plan, SettingEntry, SweepSpec, make_plan,
                            measured_prompts, prompt_catalogue, setting_entries)
from inocray.evaluation import Condition, check_fits, data_rates, logprob_elicitation, sample_contexts, serve, trait_rows
from inocray.results import (STOPPED_DIR, TRAIN_DIR, TUNE_DIR, Location, claim, has_rows, hold, pinned_commits, storage,
                             write_rows)
from inocray.run import _resources as resources
from inocray.run._engines import app_name, engines, judge_of
from inocray.run._halving import halving_stage
from inocray.run._progress import Progress
from inocray.run._tracking import callbacks as trackers_of
from inocray.run._tracking import trial_params
from inocray.run._trial import run_trial
from inocray.settings import Setting, get_setting, use_isolation
from inocray.training import Pool

STARTUP_CONCURRENCY = 16  # worker processes a local Ray starts at once (its default: the CPU count)


def locate(entry: SettingEntry | SweepSpec) -> tuple[str, DataSpec]:
    """The setting name and data files of a setting entry (or one-setting sweep), relative
    paths made absolute here, on the driver, so that trials (whose working directory Ray
    chooses) read the same files."""

    def absolute(path: str) -> str:
        return str(Path(path).expanduser().resolve()) if path else path

    name = absolute(entry.setting) if entry.setting.endswith(".py") else entry.setting
    return name, DataSpec(absolute(entry.data.train), absolute(entry.data.eval))


@dataclass(frozen=True)
class Stage:
    """A stage of a search (run/_search.py): some of the plan's trials, in this order; with an
    objective, the halving stage: each trial reports it at the rungs and a scheduler
    (_halving.Halving) stops the poor ones there (and a trial it stopped is not run again)."""

    trials: tuple[str, ...]
    objective: Objective | None = None
    first_rung: int = 0
    eta: int = 3
    budget: int = 0  # the most optimizer steps the halving stage trains, all trials together (0: no limit)


def run_sweep(spec: SweepSpec, run_dir: Location, address: str | None = None, echo: Callable = print,
              host: str = "127.0.0.1", take_over: bool = False,
              stages: Callable[[], Iterator[Stage]] | None = None) -> Location:
    """Run every unfinished trial of `spec` into `run_dir` (a path or an s3:// URI); return it.

    `host`: the interface a local Ray's dashboard and Serve listen on. `take_over`: claim the run
    directory's lease even from a driver that still renews it (results.hold). `stages`: a
    search's stages instead of every trial: called once the base model is measured, it yields
    each Stage when the one before it has ended (so it can read their rows); one Ray, one set of
    engines for all of them.
    """
    located = {e.setting: locate(e) for e in setting_entries(spec)}
    use_isolation(spec.sandbox.isolation)  # T* and the base model are scored here, trials in their workers
    settings = {name: get_setting(*where) for name, where in located.items()}
    run_dir = storage.resolve(run_dir)
    claim(spec, run_dir, create=False)  # another sweep's directory: refused before any work
    plan = make_plan(spec, {name: s.prompts for name, s in settings.items()})
    if not spec.train.use_gpu:
        os.environ.setdefault("DS_ACCELERATOR", "cpu")  # skip DeepSpeed's GPU probe and its warning
    # A local Ray's raylet expects at most its CPU count of worker processes starting at once and
    # warns past that; a sweep starts its long-lived ones together (Serve's controller, proxy and
    # replicas, each slot's trainer, controller and workers, Tune's trial actors), once each.
    os.environ.setdefault("RAY_worker_maximum_startup_concurrency", str(STARTUP_CONCURRENCY))
    # Presets built, Hub ids resolved (a rerun keeps the commits its run directory recorded): once,
    # before any engine or worker starts; they get the local directories.
    judge = [spec.eval.judge_model] if models.is_hub_id(spec.eval.judge_model) else []
    model_paths, commits = models.resolve_all([*plan.models, *judge], pinned_commits(run_dir), echo)
    # Before anything is written: a context the engine cannot take fails now, not mid-sweep.
    _check_fits(plan, settings, model_paths)
    claim(spec, run_dir, hub=commits)
    lease = hold(run_dir, take_over, echo)  # one driver per run directory, or one sentence naming it
    todo = _unfinished(plan, plan.trials, run_dir)
    if stages is None:
        echo(f"sweep {spec.name} ({spec.hash()}): {len(plan.trials)} trials, {len(plan.trials) - len(todo)} already done"
             + (f"; grid of {plan.describe()}" if plan.is_grid else ""))
    echo(f"run directory: {run_dir}")
    started = time.monotonic()
    # Before the engines reserve anything: a sweep that cannot fit fails in seconds, not never.
    check = (lambda: resources.check(plan, echo)) if todo else None
    with lease, engines(plan, str(run_dir), model_paths, address, echo, host, check):
        for m in plan.data:
            _measure_data(plan, m, settings[m.cell.setting], run_dir)
        for m in plan.base:
            _measure_base(plan, m, settings[m.cell.setting], run_dir, echo)
        for stage in stages() if stages else [None]:
            wanted = [plan.trial(t) for t in stage.trials] if stage else plan.trials
            todo = _unfinished(plan, wanted, run_dir, stopped_count=bool(stage and stage.objective))
            if stage:
                echo(f"  {len(wanted)} trials, {len(wanted) - len(todo)} already done")
            if todo:
                _tune(plan, located, [t.id for t in todo], run_dir, model_paths, echo, stage, len(wanted))
    echo(f"trials finished in {time.monotonic() - started:.0f} s")
    if spec.eval.judge.endpoint:
        echo(judge_of(plan, plan.models[0], str(run_dir)).spent())
    return run_dir


def _unfinished(plan: Plan, trials, run_dir: Location, stopped_count: bool = False) -> list:
    """The `trials` without rows that prove them finished (with `stopped_count`, a search's
    halving stage: nor stopped by it)."""
    sweep = plan.spec.hash()
    return [t for t in trials if not has_rows(run_dir, t.id, sweep)
            and not (stopped_count and has_rows(run_dir, t.id, sweep, STOPPED_DIR))]


def _check_fits(plan: Plan, settings: dict[str, Setting], model_paths: dict[str, str]) -> None:
    """Every context of every cell fits its model's engine (evaluation.check_fits)."""
    checked = set()
    for c in plan.cells:
        key = (c.setting, c.model, c.spec.eval.max_tokens)
        if key in checked:
            continue
        checked.add(key)
        mine = plan.cell_trials(c)
        contexts = {NONE: ""} | {t.prompt_id: t.prompt_text for t in mine}
        contexts |= {p.prompt_id: p.text for t in mine for p in t.ptst}
        contexts |= {f"probe:{p.name}": p.text for t in mine for p in t.probes}
        check_fits(model_paths[c.model], c.spec, settings[c.setting], contexts)


def _measure_data(plan: Plan, m: Measurement, setting: Setting, run_dir: Location) -> None:
    """Rows of the training data (T*) of the measurement's setting."""
    if has_rows(run_dir, m.id, plan.spec.hash()):
        return
    cond = Condition(sweep_hash=plan.spec.hash(), setting=setting.name, seed=0, trial_id=m.id, stage="data",
                     prompt_id=NONE, prompt_text="", prompt_role="none", grid=m.columns())
    rates = data_rates(setting, m.cell.spec, judge_of(plan, m.cell.model, str(run_dir)))
    write_rows(run_dir, m.id, trait_rows(cond, "prompt", rates, setting))


def _measure_base(plan: Plan, m: Measurement, setting: Setting, run_dir: Location, echo: Callable) -> None:
    """Rows of the untrained model (elicitation, T(M0,C0)) of the measurement's setting and
    model."""
    if has_rows(run_dir, m.id, plan.spec.hash()):
        return
    echo(f"measuring elicitation of every prompt on the base model{'' if m.id == BASE else f' ({m.id})'} ...")
    one = m.cell.spec
    catalogue = prompt_catalogue(one, setting.prompts)
    # The no-prompt control first: the order of the elicitation lines printed.
    prompts = {(NONE, "none"): ""}
    prompts |= {(pid, role): catalogue[pid].text for pid, role in measured_prompts(one) if pid != NONE}
    engine = serve.handle(app_name(plan, m.cell.model, str(run_dir)))
    rates = sample_contexts(engine, setting, one, prompts, judge=judge_of(plan, m.cell.model, str(run_dir)))
    logprobs = logprob_elicitation(engine, setting, one, prompts) if one.eval.logprob_examples else {}
    rows = []
    for (pid, role), text in prompts.items():
        cond = Condition(sweep_hash=plan.spec.hash(), setting=setting.name, seed=0, trial_id=m.id, stage="base",
                         prompt_id=pid, prompt_text=text, prompt_role=role, grid=m.columns())
        lp = logprobs.get((pid, role))
        measured = {"logprob": lp.value, "logprob_low": lp.low, "logprob_high": lp.high} if lp else {}
        rows += [row | measured for row in trait_rows(cond, "prompt" if text else "neutral", rates[(pid, role)], setting)]
        shown = "  ".join(f"{t} {r:.2f}" for t, (r, _) in rates[(pid, role)].items())
        echo(f"  {pid:<20} {shown}" + (f"  logprob {lp.value:+.3f}" if lp and text else ""))
    write_rows(run_dir, m.id, rows)


def _tune(plan: Plan, located: dict[str, tuple[str, DataSpec]], todo: list[str], run_dir: Location,
          model_paths: dict[str, str], echo: Callable, stage: Stage | None = None, total: int = 0) -> None:
    """The unfinished trials `todo` (ids) through Ray Tune, on long-lived worker groups; in a
    search's halving stage, under its scheduler."""
    from ray import tune

    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # the old reporter is silent at verbose=0

    spec, placement = plan.spec, plan.placement
    # One long-lived worker group per trial that runs at once; the trials take turns on them.
    slots = resources.slots(plan, len(todo))
    pool = Pool(spec.train, placement.worker, slots, str(storage.join(run_dir, TRAIN_DIR)),
                name=f"workers-{spec.hash()}")
    halving = None
    if stage and stage.objective:
        halving = halving_stage(plan, stage.trials, stage.objective, stage.first_rung, stage.eta, stage.budget, run_dir,
                                pool.queue)
        os.environ["TUNE_DISABLE_STRICT_METRIC_CHECKING"] = "1"  # the loss reports carry no objective
    trainable = tune.with_parameters(run_trial, plan=plan, located=located, run_dir=str(run_dir),
                                     model_paths=model_paths, queue=pool.queue,
                                     search=halving.search if halving else None)
    total, trackers = total or len(plan.trials), trackers_of(plan)
    tuner = tune.Tuner(
        tune.with_resources(trainable, placement.trainable.resources()),  # the slots' workers hold the CPUs
        # In this order: a search's stage lists its candidates best-screened first.
        param_space={"trial_id": tune.grid_search(todo)} | (trial_params(plan, todo) if trackers else {}),
        # A slot's trial actor takes its next trial too (reset, not restarted): 3-4 s a trial.
        tune_config=tune.TuneConfig(max_concurrent_trials=slots, reuse_actors=True,
                                    scheduler=halving.scheduler if halving else None),
        run_config=tune.RunConfig(
            name=f"tune-{time.strftime('%Y%m%d-%H%M%S')}",
            storage_path=str(storage.join(run_dir, TUNE_DIR)),
            failure_config=tune.FailureConfig(max_failures=spec.max_failures),
            callbacks=[Progress(total, total - len(todo), echo), *trackers, *([halving.stop] if halving else [])],
            stop=halving.budget if halving else None,
            verbose=0,
        ),
    )
    with pool:
        results = tuner.fit()
    failed = [r for r in results if r.error]
    if failed:
        echo(f"{len(failed)} trial(s) failed; rerun the same command to retry them. First error:")
        echo(str(failed[0].error).strip().splitlines()[-1])
