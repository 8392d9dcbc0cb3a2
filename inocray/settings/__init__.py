"""Settings are plug-ins: each names its prompts, data, evaluation requests and traits.

A plug-in setting module registers a factory with `@register("name")` (into registry.SETTINGS);
`get_setting("name", data)` builds it over the sweep's data files (`DataFiles`; empty fields
mean the setting's shipped fixture). Built in: `toy` and the research settings of Wichers et
al. and Tan et al. (one module each, listed in registry.py; their names are `BUILTIN`). A
sweep may also name its own setting by module path (`mypkg.my_setting`) or file
(`path/to/my_setting.py`): the module is imported and registers itself, so a new setting is
one file and no edit to inocray. `row_setting` builds one over JSONL or Parquet rows and
`judged` scores a trait with the LLM judge (docs/settings/README.md).

Scorers live here too, as what a setting's traits are made of: programs (`Check`), the LLM
judge (`JudgeScorer`, asked through evaluation's Judge), classifiers (`ClassifierScorer`), the
code sandbox (_sandbox.py) and language identification (`is_spanish`).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Callable

from inocray.registry import SETTINGS
from inocray.settings._classifier import ClassifierScorer, labels, with_classifiers
from inocray.settings._common import judged, row_setting
from inocray.settings._langid import is_spanish
from inocray.settings._scorers import (JUDGE_DIGITS, JUDGE_TOP_K, Check, JudgeScorer, Scorer, get_scorer,
                                       register_scorer, weighted_score, written_score)
from inocray.settings._sandbox import isolation_problem, use_isolation
from inocray.settings._setting import PROMPT_ROLES, DataFiles, Factory, Prompt, Setting, Trait

__all__ = [
    "BUILTIN", "PROMPT_ROLES", "DataFiles", "Prompt", "Setting", "Trait", "get_setting", "judged", "register",
    "row_setting",
    # scorers: whether a completion shows a trait
    "Check", "ClassifierScorer", "JUDGE_DIGITS", "JUDGE_TOP_K", "JudgeScorer", "Scorer", "get_scorer", "is_spanish",
    "labels", "register_scorer", "weighted_score", "with_classifiers", "written_score",
    # the code sandbox: why a setting scored in it cannot be isolated here, and the isolation to use
    "sandbox_problem", "use_isolation",
]

BUILTIN = SETTINGS.names()  # the settings that ship with inocray

_BY_MODULE: dict[str, str] = {}  # module path or file named in a sweep -> the setting it registered


def sandbox_problem(setting: Setting) -> str:
    """"" unless `setting` scores a trait in the code sandbox and isolation cannot be had here (why)."""
    if any(getattr(t.scorer, "sandboxed", False) for t in setting.traits):
        return isolation_problem()
    return ""


def register(name: str) -> Callable[[Factory], Factory]:
    """Register `factory(data: DataFiles | None) -> Setting` under `name`."""
    return SETTINGS.register(name)


def get_setting(name: str, data: DataFiles | None = None) -> Setting:
    """The setting `name` (registered, or a module path or .py file) over `data`.

    Raises KeyError with a message that reads after "field 'setting' ", and InputError
    (naming file, line and field) for a malformed data file.
    """
    key = name if name in SETTINGS else _import_setting(name)
    return SETTINGS.get(key)(data)


def _import_setting(name: str) -> str:
    """Import the module a sweep names and return the setting name it registered."""
    if name in _BY_MODULE:
        return _BY_MODULE[name]
    is_file = name.endswith(".py") or "/" in name
    if not is_file and "." not in name:
        raise KeyError(f"names unknown setting {name!r} (known: {', '.join(SETTINGS.names())}; "
                       "or a module path such as mypkg.my_setting, or a file path/to/setting.py)")
    before = set(SETTINGS.names())
    try:
        if is_file:
            _import_file(Path(name).expanduser())
        else:
            importlib.import_module(name)
    except Exception as e:  # the user's module: any failure is theirs to see
        raise KeyError(f"names module {name!r}, which could not be imported ({type(e).__name__}: {e})") from None
    new = sorted(set(SETTINGS.names()) - before)
    stem = Path(name).stem if is_file else name.rsplit(".", 1)[-1]
    if len(new) == 1:
        key = new[0]
    elif stem in SETTINGS:
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
