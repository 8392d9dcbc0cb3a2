"""`inocray screen SWEEP.yaml --prompts FILE`: rank candidate prompts by elicitation, untrained."""

from __future__ import annotations

import contextlib
from pathlib import Path

import click

from inocray.cli._quiet import quiet_terminal, verbose_option
from inocray.errors import reports_input_errors


@click.command("screen")
@click.argument("sweep_file", type=click.Path(dir_okay=False))
@click.option("--prompts", "prompts_file", required=True, type=click.Path(dir_okay=False),
              help="Candidate prompts: one per line (# comments), or a YAML/JSONL list of {id, text}.")
@click.option("--from", "run_dir", default=None, metavar="RUN_DIR",
              help="A finished run of the same setting (a path or an s3:// URI): predict each "
                   "candidate's trait left after training, T(Ms, C0), from its fitted elicitation line.")
@click.option("--cell", default=None, metavar="CELL",
              help="With --from a run of a grid sweep: the cell whose line predicts (`inocray status RUN` "
                   "lists them).")
@click.option("--top", type=click.IntRange(min=1), default=20, show_default=True,
              help="How many candidates to print per trait (the files hold all).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where screen.parquet and screen.csv go [default: runs/screen-NAME-HASH].")
@click.option("--batch", type=click.IntRange(min=1), default=25, show_default=True,
              help="Candidates per request to the engine (one progress line each).")
@click.option("--measure", type=click.Choice(["sampled", "logprob", "both"]), default="sampled", show_default=True,
              help="Elicitation as the trait rate of sampled completions, as the training responses' "
                   "log-probability gain under the prompt (eval.logprob_examples of them), or both.")
@click.option("--address", default=None,
              help="Address of a running Ray cluster; by default a local Ray is started.")
@verbose_option("OUT/ray.log")
@reports_input_errors
def command(sweep_file: str, prompts_file: str, run_dir: str | None, cell: str | None, top: int,
            out: Path | None, batch: int, measure: str, address: str | None, verbose: bool) -> None:
    """Measure how strongly each candidate prompt elicits each trait in the base model of
    SWEEP_FILE (no training), rank them, and write the ranking."""
    from inocray.config import load_sweep, one_setting
    from inocray.errors import InputError
    from inocray.results import opened
    from inocray.run import default_out_dir, read_candidates, save_screen, screen, screen_text

    if cell is not None and run_dir is None:
        raise InputError("--cell names a cell of the run given with --from; give --from too")
    spec = one_setting(load_sweep(sweep_file), sweep_file, "screen")
    candidates = read_candidates(prompts_file)
    header = [f"screening {len(candidates)} candidates from {prompts_file} with sweep {spec.name} ({spec.hash()})"]

    def echo(message: str = "", **kwargs) -> None:
        # The header waits for screen's first line: a bad --from run is then the only output.
        while header:
            click.echo(header.pop())
        click.echo(message, **kwargs)

    with contextlib.ExitStack() as stack:
        # An s3:// run is read from a local copy; what is said about it names the URI.
        run = stack.enter_context(opened(run_dir)) if run_dir is not None else None
        rename = run.named if run is not None else (lambda text: text)
        out = out or default_out_dir(spec, candidates, run and run.where, cell)
        try:
            with quiet_terminal(verbose, out / "ray.log", echo):
                table = screen(spec, candidates, predict_from=run and run.local, cell=cell, address=address,
                               batch_size=batch, measure=measure,
                               echo=lambda message="", **kw: echo(rename(message), **kw))
        except InputError as e:
            raise InputError(rename(str(e))) from None
    echo()
    click.echo(screen_text(table, top=top), nl=False)
    for path in save_screen(table, out):
        click.echo(f"wrote {path}")
