"""A pool of short, varied English user requests to a chat assistant.

The requests were written by hand for inocray, to fine-tune and evaluate small
instruct models. Each is one line of 4 to 16 words, self-contained and
answerable in a sentence or two: simple facts, everyday advice, definitions,
small how-tos, easy arithmetic word questions and the like, spread over more
than twenty topic areas (food, animals, weather, travel, health habits, home,
school subjects, science, space, geography, sports, music, work, money,
technology, language, nature, hobbies, history, feelings, arithmetic,
transport, art). None asks for a particular language, letter case or output
format, since those are the traits being measured.

The pool is split into a training set (``train.jsonl``, 488 requests) and an
evaluation set (``eval.jsonl``, 234 requests) with no overlap: after
normalising case, punctuation and whitespace no request appears twice anywhere,
and no two requests share their first six words. Each file holds one JSON
object per line, ``{"request": "..."}``, in UTF-8.
"""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["EVAL", "SPLITS", "TRAIN", "load"]

_HERE = Path(__file__).resolve().parent
TRAIN: Path = _HERE / "train.jsonl"
EVAL: Path = _HERE / "eval.jsonl"
SPLITS: dict[str, Path] = {"train": TRAIN, "eval": EVAL}


def load(split: str) -> list[str]:
    """Return the requests of ``split`` ("train" or "eval"), in file order."""
    try:
        path = SPLITS[split]
    except (KeyError, TypeError):
        raise ValueError(f"unknown split {split!r}; known splits: {', '.join(SPLITS)}") from None
    requests: list[str] = []
    with path.open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                requests.append(json.loads(line)["request"])
    return requests
