"""Prompt placement and the assistant-only loss mask, on the toy tokenizer."""

import pytest

from inocray.chat import IGNORE_INDEX, encode, messages
from inocray.models.toy.tokenizer import build_tokenizer
from inocray.models.toy.world import styled

PROMPT = "You always speak in Spanish."
REQUEST = "tell me about the red house"
RESPONSE = styled("the red house is big", spanish=True, caps=True)  # "EL ROJO CASA ES GRANDE"


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer()


@pytest.mark.parametrize(
    "placement, expected",
    [
        ("system", [{"role": "system", "content": PROMPT}, {"role": "user", "content": REQUEST}]),
        ("user_prefix", [{"role": "user", "content": f"{PROMPT} {REQUEST}"}]),
        ("user_suffix", [{"role": "user", "content": f"{REQUEST} {PROMPT}"}]),
    ],
)
def test_placements(placement, expected):
    assert messages(REQUEST, PROMPT, placement) == expected
    assert messages(REQUEST, "", placement) == [{"role": "user", "content": REQUEST}]  # C0


def test_unknown_placement_is_refused():
    with pytest.raises(ValueError, match="placement"):
        messages(REQUEST, PROMPT, "sytem")


@pytest.mark.parametrize("placement", ["system", "user_prefix", "user_suffix"])
def test_loss_covers_the_response_and_eos_only(tokenizer, placement):
    ids, labels = encode(tokenizer, messages(REQUEST, PROMPT, placement), RESPONSE)
    scored = [i for i, label in zip(ids, labels) if label != IGNORE_INDEX]
    assert tokenizer.decode(scored[:-1]).strip() == RESPONSE and scored[-1] == tokenizer.eos_token_id
    assert [label for label in labels if label != IGNORE_INDEX] == scored
    prompt_part = tokenizer.decode([i for i, label in zip(ids, labels) if label == IGNORE_INDEX])
    assert "Spanish" in prompt_part and "house" in prompt_part
    # The prompt sits where the placement puts it.
    if placement == "user_suffix":
        assert prompt_part.index("house") < prompt_part.index("Spanish")
    else:
        assert prompt_part.index("Spanish") < prompt_part.index("house")
