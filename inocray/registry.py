"""The registries: what a sweep or a setting may name, and where each name's code lives.

    SETTINGS   setting name  -> factory(data: DataFiles | None) -> Setting  (inocray.settings)
    SCORERS    scorer name   -> factory(**options) -> Scorer                (inocray.settings)
    BACKENDS   engine name   -> class(model_path, EngineSpec) -> Backend    (inocray.evaluation.backends)
    MODELS     preset name   -> Preset (check(), build(log) -> directory)   (inocray.models)

Every registry of inocray is here. The built-in names are listed here and nowhere else, each
with the "module:attribute" that holds its code (the modules do not register themselves);
the module is imported the first time the name is asked for, so naming an engine does not
load vLLM. A plug-in registers more at import time (settings with
`@inocray.settings.register`, scorers with `@inocray.settings.register_scorer`).
"""

from __future__ import annotations

import importlib
from typing import Callable, Generic, TypeVar

__all__ = ["Registry", "SETTINGS", "SCORERS", "BACKENDS", "MODELS"]

T = TypeVar("T")


class Registry(Generic[T]):
    """Names of one kind, each bound to an object or, until first asked for, to "module:attr"."""

    def __init__(self, kind: str, builtin: dict[str, str] | None = None):
        self.kind = kind
        self._entries: dict[str, T | str] = dict(builtin or {})

    def register(self, name: str) -> Callable[[T], T]:
        """A decorator that registers its object under `name` (replacing what was there)."""

        def deco(obj: T) -> T:
            self._entries[name] = obj
            return obj

        return deco

    def get(self, name: str) -> T:
        """The object registered as `name`; KeyError "unknown KIND 'x' (known: ...)" if none is."""
        if name not in self._entries:
            raise KeyError(f"unknown {self.kind} {name!r} (known: {', '.join(self.names())})")
        entry = self._entries[name]
        if isinstance(entry, str):  # a built-in not imported yet
            module, _, attr = entry.partition(":")
            entry = self._entries[name] = getattr(importlib.import_module(module), attr)
        return entry

    def names(self) -> tuple[str, ...]:
        return tuple(sorted(self._entries))

    def __contains__(self, name: object) -> bool:
        return name in self._entries


_ONE_FILE_EACH = ("toy", "spanish_caps", "reward_hacking_code", "gcd_sycophancy", "spurious_sentiment",
                  "toxicity_cmv", "emergent_misalignment", "pair_traits", "backdoor")
SETTINGS: Registry = Registry("setting", {
    **{name: f"inocray.settings.{name}:{name}" for name in _ONE_FILE_EACH},
    "pair_traits_empathetic": "inocray.settings.pair_traits:pair_traits_empathetic",  # the authors' second pair
})
SCORERS: Registry = Registry("scorer", {
    "judge": "inocray.settings._scorers:JudgeScorer",
    "classifier": "inocray.settings._classifier:ClassifierScorer",
})
BACKENDS: Registry = Registry("engine", {
    "vllm": "inocray.evaluation.backends.vllm:VllmBackend",
    "transformers": "inocray.evaluation.backends.hf:HFBackend",
})
MODELS: Registry = Registry("model preset", {
    "toy": "inocray.models._presets:TOY",
    "smollm2-135m": "inocray.models._presets:SMOLLM2",
})
