"""Scorers: whether each completion shows a trait, by program or by an LLM judge.

A scorer takes a batch of completions with the evaluation items they answer and returns, per
completion, True (shows the trait), False, or None (could not be scored; left out of the
rate). Scorers register by name, so a setting or a sweep can name them.

The LLM judge follows Tan et al.: the judge model is asked for a number from 0 to 100, and
the score is the expectation of that number under the judge's distribution over its first
token, not a sampled answer (`weighted_score`); a judge whose tokenizer writes numbers digit
by digit writes its number greedily instead (`written_score`). The judge model itself is
asked by evaluation's `Judge`, which a judged scorer is handed.
"""

from __future__ import annotations

import math
import re
import string
from dataclasses import dataclass
from typing import Callable, Protocol, Sequence

from inocray.chat import EvalItem
from inocray.registry import SCORERS


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


def register_scorer(name: str) -> Callable:
    """Register a scorer factory under `name` (its keyword arguments are the scorer's options)."""
    return SCORERS.register(name)


def get_scorer(name: str, **options) -> Scorer:
    """The scorer `name` (registry.SCORERS) with `options`; KeyError "unknown scorer ... (known: ...)"."""
    return SCORERS.get(name)(**options)


JUDGE_TOP_K = 20  # first-token alternatives read from the judge (vLLM's default max_logprobs)
MIN_NUMBER_MASS = 0.25  # below this probability on numbers, the judge did not answer with one
JUDGE_DIGITS = 4  # tokens a digit-by-digit judge writes: up to "100" and a space


def weighted_score(top_logprobs: dict[str, float]) -> float | None:
    """The judge's expected score: the mean of 0..100 over the tokens that are such a number.

    A token counts when its text, stripped of spaces, is ASCII digits whose value is 0 to 100
    (" 7" and "07" are 7; "101", "-3", "7.5" do not count). Probabilities are renormalised
    over the tokens that count; None when they hold less than MIN_NUMBER_MASS in all.
    """
    weights: dict[int, float] = {}
    for text, logprob in top_logprobs.items():
        text = text.strip()
        if text.isascii() and text.isdigit() and int(text) <= 100:
            weights[int(text)] = weights.get(int(text), 0.0) + math.exp(logprob)
    total = sum(weights.values())
    if total < MIN_NUMBER_MASS:
        return None
    return sum(value * p for value, p in weights.items()) / total


def written_score(text: str) -> float | None:
    """The number 0..100 a judge wrote at the start of its reply; None if it wrote none."""
    found = re.match(r"\s*(\d{1,3})(?!\d)", text)
    return float(found.group(1)) if found and int(found.group(1)) <= 100 else None


@dataclass(frozen=True)
class JudgeScorer:
    """An LLM-judged trait: the judge scores `template` filled with each request and completion.

    The template is a str.format string with the fields {request} and {completion} (write
    other braces doubled). A completion shows the trait when its score is at least
    `threshold` (`shows_when` "above") or below it ("below").
    """

    template: str
    threshold: float = 50.0
    shows_when: str = "above"
    needs_judge: bool = True

    def __post_init__(self) -> None:
        if self.shows_when not in ("above", "below"):
            raise ValueError(f"shows_when must be 'above' or 'below', not {self.shows_when!r}")
        fields = {f for _, f, _, _ in string.Formatter().parse(self.template) if f is not None}
        if fields != {"request", "completion"}:
            raise ValueError(
                f"a judge template needs the fields {{request}} and {{completion}} only, not {sorted(fields)}"
            )

    def score(self, completions: Sequence[str], items: Sequence[EvalItem], judge=None) -> list[bool | None]:
        if judge is None:
            raise ValueError("this scorer needs a judge model (eval.judge_model), and none was given")
        pairs = zip(completions, items, strict=True)
        prompts = [self.template.format(request=it.request, completion=c) for c, it in pairs]
        above = self.shows_when == "above"
        return [None if s is None else (s >= self.threshold) == above for s in judge.scores(prompts)]
