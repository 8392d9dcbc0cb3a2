"""Where a toy trial's wall time goes on the real path: the share outside training steps and generation.

    python bench/overhead.py [--sweep sweeps/toy.yaml] [--prompt es-always] [--seeds 2] [--alone]

Runs the real sweep (`inocray.run._launch.run_sweep`, what `inocray run` calls) on the toy sweep
cut to one prompt and `--seeds` seeds: the pair, that prompt's trial and the no-prompt control,
two at a time as in the full sweep, once per seed (`--alone`: the prompt's trials only). With
two seeds the pair runs twice: first on fresh slots, then on the slots the first pair left, as
every trial of a sweep after the first on each slot does. Nothing in inocray is edited: this
script wraps the package's own building blocks with timers before they run, in each process
that runs them (driver, the Tune trial's actor, each slot's task and its Ray Train workers),
and each process appends (phase, start, end) to one JSON-lines file:

- driver: ray.init, the Serve app's start (vLLM engine), the base model's elicitation, Tune;
- trial (wrapped `sweep.run_trial`): `workers.wait` (the job submitted to the pool until its
  model is back), each Serve request (through a timing proxy of the app's handle), rows, report;
- worker (wrapped `workers.job_loop`, once per long-lived group): its imports and the moment it
  is ready for jobs; then per trial (`train.train_loop`): the base model's load (once per
  group), the model copy + LoRA wrap, data encoding, deepspeed.initialize, resume check,
  saving, the barriers. Training steps are the time between deepspeed.initialize and saving.

A long-lived group's start (Ray Train's controller, worker actors and process group, the
imports, the base model's load) and Tune's trial actor (reused: `reuse_actors=True`) are paid
once per slot per sweep, not per trial, and are shown apart. A slot's first trial is timed from
the moment its trial function starts, less the part of its wait that fell before its group was
ready; a later trial on the same trial actor from the end of the actor's previous trial, so
Tune's hand-over between the two is in it. Goal: <= 25% of a trial's wall time outside training
steps and generation (it was 10% before the workers were long-lived; docs/benchmarks.md
explains the change).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

GOAL = 0.25
LOG_ENV = "INOCRAY_BENCH_TIMINGS"
TRIAL_ENV = "INOCRAY_BENCH_TRIAL"  # in a worker or a trial actor: the trial it is running


def record(phase: str, t0: float, t1: float, **extra) -> None:
    """Append one span to the shared timings file (each line is one small atomic write)."""
    line = json.dumps({"phase": phase, "t0": t0, "t1": t1, "pid": os.getpid(), **extra}) + "\n"
    with open(os.environ[LOG_ENV], "a") as f:
        f.write(line)


def timed(phase: str, fn, **extra):
    def wrapper(*args, **kwargs):
        t0 = time.time()
        try:
            return fn(*args, **kwargs)
        finally:
            record(phase, t0, time.time(), **({"trial": os.environ.get(TRIAL_ENV)} | extra))

    return wrapper


def wrap(owner, name: str, phase: str, **extra) -> None:
    setattr(owner, name, timed(phase, getattr(owner, name), **extra))


# --- a slot's Ray Train workers ------------------------------------------------------------------

def timed_job_loop(config: dict) -> None:
    """A long-lived worker: time its imports, wrap the building blocks, run the real job loop."""
    t0 = time.time()
    record("worker: function entered", t0, t0)
    if not config["use_gpu"]:
        os.environ.setdefault("DS_ACCELERATOR", "cpu")  # as train.import_deepspeed
    for module in ("torch", "deepspeed", "transformers", "peft"):
        t = time.time()
        __import__(module)
        record("worker: imports", t, time.time(), module=module)
    import deepspeed
    import peft
    import torch

    from inocray.training import _checkpoints as checkpoints
    from inocray.training import _loop as train
    from inocray.training import _workers as workers

    t = time.time()
    train.import_deepspeed(config["use_gpu"])  # what job_loop imports first (and deepspeed.initialize would)
    record("worker: imports", t, time.time(), module="train.import_deepspeed")

    wrap(train, "load_base_model", "worker: load base model")
    wrap(train, "build_model", "worker: model copy + LoRA wrap")
    wrap(peft, "get_peft_model", "worker: LoRA wrap")
    wrap(train, "encode_shard", "worker: encode examples")
    wrap(train, "TrialLog", "worker: trial log + metrics")
    wrap(deepspeed, "initialize", "worker: deepspeed.initialize")
    wrap(checkpoints, "resume", "worker: resume check")
    wrap(checkpoints, "save_model", "worker: save adapter")
    wrap(checkpoints, "save_state", "worker: save state")
    wrap(torch.distributed, "barrier", "worker: barrier")
    original = train.train_loop

    def train_loop(job, group):
        os.environ[TRIAL_ENV] = job.trial_id
        start = time.time()
        try:
            return original(job, group)
        finally:
            record("worker: train_loop", start, time.time(), trial=job.trial_id)
            del os.environ[TRIAL_ENV]

    train.train_loop = train_loop
    record("worker: ready", time.time(), time.time())
    workers.job_loop(config)  # a fresh worker: the package's own loop


def timed_run_slot(*args) -> None:
    """A slot's task: hand the timed job loop to the slot's TorchTrainer, run the real slot."""
    from inocray.training import _workers as workers

    original = workers.run_slot
    workers.job_loop = timed_job_loop  # run_slot hands this to TorchTrainer
    original(*args)


# --- the Tune trial ------------------------------------------------------------------------------

class _TimedHandle:
    """A Serve app handle whose method calls record their span from .remote() to .result()."""

    def __init__(self, handle):
        self._handle = handle

    def __getattr__(self, method: str):
        handle = self._handle

        class Call:
            @staticmethod
            def remote(*args, **kwargs):
                t0, response = time.time(), getattr(handle, method).remote(*args, **kwargs)

                class Pending:
                    @staticmethod
                    def result(*a, **k):
                        try:
                            return response.result(*a, **k)
                        finally:
                            record(f"trial: Serve {method}", t0, time.time(), trial=os.environ.get(TRIAL_ENV))

                return Pending()

        return Call()


def _wrap_trial_blocks() -> None:
    """Wrap the trial's building blocks in this actor, once: a reused actor runs many trials,
    and each span is tagged with the trial running when it ends (TRIAL_ENV)."""
    from ray import tune

    from inocray.evaluation import serve
    from inocray.run import _trial as trial

    if getattr(trial.wait, "timed", False):
        return
    wrap(trial, "wait", "trial: train (job submitted -> model back)")
    original_handle = serve.handle
    serve.handle = lambda app: _TimedHandle(original_handle(app))
    wrap(trial, "sample_contexts", "trial: evaluate (sample_contexts)")
    wrap(trial, "write_rows", "trial: write rows")
    wrap(tune, "report", "trial: tune.report")
    trial.wait.timed = True


def timed_run_trial(config: dict, **kwargs) -> None:
    """Tune's trial function: the real trial, its building blocks timed."""
    t0 = time.time()
    trial = config["trial_id"]
    os.environ[TRIAL_ENV] = trial
    from inocray.run import _trial

    _wrap_trial_blocks()
    try:
        _trial.run_trial(config, **kwargs)  # this actor imported inocray afresh: the package's own
    finally:
        record("trial: function", t0, time.time(), trial=trial)


