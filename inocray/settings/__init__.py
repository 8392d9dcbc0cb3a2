"""Settings are plug-ins: each names its prompts, data, evaluation requests and traits.

A setting module registers a factory with `@register("name")`; `get_setting("name")`
builds it. The toy trait world ships as `toy`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

from inocray.data import EvalItem, Example
from inocray.scorers import Scorer


@dataclass(frozen=True)
class Prompt:
    """A candidate inoculation prompt or control, as the setting names it."""

    id: str
    text: str  # the canonical wording: the one evaluated in Cs
    paraphrases: tuple[str, ...] = ()  # more wordings; training draws one per example

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


_REGISTRY: dict[str, Callable[[], Setting]] = {}


def register(name: str) -> Callable[[Callable[[], Setting]], Callable[[], Setting]]:
    def deco(factory: Callable[[], Setting]) -> Callable[[], Setting]:
        _REGISTRY[name] = factory
        return factory

    return deco


def get_setting(name: str) -> Setting:
    _load_builtin()
    if name not in _REGISTRY:
        raise KeyError(f"names unknown setting {name!r} (known: {', '.join(sorted(_REGISTRY))})")
    return _REGISTRY[name]()


def _load_builtin() -> None:
    from inocray.settings import toy  # noqa: F401  (registers itself)
