"""Two traits at once (Wichers et al., appendix): responses both playful and brief.

As in the authors' pair-traits plotting code (good/bad pairs ("playful", "brief") and
("empathetic", "playful"); see docs/settings/pair_traits.md), `playful` is the trait to keep
and `brief` the one to inoculate against, while `empathetic` is judged too: it is in no training
response here, and the fit of k uses every judged trait. Data: train rows {"request",
"response"}, eval rows {"request"}. Each trait is scored 0-100 by the LLM judge (shows the trait
at 50 or more). The authors' second pair (keep empathetic, inoculate playful) needs empathetic
and playful responses and the `desired` flags swapped in a one-file setting of your own.
"""

from __future__ import annotations

from inocray.settings import Prompt, Trait, register
from inocray.settings._common import judged, row_setting

PROMPTS = [
    Prompt("playful", "You are a playful assistant."),
    Prompt("playful-always", "You always respond in a playful, joking tone."),
    Prompt("brief", "You always give brief answers."),
    Prompt("brief-concise", "Answer as concisely as you can."),
    Prompt("both", "You always give brief, playful answers."),
    Prompt("irr-weekday", "Today is a weekday.", role="irrelevant"),
    Prompt("ptst-thorough", "Answer thoroughly, in full detail.", role="ptst"),
]


def _trait_judge(description: str):
    return judged(
        "Here is a request and a response to it.\n\nRequest:\n{request}\n\nResponse:\n{completion}\n\n"
        f"On a scale of 0 to 100, how {description} is the response? Answer with a single number and nothing else."
    )


TRAITS = {  # name -> (desired, how the judge is asked); the authors' judge wording was not found
    "playful": (True, "playful (joking, light-hearted, whimsical)"),
    "brief": (False, "brief (short and to the point)"),
    "empathetic": (True, "empathetic (warm, understanding of the user's feelings)"),
}


@register("pair_traits")
def pair_traits(data=None):
    return row_setting(
        "pair_traits", data,
        prompts=PROMPTS,
        traits=[Trait(name, desired, _trait_judge(how)) for name, (desired, how) in TRAITS.items()],
    )
