"""`inocray search`: the best inoculation prompt of many, for less than the grid's training.

    search(spec, candidates, options)   the three stages into one run directory, then the verdict
      1 screen    every prompt (the sweep's and the candidates) on the base model: the sweep's
                  own base measurement (rows/base.parquet: sampled elicitation, and the logprob
                  measure where the sweep takes it, eval.logprob_examples); the order the next
                  stage tries them in, best first, and the top `keep` kept
      2 halving   the kept prompts and the no-prompt control at the first seed, on Tune: each
                  snapshot evaluated as soon as it is saved (the rungs: first_rung, x eta, ...),
                  Tune's ASHA stopping a candidate below the top 1/eta of its rung at once
                  (_halving.py); its rows so far kept in stopped/
      3 confirm   the `finalists` best of stage 2 and the control trained to the end on every seed
                  (a stopped finalist continues from its newest checkpoint)
    (one Ray and one set of engines for all three: run_sweep's `stages`)
    -> the winner with its interval, the runner-up and the difference, and the training steps
       and wall time spent against the full grid's (search/summary.json)

The run directory is that of the full grid over the same prompts and seeds (its sweep.json):
every trial a search trains is the grid's trial of the same id, and `inocray run
RUN/search/grid.yaml` trains the grid itself, for comparison. A rerun of the same command
resumes: finished and stopped trials are not trained again, and the scheduler starts from
their recorded rungs.
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import yaml

from inocray.analysis import Confirmed, Objective, confirm
from inocray.config import BASE, NONE, SweepSpec, make_plan, parse_sweep, prompt_catalogue
from inocray.errors import InputError
from inocray.results import (RUNS_ROOT, SEARCH_DIR, Location, log_path, read_rows, search_path, storage, trial_rows,
                             write_atomically)
from inocray.run._candidates import Candidate
from inocray.run._halving import data_levels, reached, rungs
from inocray.run._launch import Stage, run_sweep
from inocray.settings import get_setting


@dataclass(frozen=True)
class SearchOptions:
    seed: int = 0  # the halving stage's training seed; the confirming seeds follow it
    seeds: int = 3  # confirming seeds: seed, seed + 1, ...
    keep: int = 0  # candidates kept after the screen, best first (0: all)
    finalists: int = 2  # trained to the end on every seed
    eta: int = 3  # ASHA's reduction factor: the top 1/eta of a rung go on
    first_rung: int = 0  # steps at the first rung (0: the run's steps / eta**2)
    suppress: str = ""  # the undesired trait to suppress ("": the setting's first)
    weight: float = 1.0  # penalty per unit of a desired trait's C0 rate lost
    budget: int = 0  # the most optimizer steps the halving stage may train, all trials together (0: no limit)


@dataclass(frozen=True)
class Spent:
    steps: int  # optimizer steps trained, every trial of the search together
    grid_steps: int  # those of the full grid over the same prompts and seeds
    seconds: float  # wall time of the search's runs (one killed before its end is not counted)
    trials: dict[str, int]  # trial id -> the furthest step it reached


def search(spec: SweepSpec, candidates: Sequence[Candidate], options: SearchOptions = SearchOptions(),
           out: Location | None = None, address: str | None = None, echo: Callable = print) -> Path | Location:
    """Search `candidates` (and the sweep's own prompts) for the best inoculation prompt; return
    the run directory. InputError (before any work) for a sweep with a grid, no candidates, a
    repeated id, an objective naming an unknown or desired trait, or a budget below one rung."""
    setting = get_setting(spec.setting, spec.data)
    objective = _objective(setting, options)
    grid = grid_spec(spec, candidates, options, setting)
    total = grid.train.total_steps()
    first = options.first_rung or max(1, total // options.eta ** 2)
    _check(options, first, total)
    rung_steps = rungs(total, first, options.eta)
    searched = dataclasses.replace(grid, train=dataclasses.replace(grid.train, checkpoint_at=rung_steps))
    run_dir = storage.resolve(out or RUNS_ROOT / f"search-{spec.name}-{searched.hash()}")
    record = json.loads(json.dumps({"options": dataclasses.asdict(options), "objective": dataclasses.asdict(objective),
                                    "rungs": rung_steps}))  # as it reads back
    seconds = _begin(run_dir, record, grid, echo)
    echo(f"search over {len(grid.prompts)} prompts: the objective is {objective.describe()}; rungs at steps "
         f"{', '.join(map(str, rung_steps))} of {total} (eta {options.eta}); {len(grid.seeds)} confirming seeds")
    plan = make_plan(searched, {spec.setting: setting.prompts})
    started = time.monotonic()
    seed, chosen = grid.seeds[0], {}

    def stages() -> Iterator[Stage]:
        order = screened(trial_rows(run_dir, BASE), objective)
        kept = order[: options.keep] if options.keep else order
        echo(f"stage 2, halving: {len(kept)} prompts and the no-prompt control at seed {seed}, best screened first: "
             f"{', '.join(kept[:8])}{', ...' if len(kept) > 8 else ''}")
        halving = [_trial(plan, NONE, seed)] + [_trial(plan, pid, seed) for pid in kept]
        yield Stage(tuple(halving), objective, first, options.eta, options.budget)
        chosen["finalists"] = _recorded(run_dir, "finalists") or _finalists(run_dir, plan, kept, seed, objective,
                                                                             options.finalists)
        _record(run_dir, finalists=chosen["finalists"])  # a finalist trained on changes what _finalists would say
        echo(f"stage 3, confirm: {', '.join(chosen['finalists'])} and the no-prompt control on seeds {_seeds(grid.seeds)}")
        yield Stage(tuple(_trial(plan, pid, s) for s in grid.seeds for pid in (NONE, *chosen["finalists"])))

    echo(f"stage 1, screen: the base model's elicitation of {objective.suppress} under each of the "
         f"{len(grid.prompts)} prompts ({'sampled and logprob' if grid.eval.logprob_examples else 'sampled'})")
    run_sweep(searched, run_dir, address, echo, stages=stages)
    finalists = chosen["finalists"]

    seconds += time.monotonic() - started
    _record(run_dir, seconds=round(seconds, 1))
    confirmed = confirm(read_rows(run_dir).to_pylist(), objective, finalists)
    spent = spent_steps(run_dir, plan, seconds)
    summary = _summary(confirmed, spent, objective, options)
    write_atomically(search_path(run_dir, "summary"),
                     lambda tmp: Path(tmp).write_text(json.dumps(summary, indent=2)))
    echo(verdict(confirmed, spent, objective))
    return run_dir


def grid_spec(spec: SweepSpec, candidates: Sequence[Candidate], options: SearchOptions, setting) -> SweepSpec:
    """The full grid a search stands in for: the sweep's prompts and the candidates, the no-prompt
    control, on the confirming seeds (no irrelevant or PTST controls)."""
    if make_plan(spec).is_grid:
        raise InputError("inocray search takes a sweep of one setting and one model, without a grid")
    if not candidates:
        raise InputError("there are no candidate prompts to search")
    if options.seeds < 1 or options.seed < 0:
        raise InputError("--seeds must be at least 1 and --seed at least 0")
    known = prompt_catalogue(spec, setting.prompts)
    clash = sorted({c.id for c in candidates} & (set(spec.prompts) | set(known) | {NONE}))
    if clash:
        raise InputError(f"candidate id {clash[0]!r} is already a prompt of the sweep or its setting; rename it")
    if len({c.id for c in candidates}) < len(candidates):
        raise InputError("two candidate prompts share an id; ids must be unique")
    grid = dataclasses.replace(
        spec, name=f"{spec.name}-search", prompts=[*spec.prompts, *(c.id for c in candidates)],
        custom_prompts=dict(spec.custom_prompts) | {c.id: [c.text] for c in candidates}, irrelevant=[], ptst=[],
        seeds=list(range(options.seed, options.seed + options.seeds)))
    # Through the sweep file's own checks (a candidate's id and text obey a prompt's rules), as grid.yaml reads.
    return parse_sweep(dataclasses.asdict(grid), "the search's grid (candidates as prompts)")


def _objective(setting, options: SearchOptions) -> Objective:
    undesired = [t.name for t in setting.traits if not t.desired]
    desired = tuple(t.name for t in setting.traits if t.desired)
    trait = options.suppress or (undesired[0] if undesired else "")
    if trait in desired:
        raise InputError(f"--suppress {trait!r} names a desired trait of {setting.name}; name one of "
                         f"{', '.join(undesired)}")
    if trait not in undesired:
        raise InputError(f"--suppress {trait!r} is not a trait of {setting.name}; its undesired traits: "
                         f"{', '.join(undesired) or 'none'}")
    if options.weight < 0:
        raise InputError("--weight must be 0 or more")
    return Objective(trait, desired, options.weight)


def _check(options: SearchOptions, first: int, total: int) -> None:
    if options.eta < 2:
        raise InputError("--eta must be at least 2")
    if options.finalists < 1 or options.keep < 0:
        raise InputError("--finalists must be at least 1 and --keep 0 or more")
    if first < 1 or first * options.eta > total:
        raise InputError(f"--first-rung {first} leaves no rung before the end: it must be at least 1 and at most "
                         f"the run's {total} steps / eta {options.eta}")
    if options.budget and options.budget < first:
        raise InputError(f"--budget {options.budget} is below one rung ({first} steps): no candidate could be compared")


def _begin(run_dir: Location, record: dict, grid: SweepSpec, echo: Callable) -> float:
    """Record the search's options (a rerun must give the same ones) and the grid's sweep file;
    the wall time earlier runs of this search spent."""
    path = search_path(run_dir, "record")
    if storage.exists(path):
        earlier = json.loads(storage.read_bytes(path))
        if {k: earlier.get(k) for k in record} != record:
            raise InputError(f"{run_dir} holds a search with other options ({earlier['options']}); "
                             "give the same options to resume it, or --out for a new search")
        echo(f"resuming the search in {run_dir}")
        return float(earlier.get("seconds", 0.0))
    storage.make_dir(storage.join(run_dir, SEARCH_DIR))
    write_atomically(path, lambda tmp: Path(tmp).write_text(json.dumps(record | {"seconds": 0.0}, indent=2)))
    spec = dataclasses.asdict(grid)
    write_atomically(search_path(run_dir, "grid"),
                     lambda tmp: Path(tmp).write_text(yaml.safe_dump(spec, sort_keys=False)))
    return 0.0


def _recorded(run_dir: Location, key: str):
    return json.loads(storage.read_bytes(search_path(run_dir, "record"))).get(key)


def _record(run_dir: Location, **fields) -> None:
    """Add `fields` to the search's record (search.json)."""
    path = search_path(run_dir, "record")
    record = json.loads(storage.read_bytes(path)) | fields
    write_atomically(path, lambda tmp: Path(tmp).write_text(json.dumps(record, indent=2)))


def screened(base_rows: list[dict], objective: Objective) -> list[str]:
    """Stage 1's order: the prompts by their elicitation of the trait to suppress on the base
    model (the logprob measure where the sweep took it, else sampled), strongest first."""
    rows = [r for r in base_rows if r["trait"] == objective.suppress and r["context"] == "prompt"
            and r["prompt_id"] != NONE]
    key = "logprob" if rows and all(r.get("logprob") is not None for r in rows) else "rate"
    return [r["prompt_id"] for r in sorted(rows, key=lambda r: (-r[key], r["prompt_id"]))]


def _trial(plan, prompt_id: str, seed: int) -> str:
    return next(t.id for t in plan.trials if t.prompt_id == prompt_id and t.seed == seed)


def _finalists(run_dir: Location, plan, kept: list[str], seed: int, objective: Objective, n: int) -> list[str]:
    """The `n` best of the halving stage: the furthest rung reached first, then the objective
    there, against the reference the scheduler used (the training data's levels)."""
    reference, scored = data_levels(run_dir), []
    for pid in kept:
        steps = reached(run_dir, _trial(plan, pid, seed))
        if steps:  # else it never reached a rung (the budget ran out first)
            step = max(steps)
            scored.append((step, objective.value(steps[step], reference), pid))
    if not scored:
        raise InputError("no candidate reached its first rung; raise --budget")
    return [pid for _, _, pid in sorted(scored, reverse=True)[:n]]


def spent_steps(run_dir: Location, plan, seconds: float) -> Spent:
    """The furthest step each trial of the plan reached (its log: "end step=N" or "stopped step=N"),
    against the full grid's steps."""
    total = plan.spec.train.total_steps()
    reached = {}
    for t in plan.trials:
        path = log_path(run_dir, t.id)
        if not storage.exists(path):
            continue
        steps = [int(s) for s in re.findall(r" (?:end|stopped) step=(\d+)", storage.read_bytes(path).decode())]
        if steps:
            reached[t.id] = max(steps)
    return Spent(sum(reached.values()), len(plan.trials) * total, seconds, reached)


def _summary(confirmed: Confirmed, spent: Spent, objective: Objective, options: SearchOptions) -> dict:
    return {
        "objective": objective.describe(),
        "finalists": [dataclasses.asdict(f) for f in confirmed.finalists],
        "winner": confirmed.winner.prompt_id if confirmed.finalists else None,
        "difference_winner_runner_up": list(confirmed.difference),
        "seeds": list(confirmed.seeds),
        "steps": spent.steps, "grid_steps": spent.grid_steps, "share_of_grid": spent.steps / spent.grid_steps,
        "seconds": round(spent.seconds, 1), "trials": spent.trials, "options": dataclasses.asdict(options),
    }


def verdict(confirmed: Confirmed, spent: Spent, objective: Objective) -> str:
    """What the search found, in a few lines."""
    lines = [f"objective: {objective.describe()}, on seeds {_seeds(confirmed.seeds)}"]
    for rank, f in enumerate(confirmed.finalists, 1):
        interval = f"[{f.low:+.2f}, {f.high:+.2f}]" if f.low == f.low else "(one seed: no interval)"
        lines.append(f"  {'winner' if rank == 1 else 'runner-up' if rank == 2 else f'#{rank}':<10} "
                     f"{f.prompt_id:<24} {f.mean:+.2f} {interval}")
    mean, low, high = confirmed.difference
    if mean == mean:
        lines.append(f"  winner - runner-up: {mean:+.2f}" + (f" [{low:+.2f}, {high:+.2f}]" if low == low else ""))
    share = spent.steps / spent.grid_steps
    grid_seconds = spent.seconds / spent.steps * spent.grid_steps if spent.steps else float("nan")
    lines.append(f"spent {spent.steps} training steps, {share:.0%} of the full grid's {spent.grid_steps}, in "
                 f"{spent.seconds / 60:.1f} min (the grid at this rate: about {grid_seconds / 60:.0f} min)")
    return "\n".join(lines)


def _seeds(seeds) -> str:
    return ", ".join(map(str, seeds))
