"""The plan of a sweep: its cells, its trials and its measurements, made once from the spec.

    make_plan(spec)              the Plan, by ids: what `inocray status` and resume need
    make_plan(spec, catalogues)  the same with every prompt's wording (setting name -> its
                                 prompt catalogue): what the launcher and a trial need

Every id a run directory holds is made here: a trial's, `trial_id(prompt_id, seed, cell)`
("es-hint-s0", in a grid "lr=0.001,r=4,es-hint-s0"); a PTST control's, the same with the PTST
prompt's id; the base model's measurement, "base" (in a grid "base,SETTING,MODEL,temp=T": once
per setting, model and value of the axes the untrained model depends on); the training
data's, "data" (in a grid "data,SETTING": once per setting). The ids depend on the sweep file
only, so `inocray status` plans them without the setting, its data or its models, which may
exist only on the cluster.

A grid's trials are interleaved, the first trial of every cell before the second of any, so
that Tune, which starts them in plan order, covers every cell early.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, TypeVar

from inocray.config._placement import Placement, placement
from inocray.config._grid import AXES, BASE_AXES, Cell, cells, entries, is_grid, label, models, shown, value_of
from inocray.config._spec import (NONE, PLACEMENTS, PROBE_DEFAULT, PROBE_PARAPHRASE, PROBE_PLACEMENTS, SettingEntry,
                                  SweepSpec)
from inocray.settings import Prompt

T = TypeVar("T")
BASE = "base"  # the base model's measurement in a sweep without a grid
DATA = "data"  # the training data's measurement in a sweep without a grid


def trial_id(prompt_id: str, seed: int, cell: str = "") -> str:
    """The id of the trial (or PTST control) of grid cell `cell` that trains with `prompt_id`
    and `seed`."""
    return f"{cell},{prompt_id}-s{seed}" if cell else f"{prompt_id}-s{seed}"


@dataclass(frozen=True)
class Ptst:
    """A PTST control: the no-prompt control's model evaluated under an instruction, stored as
    the rows of a virtual trial of its own."""

    id: str  # trial_id(prompt_id, seed, cell)
    prompt_id: str
    text: str


@dataclass(frozen=True)
class Probe:
    """A leak probe: a context the trial's final model is also evaluated in (rows of context
    "probe:NAME"), its text placed at `placement`."""

    name: str
    text: str
    placement: str


@dataclass(frozen=True)
class Trial:
    id: str
    cell: Cell  # the grid cell whose one-setting spec the trial runs
    prompt_id: str
    prompt_role: str  # "inoculation" | "none" | "irrelevant"
    seed: int
    prompt_texts: tuple[str, ...] = ()  # the wordings trained on; () for the no-prompt control
    ptst: tuple[Ptst, ...] = ()  # only on the no-prompt control
    probes: tuple[Probe, ...] = ()  # resolved with the catalogues; the control gets the fixed ones

    @property
    def prompt_text(self) -> str:
        """The canonical wording, evaluated in Cs ("" for the no-prompt control)."""
        return self.prompt_texts[0] if self.prompt_texts else ""

    @property
    def spec(self) -> SweepSpec:
        return self.cell.spec


@dataclass(frozen=True)
class Measurement:
    """A measurement of an untrained model or of the training data, stored as rows of `id`."""

    id: str
    kind: str  # "base" | "data"
    cell: Cell  # a cell it stands for: its setting, model and base axes are what is measured

    def columns(self) -> dict[str, Any]:
        return self.cell.columns(trained=False)


@dataclass(frozen=True)
class Plan:
    spec: SweepSpec
    cells: tuple[Cell, ...]
    trials: tuple[Trial, ...]  # in the order Tune starts them
    base: tuple[Measurement, ...]
    data: tuple[Measurement, ...]
    entries: tuple[SettingEntry, ...]  # the settings, in file order
    models: tuple[str, ...]  # the base models, in file order

    @property
    def is_grid(self) -> bool:
        return is_grid(self.spec)

    def trial(self, trial_id: str) -> Trial:
        return next(t for t in self.trials if t.id == trial_id)

    def cell_trials(self, cell: Cell) -> list[Trial]:
        return [t for t in self.trials if t.cell.id == cell.id]

    @property
    def placement(self) -> Placement:
        """What the sweep's engines, training groups and trials reserve on the cluster."""
        return placement(self.spec, len(self.models), any(c.spec.train.method == "full" for c in self.cells))

    def describe(self) -> str:
        """The grid's size by axis, as `inocray validate` prints it."""
        sizes = [("setting", len(self.entries)), ("model", len(self.models))]
        sizes += [(axis, len(values)) for axis, values in self.spec.grid.items()]
        return " x ".join(f"{name} {n}" for name, n in sizes) + f" = {len(self.cells)} cells"


