"""A grid's cells side by side along one axis: `inocray analyze --by AXIS` and the report.

For each trait, scale and combination of the other axes' values, the cells that differ only
in AXIS are put in order of its value, each with three quantities and their 95% intervals:
the slope of the elicitation line, the pooled k (through the origin), and the inoculation
effect of the strongest prompt (against the no-prompt control). The strongest prompt is the
inoculation prompt that elicits the cell's first undesired trait most in the base model (the
trait inoculation targets), so a desired trait shows what that prompt costs it.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING

from inocray.errors import InputError
from inocray.config import BY, shown

if TYPE_CHECKING:
    from inocray.analysis._result import Estimate, RunFit, TraitFit

QUANTITIES = ("slope", "pooled k", "strongest prompt's effect")


@dataclass(frozen=True)
class Point:
    """One cell on the axis: its value, its id, and the three quantities (None: not estimable)."""

    value: object
    cell: str
    slope: Estimate | None
    pooled_k: Estimate | None
    strongest: str | None  # the strongest inoculation prompt's id (see the module's docstring)
    effect: Estimate | None  # its inoculation effect

    def quantities(self) -> tuple[Estimate | None, ...]:
        return self.slope, self.pooled_k, self.effect


@dataclass(frozen=True)
class Comparison:
    setting: str
    trait: str
    desired: bool
    scale: str
    by: str  # the axis ("train.lr"), or "setting" or "model"
    fixed: tuple[tuple[str, object], ...]  # what the points share: the other axes' values
    points: tuple[Point, ...]  # in order of the axis's value

    def title(self) -> str:
        shared = ", ".join(f"{a} {shown(v)}" for a, v in self.fixed)
        kind = "desired" if self.desired else "undesired"
        return f"{self.setting} / {self.trait} ({kind}), {self.scale} scale, by {self.by}" + (
            f" ({shared})" if shared else "")

    def to_text(self) -> str:
        head = f"  {self.by:<12} " + " ".join(f"{q:<24}" for q in QUANTITIES[:2]) + " " + QUANTITIES[2]
        lines = [self.title(), head.rstrip()]
        for p in self.points:
            cells = [_cell(q) for q in (p.slope, p.pooled_k)]
            effect = f"{p.strongest} {_cell(p.effect)}" if p.strongest else "-"
            lines.append(f"  {shown(p.value):<12} " + " ".join(f"{c:<24}" for c in cells) + " " + effect)
        return "\n".join(lines)


def value_of(t: TraitFit, by: str) -> object:
    """The value of `by` (an axis, "setting" or "model") in the cell of fit `t`."""
    if by in ("setting", "model"):
        return getattr(t, by)
    return dict(t.axes).get(by)


def varying(fit: RunFit) -> list[str]:
    """The axes (and "setting", "model") whose value differs between the fit's cells."""
    return [by for by in BY if len({value_of(t, by) for t in fit.traits}) > 1]


def compare(fit: RunFit, by: str) -> list[Comparison]:
    """The fit's cells side by side along `by`; InputError if its cells do not vary it."""
    axes = varying(fit)
    if by not in axes:
        raise InputError(f"--by {by}: the cells of these rows do not differ in {by} "
                         f"(they differ in: {', '.join(axes) or 'nothing; there is one cell'})")
    others = [a for a in axes if a != by]
    strongest = _strongest(fit)
    groups: dict[tuple, list[TraitFit]] = defaultdict(list)
    for t in fit.traits:
        setting = "" if by == "setting" else t.setting
        groups[(setting, t.trait, t.scale, tuple((a, value_of(t, a)) for a in others))].append(t)
    out = []
    for (_, trait, scale, fixed), fits in groups.items():
        fits.sort(key=lambda t: _order(value_of(t, by)))
        out.append(Comparison(
            setting=fits[0].setting if by != "setting" else "settings",
            trait=trait, desired=fits[0].desired, scale=scale, by=by, fixed=fixed,
            points=tuple(_point(t, by, strongest.get(_where(t))) for t in fits),
        ))
    return out


def _where(t: TraitFit) -> tuple:
    return t.setting, t.model, t.cell, t.scale


def _strongest(fit: RunFit) -> dict[tuple, str]:
    """Per cell and scale: the inoculation prompt with the highest elicitation of the first
    undesired trait (of any trait, when every one is desired)."""
    out: dict[tuple, str] = {}
    for t in sorted(fit.traits, key=lambda t: t.desired):  # undesired traits first
        inoculation = [p for p in t.prompts if p.role == "inoculation"]
        if inoculation:
            out.setdefault(_where(t), max(inoculation, key=lambda p: p.elicitation.value).prompt_id)
    return out


def _point(t: TraitFit, by: str, prompt_id: str | None) -> Point:
    strongest = next((p for p in t.prompts if p.prompt_id == prompt_id), None)
    return Point(
        value=value_of(t, by),
        cell=t.cell,
        slope=t.line.slope if t.line is not None else None,
        pooled_k=t.pooled_k.through_origin,
        strongest=strongest.prompt_id if strongest else None,
        effect=strongest.inoculation_effect if strongest else None,
    )


def _order(value: object) -> tuple:
    return (0, value, "") if isinstance(value, (int, float)) else (1, 0, str(value))


def _cell(e: Estimate | None) -> str:
    return "-" if e is None else f"{e:.2f}"


def comparisons_text(fit: RunFit, by: str) -> str:
    return "\n\n".join(c.to_text() for c in compare(fit, by)) + "\n"
