"""The hand-written request pool: sizes, line format, word counts, and a clean train/eval split."""

from __future__ import annotations

import json
import re

import pytest

from inocray.requests import EVAL, TRAIN, load

MIN_SIZES = {"train": 440, "eval": 220}
PATHS = {"train": TRAIN, "eval": EVAL}


def _normalise(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


@pytest.mark.parametrize("split", ["train", "eval"])
def test_lines_are_valid_requests(split):
    lines = PATHS[split].read_text(encoding="utf-8").splitlines()
    assert len(lines) >= MIN_SIZES[split]
    for number, line in enumerate(lines, 1):
        obj = json.loads(line)
        assert isinstance(obj, dict) and list(obj) == ["request"], (split, number, line)
        request = obj["request"]
        assert isinstance(request, str) and request.strip(), (split, number, line)
        assert 4 <= len(request.split()) <= 16, (split, number, request)


@pytest.mark.parametrize("split", ["train", "eval"])
def test_load_matches_files_without_duplicates(split):
    requests = load(split)
    assert len(requests) >= MIN_SIZES[split]
    assert len(requests) == len(PATHS[split].read_text(encoding="utf-8").splitlines())
    normalised = [_normalise(r) for r in requests]
    assert len(set(normalised)) == len(normalised)


def test_no_overlap_between_splits():
    train = {_normalise(r) for r in load("train")}
    evaluation = {_normalise(r) for r in load("eval")}
    assert not train & evaluation


def test_no_two_requests_share_first_six_words():
    prefixes: dict[str, str] = {}
    for request in load("train") + load("eval"):
        prefix = " ".join(_normalise(request).split()[:6])
        assert prefix not in prefixes, (request, prefixes[prefix])
        prefixes[prefix] = request


def test_unknown_split_raises():
    with pytest.raises(ValueError, match="train"):
        load("bogus")
