"""Plots of a fit (PNG, matplotlib Agg) and one self-contained report.html per run.

`plot_elicitation` is the plot the spine draws after every run: the trait left at test time,
T(Ms, C0), against the elicitation T(M0, Cs), with the fitted line (slope -k under App. H).
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from inocray.analysis._compare import Comparison, compare, varying
from inocray.analysis._data import NO_PROMPT
from inocray.analysis._fit import fit_rows
from inocray.analysis._io import read_runs
from inocray.analysis._leaks import leak_table, leaks_text
from inocray.analysis._predictors import PredictorComparison, compare_predictors, predictors_text
from inocray.analysis._result import Estimate, PromptFit, RunFit, TraitFit
from inocray.analysis._text import COLUMNS, kept_verdicts, prompt_cells, trait_lines, trait_notes, trait_title
from inocray.config import shown
from inocray.results import REPORT, STOPPED_DIR, search_path, write_atomically
PathLike = str | os.PathLike


def plot_elicitation(
    fit: RunFit, trait: str, path: PathLike, *, scale: str | None = None, setting: str | None = None,
    cell: str | None = None,
) -> Path:
    """Scatter of T(Ms, C0) against T(M0, Cs), one point per prompt, with the fitted line."""
    return _save(_elicitation_figure(fit.trait(trait, scale, setting, cell)), path)


def plot_predictors(comparison: PredictorComparison, path: PathLike) -> Path:
    """T(Ms, C0) against sampled and logprob elicitation side by side, each with its line
    (`compare_predictors`), as the report shows them."""
    return _save(_predictors_figure(comparison), path)


def over_steps(rows, setting: str, trait: str, cell: str = "") -> dict[str, dict[int, float]]:
    """prompt id -> {step: mean neutral-context rate over seeds}, for prompts with checkpoints,
    in grid cell `cell`."""
    sums: dict[str, dict[int, list[float]]] = {}
    for r in rows.to_pylist():
        if (r["setting"], r["trait"], r["context"], r["cell"] or "") == (setting, trait, "neutral", cell) and r["n"] \
                and r["stage"] in ("checkpoint", "trained"):
            sums.setdefault(r["prompt_id"], {}).setdefault(r["step"], []).append(r["rate"])
    return {pid: {step: float(np.mean(v)) for step, v in sorted(by.items())}
            for pid, by in sorted(sums.items()) if len(by) > 1}


def write_report(run_dir: PathLike, n_boot: int = 1000, seed: int = 0) -> Path:
    """Fit the run on both scales and write RUN_DIR/report.html (plots embedded); its path."""
    run_dir = Path(run_dir)
    rows = read_runs([run_dir])
    fit = fit_rows(rows, scale="both", n_boot=n_boot, seed=seed)
    sweeps = ", ".join(sorted(set(rows.column("sweep_hash").to_pylist())))
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        f"<h1>inocray report: {_e(run_dir.name)}</h1>",
        f"<p>Run <code>{_e(str(run_dir))}</code>, sweep {_e(sweeps)}, written {stamp}. "
        f"Intervals: 95% percentile bootstrap, {fit.n_boot} draws (seed {fit.seed}): seed "
        "spread pooled over prompts, base-model rates redrawn binomially (docs/analysis.md). "
        "Plots on the raw scale; tables on the raw and logit (Jeffreys-smoothed) scales.</p>",
    ]
    parts += [f"<p>Note: {_e(n)}</p>" for n in fit.notes]
    parts += _search_html(run_dir)
    # One section per setting and grid cell (a sweep without a grid: per setting).
    for setting, model, cell in sorted(dict.fromkeys((t.setting, t.model, t.cell) for t in fit.traits)):
        raw = [t for t in fit.traits if (t.setting, t.model, t.cell, t.scale) == (setting, model, cell, "raw")]
        parts.append(f"<h2>Setting {_e(setting)}" + (f", cell {_e(cell)}" if cell else "") + "</h2>")
        parts.append(_prompts_html(raw[0]))
        parts.append(_img(_effects_figure(raw), "inoculation effect of each prompt"))
        for t in raw:
            parts.append(f"<h3>{_e(t.trait)} ({'desired' if t.desired else 'undesired'})</h3>")
            if t.desired:  # k and the line say nothing of a trait training should keep: was it kept?
                parts.append(_img(_kept_figure(t), f"{t.trait}: was it kept?"))
            else:
                parts.append(_img(_elicitation_figure(t), f"{t.trait}: elicitation line"))
                parts.append(_img(_generalization_figure(t), f"{t.trait}: generalization factor"))
            steps = over_steps(rows, setting, t.trait, cell)
            if steps:
                parts.append(_img(_steps_figure(steps, setting, t.trait), f"{t.trait}: over training"))
            for tf in fit.traits:
                if (tf.setting, tf.cell, tf.trait) == (setting, cell, t.trait):
                    parts.append(_trait_html(tf))
    comparisons = compare_predictors(rows, n_boot=n_boot, seed=seed)
    if comparisons:
        parts.append("<h2>Which predictor explains the trait left: sampled or logprob elicitation</h2>")
        parts.append(f"<pre>{_e(predictors_text(comparisons))}</pre>")
        parts += [_img(_predictors_figure(c), f"{c.trait}: both predictors") for c in comparisons]
    leaks = leak_table(rows, seed=seed)
    if leaks:
        parts.append("<h2>Leak probes: the trait under look-alike contexts</h2>")
        parts.append(f"<pre>{_e(leaks_text(leaks))}</pre>")
    for by in varying(fit):
        parts.append(f"<h2>Across the grid: by {_e(by)}</h2>")
        raw = [c for c in compare(fit, by) if c.scale == "raw"]
        for trait in dict.fromkeys(c.trait for c in raw):
            mine = [c for c in raw if c.trait == trait]
            parts += [f"<h4>{_e(c.title())}</h4>" + _comparison_html(c) for c in mine]
            parts.append(_img(_comparison_figure(mine), f"{trait}: by {by}"))
    page = (
        "<!doctype html>\n<html><head><meta charset='utf-8'>"
        f"<title>inocray report: {_e(run_dir.name)}</title><style>{_CSS}</style></head>\n"
        "<body>\n" + "\n".join(parts) + "\n</body></html>\n"
    )
    return write_atomically(
        run_dir / REPORT, lambda tmp: Path(tmp).write_text(page, encoding="utf-8")
    )


_CSS = (
    "body{font-family:sans-serif;max-width:1100px;margin:auto;padding:1em}"
    "table{border-collapse:collapse;font-size:90%}td,th{border:1px solid #ccc;padding:2px 6px}"
    "td{font-family:monospace;text-align:right}img{max-width:49%}pre{background:#f6f6f6}"
)


def _prompts_html(t: TraitFit) -> str:
    rows = "".join(
        f"<tr><td>{_e(p.prompt_id)}</td><td>{_e(p.role)}</td><td>{len(p.seeds)}</td>"
        f"<td style='text-align:left'>{_e(p.text)}</td></tr>"
        for p in t.prompts
    )
    return f"<table><tr><th>prompt</th><th>role</th><th>seeds</th><th>text</th></tr>{rows}</table>"


def _trait_html(t: TraitFit) -> str:
    lines = trait_lines(t)
    head = "".join(f"<th>{_e(h)}</th>" for h, _ in COLUMNS)
    body = "".join(
        "<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in prompt_cells(t)
    )
    notes = "".join(f"<li>{_e(n)}</li>" for n in trait_notes(t))
    return (
        f"<h4>{_e(trait_title(t))}</h4><pre>{_e(chr(10).join(lines))}</pre>"
        f"<table><tr>{head}</tr>{body}</table>" + (f"<ul>{notes}</ul>" if notes else "")
    )


def _comparison_html(c: Comparison) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in (c.by, "cell", "slope", "pooled k", "strongest prompt", "its effect"))
    body = "".join(
        "<tr>" + "".join(f"<td>{_e(x)}</td>" for x in (
            shown(p.value), p.cell,
            *[("-" if e is None else f"{e:.2f}") for e in (p.slope, p.pooled_k)],
            p.strongest or "-", "-" if p.effect is None else f"{p.effect:.2f}")) + "</tr>"
        for p in c.points
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _comparison_figure(comparisons: list[Comparison]) -> Figure:
    """Slope, pooled k and the strongest prompt's effect (95% CI) against the axis's values,
    one series (colour) per comparison: per combination of the other axes' values."""
    fig = Figure(figsize=(12, 3.8), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 3)
    first = comparisons[0]
    labels = list(dict.fromkeys(shown(p.value) for c in comparisons for p in c.points))
    names = ("slope of the elicitation line", "pooled k (through the origin)", "strongest prompt's effect")
    spread = 0.25 / max(1, len(comparisons) - 1) if len(comparisons) > 1 else 0.0
    for s, c in enumerate(comparisons):
        shift = (s - (len(comparisons) - 1) / 2) * spread
        series = ", ".join(f"{a} {shown(v)}" for a, v in c.fixed) or None
        for i, ax in enumerate(axes):
            for p in c.points:
                e = p.quantities()[i]
                if e is not None:
                    ax.errorbar(labels.index(shown(p.value)) + shift, e.value, yerr=_err(e), fmt="o",
                                color=f"C{s % 10}", capsize=3, label=series if p is c.points[0] else None)
    for ax, name in zip(axes, names):
        ax.set_xticks(range(len(labels)), labels)
        ax.set_xlim(-0.5, len(labels) - 0.5)
        ax.set_xlabel(first.by)
        ax.set_title(name, fontsize="medium")
        ax.axhline(0, color="grey", lw=0.8)
    if any(c.fixed for c in comparisons):
        axes[0].legend(fontsize="small")
    kind = "desired" if first.desired else "undesired"
    fig.suptitle(f"{first.setting} / {first.trait} ({kind}), {first.scale} scale, by {first.by} (95% CI)")
    return fig


