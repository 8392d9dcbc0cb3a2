"""Result rows -> one checked `TraitData` per (setting, model, grid cell, trait), or one clear
InputError.

A grid's cells (inocray/grid.py) are fitted apart. A cell's trained rows are compared with the
base rows of its setting and model at its value of the base axes (the base model is measured
once for all the cells that share them), and with the data rows (T*) of its setting.

Everything the statistics need is gathered here, and every way the rows can be unusable is
caught here, so that the fitting code in `_fit.py` only ever sees well-formed arrays.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from scipy import stats

from inocray.errors import InputError
from inocray.config import AXES, BASE_AXES
from inocray.results import OPTIONAL_COLUMNS, SCHEMA, with_defaults

NO_PROMPT = "none"  # prompt_id of the no-prompt control
# Roles whose model was not trained with the prompt it is measured under: the no-prompt
# control, and PTST controls (the no-prompt model tested with an instruction against the
# trait). They have no k and stay off the elicitation line.
UNTRAINED_ROLES = ("none", "ptst")
STAGES = ("base", "data", "checkpoint", "trained")  # checkpoint rows are not fitted
CONTEXTS = ("neutral", "prompt")
PROBE_CONTEXT = "probe:"  # the context prefix of a leak probe's rows (not fitted: _leaks.py)
# Duplicate base rows (the same base measurement in several pooled runs) are merged by
# summing their counts unless a homogeneity test says they cannot be the same measurement.
CONFLICT_P = 1e-3


@dataclass(frozen=True)
class Measurement:
    """A trait rate measured on n samples (rate * n traits seen)."""

    rate: float
    n: int


@dataclass(frozen=True)
class LogprobMeasure:
    """The logprob elicitation L(s) of a prompt on the base model, with its 95% interval."""

    value: float
    low: float
    high: float

    @property
    def variance(self) -> float:
        """Its sampling variance, from the interval's width (as a normal's +-1.96 sd)."""
        return ((self.high - self.low) / (2 * 1.96)) ** 2


@dataclass(frozen=True)
class PromptData:
    """Everything measured for one prompt s: its elicitation and its trained seeds.

    For a PTST control s the model is the no-prompt control's and its test-time context is
    Cs: `neutral` and `context` both hold T(M_none, Cs), the trait left under that protocol.
    """

    prompt_id: str
    role: str
    text: str
    elicitation: Measurement  # T(M0, Cs); for the "none" control T(M0, C0)
    seeds: tuple[int, ...]
    neutral: tuple[Measurement, ...]  # T(Ms, C0), one per seed
    context: tuple[Measurement, ...]  # T(Ms, Cs), one per seed ("none": the same as neutral)
    logprob: LogprobMeasure | None = None  # L(s), where the base measurement gave it

    @property
    def on_line(self) -> bool:
        """Whether the prompt was trained with: only those enter the line and k."""
        return self.role not in UNTRAINED_ROLES


@dataclass(frozen=True)
class TraitData:
    setting: str
    trait: str
    desired: bool
    base_neutral: Measurement  # T(M0, C0)
    data_level: Measurement | None  # T*, absent in runs without "data" rows
    prompts: tuple[PromptData, ...]  # the control first, then by elicitation (the line's x)
    model: str = ""  # the base model ("" in rows of a release before grids)
    cell: str = ""  # the grid cell ("" without a grid)
    axes: tuple[tuple[str, object], ...] = ()  # (axis, value) of every axis the rows give

    @property
    def constant(self) -> bool:
        """True when every rate of this trait is the same number: nothing varies to fit."""
        rates = [self.base_neutral.rate]
        for p in self.prompts:
            rates += [p.elicitation.rate] + [m.rate for m in p.neutral + p.context]
        return min(rates) == max(rates)


def gather(table: pa.Table) -> tuple[list[TraitData], list[str]]:
    """Check the rows and group them per (setting, model, cell, trait), with notes on what was
    skipped. Raises InputError if the rows are unusable.
    """
    rows = _checked_rows(table)
    _check_poolable(rows)
    base = _merged(rows, "base")
    logprobs = _logprobs(rows)
    data = _merged(rows, "data")
    trials = _trials(rows)
    out, notes = [], []
    for setting in sorted({r["setting"] for r in rows}):
        cells = sorted({t.cell_key for t in trials.values() if t.setting == setting}, key=_sortable)
        if not cells:
            notes.append(f"setting {setting!r} has no trained trials yet: skipped")
            continue
        for key in cells:
            model, cell, axes = key
            at = (setting, model, *[dict(axes)[a] for a in BASE_AXES])  # its base measurement
            # undesired traits (what IP targets) first, then the desired ones it should keep
            for trait, desired in sorted(_traits(rows, setting).items(), key=lambda td: td[::-1]):
                prompts = _prompts(key, setting, trait, trials, base, at, logprobs)
                base_neutral = _need(base, (*at, NO_PROMPT, "neutral", trait), "T(M0, C0)")
                out.append(
                    TraitData(
                        setting=setting,
                        trait=trait,
                        desired=desired,
                        base_neutral=base_neutral,
                        data_level=data.get((setting, NO_PROMPT, "prompt", trait)),
                        prompts=tuple(sorted(prompts, key=_control_then_elicitation)),
                        model=model,
                        cell=cell,
                        axes=axes,
                    )
                )
    return out, notes


def _sortable(key: tuple) -> tuple:
    """A cell's key in a sortable form (axis values may be None, numbers or strings)."""
    model, cell, axes = key
    return model, tuple((a, v is not None, v if isinstance(v, (int, float)) else str(v)) for a, v in axes), cell


