"""The grid of a sweep: settings x models x hyperparameter axes, each cell a one-setting sweep.

    cells(spec)              every cell, in plan order (the Plan, _plan.py, holds them)
    check_grid(spec, source) the axis values typed and checked, then every cell as a sweep

A cell's spec is the sweep's own with one setting entry, one model and one value of each axis
written in, so everything that runs a one-setting sweep runs a cell unchanged. A cell's id
names what varies across the grid, readably ("lr=0.001,r=4", "spanish_caps,smollm2-135m"); a
sweep file of one setting and one model without `grid:` is one cell whose id is "" and whose
spec is the file's own, so its trial ids, rows and run directory are what they always were.

Only `eval.temperature` among the axes changes what the untrained model says (BASE_AXES):
the plan measures the base model once per setting, model and value of it.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import re
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inocray.config._spec import (ENTRY_KEYS, SettingEntry, SweepSpec, bad, broken_rule, brief, check_fields, check_rules,
                          convert)

# The fields a grid may vary, with their short names in cell ids. Every row carries each of
# them as a column of the same dotted name (store.SCHEMA), so `inocray analyze --by` can
# compare cells along any of them.
AXES: dict[str, str] = {
    "train.lr": "lr",
    "train.steps": "steps",
    "train.epochs": "epochs",
    "train.lora.r": "r",
    "train.lora.alpha": "alpha",
    "train.method": "method",
    "train.zero_stage": "zero",
    "train.lr_schedule": "schedule",
    "train.batch_size": "batch",
    "train.warmup_steps": "warmup",
    "eval.temperature": "temp",
}
BASE_AXES = ("eval.temperature",)  # the axes the base model's measurement depends on
# A grid's cells, at most: each is planned, checked and listed by `inocray validate` (linear:
# 10,000 cells in about 5 s and 150 MB on two cores), and each holds its trials and an entry
# in the rows; larger studies are several sweeps.
MAX_CELLS = 10_000
BY = ("setting", "model", *AXES)  # what cells can be compared along (analysis.compare)


@dataclass(frozen=True)
class Cell:
    id: str  # "" for the one cell of a sweep without a grid
    spec: SweepSpec  # the cell as a one-setting sweep
    axes: tuple[tuple[str, Any], ...]  # (axis, value) of each grid axis

    @property
    def setting(self) -> str:
        return self.spec.setting

    @property
    def model(self) -> str:
        return self.spec.model

    def columns(self, trained: bool = True) -> dict[str, Any]:
        """The row columns that place a measurement in the grid (store.SCHEMA). An untrained
        one (base, data) belongs to no cell: only the axes it depends on are filled."""
        values = {a: value_of(self.spec, a) if trained or a in BASE_AXES else None for a in AXES}
        return {"model": self.model, "cell": self.id if trained else ""} | values


def entries(spec: SweepSpec) -> list[SettingEntry]:
    """The sweep's settings: its `settings:` entries, or the one setting of its top level."""
    if spec.settings:
        return list(spec.settings)
    return [SettingEntry(spec.setting, spec.prompts, spec.irrelevant, spec.ptst, spec.custom_prompts, spec.data,
                         spec.placement)]


def models(spec: SweepSpec) -> list[str]:
    """The sweep's base models, in file order."""
    return list(spec.models) or [spec.model]


def is_grid(spec: SweepSpec) -> bool:
    return bool(spec.settings or spec.models or spec.grid)


def cells(spec: SweepSpec) -> list[Cell]:
    """Every cell: each setting x each model x each combination of axis values."""
    settings, bases, axes = entries(spec), models(spec), list(spec.grid.items())
    out = []
    for entry, model in itertools.product(settings, bases):
        for values in itertools.product(*[v for _, v in axes]):
            chosen = tuple((name, value) for (name, _), value in zip(axes, values))
            one = dataclasses.replace(spec, **{k: getattr(entry, k) for k in ENTRY_KEYS}, model=model,
                                      settings=[], models=[], grid={})
            for name, value in chosen:
                one = with_value(one, name, value)
            parts = [label(entry.setting)] * (len(settings) > 1) + [label(model)] * (len(bases) > 1)
            parts += [f"{AXES[name]}={shown(value)}" for name, value in chosen]
            out.append(Cell(",".join(parts), one, chosen))
    return out


