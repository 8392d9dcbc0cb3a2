"""The logprob measure does not depend on the engine: vLLM's own prompt logprobs (its
OpenAI-compatible server, an engine without LoRA, where they work on CPU) equal the transformers
backend's forward pass, which inocray uses in every replica (backends/vllm.py says why), on the
toy model's training responses under a prompt and without one."""

from __future__ import annotations

import json
import urllib.request

import numpy as np
import pytest
from conftest import LOGPROB_BACKENDS_AGREE, vllm_server

from inocray import chat
from inocray.config import EngineSpec


def prompt_logprobs(url: str, name: str, ids: list[int]) -> list[float | None]:
    """vLLM's log-probability of each token of `ids` given those before it (None for the first)."""
    body = {"model": name, "prompt": ids, "max_tokens": 1, "temperature": 0.0, "prompt_logprobs": 0}
    request = urllib.request.Request(f"{url}/completions", json.dumps(body).encode(),
                                     {"Content-Type": "application/json"})
    choice = json.loads(urllib.request.urlopen(request, timeout=120).read())["choices"][0]
    return [None if entry is None else entry[str(token)]["logprob"]
            for token, entry in zip(ids, choice["prompt_logprobs"], strict=True)]


@pytest.mark.slow
def test_vllms_prompt_logprobs_agree_with_the_transformers_forward_pass(toy_model, tmp_path):
    from inocray.evaluation.backends.hf import HFBackend
    from inocray.settings import get_setting

    setting = get_setting("toy")
    backend = HFBackend(str(toy_model), EngineSpec(name="transformers"))
    tok = backend.tokenizer
    examples = setting.training_examples(8, 0)
    prompts = [chat.render(tok, chat.messages(ex.request, text))
               for text in (setting.prompts["es-always"].text, None) for ex in examples]
    replies = [chat.response_ids(tok, ex.response) for _ in range(2) for ex in examples]
    by_torch = backend.sequence_logprobs(prompts, replies)
    with vllm_server(str(toy_model), tmp_path / "server.log", "toy", max_model_len=128) as url:
        by_vllm = [prompt_logprobs(url, "toy", p + r)[len(p):] for p, r in zip(prompts, replies)]
    gaps = [np.mean(np.abs(np.subtract(a, b))) for a, b in zip(by_vllm, by_torch, strict=True)]
    assert all(len(a) == len(b) for a, b in zip(by_vllm, by_torch))
    assert max(gaps) < LOGPROB_BACKENDS_AGREE, gaps
    # the measure itself, per example: the gain under the prompt, by either engine
    n = len(examples)
    gain = [np.mean(np.subtract(p, c)) for p, c in zip(by_vllm[:n], by_vllm[n:])]
    assert np.mean(gain) > 0.1  # the toy world's Spanish prompt explains its Spanish responses
    assert np.allclose(gain, [np.mean(np.subtract(p, c)) for p, c in zip(by_torch[:n], by_torch[n:])],
                       atol=2 * LOGPROB_BACKENDS_AGREE)
