"""How wide will the intervals be? Simulate a sweep's design before running it.

    design = Design(elicitation={"es-hint": 0.07, ...}, base_neutral=0.02, data_level=0.95,
                    seeds=2, n=128)
    plan = plan_sweep(design, k=0.5, noise=0.03, target_width=0.1)
    print(plan.to_text())

Each design (seeds, samples per rate) is simulated `sims` times from the App. H model
(`simulate.simulate_rows`, raw scale: the planted k, training noise Normal(0, noise) on rates,
Binomial(n) sampling noise on every rate) and fit with `fit_rows`, exactly as a finished sweep
would be; the expected width of an interval is its mean over the simulated sweeps.
"""

from __future__ import annotations

import os
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from inocray.analysis import NO_PROMPT, fit_rows, read_runs
from inocray.analysis._text import WIDTH
from inocray.analysis.simulate import PlantedTrait, simulate_rows
from inocray.errors import InputError
from inocray.results import ROWS_DIR, SCREEN

SEEDS = (2, 3, 4, 6, 8, 12, 16)  # seed counts tried; the first four are always shown
SAMPLES = (1, 2, 4, 8, 16)  # multiples of the sweep's samples per rate; the first three shown
SHOWN = 4, 3
N_BOOT = 200  # bootstrap draws per simulated fit: the width, not its tails, is wanted
TRAIT = "trait"


@dataclass(frozen=True)
class Design:
    """What a sweep will measure: its prompts on the line, seeds and samples per rate."""

    elicitation: Mapping[str, float]  # T(M0, Cs) of each prompt on the line (not the control)
    base_neutral: float  # T(M0, C0)
    data_level: float  # T*: the trait level training reaches in the prompt's context
    seeds: int
    n: int  # samples per rate: eval.requests x eval.samples


@dataclass(frozen=True)
class Widths:
    seeds: int
    n: int
    slope: float  # mean width of the slope's 95% interval
    k: float  # mean width of the 95% interval of pooled k through the origin


@dataclass(frozen=True)
class Plan:
    design: Design
    k: float
    noise: float
    target_width: float
    sims: int
    rows: tuple[Widths, ...]  # the table: the sweep's n over SEEDS, the sweep's seeds over SAMPLES
    # "slope", "k": the fewest seeds (at the sweep's samples per rate) and the fewest samples
    # per rate (at its seeds) whose expected width is at or under the target; None: none tried
    reach: dict[str, tuple[Widths | None, Widths | None]]

    def to_text(self) -> str:
        d = self.design
        lines = [
            f"expected width of the 95% intervals: mean over {self.sims} simulated sweeps "
            f"(raw scale, k = {self.k:g}, training noise sd {self.noise:g})",
            f"  {'seeds':>5}  {'samples':>7}  {'slope':>6}  {'pooled k':>8}",
        ]
        for w in self.rows:
            mark = "  <- the sweep as written" if (w.seeds, w.n) == (d.seeds, d.n) else ""
            lines.append(f"  {w.seeds:5d}  {w.n:7d}  {w.slope:6.3f}  {w.k:8.3f}{mark}")
        for name, label in (("slope", "slope"), ("k", "pooled k")):
            by_seeds, by_samples = self.reach[name]
            if by_seeds is not None and by_seeds.seeds == d.seeds:
                says = "reached by the sweep as written"
            else:
                seeds = f"{by_seeds.seeds}" if by_seeds else f"more than {SEEDS[-1]}"
                samples = f"{by_samples.n}" if by_samples else f"more than {SAMPLES[-1] * d.n}"
                says = (f"needs {seeds} seeds (at {d.n} samples per rate) or {samples} samples per rate "
                        f"(at {d.seeds} seeds)")  # fmt: skip
            lines.append(f"target width {self.target_width:g} for the {label}: {says}")
        return "\n".join(map(wrap, lines)) + "\n"


def wrap(line: str) -> str:
    """A line of the plan wrapped to the width of the analysis summary."""
    return textwrap.fill(line, WIDTH, subsequent_indent="    ", break_on_hyphens=False)


def plan_sweep(design: Design, k: float, noise: float, target_width: float, sims: int = 50,
               seed: int = 0) -> Plan:  # fmt: skip
    """The expected widths of `design` and its neighbours, and which reach `target_width`."""
    trait = _planted(design, k)
    cache: dict[tuple[int, int], Widths] = {}

    def widths(seeds: int, n: int) -> Widths:
        if (seeds, n) not in cache:
            cache[seeds, n] = _simulated(trait, seeds, n, noise, sims, seed)
        return cache[seeds, n]

    over_seeds = [widths(s, design.n) for s in sorted({design.seeds, *SEEDS[: SHOWN[0]]})]
    over_n = [widths(design.seeds, design.n * m) for m in SAMPLES[1 : SHOWN[1]]]
    def first(name: str, designs: list[tuple[int, int]]) -> Widths | None:
        """The first of `designs` (simulated in turn, lazily) whose width of `name` reaches the target."""
        return next((w for w in (widths(*sn) for sn in designs) if getattr(w, name) <= target_width), None)

    more_seeds = [(s, design.n) for s in sorted({design.seeds, *(s for s in SEEDS if s > design.seeds)})]
    more_samples = [(design.seeds, design.n * m) for m in SAMPLES]
    reach = {name: (first(name, more_seeds), first(name, more_samples)) for name in ("slope", "k")}
    return Plan(design, k, noise, target_width, sims, tuple(over_seeds + over_n), reach)


