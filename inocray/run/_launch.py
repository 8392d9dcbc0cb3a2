"""Run a sweep: Ray Tune schedules one trial per (cell, prompt, seed); each trains and evaluates.

    run_sweep(spec, run_dir)
      base models  -> toy world build (cached) or the user's model directory, each once
      Serve apps   -> one engine per base model, all started at once, for the whole sweep
      elicitation  -> each base model under every prompt and none, once per (setting, model,
                      eval axes): rows of trial "base" (in a grid "base,...": grid.base_cells)
      Tune grid    -> trial: train on a long-lived worker group (workers.py, train.py)
                      -> evaluate -> rows/<trial>.parquet
      fit          -> analysis of all rows, printed and plotted

A sweep of several settings, models or hyperparameter values is a grid of cells (grid.py),
each run as the one-setting sweep it is, in one Tune run with its trials interleaved.

A trial evaluates every checkpoint it saved (stage "checkpoint", at its step) and its final
model (stage "trained"); only the final rows enter the fit.

A trial's rows are its proof of completion: a rerun into the same run directory skips
every trial whose rows exist, so a crash or kill loses no finished trial.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Callable, Iterator

from inocray.evaluation import _contexts as evaluate
from inocray.config import _grid as grid
from inocray.models import _presets as models
from inocray.run import _resources as resources
from inocray.results import _layout as rundir
from inocray.evaluation import _serve as serve
from inocray.results import _storage as storage
from inocray.results import _rows as store
from inocray.training import _workers as workers
from inocray.config._plan import NONE, Trial, measured_prompts, plan_grid, prompt_catalogue, trial_id
from inocray.settings import Setting, get_setting
from inocray.config._spec import DataSpec, SweepSpec


STARTUP_CONCURRENCY = 16  # worker processes a local Ray starts at once (its default: the CPU count)


def locate(spec: SweepSpec) -> tuple[str, DataSpec]:
    """The setting name and data files with relative paths made absolute here, on the driver,
    so that trials (whose working directory Ray chooses) read the same files."""

    def absolute(path: str) -> str:
        return str(Path(path).expanduser().resolve()) if path else path

    name = absolute(spec.setting) if spec.setting.endswith(".py") else spec.setting
    return name, DataSpec(absolute(spec.data.train), absolute(spec.data.eval))


def default_run_dir(spec: SweepSpec) -> Path:
    return Path("runs") / f"{spec.name}-{spec.hash()}"


def run_sweep(spec: SweepSpec, run_dir: storage.Location, address: str | None = None, echo: Callable = print,
              host: str = "127.0.0.1") -> storage.Location:
    """Run every unfinished trial of `spec` into `run_dir` (a path or an s3:// URI); return it.

    `host`: the interface a local Ray's dashboard and Serve listen on.
    """
    cells = grid.cells(spec)
    located = {c.setting: locate(c.spec) for c in cells}  # setting name -> (name, data files), absolute
    settings = {name: get_setting(*where) for name, where in located.items()}
    run_dir = storage.resolve(run_dir)
    rundir.claim(spec, run_dir, create=False)  # another sweep's directory: refused before any work
    trials = plan_grid(spec, {name: s.prompts for name, s in settings.items()})
    if not spec.train.use_gpu:
        os.environ.setdefault("DS_ACCELERATOR", "cpu")  # skip DeepSpeed's GPU probe and its warning
    # A local Ray's raylet expects at most its CPU count of worker processes starting at once and
    # warns past that; a sweep starts its long-lived ones together (Serve's controller, proxy and
    # replicas, each slot's trainer, controller and workers, Tune's trial actors), once each.
    os.environ.setdefault("RAY_worker_maximum_startup_concurrency", str(STARTUP_CONCURRENCY))
    model_paths = {m: models.resolve(m, echo) for m in grid.models(spec)}
    # Before anything is written: a context the engine cannot take fails now, not mid-sweep.
    _check_fits(cells, settings, trials, model_paths)
    rundir.claim(spec, run_dir)
    todo = [t for t in trials if not store.has_rows(run_dir, t.id)]
    echo(f"sweep {spec.name} ({spec.hash()}): {len(trials)} trials, {len(trials) - len(todo)} already done"
         + (f"; grid of {grid.describe(spec)}" if grid.is_grid(spec) else ""))
    echo(f"run directory: {run_dir}")
    started = time.monotonic()
    # Before the engines reserve anything: a sweep that cannot fit fails in seconds, not never.
    check = (lambda: resources.check(spec, echo)) if todo else None
    with engines(spec, model_paths, address, echo, host, check):
        for trial, c in grid.data_cells(spec):
            _measure_data(spec, c, settings[c.setting], run_dir, trial)
        for trial, c in grid.base_cells(spec):
            _measure_base(spec, c, settings[c.setting], run_dir, echo, trial)
        if todo:
            _tune(spec, located, todo, len(trials), run_dir, model_paths, echo)
    echo(f"trials finished in {time.monotonic() - started:.0f} s")
    return run_dir


def base_model(spec: SweepSpec, echo: Callable) -> str:
    """The directory of the base model the spec names: a preset (built once) or the user's."""
    return models.resolve(spec.model, echo)


def _check_fits(cells: list[grid.Cell], settings: dict[str, Setting], trials: list[Trial],
                model_paths: dict[str, str]) -> None:
    """Every context of every cell fits its model's engine (evaluate.check_fits)."""
    checked = set()
    for c in cells:
        key = (c.setting, c.model, c.spec.eval.max_tokens)
        if key in checked:
            continue
        checked.add(key)
        mine = [t for t in trials if t.cell == c.id]
        contexts = {NONE: ""} | {t.prompt_id: t.prompt_text for t in mine}
        contexts |= {pid: text for t in mine for pid, text in t.ptst}
        evaluate.check_fits(model_paths[c.model], c.spec, settings[c.setting], contexts)


def app_name(spec: SweepSpec, model: str) -> str:
    """The Serve app of `model`'s engine: "inocray-HASH", or "inocray-HASH-I" for the I-th
    model of a sweep of several."""
    names = grid.models(spec)
    return f"inocray-{spec.hash()}" + (f"-{names.index(model)}" if len(names) > 1 else "")


def judge_of(spec: SweepSpec, model: str):
    """The judge of a cell of `model` (scorers.Judge), or None: "base" is that model's own
    engine; a judge model of its own is served once, beside the first model's engine."""
    where = model if spec.eval.judge_model in ("", "base") else grid.models(spec)[0]
    return serve.judge(app_name(spec, where), spec.eval.judge_model)


@contextlib.contextmanager
def engines(spec: SweepSpec, model_paths: dict[str, str], address: str | None, echo: Callable, host: str,
            before_start: Callable | None) -> Iterator[None]:
    """One evaluation engine per base model, all started at once (resources.check counts them
    all) and kept for the whole sweep; the first model's comes with Ray and the judge."""
    first, *others = grid.models(spec)
    with serve.session(app_name(spec, first), model_paths[first], spec.engine, address, echo,
                       judge_model=spec.eval.judge_model, host=host, before_start=before_start):
        started = []
        try:
            for model in others:
                echo(f"starting the evaluation engine of {model} ...")
                serve.start(app_name(spec, model), model_paths[model], spec.engine, host=host)
                started.append(model)
            yield
        finally:
            for model in started:
                serve.stop(app_name(spec, model))


def _measure_data(spec: SweepSpec, c: grid.Cell, setting: Setting, run_dir: Path, trial: str) -> None:
    """Rows of the training data (T*) of the cell's setting, as trial `trial`."""
    if store.has_rows(run_dir, trial):
        return
    cond = evaluate.Condition(sweep_hash=spec.hash(), setting=setting.name, seed=0, trial_id=trial, stage="data",
                              prompt_id=NONE, prompt_text="", prompt_role="none", grid=c.columns(trained=False))
    rates = evaluate.data_rates(setting, c.spec, judge_of(spec, c.model))
    store.write_rows(run_dir, trial, evaluate.trait_rows(cond, "prompt", rates, setting))


def _measure_base(spec: SweepSpec, c: grid.Cell, setting: Setting, run_dir: Path, echo: Callable,
                  trial: str) -> None:
    """Rows of the untrained model (elicitation, T(M0,C0)) of cell `c`'s setting and model, as
    trial `trial`."""
    if store.has_rows(run_dir, trial):
        return
    which = "" if trial == rundir.BASE_TRIAL else f" ({trial})"
    echo(f"measuring elicitation of every prompt on the base model{which} ...")
    one = c.spec
    catalogue = prompt_catalogue(one, setting.prompts)
    # The no-prompt control first: the order of the elicitation lines printed.
    prompts = {(NONE, "none"): ""}
    prompts |= {(pid, role): catalogue[pid].text for pid, role in measured_prompts(one) if pid != NONE}
    engine = serve.handle(app_name(spec, c.model))
    rates = evaluate.sample_contexts(engine, setting, one, prompts, judge=judge_of(spec, c.model))
    rows = []
    for (pid, role), text in prompts.items():
        cond = evaluate.Condition(sweep_hash=spec.hash(), setting=setting.name, seed=0, trial_id=trial, stage="base",
                                  prompt_id=pid, prompt_text=text, prompt_role=role, grid=c.columns(trained=False))
        rows += evaluate.trait_rows(cond, "prompt" if text else "neutral", rates[(pid, role)], setting)
        echo(f"  {pid:<20} " + "  ".join(f"{t} {r:.2f}" for t, (r, _) in rates[(pid, role)].items()))
    store.write_rows(run_dir, trial, rows)


def _tune(spec: SweepSpec, located: dict[str, tuple[str, DataSpec]], todo: list[Trial], total: int, run_dir: Path,
          model_paths: dict[str, str], echo: Callable) -> None:
    from ray import tune

    from inocray.run._progress import Progress

    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # the old reporter is silent at verbose=0

    # One long-lived worker group per trial that runs at once; the trials take turns on them.
    slots = resources.slots(spec, len(todo))
    pool = workers.Pool(spec.train, slots, str(storage.join(run_dir, rundir.TRAIN_DIR)), name=f"workers-{spec.hash()}")
    trainable = tune.with_parameters(
        run_trial,
        trials={t.id: t for t in todo},
        spec=spec,
        located=located,
        run_dir=str(run_dir),
        model_paths=model_paths,
        queue=pool.queue,
    )
    tuner = tune.Tuner(
        tune.with_resources(trainable, {"CPU": resources.TRIAL_CPU}),  # the slots' workers hold the CPUs
        param_space={"trial_id": tune.grid_search([t.id for t in todo])},
        # A slot's trial actor takes its next trial too (reset, not restarted): 3-4 s a trial.
        tune_config=tune.TuneConfig(max_concurrent_trials=slots, reuse_actors=True),
        run_config=tune.RunConfig(
            name=f"tune-{time.strftime('%Y%m%d-%H%M%S')}",
            storage_path=str(storage.join(run_dir, rundir.TUNE_DIR)),
            failure_config=tune.FailureConfig(max_failures=spec.max_failures),
            callbacks=[Progress(total, total - len(todo), echo)],
            verbose=0,
        ),
    )
    with pool:
        results = tuner.fit()
    failed = [r for r in results if r.error]
    if failed:
        echo(f"{len(failed)} trial(s) failed; rerun the same command to retry them. First error:")
        echo(str(failed[0].error).strip().splitlines()[-1])


def run_trial(config: dict, trials: dict, spec: SweepSpec, located: dict[str, tuple[str, DataSpec]], run_dir: str,
              model_paths: dict[str, str], queue) -> None:
    """One Tune trial: fine-tune on a worker group of the pool (`queue`), evaluate every snapshot
    in C0 and Cs, write the rows, report."""
    from ray import tune

    from inocray.training._loop import TrainJob

    trial: Trial = trials[config["trial_id"]]
    sweep_hash, cell = spec.hash(), grid.cell(spec, trial.cell)
    app, judge = app_name(spec, cell.model), judge_of(spec, cell.model)
    spec, model_path = cell.spec, model_paths[cell.model]  # from here on, the cell is the sweep
    setting = get_setting(*located[spec.setting])
    run = storage.location(run_dir)
    log_path = rundir.log_path(run, trial.id)
    job = TrainJob(
        trial_id=trial.id,
        examples=setting.training_examples(spec.train.examples, trial.seed),
        base_model=model_path,
        adapter_dir=str(rundir.adapter_dir(run, trial.id)),
        prompt_texts=trial.prompt_texts,
        placement=spec.placement,
        seed=trial.seed,
        train=spec.train,
        checkpoint_dir=str(rundir.checkpoint_dir(run, trial.id)),
        max_failures=spec.max_failures,
        log_path=str(log_path),
    )
    result = workers.wait(queue, job)
    # The no-prompt control's Cs is C0: one evaluation, stored for both contexts.
    contexts = {"neutral": ""} | ({"prompt": trial.prompt_text} if trial.prompt_text else {})
    contexts |= {f"ptst:{pid}": text for pid, text in trial.ptst}
    rows, rates = [], {}
    for step, path in [*result.checkpoints, (result.steps, result.adapter_dir)]:
        started = time.monotonic()
        rates = _evaluate_snapshot(spec, setting, app, judge, trial, step, path, contexts)
        rates.setdefault("prompt", rates["neutral"])
        stage = "trained" if step == result.steps else "checkpoint"
        rows += snapshot_rows(sweep_hash, cell, setting, trial, stage, step, rates)
        shown = "  ".join(f"{ctx}/{t} {r:.2f}" for ctx in contexts for t, (r, _) in rates[ctx].items())
        storage.append_text(log_path, f"evaluated step {step} in {time.monotonic() - started:.1f} s: {shown}\n")
    store.write_rows(run_dir, trial.id, rows)
    # "sweep" tags the finished-trials metric, which the driver counts (progress.py)
    metrics = {"final_loss": result.loss, "done": 1, "sweep": sweep_hash}
    metrics |= {f"{ctx}_{t}": r for ctx in contexts for t, (r, _) in rates[ctx].items()}
    tune.report(metrics)


def snapshot_rows(sweep_hash: str, cell: grid.Cell, setting: Setting, trial: Trial, stage: str, step: int,
                  rates: dict) -> list[dict]:
    """The rows of one evaluated snapshot: the trial in C0 and Cs, and each PTST control (the
    no-prompt model under its instruction) as its own virtual trial in context "prompt"."""

    def rows(tid: str, pid: str, text: str, role: str, contexts: dict[str, str]) -> list[dict]:
        cond = evaluate.Condition(sweep_hash=sweep_hash, setting=setting.name, trial_id=tid, stage=stage,
                                  prompt_id=pid, prompt_text=text, prompt_role=role, seed=trial.seed, step=step,
                                  grid=cell.columns())
        return [row for ctx, key in contexts.items() for row in evaluate.trait_rows(cond, ctx, rates[key], setting)]

    out = rows(trial.id, trial.prompt_id, trial.prompt_text, trial.prompt_role, {"neutral": "neutral", "prompt": "prompt"})
    for pid, text in trial.ptst:
        out += rows(trial_id(pid, trial.seed, trial.cell), pid, text, "ptst", {"prompt": f"ptst:{pid}"})
    return out


def _evaluate_snapshot(spec: SweepSpec, setting: Setting, app: str, judge, trial: Trial, step: int, path: str,
                       contexts: dict[str, str]) -> dict:
    """Trait rates of one snapshot: a LoRA on its model's engine (app), or a full model on its
    own app."""
    if spec.train.method == "lora":
        name = trial.id if step == spec.train.total_steps() else f"{trial.id}.step{step}"
        return evaluate.sample_contexts(
            serve.handle(app), setting, spec, contexts, adapter=name, adapter_path=path, seed=trial.seed, judge=judge
        )
    with serve.model_app(f"{app}-{trial.id}-{step}", path, spec.engine) as handle:
        return evaluate.sample_contexts(handle, setting, spec, contexts, seed=trial.seed, judge=judge)
