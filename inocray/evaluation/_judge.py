"""The judge model a judged scorer asks (settings' JudgeScorer): an engine handle and an adapter."""

from __future__ import annotations

from typing import Sequence

from inocray.evaluation.backends import GenerateRequest
from inocray.settings import JUDGE_DIGITS, JUDGE_TOP_K, weighted_score, written_score


class Judge:
    """A judge model behind an engine handle (serve.Engine), with an optional adapter.

    Tan et al. read the score from the judge's first reply token, which for their judge is
    the whole number. Tokenizers that split numbers into digits (SmolLM2, Qwen, Mistral: "85"
    is "8", "5") would give only the leading digit that way; their judge writes its answer
    greedily instead (JUDGE_DIGITS tokens) and the number it writes is the score.
    """

    def __init__(self, engine, adapter: str | None = None, adapter_path: str | None = None) -> None:
        self.engine = engine
        self.adapter = adapter
        self.adapter_path = adapter_path
        self._whole_numbers: bool | None = None  # asked of the engine on first use

    def scores(self, prompts: Sequence[str]) -> list[float | None]:
        """The score (0..100) of each prompt, sent as a user message; None: no number."""
        chats = [[{"role": "user", "content": p}] for p in prompts]
        if self._whole_numbers is None:
            self._whole_numbers = self.engine.numbers_are_single_tokens.remote().result()
        if not self._whole_numbers:
            request = GenerateRequest(chats, samples=1, max_tokens=JUDGE_DIGITS, temperature=0.0,
                                      adapter=self.adapter, adapter_path=self.adapter_path)
            return [written_score(samples[0]) for samples in self.engine.generate.remote(request).result()]
        tops = self.engine.top_logprobs.remote(chats, JUDGE_TOP_K, self.adapter, self.adapter_path).result()
        return [weighted_score(top) for top in tops]
