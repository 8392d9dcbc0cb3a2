"""Does the sweep fit its Ray cluster? The engines and one trial against the cluster's resources.

What each part of a sweep reserves is the plan's Placement (config/_placement.py): the engine
apps for the whole sweep, and per running trial its Tune trainable, its long-lived training
group and, fully fine-tuned, an engine of its own. A cluster that cannot hold the engines and
one trial leaves the sweep waiting forever, so `check` turns that into one sentence before any
trial starts; `slots` is how many groups a sweep opens.

The resources are totals over the nodes; how they split between nodes is left to Ray. On an
autoscaling cluster `ray.cluster_resources()` shows only the nodes running now, so the
cluster launcher's node types (`~/ray_bootstrap_config.yaml` on the head, where the sweep
runs) count at their `max_workers`; node types that do not state their resources make the
check a warning.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Mapping

import yaml

from inocray.config import Placement, Plan
from inocray.errors import InputError

BOOTSTRAP_CONFIG = Path("~/ray_bootstrap_config.yaml")  # the cluster launcher's config, on the head
_SLACK = 1e-6  # Ray counts resources in units of 1e-4; sums of floats like 0.49 + 0.01 are not exact
KINDS = {"GPU": "gpu", "CPU": "cpu"}  # Ray's resource name -> Holds field


def _needs(placement: Placement) -> tuple[dict[str, float], dict[str, float]]:
    """What the engines hold, and what one trial holds, by Ray resource name."""
    engine, trial = placement.engines, placement.trial
    return ({k: getattr(engine, f) for k, f in KINDS.items()}, {k: getattr(trial, f) for k, f in KINDS.items()})


def problem(resources: Mapping[str, float], plan: Plan, at_most: bool = False) -> str | None:
    """Why the engines and one trial cannot run at once on `resources` (one sentence), or None.

    `at_most`: `resources` is the most an autoscaling cluster can grow to, not what it has.
    """
    engine, trial = _needs(plan.placement)
    for kind in KINDS:
        need, have = engine[kind] + trial[kind], resources.get(kind, 0.0)
        if need <= have + _SLACK:
            continue
        has = f"{'can have at most' if at_most else 'has'} {_amount(have, kind)}"
        n = len(plan.models)
        engines = "the evaluation engine" if n == 1 else f"the {n} evaluation engines"
        return (f"{engines} ({_amount(engine[kind], kind)}) and one trial ({_amount(trial[kind], kind)}) "
                f"need {_amount(need, kind)} at once but the Ray cluster {has}: {_advice(kind, have, plan)}")
    return None


def _amount(value: float, kind: str) -> str:
    return f"{value:g} {kind}{'' if 0 < value <= 1 else 's'}"


def _advice(kind: str, have: float, plan: Plan) -> str:
    """What to change in the sweep file (or the cluster) so that the engines and a trial fit."""
    (engine, trial), t, where = _needs(plan.placement), plan.spec.train, plan.placement
    fixes = []
    if kind == "GPU" and have < _SLACK:
        no_gpu = ["engine.num_gpus: 0"] * bool(engine["GPU"]) + ["train.use_gpu: false"] * t.use_gpu
        fixes.append("set " + " and ".join(no_gpu))
    elif kind == "GPU":
        if engine["GPU"] and trial["GPU"] <= have:
            gpu_replicas = where.replicas + (where.judge is not None)
            fixes.append(f"set engine.num_gpus to at most {(have - trial['GPU']) / gpu_replicas:g}")
        if t.use_gpu:
            workers = math.floor(have - engine["GPU"] + _SLACK)
            fixes.append(f"lower train.num_workers to {workers}" if workers >= 1 else "set train.use_gpu: false")
    else:
        room = have - engine["CPU"] - where.trainable.cpu
        workers = math.floor(room / t.cpus_per_worker + _SLACK)
        if workers >= 1:
            fixes.append(f"lower train.num_workers to {workers}")
        if room / t.num_workers >= 0.01:
            fixes.append(f"set train.cpus_per_worker to at most {math.floor(room / t.num_workers * 100) / 100:g}")
        if engine["CPU"]:
            fixes.append("lower engine.num_cpus")
    return ", ".join(fixes + [f"or use a cluster with more {kind}s"])


def concurrent_trials(resources: Mapping[str, float], plan: Plan) -> int:
    """How many trials fit on `resources` beside the engines at once (0 if not one does)."""
    engine, trial = _needs(plan.placement)
    fits = [math.floor((resources.get(k, 0.0) - engine[k]) / trial[k] + _SLACK) for k in trial if trial[k] > 0]
    return max(0, min(fits))


def autoscaler_max(config: Mapping) -> dict[str, float] | None:
    """The most resources a cluster launcher config (`ray up`) can bring up: the head plus every
    worker node type at its `max_workers`. None if a node type does not state its resources."""
    types = config.get("available_node_types") or {}
    head, ceiling = config.get("head_node_type"), config.get("max_workers", math.inf)
    total: dict[str, float] = {}
    for name, node_type in types.items():
        if not node_type.get("resources"):
            return None
        count = 1 if name == head else min(node_type.get("max_workers", ceiling), ceiling)
        for kind, amount in node_type["resources"].items():
            total[kind] = total.get(kind, 0.0) + amount * count
    return total or None


def check(plan: Plan, echo: Callable = print) -> None:
    """Raise InputError if the running Ray cluster can never hold the engine and one trial; say
    so when it holds fewer trials at once than max_concurrent_trials. Needs Ray initialized."""
    resources, config, most = _reachable()
    if config is not None and most is None:  # an autoscaling cluster whose node types do not say what they have
        found = problem(resources, plan)
        if found:
            echo(f"warning: {found} (unless the autoscaler adds nodes: "
                 "its node types do not state their resources)")
        return
    found = problem(resources, plan, at_most=most is not None)
    if found:
        raise InputError(found)
    fits = concurrent_trials(resources, plan)
    if fits < plan.spec.max_concurrent_trials:
        echo(f"the Ray cluster holds the engine and {fits} trial(s) at once, so {fits} run at a time "
             f"(max_concurrent_trials is {plan.spec.max_concurrent_trials})")


def slots(plan: Plan, trials: int) -> int:
    """How many long-lived worker groups a sweep of `trials` unfinished trials opens: one per
    trial that runs at once, at most max_concurrent_trials and what the cluster holds (at least
    one: `check` has said whether one fits). Needs Ray initialized."""
    resources, _, _ = _reachable()
    return max(1, min(plan.spec.max_concurrent_trials, trials, concurrent_trials(resources, plan)))


def _reachable() -> tuple[dict[str, float], dict | None, dict[str, float] | None]:
    """The running cluster's resources, raised to the most an autoscaling cluster can grow to
    where its launcher config says; with that config and that most (None where unknown)."""
    import ray

    resources: dict[str, float] = dict(ray.cluster_resources())
    config = _launcher_config()
    most = autoscaler_max(config) if config is not None else None
    if most is not None:
        resources = {k: max(resources.get(k, 0.0), most.get(k, 0.0)) for k in resources.keys() | most.keys()}
    return resources, config, most


def _launcher_config() -> dict | None:
    """The cluster launcher's config if this is the head of a `ray up` cluster, else None."""
    path = BOOTSTRAP_CONFIG.expanduser()
    if not path.is_file():
        return None
    config = yaml.safe_load(path.read_text())
    return config if isinstance(config, dict) else None
