"""A parsed sweep checked against what it names: its setting, data files, models, classifiers.

_parse.py turns the file into a SweepSpec and checks each field alone; this module checks the
spec against the world, as torchtune's config/_validate.py follows config/_parse.py:

    load_sweep(path)          read, parse and check a sweep file: what the commands call
    parse_sweep(data, source) the same for a document already read (a run's sweep.json)
    check_spec(spec, source)  the checks alone

`check_model=False` is for a sweep that runs on a cluster: its model, data and classifier
directories may exist only there (the setting is then built over its shipped data).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
from pathlib import Path
from typing import Any, Callable

from inocray.config._grid import Cell
from inocray.config._parse import load_spec, parse_spec
from inocray.config._plan import Plan, make_plan, prompt_catalogue
from inocray.config._spec import (ENTRY_KEYS, PROBE_DEFAULT, PROBE_PARAPHRASE, PROBE_PLACEMENTS, SweepSpec, bad,
                                  brief)
from inocray.chat import messages, render
from inocray.errors import InputError
from inocray.models import check_available, is_hub_id, is_preset, preset_names, resolve
from inocray.settings import Setting, get_setting, labels, sandbox_problem

__all__ = ["load_sweep", "parse_sweep", "check_spec", "one_setting"]

Bad = Callable[[str, str], InputError]  # (field, why) -> the error naming the sweep file


def load_sweep(path: str | Path, check_model: bool = True) -> SweepSpec:
    """Read a sweep file and check it whole; InputError naming the file and field."""
    return check_spec(load_spec(path), str(path), check_model)


def parse_sweep(data: Any, source: str = "<sweep>", check_model: bool = True) -> SweepSpec:
    return check_spec(parse_spec(data, source), source, check_model)


def check_spec(spec: SweepSpec, source: str, check_model: bool = True) -> SweepSpec:
    """Check `spec` against its settings and, with `check_model`, its models, data and classifier
    directories; return it with the classifiers' directories made absolute.

    A grid is checked one (setting, model) at a time, each as the one-setting sweep of its
    cells; an error names the field as the file writes it (`settings[1].prompts[0]`, `models[0]`).
    """
    seen = set()
    plan = make_plan(spec)
    for c in plan.cells:
        if (c.setting, c.model) not in seen:
            seen.add((c.setting, c.model))
            _check_one(c.spec, _in_file(plan, c, source), check_model)
    if not check_model:
        return spec
    # Absolute here, where the directories were checked: trials score in a working directory
    # Ray chooses, and they get this spec, not the sweep file.
    located = {t: dataclasses.replace(c, model=os.path.abspath(os.path.expanduser(c.model)))
               for t, c in spec.eval.classifiers.items()}
    return dataclasses.replace(spec, eval=dataclasses.replace(spec.eval, classifiers=located))


def one_setting(spec: SweepSpec, source: str, command: str) -> SweepSpec:
    """The one-setting sweep that a command working on one setting and one model (screen,
    make-data, plan) takes: `spec` itself, or the first cell of a grid over hyperparameters
    alone; InputError for a grid of several settings or models."""
    plan = make_plan(spec)
    settings, models = len(plan.entries), len(plan.models)
    if settings > 1 or models > 1:
        raise InputError(f"{source}: `inocray {command}` takes a sweep of one setting and one model, "
                         f"and this grid has {settings} settings and {models} models")
    return plan.cells[0].spec


def _in_file(plan: Plan, c: Cell, source: str) -> Bad:
    """The error about a field of cell `c`'s spec, named as the sweep file writes it."""
    spec = plan.spec
    entry = [e.setting for e in plan.entries].index(c.setting)
    model = plan.models.index(c.model)

    def fail(name: str, why: str) -> InputError:
        head = name.split(".")[0].split("[")[0]
        if spec.settings and head in ENTRY_KEYS:
            name = f"settings[{entry}].{name}"
        elif spec.models and name == "model":
            name = f"models[{model}]"
        return bad(source, name, why)

    return fail


