"""Is the trait left at test time linear in the elicitation? A lack-of-fit test per trait.

App. H says every prompt's T(Ms, C0) lies on one line in T(M0, Cs), up to noise whose size
the seeds measure. The test compares how far the prompts' means fall from the line with that
noise (the seeds are the replicates):

    v_s = sd_s^2 / m_s + b^2 var(x_s)     noise of prompt s's point: its m_s seeds (training
                                          and sampling, sd_s as in the bootstrap) and the
                                          sampling noise of its elicitation x_s, times slope^2
    Q   = sum_s (ybar_s - a - b x_s)^2 / v_s    around the weighted least-squares line
    F   = Q / (P - 2)  ~  F(P - 2, df)    P prompts on the line, df = sum(m_s - 1) of the seeds

A small p-value says the prompts are not on one line (e.g. a threshold: only the strongest
prompts suppress), so one k does not summarise them. The alternative is the saturated model
(each prompt its own mean), so the test has power against any shape, at the price of
P - 2 degrees of freedom. Where the sampling part of v_s dominates, F(P - 2, df) is
conservative (that part is known, not estimated).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from inocray.analysis._bootstrap import SeedNoise, binomial_variance, observed
from inocray.analysis._data import TraitData


@dataclass(frozen=True)
class LackOfFit:
    """The lack-of-fit F test of the elicitation line."""

    f: float
    df_model: int  # P - 2
    df_error: int  # sum over prompts of (seeds - 1)
    p_value: float

    def __format__(self, spec: str) -> str:
        verdict = (
            "the prompts are not on one line: k alone does not summarise them"
            if self.p_value < 0.05
            else "no sign that the prompts leave the line"
        )
        return f"lack-of-fit F({self.df_model}, {self.df_error}) = {self.f:.2f}, p = {self.p_value:.3g}: {verdict}"


def lack_of_fit(data: TraitData, scale: str, on: list[int], notes: list[str]) -> LackOfFit | None:
    """The test over the prompts `on` (those of the line); None, with a note, if it cannot run."""
    if len(on) < 3:
        return None  # no line: its own note says so
    noise = SeedNoise.of(data, scale)
    if noise is None:
        notes.append("no lack-of-fit test: it needs prompts with two or more seeds")
        return None
    point = observed(data, scale)
    x, y = point.elicitation[0, on], point.neutral[0, on]
    elicitation = np.array([data.prompts[j].elicitation for j in on])
    var_x = binomial_variance([m.rate for m in elicitation], [m.n for m in elicitation], scale)
    return line_lack_of_fit(x, y, seed_variance(data, noise, on), var_x, noise.df)


def seed_variance(data: TraitData, noise: SeedNoise, on: list[int]) -> np.ndarray:
    """sd_s^2 / m_s: the seeds' noise in each prompt's mean T(Ms, C0)."""
    return noise.sd[on, 0] ** 2 / np.array([len(data.prompts[j].seeds) for j in on])


def line_lack_of_fit(x: np.ndarray, y: np.ndarray, from_seeds: np.ndarray, var_x: np.ndarray,
                     df_error: int) -> LackOfFit:
    """The F test above for prompt means `y` at predictor values `x` (whatever the predictor:
    `var_x` is its measurement variance per prompt)."""
    slope = np.polyfit(x, y, 1)[0]
    for _ in range(2):  # the weights depend on the slope: refit once with the weighted one
        v = from_seeds + slope**2 * var_x
        (slope, intercept), residual = _weighted_line(x, y, 1 / v)
    q = float(np.sum(residual**2 / v))
    df_model = len(x) - 2
    f = q / df_model
    return LackOfFit(f, df_model, df_error, float(stats.f.sf(f, df_model, df_error)))


def _weighted_line(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[tuple[float, float], np.ndarray]:
    """(slope, intercept) of the weighted least-squares line, and its residuals."""
    xm, ym = np.average(x, weights=w), np.average(y, weights=w)
    slope = float(np.sum(w * (x - xm) * (y - ym)) / np.sum(w * (x - xm) ** 2))
    intercept = ym - slope * xm
    return (slope, intercept), y - intercept - slope * x
