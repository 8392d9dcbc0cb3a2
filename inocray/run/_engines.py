"""The sweep's evaluation engines: one Serve app per base model, and the judge, for its whole life.

    engines(plan, model_paths, ...)   a `with` block: Ray and every engine app, all started at
                                      once (the resource check counts them all)
    app_name(plan, model, run_dir)    the app of a model's engine, from any process
    judge_of(plan, model, run_dir)    the judge of that model's cells (evaluation.Judge or ApiJudge), or None
"""

from __future__ import annotations

import contextlib
import hashlib
from typing import Callable, Iterator

from inocray.config import Plan
from inocray.evaluation import ApiJudge, Judge, serve
from inocray.results import LOGS_DIR, storage


def app_name(plan: Plan, model: str, run_dir: str) -> str:
    """The Serve app of `model`'s engine in the run into `run_dir`: "inocray-HASH-RUN", or
    "inocray-HASH-RUN-I" for the I-th model of a sweep of several. RUN is a digest of the run
    directory, so two runs of one sweep on one cluster (two run directories: one driver holds
    each, results.hold) never deploy or delete each other's engines."""
    run = hashlib.sha256(str(run_dir).encode()).hexdigest()[:8]
    return f"inocray-{plan.spec.hash()}-{run}" + (f"-{plan.models.index(model)}" if len(plan.models) > 1 else "")


def judge_of(plan: Plan, model: str, run_dir: str) -> Judge | ApiJudge | None:
    """The judge of a cell of `model`, or None: an API judge (`eval.judge`) for every cell;
    "base" is that model's own engine; a judge model of its own is served once, beside the first
    model's engine."""
    if plan.spec.eval.judge.endpoint:
        return ApiJudge(plan.spec.eval.judge, sweep=plan.spec.hash())
    judge_model = plan.spec.eval.judge_model
    where = model if judge_model in ("", "base") else plan.models[0]
    return serve.judge(app_name(plan, where, run_dir), judge_model)


@contextlib.contextmanager
def engines(plan: Plan, run_dir: str, model_paths: dict[str, str], address: str | None, echo: Callable,
            host: str, before_start: Callable | None) -> Iterator[None]:
    """One evaluation engine per base model, all started at once and kept for the whole sweep;
    the first model's comes with Ray and the judge. `before_start` runs once Ray is up, before
    any engine asks for its resources."""
    spec, replica = plan.spec, plan.placement.replica
    first, *others = plan.models
    logs = str(storage.join(storage.location(run_dir), LOGS_DIR))  # each replica notes its node there
    with serve.session(app_name(plan, first, run_dir), model_paths[first], spec.engine, replica, address, echo,
                       judge_model=spec.eval.judge_model, host=host, before_start=before_start, log_dir=logs):
        started = []
        try:
            for model in others:
                echo(f"starting the evaluation engine of {model} ...")
                serve.start(app_name(plan, model, run_dir), model_paths[model], spec.engine, replica, log_dir=logs)
                started.append(model)
            yield
        finally:
            for model in started:
                serve.stop(app_name(plan, model, run_dir))
