"""Experiment trackers (`tracking:` in the sweep file), through Ray Tune's own callbacks.

    callbacks(plan)      Ray Tune's MLflowLoggerCallback and WandbLoggerCallback, as the sweep asks
    trial_params(plan)   what each trial is (cell, prompt, role, seed), as Tune config values that
                         the callbacks log as the run's parameters

Each trial is one run: MLflow's in the experiment named after the sweep, W&B's in the project,
grouped by the sweep hash; its parameters are the trial's id, cell, prompt, role and seed, its
metrics what the trial reports to Tune (the final loss, each context's trait rates). MLflow
and W&B are optional extras (`pip install inocray[mlflow]`, `inocray[wandb]`); W&B reads its
own variables (WANDB_API_KEY, WANDB_MODE=offline, WANDB_DIR).
"""

from __future__ import annotations

from inocray.config import Plan

__all__ = ["callbacks", "trial_params"]


def callbacks(plan: Plan) -> list:
    tracking, sweep = plan.spec.tracking, plan.spec.hash()
    out = []
    if tracking.mlflow:
        from ray.air.integrations.mlflow import MLflowLoggerCallback

        out.append(MLflowLoggerCallback(tracking_uri=tracking.mlflow, experiment_name=plan.spec.name,
                                        tags={"sweep": sweep}, save_artifact=False))
    if tracking.wandb.project:
        from ray.air.integrations.wandb import WandbLoggerCallback

        out.append(WandbLoggerCallback(project=tracking.wandb.project, group=sweep, tags=[plan.spec.name],
                                       log_config=False))
    return out


def trial_params(plan: Plan, todo: list[str]) -> dict:
    """Tune config entries beside `trial_id`, each resolved from it (logged as the run's params)."""
    from ray import tune

    about = {t.id: {"cell": t.cell.id, "prompt": t.prompt_id, "role": t.prompt_role, "seed": t.seed}
             for t in plan.trials if t.id in todo}

    def of(name: str):
        return tune.sample_from(lambda config: about[config["trial_id"]][name])

    return {name: of(name) for name in ("cell", "prompt", "role", "seed")}
