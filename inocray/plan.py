"""The trial plan of a sweep: which trials it runs, under which prompts, with which seeds.

    plan_trials(spec, catalogue)   every inoculation prompt and control x every seed
    trial_ids(spec)                the same trials' ids, from the sweep file alone

A trial's id is `trial_id(prompt_id, seed)`, e.g. "es-hint-s0"; it names the trial's files in
the run directory (rundir.py). The ids depend on the sweep's prompt ids and seeds only, so
`inocray status` plans them without the setting, its data files or its models, which may exist
only on the cluster.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Mapping

if TYPE_CHECKING:
    from inocray.settings import Prompt
    from inocray.spec import SweepSpec

NONE = "none"  # prompt id of the no-prompt control


def trial_id(prompt_id: str, seed: int) -> str:
    """The id of the trial (or PTST control) that trains with `prompt_id` and `seed`."""
    return f"{prompt_id}-s{seed}"


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


def plan_trials(spec: SweepSpec, setting_prompts: Mapping[str, Prompt]) -> list[Trial]:
    """The grid: every inoculation prompt and control, crossed with every seed.

    `setting_prompts`: the setting's prompt catalogue (`setting.prompts`). PTST controls add
    no trials: they are evaluations of the no-prompt control's model.
    """
    catalogue = prompt_catalogue(spec, setting_prompts)
    ptst = tuple((pid, catalogue[pid].text) for pid in spec.ptst)
    return [
        Trial(trial_id(pid, seed), pid, catalogue[pid].texts if role != "none" else (), role, seed,
              ptst if role == "none" else ())
        for pid, role in trained_prompts(spec)
        for seed in spec.seeds
    ]


def trial_ids(spec: SweepSpec) -> list[str]:
    """The ids of `plan_trials(spec, ...)`, in plan order, without the setting."""
    return [trial_id(pid, seed) for pid, _ in trained_prompts(spec) for seed in spec.seeds]