def _check_one(spec: SweepSpec, fail: Bad, check_model: bool) -> None:
    """Check a one-setting sweep against its setting and, with `check_model`, its model, data
    and classifier directories."""
    try:
        setting = get_setting(spec.setting, spec.data if check_model else None)  # None: its own data
    except KeyError as e:
        raise fail("setting", str(e.args[0])) from None
    _check_prompts(spec, setting, fail)
    if check_model and spec.sandbox.isolation == "bwrap" and sandbox_problem(setting):
        raise fail("sandbox.isolation", f"is bwrap and {sandbox_problem(setting)}; install it, or write "
                   "`sandbox: {isolation: none}` to run the model's code without isolation")
    if check_model:
        _check_models(spec, fail)
        _check_placement(spec, fail)
    _check_classifiers(spec, setting, check_model, fail)
    if not check_model:
        return
    for name in ("train", "eval"):
        path = getattr(spec.data, name)
        if path and not _exists(path, "file"):
            raise fail(f"data.{name}", f"names {brief.repr(path)}, which is not a file")


def _check_prompts(spec: SweepSpec, setting: Setting, fail: Bad) -> None:
    """Every prompt id the sweep lists is in the setting's catalogue or its own, in its place."""
    for pid in spec.custom_prompts:
        if pid in setting.prompts:
            raise fail(f"custom_prompts.{pid}", f"reuses the id of a prompt of setting '{setting.name}'")
    known = set(setting.prompts) | set(spec.custom_prompts)
    for group in ("prompts", "irrelevant", "ptst"):
        for i, pid in enumerate(getattr(spec, group)):
            if pid not in known:
                raise fail(f"{group}[{i}]", f"names unknown prompt {brief.repr(pid)} of setting '{setting.name}'")
    for i, pid in enumerate(spec.prompts):
        if pid in setting.prompts and setting.prompts[pid].role == "ptst":
            raise fail(f"prompts[{i}]", f"names {pid!r}, a test-time instruction of setting '{setting.name}' "
                                        "that is trained with no prompt: list it under 'ptst'")
    _check_probes(spec, setting, fail)


def _check_probes(spec: SweepSpec, setting: Setting, fail: Bad) -> None:
    """Every probe is a prompt of the catalogue or one of the relative kinds, listed once, with a
    text, and not the text of a prompt the sweep trains with (that would be Cs, not a probe)."""
    catalogue = prompt_catalogue(spec, setting.prompts)
    trained = {catalogue[pid].text: pid for pid in [*spec.prompts, *spec.irrelevant] if pid in catalogue}
    kinds = (PROBE_DEFAULT, PROBE_PARAPHRASE, PROBE_PLACEMENTS)
    for i, name in enumerate(spec.probes):
        if name in spec.probes[:i]:
            raise fail(f"probes[{i}]", f"lists {brief.repr(name)} twice")
        if name in kinds:
            continue
        if name not in catalogue:
            own = [pid for pid, p in setting.prompts.items() if p.role == "probe"]
            raise fail(f"probes[{i}]", f"names unknown probe {brief.repr(name)} of setting '{setting.name}' (its probe "
                                       f"prompts: {', '.join(own) or 'none'}; or {', '.join(kinds)}, or an id of "
                                       "custom_prompts)")
        text = catalogue[name].text  # never empty: custom_prompts refuses empty texts
        if text in trained:
            raise fail(f"probes[{i}]", f"names {brief.repr(name)}, whose text is that of prompt {trained[text]!r} "
                                       "of the sweep: a probe must differ from the prompts trained with")


