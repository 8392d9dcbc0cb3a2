"""One trial: train on a worker group of the pool, evaluate every snapshot, write the rows.

    run_trial(config, plan, ...)   a Tune function trainable; config["trial_id"] names the
                                   plan's Trial, which carries its cell and its prompts
    Search(objective, reference)   what a search's trial reports with each snapshot

A trial evaluates every checkpoint it saves (stage "checkpoint", at its step) as soon as it is
saved, while its training goes on, and its final model (stage "trained"), each in C0 and its
own Cs (and, for the no-prompt control, under each PTST instruction); the final model also
under each leak probe (context "probe:NAME"). Only the final rows of C0 and Cs enter the fit.
Every row names the Ray node whose group finished training the model.
Its rows file, written last and atomically, is the proof that it finished.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from inocray.analysis import Objective
from inocray.config import NONE, DataSpec, Plan, Trial
from inocray.evaluation import Condition, sample_contexts, serve, trait_rows
from inocray.results import PARTIAL_DIR, STOPPED_DIR, adapter_dir, checkpoint_dir, log_path, rows_path, storage, write_rows
from inocray.run._engines import app_name, judge_of
from inocray.run._tracking import snapshot_metrics
from inocray.settings import Setting, get_setting, use_isolation
from inocray.training import Stopped, TrainJob, wait

OBJECTIVE = "objective"  # the metric a search's scheduler ranks trials by
FINISHED = "finished"  # in a trial's last report only: a trial the scheduler stopped lacks it


@dataclass(frozen=True)
class Search:
    """A search's trial: the objective it reports with each evaluated snapshot, against
    `reference` (trait -> rate: the training data's levels, _halving.data_levels) while the
    control is not yet trained."""

    objective: Objective
    reference: dict[str, float]

    def metrics(self, rates: dict) -> dict:
        return {OBJECTIVE: self.objective.value({t: r for t, (r, _) in rates["neutral"].items()}, self.reference)}


def run_trial(config: dict, plan: Plan, located: dict[str, tuple[str, DataSpec]], run_dir: str,
              model_paths: dict[str, str], queue, search: Search | None = None) -> None:
    """Fine-tune on a worker group of the pool (`queue`), evaluate each snapshot in C0 and Cs as
    soon as it is saved (training goes on meanwhile), then the final model; write the rows,
    report to Tune. In a search (`search`), each report carries the objective, and the rows so
    far are kept (partial/TRIAL.parquet) for the driver to publish if the scheduler stops the trial."""
    from ray import tune

    trial = plan.trial(config["trial_id"])
    spec, model = trial.spec, trial.cell.model  # from here on, the cell is the sweep
    app, judge = app_name(plan, model, run_dir), judge_of(plan, model, run_dir)
    use_isolation(spec.sandbox.isolation)
    setting = get_setting(*located[spec.setting])
    run = storage.location(run_dir)
    log = log_path(run, trial.id)
    job = TrainJob(
        trial_id=trial.id,
        examples=setting.training_examples(spec.train.examples, trial.seed),
        base_model=model_paths[model],
        adapter_dir=str(adapter_dir(run, trial.id)),
        prompt_texts=trial.prompt_texts,
        placement=spec.placement,
        seed=trial.seed,
        train=spec.train,
        checkpoint_dir=str(checkpoint_dir(run, trial.id)),
        max_failures=spec.max_failures,
        log_path=str(log),
        stoppable=search is not None and trial.prompt_id != NONE,
    )
    # The no-prompt control's Cs is C0: one evaluation, stored for both contexts.
    contexts = {"neutral": ""} | ({"prompt": trial.prompt_text} if trial.prompt_text else {})
    contexts |= {f"ptst:{p.prompt_id}": p.text for p in trial.ptst}
    probes = {f"probe:{p.name}": p.text for p in trial.probes}
    rows, evaluated = [], set()

    def evaluate(step: int, path: str, final: bool) -> dict:
        started = time.monotonic()
        rates = _evaluate_snapshot(trial, setting, app, judge, step, path, contexts | (probes if final else {}))
        rates.setdefault("prompt", rates["neutral"])
        rows.extend(snapshot_rows(plan.spec.hash(), trial, setting, "trained" if final else "checkpoint", step, rates))
        shown = "  ".join(f"{ctx}/{t} {r:.2f}" for ctx in contexts for t, (r, _) in rates[ctx].items())
        storage.append_text(log, f"evaluated step {step} in {time.monotonic() - started:.1f} s: {shown}\n")
        evaluated.add(step)
        return rates

    def checkpoint(step: int, path: str) -> None:
        """A saved snapshot: evaluated now, its rates reported (for trackers, and a search's scheduler)."""
        if step in evaluated:  # a resumed job reports the snapshots it resumes past again
            return
        rates = evaluate(step, path, final=False)
        if search:
            write_rows(run, trial.id, rows, folder=PARTIAL_DIR)  # before the report the scheduler acts on
        tune.report(snapshot_metrics(rates, contexts, step) | (search.metrics(rates) if search else {}))

    def on_report(metrics: dict) -> None:
        if "snapshot" in metrics:
            checkpoint(metrics["snapshot"], metrics["path"])
        else:
            tune.report(metrics)  # the loss

    try:
        result = wait(queue, job, on_report)
    except Stopped:
        return  # the scheduler stopped the trial: the driver publishes its rows so far
    for step, path in result.checkpoints:  # any the reports did not bring (a job finished before a rerun)
        checkpoint(step, path)
    rates = evaluate(result.steps, result.adapter_dir, final=True)
    write_rows(run, trial.id, [row | {"node": result.node} for row in rows])
    for folder in (PARTIAL_DIR, STOPPED_DIR):  # a search's: its rows so far, or of a stop before it became a finalist
        storage.delete(rows_path(run, trial.id, folder))
    # "sweep" tags the finished-trials metric, which the driver counts (_progress.py)
    metrics = {"final_loss": result.loss, "done": 1, FINISHED: 1, "sweep": plan.spec.hash()}
    metrics |= search.metrics(rates) if search else {}
    tune.report(metrics | snapshot_metrics(rates, [*contexts, *probes], result.steps))


def snapshot_rows(sweep_hash: str, trial: Trial, setting: Setting, stage: str, step: int, rates: dict) -> list[dict]:
    """The rows of one evaluated snapshot: the trial in C0 and Cs, and each PTST control (the
    no-prompt model under its instruction) as its own virtual trial in context "prompt"."""

    def rows(tid: str, pid: str, text: str, role: str, contexts: dict[str, str]) -> list[dict]:
        cond = Condition(sweep_hash=sweep_hash, setting=setting.name, trial_id=tid, stage=stage, prompt_id=pid,
                         prompt_text=text, prompt_role=role, seed=trial.seed, step=step, grid=trial.cell.columns())
        return [row for ctx, key in contexts.items() for row in trait_rows(cond, ctx, rates[key], setting)]

    probes = {f"probe:{p.name}": f"probe:{p.name}" for p in trial.probes if f"probe:{p.name}" in rates}
    out = rows(trial.id, trial.prompt_id, trial.prompt_text, trial.prompt_role,
               {"neutral": "neutral", "prompt": "prompt"} | probes)
    for p in trial.ptst:
        out += rows(p.id, p.prompt_id, p.text, "ptst", {"prompt": f"ptst:{p.prompt_id}"})
    return out


def _evaluate_snapshot(trial: Trial, setting: Setting, app: str, judge, step: int, path: str,
                       contexts: dict[str, str]) -> dict:
    """Trait rates of one snapshot: a LoRA on its model's engine (app), or a full model on an
    app of its own."""
    spec = trial.spec
    placements = {f"probe:{p.name}": p.placement for p in trial.probes}
    if spec.train.method == "lora":
        name = trial.id if step == spec.train.total_steps() else f"{trial.id}.step{step}"
        return sample_contexts(serve.handle(app), setting, spec, contexts, adapter=name, adapter_path=path,
                               seed=trial.seed, judge=judge, placements=placements)
    with serve.model_app(f"{app}-{trial.id}-{step}", path, spec.engine) as handle:
        return sample_contexts(handle, setting, spec, contexts, seed=trial.seed, judge=judge, placements=placements)
