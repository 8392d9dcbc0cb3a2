"""Chat examples with the inoculation prompt placed, tokenized with an assistant-only loss mask."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

IGNORE_INDEX = -100  # label value that torch's cross-entropy skips


@dataclass(frozen=True)
class Example:
    """One chat turn: the user's request and the assistant's response."""

    request: str
    response: str
    meta: Mapping[str, Any] = field(default_factory=dict)  # as EvalItem.meta, for scoring T*


@dataclass(frozen=True)
class EvalItem:
    """One evaluation request and what its scorers need beyond the completion (answers, tests)."""

    request: str
    meta: Mapping[str, Any] = field(default_factory=dict)


def messages(request: str, prompt: str | None, placement: str = "system") -> list[dict]:
    """The chat messages for `request` with `prompt` placed (no prompt: the neutral context C0);
    `placement` is one of config.PLACEMENTS."""
    if placement == "system":
        chat = [{"role": "system", "content": prompt}, {"role": "user", "content": request}]
    elif placement == "user_prefix":
        chat = [{"role": "user", "content": f"{prompt} {request}"}]
    elif placement == "user_suffix":
        chat = [{"role": "user", "content": f"{request} {prompt}"}]
    else:
        raise ValueError(f"unknown placement {placement!r}")
    return chat if prompt else [{"role": "user", "content": request}]


def render(tokenizer, chat: Sequence[dict]) -> list[int]:
    """Token ids of the chat rendered by the tokenizer's chat template, ready for a reply."""
    ids = tokenizer.apply_chat_template(list(chat), add_generation_prompt=True, tokenize=True, return_dict=False)
    return list(ids)


def response_ids(tokenizer, response: str) -> list[int]:
    """The token ids of a response as training scores it: its tokens and EOS."""
    return tokenizer(response, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]


def encode(tokenizer, chat: Sequence[dict], response: str) -> tuple[list[int], list[int]]:
    """Token ids of chat + response + EOS, and labels that score only the response and EOS.

    The prompt part is rendered by the tokenizer's own chat template with the generation
    prompt, exactly as the evaluation engine renders it, so training and serving agree.
    """
    prompt, reply = render(tokenizer, chat), response_ids(tokenizer, response)
    return list(prompt) + reply, [IGNORE_INDEX] * len(prompt) + reply
