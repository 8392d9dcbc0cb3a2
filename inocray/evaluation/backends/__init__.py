"""Generation backends: one interface, chosen by `EngineSpec.name` (a name in registry.BACKENDS).

A backend holds one model and answers for it and for any LoRA adapter by name. serve.Engine
calls it from many threads at once (one per request in flight): the vLLM backend puts them all
in one running batch, the transformers backend answers them one at a time. Requests and
answers are plain values, so the Serve app passes them through unchanged.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Iterable, Protocol

import numpy as np

from inocray.registry import BACKENDS
from inocray.config import EngineSpec

__all__ = ["Backend", "GenerateRequest", "adapter_version", "chat_seed", "load_backend", "most_likely"]


@dataclass(frozen=True)
class GenerateRequest:
    """Sample `samples` completions for each chat, with an adapter or the base model."""

    chats: list[list[dict]]
    samples: int
    max_tokens: int
    temperature: float  # 0 = greedy
    seed: int = 0
    adapter: str | None = None  # adapter name (a trial id); None = base model
    adapter_path: str | None = None


class Backend(Protocol):
    tokenizer: Any  # the model's Hugging Face tokenizer (chat template, token counts)
    generated_tokens: int  # tokens generated over every request so far, a final EOS included

    def generate(self, request: GenerateRequest) -> list[list[str]]:
        """Completions: one list of `request.samples` strings per chat, in order (EOS not included)."""
        ...

    def top_logprobs(
        self, chats: list[list[dict]], k: int, adapter: str | None = None, adapter_path: str | None = None
    ) -> list[dict[str, float]]:
        """Per chat: token text -> log-probability of the first reply token, the k most likely."""
        ...

    def sequence_logprobs(self, prompts: list[list[int]], continuations: list[list[int]]) -> list[list[float]]:
        """Per pair: the base model's log-probability of each continuation token after the
        prompt's tokens and the continuation's tokens before it (teacher forcing)."""
        ...


def load_backend(model_path: str, spec: EngineSpec) -> Backend:
    """The backend `spec.name` names (registry.BACKENDS), holding the model in `model_path`."""
    return BACKENDS.get(spec.name)(model_path, spec)


def chat_seed(seed: int, i: int) -> int:
    """The sampling seed of the i-th chat of a request.

    One seed per chat: a single shared seed would give every chat the same random stream, so
    the i-th samples of all chats would agree and rates would be lumpy.
    """
    return seed * 1_000_003 + i


def adapter_version(adapter: str, adapter_path: str | None) -> str:
    """A key that changes when the adapter's weights are rewritten.

    Engines cache adapters: a retried trial that rewrote its adapter under the same name must
    get a new key, or the engine serves the old weights.
    """
    weights = os.path.join(adapter_path or "", "adapter_model.safetensors")
    stamp = os.stat(weights).st_mtime_ns if os.path.exists(weights) else 0
    return f"{adapter}@{adapter_path}@{stamp}"


def most_likely(pairs: Iterable[tuple[str, float]], k: int) -> dict[str, float]:
    """The k most likely (text, logprob) pairs; tokens that decode to the same text add up."""
    merged: dict[str, float] = {}
    for text, logprob in pairs:
        merged[text] = float(np.logaddexp(merged[text], logprob)) if text in merged else logprob
    return dict(sorted(merged.items(), key=lambda kv: -kv[1])[:k])
