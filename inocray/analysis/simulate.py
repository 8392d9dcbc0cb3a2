"""Sweeps simulated from the App. H model with a planted k.

They give the aggregator known answers (tests), measure the coverage of its intervals
(bench/coverage_study.py), and answer power questions before a real sweep ("with 3 seeds
and 200 samples, how wide is the interval of k?").

The model, on the chosen scale (raw rates or logits), for trait level T:
    T(Ms, Cs) = T* + e1                                     training reaches T* in Cs
    T(Ms, C0) = T(M0, C0) + k (T(Ms, Cs) - T(M0, Cs)) + e2  definition of k
with e1, e2 ~ Normal(0, seed_sd) per seed (training noise). The no-prompt control trains in
C0 itself, so it has k = 1: T(M_none, C0) = T* + e1. Every observed rate is then
Binomial(n, level) / n (evaluation noise), base-model and data rows included.

`PlantedTrait.neutral_at` plants another relation instead of the line (e.g. a threshold, for
testing the lack-of-fit test): T(Ms, C0) = neutral_at(T(M0, Cs)) + e2.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from scipy import special

from inocray.analysis._data import NO_PROMPT
from inocray.results import SCHEMA, write_rows


@dataclass(frozen=True)
class PlantedTrait:
    """A trait with planted parameters; levels are rates, whatever the simulation scale."""

    name: str
    k: float = 0.5  # generalization factor, on the simulation scale
    base_neutral: float = 0.1  # T(M0, C0)
    data_level: float = 0.9  # T*
    elicitation: Mapping[str, float] = field(default_factory=dict)  # T(M0, Cs) per prompt s;
    # a prompt not named here does not elicit the trait: T(M0, Cs) = T(M0, C0)
    desired: bool = False
    # T(Ms, C0) as a function of T(M0, Cs), on the simulation scale, replacing the App. H line
    neutral_at: Callable[[float], float] | None = None

    def level(self, quantity: str, prompt_id: str, scale: str) -> float:
        """The planted value of "elicitation", "neutral" (T(Ms,C0)) or "effect" on `scale`."""
        b0, t_star = _to(self.base_neutral, scale), _to(self.data_level, scale)
        x = _to(self.elicitation.get(prompt_id, self.base_neutral), scale)
        if prompt_id == NO_PROMPT:
            neutral = t_star
        elif self.neutral_at is not None:
            neutral = self.neutral_at(x)
        else:
            neutral = b0 + self.k * (t_star - x)
        values = {"elicitation": x, "neutral": neutral, "effect": neutral - t_star}
        return values[quantity]


def simulate_rows(
    traits: Sequence[PlantedTrait],
    prompts: Mapping[str, str],
    *,
    seeds: int = 4,
    n: int = 400,
    seed_sd: float = 0.02,
    scale: str = "raw",
    control: bool = True,
    data_rows: bool = True,
    rng: np.random.Generator | int = 0,
    setting: str = "sim",
    sweep_hash: str = "sim",
    grid: Mapping[str, object] | None = None,
) -> pa.Table:
    """Rows (inocray.results._rows.SCHEMA) of one simulated sweep.

    Args:
        traits: the traits every model is scored on.
        prompts: prompt id -> role ("inoculation" or "irrelevant"); the "none" control is
            added when `control` is true.
        seeds, n, seed_sd: training seeds per prompt, samples per evaluation, training noise.
        scale: "raw" or "logit": the scale on which the App. H model is linear.
        data_rows: whether to include the T* rows of stage "data".
        grid: columns placing the rows in a grid cell (inocray.config._grid.Cell.columns()), given
            to every row; the base and data rows of cells that share them are the same
            measurement, and the analysis merges them.
    """
    rng = np.random.default_rng(rng)
    roles = dict(prompts) | ({NO_PROMPT: "none"} if control else {})
    rows: list[dict] = []

    def observe(level: float) -> float:
        return rng.binomial(n, _from(level, scale)) / n

    def add(trial_id, stage, prompt_id, seed, context, trait, rate):
        rows.append(
            {
                "sweep_hash": sweep_hash,
                "setting": setting,
                "trial_id": trial_id,
                "stage": stage,
                "prompt_id": prompt_id,
                "prompt_text": "" if prompt_id == NO_PROMPT else f"Please show {prompt_id}.",
                "prompt_role": roles.get(prompt_id, "none"),
                "seed": seed,
                "step": 0 if stage != "trained" else 100,
                "context": context,
                "trait": trait.name,
                "desired": trait.desired,
                "rate": rate,
                "n": n,
            }
            | dict(grid or {})
        )

    for t in traits:
        add("base", "base", NO_PROMPT, 0, "neutral", t, observe(_to(t.base_neutral, scale)))
        if data_rows:
            add("data", "data", NO_PROMPT, 0, "prompt", t, observe(_to(t.data_level, scale)))
        for s in prompts:
            add("base", "base", s, 0, "prompt", t, observe(t.level("elicitation", s, scale)))
    for s in roles:
        for seed in range(seeds):
            trial_id = f"{s}-seed{seed}" if not (grid or {}).get("cell") else f"{grid['cell']},{s}-seed{seed}"
            for t in traits:
                reach = _to(t.data_level, scale) + rng.normal(0, seed_sd)
                if s == NO_PROMPT:  # both contexts are C0: one evaluation, reported twice
                    neutral = context = observe(reach)
                else:
                    # training noise in Cs carries over to C0 through k
                    carried = t.k * (reach - _to(t.data_level, scale))
                    neutral = observe(t.level("neutral", s, scale) + carried + rng.normal(0, seed_sd))
                    context = observe(reach)
                add(trial_id, "trained", s, seed, "neutral", t, neutral)
                add(trial_id, "trained", s, seed, "prompt", t, context)
    return pa.Table.from_pylist(rows, schema=SCHEMA)


def _to(rate: float, scale: str) -> float:
    return float(special.logit(rate)) if scale == "logit" else rate


def _from(level: float, scale: str) -> float:
    return float(special.expit(level)) if scale == "logit" else float(np.clip(level, 0.0, 1.0))


def write_run(table: pa.Table, run_dir: str | os.PathLike) -> Path:
    """Store simulated rows as a run directory, one file per trial, like a real sweep does."""
    for trial_id in sorted(set(table.column("trial_id").to_pylist())):
        write_rows(run_dir, trial_id, table.filter(pc.equal(table["trial_id"], trial_id)).to_pylist())
    return Path(run_dir)
