"""What a search maximises, and which prompt won: the objective and the confirming stage's table.

    Objective(suppress, keep, weight)   the user's objective over a model's rates in C0
    objective.value(rates, reference)   suppression of the undesired trait against the
                                        reference's rate, less `weight` x every desired trait's loss
    confirm(rows, objective, finalists)  each finalist's objective on every seed against that
                                        seed's trained no-prompt control: mean and interval, the
                                        winner, the runner-up and their paired difference

The objective of a prompt s on seed j (docs/search.md):

    O(s, j) = [T_u(M_none,j, C0) - T_u(M_s,j, C0)] - w * sum_d max(0, T_d(M_none,j, C0) - T_d(M_s,j, C0))

u the trait to suppress, d each desired trait, w the weight. While the search trains (before
its control has finished), a snapshot's objective uses the training data's trait levels T* as
the reference: the suppression term then differs by a constant for every candidate, which
leaves the scheduler's ranking at a rung unchanged, and a desired trait's loss is counted
against what the data teaches, where the trained control tends.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

from inocray.analysis._data import NO_PROMPT


@dataclass(frozen=True)
class Objective:
    suppress: str  # the undesired trait whose C0 rate the prompt should lower
    keep: tuple[str, ...] = ()  # desired traits whose loss is penalised
    weight: float = 1.0  # the penalty per unit of a desired trait's rate lost

    def value(self, rates: dict[str, float], reference: dict[str, float]) -> float:
        """O for a model whose C0 rates are `rates`, against `reference` (the control's, or the base
        model's while the control trains)."""
        loss = sum(max(0.0, reference[d] - rates[d]) for d in self.keep)
        return reference[self.suppress] - rates[self.suppress] - self.weight * loss

    def describe(self) -> str:
        kept = f" - {self.weight:g} x the loss of {', '.join(self.keep)}" if self.keep and self.weight else ""
        return f"suppression of {self.suppress} in C0 against the no-prompt control{kept}"


@dataclass(frozen=True)
class Finalist:
    prompt_id: str
    values: tuple[float, ...]  # O on each seed that has both the prompt's and the control's rows
    mean: float
    low: float  # the 95% t interval over seeds (NaN with one seed)
    high: float


@dataclass(frozen=True)
class Confirmed:
    finalists: tuple[Finalist, ...]  # best first
    seeds: tuple[int, ...]
    difference: tuple[float, float, float]  # winner - runner-up over paired seeds: mean, low, high

    @property
    def winner(self) -> Finalist:
        return self.finalists[0]


def c0_rates(rows: list[dict], trial_id: str, stage: str = "trained") -> dict[int, dict[str, float]]:
    """The C0 rate of every trait in one trial's rows: {step: {trait: rate}} for `stage`."""
    out: dict[int, dict[str, float]] = {}
    for r in rows:
        if r["trial_id"] == trial_id and r["stage"] == stage and r["context"] == "neutral":
            out.setdefault(r["step"], {})[r["trait"]] = r["rate"]
    return out


def confirm(rows: list[dict], objective: Objective, finalists: list[str]) -> Confirmed:
    """Each finalist's O over the seeds where it and the no-prompt control both finished (`rows`:
    a run's finished rows), best first; the interval is Student's t over seeds (the seed is the
    unit that varies)."""
    final = {}  # (prompt, seed) -> {trait: rate}
    for r in rows:
        if r["stage"] == "trained" and r["context"] == "neutral" and r["prompt_role"] != "ptst":
            final.setdefault((r["prompt_id"], r["seed"]), {})[r["trait"]] = r["rate"]
    seeds = sorted({seed for (pid, seed) in final if pid == NO_PROMPT})
    per_seed = {}
    for pid in finalists:
        per_seed[pid] = {j: objective.value(final[(pid, j)], final[(NO_PROMPT, j)]) for j in seeds if (pid, j) in final}
    rows = sorted((_summary(pid, list(v.values())) for pid, v in per_seed.items() if v), key=lambda f: -f.mean)
    difference = (math.nan, math.nan, math.nan)
    if len(rows) > 1:
        a, b = per_seed[rows[0].prompt_id], per_seed[rows[1].prompt_id]
        paired = [a[j] - b[j] for j in seeds if j in a and j in b]
        d = _summary("", paired)
        difference = (d.mean, d.low, d.high)
    return Confirmed(tuple(rows), tuple(seeds), difference)


def _summary(prompt_id: str, values: list[float]) -> Finalist:
    mean = float(np.mean(values)) if values else math.nan
    if len(values) < 2:
        return Finalist(prompt_id, tuple(values), mean, math.nan, math.nan)
    half = float(stats.t.ppf(0.975, len(values) - 1) * np.std(values, ddof=1) / math.sqrt(len(values)))
    return Finalist(prompt_id, tuple(values), mean, mean - half, mean + half)
