"""Coverage of the aggregator's 95% intervals on sweeps simulated with a planted k.

    python bench/coverage_study.py                    # 500 sweeps, 300 draws, raw scale
    python bench/coverage_study.py --scale logit      # the model planted and fit on logits

Each sweep is drawn from the App. H model (inocray.analysis.simulate) with the same planted
parameters and a fresh random seed, fit with fit_rows, and every interval is checked against
the planted value. Goal: 95 +- 3% for the slope and for k. Results: docs/analysis.md.
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict

import numpy as np

from inocray.analysis import fit_rows
from inocray.analysis.simulate import PlantedTrait, simulate_rows

K = 0.6
LADDER = {f"ip{i}": 0.1 + 0.12 * i for i in range(6)}  # T(M0, Cs), from 0.10 to 0.70
PROMPTS = {name: "inoculation" for name in LADDER} | {"irrelevant": "irrelevant"}
TRAIT = PlantedTrait("spanish", k=K, base_neutral=0.05, data_level=0.95, elicitation=LADDER)


def covered(fit, scale: str) -> dict[str, list[bool]]:
    """For each quantity, whether each of its intervals holds the planted value."""
    t = fit.trait("spanish")
    b0, t_star = TRAIT.level("elicitation", "none", scale), TRAIT.level("neutral", "none", scale)
    hits = defaultdict(list)
    if t.line is not None:
        hits["slope = -k"].append(t.line.slope.covers(-K))
        hits["intercept"].append(t.line.intercept.covers(b0 + K * t_star))
        hits["pooled k from -slope"].append(t.pooled_k.from_line.covers(K))
    hits["pooled k through origin"].append(t.pooled_k.through_origin.covers(K))
    for p in t.prompts:
        if p.generalization_factor is not None and not p.k_unstable:
            hits["k per prompt"].append(p.generalization_factor.covers(K))
        if p.inoculation_effect is not None:
            planted = TRAIT.level("effect", p.prompt_id, scale)
            hits["inoculation effect"].append(p.inoculation_effect.covers(planted))
            hits[f"  effect of {p.prompt_id}"].append(p.inoculation_effect.covers(planted))
    return hits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweeps", type=int, default=500)
    parser.add_argument("--n-boot", type=int, default=300)
    parser.add_argument("--scale", choices=("raw", "logit"), default="raw")
    parser.add_argument("--seeds", type=int, default=4, help="training seeds per prompt")
    parser.add_argument("--n", type=int, default=400, help="samples per evaluation")
    parser.add_argument("--seed-sd", type=float, default=None, help="training noise")
    args = parser.parse_args()
    seed_sd = args.seed_sd if args.seed_sd is not None else {"raw": 0.02, "logit": 0.1}[args.scale]

    start = time.perf_counter()
    hits: dict[str, list[bool]] = defaultdict(list)
    for i in range(args.sweeps):
        rows = simulate_rows(
            [TRAIT], PROMPTS, seeds=args.seeds, n=args.n, seed_sd=seed_sd, scale=args.scale, rng=i
        )
        fit = fit_rows(rows, scale=args.scale, n_boot=args.n_boot, seed=i)
        for name, h in covered(fit, args.scale).items():
            hits[name] += h
    elapsed = time.perf_counter() - start

    print(
        f"{args.sweeps} sweeps, {args.scale} scale, k = {K}, {len(PROMPTS)} prompts + control, "
        f"{args.seeds} seeds, n = {args.n}, seed_sd = {seed_sd}, {args.n_boot} draws: "
        f"{elapsed:.0f} s"
    )
    print(f"{'quantity':26} {'intervals':>9} {'coverage':>9} {'+- 2 se':>8}")
    for name, h in hits.items():
        rate = float(np.mean(h))
        se = np.sqrt(rate * (1 - rate) / len(h))
        print(f"{name:26} {len(h):9d} {100 * rate:8.1f}% {200 * se:7.1f}%")


if __name__ == "__main__":
    main()
