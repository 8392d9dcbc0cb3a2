"""Trait levels on the analysis scale: as observed, and redrawn for the bootstrap.

One bootstrap draw:
  * untrained measurements (T(M0, C0), T(M0, Cs), T*): one measurement of n samples each,
    whose only noise is sampling noise, so each is redrawn Binomial(n, p) / n with p the
    smoothed rate (hits + 1/2) / (n + 1) (see `redraw`);
  * trained models: each prompt's seed means of (T(Ms, C0), T(Ms, Cs)) are redrawn as
    mean + sd_s * (mean of m standardized seed deviations drawn with replacement from the pool
    of all prompts of the trait), m being the prompt's number of seeds. A seed's two
    deviations stay together (they come from one model). The seed spread of prompt s is
        sd_s^2 = tau^2 + b_s
    with b_s the binomial variance of its rates on the scale (known from rate and n) and
    tau^2 the training variance, shared by all prompts and estimated from every seed:
    the spread is learnt from sum(m - 1) degrees of freedom (24 for 8 prompts x 4 seeds)
    instead of 3 per prompt, while prompts at rates near 0 or 1 keep their smaller binomial
    noise (near 1/(n p (1 - p)) on the logit scale: larger). With one seed everywhere there is
    no spread to learn: each rate is drawn as the untrained ones are (evaluation noise only).
The prompts themselves are not resampled: they are a designed set chosen by the researcher,
not a random sample, and inference is conditional on them. docs/analysis.md compares this
with resampling seeds within each prompt (which covers 84-91% with 4 seeds, not 95%).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import special, stats

from inocray.analysis._data import NO_PROMPT, Measurement, PromptData, TraitData

SCALES = ("raw", "logit")


def on_scale(rate, n, scale: str) -> np.ndarray:
    """Rates on the analysis scale.

    raw:   the rate itself.
    logit: log(p / (1 - p)) of the Jeffreys-smoothed rate p = (rate * n + 0.5) / (n + 1),
           which stays finite at rates of 0 and 1.
    """
    rate, n = np.asarray(rate, dtype=float), np.asarray(n, dtype=float)
    if scale == "raw":
        return rate
    return special.logit(_smoothed(rate, n))


def binomial_variance(rate, n, scale: str) -> np.ndarray:
    """Variance of one rate on the scale from sampling alone: p(1-p)/n, or 1/(n p(1-p))."""
    p, n = _smoothed(np.asarray(rate, dtype=float), np.asarray(n, dtype=float)), np.asarray(n)
    return p * (1 - p) / n if scale == "raw" else 1.0 / (n * p * (1 - p))


@dataclass(frozen=True)
class Levels:
    """Trait levels on one scale. Axis 0: draws (1 for the point estimate); axis 1: prompts."""

    elicitation: np.ndarray  # T(M0, Cs)
    neutral: np.ndarray  # T(Ms, C0), mean over seeds
    context: np.ndarray  # T(Ms, Cs), mean over seeds
    base_neutral: np.ndarray  # T(M0, C0), shape (draws, 1)


def observed(data: TraitData, scale: str) -> Levels:
    return Levels(
        elicitation=np.array([[_value(p.elicitation, scale) for p in data.prompts]]),
        neutral=np.array([[_values(p.neutral, scale).mean() for p in data.prompts]]),
        context=np.array([[_values(p.context, scale).mean() for p in data.prompts]]),
        base_neutral=np.array([[_value(data.base_neutral, scale)]]),
    )


def resampled(data: TraitData, scale: str, n_boot: int, rng: np.random.Generator) -> Levels:
    """n_boot bootstrap draws of every level (the scheme is in the module docstring)."""
    b0 = redraw(data.base_neutral, scale, n_boot, rng)
    noise = SeedNoise.of(data, scale)
    x, y, c = [], [], []
    for j, p in enumerate(data.prompts):
        x.append(b0 if p.prompt_id == NO_PROMPT else redraw(p.elicitation, scale, n_boot, rng))
        if noise is not None:
            pick = rng.integers(len(noise.pool), size=(n_boot, len(p.seeds)))
            mean_z = noise.pool[pick].mean(axis=1)  # (n_boot, 2)
            y.append(_values(p.neutral, scale).mean() + noise.sd[j, 0] * mean_z[:, 0])
            c.append(_values(p.context, scale).mean() + noise.sd[j, 1] * mean_z[:, 1])
        else:
            y.append(redraw(p.neutral[0], scale, n_boot, rng))
            same = not p.on_line  # the two contexts of a control are one evaluation
            c.append(y[-1] if same else redraw(p.context[0], scale, n_boot, rng))
    return Levels(np.stack(x, 1), np.stack(y, 1), np.stack(c, 1), b0[:, None])


@dataclass(frozen=True)
class SeedNoise:
    pool: np.ndarray  # (seeds, 2): standardized (neutral, context) deviations of every seed
    sd: np.ndarray  # (prompts, 2): seed spread sqrt(tau^2 + b_s) of each prompt
    df: int  # degrees of freedom of tau^2: sum over prompts of (seeds - 1)

    @classmethod
    def of(cls, data: TraitData, scale: str) -> SeedNoise | None:
        """The pooled seed noise; None if no prompt has two seeds."""
        binomial = np.array(
            [[_binomial(p.neutral, scale), _binomial(p.context, scale)] for p in data.prompts]
        )
        replicated = [(j, p) for j, p in enumerate(data.prompts) if len(p.seeds) > 1]
        if not replicated:
            return None
        deviations = {j: _pairs(p, scale) for j, p in replicated}
        deviations = {j: d - d.mean(axis=0) for j, d in deviations.items()}
        df = sum(len(p.seeds) - 1 for _, p in replicated)
        within = sum((d**2).sum(axis=0) for d in deviations.values()) / df  # pooled variance
        expected = sum((len(p.seeds) - 1) * binomial[j] for j, p in replicated) / df
        sd = np.sqrt(np.maximum(within - expected, 0.0) + binomial)  # tau^2 + b_s
        # sqrt(m / (m - 1)) makes each deviation's variance unbiased; t/z widens the
        # percentile interval as a t interval would, for the spread having been estimated.
        widen = stats.t.ppf(0.975, df) / stats.norm.ppf(0.975)
        pool = [d * np.sqrt(len(d) / (len(d) - 1)) / sd[j] for j, d in deviations.items()]
        return cls(pool=np.concatenate(pool) * widen, sd=sd, df=df)


def redraw(m: Measurement, scale: str, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """n_boot parametric redraws of one measured rate, on the scale.

    Binomial(n, p) / n with p the smoothed rate (hits + 1/2) / (n + 1), the smoothing of the
    logit scale: a rate of 0 or 1 still has spread (Binomial(n, 0) has none), and on the logit
    scale the redraw is smoothed again, as the estimate was, so its spread is the estimate's.
    """
    p = _smoothed(np.asarray(m.rate, dtype=float), np.asarray(m.n, dtype=float))
    return on_scale(rng.binomial(m.n, p, size=n_boot) / m.n, m.n, scale)


def seed_values(p: PromptData, scale: str) -> np.ndarray:
    """T(Ms, C0) of each seed of prompt p, on the scale."""
    return _values(p.neutral, scale)


def _pairs(p: PromptData, scale: str) -> np.ndarray:
    return np.stack([_values(p.neutral, scale), _values(p.context, scale)], axis=1)


def _binomial(ms: tuple[Measurement, ...], scale: str) -> float:
    return float(np.mean([binomial_variance(m.rate, m.n, scale) for m in ms]))


def _value(m: Measurement, scale: str) -> float:
    return float(on_scale(m.rate, m.n, scale))


def _values(ms: tuple[Measurement, ...], scale: str) -> np.ndarray:
    return on_scale(np.array([m.rate for m in ms]), np.array([m.n for m in ms]), scale)


def _smoothed(rate: np.ndarray, n: np.ndarray) -> np.ndarray:
    return (rate * n + 0.5) / (n + 1.0)
