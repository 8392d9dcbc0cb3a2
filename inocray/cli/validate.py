"""`inocray validate SWEEP.yaml`: check a sweep file without running anything."""

from __future__ import annotations

from collections import Counter

import click

from inocray.errors import reports_input_errors


@click.command("validate")
@click.argument("sweep_file", type=click.Path(dir_okay=False))
@click.option("--no-model-check", is_flag=True,
              help="Do not require model directories and data files to exist here (they live on the cluster).")
@reports_input_errors
def command(sweep_file: str, no_model_check: bool) -> None:
    """Check SWEEP_FILE and print the trials it would run (and a grid's size by axis)."""
    from inocray.config import load_sweep, make_plan, setting_entries
    from inocray.results import default_run_dir
    from inocray.settings import get_setting

    spec = load_sweep(sweep_file, check_model=not no_model_check)
    catalogues = {e.setting: get_setting(e.setting, None if no_model_check else e.data).prompts
                  for e in setting_entries(spec)}
    plan = make_plan(spec, catalogues)
    click.echo(f"{sweep_file}: valid sweep '{spec.name}' ({spec.hash()}), {len(plan.trials)} trials")
    if plan.is_grid:
        click.echo(f"grid: {plan.describe()}, {len(plan.trials)} trials")
        per_cell = Counter(t.cell.id for t in plan.trials)  # one pass: cells x trials took minutes
        for c in plan.cells:
            click.echo(f"  cell {c.id}: {per_cell[c.id]} trials")
    click.echo(f"default run directory: {default_run_dir(spec)}")
