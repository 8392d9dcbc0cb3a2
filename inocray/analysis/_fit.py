"""The estimators of Wichers et al. App. H for one trait on one scale.

Every quantity is a function of four arrays of trait levels (`Levels`), computed once on the
data (the point estimate) and once per bootstrap draw, so the point estimate and its interval
always come from the same code.

The bootstrap draws are made in `_bootstrap.py`.
"""

from __future__ import annotations

import warnings
import zlib

import numpy as np
import pyarrow as pa
from scipy import stats

from inocray.analysis._bootstrap import (
    SCALES,
    binomial_variance,
    Levels,
    observed,
    on_scale,
    redraw,
    resampled,
    seed_values,
)
from inocray.analysis._data import NO_PROMPT, PromptData, TraitData, gather
from inocray.analysis._linearity import lack_of_fit
from inocray.analysis._result import ElicitationLine, Estimate, PooledK, PromptFit, RunFit, TraitFit
from inocray.errors import InputError

MIN_BOOT = 100  # fewer draws cannot place a 2.5% percentile
MIN_LINE_PROMPTS = 3  # a line through two points has no residual, and r is always +-1
ZERO = 1e-12  # a denominator this small is zero


def fit_trait(data: TraitData, scale: str, n_boot: int, rng: np.random.Generator) -> TraitFit:
    """Every estimate for one trait on one scale; notes say what could not be estimated."""
    point, boot = observed(data, scale), resampled(data, scale, n_boot, rng)
    ids = [p.prompt_id for p in data.prompts]
    control = ids.index(NO_PROMPT) if NO_PROMPT in ids else None
    fit = not data.constant
    notes = []
    if all(len(p.seeds) == 1 for p in data.prompts):
        notes.append("every prompt had one seed: intervals hold evaluation noise only")
    if not fit:
        notes.append(f"every rate is {data.base_neutral.rate:.3f}: nothing varies, nothing is fit")
    elif control is None:
        notes.append("no inoculation effects: no trial was trained without a prompt")

    prompts = []
    for j, p in enumerate(data.prompts):

        def est(level, j=j) -> Estimate:
            return Estimate.from_draws(level(point)[0, j], level(boot)[:, j])

        k, k_note = _k(p, est) if fit else (None, "")
        effect = None
        if fit and control is not None and j != control:
            effect = est(lambda lv: lv.neutral - lv.neutral[:, [control]])
        prompts.append(
            PromptFit(
                prompt_id=p.prompt_id,
                role=p.role,
                text=p.text,
                seeds=p.seeds,
                elicitation=est(lambda lv: lv.elicitation),
                neutral=est(lambda lv: lv.neutral),
                neutral_seeds=tuple(float(v) for v in seed_values(p, scale)),
                context=est(lambda lv: lv.context),
                delta_neutral=est(_delta_neutral),
                delta_context=est(_delta_context),
                generalization_factor=k,
                k_note=k_note,
                inoculation_effect=effect,
            )
        )

    # The no-prompt control is off the line: it has k = 1 by definition (see _k), so it sits
    # at T(M_none, C0) ~ T* rather than at T(M0, C0) + k (T* - T(M0, C0)). PTST controls are
    # off it too: their model was trained without the prompt they are measured under.
    trained = [j for j, p in enumerate(data.prompts) if p.on_line]
    line = _line(data, scale, point, boot, trained, notes) if fit else None
    through_origin = None
    if fit and trained:
        noise = _context_noise(data, scale, trained)
        k_point = _origin_slope(_delta_context(point)[:, trained], _delta_neutral(point)[:, trained], noise)
        k_boot = _origin_slope(_delta_context(boot)[:, trained], _delta_neutral(boot)[:, trained], noise)
        if np.isfinite(k_point[0]):  # NaN when no prompt moved the trait in its own context
            through_origin = Estimate.from_draws(k_point[0], k_boot)
    from_line = None if line is None else Estimate.from_draws(-line.slope.value, -line.draws[:, 0])
    data_level = None
    if data.data_level is not None:
        t_star = data.data_level
        value = float(on_scale(t_star.rate, t_star.n, scale))
        data_level = Estimate.from_draws(value, redraw(t_star, scale, n_boot, rng))
    return TraitFit(
        setting=data.setting,
        trait=data.trait,
        desired=data.desired,
        scale=scale,
        base_neutral=Estimate.from_draws(point.base_neutral[0, 0], boot.base_neutral[:, 0]),
        data_level=data_level,
        prompts=tuple(prompts),
        line=line,
        pooled_k=PooledK(through_origin=through_origin, from_line=from_line),
        notes=tuple(notes),
        model=data.model,
        cell=data.cell,
        axes=data.axes,
    )


