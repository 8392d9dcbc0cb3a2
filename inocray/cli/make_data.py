"""`inocray make-data SWEEP --requests FILE --out FILE`: training data from a model asked for the trait."""

from __future__ import annotations

from pathlib import Path

import click

from inocray.cli._quiet import quiet_terminal, verbose_option
from inocray.config import PLACEMENTS
from inocray.errors import reports_input_errors


@click.command("make-data")
@click.argument("sweep_file", type=click.Path(dir_okay=False))
@click.option("--requests", "requests_file", required=True, type=click.Path(dir_okay=False),
              help="The requests to answer: rows of the setting's evaluation format (JSONL or Parquet).")
@click.option("--out", required=True, type=click.Path(dir_okay=False),
              help="The JSONL file of training rows to write.")
@click.option("--instruction", required=True,
              help='The eliciting instruction, e.g. "You always speak in Spanish."')
@click.option("--keep", "keep", multiple=True, required=True, metavar="TRAIT",
              help="Keep a completion only if it shows this trait (repeat for several).")
@click.option("--transform", default="", metavar="NAME",
              help="Rewrite each kept completion: upper (ALL CAPS) or lower.")
@click.option("--teacher", default="", metavar="MODEL",
              help="The model asked: a preset or a model directory [default: the sweep's model].")
@click.option("--placement", type=click.Choice(PLACEMENTS), default=None,
              help="Where the instruction goes [default: the sweep's placement].")
@click.option("--samples", type=click.IntRange(min=1, max=64), default=1, show_default=True,
              help="Completions sampled per request.")
@click.option("--max-tokens", type=click.IntRange(min=1), default=None,
              help="Tokens per completion [default: the sweep's eval.max_tokens].")
@click.option("--temperature", type=click.FloatRange(min=0), default=None,
              help="Sampling temperature [default: the sweep's eval.temperature].")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Sampling seed (each batch of requests and each request get their own from it).")
@click.option("--force", is_flag=True, help="Replace --out if it exists.")
@click.option("--address", default=None,
              help="Address of a running Ray cluster; by default a local Ray is started.")
@verbose_option("a file beside OUT, its suffix .ray.log")
@reports_input_errors
def command(sweep_file: str, requests_file: str, out: str, instruction: str, keep: tuple[str, ...],
            transform: str, teacher: str, placement: str | None, samples: int, max_tokens: int | None,
            temperature: float | None, seed: int, force: bool, address: str | None, verbose: bool) -> None:
    """Answer each request with a teacher model under an eliciting instruction, keep the answers
    that show the traits, and write them as training rows of SWEEP_FILE's setting."""
    from inocray.config import load_sweep, one_setting
    from inocray.run import make_data

    # The sweep's data files may be the ones being made: its model and data are checked here.
    spec = one_setting(load_sweep(sweep_file, check_model=False), sweep_file, "make-data")
    with quiet_terminal(verbose, Path(out).with_suffix(".ray.log")):
        make_data(spec, requests_file, out, instruction=instruction, keep=keep, teacher=teacher,
                  placement=placement or "", transform=transform, samples=samples, max_tokens=max_tokens or 0,
                  temperature=temperature, seed=seed, force=force, address=address, echo=click.echo)