# --- the driver and the account ------------------------------------------------------------------

def run(sweep_file: str, prompt: str, seeds: int, alone: bool, tmp: Path) -> tuple[float, Path]:
    """Run the cut sweep with the timers in place; return the driver's wall time."""
    import yaml

    t0 = time.time()
    import ray

    from inocray.evaluation import serve
    from inocray.run import _launch as sweep
    from inocray.config import parse_sweep

    record("driver: imports", t0, time.time())
    doc = yaml.safe_load(Path(sweep_file).read_text())
    doc |= {"prompts": [prompt], "irrelevant": [], "seeds": list(range(seeds))}
    spec = parse_sweep(doc, source=sweep_file)
    from inocray.training import _workers as workers

    sweep.run_trial = timed_run_trial  # _tune hands this to Tune (the trial's actor runs the original)
    workers.run_slot = timed_run_slot  # the pool hands this to each slot's task
    if alone:
        import dataclasses

        make_plan = sweep.make_plan

        def one_prompt(*a):
            plan = make_plan(*a)
            return dataclasses.replace(plan, trials=tuple(t for t in plan.trials if t.prompt_id == prompt))

        sweep.make_plan = one_prompt
    wrap(ray, "init", "driver: ray.init")
    wrap(serve, "start", "driver: Serve app start (vLLM engine)")
    wrap(sweep, "_measure_base", "driver: base model elicitation")
    wrap(sweep, "_tune", "driver: Tune (all trials)")
    wrap(serve, "stop", "driver: Serve app stop")
    wrap(ray, "shutdown", "driver: ray.shutdown")
    start = time.time()
    run_dir = sweep.run_sweep(spec, tmp / "run", echo=lambda line: print(f"  | {line}", flush=True))
    end = time.time()
    record("driver: run_sweep", start, end)
    return end - t0, run_dir


