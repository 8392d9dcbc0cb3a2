"""Coverage of every 95% interval the aggregator prints, on sweeps with a planted answer.

    nice -n 15 python bench/coverage_study.py            # the table of docs/analysis.md
    python bench/coverage_study.py --sweeps 100 --simulator independent --scale logit --seeds 2

Each sweep is drawn with a fresh random seed, fit with `fit_rows` and every interval checked
against the planted value. The default runs every simulator x both scales x 2, 3 and 4 seeds
(400 sweeps each, 400 bootstrap draws) and prints one markdown row per run. Goal: 95 +- 3%.

Simulators, built apart so that a flaw of one is not shared by the other:

  project      inocray.analysis.simulate.simulate_rows, as in the independent check of the
               issue that found pooled k through the origin at 91%: k = 0.6, T(M0, C0) = 0.1,
               T* = 0.9, six prompts with elicitation 0.08 to 0.83 evenly spaced, an irrelevant
               prompt and the no-prompt control, every rate on n = 300; training noise
               Normal(0, 0.02) on rates (raw) or Normal(0, 0.1) on logits.
  noisy-x      the project's simulator with the base-model rows on n = 40 and smaller deltas
               (T* = 0.7, elicitation 0.1 to 0.6): errors in the x of pooled k through the
               origin that more seeds do not average away.
  independent  rows written directly here: k = 0.4, a trait near 0 and 1 (T(M0, C0) = 0.02,
               T* = 0.97), elicitation bunched low (0.03, 0.06, 0.12, 0.25, 0.5, 0.85) as a
               screen's candidates are, an irrelevant prompt and the control; every third
               prompt is one seed short (a failed trial: at 2 seeds, 1), base-model rows on
               n = 100 (noisier than the trained rows, n = 300); training noise Beta-distributed
               on rates (raw: bounded, its mean exactly on the App. H line, sd 0.03) or
               Normal(0, 0.15) on logits.
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from scipy import special

from inocray.analysis import NO_PROMPT, fit_rows
from inocray.analysis.simulate import PlantedTrait, simulate_rows
from inocray.results import SCHEMA, with_defaults

COLUMNS = ("slope", "intercept", "k origin", "k -slope", "k per prompt", "effects", "T(Ms,C0)", "untrained")


@dataclass(frozen=True)
class Truth:
    """The planted values on the analysis scale."""

    k: float
    base_neutral: float  # T(M0, C0)
    data_level: float  # T*
    elicitation: dict[str, float]  # T(M0, Cs); the irrelevant prompt sits at T(M0, C0)

    def neutral(self, prompt_id: str) -> float:
        if prompt_id == NO_PROMPT:
            return self.data_level
        x = self.elicitation.get(prompt_id, self.base_neutral)
        return self.base_neutral + self.k * (self.data_level - x)


def on(rate: float, scale: str) -> float:
    return float(special.logit(rate)) if scale == "logit" else rate


# --- the project's simulator

PROJECT = PlantedTrait("t", k=0.6, base_neutral=0.1, data_level=0.9,
                       elicitation={f"ip{i}": 0.08 + 0.15 * i for i in range(6)})  # fmt: skip


def project(scale: str, seeds: int, rng: int) -> tuple[pa.Table, Truth]:
    return project_rows(PROJECT, scale, seeds, rng)


def project_rows(t: PlantedTrait, scale: str, seeds: int, rng: int) -> tuple[pa.Table, Truth]:
    prompts = {name: "inoculation" for name in t.elicitation} | {"irr": "irrelevant"}
    rows = simulate_rows([t], prompts, seeds=seeds, n=300, scale=scale, rng=rng,
                         seed_sd={"raw": 0.02, "logit": 0.1}[scale])  # fmt: skip
    truth = Truth(t.k, on(t.base_neutral, scale), on(t.data_level, scale),
                  {s: on(x, scale) for s, x in t.elicitation.items()})  # fmt: skip
    return rows, truth


# --- errors in variables: the project's simulator with noisy base-model rates and small deltas

NOISY_X = PlantedTrait("t", k=0.6, base_neutral=0.1, data_level=0.7,
                       elicitation={f"ip{i}": 0.1 + 0.1 * i for i in range(6)})  # fmt: skip
N_BASE_NOISY = 40  # base-model rows on few samples: T(M0, Cs), one draw whatever the seeds


def noisy_x(scale: str, seeds: int, rng: int) -> tuple[pa.Table, Truth]:
    """The base rows redrawn on N_BASE_NOISY samples, with deltas T* - T(M0, Cs) of 0.1 to 0.6:
    the x of pooled k through the origin carries measurement noise that more seeds do not
    average away (the case that made its coverage fall with seeds)."""
    rows, _ = project_rows(NOISY_X, scale, seeds, rng)
    g = np.random.default_rng([rng, 11])
    out = rows.to_pylist()
    for r in out:
        if r["stage"] == "base":
            level = NOISY_X.base_neutral if r["context"] == "neutral" else NOISY_X.elicitation[r["prompt_id"]] \
                if r["prompt_id"] in NOISY_X.elicitation else NOISY_X.base_neutral
            r["rate"], r["n"] = g.binomial(N_BASE_NOISY, level) / N_BASE_NOISY, N_BASE_NOISY
    t = NOISY_X
    truth = Truth(t.k, on(t.base_neutral, scale), on(t.data_level, scale),
                  {s: on(x, scale) for s, x in t.elicitation.items()})  # fmt: skip
    return pa.Table.from_pylist(out, schema=SCHEMA), truth


# --- the independent simulator: rows written directly

K_IND, B0_IND, T_STAR_IND = 0.4, 0.02, 0.97
LADDER_IND = dict(zip([f"ip{i}" for i in range(6)], (0.03, 0.06, 0.12, 0.25, 0.5, 0.85)))
N_BASE, N_TRAINED = 100, 300
SD_IND = {"raw": 0.03, "logit": 0.15}


def independent(scale: str, seeds: int, rng: int) -> tuple[pa.Table, Truth]:
    g = np.random.default_rng([rng, 7])
    truth = Truth(K_IND, on(B0_IND, scale), on(T_STAR_IND, scale),
                  {s: on(x, scale) for s, x in LADDER_IND.items()})  # fmt: skip
    roles = {s: "inoculation" for s in LADDER_IND} | {"irr": "irrelevant", NO_PROMPT: "none"}
    cols = defaultdict(list)

    def row(trial, stage, prompt, seed, context, level, n):
        rate = g.binomial(n, special.expit(level) if scale == "logit" else level) / n
        for name, value in zip(SCHEMA.names, ("ind", "sim", trial, stage, prompt, f"text {prompt}",
                                              roles[prompt], seed, 0, context, "t", False, rate, n)):
            cols[name].append(value)

    row("base", "base", NO_PROMPT, 0, "neutral", truth.base_neutral, N_BASE)
    row("data", "data", NO_PROMPT, 0, "prompt", truth.data_level, N_BASE)
    for s in roles:
        if s != NO_PROMPT:
            row("base", "base", s, 0, "prompt", truth.elicitation.get(s, truth.base_neutral), N_BASE)
    for j, s in enumerate(roles):
        short = j % 3 == 2 and s != NO_PROMPT  # a failed trial
        for seed in range(max(seeds - short, 1)):
            reach = noisy(truth.data_level, scale, g)
            x = truth.elicitation.get(s, truth.base_neutral)
            neutral = reach if s == NO_PROMPT else noisy(truth.base_neutral + truth.k * (reach - x), scale, g)
            row(f"{s}-{seed}", "trained", s, seed, "neutral", neutral, N_TRAINED)
            row(f"{s}-{seed}", "trained", s, seed, "prompt", reach, N_TRAINED)
    return with_defaults(pa.table(dict(cols))), truth  # the grid and logprob columns: null


def noisy(level: float, scale: str, g: np.random.Generator) -> float:
    """Training noise around `level`: Normal on logits; on rates a Beta of that mean and sd."""
    sd = SD_IND[scale]
    if scale == "logit":
        return level + g.normal(0, sd)
    sd = min(sd, 0.5 * np.sqrt(level * (1 - level)))  # a Beta needs sd^2 < mean (1 - mean)
    concentration = level * (1 - level) / sd**2 - 1
    return g.beta(level * concentration, (1 - level) * concentration)


SIMULATORS = {"project": project, "independent": independent, "noisy-x": noisy_x}


# --- the study


def covered(fit, truth: Truth) -> dict[str, list[bool]]:
    """For each column of COLUMNS, whether each of its intervals holds the planted value."""
    t = fit.trait("t")
    k = truth.k
    hits = defaultdict(list)
    if t.line is not None:
        hits["slope"].append(t.line.slope.covers(-k))
        hits["intercept"].append(t.line.intercept.covers(truth.base_neutral + k * truth.data_level))
        hits["k -slope"].append(t.pooled_k.from_line.covers(k))
    hits["k origin"].append(t.pooled_k.through_origin.covers(k))
    hits["untrained"] += [t.base_neutral.covers(truth.base_neutral), t.data_level.covers(truth.data_level)]
    for p in t.prompts:
        hits["T(Ms,C0)"].append(p.neutral.covers(truth.neutral(p.prompt_id)))
        if p.prompt_id != NO_PROMPT:
            hits["untrained"].append(p.elicitation.covers(truth.elicitation.get(p.prompt_id, truth.base_neutral)))
        if p.generalization_factor is not None and not p.k_unstable:
            hits["k per prompt"].append(p.generalization_factor.covers(k))
        if p.inoculation_effect is not None:
            planted = truth.neutral(p.prompt_id) - truth.data_level
            hits["effects"].append(p.inoculation_effect.covers(planted))
    return hits


def study(simulator: str, scale: str, seeds: int, sweeps: int, n_boot: int) -> dict[str, list]:
    hits: dict[str, list[bool]] = defaultdict(list)
    for i in range(sweeps):
        rows, truth = SIMULATORS[simulator](scale, seeds, i)
        fit = fit_rows(rows, scale=scale, n_boot=n_boot, seed=i)
        for name, h in covered(fit, truth).items():
            hits[name] += h
    return hits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweeps", type=int, default=400, help="sweeps per run")
    parser.add_argument("--n-boot", type=int, default=400)
    parser.add_argument("--simulator", choices=(*SIMULATORS, "all"), default="all")
    parser.add_argument("--scale", choices=("raw", "logit", "both"), default="both")
    parser.add_argument("--seeds", type=int, nargs="+", default=[2, 3, 4], help="seeds per prompt")
    args = parser.parse_args()
    simulators = list(SIMULATORS) if args.simulator == "all" else [args.simulator]
    scales = ("raw", "logit") if args.scale == "both" else (args.scale,)

    print(f"{args.sweeps} sweeps per row, {args.n_boot} bootstrap draws; coverage of 95% intervals "
          f"(2 se of a 95% rate: {200 * np.sqrt(0.95 * 0.05 / args.sweeps):.1f} points per sweep-level column)")  # fmt: skip
    print("| simulator | scale | seeds | " + " | ".join(COLUMNS) + " | s |")
    print("|---" * (len(COLUMNS) + 4) + "|")
    for simulator in simulators:
        for scale in scales:
            for seeds in args.seeds:
                start = time.perf_counter()
                hits = study(simulator, scale, seeds, args.sweeps, args.n_boot)
                cells = [f"{100 * np.mean(hits[c]):.1f}" if hits[c] else "-" for c in COLUMNS]
                elapsed = time.perf_counter() - start
                print(f"| {simulator} | {scale} | {seeds} | " + " | ".join(cells) + f" | {elapsed:.0f} |",
                      flush=True)


if __name__ == "__main__":
    main()