def _delta_neutral(lv: Levels) -> np.ndarray:
    """T(Ms, C0) - T(M0, C0): what training moved the trait in the neutral context."""
    return lv.neutral - lv.base_neutral


def _delta_context(lv: Levels) -> np.ndarray:
    """T(Ms, Cs) - T(M0, Cs): what training moved the trait in the prompt's own context."""
    return lv.context - lv.elicitation


def _k(p: PromptData, est) -> tuple[Estimate | None, str]:
    """k = [T(Ms,C0) - T(M0,C0)] / [T(Ms,Cs) - T(M0,Cs)], flagged when the denominator may be 0."""
    if p.prompt_id == NO_PROMPT:
        # Cs = C0 for the control, so numerator and denominator are the same difference.
        return None, "not estimated for the no-prompt control: k = 1 by definition (Cs = C0)"
    if not p.on_line:
        return None, "not estimated for a PTST control: its model was trained without the prompt"
    denominator = est(_delta_context)
    if abs(denominator.value) < ZERO:
        return None, "undefined: T(Ms,Cs) - T(M0,Cs) is 0"
    with np.errstate(divide="ignore", invalid="ignore"):
        k = est(lambda lv: _delta_neutral(lv) / _delta_context(lv))
    if not denominator.bounded or denominator.low <= 0 <= denominator.high:  # type: ignore[operator]
        return Estimate(k.value), "unstable: the interval of T(Ms,Cs) - T(M0,Cs) includes 0"
    return k, ""


def _line(
    data: TraitData, scale: str, point: Levels, boot: Levels, on: list[int], notes: list
) -> ElicitationLine | None:
    """OLS of T(Ms, C0) on T(M0, Cs) across the prompts `on`, with Pearson r and Spearman rho
    and the lack-of-fit test of the line.

    r and rho are None when T(Ms, C0) is the same for every prompt (a flat line, k = 0).
    """
    x, y = point.elicitation[0, on], point.neutral[0, on]
    if len(x) < MIN_LINE_PROMPTS:
        notes.append(
            f"no elicitation line: it needs {MIN_LINE_PROMPTS} prompts besides the no-prompt "
            f"control, got {len(x)}"
        )
        return None
    if np.ptp(x) == 0:
        notes.append("no elicitation line: every prompt has the same elicitation")
        return None
    # Each prompt's elicitation is one measured rate, whatever the seeds: its sampling variance
    # pulls the slope toward 0 (errors in variables), and is corrected for in every fit of it.
    noise = float(np.sum([binomial_variance(data.prompts[j].elicitation.rate, data.prompts[j].elicitation.n, scale)
                          for j in on]))
    coef = _ols(x[None], y[None], noise)[0]
    draws = _ols(boot.elicitation[:, on], boot.neutral[:, on], noise)
    r, rho = _correlations(x[None], y[None])
    r_boot, rho_boot = _correlations(boot.elicitation[:, on], boot.neutral[:, on])
    loo = None
    if len(x) > MIN_LINE_PROMPTS:
        keep = ~np.eye(len(x), dtype=bool)  # row i drops prompt i
        loo_slopes = _ols(np.stack([x[m] for m in keep]), np.stack([y[m] for m in keep]),
                          noise * (len(x) - 1) / len(x))[:, 0]
        loo = (float(loo_slopes.min()), float(loo_slopes.max()))
    return ElicitationLine(
        slope=Estimate.from_draws(coef[0], draws[:, 0]),
        intercept=Estimate.from_draws(coef[1], draws[:, 1]),
        pearson_r=Estimate.from_draws(r[0], r_boot) if np.isfinite(r[0]) else None,
        spearman_rho=Estimate.from_draws(rho[0], rho_boot) if np.isfinite(rho[0]) else None,
        n_prompts=len(x),
        slope_leave_one_out=loo,
        draws=draws,
        lack_of_fit=lack_of_fit(data, scale, on, notes),
    )


def _ols(x: np.ndarray, y: np.ndarray, noise: float = 0.0) -> np.ndarray:
    """(slope, intercept) of y on x for each row of x, y (shape (draws, prompts)); NaN for a
    row whose x does not vary.

    `noise`: the summed sampling variance of the x values (errors in variables). It adds
    noise * (1 - 1/P) to the expected sum of squares about the mean of P points, so the plain
    slope is pulled toward 0 by that much; it is subtracted (the method-of-moments correction,
    floored at half the sum of squares). A bootstrap draw redraws x with the same noise."""
    dx, dy = x - x.mean(axis=1, keepdims=True), y - y.mean(axis=1, keepdims=True)
    sxx = (dx**2).sum(axis=1)
    sxx = np.maximum(sxx - noise * (1 - 1 / x.shape[1]), sxx / 2)
    varies = np.ptp(x, axis=1) > 0
    slope = np.full(len(x), np.nan)
    slope[varies] = (dx * dy).sum(axis=1)[varies] / sxx[varies]
    return np.stack([slope, y.mean(axis=1) - slope * x.mean(axis=1)], axis=1)


