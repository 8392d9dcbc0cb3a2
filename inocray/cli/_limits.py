"""The bounds of the numeric options that several commands share, each a stated limit.

A seed feeds numpy's generators, which take 0 to 2**32 - 1; bootstrap draws are held in
memory (draws x fitted numbers), so their count is capped where a laptop still answers.
"""

from __future__ import annotations

import click

SEED = click.IntRange(min=0, max=2**32 - 1)
N_BOOT = click.IntRange(min=100, max=100_000)
SIMS = click.IntRange(min=10, max=10_000)
