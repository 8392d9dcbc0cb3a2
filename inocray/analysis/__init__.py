"""The aggregator: fit the elicitation line and the generalization factor k of a sweep.

Public entry point: `fit_rows(table) -> RunFit`. See docs/analysis.md for every quantity,
the equations (Wichers et al. App. H), the logit smoothing and the bootstrap scheme.
"""

from __future__ import annotations

import zlib

import numpy as np
import pyarrow as pa

from inocray.analysis._data import NO_PROMPT, gather
from inocray.analysis._bootstrap import SCALES, on_scale
from inocray.analysis._compare import Comparison, compare, comparisons_text, varying
from inocray.analysis._fit import fit_trait
from inocray.analysis._io import read_runs, save_fit
from inocray.analysis._result import (
    ElicitationLine,
    Estimate,
    PooledK,
    PromptFit,
    RunFit,
    TraitFit,
)
from inocray.analysis._text import COLUMNS, prompt_cells, trait_lines, trait_notes, trait_title
from inocray.errors import InputError

MIN_BOOT = 100  # fewer draws cannot place a 2.5% percentile

__all__ = [
    "COLUMNS",
    "Comparison",
    "compare",
    "comparisons_text",
    "varying",
    "NO_PROMPT",
    "SCALES",
    "ElicitationLine",
    "Estimate",
    "PooledK",
    "PromptFit",
    "RunFit",
    "TraitFit",
    "fit_rows",
    "on_scale",
    "prompt_cells",
    "read_runs",
    "save_fit",
    "trait_lines",
    "trait_notes",
    "trait_title",
]


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