def _control_then_elicitation(p: PromptData) -> tuple:
    return (p.prompt_id != NO_PROMPT, p.elicitation.rate, p.prompt_id)


def _checked_rows(table: pa.Table) -> list[dict]:
    if table.num_rows == 0:
        raise InputError("there are no result rows to analyze (has any trial finished?)")
    missing = [name for name in SCHEMA.names if name not in table.column_names and name not in OPTIONAL_COLUMNS]
    if missing:
        raise InputError(f"the result rows lack the column(s) {', '.join(missing)}")
    # A measurement nothing could score (e.g. a judge that gave no number) carries no rate.
    rows = [r for r in with_defaults(table).to_pylist() if r["n"] != 0]
    if not rows:
        raise InputError("no result row has a scored sample (every rate is empty)")
    for row in rows:
        row["prompt_text"] = row["prompt_text"] or ""
        where = f"row of trial {row['trial_id']!r}"
        nulls = [k for k in SCHEMA.names if row[k] is None and k != "prompt_text" and k not in OPTIONAL_COLUMNS]
        if nulls:
            raise InputError(f"a {where} has no value for {', '.join(nulls)}")
        if row["stage"] not in STAGES:
            raise InputError(f"a {where} has unknown stage {row['stage']!r}; expected {STAGES}")
        if row["context"] not in CONTEXTS and not row["context"].startswith(PROBE_CONTEXT):
            raise InputError(f"a {where} has unknown context {row['context']!r}")
        if not (0.0 <= row["rate"] <= 1.0) or row["n"] < 1:
            raise InputError(f"a {where} has rate {row['rate']} on n={row['n']} samples")
    if not any(r["stage"] == "trained" for r in rows):
        raise InputError("there are no trained rows yet: nothing to fit")
    if not any(r["stage"] == "base" for r in rows):
        raise InputError("there are no base-model rows: elicitation T(M0, Cs) was not measured")
    return rows


def _check_poolable(rows: list[dict]) -> None:
    """Rows of several sweeps pool only if they share settings, traits and prompt texts."""
    layouts: dict[str, frozenset] = defaultdict(frozenset)
    for r in rows:
        layouts[r["sweep_hash"]] |= {(r["setting"], r["trait"])}
    (first, layout), *others = sorted(layouts.items())
    for other, other_layout in others:
        if other_layout != layout:
            diff = sorted(f"{s}/{t}" for s, t in layout ^ other_layout)
            raise InputError(
                f"runs {first!r} and {other!r} cannot be pooled: they differ in setting/trait "
                f"{', '.join(diff)}"
            )
    checks = (
        (("setting", "trait"), "desired"),
        (("setting", "prompt_id"), "prompt_text"),
        (("setting", "prompt_id"), "prompt_role"),
    )
    for key, label in checks:
        seen: dict[tuple, object] = {}
        for r in rows:
            if r["stage"] == "data" and label != "desired":
                continue  # data rows describe the training set, not a prompt
            k = tuple(r[f] for f in key)
            if seen.setdefault(k, r[label]) != r[label]:
                raise InputError(
                    f"{'/'.join(k)} has conflicting {label} values {seen[k]!r} and {r[label]!r}"
                    " (were runs of different sweeps pooled?)"
                )


def _merged(rows: list[dict], stage: str) -> dict[tuple, Measurement]:
    """Untrained measurements keyed (setting, prompt_id, context, trait), and base ones
    (setting, model, base axes..., prompt_id, context, trait); repeats merged."""
    groups: dict[tuple, list[Measurement]] = defaultdict(list)
    for r in rows:
        if r["stage"] == stage:
            where = (r["model"], *[r[a] for a in BASE_AXES]) if stage == "base" else ()
            key = (r["setting"], *where, r["prompt_id"], r["context"], r["trait"])
            groups[key].append(Measurement(r["rate"], r["n"]))
    return {key: _merge(key, ms) for key, ms in groups.items()}