def account(spans: list[dict]) -> None:
    by = defaultdict(list)
    for s in spans:
        by[(s["phase"], s.get("trial"))].append(s)

    def total(phase: str, trial=None) -> float:
        return sum(s["t1"] - s["t0"] for s in by[(phase, trial)])

    def one(phase: str, trial=None) -> dict:
        return by[(phase, trial)][0]

    tune_span = one("driver: Tune (all trials)")
    ready = {s["pid"]: s["t0"] for s in by[("worker: ready", None)]}
    entered = {s["pid"]: s["t0"] for s in by[("worker: function entered", None)]}
    functions = sorted((s for s in spans if s["phase"] == "trial: function"), key=lambda s: s["t0"])
    shares = {"first on its slot": [], "after another on its slot": []}
    for fn in functions:
        trial = fn["trial"]
        wait = one("trial: train (job submitted -> model back)", trial)
        before = [f["t1"] for f in functions if f["pid"] == fn["pid"] and f["t1"] <= fn["t0"]]
        kind = "after another on its slot" if before else "first on its slot"
        start = max(before) if before else fn["t0"]  # the actor's previous trial ended, or this one began
        loop = one("worker: train_loop", trial)
        base_load = total("worker: load base model", trial)  # the group's first trial loads it
        before_ready = max(0.0, ready[loop["pid"]] - wait["t0"])  # the group was still starting
        group_start = before_ready + base_load  # once per slot
        reports = sum(s["t1"] - s["t0"] for s in by[("trial: tune.report", trial)] if s["t0"] >= wait["t1"])
        ds_end = one("worker: deepspeed.initialize", trial)["t1"]
        save = one("worker: save adapter", trial)
        steps = save["t0"] - ds_end
        generate = total("trial: Serve generate", trial)
        wall = fn["t1"] - start - group_start
        rows = [
            *([("Tune: hand-over on the reused actor", fn["t0"] - start)] if before else []),
            ("trial: TrainJob before submitting it" + ("" if before else " (+ first imports)"), wait["t0"] - fn["t0"]),
            ("queue: job submitted -> worker starts it (group ready)", loop["t0"] - wait["t0"] - before_ready),
            ("worker: model copy + LoRA wrap", total("worker: model copy + LoRA wrap", trial)),
            ("worker: encode examples", total("worker: encode examples", trial)),
            ("worker: deepspeed.initialize", total("worker: deepspeed.initialize", trial)),
            ("worker: TRAINING STEPS", steps),
            ("worker: save adapter", total("worker: save adapter", trial)),
            ("worker: final barrier, engine teardown", loop["t1"] - save["t1"]),
            ("queue: worker done -> trial has the model", wait["t1"] - loop["t1"]),
            ("Serve: GENERATE request (C0 + Cs)", generate),
            ("trial: scoring (sample_contexts less the request)",
             total("trial: evaluate (sample_contexts)", trial) - generate),
            ("trial: write rows + tune.report", total("trial: write rows", trial) + reports),
        ]
        named = sum(sec for _, sec in rows)
        rows.append(("(unaccounted: worker glue, Python between phases)", wall - named))
        outside = wall - steps - generate
        shares[kind].append(outside / wall)
        since = "its trial function's start" if not before else "the actor's previous trial's end"
        print(f"\ntrial {trial} ({kind}): wall {wall:.1f} s ({since} -> trial function end, less its group's start)")
        for name, sec in rows:
            print(f"  {name:<56} {sec:6.2f} s  {100 * sec / wall:5.1f}%")
        verdict = "met" if outside / wall <= GOAL else f"missed: {outside / wall / GOAL:.1f}x the goal"
        print(f"  outside training steps and generation: {outside:.1f} s = {100 * outside / wall:.0f}% "
              f"(goal <= {100 * GOAL:.0f}%: {verdict})")
        if not before:
            print(f"  once per slot, not in the trial's wall: Tune's setup + trial actor start "
                  f"{fn['t0'] - tune_span['t0']:.1f} s, group start {group_start:.1f} s "
                  f"(worker entered {entered[loop['pid']] - wait['t0']:+.1f} s after submission, ready "
                  f"{ready[loop['pid']] - wait['t0']:+.1f} s), base model load {base_load:.2f} s")
    print()
    for kind, values in shares.items():
        if values:
            print(f"outside training steps and generation, trials {kind}: "
                  + ", ".join(f"{100 * v:.0f}%" for v in values) + f" (goal <= {100 * GOAL:.0f}%)")
    run = one("driver: run_sweep")
    print(f"\nonce per sweep (driver; {len(functions)} trial(s) here, 16 in the toy sweep):")
    for phase in ("driver: imports", "driver: ray.init", "driver: Serve app start (vLLM engine)",
                  "driver: base model elicitation", "driver: Tune (all trials)", "driver: Serve app stop",
                  "driver: ray.shutdown"):
        print(f"  {phase:<56} {total(phase):6.2f} s")
    print(f"  {'driver: run_sweep (whole)':<56} {run['t1'] - run['t0']:6.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweep", default="sweeps/toy.yaml")
    parser.add_argument("--prompt", default="es-always", help="the inoculation prompt of the measured trial")
    parser.add_argument("--seeds", type=int, default=2, help="runs of the pair, one per seed (0, 1, ...)")
    parser.add_argument("--alone", action="store_true", help="run that prompt's trials alone (no concurrent control)")
    parser.add_argument("--keep", default=None, help="also copy the timings file here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="inocray-overhead-") as tmp:
        log = Path(tmp) / "timings.jsonl"
        os.environ[LOG_ENV] = str(log)  # inherited by Ray's workers (a local Ray started below)
        wall, _ = run(args.sweep, args.prompt, args.seeds, args.alone, Path(tmp))
        spans = [json.loads(line) for line in log.read_text().splitlines()]
        if args.keep:
            Path(args.keep).write_text(log.read_text())
    print(f"\nmachine: {os.cpu_count()} cores, no GPU; whole command {wall:.1f} s")
    account(spans)


if __name__ == "__main__":
    sys.exit(main())