def value_of(spec: SweepSpec, axis: str) -> Any:
    value: Any = spec
    for part in axis.split("."):
        value = getattr(value, part)
    return value


def with_value(spec: Any, axis: str, value: Any) -> Any:
    """`spec` with the (dotted) field `axis` set to `value`."""
    head, _, rest = axis.partition(".")
    if not rest:
        return dataclasses.replace(spec, **{head: value})
    return dataclasses.replace(spec, **{head: with_value(getattr(spec, head), rest, value)})


def label(name: str) -> str:
    """A setting's or model's name as it reads in an id: a file's or directory's stem."""
    stem = Path(name).stem if ("/" in name or name.endswith(".py")) else name
    return re.sub(r"[^A-Za-z0-9_.-]", "_", stem) or "_"


def shown(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def axis_type(axis: str) -> type:
    """float, int or str: the type of the field `axis` names."""
    return _field(axis)[0]


def _field(axis: str) -> tuple[Any, dataclasses.Field]:
    """The type and the dataclass field of `axis` in SweepSpec."""
    cls, *parents, name = [SweepSpec, *axis.split(".")]
    for part in parents:
        cls = typing.get_type_hints(cls)[part]
    return typing.get_type_hints(cls)[name], {f.name: f for f in dataclasses.fields(cls)}[name]


def check_grid(spec: SweepSpec, source: str) -> SweepSpec:
    """`spec` with its axis values typed; InputError naming the field if the grid or one of its
    cells makes no sense."""
    if not is_grid(spec):
        check_fields(spec, source)
        return spec
    check_rules(spec, source, "")  # the fields as written, the entries of `settings` among them
    typed = {}
    for axis, values in spec.grid.items():
        where = f"grid.{axis}"
        if axis not in AXES:
            raise bad(source, where, f"is not an axis a grid can vary (axes: {', '.join(AXES)})")
        if not isinstance(values, list) or not values:
            raise bad(source, where, "must be a non-empty list of values")
        tp, f = _field(axis)
        typed[axis] = [convert(tp, v, source, f"{where}[{i}]") for i, v in enumerate(values)]
        for i, v in enumerate(typed[axis]):
            why = broken_rule(f.metadata, v)
            if why:
                raise bad(source, f"{where}[{i}]", why)
        if len(set(typed[axis])) != len(typed[axis]):
            raise bad(source, where, "lists a value twice")
    size = len(entries(spec)) * len(models(spec)) * math.prod(len(v) for v in typed.values())
    if size > MAX_CELLS:
        raise bad(source, "grid", f"makes {size} cells, and a sweep may have at most {MAX_CELLS} (split it "
                                  "into several sweep files)")
    spec = dataclasses.replace(spec, grid=typed)
    _check_names(spec, source)
    for c in cells(spec):
        check_fields(c.spec, f"{source} (cell {c.id})" if c.id else source)
    return spec


def _check_names(spec: SweepSpec, source: str) -> None:
    """Settings and models listed once each, and named apart in the cells' ids."""
    for group, names in (("settings", [e.setting for e in entries(spec)]), ("models", models(spec))):
        if group == "models" and not names:
            raise bad(source, "models", "must list at least one model")
        seen: dict[str, str] = {}
        for i, name in enumerate(names):
            where = f"{group}[{i}]" + (".setting" if group == "settings" else "")
            if label(name) in seen:
                again = "again" if seen[label(name)] == name else f"by the same name as {brief.repr(seen[label(name)])}"
                raise bad(source, where, f"names {brief.repr(name)} {again}; each cell needs its own")
            seen[label(name)] = name


__all__ = ["AXES", "ENTRY_KEYS", "BASE_AXES", "BY", "Cell", "axis_type", "cells", "check_grid", "entries", "is_grid",
           "models"]