def _elicitation_figure(t: TraitFit) -> Figure:
    fig, ax = _figure()
    on_line = [p for p in t.prompts if p.on_line]
    for p in t.prompts:
        xs = [p.elicitation.value] * len(p.neutral_seeds)
        ax.scatter(xs, p.neutral_seeds, s=8, color="grey", alpha=0.5, zorder=1)
    control = [p for p in t.prompts if p.prompt_id == NO_PROMPT]
    ptst = [p for p in t.prompts if p.role == "ptst"]
    _points(ax, "elicitation", "neutral", [
        (on_line, "prompts (95% CI over seeds)", "C0", "o"),
        (control, "no-prompt control (not fit)", "C3", "s"),
        (ptst, "PTST: control model, instruction at test (not fit)", "C4", "D"),
    ])
    ax.scatter([], [], s=8, color="grey", label="single seeds")
    if t.line is not None:
        xs = np.array([p.elicitation.value for p in on_line])
        grid = np.linspace(xs.min(), xs.max(), 50)
        low, high = t.line.band(grid)
        ax.fill_between(grid, low, high, color="C1", alpha=0.2, label="95% bootstrap band")
        ln = t.line
        label = f"OLS: slope {ln.slope}" + (f", r {ln.pearson_r}" if ln.pearson_r else "")
        ax.plot(grid, ln.intercept.value + ln.slope.value * grid, color="C1", label=label)
    _label(
        ax,
        t,
        "trait at test time vs elicitation",
        x="elicitation T(M0, Cs): base model with the prompt",
        y="T(Ms, C0): after training, no prompt",
    )
    return fig


