"""What the aggregator found: typed results, a terminal summary and a tidy Arrow table."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from inocray.analysis._data import UNTRAINED_ROLES
from inocray.analysis._linearity import LackOfFit
from inocray.analysis._text import run_text
from inocray.errors import InputError

LEVEL = 95.0  # confidence level of every interval, percent


@dataclass(frozen=True)
class Estimate:
    """A point estimate and its 95% percentile bootstrap interval (None: unbounded)."""

    value: float
    low: float | None = None
    high: float | None = None

    @classmethod
    def from_draws(cls, value: float, draws: np.ndarray) -> Estimate:
        finite = draws[np.isfinite(draws)]
        if finite.size == 0:
            return cls(float(value))
        tail = (100.0 - LEVEL) / 2
        low, high = np.percentile(finite, [tail, 100.0 - tail])
        return cls(float(value), float(low), float(high))

    @property
    def bounded(self) -> bool:
        return self.low is not None and self.high is not None

    def covers(self, x: float) -> bool:
        return self.bounded and self.low <= x <= self.high  # type: ignore[operator]

    def overlaps(self, other: Estimate) -> bool:
        return (
            self.bounded and other.bounded
            and self.low <= other.high and other.low <= self.high  # type: ignore[operator]
        )

    def __format__(self, spec: str) -> str:
        spec = spec or ".2f"
        if not self.bounded:
            return f"{self.value:{spec}} [unbounded]"
        return f"{self.value:{spec}} [{self.low:{spec}}, {self.high:{spec}}]"


@dataclass(frozen=True)
class PromptFit:
    """One prompt s: where it sits on the elicitation line and what training with it did."""

    prompt_id: str
    role: str  # "inoculation" | "irrelevant" | "none" | "ptst"
    text: str
    seeds: tuple[int, ...]
    elicitation: Estimate  # T(M0, Cs); the "none" control: T(M0, C0)
    neutral: Estimate  # T(Ms, C0), mean over seeds: the trait left at test time
    neutral_seeds: tuple[float, ...]  # T(Ms, C0) of each seed
    context: Estimate  # T(Ms, Cs), mean over seeds
    delta_neutral: Estimate  # T(Ms, C0) - T(M0, C0)
    delta_context: Estimate  # T(Ms, Cs) - T(M0, Cs)
    generalization_factor: Estimate | None  # k = delta_neutral / delta_context
    k_note: str  # why k is missing, or why it is flagged unstable; "" otherwise
    inoculation_effect: Estimate | None  # T(Ms, C0) - T(M_none, C0); None without control

    @property
    def on_line(self) -> bool:
        """Whether the prompt was trained with (not a control): only those enter the line."""
        return self.role not in UNTRAINED_ROLES

    @property
    def k_unstable(self) -> bool:
        return self.k_note.startswith("unstable")


@dataclass(frozen=True)
class ElicitationLine:
    """OLS across prompts: T(Ms, C0) = intercept + slope * T(M0, Cs); theory: slope = -k."""

    slope: Estimate
    intercept: Estimate
    pearson_r: Estimate | None  # None: T(Ms, C0) does not vary across prompts
    spearman_rho: Estimate | None
    n_prompts: int
    slope_leave_one_out: tuple[float, float] | None  # slope range dropping any one prompt
    draws: np.ndarray = field(repr=False, compare=False)  # (n_boot, 2): slope, intercept
    lack_of_fit: LackOfFit | None = None  # None: no prompt had two seeds

    def band(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pointwise 95% bootstrap band of the line at x."""
        ys = self.draws[:, 1:2] + self.draws[:, 0:1] * np.asarray(x)[None, :]
        tail = (100.0 - LEVEL) / 2
        low, high = np.nanpercentile(ys, [tail, 100.0 - tail], axis=0)
        return low, high


@dataclass(frozen=True)
class PooledK:
    """The generalization factor k pooled over prompts, estimated two independent ways."""

    through_origin: Estimate | None  # slope of delta_neutral on delta_context, no intercept
    from_line: Estimate | None  # minus the slope of the elicitation line

    @property
    def agree(self) -> bool | None:
        if self.through_origin is None or self.from_line is None:
            return None
        return self.through_origin.overlaps(self.from_line)


