"""`inocray plan SWEEP.yaml` (the power planner): how wide the intervals of the slope and k will be, before running."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from inocray.cli._limits import SEED, SIMS
from inocray.errors import reports_input_errors

if TYPE_CHECKING:
    from inocray.analysis.power import Measured
    from inocray.config import SweepSpec

GUESSED_BASE, GUESSED_DATA = 0.05, 0.95  # T(M0, C0) and T* when nothing measured them
GUESSED_RANGE = 0.1, 0.8  # elicitation spread evenly over the prompts when nothing measured it


@click.command("plan")
@click.argument("sweep_file", type=click.Path(dir_okay=False))
@click.option("--from", "source", default=None, metavar="SCREEN_OR_RUN",
              help="A screen's output (its directory or screen.parquet/.csv) or a run directory: "
                   "the prompts' measured elicitation.")
@click.option("--elicitation", "given", multiple=True, metavar="ID=RATE",
              help="The elicitation of one prompt (repeatable); overrides --from.")
@click.option("--trait", default=None, help="The trait measured in --from [default: the first undesired].")
@click.option("--k", type=click.FloatRange(min=0.0, max=2.0), default=0.5, show_default=True,
              help="The generalization factor to plan for.")
@click.option("--noise", type=click.FloatRange(min=0.0, max=0.5), default=0.03, show_default=True,
              help="Training noise: the sd of a trait rate between seeds, beyond sampling noise.")
@click.option("--target-width", type=click.FloatRange(min=0.0, min_open=True), default=0.1,
              show_default=True, help="The width of the 95% intervals wanted.")
@click.option("--sims", type=SIMS, default=50, show_default=True,
              help="Simulated sweeps per design.")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Seed of the simulation.")
@reports_input_errors
def command(sweep_file: str, source: str | None, given: tuple[str, ...], trait: str | None, k: float,
            noise: float, target_width: float, sims: int, seed: int) -> None:  # fmt: skip
    """How wide the intervals of the slope and k of SWEEP_FILE will be, before running it.

    Simulates the sweep's prompts, seeds and samples per rate (eval.requests x eval.samples)
    under a stated k and training noise, prints the expected widths of the 95% intervals of
    the slope and of pooled k, and says how many seeds or samples reach --target-width.
    """
    from inocray.analysis.power import Design, plan_sweep, read_elicitation, wrap
    from inocray.config import load_sweep, one_setting

    # planning needs no model on this machine
    spec = one_setting(load_sweep(sweep_file, check_model=False), sweep_file, "plan")
    on_line = [*spec.prompts, *spec.irrelevant]
    measured = read_elicitation(source, trait) if source is not None else None
    elicitation, where = _elicitation(spec, on_line, measured, given)
    base = measured.base_neutral if measured else GUESSED_BASE
    data = measured.data_level if measured and measured.data_level is not None else GUESSED_DATA
    n = spec.eval.requests * spec.eval.samples
    design = Design(elicitation, base, data, len(spec.seeds), n)
    plan = plan_sweep(design, k=k, noise=noise, target_width=target_width, sims=sims, seed=seed)

    name = f" (trait {measured.trait})" if measured else ""
    guessed = " (guessed)"
    for line in (
        f"plan for sweep {spec.name}{name}: {len(spec.prompts)} inoculation prompt(s) + {len(spec.irrelevant)} "
        f"irrelevant on the line, {len(spec.seeds)} seeds, {n} samples per rate ({spec.eval.requests} "
        f"requests x {spec.eval.samples} samples)",
        f"T(M0,C0) {base:.2f}{'' if measured else guessed}, T* {data:.2f}"
        f"{'' if measured and measured.data_level is not None else guessed}; elicitation {where}:",
        "  " + ", ".join(f"{pid}={x:.2f}" for pid, x in elicitation.items()),
    ):
        click.echo(wrap(line))
    if spec.probes:
        click.echo(wrap(_probe_cost(spec, n)))
    click.echo(plan.to_text(), nl=False)


def _probe_cost(spec: SweepSpec, n: int) -> str:
    """What the sweep's leak probes add to its evaluation: contexts and completions."""
    from inocray.config import make_plan
    from inocray.settings import get_setting

    trials = make_plan(spec, {spec.setting: get_setting(spec.setting, None).prompts}).trials
    contexts = sum(len(t.probes) for t in trials)
    per_trial = 2 * (1 + len(spec.train.checkpoint_steps()))  # C0 and Cs of every snapshot
    return (f"probes: {contexts} more evaluation contexts over the {len(trials)} trials ({contexts * n} completions, "
            f"{contexts / (per_trial * len(trials)):.0%} more evaluation than C0 and Cs of every snapshot)")


def _elicitation(spec: SweepSpec, on_line: list[str], measured: Measured | None,
                 given: tuple[str, ...]) -> tuple[dict[str, float], str]:  # fmt: skip
    """T(M0, Cs) of each prompt on the line, and a phrase saying where it came from."""
    import numpy as np

    from inocray.errors import InputError

    stated = {}
    for item in given:
        pid, sep, rate = item.partition("=")
        try:
            value = float(rate)
        except ValueError:
            value = -1.0
        if not sep or not 0.0 <= value <= 1.0:
            raise InputError(f"--elicitation {item!r} is not ID=RATE with RATE between 0 and 1")
        if pid not in on_line:
            raise InputError(f"--elicitation names {pid!r}, not a prompt of the sweep ({', '.join(on_line)})")
        stated[pid] = value
    if measured is None and len(stated) < len(on_line):
        low, high = GUESSED_RANGE
        spread = dict(zip(spec.prompts, np.linspace(low, high, len(spec.prompts)).tolist()))
        guessed = spread | {pid: GUESSED_BASE for pid in spec.irrelevant}
        where = "guessed (evenly spread; give --from or --elicitation)" if not stated else "given, the rest guessed"
        return {pid: stated.get(pid, guessed[pid]) for pid in on_line}, where
    if measured is None:
        return stated, "given"
    texts = _texts(spec)
    out = {}
    for pid in on_line:
        found = stated.get(pid, measured.by_id.get(pid, measured.by_text.get(texts.get(pid, ""))))
        if found is None:
            raise InputError(f"{measured.source} has no elicitation of prompt {pid!r} (by id or text); "
                             f"give it with --elicitation {pid}=RATE")  # fmt: skip
        out[pid] = found
    return out, f"measured in {measured.source}" + (", some given" if stated else "")


def _texts(spec: SweepSpec) -> dict[str, str]:
    """The canonical text of each prompt of the sweep, to find it among a screen's candidates."""
    from inocray.config import prompt_catalogue
    from inocray.settings import get_setting

    return {pid: p.text for pid, p in prompt_catalogue(spec, get_setting(spec.setting, None).prompts).items()}

