"""`inocray validate SWEEP.yaml`: check a sweep file without running anything."""

from __future__ import annotations

import click

from inocray.errors import reports_input_errors


@click.command("validate")
@click.argument("sweep_file", type=click.Path(dir_okay=False))
@click.option("--no-model-check", is_flag=True,
              help="Do not require model directories and data files to exist here (they live on the cluster).")
@reports_input_errors
def command(sweep_file: str, no_model_check: bool) -> None:
    """Check SWEEP_FILE and print the trials it would run (and a grid's size by axis)."""
    from inocray.config import _grid as grid
    from inocray.config._plan import plan_grid
    from inocray.settings import get_setting
    from inocray.run._launch import default_run_dir
    from inocray.config._validate import load_sweep

    spec = load_sweep(sweep_file, check_model=not no_model_check)
    catalogues = {e.setting: get_setting(e.setting, None if no_model_check else e.data).prompts
                  for e in grid.entries(spec)}
    trials = plan_grid(spec, catalogues)
    click.echo(f"{sweep_file}: valid sweep '{spec.name}' ({spec.hash()}), {len(trials)} trials")
    if grid.is_grid(spec):
        cells = grid.cells(spec)
        click.echo(f"grid: {grid.describe(spec)}, {len(trials)} trials")
        for c in cells:
            click.echo(f"  cell {c.id}: {sum(t.cell == c.id for t in trials)} trials")
    click.echo(f"default run directory: {default_run_dir(spec)}")
