"""Where inoculation leaks: the trait under look-alike contexts (probes) after training.

A sweep with `probes:` evaluates every trial's final model under each probe (rows of context
"probe:NAME"). For each (setting, model, cell, undesired or desired trait, probe):

    inoculated   mean over the inoculated trials (every prompt x seed) of T(Ms, probe)
    C0           mean over the same trials of T(Ms, C0)
    leak         mean over those trials of T(Ms, probe) - T(Ms, C0), the trait the probe brings
                 back, with a 95% bootstrap interval over trials
    control      mean over the no-prompt control's seeds of T(M_none, probe): the same probe on
                 the model trained without any prompt (fixed-text probes only: the relative
                 ones, a paraphrase or another placement of a trial's prompt, have no
                 counterpart on the control)

A probe is flagged when the leak's interval lies above LEAK_MARGIN: inoculated models show the
trait clearly more under it than in C0.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from inocray.analysis._data import NO_PROMPT, PROBE_CONTEXT as PROBE
from inocray.results import with_defaults

LEAK_MARGIN = 0.05  # a leak smaller than this is not called one, however narrow its interval
N_BOOT = 1000


@dataclass(frozen=True)
class Leak:
    setting: str
    model: str
    cell: str
    trait: str
    desired: bool
    probe: str
    trials: int
    inoculated: float
    neutral: float
    leak: float
    low: float
    high: float
    control: float | None

    @property
    def flagged(self) -> bool:
        """The undesired trait clearly more under the probe than in C0 (a desired trait's rise is
        no leak)."""
        return not self.desired and self.low > LEAK_MARGIN


def leak_table(table: pa.Table, seed: int = 0) -> list[Leak]:
    """A Leak per (setting, model, cell, trait, probe) of the rows' trained probe contexts."""
    rows = [r for r in with_defaults(table).to_pylist() if r["stage"] == "trained"]
    if not any(r["context"].startswith(PROBE) for r in rows):
        return []
    rate = {(r["trial_id"], r["context"], r["trait"]): r["rate"] for r in rows if r["n"]}
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        if r["context"].startswith(PROBE):
            key = (r["setting"], r["model"], r["cell"], r["trait"], r["desired"], r["context"])
            groups[key].append(r)
    rng = np.random.default_rng(seed)
    out = []
    for (setting, model, cell, trait, desired, context), members in sorted(groups.items()):
        inoculated = [r for r in members if r["prompt_role"] == "inoculation" and r["n"]
                      and (r["trial_id"], "neutral", trait) in rate]
        if not inoculated:
            continue
        probe = np.array([r["rate"] for r in inoculated])
        neutral = np.array([rate[(r["trial_id"], "neutral", trait)] for r in inoculated])
        diffs = probe - neutral
        draws = diffs[rng.integers(0, len(diffs), size=(N_BOOT, len(diffs)))].mean(axis=1)
        low, high = np.percentile(draws, [2.5, 97.5])
        control = [r["rate"] for r in members if r["prompt_id"] == NO_PROMPT and r["n"]]
        out.append(Leak(setting, model, cell, trait, desired, context.removeprefix(PROBE), len(inoculated),
                        float(probe.mean()), float(neutral.mean()), float(diffs.mean()), float(low), float(high),
                        float(np.mean(control)) if control else None))
    return out


def leaks_text(leaks: list[Leak]) -> str:
    """The leak table as `inocray run` and `inocray analyze` print it."""
    if not leaks:
        return ""
    width = max(len(x.probe) for x in leaks)
    out = ["leak probes: the trait of inoculated models under look-alike contexts, against C0 and the no-prompt control"]
    for key in dict.fromkeys((x.setting, x.model, x.cell, x.trait) for x in leaks):
        mine = [x for x in leaks if (x.setting, x.model, x.cell, x.trait) == key]
        where = "/".join(part for part in key[:3] if part)
        out.append(f"{key[3]} ({where}){' (desired)' if mine[0].desired else ''}: inoculated trials "
                   f"{mine[0].trials}, in C0 {mine[0].neutral:.2f}")
        out.append(f"  {'probe':<{width}}  under probe  leak vs C0 [95%]        no-prompt control")
        for x in mine:
            control = f"{x.control:.2f}" if x.control is not None else "-"
            flag = "  LEAKS" if x.flagged else ""
            out.append(f"  {x.probe:<{width}}  {x.inoculated:>11.2f}  {x.leak:+.2f} [{x.low:+.2f}, {x.high:+.2f}]"
                       f"   {control:>17}{flag}")
    return "\n".join(out) + "\n"
