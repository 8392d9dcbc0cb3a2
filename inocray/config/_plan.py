"""The trial plan of a sweep: which trials it runs, under which prompts, with which seeds.

    plan_trials(spec, catalogue)   every inoculation prompt and control x every seed (one cell)
    plan_grid(spec, catalogues)    the same for every cell of a grid (grid.py), interleaved
    trial_ids(spec)                the grid's trial ids, from the sweep file alone

A trial's id is `trial_id(prompt_id, seed, cell)`, e.g. "es-hint-s0", or in a grid
"lr=0.001,r=4,es-hint-s0"; it names the trial's files in the run directory (rundir.py). The ids
depend on the sweep file only, so `inocray status` plans them without the setting, its data
files or its models, which may exist only on the cluster.

A grid's trials are interleaved, the first trial of every cell before the second of any, so
that Tune, which starts them in plan order, covers every cell early.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, Mapping, TypeVar

if TYPE_CHECKING:
    from inocray.settings import Prompt
    from inocray.config._spec import SweepSpec

NONE = "none"  # prompt id of the no-prompt control
T = TypeVar("T")


def trial_id(prompt_id: str, seed: int, cell: str = "") -> str:
    """The id of the trial (or PTST control) of grid cell `cell` that trains with `prompt_id`
    and `seed`."""
    return f"{cell},{prompt_id}-s{seed}" if cell else f"{prompt_id}-s{seed}"


@dataclass(frozen=True)
class Trial:
    id: str
    prompt_id: str
    prompt_texts: tuple[str, ...]  # the wordings trained on; () for the no-prompt control
    prompt_role: str  # "inoculation" | "none" | "irrelevant"
    seed: int
    # PTST controls (id, text), only on the no-prompt control: its model is also evaluated
    # with each instruction, as rows of the virtual trial trial_id(id, seed) (role "ptst").
    ptst: tuple[tuple[str, str], ...] = ()
    cell: str = ""  # the grid cell (grid.Cell.id); "" in a sweep without a grid

    @property
    def prompt_text(self) -> str:
        """The canonical wording, evaluated in Cs ("" for the no-prompt control)."""
        return self.prompt_texts[0] if self.prompt_texts else ""


def trained_prompts(spec: SweepSpec) -> list[tuple[str, str]]:
    """(prompt id, role) of every trained prompt, in plan order: the inoculation prompts, the
    no-prompt control, the irrelevant-prompt controls."""
    return ([(pid, "inoculation") for pid in spec.prompts] + [(NONE, "none")]
            + [(pid, "irrelevant") for pid in spec.irrelevant])


def measured_prompts(spec: SweepSpec) -> list[tuple[str, str]]:
    """(prompt id, role) of every prompt whose elicitation the base model is measured under:
    the trained ones and the PTST instructions."""
    return trained_prompts(spec) + [(pid, "ptst") for pid in spec.ptst]


def prompt_catalogue(spec: SweepSpec, setting_prompts: Mapping[str, Prompt]) -> dict[str, Prompt]:
    """The setting's prompts plus those the sweep file writes out itself."""
    from inocray.settings import Prompt

    custom = {pid: Prompt(pid, texts[0], tuple(texts[1:])) for pid, texts in spec.custom_prompts.items()}
    return {**setting_prompts, **custom}


def plan_trials(spec: SweepSpec, setting_prompts: Mapping[str, Prompt], cell: str = "") -> list[Trial]:
    """The trials of one cell: every inoculation prompt and control, crossed with every seed.

    `spec`: a one-setting sweep (a grid cell's spec); `setting_prompts`: its setting's prompt
    catalogue (`setting.prompts`). PTST controls add no trials: they are evaluations of the
    no-prompt control's model.
    """
    catalogue = prompt_catalogue(spec, setting_prompts)
    ptst = tuple((pid, catalogue[pid].text) for pid in spec.ptst)
    return [
        Trial(trial_id(pid, seed, cell), pid, catalogue[pid].texts if role != "none" else (), role, seed,
              ptst if role == "none" else (), cell)
        for pid, role in trained_prompts(spec)
        for seed in spec.seeds
    ]


def plan_grid(spec: SweepSpec, catalogues: Mapping[str, Mapping[str, Prompt]]) -> list[Trial]:
    """The trials of every cell of the grid, interleaved; `catalogues`: setting name -> its
    prompt catalogue."""
    from inocray.config._grid import cells

    return interleave(plan_trials(c.spec, catalogues[c.setting], c.id) for c in cells(spec))


def trial_ids(spec: SweepSpec) -> list[str]:
    """The ids of `plan_grid(spec, ...)`, in plan order, without the settings."""
    return [t for t, _ in cell_trial_ids(spec)]


def cell_trial_ids(spec: SweepSpec) -> list[tuple[str, str]]:
    """(trial id, cell id) of every trial of the grid, in plan order, without the settings."""
    from inocray.config._grid import cells

    return interleave([(trial_id(pid, seed, c.id), c.id) for pid, _ in trained_prompts(c.spec) for seed in c.spec.seeds]
                      for c in cells(spec))


def interleave(lists: Iterable[list[T]]) -> list[T]:
    """The first item of every list, then the second of every list, and so on."""
    lists = list(lists)
    return [item for row in itertools.zip_longest(*lists) for item in row if item is not None]