def _check_models(spec: SweepSpec, fail: Bad) -> None:
    """The base model is a preset that can be built here, a Hub id that resolves (downloaded
    here, once: models/_hub.py) or a directory; so is the judge, or "" (none) or "base" (the
    base model)."""
    _check_model(spec.model, "model", fail, "nor a preset")
    if spec.eval.judge_model not in ("", "base"):
        _check_model(spec.eval.judge_model, "eval.judge_model", fail, "'' or 'base', or a preset")
    for tracker, wanted, package in (("mlflow", spec.tracking.mlflow, "mlflow"),
                                     ("wandb.project", spec.tracking.wandb.project, "wandb")):
        if wanted and importlib.util.find_spec(package) is None:
            raise fail(f"tracking.{tracker}", f"needs {package}, which is not installed here: "
                                              f"pip install 'inocray[{package}]'")
    uri = spec.tracking.mlflow
    if (uri.startswith("file:") or uri and "://" not in uri) and os.environ.get("MLFLOW_ALLOW_FILE_STORE") != "true":
        raise fail("tracking.mlflow", f"names a file store ({brief.repr(uri)}), which MLflow 3 refuses unless "
                                      "MLFLOW_ALLOW_FILE_STORE=true is exported; export it, or give an MLflow "
                                      "server's http:// URI")
    key = spec.eval.judge.api_key_env
    if key and not os.environ.get(key):
        raise fail("eval.judge.api_key_env", f"names ${key}, which is not set here (export the API key in it)")


def _check_model(model: str, name: str, fail: Bad, also: str) -> None:
    if is_preset(model):
        try:
            check_available(model)
        except InputError as e:
            raise fail(name, f"names a preset that cannot be built here: {e}") from None
    elif is_hub_id(model):
        try:
            check_available(model)
        except InputError as e:
            raise fail(name, f"names Hub id {str(e).removeprefix('model ')}") from None
    elif not _exists(model, "dir"):
        raise fail(name, f"names {brief.repr(model)}, which is not a model directory "
                         f"({also}: {preset_names()}) nor a Hub id ORG/NAME[@REVISION]")


def _check_placement(spec: SweepSpec, fail: Bad) -> None:
    """A model directory's chat template takes the prompt where the sweep places it (a system
    message, for `system`). A preset is built later; its templates take every placement."""
    if spec.placement != "system" or is_preset(spec.model):
        return
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(resolve(spec.model))  # a Hub id: its snapshot, resolved above
    except (OSError, ValueError):
        return  # not a tokenizer transformers loads: the sweep's own check (evaluate.check_fits) says so
    try:
        render(tokenizer, messages("hello", "a prompt", "system"))
    except Exception as e:  # a chat template raises what it likes (jinja2's TemplateError, mostly)
        raise fail("placement", f"is 'system', but the chat template of model {brief.repr(spec.model)} takes "
                                f"no system message ({type(e).__name__}); use user_prefix or user_suffix") from None


def _check_classifiers(spec: SweepSpec, setting: Setting, check_model: bool, fail: Bad) -> None:
    traits = [t.name for t in setting.traits]
    for trait, clf in spec.eval.classifiers.items():
        where = f"eval.classifiers.{trait}"
        if trait not in traits:
            raise fail(where, f"names no trait of setting '{setting.name}' (its traits: {', '.join(traits)})")
        if not check_model:
            continue
        if not _exists(clf.model, "dir"):
            raise fail(f"{where}.model", f"names {brief.repr(clf.model)}, which is not a model directory")
        try:
            known = labels(clf.model)
        except InputError as e:  # "holds no config.json ..."
            raise fail(f"{where}.model", f"names {brief.repr(clf.model)}, which {e}") from None
        if clf.label not in known:
            raise fail(f"{where}.label", f"names {brief.repr(clf.label)}, which is not a label of the classifier "
                                         f"(its labels: {', '.join(known)})")


def _exists(path: str, kind: str) -> bool:
    """Whether `path` is a directory ("dir") or a file; False for names the OS refuses."""
    try:
        p = Path(path).expanduser()
        return p.is_dir() if kind == "dir" else p.is_file()
    except (OSError, ValueError):
        return False
