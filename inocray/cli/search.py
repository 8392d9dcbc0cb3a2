"""`inocray search SWEEP.yaml --candidates FILE`: the best inoculation prompt for less than the grid."""

from __future__ import annotations

import tempfile
from pathlib import Path

import click

from inocray.cli._quiet import quiet_terminal, verbose_option
from inocray.errors import reports_input_errors


@click.command("search")
@click.argument("sweep_file", type=click.Path(dir_okay=False))
@click.option("--candidates", "candidates_file", required=True, type=click.Path(dir_okay=False),
              help="Candidate prompts beside the sweep's own: one per line (# comments), or a YAML/JSONL list "
                   "of {id, text}.")
@click.option("--suppress", default="", metavar="TRAIT",
              help="The undesired trait whose C0 rate the prompt should lower [default: the setting's first].")
@click.option("--weight", type=float, default=1.0, show_default=True,
              help="The objective's penalty per unit of a desired trait's C0 rate lost (0: none).")
@click.option("--keep", type=int, default=0, show_default=True,
              help="Prompts the screen keeps, best first, for the halving stage (0: all).")
@click.option("--first-rung", type=int, default=0,
              help="Training steps at the first rung, where the poorest candidates stop "
                   "[default: the run's steps / eta^2].")
@click.option("--eta", type=int, default=3, show_default=True,
              help="The top 1/eta of the candidates at a rung go on to the next (ASHA's reduction factor).")
@click.option("--budget", type=int, default=0, show_default=True,
              help="The most optimizer steps the halving stage may train, all candidates together (0: no limit).")
@click.option("--finalists", type=int, default=2, show_default=True,
              help="Candidates trained to the end on every confirming seed.")
@click.option("--seed", type=int, default=0, show_default=True, help="The halving stage's training seed.")
@click.option("--seeds", type=int, default=3, show_default=True,
              help="Confirming seeds: --seed and the ones after it.")
@click.option("--out", default=None, metavar="PATH|s3://BUCKET/PREFIX",
              help="The search's run directory [default: runs/search-NAME-HASH]; the same command again resumes it.")
@click.option("--address", default=None,
              help="Address of a running Ray cluster; by default a local Ray is started.")
@verbose_option("OUT/logs/ray.log")
@reports_input_errors
def command(sweep_file: str, candidates_file: str, suppress: str, weight: float, keep: int, first_rung: int, eta: int,
            budget: int, finalists: int, seed: int, seeds: int, out: str | None, address: str | None,
            verbose: bool) -> None:
    """Search the candidates in FILE and the prompts of SWEEP_FILE for the inoculation prompt that
    best suppresses the undesired trait in C0 while the desired ones are kept: screen them on the
    base model, train them at one seed with the poor ones stopped early at rungs, confirm the best
    on several seeds, and print the winner against the runner-up and the training spent against
    the full grid (docs/search.md)."""
    from inocray.config import load_sweep, one_setting
    from inocray.results import log_path, storage
    from inocray.run import SearchOptions, read_candidates, search

    spec = one_setting(load_sweep(sweep_file), sweep_file, "search")
    candidates = read_candidates(candidates_file)
    options = SearchOptions(seed=seed, seeds=seeds, keep=keep, finalists=finalists, eta=eta, first_rung=first_rung,
                            suppress=suppress, weight=weight, budget=budget)
    where = storage.location(out) if out else None
    library_log = (log_path(where, "ray") if isinstance(where, Path)
                   else Path(tempfile.gettempdir()) / f"inocray-search-{spec.hash()}-ray.log")
    with quiet_terminal(verbose, library_log):
        search(spec, candidates, options, out=where, address=address, echo=click.echo)