def make_plan(spec: SweepSpec, catalogues: Mapping[str, Mapping[str, Prompt]] | None = None) -> Plan:
    """The plan of `spec`; with `catalogues` (setting name -> its prompts), the trials carry
    their prompts' wordings."""
    grid_cells = cells(spec)
    settings, bases = entries(spec), models(spec)
    trials = interleave(_cell_trials(c, catalogues[c.setting] if catalogues is not None else None)
                        for c in grid_cells)
    base = _untrained(BASE, grid_cells, lambda c: (c.setting, c.model, *[value_of(c.spec, a) for a in BASE_AXES]),
                      len(settings) > 1, len(bases) > 1)
    data = _untrained(DATA, grid_cells, lambda c: c.setting, len(settings) > 1, False)
    return Plan(spec, tuple(grid_cells), tuple(trials), tuple(base), tuple(data), tuple(settings), tuple(bases))


def trained_prompts(spec: SweepSpec) -> list[tuple[str, str]]:
    """(prompt id, role) of every trained prompt of a one-setting spec, in plan order: the
    inoculation prompts, the no-prompt control, the irrelevant-prompt controls."""
    return ([(pid, "inoculation") for pid in spec.prompts] + [(NONE, "none")]
            + [(pid, "irrelevant") for pid in spec.irrelevant])


def measured_prompts(spec: SweepSpec) -> list[tuple[str, str]]:
    """(prompt id, role) of every prompt whose elicitation the base model is measured under:
    the trained ones and the PTST instructions."""
    return trained_prompts(spec) + [(pid, "ptst") for pid in spec.ptst]


def prompt_catalogue(spec: SweepSpec, setting_prompts: Mapping[str, Prompt]) -> dict[str, Prompt]:
    """The setting's prompts plus those the sweep file writes out itself."""
    custom = {pid: Prompt(pid, texts[0], tuple(texts[1:])) for pid, texts in spec.custom_prompts.items()}
    return {**setting_prompts, **custom}


def _cell_trials(cell: Cell, setting_prompts: Mapping[str, Prompt] | None) -> list[Trial]:
    """Every inoculation prompt and control of one cell, crossed with every seed. PTST controls
    add no trials: they are evaluations of the no-prompt control's model."""
    spec = cell.spec
    catalogue = prompt_catalogue(spec, setting_prompts) if setting_prompts is not None else {}

    def texts(pid: str) -> tuple[str, ...]:
        return catalogue[pid].texts if pid in catalogue else ()

    out = []
    for pid, role in trained_prompts(spec):
        probes = _probes(spec, pid if role != "none" else None, catalogue) if setting_prompts is not None else ()
        for seed in spec.seeds:
            ptst = tuple(Ptst(trial_id(p, seed, cell.id), p, texts(p)[0] if texts(p) else "") for p in spec.ptst)
            out.append(Trial(trial_id(pid, seed, cell.id), cell, pid, role, seed,
                             texts(pid) if role != "none" else (), ptst if role == "none" else (), probes))
    return out


def probe_names(spec: SweepSpec, catalogue: Mapping[str, Prompt]) -> list[str]:
    """The sweep's probes with "default" expanded: the catalogue's probe prompts, then
    "paraphrase" and "placements"."""
    out: list[str] = []
    for name in spec.probes:
        more = ([p.id for p in catalogue.values() if p.role == "probe"] + [PROBE_PARAPHRASE, PROBE_PLACEMENTS]
                if name == PROBE_DEFAULT else [name])
        out += [m for m in more if m not in out]
    return out


def _probes(spec: SweepSpec, trained: str | None, catalogue: Mapping[str, Prompt]) -> tuple[Probe, ...]:
    """The probes of a trial trained with prompt `trained` (None: the no-prompt control, which has
    no prompt of its own to paraphrase or move: it gets the fixed ones, the baseline)."""
    out = []
    for name in probe_names(spec, catalogue):
        if name == PROBE_PARAPHRASE:
            if trained is not None and len(catalogue[trained].texts) > 1:
                out.append(Probe(name, catalogue[trained].texts[1], spec.placement))
        elif name == PROBE_PLACEMENTS:
            if trained is not None:
                out += [Probe(f"placement:{where}", catalogue[trained].text, where)
                        for where in PLACEMENTS if where != spec.placement]
        else:
            out.append(Probe(name, catalogue[name].text, spec.placement))
    return tuple(out)


def _untrained(kind: str, grid_cells: list[Cell], key, by_setting: bool, by_model: bool) -> list[Measurement]:
    """One measurement per value of `key(cell)`; its id names what varies of the key."""
    out: dict[Any, Measurement] = {}
    for c in grid_cells:
        if key(c) not in out:
            parts = [label(c.setting)] * by_setting + [label(c.model)] * by_model
            parts += [f"{AXES[a]}={shown(v)}" for a, v in c.axes if kind == BASE and a in BASE_AXES]
            out[key(c)] = Measurement(",".join([kind, *parts]), kind, c)
    return list(out.values())


def interleave(lists: Iterable[list[T]]) -> list[T]:
    """The first item of every list, then the second of every list, and so on."""
    lists = list(lists)
    return [item for row in itertools.zip_longest(*lists) for item in row if item is not None]