VERDICT_COLORS = {"kept": "C2", "LOST": "C3", "?": "C7"}


def _kept_figure(t: TraitFit) -> Figure:
    """A desired trait: each trained prompt's T(Ms, C0) beside the no-prompt control's
    T(M_none, C0), with the 95% interval of the effect (the difference) drawn about the point,
    so a prompt whose interval lies wholly left of the control's line lost the trait; each
    marked with the verdict the terminal prints (kept, LOST, ?)."""
    fig, ax = _figure()
    verdicts = kept_verdicts(t)
    control = next((p for p in t.prompts if p.prompt_id == NO_PROMPT), None)
    if control is None or not verdicts:
        ax.text(0.5, 0.5, "no no-prompt control: nothing to compare", ha="center", transform=ax.transAxes)
    else:
        c = control.neutral
        ax.axvline(c.value, color="grey", lw=1.2, label=f"no-prompt control T(M_none, C0) {c:.2f}")
        if c.bounded:
            ax.axvspan(c.low, c.high, color="grey", alpha=0.15, lw=0)
        for i, (p, verdict) in enumerate(verdicts):
            e = p.inoculation_effect
            ax.errorbar(p.neutral.value, i, xerr=_err(e), fmt="o", color=VERDICT_COLORS[verdict], capsize=3,
                        label=verdict if verdict not in [v for _, v in verdicts[:i]] else None)
            ax.annotate(f"{verdict}: effect {e:.2f}", (p.neutral.value, i), xytext=(0, 7),
                        textcoords="offset points", ha="center", fontsize="x-small")
        ax.set_yticks(range(len(verdicts)), [p.prompt_id for p, _ in verdicts])
        ax.set_ylim(len(verdicts) - 0.2, -0.7)  # the first prompt on top
        ax.legend(fontsize="small")
    if t.scale == "raw":
        ax.set_xlim(-0.02, 1.02)  # the whole range of a rate: a small effect looks small
    ax.set_xlabel("T(Ms, C0): after training, no prompt" + ("" if t.scale == "raw" else " (logit)"))
    ax.set_title(f"{t.setting}{f' [{t.cell}]' if t.cell else ''} / {t.trait}: was it kept? "
                 "(effect vs the no-prompt control, 95% CI)", fontsize="medium")
    return fig


