"""Experiment trackers (`tracking:` in the sweep file), through Ray Tune's own callbacks.

    callbacks(plan)      Ray Tune's MLflowLoggerCallback and WandbLoggerCallback, as the sweep asks
    log_fit(spec, fit)   the fit as one more run, "fit-HASH": every estimate and interval of
                         analysis.csv as metrics, the headline as a tag (MLflow) or summary (W&B)
    trial_params(plan)   what each trial is (cell, prompt, role, seed), as Tune config values that
                         the callbacks log as the run's parameters
    snapshot_metrics(...)  what a trial reports to Tune of one evaluated snapshot: each context's
                         trait rates, at the snapshot's training step

Each trial is one run: MLflow's in the experiment named after the sweep, W&B's in the project,
grouped by the sweep hash; its parameters are the trial's id, cell, prompt, role and seed, its
metrics what the trial reports to Tune: the loss every training.REPORT_EVERY steps and at the
last (the loss curve), each evaluated snapshot's `CONTEXT_TRAIT` rates, and the final loss.
Each report carries its training step (`step`): MLflow logs the report at that step; W&B logs
it at Tune's count of reports, with `step` beside it to plot against. MLflow and W&B are
optional extras (`pip install inocray[mlflow]`, `inocray[wandb]`); W&B reads its own variables
(WANDB_API_KEY, WANDB_MODE=offline, WANDB_DIR).
"""

from __future__ import annotations

import os
import time

from inocray.analysis import RunFit
from inocray.config import Plan, SweepSpec
from inocray.run._summary import headline

__all__ = ["callbacks", "fit_metrics", "log_fit", "snapshot_metrics", "trial_params"]

STEP = "step"  # the training step a report is about (the loop's loss reports name it so too)


def callbacks(plan: Plan) -> list:
    tracking, sweep = plan.spec.tracking, plan.spec.hash()
    out = []
    if tracking.mlflow:
        from ray.air.integrations.mlflow import MLflowLoggerCallback
        from ray.tune.result import TIMESTEPS_TOTAL

        class AtTrainingStep(MLflowLoggerCallback):
            """Logs each report at its training step, which the callback takes from Tune's
            `timesteps_total` (else it counts reports: snapshots and losses would not line up)."""

            def log_trial_result(self, iteration, trial, result):
                at = {TIMESTEPS_TOTAL: result[STEP]} if isinstance(result.get(STEP), int) else {}
                super().log_trial_result(iteration, trial, result | at)

        out.append(AtTrainingStep(tracking_uri=tracking.mlflow, experiment_name=plan.spec.name,
                                  tags={"sweep": sweep}, save_artifact=False))
    if tracking.wandb.project:
        from ray.air.integrations.wandb import WandbLoggerCallback

        # Each trial logs from an actor of its own, which Ray gives only WANDB_API_KEY of the
        # driver's environment: W&B's mode and directory go to wandb.init explicitly.
        init = {k: os.environ[v] for k, v in (("mode", "WANDB_MODE"), ("dir", "WANDB_DIR")) if os.environ.get(v)}
        out.append(WandbLoggerCallback(project=tracking.wandb.project, group=sweep, tags=[plan.spec.name],
                                       log_config=False, **init))
    return out


def trial_params(plan: Plan, todo: list[str]) -> dict:
    """Tune config entries beside `trial_id`, each resolved from it (logged as the run's params)."""
    from ray import tune

    about = {t.id: {"cell": t.cell.id, "prompt": t.prompt_id, "role": t.prompt_role, "seed": t.seed}
             for t in plan.trials if t.id in todo}

    def of(name: str):
        return tune.sample_from(lambda config: about[config["trial_id"]][name])

    return {name: of(name) for name in ("cell", "prompt", "role", "seed")}


def snapshot_metrics(rates: dict[str, dict[str, tuple[float, int]]], contexts, step: int) -> dict:
    """One snapshot's report: `CONTEXT_TRAIT` -> rate for each of `contexts`, and its step."""
    return {f"{ctx}_{trait}": rate for ctx in contexts for trait, (rate, _) in rates[ctx].items()} | {STEP: step}


def fit_metrics(fit: RunFit) -> dict[str, float]:
    """Each estimate of the fit's table and its interval, named
    [CELL.]TRAIT.SCALE.QUANTITY[.PROMPT][.ci_low|.ci_high] (no "/": MLflow's file store makes
    a name's "/" a directory, which a shorter name could not then be)."""
    out = {}
    for row in fit.to_table().to_pylist():
        parts = (row["cell"], row["trait"], row["scale"], row["quantity"], row["prompt_id"])
        name = ".".join(x.replace("/", "_") for x in parts if x)
        for suffix, key in (("", "estimate"), (".ci_low", "ci_low"), (".ci_high", "ci_high")):
            if row[key] is not None and row[key] == row[key]:  # no interval, or NaN: not logged
                out[name + suffix] = row[key]
    return out


def log_fit(spec: SweepSpec, fit: RunFit) -> None:
    """The fit as a run "fit-HASH" of each tracker the sweep names."""
    tracking, sweep = spec.tracking, spec.hash()
    metrics = fit_metrics(fit)
    headlines = "\n".join((f"[{t.cell}] " if t.cell else "") + headline(t) for t in fit.traits)
    if tracking.mlflow:
        from mlflow.entities import Metric
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=tracking.mlflow)
        found = client.get_experiment_by_name(spec.name)
        experiment = found.experiment_id if found else client.create_experiment(spec.name)
        run = client.create_run(experiment, run_name=f"fit-{sweep}", tags={"sweep": sweep, "headline": headlines})
        now = int(time.time() * 1000)
        client.log_batch(run.info.run_id, metrics=[Metric(k, v, now, 0) for k, v in metrics.items()])
        client.set_terminated(run.info.run_id)
    if tracking.wandb.project:
        import wandb

        run = wandb.init(project=tracking.wandb.project, group=sweep, name=f"fit-{sweep}", job_type="fit",
                         tags=[spec.name])
        run.summary.update(metrics | {"headline": headlines})
        run.finish()
