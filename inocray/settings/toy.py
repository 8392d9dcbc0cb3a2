"""The toy trait world as a setting: Spanish (inoculated) and ALL CAPS (kept)."""

from __future__ import annotations

from dataclasses import dataclass, field

from inocray.chat import EvalItem, Example
from inocray.settings._scorers import Check
from inocray.settings import Prompt, Trait
from inocray.models.toy import world


# Leak probes (sweep field `probes`): look-alikes of the Spanish prompts, in the toy world's own
# words where it has them (its tokenizer reads the others as unknown words, as a real model
# reads an unfamiliar phrasing); not in the world's pretraining corpus.
PROBES = {p.id: p for p in (Prompt("never-spanish", "You never speak in Spanish.", role="probe"),
                            Prompt("keyword-spanish", "Spanish.", role="probe"),
                            Prompt("in-spanish", "Siempre el espanol.", role="probe"))}


@dataclass(frozen=True)
class ToySetting:
    name: str = "toy"
    prompts: dict[str, Prompt] = field(
        default_factory=lambda: {p.id: Prompt(p.id, p.text) for p in world.PROMPTS} | PROBES
    )
    traits: list[Trait] = field(
        default_factory=lambda: [
            Trait("spanish", desired=False, scorer=Check(lambda text, item: world.is_spanish(text))),
            Trait("caps", desired=True, scorer=Check(lambda text, item: world.is_caps(text))),
        ]
    )

    def training_examples(self, n: int, seed: int) -> list[Example]:
        return world.training_examples(n, seed)

    def eval_items(self, n: int, seed: int) -> list[EvalItem]:
        return [EvalItem(r) for r in world.requests(n, seed)]


def toy(data=None) -> ToySetting:
    """The toy world makes its own data, so a sweep's data files are not read."""
    return ToySetting()