def _predictors_figure(c: PredictorComparison) -> Figure:
    """T(Ms, C0) against each predictor, side by side, with its least-squares line."""
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2, sharey=True)
    names = {"sampled": "sampled elicitation T(M0, Cs)", "logprob": "logprob elicitation L(s), nats/token"}
    for ax, name in zip(axes, ("sampled", "logprob")):
        x, f = np.array(c.x[name]), c.fits[name]
        ax.scatter(x, c.y, color="C0", zorder=2)
        for pid, xi, yi in zip(c.prompts, x, c.y):
            ax.annotate(pid, (xi, yi), fontsize=7, xytext=(3, 3), textcoords="offset points")
        grid = np.linspace(x.min(), x.max(), 20)
        ax.plot(grid, f.intercept + f.slope * grid, color="C1",
                label=f"Pearson {f.pearson:+.2f}, leave-one-out error {f.lopo:.3f}")
        ax.set_xlabel(names[name])
        ax.legend(fontsize=8)
    axes[0].set_ylabel("T(Ms, C0): after training, no prompt (mean over seeds)")
    fig.suptitle(f"{c.setting} / {c.trait}: which predictor explains the trait left")
    return fig


def _generalization_figure(t: TraitFit) -> Figure:
    fig, ax = _figure()
    prompts = [p for p in t.prompts if p.on_line]
    _points(ax, "delta_context", "delta_neutral", [(prompts, "prompts (95% CI)", "C0", "o")])
    xs = np.array([0.0] + [p.delta_context.value for p in prompts])
    grid = np.linspace(min(xs.min(), 0), max(xs.max(), 0), 50)
    ax.plot(grid, grid, ls="--", color="grey", label="y = x (k = 1, no inoculation)")
    k = t.pooled_k.through_origin
    if k is not None:
        if k.bounded:
            ax.fill_between(grid, k.low * grid, k.high * grid, color="C2", alpha=0.2)
        ax.plot(grid, k.value * grid, color="C2", label=f"pooled k {k}")
    _label(
        ax,
        t,
        "generalization factor k",
        x="T(Ms, Cs) - T(M0, Cs): change in the prompt's context",
        y="T(Ms, C0) - T(M0, C0): change in the neutral context",
    )
    return fig


def _effects_figure(traits: list[TraitFit]) -> Figure:
    fig = Figure(figsize=(4.2 * max(1, len(traits)), 4.2), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, max(1, len(traits)), squeeze=False)[0]
    # every panel lists the prompts in one order: by elicitation of the first undesired trait
    first = min(traits, key=lambda t: t.desired)
    order = {p.prompt_id: i for i, p in enumerate(first.prompts)}
    for ax, t in zip(axes, traits):
        shown = [p for p in t.prompts if p.inoculation_effect is not None]
        shown.sort(key=lambda p: order.get(p.prompt_id, len(order)))
        for i, p in enumerate(shown):
            e = p.inoculation_effect
            ax.errorbar(e.value, i, xerr=_err(e), fmt="o", color="C2" if t.desired else "C0")
        ax.set_yticks(range(len(shown)), [p.prompt_id for p in shown])
        ax.xaxis.set_major_locator(MaxNLocator(5))
        ax.axvline(0, color="grey", lw=1)
        ax.set_xlabel("T(Ms, C0) - T(M_none, C0)" + ("" if t.scale == "raw" else " (logit)"))
        ax.set_title(f"{t.trait} ({'desired' if t.desired else 'undesired'})")
        if not shown:
            ax.text(0.5, 0.5, "no no-prompt control", ha="center", transform=ax.transAxes)
    fig.suptitle("Inoculation effect against the no-prompt control (95% CI)")
    return fig


