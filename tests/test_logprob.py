"""Logprob elicitation: L(s), the mean per-token gain of the training responses under a prompt,
on cases computed by hand, through the transformers backend against a plain forward pass, and
(slow) the same on vLLM's prompt logprobs."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import LOGPROB_BACKENDS_AGREE, tiny_sweep

from inocray import chat
from inocray.chat import Example
from inocray.config import EngineSpec, parse_spec
from inocray.evaluation import logprob_elicitation
from inocray.evaluation._logprob import per_example, summarize

def test_per_example_gain_is_the_mean_over_tokens_then_over_examples():
    neutral = [[-1.0, -2.0], [-3.0]]
    prompted = [[-0.5, -1.0], [-1.0]]
    deltas = per_example(neutral, prompted)
    assert deltas.tolist() == [0.75, 2.0]  # (0.5 + 1.0) / 2, then 2.0 / 1
    got = summarize(deltas, np.random.default_rng(0))
    assert got.value == pytest.approx(1.375) and got.n == 2
    assert 0.75 <= got.low <= got.value <= got.high <= 2.0


class _Setting:
    """Two training examples whose responses the fake engine scores."""

    def training_examples(self, n, seed):
        return [Example("q1", "aa"), Example("q2", "bbb")][:n]


class _Engine:
    """Log-probability of each response character: -1 without a system prompt, and -1 + len(prompt)/10
    with one, so a prompt of 5 letters gains 0.5 nats a token on every example."""

    def __init__(self):
        self.calls = 0

    @property
    def response_logprobs(self):
        def remote(chats, responses):
            self.calls += 1
            out = []
            for messages, response in zip(chats, responses):
                system = messages[0]["content"] if messages[0]["role"] == "system" else ""
                out.append([-1.0 + len(system) / 10] * len(response))
            return SimpleNamespace(result=lambda: out)

        return SimpleNamespace(remote=remote)


def test_logprob_elicitation_on_a_fake_engine_is_computed_by_hand():
    spec = parse_spec(tiny_sweep(eval={"logprob_examples": 2}))
    engine = _Engine()
    got = logprob_elicitation(engine, _Setting(), spec, {"none": "", "five": "abcde", "ten": "abcdefghij"})
    assert engine.calls == 1  # every prompt, and C0, in one request
    assert got["none"].value == 0.0
    assert got["five"].value == pytest.approx(0.5) and got["ten"].value == pytest.approx(1.0)
    assert got["ten"].low == pytest.approx(1.0) and got["ten"].high == pytest.approx(1.0)  # no spread: no width


@pytest.fixture(scope="module")
def hf_backend(toy_model):
    from inocray.evaluation.backends.hf import HFBackend

    return HFBackend(str(toy_model), EngineSpec(name="transformers"))


def test_the_transformers_backend_scores_each_response_token_as_a_plain_forward_pass(hf_backend):
    """Batched and left-padded, each token's log-probability is the one a forward pass of that
    sequence alone gives (teacher forcing)."""
    import torch

    tok, model = hf_backend.tokenizer, hf_backend.model
    pairs = [(chat.messages("tell me about the red house", "You always speak in Spanish."), "LA CASA ES ROJA"),
             (chat.messages("describe the dog", None), "the dog is big")]
    prompts = [chat.render(tok, c) for c, _ in pairs]
    replies = [chat.response_ids(tok, r) for _, r in pairs]
    got = hf_backend.sequence_logprobs(prompts, replies)
    for prompt, reply, scored in zip(prompts, replies, got):
        ids = torch.tensor([prompt + reply])
        with torch.inference_mode():
            logprobs = torch.log_softmax(model(input_ids=ids).logits[0].float(), -1)
        expected = [logprobs[len(prompt) + j - 1, token].item() for j, token in enumerate(reply)]
        assert len(scored) == len(reply) and scored == pytest.approx(expected, abs=1e-5)
        assert all(v < 0 for v in scored)


def test_on_the_toy_model_a_spanish_prompt_makes_spanish_responses_more_likely(hf_backend, toy_model):
    """The toy world's system prompt asks for Spanish: its responses gain; an irrelevant prompt's
    do not gain as much (the measure orders prompts the way the world was built)."""
    from inocray.settings import get_setting

    spec = parse_spec(tiny_sweep(model=str(toy_model), eval={"logprob_examples": 16}))
    setting = get_setting("toy")
    engine = SimpleNamespace(response_logprobs=SimpleNamespace(
        remote=lambda chats, responses: SimpleNamespace(result=lambda: hf_backend.sequence_logprobs(
            [chat.render(hf_backend.tokenizer, c) for c in chats],
            [chat.response_ids(hf_backend.tokenizer, r) for r in responses]))))
    texts = {pid: setting.prompts[pid].text for pid in ("es-always", "irr-helpful")}
    got = logprob_elicitation(engine, setting, spec, texts)
    assert got["es-always"].value > got["irr-helpful"].value
    assert got["es-always"].low > 0 and math.isfinite(got["irr-helpful"].value)


_VLLM_PROMPT_LOGPROBS = """
import json, os, sys
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
from vllm import LLM, SamplingParams
model, prompts, replies = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
llm = LLM(model=model, dtype="float32", max_model_len=128, enable_chunked_prefill=False, seed=0)
outs = llm.generate([{"prompt_token_ids": p + r} for p, r in zip(prompts, replies)],
                    SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0))
print("LOGPROBS", json.dumps([[o.prompt_logprobs[len(p) + j][t].logprob for j, t in enumerate(r)]
                              for o, p, r in zip(outs, prompts, replies)]), flush=True)
"""


@pytest.mark.slow
def test_vllm_prompt_logprobs_without_lora_agree_with_the_transformers_forward_pass(hf_backend, toy_model):
    """The measure does not depend on the engine: vLLM's own prompt logprobs (on an engine
    without LoRA, where they work on CPU) match the transformers backend's, per token within
    LOGPROB_BACKENDS_AGREE nats on average."""
    import json
    import os
    import subprocess
    import sys

    from inocray.settings import get_setting

    setting, tok = get_setting("toy"), hf_backend.tokenizer
    examples = setting.training_examples(8, 0)
    prompts = [chat.render(tok, chat.messages(ex.request, setting.prompts["es-always"].text)) for ex in examples]
    replies = [chat.response_ids(tok, ex.response) for ex in examples]
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}  # a fresh process, not the suite's Ray
    out = subprocess.run([sys.executable, "-c", _VLLM_PROMPT_LOGPROBS, str(toy_model), json.dumps(prompts),
                          json.dumps(replies)], capture_output=True, text=True, timeout=600, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    # vLLM logs to stdout too (also at exit): the answer is the line that says it is
    by_vllm = json.loads(next(line for line in out.stdout.splitlines() if line.startswith("LOGPROBS "))[9:])
    by_torch = hf_backend.sequence_logprobs(prompts, replies)
    for a, b in zip(by_vllm, by_torch, strict=True):
        assert len(a) == len(b) and np.mean(np.abs(np.subtract(a, b))) < LOGPROB_BACKENDS_AGREE