@dataclass(frozen=True)
class TraitFit:
    """All estimates for one trait of one setting on one scale ("raw" or "logit")."""

    setting: str
    trait: str
    desired: bool
    scale: str
    base_neutral: Estimate  # T(M0, C0)
    data_level: Estimate | None  # T*, the trait level of the training data
    prompts: tuple[PromptFit, ...]  # the control first, then by elicitation
    line: ElicitationLine | None
    pooled_k: PooledK
    notes: tuple[str, ...]
    model: str = ""  # the base model ("" in rows of a release before grids)
    cell: str = ""  # the grid cell (inocray/grid.py); "" without a grid
    axes: tuple[tuple[str, object], ...] = ()  # (axis, value) of every axis the rows give

    @property
    def fitted(self) -> bool:
        """True if anything beyond the raw points could be estimated."""
        return (
            self.line is not None
            or self.pooled_k.through_origin is not None
            or any(p.inoculation_effect is not None for p in self.prompts)
        )

    def prompt(self, prompt_id: str) -> PromptFit:
        for p in self.prompts:
            if p.prompt_id == prompt_id:
                return p
        raise KeyError(prompt_id)


@dataclass(frozen=True)
class RunFit:
    """The fit of one run (or several pooled runs): one TraitFit per setting x trait x scale."""

    traits: tuple[TraitFit, ...]
    n_boot: int
    seed: int
    notes: tuple[str, ...] = ()  # what was left out of the fit, and why

    def trait(self, trait: str, scale: str | None = None, setting: str | None = None,
              cell: str | None = None) -> TraitFit:
        """The fit of `trait` (first scale fitted, setting and cell, unless given)."""
        for t in self.traits:
            if t.trait == trait and all(want in (None, got) for want, got in
                                        ((scale, t.scale), (setting, t.setting), (cell, t.cell))):
                return t
        known = sorted({t.trait for t in self.traits})
        raise InputError(f"no fit for trait {trait!r}; the fit has {', '.join(known)}")

    def to_text(self) -> str:
        """Compact terminal summary per trait: line, pooled k, per-prompt table, notes."""
        return run_text(self)

    def to_table(self) -> pa.Table:
        """Tidy table: one row per setting x trait x scale x quantity x prompt."""
        rows = []
        for t in self.traits:
            for quantity, prompt, est, note in _quantities(t):
                rows.append(
                    {
                        "setting": t.setting,
                        "trait": t.trait,
                        "desired": t.desired,
                        "scale": t.scale,
                        "quantity": quantity,
                        "prompt_id": prompt.prompt_id if prompt else None,
                        "prompt_role": prompt.role if prompt else None,
                        "n_seeds": len(prompt.seeds) if prompt else None,
                        "estimate": est.value,
                        "ci_low": est.low,
                        "ci_high": est.high,
                        "note": note,
                        "model": t.model,
                        "cell": t.cell,
                    }
                )
        return pa.Table.from_pylist(rows, schema=TABLE_SCHEMA)


TABLE_SCHEMA = pa.schema(
    [
        ("setting", pa.string()),
        ("trait", pa.string()),
        ("desired", pa.bool_()),
        ("scale", pa.string()),
        ("quantity", pa.string()),
        ("prompt_id", pa.string()),  # null for quantities of the whole trait
        ("prompt_role", pa.string()),
        ("n_seeds", pa.int64()),
        ("estimate", pa.float64()),
        ("ci_low", pa.float64()),  # null: no interval (unbounded, e.g. an unstable k)
        ("ci_high", pa.float64()),
        ("note", pa.string()),
        ("model", pa.string()),  # "" for rows of a release before grids
        ("cell", pa.string()),  # the grid cell (inocray/grid.py); "" without a grid
    ]
)


def _quantities(t: TraitFit):
    """(quantity, prompt or None, estimate, note) for every number the fit holds."""
    yield "base_neutral", None, t.base_neutral, ""
    if t.data_level is not None:
        yield "data_level", None, t.data_level, ""
    if t.line is not None:
        for name in ("slope", "intercept", "pearson_r", "spearman_rho"):
            if getattr(t.line, name) is not None:
                yield name, None, getattr(t.line, name), f"{t.line.n_prompts} prompts"
        lof = t.line.lack_of_fit
        if lof is not None:
            note = f"lack-of-fit F({lof.df_model}, {lof.df_error}) = {lof.f:.3g}; small: not one line"
            yield "lack_of_fit_p", None, Estimate(lof.p_value), note
    agree = {None: "", True: "the two pooled k agree", False: "the two pooled k disagree"}
    for name in ("through_origin", "from_line"):
        est = getattr(t.pooled_k, name)
        if est is not None:
            yield f"pooled_k_{name}", None, est, agree[t.pooled_k.agree]
    for p in t.prompts:
        for name in ("elicitation", "neutral", "context", "delta_neutral", "delta_context"):
            yield name, p, getattr(p, name), ""
        if p.generalization_factor is not None:
            yield "generalization_factor", p, p.generalization_factor, p.k_note
        if p.inoculation_effect is not None:
            yield "inoculation_effect", p, p.inoculation_effect, ""