def _steps_figure(curves: dict[str, dict[int, float]], setting: str, trait: str) -> Figure:
    fig, ax = _figure()
    for i, (pid, by_step) in enumerate(curves.items()):
        ax.plot(list(by_step), list(by_step.values()), marker="o", color=f"C{i % 10}", label=pid)
    ax.set_xlabel("training step (checkpoints, then the final model)")
    ax.set_ylabel("T(Ms, C0): trait at test time, mean over seeds")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(f"{setting} / {trait}: over training")
    ax.legend(fontsize="small")
    return fig


def _points(ax: Axes, x: str, y: str, groups: list[tuple[list[PromptFit], str, str, str]]) -> None:
    """Error bars (95% intervals) at each prompt's (x, y) estimates, one (prompts, legend label,
    colour, marker) per group, and the prompt ids beside them: one label per place, so prompts
    whose points coincide (several at (0, 1), say) read "a, b, c" instead of overprinting."""
    at: dict[tuple[float, float], list[str]] = {}
    for prompts, label, color, marker in groups:
        for i, p in enumerate(prompts):
            ex, ey = getattr(p, x), getattr(p, y)
            ax.errorbar(
                ex.value, ey.value, xerr=_err(ex), yerr=_err(ey), fmt=marker, color=color,
                capsize=2, label=label if i == 0 else None, zorder=2,
            )
            at.setdefault((round(ex.value, 6), round(ey.value, 6)), []).append(p.prompt_id)
    for xy, ids in at.items():
        ax.annotate(", ".join(ids), xy, xytext=(4, 4), textcoords="offset points", fontsize="x-small")


def _label(ax: Axes, t: TraitFit, title: str, x: str, y: str) -> None:
    unit = "" if t.scale == "raw" else " (logit)"
    ax.set_xlabel(x + unit)
    ax.set_ylabel(y + unit)
    ax.set_title(f"{t.setting}{f' [{t.cell}]' if t.cell else ''} / {t.trait}: {title}", fontsize="medium")
    ax.legend(fontsize="small")


def _err(e: Estimate) -> list[list[float]] | None:
    if not e.bounded:
        return None
    return [[max(e.value - e.low, 0.0)], [max(e.high - e.value, 0.0)]]


def _figure() -> tuple[Figure, Axes]:
    fig = Figure(figsize=(6.4, 4.8), layout="constrained")
    FigureCanvasAgg(fig)  # render with Agg whatever backend pyplot may have chosen
    return fig, fig.add_subplot()


def _save(fig: Figure, path: PathLike) -> Path:
    path = Path(path)
    fig.savefig(path, format="png", dpi=110)
    return path


def _search_html(run_dir: Path) -> list[str]:
    """A search's run directory (docs/search.md): its verdict and what it spent, and that the
    trials it stopped early are not among those below."""
    summary = Path(search_path(run_dir, "summary"))
    if not Path(search_path(run_dir, "record")).is_file():
        return []
    stopped = sorted(p.stem for p in (run_dir / STOPPED_DIR).glob("*.parquet"))
    out = ["<h2>Search</h2>",
           f"<p>A search's run directory: {len(stopped)} trial(s) stopped early at a rung "
           f"({_e(', '.join(stopped)) or 'none'}); their rows are in {STOPPED_DIR}/, not in the fits below, "
           "which hold the trials trained to the end.</p>"]
    if not summary.is_file():
        return out + ["<p>The search has not ended yet.</p>"]
    got = json.loads(summary.read_text())
    rows = "".join(f"<tr><td>{_e(f['prompt_id'])}</td><td>{f['mean']:+.3f}</td><td>[{f['low']:+.3f}, {f['high']:+.3f}]"
                   f"</td><td>{len(f['values'])}</td></tr>" for f in got["finalists"])
    mean, low, high = got["difference_winner_runner_up"]
    return out + [
        f"<p>Objective: {_e(got['objective'])}. Winner: <b>{_e(got['winner'])}</b>; winner - runner-up "
        f"{mean:+.3f} [{low:+.3f}, {high:+.3f}]. Training spent: {got['steps']} steps, {got['share_of_grid']:.0%} "
        f"of the full grid's {got['grid_steps']}, in {got['seconds'] / 60:.1f} min.</p>",
        "<table><tr><th>finalist</th><th>objective</th><th>95% interval</th><th>seeds</th></tr>" + rows + "</table>"]


def _img(fig: Figure, alt: str) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{data}">'


def _e(text: str) -> str:
    return html.escape(text, quote=True)
