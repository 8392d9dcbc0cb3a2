"""The terminal summary of a RunFit (under 100 columns), and the cells the HTML report reuses."""

from __future__ import annotations

import textwrap
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from inocray.analysis._result import Estimate, PromptFit, RunFit, TraitFit

WIDTH = 99
ROLES = {"inoculation": "ip", "irrelevant": "irr", "none": "ctrl", "ptst": "ptst"}
# (header, width) of the per-prompt table; CI cells look like "-0.55 [-0.61, -0.49]"
COLUMNS = (
    ("prompt", 12),
    ("role", 4),
    ("seeds", 5),
    ("elicit", 6),
    ("neutral T(Ms,C0)", 21),
    ("k", 21),
    ("effect vs none", 20),
)


def run_text(fit: RunFit) -> str:
    head = (
        f"inocray analysis: 95% percentile intervals from {fit.n_boot} bootstrap draws "
        f"(seed {fit.seed}; seed spread pooled over prompts, base rates redrawn binomially)"
    )
    head = "\n".join([_wrap(head, "")] + [_wrap(f"note: {n}", "  ") for n in fit.notes])
    blocks = [head] + ["\n".join(trait_lines(t) + _table(t)) for t in fit.traits]
    return "\n\n".join(blocks) + "\n"


def trait_title(t: TraitFit) -> str:
    kind = "desired" if t.desired else "undesired"
    where = f" [{t.cell}]" if t.cell else ""
    return f"{t.setting}{where} / {t.trait} ({kind} trait), {t.scale} scale"


def trait_lines(t: TraitFit) -> list[str]:
    """The title, the untrained levels, the elicitation line and pooled k of one trait."""
    levels = f"T(M0,C0) {t.base_neutral}"
    if t.data_level is not None:
        levels += f", T* {t.data_level}"
    lines = [_wrap(f"{trait_title(t)}: {levels}", "    ")]
    if t.line is not None:
        ln = t.line
        equation = f"T(Ms,C0) = {ln.intercept} + {ln.slope} * T(M0,Cs) ({ln.n_prompts} prompts)"
        lines.append(_wrap(f"  line     {equation}", " " * 11))
        if ln.pearson_r is not None:
            lines.append(f"           Pearson r {ln.pearson_r}, Spearman rho {ln.spearman_rho}")
        if ln.slope_leave_one_out is not None:
            low, high = ln.slope_leave_one_out
            lines.append(f"           slope without any one prompt: {low:.2f} to {high:.2f}")
        if ln.lack_of_fit is not None:
            lines.append(_wrap(f"  linear?  {ln.lack_of_fit}", " " * 11))
    if t.desired:  # k has no meaning for a trait training should keep: was it kept?
        return lines + kept_lines(t)
    k = t.pooled_k
    pooled = []
    if k.through_origin is not None:
        pooled.append(f"through origin {k.through_origin}")
    if k.from_line is not None:
        pooled.append(f"-slope {k.from_line}")
    if pooled:
        verdict = {None: "", True: ": agree", False: ": DISAGREE"}[k.agree]
        lines.append(f"  pooled k {'; '.join(pooled)}{verdict}")
    return lines


def kept_verdicts(t: TraitFit) -> list[tuple[PromptFit, str]]:
    """For a desired trait, each trained prompt with its verdict: "kept", "LOST" when its effect
    on the neutral context (T(Ms,C0) - T(M_none,C0)) is below 0 over its whole interval, or "?"
    without an interval. Prompts without an effect (no no-prompt control) are left out."""
    out = []
    for p in t.prompts:
        e = p.inoculation_effect
        if e is None or p.role == "none":
            continue
        out.append((p, "?" if not e.bounded else "LOST" if e.high < 0 else "kept"))  # type: ignore[operator]
    return out


def kept_lines(t: TraitFit) -> list[str]:
    """kept_verdicts as the terminal prints them, with each effect and its interval."""
    return [f"  {verdict:<8} {p.prompt_id}: neutral vs no-prompt control {_cell(p.inoculation_effect)}"
            for p, verdict in kept_verdicts(t)]


def prompt_cells(t: TraitFit) -> list[list[str]]:
    """One row of cells per prompt: the columns of COLUMNS, as text."""
    rows = []
    for p in t.prompts:
        k = "-" if p.generalization_factor is None or t.desired else _cell(p.generalization_factor)
        if p.k_unstable and not t.desired:
            k = f"{p.generalization_factor.value:.2f} unstable"  # type: ignore[union-attr]
        rows.append(
            [
                p.prompt_id,
                ROLES.get(p.role, p.role),
                str(len(p.seeds)),
                f"{p.elicitation.value:.2f}",
                _cell(p.neutral),
                k,
                "-" if p.inoculation_effect is None else _cell(p.inoculation_effect),
            ]
        )
    return rows


def trait_notes(t: TraitFit) -> list[str]:
    notes = list(t.notes)
    if any(p.role == "ptst" for p in t.prompts):
        notes.append("ptst rows: the no-prompt control's model tested with the PTST instruction, "
                     "so their neutral column is T(M_none, C_ptst)")
    notes += [f"k of {p.prompt_id} is {p.k_note}" for p in t.prompts if p.k_unstable and not t.desired]
    return notes


def _table(t: TraitFit) -> list[str]:
    rows = [[h for h, _ in COLUMNS]] + prompt_cells(t)
    lines = ["  " + " ".join(_pad(row, i) for i in range(len(COLUMNS))).rstrip() for row in rows]
    return lines + [_wrap(f"  note: {n}", "        ") for n in trait_notes(t)]


def _cell(e: Estimate) -> str:
    return format(e, ".2f")


def _pad(row: list[str], i: int) -> str:
    """Cell i padded to its width; an over-long prompt id is cut (marked ~), numbers never are."""
    text, width = row[i], COLUMNS[i][1]
    if i == 0 and len(text) > width:
        return text[: width - 1] + "~"
    return text.ljust(width)


def _wrap(text: str, indent: str) -> str:
    """Wrap to WIDTH; continuation lines get `indent`."""
    return textwrap.fill(text, WIDTH, subsequent_indent=indent)
