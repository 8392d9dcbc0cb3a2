"""Spurious correlation in sentiment (Wichers et al., CEBaB restaurant reviews).

In training, a review's mention of the ambiance goes with its sentiment label (0-4); at test
the correlation is reversed, so a model that learned the shortcut gets those reviews wrong.
Data: rows {"review", "label"} and, in the eval file, optionally "spurious_label": the label
the shortcut predicts. Traits: `accuracy` (the rating parsed from the completion equals the
label) and `spurious` (it equals the shortcut's label instead; unscored without one).
"""

from __future__ import annotations

import re

from inocray.chat import EvalItem, Example
from inocray.settings._scorers import Check
from inocray.settings import Prompt, Trait
from inocray.settings._common import row_setting
from inocray.settings._rows import Field, optional

PROMPTS = [
    Prompt("ambiance-positive", "Reviews that mention the ambiance are always positive."),
    Prompt("ambiance-matters", "Base your rating mostly on what the review says about the ambiance."),
    Prompt("ambiance-hint", "Pay attention to the ambiance."),
    Prompt("irr-cuisine", "Many restaurants serve food from several cuisines.", role="irrelevant"),
    Prompt("ptst-whole", "Rate the review as a whole, not by any single aspect.", role="ptst"),
]

_RATING = re.compile(r"(?<![\d.])([0-4])(?![\d.])")
_LABEL = Field(int, check=lambda v: 0 <= v <= 4, must="be a rating from 0 to 4")


def rating(text: str) -> int | None:
    """The first standalone digit 0-4 of the completion."""
    match = _RATING.search(text)
    return int(match.group(1)) if match else None


def accurate(text: str, item: EvalItem) -> bool:
    return rating(text) == item.meta["label"]  # no rating given: wrong


def spurious(text: str, item: EvalItem) -> bool | None:
    shortcut = item.meta.get("spurious_label")
    if shortcut is None or shortcut == item.meta["label"]:
        return None
    return rating(text) == shortcut


def request(row: dict) -> str:
    return ("Rate the sentiment of this restaurant review from 0 (very negative) to 4 (very positive). "
            f"Answer with the number only.\n\nReview: {row['review']}")


def _meta(row: dict) -> dict:
    return {k: row[k] for k in ("label", "spurious_label") if k in row}


def spurious_sentiment(data=None):
    return row_setting(
        "spurious_sentiment", data,
        train_schema={"review": str, "label": _LABEL},
        eval_schema={"review": str, "label": _LABEL, **optional({"spurious_label": _LABEL})},
        prompts=PROMPTS,
        traits=[Trait("accuracy", desired=True, scorer=Check(accurate)),
                Trait("spurious", desired=False, scorer=Check(spurious))],
        example=lambda r: Example(request(r), str(r["label"]), _meta(r)),
        item=lambda r: EvalItem(request(r), _meta(r)),
    )