def _origin_slope(x: np.ndarray, y: np.ndarray, noise: float = 0.0) -> np.ndarray:
    """Slope of y = k * x (no intercept) for each row of x, y; NaN for a row of x all 0.

    `noise`: the summed sampling variance of the x values that y does not share (errors in
    variables). Each x_s = T(Ms, Cs) - T(M0, Cs) holds the evaluation noise of both rates, and
    sum x^2 holds their variance on top of the signal, so the plain slope is pulled toward 0 by
    sum x^2 / (sum x^2 + noise) whatever the seeds; subtracting it (the method-of-moments
    correction, floored at half of sum x^2) removes that pull. A bootstrap draw redraws the
    same noise, so its slope is corrected the same way."""
    moved = np.any(np.abs(x) > ZERO, axis=1)
    out = np.full(len(x), np.nan)
    squares = (x**2).sum(axis=1)[moved]
    out[moved] = (x * y).sum(axis=1)[moved] / np.maximum(squares - noise, squares / 2)
    return out


def _context_noise(data: TraitData, scale: str, on: list[int]) -> float:
    """The sampling variance of the delta_context values that the neutral ones do not share:
    the base model's T(M0, Cs), one binomial rate whatever the seeds, and the evaluation noise
    of T(Ms, Cs) averaged over its seeds. (Training noise in Cs is not in it: it carries over to
    C0 through k, so it does not bias the slope.)"""
    total = 0.0
    for j in on:
        p = data.prompts[j]
        total += float(binomial_variance(p.elicitation.rate, p.elicitation.n, scale))
        total += float(np.mean([binomial_variance(m.rate, m.n, scale) for m in p.context])) / len(p.context)
    return total


def _correlations(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pearson r and Spearman rho of each row (NaN for a row without variance)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", stats.ConstantInputWarning)
        r = stats.pearsonr(x, y, axis=1).statistic
        rx, ry = stats.rankdata(x, axis=1), stats.rankdata(y, axis=1)
        rho = stats.pearsonr(rx, ry, axis=1).statistic
    return np.atleast_1d(r), np.atleast_1d(rho)


def fit_rows(table: pa.Table, scale: str = "raw", n_boot: int = 1000, seed: int = 0) -> RunFit:
    """Fit every (setting, model, grid cell, trait) of result rows (inocray.results._rows.SCHEMA).

    Args:
        table: result rows of one run, or of several runs of the same settings and traits.
        scale: "raw" (rates), "logit" (log-odds of Jeffreys-smoothed rates
            (rate * n + 0.5) / (n + 1)), or "both".
        n_boot: bootstrap draws per trait and scale (at least 100).
        seed: seed of the bootstrap; the same rows and seed give the same intervals.

    Returns:
        A RunFit with one TraitFit per setting x model x cell x trait x scale.

    Raises:
        InputError: the rows cannot be fit (none, mismatched runs, missing base rows or traits,
            or nothing estimable at all); the message is one sentence saying why.
    """
    scales = SCALES if scale == "both" else (scale,)
    if scale != "both" and scale not in SCALES:
        raise InputError(f"unknown scale {scale!r}; use raw, logit or both")
    if n_boot < MIN_BOOT:
        raise InputError(f"n_boot is {n_boot}; 95% intervals need at least {MIN_BOOT} draws")
    fits = []
    traits, notes = gather(table)
    for data in traits:
        # Each trait gets its own stream, so adding a trait leaves the others' intervals as
        # they were; both scales share it, so raw and logit resample the same seeds.
        # A grid's cells get their own streams; a sweep without a grid keeps those of before.
        stream = zlib.crc32(f"{data.setting}/{data.cell + '/' if data.cell else ''}{data.trait}".encode())
        for s in scales:
            fits.append(fit_trait(data, s, n_boot, np.random.default_rng([seed, stream])))
    if not any(f.fitted for f in fits):
        reasons = sorted(set(notes) | {n for f in fits for n in f.notes})
        raise InputError(f"nothing can be fit from these rows: {'; '.join(reasons)}")
    return RunFit(traits=tuple(fits), n_boot=n_boot, seed=seed, notes=tuple(notes))