def _merge(key: tuple, ms: list[Measurement]) -> Measurement:
    if len(ms) == 1:
        return ms[0]
    hits = np.array([round(m.rate * m.n) for m in ms])
    n = np.array([m.n for m in ms])
    if hits.sum() not in (0, n.sum()):
        _, p, _, _ = stats.chi2_contingency(np.stack([hits, n - hits]))
        if p < CONFLICT_P:
            rates = ", ".join(f"{m.rate:.3f} (n={m.n})" for m in ms)
            raise InputError(
                f"base rows for {'/'.join(map(str, key))} conflict ({rates}): "
                "pool only runs measured on the same base model"
            )
    return Measurement(float(hits.sum() / n.sum()), int(n.sum()))


def _logprobs(rows: list[dict]) -> dict[tuple, LogprobMeasure]:
    """The logprob elicitation of each prompt, keyed (setting, model, base axes..., prompt_id),
    from the base rows that give it (one value per prompt, repeated on each trait's row)."""
    return {(r["setting"], r["model"], *[r[a] for a in BASE_AXES], r["prompt_id"]):
            LogprobMeasure(r["logprob"], r["logprob_low"], r["logprob_high"])
            for r in rows if r["stage"] == "base" and r["logprob"] is not None}


def _traits(rows: list[dict], setting: str) -> dict[str, bool]:
    return {r["trait"]: r["desired"] for r in rows if r["setting"] == setting}


@dataclass
class _Trial:
    setting: str
    prompt_id: str
    role: str
    text: str
    seed: int
    rates: dict[tuple[str, str], Measurement]  # (context, trait) -> measurement
    cell_key: tuple = ("", "", ())  # (model, cell, ((axis, value), ...)): the grid cell


def _trials(rows: list[dict]) -> dict[tuple[str, str], _Trial]:
    trials: dict[tuple[str, str], _Trial] = {}
    for r in rows:
        if r["stage"] != "trained":
            continue
        trial = trials.setdefault(
            (r["sweep_hash"], r["trial_id"]),
            _Trial(r["setting"], r["prompt_id"], r["prompt_role"], r["prompt_text"], r["seed"], {},
                   (r["model"], r["cell"], tuple((a, r[a]) for a in AXES))),
        )
        key = (r["context"], r["trait"])
        if key in trial.rates or (trial.prompt_id, trial.seed) != (r["prompt_id"], r["seed"]):
            raise InputError(
                f"trial {r['trial_id']!r} has duplicate or inconsistent rows "
                "(was the same run directory given twice?)"
            )
        trial.rates[key] = Measurement(r["rate"], r["n"])
    return trials


def _prompts(cell_key: tuple, setting: str, trait: str, trials: dict, base: dict, at: tuple,
             logprobs: dict[tuple, LogprobMeasure]) -> list[PromptData]:
    """The prompts of one cell of `setting`; `at`: the key of its base measurement."""
    per_prompt: dict[str, list[_Trial]] = defaultdict(list)
    for (_, trial_id), trial in sorted(trials.items()):
        if trial.setting != setting or trial.cell_key != cell_key:
            continue
        contexts = {"none": ("neutral",), "ptst": ("prompt",)}.get(trial.role, CONTEXTS)
        for context in contexts:
            if (context, trait) not in trial.rates:
                raise InputError(
                    f"trait {trait!r} is missing from trial {trial_id!r} ({context} context): "
                    "every trial must score every trait of its setting"
                )
        per_prompt[trial.prompt_id].append(trial)
    out = []
    for prompt_id, group in sorted(per_prompt.items()):
        if prompt_id == NO_PROMPT:
            elicitation = _need(base, (*at, NO_PROMPT, "neutral", trait), "T(M0, C0)")
            context = "neutral"
        else:
            elicitation = _need(base, (*at, prompt_id, "prompt", trait), "elicitation")
            context = "prompt"
        role = group[0].role
        out.append(
            PromptData(
                prompt_id=prompt_id,
                role=role,
                text=group[0].text,
                elicitation=elicitation,
                seeds=tuple(t.seed for t in group),
                neutral=tuple(t.rates["prompt" if role == "ptst" else "neutral", trait] for t in group),
                context=tuple(t.rates[context, trait] for t in group),
                logprob=logprobs.get((*at, prompt_id)),
            )
        )
    return out


def _need(base: dict, key: tuple, what: str) -> Measurement:
    if key not in base:
        setting, model, *_, prompt_id, context, trait = key
        of = f" of model {model!r}" if model else ""
        raise InputError(
            f"no base-model row gives {what} for prompt {prompt_id!r}, trait {trait!r} "
            f"({context} context) in setting {setting!r}{of}"
        )
    return base[key]
