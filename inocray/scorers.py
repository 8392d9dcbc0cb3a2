"""Scorers: whether each completion shows a trait, by program or by an LLM judge.

A scorer takes a batch of completions with the evaluation items they answer and returns, per
completion, True (shows the trait), False, or None (could not be scored; left out of the
rate). Scorers register by name, so a setting or a sweep can name them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol, Sequence

from inocray.data import EvalItem


class Scorer(Protocol):
    needs_judge: bool  # True: `score` needs a judge (see `Judge`)

    def score(self, completions: Sequence[str], items: Sequence[EvalItem], judge=None) -> list[bool | None]: ...


@dataclass(frozen=True)
class Check:
    """A programmatic scorer: `fn(completion, item)` says whether the completion shows the trait."""

    fn: Callable[[str, EvalItem], bool | None]
    needs_judge: bool = False

    def score(self, completions: Sequence[str], items: Sequence[EvalItem], judge=None) -> list[bool | None]:
        return [self.fn(c, item) for c, item in zip(completions, items, strict=True)]


_SCORERS: dict[str, Callable[..., Scorer]] = {}


def register_scorer(name: str) -> Callable:
    """Register a scorer factory under `name` (its keyword arguments are the scorer's options)."""

    def deco(factory: Callable[..., Scorer]) -> Callable[..., Scorer]:
        _SCORERS[name] = factory
        return factory

    return deco


def get_scorer(name: str, **options) -> Scorer:
    if name not in _SCORERS:
        raise KeyError(f"unknown scorer {name!r} (known: {', '.join(sorted(_SCORERS))})")
    return _SCORERS[name](**options)
