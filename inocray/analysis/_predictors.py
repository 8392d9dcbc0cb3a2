"""Which predictor explains the sweep: sampled elicitation T(M0, Cs) or logprob elicitation L(s)?

For each trait whose trained prompts carry both (docs/analysis.md, "Two predictors"), on the
analysis scale (raw, or logit: the rates T(Ms, C0) and T(M0, Cs) as _bootstrap.on_scale puts
them; L(s) is in nats on either), with y_s the mean over seeds of T(Ms, C0) and x_s the
predictor of prompt s:

    line          least squares y = a + b x over the prompts; Pearson r and Spearman rho
    lack of fit   the F test of _linearity.py, x's measurement variance its own (binomial on
                  the scale for the sampled rate, the bootstrap's for L(s))
    LOPO error    root mean square of y_s - (a_-s + b_-s x_s), each line fitted without prompt s:
                  how well the predictor predicts the trait left by a prompt it has not seen
    difference    LOPO(logprob) - LOPO(sampled), with a paired bootstrap interval: seeds
                  resampled within prompts and both predictors redrawn from their measurement
                  noise, the same draws for both; negative favours the logprob predictor

k needs rates on both axes, so it is reported for the sampled predictor alone (_fit.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from scipy import stats

from inocray.analysis._data import TraitData, gather
from inocray.analysis._bootstrap import SeedNoise, binomial_variance, on_scale
from inocray.analysis._linearity import LackOfFit, line_lack_of_fit, seed_variance

PREDICTORS = ("sampled", "logprob")
MIN_PROMPTS = 4  # a leave-one-out line needs three points left


@dataclass(frozen=True)
class PredictorFit:
    predictor: str
    slope: float
    intercept: float
    pearson: float
    spearman: float
    lack_of_fit: LackOfFit | None
    lopo: float  # leave-one-prompt-out RMS error predicting T(Ms, C0)


@dataclass(frozen=True)
class PredictorComparison:
    setting: str
    model: str
    cell: str
    trait: str
    desired: bool
    scale: str
    prompts: tuple[str, ...]
    x: dict[str, tuple[float, ...]]  # predictor -> its value per prompt
    y: tuple[float, ...]  # mean T(Ms, C0) per prompt
    fits: dict[str, PredictorFit]
    difference: float  # LOPO(logprob) - LOPO(sampled)
    low: float
    high: float

    @property
    def better(self) -> str | None:
        """The predictor whose LOPO error is smaller with an interval that excludes 0; else None."""
        if self.high < 0:
            return "logprob"
        if self.low > 0:
            return "sampled"
        return None


def compare_predictors(table: pa.Table, n_boot: int = 1000, seed: int = 0,
                       scale: str = "raw") -> list[PredictorComparison]:
    """A comparison per trait of the rows with both predictors on MIN_PROMPTS trained prompts or
    more (none for runs without logprob elicitation: rows of an older release, or
    eval.logprob_examples 0), its rates on `scale` (raw or logit)."""
    out = []
    for data in gather(table)[0]:
        on = [j for j, p in enumerate(data.prompts) if p.on_line and p.logprob is not None]
        if len(on) < MIN_PROMPTS:
            continue
        rng = np.random.default_rng([seed, len(out)])
        out.append(_compare(data, on, n_boot, rng, scale))
    return out


def _compare(data: TraitData, indices: list[int], n_boot: int, rng: np.random.Generator,
             scale: str) -> PredictorComparison:
    on = [data.prompts[j] for j in indices]
    seeds = [on_scale([m.rate for m in p.neutral], [m.n for m in p.neutral], scale) for p in on]
    y = np.array([s.mean() for s in seeds])
    elicited = [p.elicitation for p in on]
    x = {"sampled": on_scale([m.rate for m in elicited], [m.n for m in elicited], scale),
         "logprob": np.array([p.logprob.value for p in on])}
    var_x = {"sampled": binomial_variance([m.rate for m in elicited], [m.n for m in elicited], scale),
             "logprob": np.array([p.logprob.variance for p in on])}
    # The seeds' noise as the fit's own lack-of-fit test pools it (_linearity.py), so both report one test.
    noise = SeedNoise.of(data, scale)
    from_seeds = seed_variance(data, noise, indices) if noise is not None else None
    fits = {k: _fit(k, x[k], y, from_seeds, var_x[k], noise.df if noise else 0) for k in PREDICTORS}
    draws = np.full(n_boot, np.nan)
    # A predictor the same for every prompt (a trait no prompt elicits) has no line to compare.
    for b in range(n_boot if all(np.isfinite(f.lopo) for f in fits.values()) else 0):
        yb = np.array([rng.choice(s, len(s)).mean() for s in seeds])
        xb = {k: x[k] + rng.normal(0, np.sqrt(var_x[k])) for k in PREDICTORS}
        draws[b] = _lopo(xb["logprob"], yb) - _lopo(xb["sampled"], yb)
    low, high = np.nanpercentile(draws, [2.5, 97.5]) if n_boot and np.isfinite(draws).any() else (np.nan, np.nan)
    return PredictorComparison(data.setting, data.model, data.cell, data.trait, data.desired, scale,
                               tuple(p.prompt_id for p in on), {k: tuple(v) for k, v in x.items()}, tuple(y),
                               fits, fits["logprob"].lopo - fits["sampled"].lopo, float(low), float(high))


def _fit(name: str, x: np.ndarray, y: np.ndarray, from_seeds: np.ndarray | None, var_x: np.ndarray,
         df: int) -> PredictorFit:
    if np.ptp(x) == 0:
        return PredictorFit(name, float("nan"), float(y.mean()), float("nan"), float("nan"), None, float("nan"))
    slope, intercept = np.polyfit(x, y, 1)
    spread = np.ptp(x) > 0 and np.ptp(y) > 0
    pearson = float(stats.pearsonr(x, y)[0]) if spread else float("nan")
    spearman = float(stats.spearmanr(x, y)[0]) if spread else float("nan")
    lof = line_lack_of_fit(x, y, from_seeds, var_x, df) if from_seeds is not None and len(x) > 2 else None
    return PredictorFit(name, float(slope), float(intercept), pearson, spearman, lof, _lopo(x, y))


def _lopo(x: np.ndarray, y: np.ndarray) -> float:
    """Leave-one-prompt-out RMS error of the least-squares line."""
    errors = []
    for s in range(len(x)):
        keep = np.arange(len(x)) != s
        if np.ptp(x[keep]) == 0:
            return float("nan")
        slope, intercept = np.polyfit(x[keep], y[keep], 1)
        errors.append(y[s] - (intercept + slope * x[s]))
    return float(np.sqrt(np.mean(np.square(errors))))


def predictors_text(comparisons: list[PredictorComparison], only: str | None = None) -> str:
    """The comparison as `inocray run` and `inocray analyze` print it; `only`: one predictor's lines."""
    shown = [only] if only else list(PREDICTORS)
    out = []
    for c in comparisons:
        where = "/".join(part for part in (c.setting, c.model, c.cell) if part)
        on = "" if c.scale == "raw" else f", {c.scale} scale"
        out.append(f"{c.trait} ({where}), {len(c.prompts)} trained prompts{on}: which predictor explains T(Ms,C0)")
        for name in shown:
            f = c.fits[name]
            if not np.isfinite(f.slope):
                out.append(f"  {name:<8} {c.x[name][0]:+.3f} for every prompt: no line")
                continue
            lof = f"; {f.lack_of_fit}" if f.lack_of_fit else "; no lack-of-fit test (it needs two seeds)"
            out.append(f"  {name:<8} line {f.intercept:+.3f} {f.slope:+.3f} x, Pearson {f.pearson:+.2f}, "
                       f"Spearman {f.spearman:+.2f}, leave-one-prompt-out error {f.lopo:.3f}{lof}")
        verdict = {"logprob": "the logprob predictor predicts better",
                   "sampled": "sampled elicitation predicts better",
                   None: "neither predicts clearly better"}[c.better]
        if np.isfinite(c.difference):
            out.append(f"  error logprob - sampled {c.difference:+.3f} [{c.low:+.3f}, {c.high:+.3f}]: {verdict}")
    return "\n".join(out) + ("\n" if out else "")