def _planted(design: Design, k: float) -> PlantedTrait:
    if len(design.elicitation) < 3:
        raise InputError(f"the sweep has {len(design.elicitation)} prompt(s) on the line; a line needs 3")
    for prompt_id, x in design.elicitation.items():
        left = design.base_neutral + k * (design.data_level - x)
        if not 0.0 <= left <= 1.0:
            raise InputError(
                f"with k = {k:g}, prompt {prompt_id!r} (elicitation {x:.2f}) would leave the trait at "
                f"{left:.2f}, outside [0, 1]: give a smaller --k"
            )
    return PlantedTrait(TRAIT, k=k, base_neutral=design.base_neutral, data_level=design.data_level,
                        elicitation=dict(design.elicitation))  # fmt: skip


def _simulated(trait: PlantedTrait, seeds: int, n: int, noise: float, sims: int, seed: int) -> Widths:
    prompts = {s: "inoculation" for s in trait.elicitation}
    slope, k = [], []
    for i in range(sims):
        rows = simulate_rows([trait], prompts, seeds=seeds, n=n, seed_sd=noise, rng=[seed, seeds, n, i])
        t = fit_rows(rows, n_boot=N_BOOT, seed=i).trait(TRAIT)
        slope.append(_width(t.line.slope if t.line else None))
        k.append(_width(t.pooled_k.through_origin))
    return Widths(seeds, n, float(np.nanmean(slope)), float(np.nanmean(k)))


def _width(e) -> float:
    return e.high - e.low if e is not None and e.bounded else np.nan


# --- where the elicitation comes from: a screen's table or a finished run's base rows


@dataclass(frozen=True)
class Measured:
    """Elicitation per prompt id and per prompt text of one trait, and T(M0, C0)."""

    source: str  # the file or directory read
    trait: str
    by_id: dict[str, float]
    by_text: dict[str, float]
    base_neutral: float
    data_level: float | None  # T* where the run measured it


def read_elicitation(path: str | os.PathLike, trait: str | None) -> Measured:
    """The elicitation a screen (its directory, screen.parquet or screen.csv) or a run directory
    measured for `trait` (default: the first undesired trait)."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path} does not exist (expected a screen's output or a run directory)")
    screen = path / f"{SCREEN}.parquet" if path.is_dir() else path
    if screen.is_file():
        return _from_screen(screen, trait)
    if path.is_dir() and (path / ROWS_DIR).is_dir():
        return _from_run(path, trait)
    raise InputError(f"{path} is neither a screen's output ({SCREEN}.parquet) nor a run directory")


def _from_screen(path: Path, trait: str | None) -> Measured:
    try:
        if path.suffix == ".csv":
            import pyarrow.csv as pa_csv

            table = pa_csv.read_csv(path)
        else:
            table = pq.read_table(path)
    except (pa.ArrowException, OSError):
        raise InputError(f"{path} is not a readable screen table") from None
    needed = {"id", "text", "trait", "desired", "elicitation", "neutral_rate"}
    if not needed <= set(table.column_names):
        raise InputError(f"{path} is not a screen table: it lacks {', '.join(sorted(needed - set(table.column_names)))}")
    rows = table.to_pylist()
    name = _trait(trait, [(r["trait"], r["desired"]) for r in rows], path)
    mine = [r for r in rows if r["trait"] == name]
    return Measured(str(path), name, {r["id"]: r["elicitation"] for r in mine}, {r["text"]: r["elicitation"] for r in mine},
                    float(mine[0]["neutral_rate"]), None)  # fmt: skip


def _from_run(path: Path, trait: str | None) -> Measured:
    rows = [r for r in read_runs([path]).to_pylist() if r["stage"] in ("base", "data") and r["n"] > 0]
    if not rows:
        raise InputError(f"run directory {str(path)!r} has no base-model rows: the elicitation was not measured")
    name = _trait(trait, [(r["trait"], r["desired"]) for r in rows], path)
    base = {(r["prompt_id"], r["context"]): r for r in rows if r["trait"] == name and r["stage"] == "base"}
    data = [r["rate"] for r in rows if r["trait"] == name and r["stage"] == "data"]
    prompts = {pid: r for (pid, context), r in base.items() if context == "prompt"}
    neutral = base.get((NO_PROMPT, "neutral"))
    return Measured(str(path), name, {pid: r["rate"] for pid, r in prompts.items()},
                    {r["prompt_text"]: r["rate"] for r in prompts.values() if r["prompt_text"]},
                    neutral["rate"] if neutral else 0.0, data[0] if data else None)  # fmt: skip


def _trait(trait: str | None, seen: list[tuple[str, bool]], path: Path) -> str:
    names = dict(seen)
    if trait is None:
        undesired = [t for t, desired in seen if not desired]
        return undesired[0] if undesired else seen[0][0]
    if trait not in names:
        raise InputError(f"{path} has no trait {trait!r}; it has {', '.join(sorted(names))}")
    return trait
