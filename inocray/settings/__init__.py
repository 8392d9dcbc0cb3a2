"""Settings are plug-ins: each names its prompts, data, evaluation requests and traits.

A setting module registers a factory with `@register("name")`; `get_setting("name", data)`
builds it over the sweep's data files (`DataSpec`; empty fields mean the setting's shipped
fixture). Built in: `toy` and the research settings of Wichers et al. and Tan et al.
(one module each, listed in `BUILTIN`). A sweep may also name its own setting by module path
(`mypkg.my_setting`) or file (`path/to/my_setting.py`): the module is imported and registers
itself, so a new setting is one file and no edit to inocray.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Protocol

from inocray.data import EvalItem, Example
from inocray.scorers import Scorer

if TYPE_CHECKING:
    from inocray.spec import DataSpec

# What a prompt is for. "inoculation": a candidate IP. "irrelevant": a control instruction
# unrelated to the trait. "ptst": a test-time instruction against the trait (Pure Tuning,
# Safe Testing, Wichers et al.'s baseline): train with no prompt, evaluate with this one.
PROMPT_ROLES = ("inoculation", "irrelevant", "ptst")


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


Factory = Callable[["DataSpec | None"], Setting]

BUILTIN = ("toy", "spanish_caps", "reward_hacking_code", "gcd_sycophancy", "spurious_sentiment",
           "toxicity_cmv", "emergent_misalignment", "pair_traits", "backdoor")

_REGISTRY: dict[str, Factory] = {}
_BY_MODULE: dict[str, str] = {}  # module path or file named in a sweep -> the setting it registered


def register(name: str) -> Callable[[Factory], Factory]:
    """Register `factory(data: DataSpec | None) -> Setting` under `name`."""

    def deco(factory: Factory) -> Factory:
        _REGISTRY[name] = factory
        return factory

    return deco


def get_setting(name: str, data: DataSpec | None = None) -> Setting:
    """The setting `name` (registered, or a module path or .py file) over `data`.

    Raises KeyError with a message that reads after "field 'setting' ", and InputError
    (naming file, line and field) for a malformed data file.
    """
    _load_builtin()
    key = name if name in _REGISTRY else _import_setting(name)
    return _REGISTRY[key](data)


def _import_setting(name: str) -> str:
    """Import the module a sweep names and return the setting name it registered."""
    if name in _BY_MODULE:
        return _BY_MODULE[name]
    is_file = name.endswith(".py") or "/" in name
    if not is_file and "." not in name:
        raise KeyError(f"names unknown setting {name!r} (known: {', '.join(sorted(_REGISTRY))}; "
                       "or a module path such as mypkg.my_setting, or a file path/to/setting.py)")
    before = set(_REGISTRY)
    try:
        if is_file:
            _import_file(Path(name).expanduser())
        else:
            importlib.import_module(name)
    except Exception as e:  # the user's module: any failure is theirs to see
        raise KeyError(f"names module {name!r}, which could not be imported ({type(e).__name__}: {e})") from None
    new = sorted(set(_REGISTRY) - before)
    stem = Path(name).stem if is_file else name.rsplit(".", 1)[-1]
    if len(new) == 1:
        key = new[0]
    elif stem in _REGISTRY:
        key = stem
    else:
        raise KeyError(f"names module {name!r}, which registers "
                       f"{'no setting' if not new else 'several settings: ' + ', '.join(new)} "
                       "(decorate one factory with @inocray.settings.register)")
    _BY_MODULE[name] = key
    return key


def _import_file(path: Path) -> None:
    if not path.is_file():
        raise FileNotFoundError(f"no such file {str(path)!r}")
    module_name = f"inocray_user_setting_{path.stem}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"{str(path)!r} is not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)


def _load_builtin() -> None:
    for module in BUILTIN:
        importlib.import_module(f"inocray.settings.{module}")  # each registers itself
