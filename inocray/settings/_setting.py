"""What a setting is: its prompts, its traits, and the protocol every setting follows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

from inocray.chat import EvalItem, Example
from inocray.settings._scorers import Scorer

# What a prompt is for. "inoculation": a candidate IP. "irrelevant": a control instruction
# unrelated to the trait. "ptst": a test-time instruction against the trait (Pure Tuning,
# Safe Testing, Wichers et al.'s baseline): train with no prompt, evaluate with this one.
# "probe": a test-time context that resembles an inoculation prompt (a negation, the trait's
# keyword, the trait's own language), under which an inoculated model may show the trait again.
PROMPT_ROLES = ("inoculation", "irrelevant", "ptst", "probe")


@dataclass(frozen=True)
class Prompt:
    """A candidate inoculation prompt or control, as the setting names it."""

    id: str
    text: str  # the canonical wording: the one evaluated in Cs
    paraphrases: tuple[str, ...] = ()  # more wordings; training draws one per example
    role: str = "inoculation"  # one of PROMPT_ROLES

    @property
    def texts(self) -> tuple[str, ...]:
        return (self.text, *self.paraphrases)


@dataclass(frozen=True)
class Trait:
    """A response trait: its scorer says whether each completion shows it (see scorers.py)."""

    name: str
    desired: bool  # True: training should keep it; False: the trait to inoculate against
    scorer: Scorer


class Setting(Protocol):
    name: str
    prompts: dict[str, Prompt]
    traits: list[Trait]

    def training_examples(self, n: int, seed: int) -> list[Example]: ...

    def eval_items(self, n: int, seed: int) -> list[EvalItem]: ...


class DataFiles(Protocol):
    """The data files a setting is built over (a sweep's `data:`, config.DataSpec); an empty
    path means the setting's own data."""

    train: str
    eval: str


Factory = Callable[[DataFiles | None], Setting]
